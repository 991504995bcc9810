package attestpolicy.v1_test

import rego.v1

test_provenance_unverified if {
	decision := decide(with_value(claims, ["provenance", "verified"], false))
	denied(decision, {"provenance.unverified"})
	has_reason(decision, "provenance.unverified", "provenance is not verified")
	every verified in [null, "true", 1] {
		denied(decide(with_value(claims, ["provenance", "verified"], verified)), {"input.invalid"})
	}
}

test_provenance_untrusted_builder if {
	decision := decide(with_value(claims, ["provenance", "builder_id"], "https://ci.evil.test/builder"))
	denied(decision, {"provenance.untrusted_builder"})
	has_reason(decision, "provenance.untrusted_builder", "builder https://ci.evil.test/builder is not trusted")
	missing := decide(with_value(claims, ["provenance", "builder_id"], null))
	has_reason(missing, "provenance.untrusted_builder", "builder (none) is not trusted")
	denied(decide(with_value(claims, ["provenance", "builder_id"], [builder])), {"input.invalid"})
	not_a_map := with_value(config, ["trusted_builders"], [builder])
	decide_config(claims, not_a_map).reasons == invalid_config("config.trusted_builders: must be an object")
}

test_provenance_source_mismatch if {
	decision := decide(with_value(claims, ["provenance", "source_repo"], "https://github.com/evil/api"))
	denied(decision, {"provenance.source_mismatch"})
	has_reason(
		decision, "provenance.source_mismatch",
		"source https://github.com/evil/api is not the workload's source https://github.com/acme/api",
	)
	denied(decide(without(claims, ["provenance", "source_repo"])), {"provenance.source_mismatch"})
}

test_provenance_any_source_without_workload_source if {
	cfg := without(config, ["workloads", spiffe_id, "source_repo"])
	allowed(decide_config(with_value(claims, ["provenance", "source_repo"], "https://github.com/fork/api"), cfg))
}

test_provenance_subject_mismatch if {
	decision := decide(with_value(claims, ["provenance", "subject_digests"], [other_digest]))
	denied(decision, {"provenance.subject_mismatch"})
	has_reason(decision, "provenance.subject_mismatch", sprintf("provenance does not name image %s", [digest]))
	denied(decide(with_value(claims, ["provenance", "subject_digests"], digest)), {"input.invalid"})
	denied(decide(with_value(claims, ["provenance", "subject_digests"], [])), {"provenance.subject_mismatch"})
	denied(decide(with_value(claims, ["provenance", "subject_digests"], null)), {"provenance.subject_mismatch"})
}

test_provenance_without_image_has_no_subject_check if {
	cfg := workload_with("require", ["provenance", "node", "runtime"])
	doc := without(claims, ["image"])
	allowed(decide_config(with_value(doc, ["provenance", "subject_digests"], [other_digest]), cfg))
}
