"""Property tests: the default Rego policy against an independent model of its contract.

Hypothesis generates configurations and claim sets concentrated on the contract's
boundaries (evidence age exactly at the limit, skew exactly at the limit, expiry at
``now``, TTL ties, null fields, missing classes, revoked values, signer globs over
"/" and ".") and checks that ``PolicyDecisionPoint.local(...).decide`` returns exactly
what :mod:`policy_model` derives from the contract text. Raw, ill-typed inputs go
straight to the in-process engine and must never crash it nor be allowed when the
model finds a violation. The generators are the ones users get
(:mod:`attestpolicy.testing.strategies`), from :mod:`attestpolicy.testing._generators`.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from policy_model import (
    CONFIG_ONLY_CODES,
    ModelDecision,
    code_summary,
    glob_match,
    input_is_valid,
    model_decision,
)

from attestpolicy.claims import ClaimSet, format_timestamp, parse_timestamp
from attestpolicy.config import validate_config
from attestpolicy.decision import Decision
from attestpolicy.engine.local import LocalEvaluator
from attestpolicy.pdp import PolicyDecisionPoint
from attestpolicy.policy import DECISION_PATH, POLICY_REASON_CODES, PolicySource
from attestpolicy.testing._generators import (
    BASE_NOW,
    BUILDERS,
    DELETE,
    DIGESTS,
    FAULTS,
    ISSUERS,
    SIGNER_SUBJECTS,
    SPIFFE_IDS,
    Scenario,
    allow_leaning_scenarios,
    corruptions_of,
    edit_path,
    scenarios,
)

EXAMPLES: Final = Path(__file__).resolve().parent.parent / "attestpolicy" / "examples"
SETTINGS: Final = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


# --- comparison -------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _pdp(config_json: str) -> PolicyDecisionPoint:
    """One uncached PDP per configuration (shrinking revisits the same ones often)."""
    return PolicyDecisionPoint.local(config=json.loads(config_json), cache=False)


@functools.lru_cache(maxsize=32)
def _evaluator(config_json: str) -> LocalEvaluator:
    """One in-process evaluator of the shipped policy per configuration."""
    return LocalEvaluator(PolicySource.from_directory(), validate_config(json.loads(config_json)))


def pdp_for(config: dict[str, Any]) -> PolicyDecisionPoint:
    return _pdp(json.dumps(config, sort_keys=True))


def evaluator_for(config: dict[str, Any]) -> LocalEvaluator:
    return _evaluator(json.dumps(config, sort_keys=True))


def observed(decision: Decision) -> ModelDecision:
    """A Decision in the model's terms (codes compared as the contract says)."""
    return ModelDecision(
        allow=decision.allow,
        codes=code_summary(decision.reason_codes),
        ttl_seconds=decision.ttl_seconds,
        ttl_bound_by=decision.ttl_bound_by,
        valid_until=decision.valid_until,
    )


def describe(config: dict[str, Any], policy_input: Any, expected: Any, got: Decision) -> str:
    """A readable account of a disagreement: input, configuration, expected, got."""
    return "\n".join(
        (
            "policy disagrees with the contract model",
            "config = " + json.dumps(config, sort_keys=True),
            "input  = " + json.dumps(policy_input, sort_keys=True, default=str),
            f"expected = {expected}",
            f"got      = {observed(got)}",
            "reasons  = " + json.dumps([r.model_dump() for r in got.reasons]),
        )
    )


def assert_matches_model(
    config: dict[str, Any], claims: dict[str, Any]
) -> tuple[Decision, ModelDecision]:
    """Decide through the PDP and assert the decision is exactly the model's."""
    claim_set = ClaimSet.parse(claims)
    policy_input = claim_set.to_input()
    expected = model_decision(config, policy_input)
    got = pdp_for(config).decide(claim_set)
    seen, why = observed(got), describe(config, policy_input, expected, got)
    event(f"model: {'allow, bound by ' + str(expected.ttl_bound_by) if expected.allow else 'deny'}")
    # Separate asserts, so Hypothesis reports each kind of disagreement on its own.
    assert "engine.error" not in got.reason_codes, why
    assert (seen.allow, seen.codes) == (expected.allow, expected.codes), why
    assert (seen.ttl_seconds, seen.ttl_bound_by) == (expected.ttl_seconds, expected.ttl_bound_by), (
        why
    )
    assert seen.valid_until == expected.valid_until, why
    return got, expected


