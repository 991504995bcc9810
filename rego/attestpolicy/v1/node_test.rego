package attestpolicy.v1_test

import rego.v1

test_node_unverified if {
	decision := decide(with_value(claims, ["node", "verified"], false))
	denied(decision, {"node.unverified"})
	every verified in [null, "yes"] {
		denied(decide(with_value(claims, ["node", "verified"], verified)), {"input.invalid"})
	}
}

test_node_nonce_not_verified if {
	decision := decide(with_value(claims, ["node", "nonce_verified"], false))
	denied(decision, {"node.nonce"})
	has_reason(decision, "node.nonce", "node evidence is not bound to the expected nonce")
	decide(without(claims, ["node", "nonce_verified"])).reasons == invalid_input("input.node.nonce_verified: is required")
}

test_node_age_exactly_at_limit_is_fresh if {
	decision := decide(with_value(claims, ["node", "issued_at"], "2026-11-22T09:55:00Z"))
	allowed(decision)
	decision.valid_until == "2026-11-22T10:00:00Z"
}

test_node_one_second_over_age_limit_is_stale if {
	decision := decide(with_value(claims, ["node", "issued_at"], "2026-11-22T09:54:59Z"))
	denied(decision, {"node.stale"})
	has_reason(
		decision, "node.stale",
		"node evidence issued at 2026-11-22T09:54:59Z is older than limits.max_evidence_age_seconds",
	)
}

test_node_one_nanosecond_over_age_limit_is_stale if {
	denied(decide(with_value(claims, ["now"], "2026-11-22T10:04:00.000000001Z")), {"node.stale"})
	allowed(decide(with_value(claims, ["now"], "2026-11-22T10:04:00Z")))
}

test_node_skew_exactly_at_limit_is_accepted if {
	decision := decide(with_value(claims, ["node", "issued_at"], "2026-11-22T10:00:30Z"))
	allowed(decision)
	decision.valid_until == "2026-11-22T10:05:30Z"
}

test_node_age_limit_is_exact_to_the_nanosecond if {
	allowed(decide(with_value(claims, ["node", "issued_at"], "2026-11-22T09:55:00Z")))
	denied(decide(with_value(claims, ["node", "issued_at"], "2026-11-22T09:54:59.999999999Z")), {"node.stale"})
	fractional := with_value(config, ["limits", "max_evidence_age_seconds"], 130.126614242)
	denied(decide_config(claims, fractional), {"config.invalid"})
}

test_node_one_second_over_skew_is_future if {
	decision := decide(with_value(claims, ["node", "issued_at"], "2026-11-22T10:00:31Z"))
	denied(decision, {"node.future"})
	has_reason(
		decision, "node.future",
		"node evidence issued at 2026-11-22T10:00:31Z is ahead of now by more than limits.clock_skew_seconds",
	)
}

test_node_skew_compares_instants_across_offsets if {
	allowed(decide(with_value(claims, ["node", "issued_at"], "2026-11-22T11:00:30+01:00")))
	denied(decide(with_value(claims, ["node", "issued_at"], "2026-11-22T11:00:31+01:00")), {"node.future"})
}

test_node_expires_at_now_is_expired if {
	decision := decide(with_value(claims, ["node", "expires_at"], "2026-11-22T10:00:00Z"))
	denied(decision, {"node.expired", "ttl.too_short"})
	has_reason(decision, "node.expired", "node evidence expired at 2026-11-22T10:00:00Z")
}

test_node_expiring_after_now_is_not_expired if {
	decision := decide(with_value(claims, ["node", "expires_at"], "2026-11-22T10:00:00.000000001Z"))
	denied(decision, {"ttl.too_short"})
}

test_node_measurement_differs if {
	decision := decide(with_value(claims, ["node", "measurements", "pcr.sha256.7"], pcr1))
	denied(decision, {"node.measurement_mismatch"})
	decision.reasons == [{"code": "node.measurement_mismatch", "message": "measurement pcr.sha256.7 differs from the baseline"}]
}

