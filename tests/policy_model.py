"""An independent, test-only reference model of the default policy's contract.

Written from the contract text (README "The default policy" and the issue-7 contract),
not from the Rego: every rule below quotes the sentence it implements.
:func:`model_decision` takes the configuration document (``data.attestpolicy.config``)
and the raw policy input (any JSON value) and returns what the policy must decide.

Raw input first: "the policy validates raw input to the same contract as the
ClaimSet", plus ``now``, which the policy requires (the PDP fills it in). So an input
is valid when :meth:`ClaimSet.parse` accepts it and it has a non-null ``now``. An
invalid input, or an invalid part of the configuration that the decision reads, is a
deny whose reasons are *only* ``input.invalid`` / ``config.invalid``.

All instants are integer nanoseconds since the epoch, as RFC 3339 allows nine
fractional digits: the model is exact on raw input that a ClaimSet would round.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from attestpolicy.claims import ClaimSet
from attestpolicy.errors import ClaimsError

__all__ = [
    "CONFIG_ONLY_CODES",
    "EVIDENCE_CLASSES",
    "MULTI_CODES",
    "ModelDecision",
    "code_summary",
    "config_read_parts_valid",
    "format_ns",
    "glob_match",
    "input_is_valid",
    "model_decision",
    "timestamp_ns",
]

EVIDENCE_CLASSES: Final = ("image", "provenance", "node", "runtime")
MULTI_CODES: Final = frozenset({"evidence.missing"})
"""Codes the contract emits once per item (one evidence.missing per class)."""
CONFIG_ONLY_CODES: Final = frozenset({"input.invalid", "config.invalid"})
"""The only codes of a decision on invalid input or an invalid read configuration part."""

_NS: Final = 1_000_000_000
_MAX_SECONDS: Final = 2**31 - 1
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# The contract's timestamp: RFC 3339, years 1900-2099, Z or +hh:mm, 1-9 fraction digits.
_RFC3339: Final = re.compile(
    r"((?:19|20)[0-9]{2})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_SHA256: Final = re.compile(r"sha256:[0-9a-f]{64}")
_HEX: Final = re.compile(r"(?:[0-9a-f]{2})+")
_GLOB_SYNTAX: Final = re.compile(r"[?\[\]{}\\]")


@dataclass(frozen=True)
class ModelDecision:
    """The decision the contract requires; ``codes`` is a sorted multiset of reason codes.

    ``valid_until`` is truncated to microseconds (as a ``Decision`` holds it);
    ``valid_until_ns`` is the exact instant (not compared by ``==``).
    """

    allow: bool
    codes: tuple[str, ...]
    ttl_seconds: int
    ttl_bound_by: str | None
    valid_until: datetime | None
    valid_until_ns: int | None = field(default=None, compare=False)
    # An allow's ttl_terms as (name, seconds or None, until ns or None), in order, and
    # its revocable (member, value) pairs, sorted.
    ttl_terms: tuple[tuple[str, int | None, int | None], ...] = field(default=(), compare=False)
    revocable: tuple[tuple[str, str], ...] = field(default=(), compare=False)


def code_summary(codes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Codes as the contract compares them: a set, except MULTI_CODES kept as a multiset."""
    counts = Counter(codes)
    summary: list[str] = []
    for code in sorted(counts):
        summary.extend([code] * (counts[code] if code in MULTI_CODES else 1))
    return tuple(summary)


def glob_match(pattern: str, text: str) -> bool:
    """``*`` matches any run of characters (including "/" and "."); all else is literal."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, text, flags=re.DOTALL) is not None


# --- time ---------------------------------------------------------------------------


def timestamp_ns(text: object) -> int | None:
    """The contract's RFC 3339 timestamp as ns since the epoch; None when it is not one."""
    if not isinstance(text, str):
        return None
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:  # no such calendar day, hour 24, second 60...
        return None
    seconds = (moment.replace(tzinfo=UTC) - _EPOCH) // timedelta(seconds=1)
    if offset != "Z":
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            return None
        sign = 1 if offset[0] == "+" else -1
        seconds -= sign * (hours * 3600 + minutes * 60)
    return seconds * _NS + int((fraction or "").ljust(9, "0"))


def format_ns(ns: int) -> str:
    """Instant ``ns`` as RFC 3339 UTC, its fraction without trailing zeros."""
    seconds, sub = divmod(ns, _NS)
    text = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    if sub:
        text += "." + f"{sub:09d}".rstrip("0")
    return text + "Z"