# --- the model itself, on hand-checked cases ----------------------------------------


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / "claims" / f"{name}.json").read_text())
    return data


def example_config() -> dict[str, Any]:
    """The shipped example configuration."""
    config: dict[str, Any] = json.loads((EXAMPLES / "config.json").read_text())
    return config


@pytest.mark.parametrize(
    ("name", "codes"),
    [
        ("allow-fully-attested", ()),
        ("allow-ttl-bound-by-evidence", ()),
        ("deny-image-drift", ("runtime.image_drift",)),
        ("deny-measurement-mismatch", ("node.measurement_mismatch",)),
        ("deny-stale-node", ("node.stale",)),
        (
            "deny-tag-only",
            ("image.digest_required", "image.not_allowed", "provenance.subject_mismatch"),
        ),
        ("deny-unregistered", ("subject.unregistered",)),
        ("deny-untrusted-signer", ("image.untrusted_signer",)),
    ],
)
def test_model_on_shipped_examples(name: str, codes: tuple[str, ...]) -> None:
    decision = model_decision(example_config(), ClaimSet.parse(example(name)).to_input())
    assert decision.codes == codes
    assert decision.allow is (not codes)


PAYMENTS: Final = SPIFFE_IDS[0]
TRUSTED_SUBJECT: Final = SIGNER_SUBJECTS[0]
REVOKED_SUBJECT: Final = SIGNER_SUBJECTS[1]  # revoked in the example configuration
ATTACKER_SUBJECT: Final = SIGNER_SUBJECTS[4]
ALLOWED_DIGEST: Final = DIGESTS[-1]
OTHER_ALLOWED_DIGEST: Final = (
    "sha256:04c35957a31641ba43f9ecd01832bc8cf3362426eb4a6942a7ea4d9068482fc7"
)
Edit = tuple[str, str, Any]  # ("claims" | "config", dotted path, value or DELETE)
Expected = tuple[bool, tuple[str, ...], int, str | None, str | None]


def _deny(*codes: str) -> Expected:
    return (False, codes, 0, None, None)


