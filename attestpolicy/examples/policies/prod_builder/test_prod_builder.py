"""The production builder rule from pytest: fixed cases, then properties.

Run ``pytest`` in this directory (pytest.ini loads the shipped policy and this one):
the Rego tests of prod_builder_test.rego run too, once per engine. The properties draw
claim sets and raw inputs from :mod:`attestpolicy.testing.strategies` (``pip install
'attestpolicy[testing]'``); docs/custom-policies.md explains them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from attestpolicy import ClaimsError, ClaimSet, Decision, PolicyDecisionPoint
from attestpolicy.engine.local import LocalEvaluator
from attestpolicy.engine.opa import OpaEvaluator, opa_available
from attestpolicy.policy import PolicySource, default_policy_dir
from attestpolicy.pytest_plugin import ClaimSetFactory
from attestpolicy.testing import strategies

HERE = Path(__file__).resolve().parent
CONFIG: dict[str, Any] = json.loads((HERE / "config.json").read_text(encoding="utf-8"))
PRODUCTION_BUILDER = (
    "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/"
    "generator_container_slsa3.yml@refs/tags/v2.1.0"
)
SHARED_RUNNER = "https://ci.acme.example/builders/shared-runner"
RULE = "acme.prod_builder"


def test_production_builder_is_allowed(
    rego_pdp: PolicyDecisionPoint, claim_set: ClaimSetFactory
) -> None:
    decision = rego_pdp.decide(claim_set())
    assert decision.allow
    assert decision.ttl_bound_by == "default"


def test_shared_runner_is_denied_in_prod(
    rego_pdp: PolicyDecisionPoint, claim_set: ClaimSetFactory
) -> None:
    decision = rego_pdp.decide(claim_set(provenance={"builder_id": SHARED_RUNNER}))
    assert decision.reason_codes == (RULE,)
    assert decision.ttl_terms == ()
    assert decision.revocable == ()


def test_staging_takes_the_shared_runner(
    rego_pdp: PolicyDecisionPoint, claim_set: ClaimSetFactory
) -> None:
    staging = claim_set(
        subject={"spiffe_id": "spiffe://acme.example/ns/staging/sa/payments"},
        provenance={"builder_id": SHARED_RUNNER},
    )
    assert rego_pdp.decide(staging).allow


# --- property: no allow with a violation ----------------------------------------------


def breaks_rule(claims: Mapping[str, Any]) -> bool:
    """The rule stated again, in Python: a workload registered in namespace prod whose
    provenance is absent, unverified or not from the production builder."""
    workload = CONFIG["workloads"].get(claims["subject"]["spiffe_id"])
    if workload is None or workload["namespace"] != "prod":
        return False
    provenance = claims.get("provenance") or {}
    verified = provenance.get("verified") is True
    return not (verified and provenance.get("builder_id") == PRODUCTION_BUILDER)


@settings(max_examples=200, deadline=None)
@given(claims=strategies.claim_sets(config=CONFIG))
def test_no_allow_with_a_violation(rego_pdp: PolicyDecisionPoint, claims: dict[str, Any]) -> None:
    decision = rego_pdp.decide(claims)
    assert (RULE in decision.reason_codes) == breaks_rule(claims)
    if decision.allow:
        assert not breaks_rule(claims)


# --- property: the same decision in both engines --------------------------------------


@pytest.fixture(scope="module")
def evaluators() -> Iterator[tuple[LocalEvaluator, OpaEvaluator]]:
    """The policy (shipped + this directory) in regorus and in OPA's engine."""
    if not opa_available():
        pytest.skip("OPA's engine is not installed")
    source = PolicySource.from_directory([default_policy_dir(), HERE])
    regorus, opa = LocalEvaluator(source, CONFIG), OpaEvaluator(source, CONFIG)
    yield regorus, opa
    regorus.close()
    opa.close()


def comparable(decision: Decision) -> dict[str, Any]:
    """What both engines must agree on: all but the id, the time and the revision (which
    names the engine)."""
    return decision.model_dump(exclude={"decision_id", "evaluated_at", "policy_revision"})


def is_valid(document: object) -> bool:
    """The input is a claim set with ``now`` (what the policy requires)."""
    if not isinstance(document, dict) or document.get("now") is None:
        return False
    try:
        ClaimSet.parse(document)
    except ClaimsError:
        return False
    return True


@settings(max_examples=200, deadline=None)
@given(document=strategies.raw_inputs(config=CONFIG) | strategies.claim_sets(config=CONFIG))
def test_same_decision_in_both_engines(
    evaluators: tuple[LocalEvaluator, OpaEvaluator], document: Any
) -> None:
    now = datetime.now(UTC)
    first, second = (evaluator.evaluate(document, evaluated_at=now) for evaluator in evaluators)
    assert comparable(first) == comparable(second)
    if not is_valid(document):  # fail closed: ill-typed input only ever gets input.invalid
        assert not first.allow
        assert set(first.reason_codes) == {"input.invalid"}