test_node_measurement_missing if {
	decision := decide(without(claims, ["node", "measurements", "pcr.sha256.0"]))
	decision.reasons == [{"code": "node.measurement_mismatch", "message": "measurement pcr.sha256.0 is missing"}]
}

test_node_measurements_absent_or_null_are_empty if {
	every doc in [with_value(claims, ["node", "measurements"], null), without(claims, ["node", "measurements"])] {
		decision := decide(doc)
		denied(decision, {"node.measurement_mismatch"})
		count(decision.reasons) == 2
	}
}

test_node_extra_measurements_are_ignored if {
	allowed(decide(with_value(claims, ["node", "measurements", "pcr.sha256.23"], pcr1)))
}

test_node_kind_without_baseline_is_not_measured if {
	doc := json.patch(claims, [
		{"op": "add", "path": ["node", "kind"], "value": "aws_iid"},
		{"op": "add", "path": ["node", "measurements"], "value": {}},
	])
	allowed(decide(doc))
}

test_node_baseline_not_an_object if {
	cfg := with_value(config, ["node_baselines", "tpm"], [pcr0, pcr7])
	decide_config(claims, cfg).reasons == invalid_config("config.node_baselines[tpm]: must be an object")
	bad_value := with_value(config, ["node_baselines", "tpm", "pcr.sha256.0"], "AA")
	message := "config.node_baselines[tpm].pcr.sha256.0: must be 2 to 4096 lowercase hex digits, in pairs"
	decide_config(claims, bad_value).reasons == invalid_config(message)
	# Only the baseline of the node's kind is read.
	allowed(decide_config(claims, with_value(config, ["node_baselines", "sev_snp"], "not read")))
}

test_node_revoked if {
	decision := decide(with_value(claims, ["node", "id"], "tpm-ek-retired"))
	denied(decision, {"node.revoked"})
	has_reason(decision, "node.revoked", "node tpm-ek-retired is revoked: decommissioned")
}

# A workload names the node kinds it accepts; each needs a baseline (maybe empty).
test_node_kind_outside_the_workloads_kinds_is_denied if {
	cfg := json.patch(config, [
		{"op": "add", "path": ["workloads", spiffe_id, "node_kinds"], "value": ["sev_snp"]},
		{"op": "add", "path": ["node_baselines", "sev_snp"], "value": {}},
	])
	decision := decide_config(claims, cfg)
	decision.reasons == [{"code": "node.kind_not_allowed", "message": "node kind tpm is not allowed for workload spiffe://acme.test/ns/shop/sa/api"}]
}

test_node_kind_among_the_workloads_kinds_is_allowed if {
	cfg := json.patch(config, [
		{"op": "add", "path": ["workloads", spiffe_id, "node_kinds"], "value": ["aws_iid", "tpm"]},
		{"op": "add", "path": ["node_baselines", "aws_iid"], "value": {}},
	])
	allowed(decide_config(claims, cfg))
	allowed(decide_config(claims, workload_with("node_kinds", null)))
}

test_node_kinds_without_a_baseline_are_a_config_error if {
	cfg := workload_with("node_kinds", ["tpm", "gce_iit"])
	decision := decide_config(claims, cfg)
	decision.reasons == [{"code": "config.invalid", "message": "config.workloads[spiffe://acme.test/ns/shop/sa/api].node_kinds: gce_iit has no entry in config.node_baselines"}]
	# an empty baseline says the kind has no measurements to check
	allowed(decide_config(claims, json.patch(cfg, [{"op": "add", "path": ["node_baselines", "gce_iit"], "value": {}}])))
}

test_node_kinds_must_be_an_array_of_node_kinds if {
	some bad in ["tpm", ["TPM"], [1], [""]]
	decision := decide_config(claims, workload_with("node_kinds", bad))
	codes(decision) == {"config.invalid"}
}