# Hand-worked cases on allow-fully-attested.json with the example configuration: now
# 10:00:00, node issued 09:59:00 (no expiry), runtime expires 11:00:00; TTL terms
# default 900, audience vault 1800, workload 3600, evidence_expiry 3600; limits 300 s
# age, 30 s skew, 60 s minimum TTL. Paths use "|" (keys contain dots).
CONTRACT_CASES: Final[list[tuple[str, list[Edit], Expected]]] = [
    ("baseline", [], (True, (), 900, "default", "2026-11-22T10:04:00Z")),
    (
        "age exactly at the limit is fresh",
        [("claims", "node|issued_at", "2026-11-22T09:55:00Z")],
        (True, (), 900, "default", "2026-11-22T10:00:00Z"),
    ),
    (
        "age one microsecond over the limit is stale",
        [("claims", "node|issued_at", "2026-11-22T09:54:59.999999Z")],
        _deny("node.stale"),
    ),
    (
        "skew exactly at the limit is accepted",
        [("claims", "node|issued_at", "2026-11-22T10:00:30Z")],
        (True, (), 900, "default", "2026-11-22T10:05:30Z"),
    ),
    (
        "skew one microsecond over the limit is future",
        [("claims", "node|issued_at", "2026-11-22T10:00:30.000001Z")],
        _deny("node.future"),
    ),
    (
        "runtime expires_at == now is expired",
        [("claims", "runtime|expires_at", "2026-11-22T10:00:00Z")],
        _deny("runtime.expired", "ttl.too_short"),
    ),
    (
        "node expires_at == now is expired",
        [("claims", "node|expires_at", "2026-11-22T10:00:00Z")],
        _deny("node.expired", "ttl.too_short"),
    ),
    (
        "expiry one microsecond ahead floors to a 0 s TTL",
        [("claims", "runtime|expires_at", "2026-11-22T10:00:00.000001Z")],
        _deny("ttl.too_short"),
    ),
    (
        "expiry exactly min TTL ahead",
        [("claims", "runtime|expires_at", "2026-11-22T10:01:00Z")],
        (True, (), 60, "evidence_expiry", "2026-11-22T10:00:00Z"),
    ),
    (
        "sub-second expiry: TTL floored, valid_until exact",
        [("claims", "runtime|expires_at", "2026-11-22T10:03:00.5Z")],
        (True, (), 180, "evidence_expiry", "2026-11-22T10:02:00.5Z"),
    ),
    (
        "sub-second issued_at: valid_until exact",
        [("claims", "node|issued_at", "2026-11-22T09:59:00.25Z")],
        (True, (), 900, "default", "2026-11-22T10:04:00.25Z"),
    ),
    (
        "tie request = audience: request wins",
        [("claims", "request|requested_ttl_seconds", 1800)],
        (True, (), 1800, "request", "2026-11-22T10:04:00Z"),
    ),
    (
        "tie audience = workload: audience wins",
        [
            ("claims", "request|requested_ttl_seconds", 3600),
            ("config", f"workloads|{PAYMENTS}|max_ttl_seconds", 1800),
        ],
        (True, (), 1800, "audience", "2026-11-22T10:04:00Z"),
    ),
    (
        "tie workload = floored evidence expiry: workload wins",
        [
            ("claims", "request|requested_ttl_seconds", 3600),
            ("config", "audiences|vault|max_ttl_seconds", 3600),
            ("config", f"workloads|{PAYMENTS}|max_ttl_seconds", 1800),
            ("claims", "runtime|expires_at", "2026-11-22T10:30:00.999999Z"),
        ],
        (True, (), 1800, "workload", "2026-11-22T10:04:00Z"),
    ),
    (
        "tag-only image with a digest allow-list",
        [
            ("claims", "image|digest", None),
            ("claims", "image|reference", "registry.example.com/payments/api:v1.4.2"),
        ],
        _deny("image.digest_required", "image.not_allowed", "provenance.subject_mismatch"),
    ),
    (
        "reference pinned to another digest",
        [
            (
                "claims",
                "image|reference",
                f"registry.example.com/payments/api@{OTHER_ALLOWED_DIGEST}",
            )
        ],
        _deny("image.digest_required"),
    ),
    (
        "revoked signer subject never counts as trusted",
        [
            (
                "claims",
                "image|signatures",
                [{"verified": True, "issuer": ISSUERS[0], "subject": REVOKED_SUBJECT}],
            )
        ],
        _deny("image.untrusted_signer"),
    ),
    (
        "a trusted but unverified signature is unsigned",
        [
            (
                "claims",
                "image|signatures",
                [{"verified": False, "issuer": ISSUERS[0], "subject": TRUSTED_SUBJECT}],
            )
        ],
        _deny("image.unsigned"),
    ),
    (
        "verified untrusted + unverified trusted is untrusted",
        [
            (
                "claims",
                "image|signatures",
                [
                    {"verified": True, "issuer": ISSUERS[0], "subject": ATTACKER_SUBJECT},
                    {"verified": False, "issuer": ISSUERS[0], "subject": TRUSTED_SUBJECT},
                ],
            )
        ],
        _deny("image.untrusted_signer"),
    ),
    (
        "trusted subject under another issuer is untrusted",
        [
            (
                "claims",
                "image|signatures",
                [{"verified": True, "issuer": ISSUERS[1], "subject": TRUSTED_SUBJECT}],
            )
        ],
        _deny("image.untrusted_signer"),
    ),
    (
        "glob * spans / and .",
        [
            (
                "config",
                "trusted_signers",
                {"issuers": {ISSUERS[0]: ["https://github.com/*"]}},
            )
        ],
        (True, (), 900, "default", "2026-11-22T10:04:00Z"),
    ),
    (
        "two required classes missing: one reason each",
        [("claims", "provenance", DELETE), ("claims", "runtime", DELETE)],
        _deny("evidence.missing", "evidence.missing"),
    ),
    (
        "evidence present but not required is still checked",
        [("claims", "subject|spiffe_id", SPIFFE_IDS[2])],
        _deny("runtime.namespace_mismatch", "runtime.service_account_mismatch"),
    ),
    (
        "revoked SPIFFE ID",
        [("config", "revoked|spiffe_ids", {PAYMENTS: "compromised"})],
        _deny("subject.revoked"),
    ),
    (
        "revoked image digest",
        [("config", "revoked|image_digests", {ALLOWED_DIGEST: "CVE-2026-0001"})],
        _deny("image.revoked"),
    ),
    (
        "revoked node id",
        [("config", "revoked|node_ids", {example("allow-fully-attested")["node"]["id"]: "lost"})],
        _deny("node.revoked"),
    ),
    (
        "node kind the workload does not accept",
        [
            ("config", f"workloads|{PAYMENTS}|node_kinds", ["aws_iid"]),
            ("config", "node_baselines|aws_iid", {}),
        ],
        _deny("node.kind_not_allowed"),
    ),
    (
        "baseline measurement missing",
        [("claims", "node|measurements|pcr.sha256.7", DELETE)],
        _deny("node.measurement_mismatch"),
    ),
    (
        "unverified provenance from an untrusted builder and another source",
        [
            ("claims", "provenance|verified", False),
            ("claims", "provenance|builder_id", BUILDERS[2]),
            ("claims", "provenance|source_repo", None),
        ],
        _deny(
            "provenance.source_mismatch", "provenance.untrusted_builder", "provenance.unverified"
        ),
    ),
    (
        "unverified node without a nonce binding",
        [("claims", "node|verified", False), ("claims", "node|nonce_verified", False)],
        _deny("node.nonce", "node.unverified"),
    ),
    (
        "unverified runtime",
        [("claims", "runtime|verified", False)],
        _deny("runtime.unverified"),
    ),
    (
        "unknown audience",
        [("claims", "request|audience", "db")],
        _deny("request.unknown_audience"),
    ),
    (
        "unregistered subject with drifted runtime",
        [
            ("claims", "subject|spiffe_id", SPIFFE_IDS[3]),
            ("claims", "runtime|image_digest", DIGESTS[0]),
        ],
        _deny("runtime.image_drift", "subject.unregistered"),
    ),
]


