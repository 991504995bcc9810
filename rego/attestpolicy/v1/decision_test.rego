package attestpolicy.v1_test

import rego.v1

test_decision_allow_is_exact if {
	decide(claims) == {
		"allow": true,
		"ttl_seconds": 900,
		"reasons": [],
		"ttl_bound_by": "default",
		"valid_until": "2026-11-22T10:04:00Z",
		"ttl_terms": [
			{"name": "default", "seconds": 900},
			{"name": "audience", "seconds": 1800},
			{"name": "workload", "seconds": 3600},
			{"name": "evidence_expiry", "until": "2026-11-22T11:00:00Z"},
		],
		"revocable": [
			["image_digests", "sha256:58639897b0b414a46c61acbf3a44d519a72d03c1060abef75cdb5cf5fca9fe54"],
			["node_ids", "tpm-ek-node-1"],
			["signer_subjects", "https://github.com/acme/api/.github/workflows/release.yml@refs/tags/v1.2.3"],
			["spiffe_ids", "spiffe://acme.test/ns/shop/sa/api"],
		],
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
		"ttl_terms": [],
		"revocable": [],
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

# The revocable values of an allow are exactly what the revocation rules compare.
test_revocable_names_key_ids_and_skips_unverified_signatures if {
	signatures := [
		{"issuer": null, "subject": null, "key_id": "cosign-key-1", "verified": true},
		{"issuer": github_issuer, "subject": "https://github.com/acme/api/.github/workflows/other.yml@refs/heads/main", "key_id": null, "verified": false},
		{"issuer": github_issuer, "subject": release_subject, "key_id": null, "verified": true},
	]
	decision := decide(with_value(claims, ["image", "signatures"], signatures))
	allowed(decision)
	decision.revocable == [
		["image_digests", digest],
		["node_ids", "tpm-ek-node-1"],
		["signer_subjects", "cosign-key-1"],
		["signer_subjects", release_subject],
		["spiffe_ids", spiffe_id],
	]
}

test_revocable_without_image_or_node if {
	cfg := workload_with("require", ["runtime"])
	doc := json.patch(claims, [
		{"op": "remove", "path": ["image"]},
		{"op": "remove", "path": ["node"]},
		{"op": "remove", "path": ["provenance"]},
		{"op": "add", "path": ["runtime", "image_digest"], "value": null},
	])
	decision := decide_config(doc, cfg)
	allowed(decision)
	decision.revocable == [["spiffe_ids", spiffe_id]]
}

# Each value in revocable, once revoked, turns this allow into a deny.
test_revoking_any_revocable_value_denies if {
	decision := decide(claims)
	allowed(decision)
	count(decision.revocable) == 4
	every pair in decision.revocable {
		not allowed(decide_config(claims, with_value(config, ["revoked", pair[0], pair[1]], "test")))
	}
}

test_ttl_terms_of_a_request_without_expiring_evidence if {
	doc := json.patch(claims, [
		{"op": "add", "path": ["request", "requested_ttl_seconds"], "value": 600},
		{"op": "add", "path": ["runtime", "expires_at"], "value": null},
	])
	decision := decide_config(doc, workload_with("max_ttl_seconds", null))
	decision.ttl_terms == [
		{"name": "request", "seconds": 600},
		{"name": "audience", "seconds": 1800},
	]
	decision.valid_until == "2026-11-22T10:04:00Z"
}

# Runtime revocations (data.attestpolicy.revocations, kept apart from the configuration)
# revoke like config.revoked, each with its reason.
revoked_at_runtime(member, value, reason) := decision if {
	decision := data.attestpolicy.v1.decision with input as claims
		with data.attestpolicy.config as config
		with data.attestpolicy.revocations as {member: {value: reason}}
}

test_runtime_revocations_deny_each_revocable_value if {
	revoked_at_runtime("spiffe_ids", spiffe_id, "retired").reasons == [{"code": "subject.revoked", "message": "workload spiffe://acme.test/ns/shop/sa/api is revoked: retired"}]
	revoked_at_runtime("node_ids", "tpm-ek-node-1", "").reasons == [{"code": "node.revoked", "message": "node tpm-ek-node-1 is revoked"}]
	revoked_at_runtime("image_digests", digest, "CVE").reasons == [{"code": "image.revoked", "message": sprintf("image %s is revoked: CVE", [digest])}]
	codes(revoked_at_runtime("signer_subjects", release_subject, "leaked")) == {"image.untrusted_signer"}
}

test_runtime_revocations_of_other_values_change_nothing if {
	allowed(revoked_at_runtime("node_ids", "tpm-ek-other", "x"))
	allowed(revoked_at_runtime("unknown_member", spiffe_id, "x"))
}

test_runtime_revocations_that_are_not_objects_are_ignored if {
	decision := data.attestpolicy.v1.decision with input as claims
		with data.attestpolicy.config as config
		with data.attestpolicy.revocations as {"node_ids": ["tpm-ek-node-1"], "spiffe_ids": "x"}
	allowed(decision)
	not_an_object := data.attestpolicy.v1.decision with input as claims
		with data.attestpolicy.config as config
		with data.attestpolicy.revocations as [1]
	allowed(not_an_object)
}
