package attestpolicy.v1_test

import rego.v1

test_image_tag_only_reference_is_not_pinned if {
	doc := json.patch(claims, [
		{"op": "add", "path": ["image", "reference"], "value": "registry.acme.test/shop/api:v1.2.3"},
		{"op": "add", "path": ["image", "digest"], "value": null},
	])
	decision := decide(doc)
	denied(decision, {"image.digest_required", "image.not_allowed", "provenance.subject_mismatch"})
	has_reason(decision, "image.digest_required", "image digest is missing or not a sha256 digest")
	has_reason(decision, "image.not_allowed", sprintf("image (none) is not allowed for workload %s", [spiffe_id]))
	cfg := without(config, ["workloads", spiffe_id, "image_digests"])
	denied(decide_config(doc, cfg), {"image.digest_required", "provenance.subject_mismatch"})
}

test_image_digest_not_sha256 if {
	every bad in [
		"sha512:58639897b0b414a46c61acbf3a44d519a72d03c1060abef75cdb5cf5fca9fe54",
		"sha256:58639897B0B414A46C61ACBF3A44D519A72D03C1060ABEF75CDB5CF5FCA9FE54",
		"sha256:58639897b0b414a46c61acbf3a44d519a72d03c1060abef75cdb5cf5fca9fe5",
		"sha256:58639897b0b414a46c61acbf3a44d519a72d03c1060abef75cdb5cf5fca9fe54a",
		"sha256:zz639897b0b414a46c61acbf3a44d519a72d03c1060abef75cdb5cf5fca9fe54",
		"58639897b0b414a46c61acbf3a44d519a72d03c1060abef75cdb5cf5fca9fe54",
		1234,
	] {
		decision := decide(with_value(claims, ["image", "digest"], bad))
		not decision.allow
		has_reason(decision, "image.digest_required", "image digest is missing or not a sha256 digest")
	}
}

test_image_reference_pinned_to_another_digest if {
	reference := concat("", ["registry.acme.test/shop/api@", other_digest])
	decision := decide(with_value(claims, ["image", "reference"], reference))
	denied(decision, {"image.digest_required"})
	has_reason(decision, "image.digest_required", sprintf("image reference %s is not pinned by digest %s", [reference, digest]))
}

test_image_reference_tag_with_valid_digest_is_not_pinned if {
	decision := decide(with_value(claims, ["image", "reference"], "registry.acme.test/shop/api:v1.2.3"))
	denied(decision, {"image.digest_required"})
}

test_image_reference_missing if {
	decision := decide(without(claims, ["image", "reference"]))
	denied(decision, {"image.digest_required"})
	has_reason(decision, "image.digest_required", sprintf("image reference (none) is not pinned by digest %s", [digest]))
}

test_image_reference_by_digest_only_is_pinned if {
	allowed(decide(with_value(claims, ["image", "reference"], concat("", ["registry.acme.test/shop/api@", digest]))))
}

test_image_unsigned if {
	every signatures in [
		[],
		[{"verified": false, "issuer": github_issuer, "subject": release_subject}],
		[{"verified": "true", "issuer": github_issuer, "subject": release_subject}],
		[{"issuer": github_issuer, "subject": release_subject}],
		"not a list",
		null,
	] {
		decision := decide(with_value(claims, ["image", "signatures"], signatures))
		denied(decision, {"image.unsigned"})
		has_reason(decision, "image.unsigned", "image has no verified signature")
	}
}

test_image_untrusted_signer if {
	every signature in [
		{"verified": true, "issuer": "https://accounts.google.com", "subject": release_subject},
		{"verified": true, "issuer": github_issuer, "subject": "https://github.com/evil/api/.github/workflows/release.yml@refs/tags/v1.2.3"},
		{"verified": true, "issuer": github_issuer, "subject": "https://github.com/acme/api/.github/workflows/ci.yml@refs/heads/main"},
		{"verified": true, "issuer": null, "subject": release_subject},
		{"verified": true, "issuer": github_issuer, "subject": null},
		{"verified": true, "issuer": github_issuer},
	] {
		decision := decide(with_value(claims, ["image", "signatures"], [signature]))
		denied(decision, {"image.untrusted_signer"})
		has_reason(decision, "image.untrusted_signer", "no verified image signature is from a trusted, unrevoked signer")
	}
}

test_image_unverified_trusted_signature_does_not_count if {
	signatures := [
		{"verified": false, "issuer": github_issuer, "subject": release_subject},
		{"verified": true, "issuer": "https://accounts.google.com", "subject": "mallory@evil.test"},
	]
	denied(decide(with_value(claims, ["image", "signatures"], signatures)), {"image.untrusted_signer"})
}

