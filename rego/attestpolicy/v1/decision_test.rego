package attestpolicy.v1_test

import rego.v1

test_decision_allow_is_exact if {
	decide(claims) == {
		"allow": true,
		"ttl_seconds": 900,
		"reasons": [],
		"ttl_bound_by": "default",
		"valid_until": "2026-11-22T10:04:00Z",
	}
}

test_decision_deny_is_exact if {
	doc := with_value(claims, ["node", "verified"], false)
	decide(doc) == {
		"allow": false,
		"ttl_seconds": 0,
		"reasons": [{"code": "node.unverified", "message": "node evidence is not verified"}],
		"ttl_bound_by": null,
		"valid_until": null,
	}
}

test_decision_reasons_sorted_by_code_then_message if {
	doc := json.patch(claims, [
		{"op": "add", "path": ["runtime", "verified"], "value": false},
		{"op": "add", "path": ["node", "nonce_verified"], "value": false},
		{"op": "add", "path": ["node", "measurements"], "value": {}},
		{"op": "add", "path": ["image", "signatures"], "value": []},
	])
	decision := decide(doc)
	decision.reasons == [
		{"code": "image.unsigned", "message": "image has no verified signature"},
		{"code": "node.measurement_mismatch", "message": "measurement pcr.sha256.0 is missing"},
		{"code": "node.measurement_mismatch", "message": "measurement pcr.sha256.7 is missing"},
		{"code": "node.nonce", "message": "node evidence is not bound to the expected nonce"},
		{"code": "runtime.unverified", "message": "runtime evidence is not verified"},
	]
	denied(decision, {"image.unsigned", "node.measurement_mismatch", "node.nonce", "runtime.unverified"})
}

test_decision_one_reason_per_distinct_violation if {
	# Two unverified signatures and two missing classes: one image.unsigned, two evidence.missing.
	doc := json.patch(without(without(claims, ["node"]), ["runtime"]), [{
		"op": "add", "path": ["image", "signatures"],
		"value": [{"verified": false}, {"verified": false}],
	}])
	decision := decide(doc)
	count(decision.reasons) == 3
	denied(decision, {"image.unsigned", "evidence.missing"})
}

test_decision_defined_for_empty_input_and_config if {
	decision := decide_config({}, {})
	denied(decision, {"input.invalid", "config.invalid"})
}

test_decision_defined_for_non_object_input if {
	decision := data.attestpolicy.v1.decision with input as ["not", "an", "object"] with data.attestpolicy.config as config
	denied(decision, {"input.invalid"})
}

test_decision_defined_for_non_object_config if {
	decision := decide_config(claims, "not an object")
	denied(decision, {"config.invalid"})
	has_reason(decision, "config.invalid", "data.attestpolicy.config: must be an object")
}

test_decision_allows_only_without_violations if {
	count(data.attestpolicy.v1.violation) == 0 with input as claims with data.attestpolicy.config as config
	decide(claims).allow == true
}
