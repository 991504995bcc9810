"""Property tests: the default Rego policy against an independent model of its contract.

Hypothesis generates configurations and claim sets concentrated on the contract's
boundaries (evidence age exactly at the limit, skew exactly at the limit, expiry at
``now``, TTL ties, null fields, missing classes, revoked values, signer globs over
"/" and ".") and checks that ``PolicyDecisionPoint.local(...).decide`` returns exactly
what :mod:`policy_model` derives from the contract text. Raw, ill-typed inputs go
straight to the in-process engine and must never crash it nor be allowed when the
model finds a violation.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from policy_model import (
    CONFIG_ONLY_CODES,
    EVIDENCE_CLASSES,
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

T = TypeVar("T")
Draw = Callable[[st.SearchStrategy[Any]], Any]
Scenario = tuple[dict[str, Any], dict[str, Any]]

EXAMPLES: Final = Path(__file__).resolve().parent.parent / "attestpolicy" / "examples"
SETTINGS: Final = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

# --- value pools: small, so that generated values collide with configured ones ---------

BASE_NOW: Final = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
SPIFFE_IDS: Final = (
    "spiffe://prod.example.com/ns/payments/sa/api",
    "spiffe://prod.example.com/ns/ledger/sa/worker",
    "spiffe://prod.example.com/ns/batch/sa/reporter",
    "spiffe://other.example/ns/payments/sa/api",
)
AUDIENCES: Final = ("vault", "aws-sts", "db")
DIGESTS: Final = (
    *("sha256:" + ch * 64 for ch in "0a5f"),
    "sha256:a9713132a0749256c5be72fb7deb361757b50f3e683b51ec6e57aeec91a5e3c6",
)
ISSUERS: Final = ("https://token.actions.githubusercontent.com", "https://accounts.google.com")
SIGNER_SUBJECTS: Final = (
    "https://github.com/example-org/payments-api/.github/workflows/release.yml@refs/tags/v1.4.2",
    "https://github.com/example-org/payments-api/.github/workflows/release.yml@refs/tags/v1.2.0",
    "https://github.com/example-org/ledger/.github/workflows/build.yml@refs/heads/main",
    "https://github.com/example-org/a/b/.github/workflows/build.yml@refs/heads/main",
    "https://github.com/attacker/payments-api/.github/workflows/release.yml@refs/tags/v1.4.2",
    "https://github.com/example-orgX/ledger/.github/workflows/build.yml@refs/heads/main",
    "ci@example.org",
)
BUILDERS: Final = (
    "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v2.1.0",
    "https://cloudbuild.googleapis.com/GoogleHostedWorker",
    "https://example.org/untrusted-builder",
)
SOURCES: Final = (
    "https://github.com/example-org/payments-api",
    "https://github.com/example-org/ledger",
)
NAMESPACES: Final = ("payments", "ledger")
ACCOUNTS: Final = ("api", "worker")
NODE_KINDS: Final = ("tpm", "aws_iid", "k8s_psat")
NODE_IDS: Final = ("tpm-ek:sha256:5595", "i-0abc", "node-3")
MEASUREMENT_NAMES: Final = ("pcr.sha256.0", "pcr.sha256.7", "pcr/boot.efi")
MEASUREMENT_VALUES: Final = ("00", "ff" * 32, "fe7ac0b2" * 8)
GARBAGE: Final[tuple[Any, ...]] = (
    None,
    0,
    -1,
    1.5,
    True,
    False,
    "",
    "x",
    "not-a-time",
    "2026-11-22",
    "sha256:xyz",
    [],
    ["x"],
    {},
    {"a": 1},
)
KEY_IDS: Final = ("sha256:" + "c8" * 32, "sha256:" + "0f" * 32)
_DELETE: Final = object()
"""An edit or corruption that deletes the key instead of setting it."""


def one_of(draw: Draw, values: tuple[T, ...] | list[T]) -> T:
    """Any of ``values`` (shrinks towards the first)."""
    value: T = draw(st.sampled_from(values))
    return value


def mostly(draw: Draw, good: T, bad: tuple[Any, ...] | list[Any]) -> T | Any:
    """``good`` eleven times in twelve, else one of ``bad`` (shrinks towards ``good``)."""
    if draw(st.integers(0, 11)) < 11 or not bad:
        return good
    return one_of(draw, bad)


def maybe_absent(draw: Draw, target: dict[str, Any], key: str, value: Any) -> None:
    """Set ``target[key]``; a None value is left out or written as null."""
    if value is not None or draw(st.booleans()):
        target[key] = value


def microseconds(value: int) -> timedelta:
    return timedelta(microseconds=value)


# --- configurations ---------------------------------------------------------------


def _edit(document: dict[str, Any], dotted: str, value: Any) -> bool:
    """Set (or, for _DELETE, remove) the "|"-separated path; False when it has no parent.

    Only a missing ``revoked`` or ``trusted_signers`` map is created: an edit never
    invents a partial evidence class or workload entry.
    """
    *parents, last = dotted.split("|")
    for step in parents:
        child = document.get(step)
        if child is None and step in ("revoked", "trusted_signers"):
            child = document[step] = {}
        if not isinstance(child, dict):
            return False
        document = child
    if value is _DELETE:
        document.pop(last, None)
    else:
        document[last] = copy.deepcopy(value)
    return True


@st.composite
def signer_patterns(draw: Draw) -> str:
    """A subject glob made from a known subject: literal, or with slices turned into "*"."""
    pattern = one_of(draw, SIGNER_SUBJECTS)
    for _ in range(draw(st.integers(0, 2))):
        start = draw(st.integers(0, len(pattern)))
        end = draw(st.integers(start, len(pattern)))
        pattern = pattern[:start] + "*" + pattern[end:]
    return pattern


@st.composite
def configs(draw: Draw) -> dict[str, Any]:
    """A valid configuration document (it passes attestpolicy.config)."""
    limits = {
        "max_evidence_age_seconds": one_of(draw, (300, 0, 1, 30, 3600)),
        "clock_skew_seconds": one_of(draw, (30, 0, 1, 5)),
        "min_ttl_seconds": one_of(draw, (60, 1, 59, 300)),
        "default_ttl_seconds": one_of(draw, (900, 60, 300, 3600)),
    }
    ttls = (900, 1800, 300, 3600, limits["min_ttl_seconds"], limits["min_ttl_seconds"] + 1)
    workloads: dict[str, Any] = {}
    for index, spiffe_id in enumerate(SPIFFE_IDS[:3]):
        if draw(st.integers(0, 4)) == 4:
            continue
        entry: dict[str, Any] = {
            "namespace": NAMESPACES[index % 2],
            "service_account": ACCOUNTS[index % 2],
            "require": draw(st.lists(st.sampled_from(EVIDENCE_CLASSES), max_size=5)),
        }
        maybe_absent(draw, entry, "source_repo", one_of(draw, (SOURCES[index % 2], None)))
        maybe_absent(
            draw, entry, "image_digests", one_of(draw, (None, *[list(DIGESTS[:k]) for k in (3, 1)]))
        )
        maybe_absent(draw, entry, "max_ttl_seconds", one_of(draw, (None, *ttls)))
        maybe_absent(
            draw,
            entry,
            "node_kinds",
            one_of(draw, (None, ["tpm"], ["tpm", "aws_iid"], ["k8s_psat"])),
        )
        workloads[spiffe_id] = entry
    issuers: dict[str, list[str]] = {}
    for _ in range(draw(st.integers(0, 3))):
        issuer = mostly(draw, ISSUERS[0], ISSUERS[1:])
        issuers.setdefault(issuer, []).append(draw(signer_patterns()))
    signers: dict[str, Any] = {}
    maybe_absent(draw, signers, "issuers", issuers or None)
    maybe_absent(draw, signers, "key_ids", one_of(draw, (None, {KEY_IDS[0]: "release key"}, {})))
    config: dict[str, Any] = {
        "trusted_signers": signers,
        "trusted_builders": {builder: "builder" for builder in BUILDERS[: draw(st.integers(0, 2))]},
        "workloads": workloads,
        "node_baselines": {
            kind: {
                name: one_of(draw, MEASUREMENT_VALUES)
                for name in draw(st.lists(st.sampled_from(MEASUREMENT_NAMES), max_size=3))
            }
            for kind in draw(st.lists(st.sampled_from(NODE_KINDS[:2]), max_size=2, unique=True))
        },
        "audiences": {
            name: {"max_ttl_seconds": one_of(draw, ttls)}
            for name in AUDIENCES[:2]
            if draw(st.integers(0, 5)) < 5
        },
        "limits": limits,
    }
    for entry in workloads.values():  # an accepted node kind needs a baseline (maybe empty)
        for kind in entry.get("node_kinds") or ():
            config["node_baselines"].setdefault(kind, {})
    if draw(st.booleans()):
        revoked: dict[str, Any] = {}
        for name, pool in (
            ("signer_subjects", SIGNER_SUBJECTS[1:]),
            ("node_ids", NODE_IDS[1:]),
            ("image_digests", DIGESTS[2:]),
            ("spiffe_ids", SPIFFE_IDS[3:]),
        ):
            members = draw(st.lists(st.sampled_from(pool), max_size=1))
            maybe_absent(draw, revoked, name, {m: "revoked" for m in members} or None)
        config["revoked"] = revoked
    validate_config(config)
    return config


# --- claim sets -------------------------------------------------------------------


def _ttl_targets(config: dict[str, Any], spiffe_id: str, audience: str) -> list[int]:
    """TTL values some term takes for this request (to generate ties)."""
    limits = config["limits"]
    values = [limits["default_ttl_seconds"], limits["min_ttl_seconds"]]
    entry = config["audiences"].get(audience)
    if entry is not None:
        values.append(entry["max_ttl_seconds"])
    workload = config["workloads"].get(spiffe_id) or {}
    if workload.get("max_ttl_seconds") is not None:
        values.append(workload["max_ttl_seconds"])
    return values


def _expiry(
    draw: Draw, now: datetime, targets: list[int], min_ttl: int, null_in: int = 3
) -> str | None:
    """An expires_at on a boundary (at now, at now + min TTL, at a TTL tie), or null.

    Null one time in ``null_in``.
    """
    if draw(st.integers(1, null_in)) == 1:
        return None
    seconds = one_of(draw, [*targets, min_ttl, 0, 3600 * 24 * 400])
    offset = one_of(draw, (0, 999_999, 500_000, 1, -1, -1_000_000))
    return format_timestamp(now + timedelta(seconds=seconds) + microseconds(offset))


def _issued_at(draw: Draw, now: datetime, limits: dict[str, Any]) -> str:
    """An issued_at on a boundary: age exactly at the limit, skew exactly at the limit."""
    max_age_us = limits["max_evidence_age_seconds"] * 1_000_000
    skew_us = limits["clock_skew_seconds"] * 1_000_000
    age_us = one_of(
        draw,
        (
            0,
            max_age_us,
            -skew_us,
            max_age_us // 2,
            max_age_us + 1,
            max_age_us - 1,
            max_age_us + 1_000_000,
            -skew_us - 1,
            -skew_us + 1,
        ),
    )
    return format_timestamp(now - microseconds(age_us))


def _signature(
    verified: bool, issuer: str | None, subject: str | None, key_id: str | None = None
) -> dict[str, Any]:
    return {"verified": verified, "issuer": issuer, "subject": subject, "key_id": key_id}


# One fault: (document, "|" path with {spiffe_id}/{audience}/{kind} placeholders, values).
FAULTS: Final[tuple[tuple[str, str, tuple[Any, ...]], ...]] = (
    ("claims", "subject|spiffe_id", SPIFFE_IDS),
    ("config", "revoked|spiffe_ids", tuple({s: "compromised"} for s in SPIFFE_IDS)),
    ("claims", "request|audience", AUDIENCES),
    ("claims", "request|requested_ttl_seconds", (1, 59, 60, 61, 2**31 - 1)),
    ("config", "audiences|{audience}|max_ttl_seconds", (1, 59, 60, 61)),
    ("config", "workloads|{spiffe_id}|max_ttl_seconds", (1, 59, 60, 61)),
    ("config", "workloads|{spiffe_id}|require", (list(EVIDENCE_CLASSES), ["node", "node"])),
    *(("claims", name, (_DELETE,)) for name in EVIDENCE_CLASSES),
    ("claims", "image|digest", (None, _DELETE, *DIGESTS)),
    (
        "claims",
        "image|reference",
        (
            "registry.example.com/app:v1",
            f"registry.example.com/app@{DIGESTS[1]}",
            "registry.example.com/app@sha256:abc",
        ),
    ),
    (
        "claims",
        "image|signatures",
        (
            [],
            [_signature(False, ISSUERS[0], SIGNER_SUBJECTS[0])],
            [_signature(True, ISSUERS[0], SIGNER_SUBJECTS[4])],
            [_signature(True, ISSUERS[1], SIGNER_SUBJECTS[0])],
            [_signature(True, None, None)],
            [_signature(True, None, None, KEY_IDS[0])],
            [_signature(False, None, None, KEY_IDS[0])],
            [_signature(True, None, None, KEY_IDS[1])],
        ),
    ),
    ("config", "trusted_signers", ({"key_ids": {KEY_IDS[0]: "release key"}},)),
    ("config", "trusted_signers|key_ids", ({KEY_IDS[1]: ""}, None, _DELETE)),
    ("config", "revoked|signer_subjects", ({KEY_IDS[0]: "key leaked"},)),
    ("config", "revoked|signer_subjects", tuple({s: "leaked"} for s in SIGNER_SUBJECTS)),
    ("config", "revoked|image_digests", tuple({d: "CVE"} for d in DIGESTS)),
    ("config", "revoked", (None, {})),
    ("config", "workloads|{spiffe_id}|image_digests", ([], [DIGESTS[3]])),
    ("config", "trusted_signers", ({}, None, {"issuers": {ISSUERS[1]: ["*"]}})),
    ("config", "trusted_signers|issuers", (None, {ISSUERS[0]: []}, {ISSUERS[0]: ["x*", "*"]})),
    ("config", "trusted_builders", ({}, None, {BUILDERS[2]: "note"})),
    ("claims", "provenance|verified", (False,)),
    ("claims", "provenance|builder_id", (None, *BUILDERS)),
    ("claims", "provenance|source_repo", (None, *SOURCES)),
    ("config", "workloads|{spiffe_id}|source_repo", SOURCES),
    ("claims", "provenance|subject_digests", ([], [DIGESTS[3]], list(DIGESTS))),
    ("claims", "node|verified", (False,)),
    ("claims", "node|nonce_verified", (False,)),
    ("claims", "node|kind", NODE_KINDS),
    ("claims", "node|measurements", ({}, {MEASUREMENT_NAMES[0]: MEASUREMENT_VALUES[0]})),
    ("config", "node_baselines|{kind}", ({}, {MEASUREMENT_NAMES[2]: MEASUREMENT_VALUES[1]})),
    ("config", "revoked|node_ids", tuple({n: "decommissioned"} for n in NODE_IDS)),
    ("claims", "runtime|verified", (False,)),
    ("claims", "runtime|namespace", (None, *NAMESPACES)),
    ("claims", "runtime|service_account", (None, *ACCOUNTS)),
    ("claims", "runtime|image_digest", (None, *DIGESTS)),
)


@st.composite
def scenarios(draw: Draw, fault: int | None = None) -> Scenario:
    """A configuration and a valid claim set document (JSON form, ``now`` included).

    The claim set starts out consistent with the configuration (registered subject,
    allowed and signed image, matching provenance, baseline measurements...) with
    boundary times; then FAULTS[fault] (when given) and zero to four random faults
    are injected.
    """
    config: dict[str, Any] = draw(configs())
    limits = config["limits"]
    now = BASE_NOW + microseconds(one_of(draw, (0, 500_000, 999_999, 1, 123_456)))
    spiffe_id = one_of(draw, list(config["workloads"]) or list(SPIFFE_IDS))
    audience = one_of(draw, list(config["audiences"]) or list(AUDIENCES))
    workload = config["workloads"].get(spiffe_id) or {"namespace": "x", "service_account": "y"}
    targets = _ttl_targets(config, spiffe_id, audience)
    request: dict[str, Any] = {"audience": audience}
    maybe_absent(draw, request, "requested_ttl_seconds", one_of(draw, (None, *targets)))
    claims: dict[str, Any] = {
        "now": format_timestamp(now),
        "subject": {"spiffe_id": spiffe_id},
        "request": request,
    }
    required = set(workload.get("require") or ())
    digest = one_of(draw, workload.get("image_digests") or DIGESTS)
    signatures = []
    trusted = config["trusted_signers"]
    signers: list[tuple[str | None, str | None, str | None]] = [
        (issuer, pattern, None)
        for issuer, patterns in (trusted.get("issuers") or {}).items()
        for pattern in patterns
    ] + [(None, None, key_id) for key_id in trusted.get("key_ids") or {}]
    signers = signers or [(ISSUERS[0], "ci@example.org", None)]
    for index in draw(st.lists(st.integers(0, len(signers) - 1), min_size=1, max_size=2)):
        issuer, pattern, key_id = signers[index]
        if key_id is not None:
            signatures.append(_signature(True, None, None, key_id))
            continue
        assert pattern is not None
        subjects = [s for s in SIGNER_SUBJECTS if glob_match(pattern, s)]
        signatures.append(_signature(True, issuer, one_of(draw, subjects)))
    if "image" in required or draw(st.booleans()):
        claims["image"] = {
            "reference": one_of(
                draw, (f"registry.example.com/app@{digest}", f"registry.example.com/a:1@{digest}")
            ),
            "digest": digest,
            "signatures": signatures,
        }
    if "provenance" in required or draw(st.booleans()):
        claims["provenance"] = {
            "verified": True,
            "builder_id": one_of(draw, list(config["trusted_builders"] or {}) or BUILDERS),
            "source_repo": workload.get("source_repo"),
            "subject_digests": [digest],
            "predicate_type": "https://slsa.dev/provenance/v1",
        }
    kind = one_of(draw, NODE_KINDS)
    if "node" in required or draw(st.booleans()):
        claims["node"] = {
            "kind": kind,
            "id": NODE_IDS[0],
            "verified": True,
            "nonce_verified": True,
            "issued_at": _issued_at(draw, now, limits),
            "measurements": dict(config["node_baselines"].get(kind) or {}),
        }
        maybe_absent(
            draw,
            claims["node"],
            "expires_at",
            _expiry(draw, now, targets, limits["min_ttl_seconds"], null_in=2),
        )
    if "runtime" in required or draw(st.booleans()):
        claims["runtime"] = {
            "verified": True,
            "namespace": workload["namespace"],
            "service_account": workload["service_account"],
            "pod": one_of(draw, (None, "api-7d9f8b6c5-x2k4q")),
            "image_digest": digest,
            "expires_at": _expiry(draw, now, targets, limits["min_ttl_seconds"], null_in=2),
        }
    documents = {"config": config, "claims": claims}
    names = {"spiffe_id": spiffe_id, "audience": audience, "kind": kind}
    chosen = [draw(st.integers(0, len(FAULTS) - 1)) for _ in range(draw(st.integers(0, 4)))]
    for index in [] if fault is None else [fault]:
        chosen.insert(draw(st.integers(0, len(chosen))), index)
    for index in chosen:
        target, path, values = FAULTS[index]
        _edit(documents[target], path.format(**names), one_of(draw, values))
    validate_config(config)
    return config, claims


@st.composite
def allow_leaning_scenarios(draw: Draw) -> Scenario:
    """A fully attested request for the first workload; only times and TTLs vary."""
    config: dict[str, Any] = draw(configs())
    spiffe_id = SPIFFE_IDS[0]
    ttls = (None, 300, 900, 1800)  # few values: ties are frequent
    config["workloads"][spiffe_id] = {
        "namespace": "payments",
        "service_account": "api",
        "require": list(EVIDENCE_CLASSES),
        "max_ttl_seconds": one_of(draw, ttls),
    }
    config["audiences"]["vault"] = {"max_ttl_seconds": one_of(draw, ttls[1:])}
    config["trusted_signers"] = {"issuers": {ISSUERS[0]: ["*"]}}
    config["trusted_builders"] = {BUILDERS[0]: "SLSA generator"}
    config["node_baselines"] = {  # no measurements, but the kinds workloads accept
        kind: {} for entry in config["workloads"].values() for kind in entry.get("node_kinds") or ()
    }
    config["revoked"] = {}
    limits = config["limits"]
    limits["min_ttl_seconds"] = one_of(draw, (60, 1, 300))
    now = BASE_NOW + microseconds(one_of(draw, (0, 500_000, 999_999, 1)))
    targets = _ttl_targets(config, spiffe_id, "vault")
    digest = DIGESTS[1]
    request: dict[str, Any] = {"audience": "vault"}
    maybe_absent(draw, request, "requested_ttl_seconds", one_of(draw, (None, *targets)))
    claims: dict[str, Any] = {
        "now": format_timestamp(now),
        "subject": {"spiffe_id": spiffe_id},
        "request": request,
        "image": {
            "reference": f"registry.example.com/app@{digest}",
            "digest": digest,
            "signatures": [_signature(True, ISSUERS[0], SIGNER_SUBJECTS[6])],
        },
        "provenance": {"verified": True, "builder_id": BUILDERS[0], "subject_digests": [digest]},
        "node": {
            "kind": "tpm",
            "id": NODE_IDS[0],
            "verified": True,
            "nonce_verified": True,
            "issued_at": _issued_at(draw, now, limits),
        },
        "runtime": {
            "verified": True,
            "namespace": "payments",
            "service_account": "api",
            "image_digest": digest,
        },
    }
    for part in ("node", "runtime"):
        maybe_absent(
            draw,
            claims[part],
            "expires_at",
            _expiry(draw, now, targets, limits["min_ttl_seconds"], null_in=2),
        )
    validate_config(config)
    return config, claims


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
Edit = tuple[str, str, Any]  # ("claims" | "config", dotted path, value or _DELETE)
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
        [("claims", "provenance", _DELETE), ("claims", "runtime", _DELETE)],
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
        [("claims", "node|measurements|pcr.sha256.7", _DELETE)],
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
        assert _edit(documents[target], dotted, value), dotted
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
def glob_cases(draw: Draw) -> tuple[str, str]:
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


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON document (object keys and array indices)."""
    paths = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            paths.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths.extend(_paths(item, (*prefix, index)))
    return paths


def _corrupt(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    parent: Any = document
    for step in path[:-1]:
        parent = parent[step]
    if value is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = copy.deepcopy(value)  # never share (and so mutate) GARBAGE


@st.composite
def raw_inputs(draw: Draw) -> tuple[dict[str, Any], dict[str, Any]]:
    """A valid scenario's policy input with 1-2 values replaced by garbage or deleted.

    Mostly fully attested scenarios, so that a corruption is what stands between the
    input and an allow.
    """
    base = allow_leaning_scenarios() if draw(st.integers(0, 3)) < 3 else scenarios()
    config, claims = draw(base)
    document = ClaimSet.parse(claims).to_input()
    for _ in range(draw(st.integers(1, 2))):
        paths = _paths(document)
        if not paths:
            break
        path = one_of(draw, paths)
        _corrupt(document, path, one_of(draw, (_DELETE, *GARBAGE)))
    return config, document


def assert_matches_model_on_raw_input(
    config: dict[str, Any], document: dict[str, Any], got: Decision
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
@given(case=raw_inputs())
def test_raw_input_is_decided_as_the_model_says(
    case: tuple[dict[str, Any], dict[str, Any]],
) -> None:
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