CONTRACT_CODES: Final = POLICY_REASON_CODES


def test_contract_cases_cover_every_reason_code_and_ttl_term() -> None:
    codes = {code for _, _, expected in CONTRACT_CASES for code in expected[1]}
    assert codes == CONTRACT_CODES
    terms = {expected[3] for _, _, expected in CONTRACT_CASES if expected[0]}
    assert terms == {"request", "default", "audience", "workload", "evidence_expiry"}


@pytest.mark.parametrize(
    ("edits", "expected"),
    [pytest.param(edits, expected, id=name) for name, edits, expected in CONTRACT_CASES],
)
def test_contract_cases(edits: list[Edit], expected: Expected) -> None:
    """Hand-worked boundary cases: the model and the policy both give the hand answer."""
    documents = {"config": example_config(), "claims": example("allow-fully-attested")}
    for target, dotted, value in edits:
        assert edit_path(documents[target], dotted, value), dotted
    config, claims = documents["config"], documents["claims"]
    valid_until = None if expected[4] is None else parse_timestamp(expected[4])
    hand = ModelDecision(expected[0], expected[1], expected[2], expected[3], valid_until)
    policy_input = ClaimSet.parse(claims).to_input()
    assert model_decision(config, policy_input) == hand
    got = pdp_for(config).decide(policy_input)
    assert observed(got) == hand, describe(config, policy_input, hand, got)


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("*", "a/b.c", True),
        ("https://github.com/org/*", "https://github.com/org/repo/.github/x.yml@refs/x", True),
        ("https://github.com/org/*", "https://github.com/orgX/repo", False),
        ("*.yml@refs/heads/main", "a/b/c.yml@refs/heads/main", True),
        ("a*c", "abc", True),
        ("a*c", "abcd", False),
        ("a.c", "abc", False),
        ("a?c", "abc", False),
        ("", "", True),
    ],
)
def test_model_glob(pattern: str, text: str, matches: bool) -> None:
    assert glob_match(pattern, text) is matches


# --- the policy against the model ---------------------------------------------------


@settings(SETTINGS, max_examples=200)
@given(scenario=scenarios())
def test_policy_matches_model(scenario: Scenario) -> None:
    """Any valid configuration and claim set: exactly the model's decision."""
    assert_matches_model(*scenario)


@pytest.mark.parametrize(
    "fault", range(len(FAULTS)), ids=[f"{target}:{path}" for target, path, _ in FAULTS]
)
@settings(SETTINGS, max_examples=8)
@given(data=st.data())
def test_policy_matches_model_for_each_fault(fault: int, data: st.DataObject) -> None:
    """Every fault kind, every run: the scenario carries FAULTS[fault] among others."""
    assert_matches_model(*data.draw(scenarios(fault), label="scenario"))