test_image_one_trusted_signature_is_enough if {
	signatures := [
		{"verified": true, "issuer": "https://accounts.google.com", "subject": "mallory@evil.test"},
		{"verified": false},
		{"verified": true, "issuer": github_issuer, "subject": release_subject},
	]
	allowed(decide(with_value(claims, ["image", "signatures"], signatures)))
}

test_image_signer_glob_star_crosses_slashes_and_dots if {
	cfg := with_value(config, ["trusted_signers"], [{"issuer": github_issuer, "subject": "https://github.com/acme/*"}])
	allowed(decide_config(claims, cfg))
	exact := with_value(config, ["trusted_signers"], [{"issuer": github_issuer, "subject": release_subject}])
	allowed(decide_config(claims, exact))
	other := with_value(config, ["trusted_signers"], [{"issuer": github_issuer, "subject": "https://github.com/acme/web/*"}])
	denied(decide_config(claims, other), {"image.untrusted_signer"})
}

test_image_revoked_signer_never_trusted if {
	cfg := with_value(config, ["revoked", "signer_subjects"], [release_subject])
	decision := decide_config(claims, cfg)
	denied(decision, {"image.untrusted_signer"})
}

test_image_revoked if {
	doc := json.patch(claims, [
		{"op": "add", "path": ["image", "digest"], "value": revoked_digest},
		{"op": "add", "path": ["image", "reference"], "value": concat("", ["registry.acme.test/shop/api@", revoked_digest])},
		{"op": "add", "path": ["provenance", "subject_digests"], "value": [revoked_digest]},
		{"op": "add", "path": ["runtime", "image_digest"], "value": revoked_digest},
	])
	cfg := workload_with("image_digests", [revoked_digest])
	decision := decide_config(doc, cfg)
	denied(decision, {"image.revoked"})
	has_reason(decision, "image.revoked", sprintf("image %s is revoked", [revoked_digest]))
}

test_image_not_allowed if {
	cfg := workload_with("image_digests", [other_digest])
	decision := decide_config(claims, cfg)
	denied(decision, {"image.not_allowed"})
	has_reason(decision, "image.not_allowed", sprintf("image %s is not allowed for workload %s", [digest, spiffe_id]))
	denied(decide_config(claims, workload_with("image_digests", [])), {"image.not_allowed"})
}

test_image_any_digest_without_allow_list if {
	allowed(decide_config(claims, without(config, ["workloads", spiffe_id, "image_digests"])))
}

test_image_signer_pattern_with_other_glob_syntax_is_invalid if {
	every pattern in [
		"https://github.com/acme/api/.github/workflows/release.yml@refs/tags/v?.*",
		"https://github.com/acme/{api,web}/*",
		"https://github.com/acme/[",
		"https://github.com/acme/api\\*",
	] {
		signers := [config.trusted_signers[1], {"issuer": github_issuer, "subject": pattern}]
		decision := decide_config(claims, with_value(config, ["trusted_signers"], signers))
		denied(decision, {"config.invalid", "image.untrusted_signer"})
		has_reason(decision, "config.invalid", "config.trusted_signers[1].subject may use no glob syntax but *")
	}
}

test_image_signer_entries_of_the_wrong_type_never_match if {
	signers := ["https://github.com/acme/*", {"issuer": github_issuer, "subject": 5}, {"issuer": github_issuer}]
	denied(decide_config(claims, with_value(config, ["trusted_signers"], signers)), {"image.untrusted_signer"})
	denied(decide_config(claims, with_value(config, ["trusted_signers"], "all")), {"image.untrusted_signer"})
}

test_image_key_signed_signature_trusted_by_key_id if {
	key_id := "sha256:c87a79018f346cc02482448b77296b0bea143ef2ccab99b04776fb0f638f301f"
	signature := {"verified": true, "issuer": null, "subject": null, "key_id": key_id}
	doc := with_value(claims, ["image", "signatures"], [signature])
	denied(decide(doc), {"image.untrusted_signer"})
	trusting := with_value(config, ["trusted_signers"], [{"key_id": key_id}])
	allowed(decide_config(doc, trusting))
	revoked := with_value(trusting, ["revoked", "signer_subjects"], [key_id])
	denied(decide_config(doc, revoked), {"image.untrusted_signer"})
	unverified := with_value(doc, ["image", "signatures"], [object.union(signature, {"verified": false})])
	denied(decide_config(unverified, trusting), {"image.unsigned"})
	other_key := with_value(doc, ["image", "signatures", 0, "key_id"], "sha256:00")
	denied(decide_config(other_key, trusting), {"image.untrusted_signer"})
}

test_image_key_id_signer_never_matches_keyless_signature if {
	trusting := with_value(config, ["trusted_signers"], [{"key_id": release_subject}])
	denied(decide_config(claims, trusting), {"image.untrusted_signer"})
}
