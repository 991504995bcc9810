package attestpolicy.v1_test

import rego.v1

# Which claim sets the fast path decides. Where it applies, decide() checks that it
# agrees with the violation rules (fixtures_test.rego); these tests check that it does
# apply to the usual shapes of an allowed claim set (else the policy would be correct
# but slow), and that an allowed claim set it leaves alone is still allowed.

# fast_allowed(doc, cfg) holds when the fast path decides claim set doc under cfg, and
# its decision is a well-formed allow (that of the violation rules: decide_config).
fast_allowed(doc, cfg) if {
	decision := fast(doc, cfg)
	allowed(decision)
	decision == decide_config(doc, cfg)
}

# slow_allowed(doc, cfg) holds when the fast path leaves claim set doc under cfg to the
# violation rules, and they allow it.
slow_allowed(doc, cfg) if {
	not fast(doc, cfg)
	allowed(decide_config(doc, cfg))
}

test_fast_path_decides_the_fixture_claims if {
	fast(claims, config) == {
		"allow": true,
		"ttl_seconds": 900,
		"reasons": [],
		"ttl_bound_by": "default",
		"valid_until": "2026-11-22T10:04:00Z",
	}
	fast_allowed(claims, config)
}

test_fast_path_decides_without_evidence_not_required if {
	every class in ["image", "provenance", "node", "runtime"] {
		others := workload_with("require", [c | some c in ["image", "provenance", "node", "runtime"]; c != class])
		fast_allowed(without(claims, [class]), others)
		fast_allowed(with_value(claims, [class], null), others)
	}
	cfg := workload_with("require", [])
	fast_allowed(json.patch(claims, [
		{"op": "remove", "path": ["image"]},
		{"op": "remove", "path": ["provenance"]},
		{"op": "remove", "path": ["node"]},
		{"op": "remove", "path": ["runtime"]},
	]), cfg)
	fast_allowed(without(without(claims, ["image"]), ["provenance"]), workload_with("require", ["node", "runtime"]))
}

test_fast_path_decides_every_ttl_term if {
	fast_allowed(with_value(claims, ["request", "requested_ttl_seconds"], 600), config)
	fast_allowed(with_value(claims, ["request", "requested_ttl_seconds"], 600.5), config)
	fast_allowed(with_value(claims, ["request", "requested_ttl_seconds"], 7200), config)
	fast_allowed(claims, workload_with("max_ttl_seconds", 300))
	fast_allowed(with_value(claims, ["node", "expires_at"], "2026-11-22T10:32:00.5+00:30"), config)
	fast_allowed(without(claims, ["node", "expires_at"]), config)
	fast_allowed(with_value(claims, ["runtime", "expires_at"], null), config)
	fast_allowed(with_value(claims, ["runtime", "expires_at"], "2099-12-31T23:59:59Z"), config)
	fast_allowed(with_value(claims, ["node", "issued_at"], "2026-11-22T09:59:00.000000001Z"), config)
	fast_allowed(with_value(claims, ["now"], "2026-11-22T11:00:00.25+01:00"), config)
}

test_fast_path_decides_minimal_configuration_entries if {
	cfg := json.patch(config, [
		{"op": "remove", "path": ["workloads", spiffe_id, "source_repo"]},
		{"op": "remove", "path": ["workloads", spiffe_id, "image_digests"]},
		{"op": "remove", "path": ["workloads", spiffe_id, "max_ttl_seconds"]},
		{"op": "add", "path": ["node_baselines"], "value": {}},
	])
	fast_allowed(claims, cfg)
	fast_allowed(with_value(claims, ["node", "measurements"], {}), cfg)
}

test_fast_path_decides_every_form_of_trusted_signature if {
	exact := with_value(config, ["trusted_signers"], [{"issuer": github_issuer, "subject": release_subject}])
	fast_allowed(claims, exact)
	star_only := with_value(config, ["trusted_signers"], [{"issuer": github_issuer, "subject": "*"}])
	fast_allowed(claims, star_only)
	key_id := "sha256:c87a79018f346cc02482448b77296b0bea143ef2ccab99b04776fb0f638f301f"
	signature := {"verified": true, "issuer": null, "subject": null, "key_id": key_id}
	key_signed := with_value(claims, ["image", "signatures"], [signature])
	fast_allowed(key_signed, with_value(config, ["trusted_signers"], [{"key_id": key_id}]))
	later := [{"verified": false}, {"verified": true, "issuer": github_issuer, "subject": release_subject}]
	fast_allowed(with_value(claims, ["image", "signatures"], later), config)
}

test_fast_path_decides_runtime_image_digests if {
	fast_allowed(with_value(claims, ["runtime", "image_digest"], null), config)
	cfg := workload_with("require", ["provenance", "node", "runtime"])
	fast_allowed(without(claims, ["image"]), cfg)
	fast_allowed(with_value(without(claims, ["image"]), ["runtime", "image_digest"], other_digest), cfg)
	fast_allowed(with_value(without(claims, ["image"]), ["runtime", "image_digest"], null), cfg)
}

test_fast_path_leaves_unusual_allowed_claim_sets_to_the_rules if {
	slow_allowed(without(claims, ["request", "requested_ttl_seconds"]), config)
	slow_allowed(without(claims, ["runtime", "image_digest"]), config)
	slow_allowed(claims, workload_with("source_repo", null))
	slow_allowed(claims, workload_with("max_ttl_seconds", null))
	slow_allowed(claims, without(config, ["revoked", "node_ids"]))
	slow_allowed(claims, without(config, ["node_baselines"]))
	slow_allowed(claims, with_value(config, ["node_baselines", "tpm"], null))
	two_stars := "https://github.com/*/api/.github/workflows/release.yml@refs/tags/*"
	slow_allowed(claims, with_value(config, ["trusted_signers"], [{"issuer": github_issuer, "subject": two_stars}]))
}

test_fast_path_does_not_decide_a_deny if {
	every doc in [
		with_value(claims, ["node", "verified"], false),
		with_value(claims, ["node", "issued_at"], "2026-11-22T09:54:59Z"),
		with_value(claims, ["runtime", "expires_at"], "2026-11-22T10:00:00Z"),
		with_value(claims, ["runtime", "expires_at"], "2026-11-22T10:00:59Z"),
		with_value(claims, ["runtime", "image_digest"], other_digest),
		with_value(claims, ["node", "measurements", "pcr.sha256.7"], pcr1),
		with_value(claims, ["image", "signatures", 0, "subject"], "https://github.com/evil/api/.github/workflows/a.yml@v1"),
		with_value(claims, ["now"], "2026-02-30T10:00:00Z"),
		with_value(claims, ["node", "expires_at"], 1795341600),
		with_value(claims, ["request", "requested_ttl_seconds"], -5),
	] {
		not fast(doc, config)
		not decide(doc).allow
	}
	every cfg in [
		with_value(config, ["trusted_signers", 0, "subject"], "release@acme.test?"),
		with_value(config, ["revoked", "image_digests"], digest),
		with_value(config, ["limits", "min_ttl_seconds"], "60"),
		workload_with("require", ["image", "sbom"]),
	] {
		not fast(claims, cfg)
		not decide_config(claims, cfg).allow
	}
}
