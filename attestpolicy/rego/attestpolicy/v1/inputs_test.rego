package attestpolicy.v1_test

import rego.v1

test_input_now_missing if {
	decision := decide(without(claims, ["now"]))
	denied(decision, {"input.invalid"})
	has_reason(decision, "input.invalid", "input.now must be an RFC 3339 timestamp")
}

test_input_now_ill_typed if {
	denied(decide(with_value(claims, ["now"], 1795341600)), {"input.invalid"})
	denied(decide(with_value(claims, ["now"], null)), {"input.invalid"})
}

test_input_now_malformed_is_a_deny_not_an_engine_error if {
	every now in ["2026-02-30T10:00:00Z", "2026-11-22T25:00:00Z", "yesterday", "2026-11-22T10:00:00"] {
		denied(decide(with_value(claims, ["now"], now)), {"input.invalid"})
	}
}

test_input_now_with_offset_and_fraction if {
	allowed(decide(with_value(claims, ["now"], "2026-11-22T11:00:00+01:00")))
	decide(with_value(claims, ["now"], "2026-11-22T10:00:00.25Z")).ttl_seconds == 900
}

test_input_spiffe_id_missing_or_ill_typed if {
	decision := decide(without(claims, ["subject", "spiffe_id"]))
	denied(decision, {"input.invalid"})
	has_reason(decision, "input.invalid", "input.subject.spiffe_id must be a string")
	denied(decide(with_value(claims, ["subject"], "spiffe://acme.test/ns/shop/sa/api")), {"input.invalid"})
	denied(decide(with_value(claims, ["subject", "spiffe_id"], ["spiffe://acme.test/ns/shop/sa/api"])), {"input.invalid"})
}

test_input_audience_missing_or_ill_typed if {
	decision := decide(without(claims, ["request", "audience"]))
	denied(decision, {"input.invalid"})
	has_reason(decision, "input.invalid", "input.request.audience must be a string")
	denied(decide(with_value(claims, ["request", "audience"], 5)), {"input.invalid"})
}

test_input_requested_ttl_ill_typed if {
	every ttl in ["600", 0, -5, true, [600], 2147483648, 1e300] {
		decision := decide(with_value(claims, ["request", "requested_ttl_seconds"], ttl))
		denied(decision, {"input.invalid"})
		has_reason(decision, "input.invalid", "input.request.requested_ttl_seconds must be a number > 0 and <= 2147483647")
	}
}

test_input_evidence_class_not_an_object if {
	every class in ["image", "provenance", "node", "runtime"] {
		decision := decide(with_value(claims, [class], "forged"))
		not decision.allow
		has_reason(decision, "input.invalid", sprintf("input.%s must be an object", [class]))
	}
}

test_input_null_evidence_is_absent if {
	cfg := workload_with("require", ["image", "provenance", "runtime"])
	allowed(decide_config(with_value(claims, ["node"], null), cfg))
	denied(decide(with_value(claims, ["node"], null)), {"evidence.missing"})
}

test_input_node_kind_and_id_must_be_strings if {
	decision := decide(json.patch(claims, [
		{"op": "add", "path": ["node", "kind"], "value": 1},
		{"op": "remove", "path": ["node", "id"]},
	]))
	denied(decision, {"input.invalid"})
	has_reason(decision, "input.invalid", "input.node.kind must be a string")
	has_reason(decision, "input.invalid", "input.node.id must be a string")
}

test_input_node_issued_at_invalid if {
	every issued_at in [null, 1795341540, "2026-11-22T09:59:00", "2026-02-31T09:59:00Z"] {
		decision := decide(with_value(claims, ["node", "issued_at"], issued_at))
		denied(decision, {"input.invalid"})
		has_reason(decision, "input.invalid", "input.node.issued_at must be an RFC 3339 timestamp")
	}
}

test_input_expires_at_invalid if {
	node := decide(with_value(claims, ["node", "expires_at"], "soon"))
	denied(node, {"input.invalid"})
	has_reason(node, "input.invalid", "input.node.expires_at must be an RFC 3339 timestamp")
	runtime := decide(with_value(claims, ["runtime", "expires_at"], 1795345200))
	denied(runtime, {"input.invalid"})
	has_reason(runtime, "input.invalid", "input.runtime.expires_at must be an RFC 3339 timestamp")
}

test_input_null_expiries_are_absent if {
	decision := decide(with_value(claims, ["runtime", "expires_at"], null))
	allowed(decision)
	decision.ttl_bound_by == "default"
}

test_input_runtime_image_digest_ill_typed if {
	decision := decide(with_value(claims, ["runtime", "image_digest"], 42))
	denied(decision, {"input.invalid"})
	has_reason(decision, "input.invalid", "input.runtime.image_digest must be a string")
}
