"""A decision as an EAT Attestation Result (EAR, draft-ietf-rats-ear), for relying parties
that speak EAR (Veraison, Trustee clients).

The claims follow the EAR profile ``tag:github.com,2023:veraison/ear`` (the one the Veraison
libraries in Go, Rust and C implement): ``eat_profile``, ``iat``, ``ear.verifier-id``,
``submods`` with one appraisal, labelled ``"workload"``, holding ``ear.status``, the AR4SI
``ear.trustworthiness-vector`` and ``ear.appraisal-policy-id`` (the policy revision), and
``eat_nonce`` when the evidence answered a nonce of 8 to 64 bytes. An allow also carries
``exp`` (the credential's expiry rule: never past ``valid_until``) and ``sub``.

The trust vector of an allow affirms what the claim set shows was appraised
(:func:`appraise`). The vector of a deny comes from its reason codes through one table,
:data:`REASON_EFFECTS` (docs/ear.md lists it): each code, or code prefix ending in ``"."``,
names a trust-vector claim and an AR4SI value; several reasons on one claim keep the worst.
A deny is never affirming: it is ``warning`` when every reason maps to a warning-tier value
(something unrecognized), and ``contraindicated`` otherwise, including every reason that
says nothing about the attester (expired evidence, an engine error, an unknown code).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Final

from attestpolicy import __version__
from attestpolicy._model import FrozenModel
from attestpolicy.claims import ClaimSet
from attestpolicy.decision import Decision

__all__ = [
    "ALL_CLAIMS",
    "EAR_MEDIA_TYPE",
    "EAT_PROFILE",
    "REASON_EFFECTS",
    "SUBMOD",
    "TRUST_CLAIMS",
    "EarResult",
    "appraise",
    "ear_claims",
    "tier",
]

EAT_PROFILE: Final = "tag:github.com,2023:veraison/ear"
"""The EAR profile of the claims (draft-fv-rats-ear / draft-ietf-rats-ear, JSON names)."""

EAR_MEDIA_TYPE: Final = f'application/eat+jwt; eat_profile="{EAT_PROFILE}"'
"""The media type of a signed EAR (RFC 9782's EAT JWT type with the EAR profile)."""

SUBMOD: Final = "workload"
"""The label of the one appraisal in ``submods``: the workload the decision is about."""

VERIFIER_ID: Final = {"developer": "attestpolicy", "build": f"attestpolicy {__version__}"}
"""``ear.verifier-id``: who made the appraisal (AR4SI section 3.3)."""

TRUST_CLAIMS: Final = (
    "instance-identity",
    "configuration",
    "executables",
    "file-system",
    "hardware",
    "runtime-opaque",
    "storage-opaque",
    "sourced-data",
)
"""The AR4SI trustworthiness claims, in the draft's order."""

ALL_CLAIMS: Final = "*"
"""In :data:`REASON_EFFECTS`: the value applies to every trust-vector claim."""

# AR4SI values used here (draft-ietf-rats-ar4si section 2.3 and the Veraison libraries).
_VERIFIER_MALFUNCTION: Final = -1
_UNEXPECTED_EVIDENCE: Final = 1
_AFFIRMED: Final = 2  # recognized_instance, approved_config, approved_rt, genuine_hw, ...
_UNRECOGNIZED_RUNTIME: Final = 33  # executables: unrecognized run-time (warning)
_CONTRAINDICATED: Final = 96  # untrustworthy_instance, unsupportable_config, contraindicated_*
_UNRECOGNIZED_INSTANCE: Final = 97  # instance-identity: should be recognized, is not
_CRYPTO_FAILED: Final = 99  # cryptographic validation of the evidence failed

REASON_EFFECTS: Final[Mapping[str, tuple[str, int] | None]] = {
    # the subject and the request
    "subject.unregistered": ("instance-identity", _UNRECOGNIZED_INSTANCE),
    "subject.revoked": ("instance-identity", _CONTRAINDICATED),
    "request.unknown_audience": None,
    "evidence.missing": None,
    "ttl.too_short": None,
    "nonce.invalid": None,
    "policy.deny": None,
    # the image and its provenance
    "image.digest_required": ("executables", _UNRECOGNIZED_RUNTIME),
    "image.unsigned": ("executables", _UNRECOGNIZED_RUNTIME),
    "image.untrusted_signer": ("executables", _CONTRAINDICATED),
    "image.revoked": ("executables", _CONTRAINDICATED),
    "image.not_allowed": ("executables", _CONTRAINDICATED),
    "provenance.unverified": ("executables", _CRYPTO_FAILED),
    "provenance.untrusted_builder": ("executables", _CONTRAINDICATED),
    "provenance.source_mismatch": ("executables", _CONTRAINDICATED),
    "provenance.subject_mismatch": ("executables", _CONTRAINDICATED),
    # the node
    "node.unverified": ("hardware", _CRYPTO_FAILED),
    "node.nonce": ("hardware", _CRYPTO_FAILED),
    "node.kind_not_allowed": ("hardware", _CONTRAINDICATED),
    "node.revoked": ("hardware", _CONTRAINDICATED),
    "node.measurement_mismatch": ("configuration", _CONTRAINDICATED),
    "node.stale": None,
    "node.future": None,
    "node.expired": None,
    # the runtime
    "runtime.unverified": ("configuration", _CRYPTO_FAILED),
    "runtime.namespace_mismatch": ("configuration", _CONTRAINDICATED),
    "runtime.service_account_mismatch": ("configuration", _CONTRAINDICATED),
    "runtime.image_drift": ("executables", _CONTRAINDICATED),
    "runtime.expired": None,
    # verifier detail: the policy's own code above names the section that failed
    "evidence.": None,
    # no appraisal was made: unreadable input, or the verifier itself failed
    "input.invalid": (ALL_CLAIMS, _UNEXPECTED_EVIDENCE),
    "engine.": (ALL_CLAIMS, _VERIFIER_MALFUNCTION),
    "remote.": (ALL_CLAIMS, _VERIFIER_MALFUNCTION),
    "policy.invalid": (ALL_CLAIMS, _VERIFIER_MALFUNCTION),
    "policy.incomplete": (ALL_CLAIMS, _VERIFIER_MALFUNCTION),
    "config.invalid": (ALL_CLAIMS, _VERIFIER_MALFUNCTION),
    "bundle.": (ALL_CLAIMS, _VERIFIER_MALFUNCTION),
    "revocation.invalid": (ALL_CLAIMS, _VERIFIER_MALFUNCTION),
    "broker.error": (ALL_CLAIMS, _VERIFIER_MALFUNCTION),
    "broker.expired": None,
    "broker.binding_mismatch": None,
    "attestpolicy.error": (ALL_CLAIMS, _VERIFIER_MALFUNCTION),
}
"""Reason code (or prefix ending in ``"."``) -> ``(trust-vector claim, AR4SI value)``;
None: the reason says nothing about one claim (it still makes the status contraindicated).
The exact code wins over a prefix; a code in neither is None."""

_HARDWARE_NODES: Final = frozenset({"tpm", "sev_snp", "az_snp_vtpm", "tdx"})
_CONFIDENTIAL_NODES: Final = frozenset({"sev_snp", "az_snp_vtpm", "tdx"})
_TIER_RANK: Final = {"affirming": 0, "none": 1, "warning": 2, "contraindicated": 3}
_MIN_NONCE_BYTES: Final = 8
_MAX_NONCE_BYTES: Final = 64


class EarResult(FrozenModel):
    """A decision as a signed EAR: the JWT and its claims."""

    decision: Decision
    token: str
    claims: dict[str, Any]


def tier(value: int) -> str:
    """The AR4SI trustworthiness tier of a claim value: ``none`` (-1 to 1), ``affirming``
    (2 to 31), ``warning`` (32 to 95) or ``contraindicated`` (96 and up)."""
    magnitude = abs(value)
    if magnitude <= 1:
        return "none"
    if magnitude < 32:
        return "affirming"
    if magnitude < 96:
        return "warning"
    return "contraindicated"


def _effect(code: str) -> tuple[str, int] | None:
    if code in REASON_EFFECTS:
        return REASON_EFFECTS[code]
    prefix = code.partition(".")[0] + "."
    return REASON_EFFECTS.get(prefix)


def _worse(current: int | None, value: int) -> int:
    if current is None:
        return value
    return max(current, value, key=lambda item: (_TIER_RANK[tier(item)], item))


def _affirmed(claims: ClaimSet) -> dict[str, int]:
    """What an allow affirms: the subject; the image (signed, trusted, running); the
    node's and the runtime's configuration against the baselines; genuine hardware for a
    TPM or a confidential-computing node, whose memory is also encrypted."""
    vector = {"instance-identity": _AFFIRMED}
    if claims.node is not None or claims.runtime is not None:
        vector["configuration"] = _AFFIRMED
    if claims.image is not None:
        vector["executables"] = _AFFIRMED
    if claims.node is not None and claims.node.kind in _HARDWARE_NODES:
        vector["hardware"] = _AFFIRMED
    if claims.node is not None and claims.node.kind in _CONFIDENTIAL_NODES:
        vector["runtime-opaque"] = _AFFIRMED
    return vector


def appraise(decision: Decision, claims: ClaimSet | None) -> tuple[str, dict[str, int]]:
    """``(ear.status, ear.trustworthiness-vector)`` for a decision on ``claims`` (None when
    the evidence could not be turned into claims). Vector claims in the draft's order."""
    if decision.allow and claims is not None:
        vector = _affirmed(claims)
        status = "affirming"
    else:
        worst: dict[str, int] = {}
        warnings_only = bool(decision.reasons)
        for reason in decision.reasons:
            effect = _effect(reason.code)
            if effect is None:
                warnings_only = False
                continue
            claim, value = effect
            warnings_only = warnings_only and tier(value) == "warning"
            for name in TRUST_CLAIMS if claim == ALL_CLAIMS else (claim,):
                worst[name] = _worse(worst.get(name), value)
        vector, status = worst, "warning" if warnings_only else "contraindicated"
    return status, {name: vector[name] for name in TRUST_CLAIMS if name in vector}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def ear_claims(
    *,
    issuer: str,
    decision: Decision,
    claims: ClaimSet | None,
    issued_at: int,
    expires_at: int | None,
    nonce: bytes | None,
) -> dict[str, Any]:
    """The EAR claims-set (times as NumericDate seconds). ``expires_at`` is set for an
    allow only; a nonce outside EAT's 8 to 64 bytes is not echoed (no ``eat_nonce``)."""
    status, vector = appraise(decision, claims)
    appraisal: dict[str, Any] = {"ear.status": status, "ear.trustworthiness-vector": vector}
    if decision.policy_revision:
        appraisal["ear.appraisal-policy-id"] = decision.policy_revision
    payload: dict[str, Any] = {
        "eat_profile": EAT_PROFILE,
        "iss": issuer,
        "iat": issued_at,
        "ear.verifier-id": dict(VERIFIER_ID),
        "submods": {SUBMOD: appraisal},
    }
    if expires_at is not None:
        payload["exp"] = expires_at
    if claims is not None:
        payload["sub"] = claims.subject.spiffe_id
    if nonce is not None and _MIN_NONCE_BYTES <= len(nonce) <= _MAX_NONCE_BYTES:
        payload["eat_nonce"] = _b64url(nonce)
    return payload
