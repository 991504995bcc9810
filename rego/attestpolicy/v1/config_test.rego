package attestpolicy.v1_test

import rego.v1

# config_reasons(cfg) is the reasons of the decision for the fixture claim set under cfg.
config_reasons(cfg) := decide_config(claims, cfg).reasons

# invalid_config(message) is the reasons of a deny for one configuration problem.
invalid_config(message) := [{"code": "config.invalid", "message": message}]

test_config_missing_is_invalid if {
	decision := data.attestpolicy.v1.decision with input as claims
	denied(decision, {"config.invalid"})
	has_reason(decision, "config.invalid", "data.attestpolicy.config: must be an object")
	has_reason(decision, "config.invalid", "config.limits: is required")
}

test_config_not_an_object_is_invalid if {
	every value in ["not an object", [config], 1, null] {
		decision := decide_config(claims, value)
		denied(decision, {"config.invalid"})
		has_reason(decision, "config.invalid", "data.attestpolicy.config: must be an object")
	}
}

test_config_each_limit_is_required if {
	every case in [
		["max_evidence_age_seconds", ">= 0"], ["clock_skew_seconds", ">= 0"],
		["min_ttl_seconds", "> 0"], ["default_ttl_seconds", "> 0"],
	] {
		[name, bound] := case
		message := sprintf("config.limits.%s: must be an integer %s and <= 2147483647", [name, bound])
		config_reasons(without(config, ["limits", name])) == invalid_config(message)
		config_reasons(with_value(config, ["limits", name], null)) == invalid_config(message)
	}
}

test_config_limits_out_of_range_or_ill_typed if {
	every case in [
		["max_evidence_age_seconds", -1], ["clock_skew_seconds", -0.5], ["clock_skew_seconds", 0.5],
		["min_ttl_seconds", 0], ["default_ttl_seconds", -60], ["default_ttl_seconds", 900.5],
		["max_evidence_age_seconds", "300"], ["default_ttl_seconds", true],
		["max_evidence_age_seconds", 2147483648], ["clock_skew_seconds", 1e30],
		["default_ttl_seconds", 2147483648], ["min_ttl_seconds", 1e300],
	] {
		[name, value] := case
		denied(decide_config(claims, with_value(config, ["limits", name], value)), {"config.invalid"})
	}
}

test_config_integral_floats_are_integers if {
	cfg := json.patch(config, [
		{"op": "add", "path": ["limits", "default_ttl_seconds"], "value": 900.0},
		{"op": "add", "path": ["limits", "min_ttl_seconds"], "value": 60.0},
	])
	decision := decide_config(claims, cfg)
	allowed(decision)
	json.marshal(decision.ttl_seconds) == "900" # an integer in both engines, not 900.0
	json.marshal(decide_config(claims, workload_with("max_ttl_seconds", 600.0)).ttl_seconds) == "600"
	long := with_value(claims, ["request", "requested_ttl_seconds"], 5000.0)
	json.marshal(decide_config(long, with_value(config, ["audiences", "vault", "max_ttl_seconds"], 700.0)).ttl_seconds) == "700"
	json.marshal(decide_config(long, with_value(config, ["limits", "max_evidence_age_seconds"], 300.0)).ttl_seconds) == "1800"
}

test_config_limits_not_an_object if {
	decision := decide_config(claims, with_value(config, ["limits"], [300, 30, 60, 900]))
	denied(decision, {"config.invalid"})
	has_reason(decision, "config.invalid", "config.limits: must be an object")
	count(decision.reasons) == 5
}

test_config_unknown_sections_and_members if {
	config_reasons(with_value(config, ["trusted_signer"], {})) == invalid_config("config.trusted_signer: unknown section")
	config_reasons(with_value(config, ["limits", "max_ttl"], 5)) == invalid_config("config.limits.max_ttl: unknown member")
	config_reasons(with_value(config, ["revoked", "images"], {})) == invalid_config("config.revoked.images: unknown member")
}

test_config_zero_age_and_skew_are_valid if {
	cfg := json.patch(config, [
		{"op": "add", "path": ["limits", "max_evidence_age_seconds"], "value": 0},
		{"op": "add", "path": ["limits", "clock_skew_seconds"], "value": 0},
	])
	allowed(decide_config(with_value(claims, ["node", "issued_at"], claims.now), cfg))
	denied(decide_config(claims, cfg), {"node.stale"})
}

test_config_revocation_map_not_an_object if {
	every name in ["spiffe_ids", "signer_subjects", "node_ids", "image_digests"] {
		every value in ["tpm-ek-node-1", ["tpm-ek-node-1"], 1] {
			message := sprintf("config.revoked.%s: must be an object", [name])
			config_reasons(with_value(config, ["revoked", name], value)) == invalid_config(message)
		}
	}
}

test_config_sections_not_objects if {
	every name in ["trusted_signers", "trusted_builders", "workloads", "node_baselines", "audiences", "revoked"] {
		message := sprintf("config.%s: must be an object", [name])
		has_reason(decide_config(claims, with_value(config, [name], ["x"])), "config.invalid", message)
	}
}

test_config_missing_or_null_sections_are_empty if {
	minimal := {
		"workloads": {spiffe_id: {"namespace": "shop", "service_account": "api", "require": ["node"]}},
		"audiences": {"vault": {"max_ttl_seconds": 1800}},
		"limits": config.limits,
		"revoked": null,
		"node_baselines": null,
		"trusted_signers": {"issuers": null, "key_ids": null},
	}
	doc := without(without(without(claims, ["image"]), ["provenance"]), ["runtime"])
	decision := decide_config(doc, minimal)
	allowed(decision)
	decision.ttl_seconds == 900
	allowed(decide_config(doc, with_value(minimal, ["revoked"], {"node_ids": null})))
}

test_config_missing_trust_lists_deny_evidence if {
	cfg := without(without(config, ["trusted_signers"]), ["trusted_builders"])
	denied(decide_config(claims, cfg), {"image.untrusted_signer", "provenance.untrusted_builder"})
}

test_config_invalid_input_and_config_are_both_reported if {
	decision := decide_config(with_value(claims, ["now"], "soon"), without(config, ["limits"]))
	denied(decision, {"input.invalid", "config.invalid"})
}
