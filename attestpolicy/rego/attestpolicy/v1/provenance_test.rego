package attestpolicy.v1_test

import rego.v1

test_provenance_unverified if {
	every verified in [false, null, "true", 1] {
		decision := decide(with_value(claims, ["provenance", "verified"], verified))
		denied(decision, {"provenance.unverified"})
		has_reason(decision, "provenance.unverified", "provenance is not verified")
	}
}

test_provenance_untrusted_builder if {
	decision := decide(with_value(claims, ["provenance", "builder_id"], "https://ci.evil.test/builder"))
	denied(decision, {"provenance.untrusted_builder"})
	has_reason(decision, "provenance.untrusted_builder", "builder https://ci.evil.test/builder is not trusted")
	missing := decide(with_value(claims, ["provenance", "builder_id"], null))
	has_reason(missing, "provenance.untrusted_builder", "builder (none) is not trusted")
	typed := decide(with_value(claims, ["provenance", "builder_id"], [builder]))
	has_reason(typed, "provenance.untrusted_builder", "builder (array) is not trusted")
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
	denied(decide(with_value(claims, ["provenance", "subject_digests"], digest)), {"provenance.subject_mismatch"})
	denied(decide(with_value(claims, ["provenance", "subject_digests"], [])), {"provenance.subject_mismatch"})
}

test_provenance_without_image_has_no_subject_check if {
	cfg := workload_with("require", ["provenance", "node", "runtime"])
	doc := without(claims, ["image"])
	allowed(decide_config(with_value(doc, ["provenance", "subject_digests"], [other_digest]), cfg))
}
