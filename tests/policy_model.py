"""An independent, test-only reference model of the default policy's contract.

Written from the contract text, not from the Rego: every rule below quotes the sentence
it implements. :func:`model_decision` takes the configuration document
(``data.attestpolicy.config``, already validated by ``attestpolicy.config``) and the
policy input (``ClaimSet.to_input()`` with ``now`` set) and returns what the policy
must decide.

The model also reads raw, ill-typed inputs (dicts that bypass ``ClaimSet`` validation).
There it fails closed: a field that a check needs in order to *prove* something, and
that is present with the wrong type, is a violation (recorded under a
``model.ill_typed:<path>`` code, or ``input.invalid`` for now / spiffe_id / audience).
For such inputs only the allow/deny outcome of the model is meaningful.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from attestpolicy.claims import parse_timestamp

__all__ = [
    "EVIDENCE_CLASSES",
    "MULTI_CODES",
    "ModelDecision",
    "code_summary",
    "glob_match",
    "model_decision",
]

EVIDENCE_CLASSES: Final = ("image", "provenance", "node", "runtime")
MULTI_CODES: Final = frozenset({"evidence.missing"})
"""Codes the contract emits once per item (one evidence.missing per class)."""

_SHA256_DIGEST: Final = re.compile(r"sha256:[0-9a-f]{64}")
_ONE_SECOND_US: Final = 1_000_000


@dataclass(frozen=True)
class ModelDecision:
    """The decision the contract requires; ``codes`` is a sorted multiset of reason codes."""

    allow: bool
    codes: tuple[str, ...]
    ttl_seconds: int
    ttl_bound_by: str | None
    valid_until: datetime | None


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


# --- typed access with fail-closed handling of raw input --------------------------

_ABSENT: Final = object()


class _Ill:
    """Marker for a value present with the wrong type."""


_ILL: Final = _Ill()


def _field(section: object, key: str) -> object:
    """``section[key]``, or _ABSENT when the section has no such key (or is no object)."""
    if isinstance(section, Mapping) and key in section:
        return section[key]
    return _ABSENT


def _text(value: object) -> str | _Ill | None:
    """A nullable string field: None for null/absent, _ILL for another type."""
    if value is _ABSENT or value is None:
        return None
    return value if isinstance(value, str) else _ILL


def _moment(value: object) -> datetime | _Ill | None:
    """A nullable timestamp field: None for null/absent, _ILL when unparseable."""
    if value is _ABSENT or value is None:
        return None
    if not isinstance(value, str):
        return _ILL
    try:
        return parse_timestamp(value)
    except ValueError:
        return _ILL


def _floor_seconds(delta: timedelta) -> int:
    """Whole seconds of ``delta``, floored (towards minus infinity), exactly."""
    micros = (delta.days * 86_400 + delta.seconds) * _ONE_SECOND_US + delta.microseconds
    return micros // _ONE_SECOND_US


def _strings(value: object) -> list[str]:
    """The strings in a list field; none when the field is absent or not a list."""
    if not isinstance(value, list | tuple):
        return []
    return [item for item in value if isinstance(item, str)]


class _Evaluation:
    """One evaluation of the contract: the configuration in use and the violations found."""

    def __init__(self, config: Mapping[str, Any], policy_input: Mapping[str, Any]) -> None:
        self.config = config
        self.input = policy_input
        self.codes: list[str] = []
        limits = config["limits"]
        self.max_age = timedelta(seconds=limits["max_evidence_age_seconds"])
        self.skew = timedelta(seconds=limits["clock_skew_seconds"])
        self.min_ttl: int = limits["min_ttl_seconds"]
        self.default_ttl: int = limits["default_ttl_seconds"]
        revoked = config.get("revoked") or {}
        self.revoked_signers = set(revoked.get("signer_subjects") or ())
        self.revoked_nodes = set(revoked.get("node_ids") or ())
        self.revoked_images = set(revoked.get("image_digests") or ())
        self.revoked_spiffe = set(revoked.get("spiffe_ids") or ())

    def violate(self, code: str) -> None:
        self.codes.append(code)

    def ill(self, path: str) -> None:
        self.codes.append(f"model.ill_typed:{path}")

    def section(self, name: str) -> Mapping[str, Any] | None:
        """An evidence class: None when absent (or null), marks it ill-typed otherwise."""
        value = _field(self.input, name)
        if value is _ABSENT or value is None:
            return None
        if not isinstance(value, Mapping):
            self.ill(name)
            return {}
        return value


def model_decision(config: Mapping[str, Any], policy_input: Mapping[str, Any]) -> ModelDecision:
    """The decision the contract requires for ``policy_input`` under ``config``."""
    ev = _Evaluation(config, policy_input)

    # Required top-level facts (lead's decision: input.invalid when missing/ill-typed).
    now = _moment(_field(policy_input, "now"))
    spiffe_id = _text(_field(_field(policy_input, "subject"), "spiffe_id"))
    request = _field(policy_input, "request")
    audience = _text(_field(request, "audience"))
    if not isinstance(now, datetime):
        ev.violate("input.invalid")
    if not isinstance(spiffe_id, str):
        ev.violate("input.invalid")
    if not isinstance(audience, str):
        ev.violate("input.invalid")

    # subject.unregistered: subject.spiffe_id has no workloads entry.
    workloads: Mapping[str, Any] = config.get("workloads") or {}
    workload: Mapping[str, Any] | None = None
    if isinstance(spiffe_id, str):
        workload = workloads.get(spiffe_id)
        if workload is None:
            ev.violate("subject.unregistered")
        # Extra (lead): revoked.spiffe_ids -> subject.revoked.
        if spiffe_id in ev.revoked_spiffe:
            ev.violate("subject.revoked")

    # request.unknown_audience: audience not in audiences.
    audiences: Mapping[str, Any] = config.get("audiences") or {}
    audience_entry = audiences.get(audience) if isinstance(audience, str) else None
    if isinstance(audience, str) and audience_entry is None:
        ev.violate("request.unknown_audience")

    sections = {name: ev.section(name) for name in EVIDENCE_CLASSES}

    # evidence.missing: a class in the workload's require is absent (one reason per class).
    if workload is not None:
        for name in sorted(set(workload.get("require") or ())):
            if sections[name] is None:
                ev.violate("evidence.missing")

    image = sections["image"]
    image_digest = _check_image(ev, image, workload)
    _check_provenance(ev, sections["provenance"], workload, image, image_digest)
    node_expiry = _check_node(ev, sections["node"], now)
    runtime_expiry = _check_runtime(ev, sections["runtime"], workload, now)

    # TTL: minimum of the terms, in order request|default, audience, workload,
    # evidence_expiry; the first one wins a tie.
    terms: list[tuple[str, int]] = []
    requested = _field(request, "requested_ttl_seconds")
    if requested is _ABSENT or requested is None:
        terms.append(("default", ev.default_ttl))
    elif isinstance(requested, bool) or not isinstance(requested, int | float):
        ev.ill("request.requested_ttl_seconds")
    else:
        terms.append(("request", int(requested // 1)))
    if audience_entry is not None:
        terms.append(("audience", audience_entry["max_ttl_seconds"]))
    if workload is not None and workload.get("max_ttl_seconds") is not None:
        terms.append(("workload", workload["max_ttl_seconds"]))
    expiries = [moment for moment in (node_expiry, runtime_expiry) if moment is not None]
    earliest_expiry = min(expiries) if expiries else None
    if earliest_expiry is not None and isinstance(now, datetime):
        terms.append(("evidence_expiry", _floor_seconds(earliest_expiry - now)))

    ttl, bound_by = 0, None
    if terms:
        ttl, bound_by = min(((value, name) for name, value in terms), key=lambda t: t[0])
        # ttl.too_short: the computed TTL is below min_ttl_seconds.
        if ttl < ev.min_ttl:
            ev.violate("ttl.too_short")

    codes = code_summary(ev.codes)
    if codes or bound_by is None:
        return ModelDecision(False, codes, 0, None, None)

    # valid_until: earliest of node.issued_at + max_evidence_age_seconds and
    # (earliest evidence expiry - min_ttl_seconds); null when neither exists.
    candidates: list[datetime] = []
    node = sections["node"]
    if node is not None:
        issued_at = _moment(_field(node, "issued_at"))
        assert isinstance(issued_at, datetime)  # an allow implies a well-typed issued_at
        candidates.append(issued_at + ev.max_age)
    if earliest_expiry is not None:
        candidates.append(earliest_expiry - timedelta(seconds=ev.min_ttl))
    valid_until = min(candidates) if candidates else None
    return ModelDecision(True, (), ttl, bound_by, valid_until)


def _check_image(
    ev: _Evaluation, image: Mapping[str, Any] | None, workload: Mapping[str, Any] | None
) -> str | None:
    """Image checks; returns image.digest when it is a well-formed sha256 digest."""
    if image is None:
        return None
    raw_digest = _field(image, "digest")
    digest = (
        raw_digest if isinstance(raw_digest, str) and _SHA256_DIGEST.fullmatch(raw_digest) else None
    )
    reference = _field(image, "reference")
    # image.digest_required: digest is not a sha256 digest, or the reference is not
    # pinned by digest ("@sha256:"). Fail-closed reading: pinned to *this* digest.
    if digest is None or not isinstance(reference, str) or not reference.endswith("@" + digest):
        ev.violate("image.digest_required")

    signatures = _field(image, "signatures")
    if signatures is _ABSENT or not isinstance(signatures, list | tuple):
        signatures = []
    verified = [
        sig for sig in signatures if isinstance(sig, Mapping) and _field(sig, "verified") is True
    ]
    # image.unsigned: no signature with verified == true.
    if not verified:
        ev.violate("image.unsigned")
    # image.untrusted_signer: verified signatures exist but none has an issuer equal to,
    # and a subject matching, a trusted signer; revoked subjects never count as trusted.
    elif not any(_trusted_signature(ev, sig) for sig in verified):
        ev.violate("image.untrusted_signer")

    # image.revoked: image.digest is in revoked.image_digests.
    if isinstance(raw_digest, str) and raw_digest in ev.revoked_images:
        ev.violate("image.revoked")
    # image.not_allowed: the workload lists image_digests and image.digest is not among them.
    allowed = workload.get("image_digests") if workload is not None else None
    if allowed is not None and raw_digest not in allowed:
        ev.violate("image.not_allowed")
    return digest


def _trusted_signature(ev: _Evaluation, signature: Mapping[str, Any]) -> bool:
    # A key-signed signature: trusted when a signer names its key_id (not revoked).
    key_id = _field(signature, "key_id")
    if (
        isinstance(key_id, str)
        and key_id not in ev.revoked_signers
        and any(signer.get("key_id") == key_id for signer in ev.config.get("trusted_signers") or ())
    ):
        return True
    issuer = _field(signature, "issuer")
    subject = _field(signature, "subject")
    if not isinstance(issuer, str) or not isinstance(subject, str):
        return False
    if subject in ev.revoked_signers:
        return False
    return any(
        signer.get("issuer") == issuer
        and isinstance(signer.get("subject"), str)
        and glob_match(signer["subject"], subject)
        for signer in ev.config.get("trusted_signers") or ()
    )


def _check_provenance(
    ev: _Evaluation,
    provenance: Mapping[str, Any] | None,
    workload: Mapping[str, Any] | None,
    image: Mapping[str, Any] | None,
    image_digest: str | None,
) -> None:
    if provenance is None:
        return
    # provenance.unverified
    if _field(provenance, "verified") is not True:
        ev.violate("provenance.unverified")
    # provenance.untrusted_builder
    builder = _field(provenance, "builder_id")
    if not isinstance(builder, str) or builder not in (ev.config.get("trusted_builders") or ()):
        ev.violate("provenance.untrusted_builder")
    # provenance.source_mismatch: the workload has source_repo and it differs.
    expected_source = workload.get("source_repo") if workload is not None else None
    if expected_source is not None and _field(provenance, "source_repo") != expected_source:
        ev.violate("provenance.source_mismatch")
    # provenance.subject_mismatch: image present and its digest is not among
    # provenance.subject_digests (a missing digest is never among them: fail closed).
    if image is not None:
        subject_digests = _strings(_field(provenance, "subject_digests"))
        if image_digest is None or image_digest not in subject_digests:
            ev.violate("provenance.subject_mismatch")


def _check_node(
    ev: _Evaluation, node: Mapping[str, Any] | None, now: datetime | _Ill | None
) -> datetime | None:
    """Node checks; returns node.expires_at when set and well-typed."""
    if node is None:
        return None
    if _field(node, "verified") is not True:
        ev.violate("node.unverified")
    if _field(node, "nonce_verified") is not True:
        ev.violate("node.nonce")
    issued_at = _moment(_field(node, "issued_at"))
    expires_at = _moment(_field(node, "expires_at"))
    if not isinstance(issued_at, datetime):
        ev.ill("node.issued_at")
    elif isinstance(now, datetime):
        # node.stale: now - issued_at > max_evidence_age_seconds (strict).
        if now - issued_at > ev.max_age:
            ev.violate("node.stale")
        # node.future: issued_at - now > clock_skew_seconds (strict).
        if issued_at - now > ev.skew:
            ev.violate("node.future")
    if isinstance(expires_at, _Ill):
        ev.ill("node.expires_at")
        expires_at = None
    # node.expired: expires_at <= now.
    elif expires_at is not None and isinstance(now, datetime) and expires_at <= now:
        ev.violate("node.expired")

    # node.measurement_mismatch: a baseline exists for node.kind and some baseline
    # measurement is missing or differs.
    kind = _field(node, "kind")
    baselines: Mapping[str, Mapping[str, str]] = ev.config.get("node_baselines") or {}
    if not isinstance(kind, str):
        ev.ill("node.kind")
    elif kind in baselines:
        measurements = _field(node, "measurements")
        if not isinstance(measurements, Mapping):
            measurements = {}
        if any(measurements.get(name) != value for name, value in baselines[kind].items()):
            ev.violate("node.measurement_mismatch")

    # node.revoked: node.id is in revoked.node_ids.
    node_id = _field(node, "id")
    if not isinstance(node_id, str):
        ev.ill("node.id")
    elif node_id in ev.revoked_nodes:
        ev.violate("node.revoked")
    return expires_at


def _check_runtime(
    ev: _Evaluation,
    runtime: Mapping[str, Any] | None,
    workload: Mapping[str, Any] | None,
    now: datetime | _Ill | None,
) -> datetime | None:
    """Runtime checks; returns runtime.expires_at when set and well-typed."""
    if runtime is None:
        return None
    if _field(runtime, "verified") is not True:
        ev.violate("runtime.unverified")
    # namespace / service account, against the workload entry.
    if workload is not None:
        if _field(runtime, "namespace") != workload["namespace"]:
            ev.violate("runtime.namespace_mismatch")
        if _field(runtime, "service_account") != workload["service_account"]:
            ev.violate("runtime.service_account_mismatch")
    # runtime.image_drift: runtime.image_digest and image.digest both present and different.
    runtime_digest = _field(runtime, "image_digest")
    if runtime_digest is not _ABSENT and runtime_digest is not None:
        image_raw = _field(_field(ev.input, "image"), "digest")
        if image_raw is not _ABSENT and image_raw is not None and runtime_digest != image_raw:
            ev.violate("runtime.image_drift")
        if not isinstance(runtime_digest, str):
            ev.ill("runtime.image_digest")
    # runtime.expired: expires_at <= now.
    expires_at = _moment(_field(runtime, "expires_at"))
    if isinstance(expires_at, _Ill):
        ev.ill("runtime.expires_at")
        return None
    if expires_at is not None and isinstance(now, datetime) and expires_at <= now:
        ev.violate("runtime.expired")
    return expires_at
