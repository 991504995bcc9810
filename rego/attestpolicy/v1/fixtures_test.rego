# METADATA
# title: Test fixtures
# description: |
#   A valid configuration and a fully attested claim set that it allows, and helpers
#   the *_test.rego files use to vary them. No tests here.
package attestpolicy.v1_test

import rego.v1

# The policy is referred to by its full path, data.attestpolicy.v1: regorus 0.13 resolves
# an import alias of a multi-module package wrongly (rules that use other rules come out
# undefined through `import data.attestpolicy.v1 as policy`).

spiffe_id := "spiffe://acme.test/ns/shop/sa/api"

digest := "sha256:58639897b0b414a46c61acbf3a44d519a72d03c1060abef75cdb5cf5fca9fe54"

other_digest := "sha256:ebaf95b69a00f11d573bbeba69ac2de7826fb007c86d0ea38b37020c890fb77d"

revoked_digest := "sha256:d9298a10d1b0735837dc4bd85dac641b0f3cef27a47e5d53a54f2f3f5b2fcffa"

github_issuer := "https://token.actions.githubusercontent.com"

release_subject := "https://github.com/acme/api/.github/workflows/release.yml@refs/tags/v1.2.3"

builder := "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v2.1.0"

pcr0 := "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

pcr7 := "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

pcr1 := "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

config := {
	"trusted_signers": {"issuers": {
		"https://accounts.google.com": ["release@acme.test"],
		github_issuer: ["https://github.com/acme/api/.github/workflows/release.yml@refs/tags/*"],
	}},
	"trusted_builders": {builder: "SLSA GitHub generator"},
	"workloads": {spiffe_id: {
		"namespace": "shop",
		"service_account": "api",
		"source_repo": "https://github.com/acme/api",
		"image_digests": [other_digest, digest],
		"require": ["image", "provenance", "node", "runtime"],
		"max_ttl_seconds": 3600,
	}},
	"node_baselines": {"tpm": {"pcr.sha256.0": pcr0, "pcr.sha256.7": pcr7}},
	"audiences": {"vault": {"max_ttl_seconds": 1800}},
	"limits": {
		"max_evidence_age_seconds": 300,
		"clock_skew_seconds": 30,
		"min_ttl_seconds": 60,
		"default_ttl_seconds": 900,
	},
	"revoked": {
		"spiffe_ids": {"spiffe://acme.test/ns/shop/sa/old-api": "retired"},
		"signer_subjects": {"https://github.com/acme/api/.github/workflows/release.yml@refs/tags/v0.9.0": "compromised runner"},
		"node_ids": {"tpm-ek-retired": "decommissioned"},
		"image_digests": {revoked_digest: "CVE-2026-0001"},
	},
}

# Allowed with TTL 900 (bound by default) until 10:04:00 (node issued_at + 300 s).
claims := {
	"now": "2026-11-22T10:00:00Z",
	"subject": {"spiffe_id": spiffe_id},
	"request": {"audience": "vault", "requested_ttl_seconds": null},
	"image": {
		"reference": concat("", ["registry.acme.test/shop/api:v1.2.3@", digest]),
		"digest": digest,
		"signatures": [{"verified": true, "issuer": github_issuer, "subject": release_subject, "key_id": null}],
	},
	"provenance": {
		"verified": true,
		"builder_id": builder,
		"source_repo": "https://github.com/acme/api",
		"subject_digests": [digest],
		"predicate_type": "https://slsa.dev/provenance/v1",
	},
	"node": {
		"kind": "tpm",
		"id": "tpm-ek-node-1",
		"verified": true,
		"nonce_verified": true,
		"issued_at": "2026-11-22T09:59:00Z",
		"expires_at": null,
		"measurements": {"pcr.sha256.0": pcr0, "pcr.sha256.1": pcr1, "pcr.sha256.7": pcr7},
	},
	"runtime": {
		"verified": true,
		"namespace": "shop",
		"service_account": "api",
		"pod": "api-6d4f9-abcde",
		"image_digest": digest,
		"expires_at": "2026-11-22T11:00:00Z",
	},
}

# decide(doc) is the decision for claim set doc under the fixture configuration.
decide(doc) := decide_config(doc, config)

# decide_config(doc, cfg) is the decision for claim set doc under configuration cfg.
decide_config(doc, cfg) := result if {
	result := data.attestpolicy.v1.decision with input as doc with data.attestpolicy.config as cfg
}

# codes(decision) is the set of reason codes of a decision.
codes(decision) := {reason.code | some reason in decision.reasons}

# with_value(doc, path, value) is doc with the value at path (an array of keys) set.
with_value(doc, path, value) := json.patch(doc, [{"op": "add", "path": path, "value": value}])

# without(doc, path) is doc without the value at path.
without(doc, path) := json.patch(doc, [{"op": "remove", "path": path}])

# workload_with(key, value) is the fixture configuration with one workload field set.
workload_with(key, value) := with_value(config, ["workloads", spiffe_id, key], value)

# denied(decision, expected) holds when decision is a well-formed deny with exactly the
# reason codes in expected.
denied(decision, expected) if {
	decision.allow == false
	decision.ttl_seconds == 0
	decision.ttl_bound_by == null
	decision.valid_until == null
	codes(decision) == expected
}

# allowed(decision) holds when decision is a well-formed allow.
allowed(decision) if {
	decision.allow == true
	decision.reasons == []
	is_number(decision.ttl_seconds)
	decision.ttl_seconds > 0
	is_string(decision.ttl_bound_by)
}

# has_reason(decision, code, message) holds when decision has that exact reason.
has_reason(decision, code, message) if {
	some reason in decision.reasons
	reason == {"code": code, "message": message}
}
