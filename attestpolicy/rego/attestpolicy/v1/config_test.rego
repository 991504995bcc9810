package attestpolicy.v1_test

import rego.v1

test_config_missing_is_invalid if {
	decision := data.attestpolicy.v1.decision with input as claims
	not decision.allow
	has_reason(decision, "config.invalid", "data.attestpolicy.config must be an object")
	has_reason(decision, "config.invalid", "config.limits.min_ttl_seconds must be a number > 0 and <= 2147483647")
}

test_config_each_limit_is_required if {
	every case in [
		["max_evidence_age_seconds", ">= 0"], ["clock_skew_seconds", ">= 0"],
		["min_ttl_seconds", "> 0"], ["default_ttl_seconds", "> 0"],
	] {
		[name, bound] := case
		decision := decide_config(claims, without(config, ["limits", name]))
		denied(decision, {"config.invalid"})
		message := sprintf("config.limits.%s must be a number %s and <= 2147483647", [name, bound])
		decision.reasons == [{"code": "config.invalid", "message": message}]
	}
}

test_config_limits_out_of_range_or_ill_typed if {
	every case in [
		["max_evidence_age_seconds", -1], ["clock_skew_seconds", -0.5],
		["min_ttl_seconds", 0], ["default_ttl_seconds", -60],
		["max_evidence_age_seconds", "300"], ["min_ttl_seconds", null], ["default_ttl_seconds", true],
		["max_evidence_age_seconds", 2147483648], ["clock_skew_seconds", 1e30],
		["default_ttl_seconds", 2147483648], ["min_ttl_seconds", 1e300],
	] {
		[name, value] := case
		denied(decide_config(claims, with_value(config, ["limits", name], value)), {"config.invalid"})
	}
}

test_config_limits_not_an_object if {
	decision := decide_config(claims, with_value(config, ["limits"], [300, 30, 60, 900]))
	denied(decision, {"config.invalid"})
	count(decision.reasons) == 4
}

test_config_zero_age_and_skew_are_valid if {
	cfg := json.patch(config, [
		{"op": "add", "path": ["limits", "max_evidence_age_seconds"], "value": 0},
		{"op": "add", "path": ["limits", "clock_skew_seconds"], "value": 0},
	])
	allowed(decide_config(with_value(claims, ["node", "issued_at"], claims.now), cfg))
	denied(decide_config(claims, cfg), {"node.stale"})
}

test_config_revocation_list_not_an_array if {
	every name in ["spiffe_ids", "signer_subjects", "node_ids", "image_digests"] {
		decision := decide_config(claims, with_value(config, ["revoked", name], "tpm-ek-node-1"))
		denied(decision, {"config.invalid"})
		has_reason(decision, "config.invalid", sprintf("config.revoked.%s must be an array", [name]))
	}
}

test_config_revoked_and_baselines_not_objects if {
	revoked := decide_config(claims, with_value(config, ["revoked"], ["tpm-ek-node-1"]))
	denied(revoked, {"config.invalid"})
	has_reason(revoked, "config.invalid", "config.revoked must be an object")
	baselines := decide_config(claims, with_value(config, ["node_baselines"], "tpm"))
	denied(baselines, {"config.invalid"})
	has_reason(baselines, "config.invalid", "config.node_baselines must be an object")
}

test_config_missing_or_null_maps_are_empty if {
	minimal := {
		"workloads": {spiffe_id: {"namespace": "shop", "service_account": "api", "require": ["node"]}},
		"audiences": {"vault": {"max_ttl_seconds": 1800}},
		"limits": config.limits,
		"revoked": null,
		"node_baselines": null,
	}
	doc := without(without(without(claims, ["image"]), ["provenance"]), ["runtime"])
	decision := decide_config(doc, minimal)
	allowed(decision)
	decision.ttl_seconds == 900
}

test_config_missing_trust_lists_deny_evidence if {
	cfg := without(without(config, ["trusted_signers"]), ["trusted_builders"])
	denied(decide_config(claims, cfg), {"image.untrusted_signer", "provenance.untrusted_builder"})
}
