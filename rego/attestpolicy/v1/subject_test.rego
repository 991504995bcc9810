package attestpolicy.v1_test

import rego.v1

test_subject_unregistered if {
	decision := decide(with_value(claims, ["subject", "spiffe_id"], "spiffe://acme.test/ns/shop/sa/debug"))
	decision == {
		"allow": false,
		"ttl_seconds": 0,
		"reasons": [{"code": "subject.unregistered", "message": "workload spiffe://acme.test/ns/shop/sa/debug is not registered"}],
		"ttl_bound_by": null,
		"valid_until": null,
		"ttl_terms": [],
		"revocable": [],
	}
}

test_subject_null_workload_entry_is_unregistered if {
	denied(decide_config(claims, with_value(config, ["workloads", spiffe_id], null)), {"subject.unregistered"})
}

test_subject_revoked if {
	cfg := with_value(config, ["revoked", "spiffe_ids"], {spiffe_id: "key compromise"})
	decision := decide_config(claims, cfg)
	denied(decision, {"subject.revoked"})
	has_reason(decision, "subject.revoked", "workload spiffe://acme.test/ns/shop/sa/api is revoked: key compromise")
}

test_request_unknown_audience if {
	decision := decide(with_value(claims, ["request", "audience"], "aws-sts"))
	denied(decision, {"request.unknown_audience"})
	has_reason(decision, "request.unknown_audience", "audience aws-sts is not configured")
}

test_evidence_missing_one_reason_per_class if {
	every class in ["image", "provenance", "node", "runtime"] {
		decision := decide(without(claims, [class]))
		not decision.allow
		has_reason(decision, "evidence.missing", sprintf("required %s evidence is absent", [class]))
	}
	decision := decide(without(without(claims, ["node"]), ["runtime"]))
	denied(decision, {"evidence.missing"})
	count(decision.reasons) == 2
}

test_evidence_not_required_may_be_absent if {
	cfg := workload_with("require", [])
	doc := without(without(without(without(claims, ["image"]), ["provenance"]), ["node"]), ["runtime"])
	decision := decide_config(doc, cfg)
	allowed(decision)
	decision.valid_until == null
}

test_evidence_present_is_checked_even_if_not_required if {
	cfg := workload_with("require", [])
	doc := with_value(claims, ["node", "issued_at"], "2026-11-22T09:50:00Z")
	denied(decide_config(doc, cfg), {"node.stale"})
}

test_workload_entry_not_an_object if {
	decision := decide_config(claims, with_value(config, ["workloads", spiffe_id], "shop/api"))
	not decision.allow
	has_reason(decision, "config.invalid", "config.workloads[spiffe://acme.test/ns/shop/sa/api]: must be an object")
}

test_workload_entry_fields_ill_typed if {
	every case in [
		["namespace", null, "namespace: is required"],
		["service_account", 7, "service_account: must be a string of 1 to 4096 characters"],
		["require", "image", "require: must be an array of evidence classes (image, provenance, node, runtime)"],
		["require", ["image", "nodes"], "require: must be an array of evidence classes (image, provenance, node, runtime)"],
		["source_repo", ["https://github.com/acme/api"], "source_repo: must be a string of 1 to 4096 characters"],
		["image_digests", digest, "image_digests: must be an array of at most 4096 sha256 digests"],
		["image_digests", [digest, "sha256:00"], "image_digests[1]: must be a sha256 digest (sha256: and 64 lowercase hex digits)"],
		["max_ttl_seconds", "3600", "max_ttl_seconds: must be an integer > 0 and <= 2147483647"],
		["max_ttl_seconds", 0, "max_ttl_seconds: must be an integer > 0 and <= 2147483647"],
		["max_ttl_seconds", 1e300, "max_ttl_seconds: must be an integer > 0 and <= 2147483647"],
		["owner", "team-a", "owner: unknown field"],
	] {
		[key, value, problem] := case
		decision := decide_config(claims, workload_with(key, value))
		decision.reasons == invalid_config(sprintf("config.workloads[%s].%s", [spiffe_id, problem]))
	}
}

test_workload_entry_without_require_requires_nothing if {
	cfg := without(config, ["workloads", spiffe_id, "require"])
	allowed(decide_config(without(claims, ["node"]), cfg))
	allowed(decide_config(without(claims, ["node"]), workload_with("require", null)))
}

test_workload_optional_fields_may_be_null if {
	cfg := json.patch(config, [
		{"op": "add", "path": ["workloads", spiffe_id, "source_repo"], "value": null},
		{"op": "add", "path": ["workloads", spiffe_id, "image_digests"], "value": null},
		{"op": "add", "path": ["workloads", spiffe_id, "max_ttl_seconds"], "value": null},
	])
	allowed(decide_config(claims, cfg))
}

test_audience_entry_invalid if {
	decide_config(claims, with_value(config, ["audiences", "vault"], {})).reasons == invalid_config("config.audiences[vault].max_ttl_seconds: is required")
	every entry in [{"max_ttl_seconds": 0}, {"max_ttl_seconds": "1800"}, {"max_ttl_seconds": 1e300}] {
		decision := decide_config(claims, with_value(config, ["audiences", "vault"], entry))
		denied(decision, {"config.invalid"})
		has_reason(decision, "config.invalid", "config.audiences[vault].max_ttl_seconds: must be an integer > 0 and <= 2147483647")
	}
	every entry in ["1800", true] {
		decision := decide_config(claims, with_value(config, ["audiences", "vault"], entry))
		decision.reasons == invalid_config("config.audiences[vault]: must be an object")
	}
}
