# METADATA
# title: Tests of the production builder rule
# description: |
#   Run beside the shipped policy: attestpolicy test "$SHIPPED" . or pytest with the
#   plugin (pytest.ini here loads the shipped policy). Each test decides with the whole
#   policy, data.attestpolicy.v1.decision, as a caller would.
package acme.prod_builder_test

import rego.v1

prod := "spiffe://acme.example/ns/prod/sa/payments"

staging := "spiffe://acme.example/ns/staging/sa/payments"

production_builder := "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v2.1.0"

shared_runner := "https://ci.acme.example/builders/shared-runner"

digest := "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

# The configuration of config.json: both builders are trusted (by the default policy).
config := {
	"trusted_signers": {"issuers": {"https://token.actions.githubusercontent.com": ["https://github.com/acme/payments/.github/workflows/*"]}},
	"trusted_builders": {production_builder: "production", shared_runner: "staging"},
	"workloads": {
		prod: {"namespace": "prod", "service_account": "payments", "require": ["image"], "max_ttl_seconds": 1800},
		staging: {"namespace": "staging", "service_account": "payments", "require": ["image"]},
	},
	"audiences": {"vault": {"max_ttl_seconds": 900}},
	"limits": {"max_evidence_age_seconds": 300, "clock_skew_seconds": 30, "min_ttl_seconds": 60, "default_ttl_seconds": 600},
}

# The claim set of claims.json: the production workload, built by the production builder.
claims := {
	"now": "2026-11-22T10:00:00Z",
	"subject": {"spiffe_id": prod},
	"request": {"audience": "vault"},
	"image": {
		"reference": concat("", ["registry.acme.example/payments@", digest]),
		"digest": digest,
		"signatures": [{"verified": true, "issuer": "https://token.actions.githubusercontent.com", "subject": "https://github.com/acme/payments/.github/workflows/release.yml@refs/tags/v2.0.1"}],
	},
	"provenance": {"verified": true, "builder_id": production_builder, "subject_digests": [digest]},
}

decide(doc) := decision if {
	decision := data.attestpolicy.v1.decision with input as doc with data.attestpolicy.config as config
}

with_value(doc, path, value) := json.patch(doc, [{"op": "add", "path": path, "value": value}])

# A deny by this rule alone keeps the decision contract of any deny.
denied_by_rule(decision, problem) if {
	decision == {
		"allow": false,
		"ttl_seconds": 0,
		"reasons": [{"code": "acme.prod_builder", "message": sprintf("workload in namespace prod needs verified provenance from a production builder: %s", [problem])}],
		"ttl_bound_by": null,
		"valid_until": null,
		"ttl_terms": [],
		"revocable": [],
	}
}

test_production_builder_is_allowed if {
	decision := decide(claims)
	decision.allow == true
	decision.ttl_seconds == 600
	decision.ttl_bound_by == "default"
}

test_other_trusted_builder_is_denied_in_prod if {
	decision := decide(with_value(claims, ["provenance", "builder_id"], shared_runner))
	denied_by_rule(decision, sprintf("builder %s is not a production builder", [shared_runner]))
}

test_missing_provenance_is_denied_in_prod if {
	denied_by_rule(decide(object.remove(claims, ["provenance"])), "there is no provenance")
	denied_by_rule(decide(with_value(claims, ["provenance"], null)), "there is no provenance")
}

test_unverified_provenance_is_denied_twice if {
	decision := decide(with_value(claims, ["provenance", "verified"], false))
	{reason.code | some reason in decision.reasons} == {"provenance.unverified", "acme.prod_builder"}
}

test_staging_takes_any_trusted_builder if {
	doc := with_value(with_value(claims, ["subject", "spiffe_id"], staging), ["provenance", "builder_id"], shared_runner)
	decide(doc).allow == true
	decide(object.remove(doc, ["provenance"])).allow == true
}

test_invalid_input_is_only_input_invalid if {
	decision := decide(with_value(claims, ["provenance", "builder_id"], 42))
	{reason.code | some reason in decision.reasons} == {"input.invalid"}
}

test_default_checks_still_apply_in_prod if {
	decision := decide(with_value(claims, ["image", "signatures"], []))
	{reason.code | some reason in decision.reasons} == {"image.unsigned"}
}