def _ns_to_datetime(ns: int) -> datetime:
    """Instant ``ns`` truncated (floored) to microseconds."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


# --- validity -----------------------------------------------------------------------


def input_is_valid(policy_input: object) -> bool:
    """The raw input satisfies the contract: ClaimSet.parse accepts it, and ``now`` is set.

    ("the policy validates raw input to the same contract as the ClaimSet"; "`now` is
    required by the policy".) The 1 MiB limit is the PDP's, not the policy's; generated
    inputs stay far below it.
    """
    if not isinstance(policy_input, Mapping) or policy_input.get("now") is None:
        return False
    try:
        ClaimSet.parse(copy.deepcopy(dict(policy_input)))
    except ClaimsError:
        return False
    return True


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _seconds(value: object, *, positive: bool) -> bool:
    """An integral number of seconds in [0, 2147483647] ((0, ...] when positive)."""
    if not _is_number(value):
        return False
    assert isinstance(value, int | float)
    low_ok = value > 0 if positive else value >= 0
    return low_ok and value <= _MAX_SECONDS and float(value).is_integer()


def _text(value: object) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= 4096


def _optional_object(value: object) -> bool:
    return value is None or isinstance(value, Mapping)


_SECTIONS: Final[Mapping[str, frozenset[str] | None]] = {
    "trusted_signers": frozenset({"issuers", "key_ids"}),
    "trusted_builders": None,
    "workloads": None,
    "node_baselines": None,
    "audiences": None,
    "limits": frozenset(
        {"max_evidence_age_seconds", "clock_skew_seconds", "min_ttl_seconds", "default_ttl_seconds"}
    ),
    "revoked": frozenset({"signer_subjects", "node_ids", "image_digests", "spiffe_ids"}),
}
"""The configuration's sections, and the fixed members of those that have them."""


def _limits_valid(limits: object) -> bool:
    """limits: required; all four present, integral, max age and skew >= 0, TTLs > 0."""
    if not isinstance(limits, Mapping):
        return False
    return (
        _seconds(limits.get("max_evidence_age_seconds"), positive=False)
        and _seconds(limits.get("clock_skew_seconds"), positive=False)
        and _seconds(limits.get("min_ttl_seconds"), positive=True)
        and _seconds(limits.get("default_ttl_seconds"), positive=True)
    )


_WORKLOAD_KEYS: Final = frozenset(
    {
        "namespace",
        "service_account",
        "source_repo",
        "image_digests",
        "require",
        "max_ttl_seconds",
        "node_kinds",
    }
)
_NODE_KIND: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _workload_valid(entry: object) -> bool:
    """A workload entry as attestpolicy.config defines it (null optional members = absent)."""
    if not isinstance(entry, Mapping) or not set(entry) <= _WORKLOAD_KEYS:
        return False
    if not (_text(entry.get("namespace")) and _text(entry.get("service_account"))):
        return False
    source = entry.get("source_repo")
    if source is not None and not _text(source):
        return False
    digests = entry.get("image_digests")
    if digests is not None and not (
        isinstance(digests, list)
        and len(digests) <= 4096
        and all(isinstance(d, str) and _SHA256.fullmatch(d) for d in digests)
    ):
        return False
    require = entry.get("require")
    if require is not None and not (
        isinstance(require, list) and all(item in EVIDENCE_CLASSES for item in require)
    ):
        return False
    kinds = entry.get("node_kinds")
    if kinds is not None and not (
        isinstance(kinds, list)
        and len(kinds) <= 64
        and all(isinstance(kind, str) and _NODE_KIND.fullmatch(kind) for kind in kinds)
    ):
        return False
    ttl = entry.get("max_ttl_seconds")
    return ttl is None or _seconds(ttl, positive=True)


def _audience_valid(entry: object) -> bool:
    return (
        isinstance(entry, Mapping)
        and set(entry) <= {"max_ttl_seconds"}
        and _seconds(entry.get("max_ttl_seconds"), positive=True)
    )


def _baseline_valid(entry: object) -> bool:
    """A node baseline: measurement name -> 2..4096 lowercase hex digits, in pairs."""
    return isinstance(entry, Mapping) and all(
        isinstance(value, str) and _HEX.fullmatch(value) and len(value) <= 4096
        for value in entry.values()
    )


def _sections_valid(config: Mapping[str, Any]) -> bool:
    """Every section known and null or an object; fixed members known; trusted_signers
    and revoked members null or objects; limits present (O(1) checks)."""
    if not set(config) <= set(_SECTIONS) or config.get("limits") is None:
        return False
    for name, members in _SECTIONS.items():
        section = config.get(name)
        if not _optional_object(section):
            return False
        if members is None or section is None:
            continue
        if not set(section) <= members:
            return False
        if name != "limits" and not all(_optional_object(section.get(m)) for m in members):
            return False
    return True


def config_read_parts_valid(config: object, policy_input: Mapping[str, Any]) -> bool:
    """The configuration parts a decision on (valid) ``policy_input`` reads are valid.

    "per decision only what the decision reads, O(1): limits (all four, integral, ranges
    as today), the subject's workload entry, the audience entry, revoked/trusted_*
    members being objects, the node baseline for input.node.kind, and a matched signer
    pattern's glob syntax." Read as the policy states it (config.rego): the type of
    every section (unknown sections and members are errors), the limits, the subject's
    workload entry and the audience entry (a null entry is no entry), the node baseline
    of the node's kind (null is not a baseline), and every subject pattern of the
    issuer of a verified signature.
    """
    if not isinstance(config, Mapping) or not _sections_valid(config):
        return False
    if not _limits_valid(config["limits"]):
        return False
    spiffe_id = policy_input["subject"]["spiffe_id"]
    audience = policy_input["request"]["audience"]
    entry = (config.get("workloads") or {}).get(spiffe_id)
    if entry is not None and not _workload_valid(entry):
        return False
    baselines = config.get("node_baselines") or {}
    # Every node kind the workload accepts has a baseline (an object, maybe empty).
    if entry is not None and any(
        not isinstance(baselines.get(kind), Mapping) for kind in entry.get("node_kinds") or ()
    ):
        return False
    entry = (config.get("audiences") or {}).get(audience)
    if entry is not None and not _audience_valid(entry):
        return False
    node = policy_input.get("node")
    kind = node["kind"] if node is not None else None
    if kind in baselines and not _baseline_valid(baselines[kind]):
        return False
    issuers = (config.get("trusted_signers") or {}).get("issuers") or {}
    return _signer_patterns_valid(issuers, policy_input)


def _signer_patterns_valid(issuers: Mapping[str, Any], policy_input: Mapping[str, Any]) -> bool:
    """The pattern list of a verified signature's issuer is an array of text patterns in
    which only ``*`` is special (no ?, [, ], {, }, \\)."""
    image = policy_input.get("image") or {}
    for signature in image.get("signatures") or ():
        issuer = signature.get("issuer")
        if signature.get("verified") is not True or issuer is None or issuer not in issuers:
            continue
        patterns = issuers[issuer]
        if not isinstance(patterns, list):
            return False
        if not all(_text(p) and not _GLOB_SYNTAX.search(p) for p in patterns):
            return False
    return True


# --- the decision -------------------------------------------------------------------


def _deny(*codes: str) -> ModelDecision:
    return ModelDecision(False, code_summary(list(codes)), 0, None, None)


class _Evaluation:
    """One evaluation of the contract on valid input and valid read configuration parts."""

    def __init__(self, config: Mapping[str, Any], policy_input: Mapping[str, Any]) -> None:
        self.config = config
        self.input = policy_input
        self.codes: list[str] = []
        limits = config["limits"]
        self.max_age_ns = int(limits["max_evidence_age_seconds"]) * _NS
        self.skew_ns = int(limits["clock_skew_seconds"]) * _NS
        self.min_ttl = int(limits["min_ttl_seconds"])
        self.default_ttl = int(limits["default_ttl_seconds"])
        revoked = config.get("revoked") or {}
        # "Presence of a key in a revoked map revokes it (whatever its value)."
        self.revoked_signers: Mapping[str, Any] = revoked.get("signer_subjects") or {}
        self.revoked_nodes: Mapping[str, Any] = revoked.get("node_ids") or {}
        self.revoked_images: Mapping[str, Any] = revoked.get("image_digests") or {}
        self.revoked_spiffe: Mapping[str, Any] = revoked.get("spiffe_ids") or {}
        signers = config.get("trusted_signers") or {}
        self.issuers: Mapping[str, Any] = signers.get("issuers") or {}
        self.key_ids: Mapping[str, Any] = signers.get("key_ids") or {}
        self.builders: Mapping[str, Any] = config.get("trusted_builders") or {}
        now = timestamp_ns(policy_input["now"])
        assert now is not None
        self.now = now

    def violate(self, code: str) -> None:
        self.codes.append(code)

    def section(self, name: str) -> Mapping[str, Any] | None:
        """An evidence class; None when absent or null ("null == absent")."""
        value: Mapping[str, Any] | None = self.input.get(name)
        return value


def model_decision(config: Mapping[str, Any], policy_input: Any) -> ModelDecision:
    """The decision the contract requires for ``policy_input`` under ``config``."""
    # CONFIRMED decision rule: invalid input -> input.invalid (+ config.invalid when the
    # read config parts are invalid); invalid read config parts -> config.invalid.
    # Which config parts an invalid input reads is unspecified: the model then gives
    # input.invalid alone, and callers accept config.invalid beside it.
    if not input_is_valid(policy_input):
        return _deny("input.invalid")
    if not config_read_parts_valid(config, policy_input):
        return _deny("config.invalid")
    ev = _Evaluation(config, policy_input)
    spiffe_id: str = policy_input["subject"]["spiffe_id"]
    request: Mapping[str, Any] = policy_input["request"]
    audience: str = request["audience"]

    # subject.unregistered: subject.spiffe_id has no workloads entry (null entry = none).
    workload: Mapping[str, Any] | None = (config.get("workloads") or {}).get(spiffe_id)
    if workload is None:
        ev.violate("subject.unregistered")
    # subject.revoked: subject.spiffe_id is in revoked.spiffe_ids.
    if spiffe_id in ev.revoked_spiffe:
        ev.violate("subject.revoked")

    # request.unknown_audience: the audience is not in audiences.
    audience_entry: Mapping[str, Any] | None = (config.get("audiences") or {}).get(audience)
    if audience_entry is None:
        ev.violate("request.unknown_audience")

    sections = {name: ev.section(name) for name in EVIDENCE_CLASSES}

    # evidence.missing: a class in the workload's require is absent (one reason per class).
    if workload is not None:
        for name in sorted(set(workload.get("require") or ())):
            if sections[name] is None:
                ev.violate("evidence.missing")

    image = sections["image"]
    _check_image(ev, image, workload)
    _check_provenance(ev, sections["provenance"], workload, image)
    node_expiry = _check_node(ev, sections["node"])
    # node.kind_not_allowed: the workload lists node_kinds and node.kind is not among them.
    kinds = workload.get("node_kinds") if workload is not None else None
    if sections["node"] is not None and kinds is not None and sections["node"]["kind"] not in kinds:
        ev.violate("node.kind_not_allowed")
    runtime_expiry = _check_runtime(ev, sections["runtime"], workload, image)

    # TTL: minimum of the terms, in order request|default, audience, workload,
    # evidence_expiry (floored); the first one wins a tie.
    terms: list[tuple[str, int]] = []
    requested = request.get("requested_ttl_seconds")
    if requested is None:
        terms.append(("default", ev.default_ttl))
    else:
        terms.append(("request", int(requested)))  # integral: 2.0 counts as 2
    if audience_entry is not None:
        terms.append(("audience", int(audience_entry["max_ttl_seconds"])))
    if workload is not None and workload.get("max_ttl_seconds") is not None:
        terms.append(("workload", int(workload["max_ttl_seconds"])))
    expiries = [moment for moment in (node_expiry, runtime_expiry) if moment is not None]
    earliest_expiry = min(expiries) if expiries else None
    if earliest_expiry is not None:
        terms.append(("evidence_expiry", (earliest_expiry - ev.now) // _NS))

    ttl, bound_by = min(((value, name) for name, value in terms), key=lambda t: t[0])
    ttl_terms = tuple(
        (name, None, earliest_expiry) if name == "evidence_expiry" else (name, value, None)
        for name, value in terms
    )
    # ttl.too_short: the computed TTL is below min_ttl_seconds.
    if ttl < ev.min_ttl:
        ev.violate("ttl.too_short")

    codes = code_summary(ev.codes)
    if codes:
        return ModelDecision(False, codes, 0, None, None)

    # valid_until: earliest of node.issued_at + max_evidence_age_seconds and
    # (earliest evidence expiry - min_ttl_seconds); null when neither exists.
    candidates: list[int] = []
    node = sections["node"]
    if node is not None:
        issued_at = timestamp_ns(node["issued_at"])
        assert issued_at is not None
        candidates.append(issued_at + ev.max_age_ns)
    if earliest_expiry is not None:
        candidates.append(earliest_expiry - ev.min_ttl * _NS)
    revocable = _revocable(policy_input, sections)
    if not candidates:
        return ModelDecision(True, (), ttl, bound_by, None, None, ttl_terms, revocable)
    deadline = min(candidates)
    return ModelDecision(
        True, (), ttl, bound_by, _ns_to_datetime(deadline), deadline, ttl_terms, revocable
    )


def _revocable(
    policy_input: Mapping[str, Any], sections: Mapping[str, Mapping[str, Any] | None]
) -> tuple[tuple[str, str], ...]:
    """What an allow depends on: the SPIFFE ID, the image digest, the subject and key id
    of each verified signature, the node id (each when it is a string)."""
    pairs = {("spiffe_ids", policy_input["subject"]["spiffe_id"])}
    image, node = sections["image"], sections["node"]
    if image is not None:
        pairs.add(("image_digests", image.get("digest")))
        for signature in image.get("signatures") or ():
            if signature["verified"] is True:
                pairs.add(("signer_subjects", signature.get("subject")))
                pairs.add(("signer_subjects", signature.get("key_id")))
    if node is not None:
        pairs.add(("node_ids", node["id"]))
    return tuple(sorted((member, value) for member, value in pairs if isinstance(value, str)))


def _check_image(
    ev: _Evaluation, image: Mapping[str, Any] | None, workload: Mapping[str, Any] | None
) -> None:
    if image is None:
        return
    digest: str | None = image.get("digest")
    # image.digest_required: digest missing, or the reference is not pinned by "@sha256:"
    # (fail-closed reading: pinned to *this* digest).
    if digest is None or not image["reference"].endswith("@" + digest):
        ev.violate("image.digest_required")
    verified = [sig for sig in image.get("signatures") or () if sig["verified"] is True]
    # image.unsigned: no signature with verified == true.
    if not verified:
        ev.violate("image.unsigned")
    # image.untrusted_signer: verified signatures exist but none is from a trusted,
    # unrevoked signer.
    elif not any(_trusted_signature(ev, sig) for sig in verified):
        ev.violate("image.untrusted_signer")
    # image.revoked: image.digest is in revoked.image_digests.
    if digest is not None and digest in ev.revoked_images:
        ev.violate("image.revoked")
    # image.not_allowed: the workload lists image_digests and the digest is not among them.
    allowed = workload.get("image_digests") if workload is not None else None
    if allowed is not None and digest not in allowed:
        ev.violate("image.not_allowed")


def _trusted_signature(ev: _Evaluation, signature: Mapping[str, Any]) -> bool:
    """A key id in trusted_signers.key_ids, or an issuer in trusted_signers.issuers with a
    subject matching one of its patterns; a revoked subject or key id never counts."""
    key_id = signature.get("key_id")
    if key_id is not None and key_id in ev.key_ids and key_id not in ev.revoked_signers:
        return True
    issuer, subject = signature.get("issuer"), signature.get("subject")
    if issuer is None or subject is None or subject in ev.revoked_signers:
        return False
    patterns = ev.issuers.get(issuer) or ()
    return any(glob_match(pattern, subject) for pattern in patterns)


def _check_provenance(
    ev: _Evaluation,
    provenance: Mapping[str, Any] | None,
    workload: Mapping[str, Any] | None,
    image: Mapping[str, Any] | None,
) -> None:
    if provenance is None:
        return
    # provenance.unverified
    if provenance["verified"] is not True:
        ev.violate("provenance.unverified")
    # provenance.untrusted_builder: builder_id is not a key of trusted_builders.
    builder = provenance.get("builder_id")
    if builder is None or builder not in ev.builders:
        ev.violate("provenance.untrusted_builder")
    # provenance.source_mismatch: the workload has source_repo and it differs.
    expected_source = workload.get("source_repo") if workload is not None else None
    if expected_source is not None and provenance.get("source_repo") != expected_source:
        ev.violate("provenance.source_mismatch")
    # provenance.subject_mismatch: image present and its digest is not among
    # provenance.subject_digests (a missing digest is never among them).
    if image is not None:
        digest = image.get("digest")
        if digest is None or digest not in (provenance.get("subject_digests") or ()):
            ev.violate("provenance.subject_mismatch")


def _check_node(ev: _Evaluation, node: Mapping[str, Any] | None) -> int | None:
    """Node checks; returns node.expires_at (ns) when set."""
    if node is None:
        return None
    if node["verified"] is not True:
        ev.violate("node.unverified")
    if node["nonce_verified"] is not True:
        ev.violate("node.nonce")
    issued_at = timestamp_ns(node["issued_at"])
    assert issued_at is not None
    # node.stale: now - issued_at > max_evidence_age_seconds (strict).
    if ev.now - issued_at > ev.max_age_ns:
        ev.violate("node.stale")
    # node.future: issued_at - now > clock_skew_seconds (strict).
    if issued_at - ev.now > ev.skew_ns:
        ev.violate("node.future")
    expires_at = timestamp_ns(node.get("expires_at"))
    # node.expired: expires_at <= now.
    if expires_at is not None and expires_at <= ev.now:
        ev.violate("node.expired")
    # node.measurement_mismatch: a baseline exists for node.kind and some baseline
    # measurement is missing or differs.
    baseline = (ev.config.get("node_baselines") or {}).get(node["kind"]) or {}
    measurements = node.get("measurements") or {}
    if any(measurements.get(name) != value for name, value in baseline.items()):
        ev.violate("node.measurement_mismatch")
    # node.revoked: node.id is in revoked.node_ids.
    if node["id"] in ev.revoked_nodes:
        ev.violate("node.revoked")
    return expires_at


def _check_runtime(
    ev: _Evaluation,
    runtime: Mapping[str, Any] | None,
    workload: Mapping[str, Any] | None,
    image: Mapping[str, Any] | None,
) -> int | None:
    """Runtime checks; returns runtime.expires_at (ns) when set."""
    if runtime is None:
        return None
    if runtime["verified"] is not True:
        ev.violate("runtime.unverified")
    # namespace / service account differ from the workload entry.
    if workload is not None:
        if runtime.get("namespace") != workload["namespace"]:
            ev.violate("runtime.namespace_mismatch")
        if runtime.get("service_account") != workload["service_account"]:
            ev.violate("runtime.service_account_mismatch")
    # runtime.image_drift: runtime.image_digest and image.digest both set and different.
    runtime_digest = runtime.get("image_digest")
    image_digest = image.get("digest") if image is not None else None
    if runtime_digest is not None and image_digest is not None and runtime_digest != image_digest:
        ev.violate("runtime.image_drift")
    # runtime.expired: expires_at <= now.
    expires_at = timestamp_ns(runtime.get("expires_at"))
    if expires_at is not None and expires_at <= ev.now:
        ev.violate("runtime.expired")
    return expires_at


# --- the decision's shape -------------------------------------------------------------

DECISION_FIELDS: Final = frozenset(
    {"allow", "ttl_seconds", "reasons", "ttl_bound_by", "valid_until", "ttl_terms", "revocable"}
)


def assert_well_formed(decision: Any, why: str = "") -> None:
    """The decision object's contract, whatever the input: its fields and their types,
    reasons sorted; an allow has no reasons, a TTL, terms and revocable pairs; a deny has
    reasons and nothing else."""
    assert isinstance(decision, dict), why
    assert set(decision) == DECISION_FIELDS, why
    assert isinstance(decision["allow"], bool), why
    assert isinstance(decision["ttl_seconds"], int), why
    assert isinstance(decision["reasons"], list), why
    for reason in decision["reasons"]:
        assert isinstance(reason, dict), why
        assert set(reason) == {"code", "message"}, why
        assert isinstance(reason["code"], str), why
        assert isinstance(reason["message"], str), why
    assert decision["reasons"] == sorted(
        decision["reasons"], key=lambda r: (r["code"], r["message"])
    ), why
    if decision["allow"]:
        assert decision["reasons"] == [], why
        assert decision["ttl_seconds"] > 0, why
        assert isinstance(decision["ttl_bound_by"], str), why
        assert decision["valid_until"] is None or isinstance(decision["valid_until"], str), why
        names = [term["name"] for term in decision["ttl_terms"]]
        assert decision["ttl_bound_by"] in names, why
        for term in decision["ttl_terms"]:
            assert set(term) in ({"name", "seconds"}, {"name", "until"}), why
        assert decision["revocable"] == sorted(decision["revocable"]), why
        assert all(len(pair) == 2 for pair in decision["revocable"]), why
    else:
        assert decision["reasons"], why
        assert (decision["ttl_seconds"], decision["ttl_bound_by"]) == (0, None), why
        assert decision["valid_until"] is None, why
        assert decision["ttl_terms"] == decision["revocable"] == [], why