@settings(SETTINGS, max_examples=120)
@given(scenario=allow_leaning_scenarios())
def test_policy_matches_model_on_time_and_ttl_boundaries(scenario: Scenario) -> None:
    """Fully attested requests whose times and TTL terms sit on the contract's edges."""
    config, claims = scenario
    got, expected = assert_matches_model(config, claims)
    if got.allow and expected.valid_until is not None:
        # The raw policy result: RFC 3339 UTC, fractions without trailing zeros.
        evaluator = evaluator_for(config)
        defined, raw = evaluator.evaluate_path(DECISION_PATH, ClaimSet.parse(claims).to_input())
        assert defined
        assert raw["valid_until"] == format_timestamp(expected.valid_until)


@st.composite
def glob_cases(draw: st.DrawFn) -> tuple[str, str]:
    """A signer subject over a tiny alphabet with "/" and ".", and a "*" pattern near it."""
    subject = draw(st.text(alphabet="ab/.:@", min_size=1, max_size=8))
    pattern = subject
    for _ in range(draw(st.integers(0, 3))):
        start = draw(st.integers(0, len(pattern)))
        end = draw(st.integers(start, len(pattern)))
        pattern = pattern[:start] + draw(st.sampled_from(["*", "", "/", ".", "a"])) + pattern[end:]
    return pattern or "*", subject


@settings(SETTINGS, max_examples=80)
@given(case=glob_cases(), revoked=st.booleans())
def test_signer_glob_matches_model(case: tuple[str, str], revoked: bool) -> None:
    """Signer subjects: "*" matches any characters, "/" and "." included; nothing else."""
    pattern, subject = case
    config = example_config()
    config["trusted_signers"] = {"issuers": {ISSUERS[0]: [pattern]}}
    config["revoked"] = {"signer_subjects": {subject: "leaked"} if revoked else {}}
    claims = example("allow-fully-attested")
    claims["image"]["signatures"] = [{"verified": True, "issuer": ISSUERS[0], "subject": subject}]
    got, _ = assert_matches_model(config, claims)
    assert got.allow is (glob_match(pattern, subject) and not revoked)


# --- raw, ill-typed input straight to the engine ------------------------------------


@st.composite
def raw_cases(draw: st.DrawFn) -> tuple[dict[str, Any], Any]:
    """A configuration and raw input made from a valid scenario's claim set
    (:func:`corruptions_of`): mostly fully attested scenarios, so that a corruption is
    what stands between the input and an allow."""
    base = allow_leaning_scenarios() if draw(st.integers(0, 3)) < 3 else scenarios()
    config, claims = draw(base)
    return config, draw(corruptions_of(claims))


def assert_matches_model_on_raw_input(
    config: dict[str, Any], document: Any, got: Decision
) -> ModelDecision:
    """The raw-input rule: invalid input is a deny with input.invalid (and at most
    config.invalid beside it); valid input gets exactly the model's decision."""
    expected = model_decision(config, document)
    why = describe(config, document, expected, got)
    assert "engine.error" not in got.reason_codes, why
    if not input_is_valid(document):
        assert not got.allow, why
        assert "input.invalid" in got.reason_codes, why
        assert set(got.reason_codes) <= CONFIG_ONLY_CODES, why
    else:
        seen = observed(got)
        assert (seen.allow, seen.codes) == (expected.allow, expected.codes), why
        assert (seen.ttl_seconds, seen.ttl_bound_by, seen.valid_until) == (
            expected.ttl_seconds,
            expected.ttl_bound_by,
            expected.valid_until,
        ), why
    return expected


@settings(SETTINGS, max_examples=150)
@given(case=raw_cases())
def test_raw_input_is_decided_as_the_model_says(case: tuple[dict[str, Any], Any]) -> None:
    """Raw input straight to the engine: invalid input gives only input.invalid (and
    config.invalid); valid input exactly the model's decision."""
    config, document = case
    evaluator = evaluator_for(config)
    got = evaluator.evaluate(copy.deepcopy(document), evaluated_at=BASE_NOW)
    expected = assert_matches_model_on_raw_input(config, document, got)
    note(describe(config, document, expected, got))
    event(f"input valid: {input_is_valid(document)}; policy allows: {got.allow}")
    if not got.allow:
        assert got.reasons
        assert (got.ttl_seconds, got.ttl_bound_by) == (0, None)
