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

test_image_digest_not_sha256_is_invalid_input if {
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
		denied(decision, {"input.invalid"})
		decision.reasons == [{"code": "input.invalid", "message": "input.image.digest: must be a sha256 digest (sha256: and 64 lowercase hex digits)"}]
	}
}

test_image_digest_absent_or_null_is_required if {
	every doc in [without(claims, ["image", "digest"]), with_value(claims, ["image", "digest"], null)] {
		decision := decide_config(doc, without(config, ["workloads", spiffe_id, "image_digests"]))
		denied(decision, {"image.digest_required", "provenance.subject_mismatch"})
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

test_image_reference_missing_is_invalid_input if {
	decision := decide(without(claims, ["image", "reference"]))
	decision.reasons == [{"code": "input.invalid", "message": "input.image.reference: is required"}]
}

test_image_reference_by_digest_only_is_pinned if {
	allowed(decide(with_value(claims, ["image", "reference"], concat("", ["registry.acme.test/shop/api@", digest]))))
}

test_image_unsigned if {
	every signatures in [
		[],
		[{"verified": false, "issuer": github_issuer, "subject": release_subject}],
		null,
	] {
		decision := decide(with_value(claims, ["image", "signatures"], signatures))
		denied(decision, {"image.unsigned"})
		has_reason(decision, "image.unsigned", "image has no verified signature")
	}
}

test_image_ill_typed_signatures_are_invalid_input if {
	every case in [
		[[{"verified": "true", "issuer": github_issuer}], "input.image.signatures[0].verified: must be a boolean"],
		[[{"issuer": github_issuer, "subject": release_subject}], "input.image.signatures[0].verified: is required"],
		[[{"verified": true, "issuer": ""}], "input.image.signatures[0].issuer: must be a string of 1 to 4096 characters"],
		[[{"verified": true, "extra": 1}], "input.image.signatures[0].extra: unknown field"],
		[[{"verified": true}, "forged"], "input.image.signatures[1]: must be an object"],
		["not a list", "input.image.signatures: must be an array of at most 256 signatures"],
	] {
		[signatures, message] := case
		decision := decide(with_value(claims, ["image", "signatures"], signatures))
		decision.reasons == [{"code": "input.invalid", "message": message}]
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
	cfg := with_value(config, ["trusted_signers", "issuers", github_issuer], ["https://github.com/acme/*"])
	allowed(decide_config(claims, cfg))
	exact := with_value(config, ["trusted_signers", "issuers", github_issuer], [release_subject])
	allowed(decide_config(claims, exact))
	other := with_value(config, ["trusted_signers", "issuers", github_issuer], ["https://github.com/acme/web/*"])
	denied(decide_config(claims, other), {"image.untrusted_signer"})
	two_stars := with_value(config, ["trusted_signers", "issuers", github_issuer], ["https://*/acme/*/release.yml@*"])
	allowed(decide_config(claims, two_stars))
}

test_image_signer_patterns_only_of_the_signature_issuer if {
	# The Google issuer's pattern would match the subject, but the signature's issuer is GitHub.
	cfg := json.patch(config, [
		{"op": "add", "path": ["trusted_signers", "issuers", "https://accounts.google.com"], "value": ["*"]},
		{"op": "remove", "path": ["trusted_signers", "issuers", github_issuer]},
	])
	denied(decide_config(claims, cfg), {"image.untrusted_signer"})
}

test_image_revoked_signer_never_trusted if {
	cfg := with_value(config, ["revoked", "signer_subjects"], {release_subject: "compromised"})
	decision := decide_config(claims, cfg)
	denied(decision, {"image.untrusted_signer"})
	# Presence revokes, whatever the reason (even a reason of the wrong type).
	every reason in ["", false, null, 0] {
		denied(decide_config(claims, with_value(config, ["revoked", "signer_subjects"], {release_subject: reason})), {"image.untrusted_signer"})
	}
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
	has_reason(decision, "image.revoked", sprintf("image %s is revoked: CVE-2026-0001", [revoked_digest]))
	no_reason := with_value(cfg, ["revoked", "image_digests", revoked_digest], "")
	has_reason(decide_config(doc, no_reason), "image.revoked", sprintf("image %s is revoked", [revoked_digest]))
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
	allowed(decide_config(claims, workload_with("image_digests", null)))
}

test_image_signer_pattern_with_other_glob_syntax_is_invalid if {
	every pattern in [
		"https://github.com/acme/api/.github/workflows/release.yml@refs/tags/v?.*",
		"https://github.com/acme/{api,web}/*",
		"https://github.com/acme/[",
		"https://github.com/acme/api\\*",
	] {
		patterns := [pattern, "https://github.com/acme/api/.github/workflows/release.yml@refs/tags/*"]
		decision := decide_config(claims, with_value(config, ["trusted_signers", "issuers", github_issuer], patterns))
		decision.reasons == [{
			"code": "config.invalid",
			"message": sprintf("config.trusted_signers.issuers[%s][0]: must be a subject pattern (a string of 1 to 4096 characters, no glob syntax but *)", [github_issuer]),
		}]
	}
}

test_image_signer_entries_of_the_wrong_type_are_invalid if {
	every case in [
		[["trusted_signers", "issuers", github_issuer], "https://github.com/acme/*", sprintf("config.trusted_signers.issuers[%s]: must be an array of subject patterns", [github_issuer])],
		[["trusted_signers", "issuers", github_issuer], [5], sprintf("config.trusted_signers.issuers[%s][0]: must be a subject pattern (a string of 1 to 4096 characters, no glob syntax but *)", [github_issuer])],
		[["trusted_signers", "issuers"], [github_issuer], "config.trusted_signers.issuers: must be an object"],
		[["trusted_signers"], "all", "config.trusted_signers: must be an object"],
		[["trusted_signers", "keys"], {}, "config.trusted_signers.keys: unknown member"],
	] {
		[path, value, message] := case
		decision := decide_config(claims, with_value(config, path, value))
		decision.reasons == [{"code": "config.invalid", "message": message}]
	}
}

test_image_other_issuers_patterns_are_not_read if {
	# An ill-typed entry of an issuer no signature names does not concern this decision.
	cfg := with_value(config, ["trusted_signers", "issuers", "https://unused.test"], "not an array")
	allowed(decide_config(claims, cfg))
}

test_image_key_signed_signature_trusted_by_key_id if {
	key_id := "sha256:c87a79018f346cc02482448b77296b0bea143ef2ccab99b04776fb0f638f301f"
	signature := {"verified": true, "issuer": null, "subject": null, "key_id": key_id}
	doc := with_value(claims, ["image", "signatures"], [signature])
	denied(decide(doc), {"image.untrusted_signer"})
	trusting := with_value(config, ["trusted_signers", "key_ids"], {key_id: "release key"})
	allowed(decide_config(doc, trusting))
	revoked := with_value(trusting, ["revoked", "signer_subjects"], {key_id: "leaked"})
	denied(decide_config(doc, revoked), {"image.untrusted_signer"})
	unverified := with_value(doc, ["image", "signatures"], [object.union(signature, {"verified": false})])
	denied(decide_config(unverified, trusting), {"image.unsigned"})
	other_key := with_value(doc, ["image", "signatures", 0, "key_id"], "sha256:00")
	denied(decide_config(other_key, trusting), {"image.untrusted_signer"})
}

test_image_key_id_signer_never_matches_keyless_signature if {
	trusting := with_value(config, ["trusted_signers"], {"key_ids": {release_subject: ""}})
	denied(decide_config(claims, trusting), {"image.untrusted_signer"})
}
