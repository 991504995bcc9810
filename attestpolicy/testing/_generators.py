"""The generators behind :mod:`attestpolicy.testing.strategies`, and the values they draw.

The value pools are small, so that generated values collide with configured ones (a
subject that is registered, a digest that is allowed, a signer that is trusted) and
allows are reachable. Claim sets are built consistent with a configuration, with times
on the contract's boundaries (evidence age and clock skew exactly at their limits,
expiry at ``now``, TTL ties), absent and null optional fields, and signer subjects made
from the configured globs; then faults are injected. Raw inputs are claim sets with
edits: deletions, nulls, values just outside the contract, unknown keys and garbage.

The project's own property and differential tests (tests/test_policy_properties.py,
tests/rego/test_differential.py) use these functions directly, including the joint
faults of a configuration and a claim set (:data:`FAULTS`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

from hypothesis import strategies as st

from attestpolicy.claims import ClaimSet, format_timestamp
from attestpolicy.config import validate_config

__all__ = [
    "BASE_NOW",
    "BUILDERS",
    "DELETE",
    "DIGESTS",
    "EVIDENCE_CLASSES",
    "FAULTS",
    "ISSUERS",
    "JSON_VALUES",
    "KEY_IDS",
    "NODE_IDS",
    "SIGNER_SUBJECTS",
    "SPECIAL_FIELDS",
    "SPIFFE_IDS",
    "JSONPath",
    "Scenario",
    "allow_leaning_scenarios",
    "claim_documents",
    "configs",
    "corruptions_of",
    "edit_path",
    "engine_input",
    "json_paths",
    "mutated",
    "scenarios",
    "set_path",
    "special_edits",
]

T = TypeVar("T")
Scenario = tuple[dict[str, Any], dict[str, Any]]
"""A configuration document and a claim set document."""
JSONPath = tuple[str | int, ...]

DELETE: Final = object()
"""An edit that deletes the key instead of setting it."""

# --- value pools: small, so that generated values collide with configured ones ---------

EVIDENCE_CLASSES: Final = ("image", "provenance", "node", "runtime")
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
KEY_IDS: Final = ("sha256:" + "c8" * 32, "sha256:" + "0f" * 32)
_GLOB_FILLERS: Final = ("x", "", "a/b", "v1.2.3", "/.", "refs/tags/v1")
"""What a "*" of a configured signer pattern stands for in a generated subject."""


def _one_of(draw: st.DrawFn, values: tuple[T, ...] | list[T]) -> T:
    """Any of ``values`` (shrinks towards the first)."""
    value: T = draw(st.sampled_from(values))
    return value


def _mostly(draw: st.DrawFn, good: T, bad: tuple[T, ...]) -> T:
    """``good`` eleven times in twelve, else one of ``bad`` (shrinks towards ``good``)."""
    if draw(st.integers(0, 11)) < 11 or not bad:
        return good
    return _one_of(draw, bad)


def _maybe_absent(draw: st.DrawFn, target: dict[str, Any], key: str, value: Any) -> None:
    """Set ``target[key]``; a None value is left out or written as null."""
    if value is not None or draw(st.booleans()):
        target[key] = value


def _microseconds(value: int) -> timedelta:
    return timedelta(microseconds=value)


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """A configuration section; {} when absent or null."""
    value: Mapping[str, Any] = config.get(name) or {}
    return value


# --- configurations ---------------------------------------------------------------


def edit_path(document: dict[str, Any], dotted: str, value: Any) -> bool:
    """Set (or, for :data:`DELETE`, remove) the "|"-separated path; False when it has no
    parent.

    Only a missing ``revoked`` or ``trusted_signers`` map, or a member of ``revoked``, is
    created: an edit never invents a partial evidence class or workload entry.
    """
    *parents, last = dotted.split("|")
    previous = None
    for step in parents:
        child = document.get(step)
        if child is None and (step in ("revoked", "trusted_signers") or previous == "revoked"):
            child = document[step] = {}
        if not isinstance(child, dict):
            return False
        document, previous = child, step
    if value is DELETE:
        document.pop(last, None)
    else:
        document[last] = copy.deepcopy(value)
    return True


@st.composite
def _signer_patterns(draw: st.DrawFn) -> str:
    """A subject glob made from a known subject: literal, or with slices turned into "*"."""
    pattern = _one_of(draw, SIGNER_SUBJECTS)
    for _ in range(draw(st.integers(0, 2))):
        start = draw(st.integers(0, len(pattern)))
        end = draw(st.integers(start, len(pattern)))
        pattern = pattern[:start] + "*" + pattern[end:]
    return pattern


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid configuration document (it passes attestpolicy.config)."""
    limits = {
        "max_evidence_age_seconds": _one_of(draw, (300, 0, 1, 30, 3600)),
        "clock_skew_seconds": _one_of(draw, (30, 0, 1, 5)),
        "min_ttl_seconds": _one_of(draw, (60, 1, 59, 300)),
        "default_ttl_seconds": _one_of(draw, (900, 60, 300, 3600)),
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
        _maybe_absent(draw, entry, "source_repo", _one_of(draw, (SOURCES[index % 2], None)))
        digests = _one_of(draw, (None, *[list(DIGESTS[:k]) for k in (3, 1)]))
        _maybe_absent(draw, entry, "image_digests", digests)
        _maybe_absent(draw, entry, "max_ttl_seconds", _one_of(draw, (None, *ttls)))
        kinds = _one_of(draw, (None, ["tpm"], ["tpm", "aws_iid"], ["k8s_psat"]))
        _maybe_absent(draw, entry, "node_kinds", kinds)
        workloads[spiffe_id] = entry
    issuers: dict[str, list[str]] = {}
    for _ in range(draw(st.integers(0, 3))):
        issuer = _mostly(draw, ISSUERS[0], ISSUERS[1:])
        issuers.setdefault(issuer, []).append(draw(_signer_patterns()))
    signers: dict[str, Any] = {}
    _maybe_absent(draw, signers, "issuers", issuers or None)
    key_ids = _one_of(draw, (None, {KEY_IDS[0]: "release key"}, {}))
    _maybe_absent(draw, signers, "key_ids", key_ids)
    config: dict[str, Any] = {
        "trusted_signers": signers,
        "trusted_builders": {builder: "builder" for builder in BUILDERS[: draw(st.integers(0, 2))]},
        "workloads": workloads,
        "node_baselines": {
            kind: {
                name: _one_of(draw, MEASUREMENT_VALUES)
                for name in draw(st.lists(st.sampled_from(MEASUREMENT_NAMES), max_size=3))
            }
            for kind in draw(st.lists(st.sampled_from(NODE_KINDS[:2]), max_size=2, unique=True))
        },
        "audiences": {
            name: {"max_ttl_seconds": _one_of(draw, ttls)}
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
            _maybe_absent(draw, revoked, name, {m: "revoked" for m in members} or None)
        config["revoked"] = revoked
    validate_config(config)
    return config


# --- claim sets -------------------------------------------------------------------


def _ttl_targets(config: Mapping[str, Any], spiffe_id: str, audience: str) -> list[int]:
    """TTL values some term takes for this request (to generate ties)."""
    limits = config["limits"]
    values = [int(limits["default_ttl_seconds"]), int(limits["min_ttl_seconds"])]
    entry = _section(config, "audiences").get(audience)
    if entry is not None:
        values.append(int(entry["max_ttl_seconds"]))
    workload = _section(config, "workloads").get(spiffe_id) or {}
    if workload.get("max_ttl_seconds") is not None:
        values.append(int(workload["max_ttl_seconds"]))
    return values


def _expiry(
    draw: st.DrawFn, now: datetime, targets: list[int], min_ttl: int, null_in: int = 3
) -> str | None:
    """An expires_at on a boundary (at now, at now + min TTL, at a TTL tie), or null.

    Null one time in ``null_in``.
    """
    if draw(st.integers(1, null_in)) == 1:
        return None
    seconds = _one_of(draw, [*targets, min_ttl, 0, 3600 * 24 * 400])
    offset = _one_of(draw, (0, 999_999, 500_000, 1, -1, -1_000_000))
    return format_timestamp(now + timedelta(seconds=seconds) + _microseconds(offset))


def _issued_at(draw: st.DrawFn, now: datetime, limits: Mapping[str, Any]) -> str:
    """An issued_at on a boundary: age exactly at the limit, skew exactly at the limit."""
    max_age_us = int(limits["max_evidence_age_seconds"]) * 1_000_000
    skew_us = int(limits["clock_skew_seconds"]) * 1_000_000
    age_us = _one_of(
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
    return format_timestamp(now - _microseconds(age_us))


def _signature(
    verified: bool, issuer: str | None, subject: str | None, key_id: str | None = None
) -> dict[str, Any]:
    return {"verified": verified, "issuer": issuer, "subject": subject, "key_id": key_id}


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A configured signer pattern: "*" matches any characters, all else is literal."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def _subject_matching(draw: st.DrawFn, pattern: str) -> str:
    """A signer subject that ``pattern`` matches: a known one, or the pattern with each
    "*" filled in."""
    regex = _glob_regex(pattern)
    known = [subject for subject in SIGNER_SUBJECTS if regex.fullmatch(subject)]
    parts = pattern.split("*")
    fillers = [_one_of(draw, _GLOB_FILLERS) for _ in parts[1:]]
    made = parts[0] + "".join(
        filler + part for filler, part in zip(fillers, parts[1:], strict=True)
    )
    if not made or len(made) > 4096:  # outside the claim set's text: the bare pattern
        made = pattern.replace("*", "") or "x"
    return _one_of(draw, [*known, made])


def _signatures(draw: st.DrawFn, config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One or two verified signatures by signers the configuration trusts (when it
    trusts any)."""
    trusted = _section(config, "trusted_signers")
    signers: list[tuple[str | None, str | None, str | None]] = [
        (issuer, pattern, None)
        for issuer, patterns in _section(trusted, "issuers").items()
        for pattern in patterns or ()
    ] + [(None, None, key_id) for key_id in _section(trusted, "key_ids")]
    signers = signers or [(ISSUERS[0], "ci@example.org", None)]
    signatures = []
    for index in draw(st.lists(st.integers(0, len(signers) - 1), min_size=1, max_size=2)):
        issuer, pattern, key_id = signers[index]
        if key_id is not None:
            signatures.append(_signature(True, None, None, key_id))
        else:
            assert pattern is not None
            signatures.append(_signature(True, issuer, _subject_matching(draw, pattern)))
    return signatures


@st.composite
def _claims_for(draw: st.DrawFn, config: Mapping[str, Any]) -> dict[str, Any]:
    """A valid claim set document (``now`` included) consistent with ``config``.

    A registered subject, a known audience, an allowed and trusted-signed image,
    provenance by a trusted builder about that image, a node with the baseline's
    measurements, runtime evidence in the workload's namespace, with boundary times.
    An evidence class that the workload does not require may be absent or null.
    """
    limits = config["limits"]
    now = BASE_NOW + _microseconds(_one_of(draw, (0, 500_000, 999_999, 1, 123_456)))
    spiffe_id = _one_of(draw, list(_section(config, "workloads")) or list(SPIFFE_IDS))
    audience = _one_of(draw, list(_section(config, "audiences")) or list(AUDIENCES))
    workload = _section(config, "workloads").get(spiffe_id) or {
        "namespace": "x",
        "service_account": "y",
    }
    targets = _ttl_targets(config, spiffe_id, audience)
    request: dict[str, Any] = {"audience": audience}
    _maybe_absent(draw, request, "requested_ttl_seconds", _one_of(draw, (None, *targets)))
    claims: dict[str, Any] = {
        "now": format_timestamp(now),
        "subject": {"spiffe_id": spiffe_id},
        "request": request,
    }
    required = set(workload.get("require") or ())
    digest = _one_of(draw, workload.get("image_digests") or DIGESTS)
    present = {name: name in required or draw(st.booleans()) for name in EVIDENCE_CLASSES}
    if present["image"]:
        claims["image"] = {
            "reference": _one_of(
                draw, (f"registry.example.com/app@{digest}", f"registry.example.com/a:1@{digest}")
            ),
            "digest": digest,
            "signatures": _signatures(draw, config),
        }
    if present["provenance"]:
        claims["provenance"] = {
            "verified": True,
            "builder_id": _one_of(draw, list(_section(config, "trusted_builders")) or BUILDERS),
            "source_repo": workload.get("source_repo"),
            "subject_digests": [digest],
            "predicate_type": "https://slsa.dev/provenance/v1",
        }
    baselines = _section(config, "node_baselines")
    kinds = workload.get("node_kinds") or [*NODE_KINDS, *baselines]
    kind = _one_of(draw, kinds)
    if present["node"]:
        claims["node"] = {
            "kind": kind,
            "id": NODE_IDS[0],
            "verified": True,
            "nonce_verified": True,
            "issued_at": _issued_at(draw, now, limits),
            "measurements": dict(baselines.get(kind) or {}),
        }
        expiry = _expiry(draw, now, targets, int(limits["min_ttl_seconds"]), null_in=2)
        _maybe_absent(draw, claims["node"], "expires_at", expiry)
    if present["runtime"]:
        claims["runtime"] = {
            "verified": True,
            "namespace": workload["namespace"],
            "service_account": workload["service_account"],
            "pod": _one_of(draw, (None, "api-7d9f8b6c5-x2k4q")),
            "image_digest": digest,
            "expires_at": _expiry(draw, now, targets, int(limits["min_ttl_seconds"]), null_in=2),
        }
    for name in EVIDENCE_CLASSES:  # an absent class, or null (the same)
        if not present[name]:
            _maybe_absent(draw, claims, name, None)
    return claims


# One fault: (document, "|" path with {spiffe_id}/{audience}/{kind}/{node_id}/{digest}
# placeholders, the values it may take).
FAULTS: Final[tuple[tuple[str, str, tuple[Any, ...]], ...]] = (
    ("claims", "subject|spiffe_id", SPIFFE_IDS),
    ("config", "revoked|spiffe_ids", tuple({s: "compromised"} for s in SPIFFE_IDS)),
    ("claims", "request|audience", AUDIENCES),
    ("claims", "request|requested_ttl_seconds", (1, 59, 60, 61, 2**31 - 1)),
    ("config", "audiences|{audience}|max_ttl_seconds", (1, 59, 60, 61)),
    ("config", "workloads|{spiffe_id}|max_ttl_seconds", (1, 59, 60, 61)),
    ("config", "workloads|{spiffe_id}|require", (list(EVIDENCE_CLASSES), ["node", "node"])),
    *(("claims", name, (DELETE, None)) for name in EVIDENCE_CLASSES),
    ("claims", "image|digest", (None, DELETE, *DIGESTS)),
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
    ("config", "trusted_signers|key_ids", ({KEY_IDS[1]: ""}, None, DELETE)),
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
    (
        "claims",
        "node|issued_at",
        tuple(format_timestamp(BASE_NOW + timedelta(hours=h)) for h in (-24, 1)),
    ),
    ("claims", "node|expires_at", (format_timestamp(BASE_NOW - timedelta(seconds=1)),)),
    ("claims", "node|measurements", ({}, {MEASUREMENT_NAMES[0]: MEASUREMENT_VALUES[0]})),
    ("config", "node_baselines|{kind}", ({}, {MEASUREMENT_NAMES[2]: MEASUREMENT_VALUES[1]})),
    ("config", "revoked|node_ids", tuple({n: "decommissioned"} for n in NODE_IDS)),
    ("config", "revoked|node_ids|{node_id}", ("decommissioned",)),
    ("config", "revoked|image_digests|{digest}", ("CVE",)),
    ("claims", "runtime|verified", (False,)),
    ("claims", "runtime|namespace", (None, *NAMESPACES)),
    ("claims", "runtime|service_account", (None, *ACCOUNTS)),
    ("claims", "runtime|image_digest", (None, *DIGESTS)),
    ("claims", "runtime|expires_at", (format_timestamp(BASE_NOW - timedelta(seconds=1)),)),
)
"""Every fault kind the generated scenarios inject; each keeps both documents valid."""

_CLAIM_FAULTS: Final = tuple(index for index, fault in enumerate(FAULTS) if fault[0] == "claims")


def _inject_faults(
    draw: st.DrawFn,
    documents: dict[str, dict[str, Any]],
    choices: tuple[int, ...],
    fault: int | None = None,
) -> None:
    """Zero to four faults among ``choices`` (plus FAULTS[fault] when given) into
    ``documents`` ({"config": ..., "claims": ...} or only "claims")."""
    claims = documents["claims"]
    node, image = claims.get("node") or {}, claims.get("image") or {}
    names = {
        "spiffe_id": claims["subject"]["spiffe_id"],
        "audience": claims["request"]["audience"],
        "kind": node.get("kind", "tpm"),
        "node_id": node.get("id", NODE_IDS[0]),
        "digest": image.get("digest") or DIGESTS[0],
    }
    chosen = [_one_of(draw, choices) for _ in range(draw(st.integers(0, 4)))]
    if fault is not None:
        chosen.insert(draw(st.integers(0, len(chosen))), fault)
    for index in chosen:
        target, path, values = FAULTS[index]
        if target in documents:
            edit_path(documents[target], path.format(**names), _one_of(draw, values))


@st.composite
def claim_documents(draw: st.DrawFn, config: Mapping[str, Any]) -> dict[str, Any]:
    """A valid claim set document near ``config``: consistent, then with zero to four
    claim faults (unregistered subject, unsigned image, stale node...)."""
    claims = draw(_claims_for(config))
    _inject_faults(draw, {"claims": claims}, _CLAIM_FAULTS)
    return claims


@st.composite
def scenarios(draw: st.DrawFn, fault: int | None = None) -> Scenario:
    """A configuration and a valid claim set document (JSON form, ``now`` included).

    The claim set starts out consistent with the configuration (:func:`_claims_for`),
    then FAULTS[fault] (when given) and zero to four random faults of either document
    are injected.
    """
    config: dict[str, Any] = draw(configs())
    claims = draw(_claims_for(config))
    documents = {"config": config, "claims": claims}
    _inject_faults(draw, documents, tuple(range(len(FAULTS))), fault)
    validate_config(config)
    return config, claims


@st.composite
def allow_leaning_scenarios(draw: st.DrawFn) -> Scenario:
    """A fully attested request for the first workload; only times and TTLs vary."""
    config: dict[str, Any] = draw(configs())
    spiffe_id = SPIFFE_IDS[0]
    ttls = (None, 300, 900, 1800)  # few values: ties are frequent
    config["workloads"][spiffe_id] = {
        "namespace": "payments",
        "service_account": "api",
        "require": list(EVIDENCE_CLASSES),
        "max_ttl_seconds": _one_of(draw, ttls),
    }
    config["audiences"]["vault"] = {"max_ttl_seconds": _one_of(draw, ttls[1:])}
    config["trusted_signers"] = {"issuers": {ISSUERS[0]: ["*"]}}
    config["trusted_builders"] = {BUILDERS[0]: "SLSA generator"}
    config["node_baselines"] = {  # no measurements, but the kinds workloads accept
        kind: {} for entry in config["workloads"].values() for kind in entry.get("node_kinds") or ()
    }
    config["revoked"] = {}
    limits = config["limits"]
    limits["min_ttl_seconds"] = _one_of(draw, (60, 1, 300))
    now = BASE_NOW + _microseconds(_one_of(draw, (0, 500_000, 999_999, 1)))
    targets = _ttl_targets(config, spiffe_id, "vault")
    digest = DIGESTS[1]
    request: dict[str, Any] = {"audience": "vault"}
    _maybe_absent(draw, request, "requested_ttl_seconds", _one_of(draw, (None, *targets)))
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
        expiry = _expiry(draw, now, targets, limits["min_ttl_seconds"], null_in=2)
        _maybe_absent(draw, claims[part], "expires_at", expiry)
    validate_config(config)
    return config, claims


# --- raw values ---------------------------------------------------------------------

# Strings OPA can receive: no lone surrogates (not UTF-8) and no NUL (its C strings).
_SAFE_CHARACTERS: Final = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
_SAFE_TEXT: Final = st.text(_SAFE_CHARACTERS, max_size=12)
UNICODE_SAMPLES: Final = (
    "é",
    "e\u0301",  # combining accent
    "日本語",
    "🔐",
    "\u202e",  # right-to-left override
    "\ufeff",
    "\u2028",
    "Ω" * 4096,
    "🔐" * 4096,
    "🔐" * 4097,
    "x" * 4097,
    " ",
    "\n",
    "\t",
    "\\",
    '"',
    "%v %d %s",
    "%!",
)
_HUGE_NUMBERS: Final = (
    10**30,
    -(10**30),
    2**63,
    2**63 - 1,
    -(2**63),
    -(2**63) - 1,
    2**64,
    2**53 + 1,
    1e308,
    -1e308,
    5e-324,
    1e-7,
)
TTL_NUMBERS: Final = (
    2,
    2.0,
    2.5,
    0,
    0.0,
    -0.0,
    -1,
    1,
    1.0,
    0.5,
    59,
    60,
    60.0,
    61.5,
    2147483646.9,
    2147483647,
    2147483647.0,
    2147483647.5,
    2147483648,
    2147483648.0,
    *_HUGE_NUMBERS,
)
TIMESTAMPS: Final = (
    "2026-11-22T10:00:00Z",
    "2026-11-22T10:00:00.000000001Z",
    "2026-11-22T09:59:59.999999999Z",
    "2026-11-22T10:00:00.123456789+05:30",
    "2026-11-22T10:00:00-00:00",
    "2026-11-22T10:00:00+23:59",
    "2026-11-22T10:00:00+24:00",
    "2026-11-22T10:00:00.1234567891Z",
    "2026-11-22T10:00:00.Z",
    "2026-11-22t10:00:00z",
    "2026-11-22 10:00:00Z",
    "2026-11-22T10:00:00",
    "2026-11-22T10:00:60Z",
    "2026-11-22T24:00:00Z",
    "2024-02-29T00:00:00Z",
    "2026-02-29T00:00:00Z",
    "2100-01-01T00:00:00Z",
    "1900-01-01T00:00:00Z",
    "1899-12-31T23:59:59Z",
    "2000-02-29T00:00:00Z",
    "1900-02-29T00:00:00Z",
    "2099-12-31T23:59:59.999999999Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "\uff12\uff10\uff12\uff16-11-22T10:00:00Z",  # full-width digits
    "2026-11-22T10:00:00Z\n",
)
_SCALARS: Final = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from(_HUGE_NUMBERS + TTL_NUMBERS),
    st.floats(allow_nan=False, allow_infinity=False),
    _SAFE_TEXT,
    st.sampled_from(UNICODE_SAMPLES + TIMESTAMPS + DIGESTS + SPIFFE_IDS),
)
JSON_VALUES: Final = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(_SAFE_TEXT, children, max_size=3)
    ),
    max_leaves=6,
)
"""Any JSON value both engines can receive (no NUL, no lone surrogate), small, with
huge and non-integral numbers, odd unicode and near-valid timestamps among them."""


def json_paths(value: Any, prefix: JSONPath = ()) -> list[JSONPath]:
    """Every path into a JSON document (object keys and the first array indices)."""
    paths: list[JSONPath] = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            paths.extend(json_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value[:4]):  # long lists: their head is enough
            paths.extend(json_paths(item, (*prefix, index)))
    return paths


def _get_path(document: Any, path: JSONPath) -> Any:
    """The value at ``path``."""
    for step in path:
        document = document[step]
    return document


def set_path(document: Any, path: JSONPath, value: Any) -> None:
    """Set the value at ``path`` to a copy of ``value`` (or delete it, for DELETE)."""
    parent = _get_path(document, path[:-1])
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = copy.deepcopy(value)


@st.composite
def _near_values(draw: st.DrawFn, value: Any) -> Any:
    """A value close to ``value``: same kind but just outside (or inside) the contract."""
    if isinstance(value, bool):
        return draw(st.sampled_from([not value, int(value), None, "true"]))
    if isinstance(value, int | float):
        options: list[Any] = [float(value), value + 0.5, -value, str(value), *TTL_NUMBERS]
        if isinstance(value, float) and value.is_integer():
            options.append(int(value))
        return draw(st.sampled_from(options))
    if isinstance(value, str):
        options = [
            "",
            value + " ",
            value.upper(),
            value[:-1],
            value + draw(st.sampled_from(UNICODE_SAMPLES[:8])),
            value * 2,
            draw(st.sampled_from(TIMESTAMPS)),
            draw(st.sampled_from(UNICODE_SAMPLES)),
        ]
        if value.startswith("sha256:"):
            options += ["sha512:" + value[7:], value[:-1] + "G", "SHA256:" + value[7:]]
        if value.startswith("spiffe://"):
            options += [value + "/", value + "/./x", value + "/../x", value.upper()]
        if value.startswith("http"):
            options += [value.replace("example-org", "example-orgX")]
        return draw(st.sampled_from(options))
    if isinstance(value, list):
        return draw(st.sampled_from([[], None, [None], value * 2, {"0": value}]))
    if isinstance(value, dict):
        return draw(st.sampled_from([{}, None, [value], list(value)]))
    return draw(JSON_VALUES)


@st.composite
def mutated(draw: st.DrawFn, document: dict[str, Any], times: int = 3) -> dict[str, Any]:
    """``document`` with 1..times edits: delete, null, near value, garbage, unknown key."""
    document = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, times))):
        paths = json_paths(document)
        kind = draw(st.sampled_from(("delete", "null", "near", "near", "garbage", "unknown")))
        if kind == "unknown":
            targets = [(), *[p for p in paths if isinstance(_get_path(document, p), dict)]]
            target = draw(st.sampled_from(targets))
            key = draw(st.sampled_from(["extra", "Now", "verified ", "🔐", "kind"]) | _SAFE_TEXT)
            container = _get_path(document, target)
            if key not in container:
                container[key] = draw(JSON_VALUES)
            continue
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        if kind == "delete":
            set_path(document, path, DELETE)
        elif kind == "null":
            set_path(document, path, None)
        elif kind == "near":
            set_path(document, path, draw(_near_values(_get_path(document, path))))
        else:
            set_path(document, path, draw(JSON_VALUES))
    return document


# A field the contract constrains, and values on (and just past) its edges.
SPECIAL_FIELDS: Final[tuple[tuple[JSONPath, tuple[Any, ...]], ...]] = (
    (("request", "requested_ttl_seconds"), (*TTL_NUMBERS, True, "60", None, [60])),
    (("now",), (*TIMESTAMPS, None, 0, "")),
    (("node", "issued_at"), TIMESTAMPS),
    (("node", "expires_at"), (*TIMESTAMPS, None)),
    (("runtime", "expires_at"), (*TIMESTAMPS, None)),
    (
        ("subject", "spiffe_id"),
        (
            "spiffe://prod.example.com",
            "spiffe://prod.example.com/",
            "spiffe://Prod.example.com/a",
            "spiffe://prod.example.com/a//b",
            "spiffe://prod.example.com/./a",
            "spiffe://prod.example.com/a/..",
            "spiffe://prod.example.com/a/...",
            "spiffe://prod.example.com/a b",
            "spiffe://prod.example.com/é",
            "spiffe://prod.example.com/" + "a" * 2022,
            "spiffe://prod.example.com/" + "a" * 2023,
            "spiffe:/prod.example.com/a",
            "SPIFFE://prod.example.com/a",
        ),
    ),
    (("request", "audience"), ("", "x" * 4096, "x" * 4097, "🔐" * 4096, "🔐" * 4097)),
    (("node", "kind"), ("tpm", "Tpm", "tpm-2", "_tpm", "t" * 64, "t" * 65, "", "9tpm")),
    (("node", "id"), ("", "x" * 4096, "x" * 4097, "🔐", "🔐" * 2049)),
    (
        ("node", "measurements"),
        (None, {}, {"pcr.sha256.0": "AB"}, {"pcr": "abc"}, {"": "ab"}, {"🔐" * 2049: "ab"}),
    ),
    (("image", "digest"), (None, "sha256:" + "A" * 64, "sha256:" + "a" * 63, "sha512:" + "a" * 64)),
    (("image", "signatures"), (None, [], [None], [{"verified": True}], [{"verified": "true"}])),
    (("provenance", "subject_digests"), (None, [], [None], ["sha256:" + "0" * 64] * 4097)),
    (("node", "verified"), (1, 0, "true", None)),
    (("runtime", "image_digest"), (None, "", DIGESTS[0], DIGESTS[0].upper())),
)
"""Fields the claim set's contract constrains, each with values on and past its edges."""


@st.composite
def special_edits(draw: st.DrawFn, document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with one or two :data:`SPECIAL_FIELDS` set to one of their values."""
    document = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, 2))):
        path, values = draw(st.sampled_from(SPECIAL_FIELDS))
        parent: Any = document
        for step in path[:-1]:
            parent = parent.get(step) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(values)))
    return document


def engine_input(claims: Mapping[str, Any]) -> dict[str, Any]:
    """Exactly what PolicyDecisionPoint.decide passes to its engine for a valid claim
    set document: its ``ClaimSet.to_input()``, ``now`` filled in."""
    claim_set = ClaimSet.parse(dict(claims))
    policy_input = claim_set.to_input()
    policy_input["now"] = format_timestamp(claim_set.now or BASE_NOW)
    return policy_input


@st.composite
def corruptions_of(draw: st.DrawFn, claims: Mapping[str, Any]) -> Any:
    """Raw input made from a valid claim set document: the document (or its engine form,
    :func:`engine_input`) with edits anywhere, or with a special value in a field the
    contract constrains, or (one time in ten) any JSON value at all."""
    document = engine_input(claims) if draw(st.booleans()) else copy.deepcopy(dict(claims))
    if "now" not in document:
        document["now"] = format_timestamp(BASE_NOW)
    form = draw(st.integers(0, 9))
    if form == 0:
        return draw(JSON_VALUES)  # not even an object, most of the time
    if form <= 3:
        return draw(special_edits(document))
    return draw(mutated(document))
