"""Identity JWTs: GCE instance identity tokens and Kubernetes projected service account tokens.

Both are RS256/ES256-style JWTs checked against a JWKS snapshot from the trust
configuration (no key fetching, ever). A GCE token becomes a :class:`Node`
(``kind="gcp_iit"``); a PSAT binds namespace, service account and pod into a verified
:class:`Runtime` (and, when the token names its node, a ``k8s_psat`` :class:`Node`).

Freshness: neither token carries a nonce. When the caller asked the workload for a token
whose audience is a per-request value (``nonce_audience``), a token naming exactly that
audience sets ``nonce_verified=True``; otherwise it is False.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import Field, StrictStr

from attestpolicy.claims import Node, Runtime
from attestpolicy.errors import EvidenceError
from attestpolicy.evidence._common import (
    IDENTITY_MISMATCH,
    MALFORMED,
    MAX_CLOCK_SKEW_SECONDS,
    EvidenceSection,
    FrozenModel,
    require_utc,
)
from attestpolicy.evidence._crypto.jose import (
    MAX_TOKEN_CHARS,
    Jwks,
    check_audience,
    check_lifetime,
    claim_object,
    claim_text,
    required_issued_at,
    verify_jws,
)

__all__ = [
    "GOOGLE_ISSUER",
    "GceIitEvidence",
    "GceIitResult",
    "GceIitTrust",
    "PsatEvidence",
    "PsatResult",
    "PsatTrust",
    "verify_gce_iit",
    "verify_psat",
]

GOOGLE_ISSUER: Final = "https://accounts.google.com"
"""The ``iss`` of a GCE instance identity token."""

_Token = Annotated[StrictStr, Field(min_length=5, max_length=MAX_TOKEN_CHARS)]
_Audience = Annotated[StrictStr, Field(min_length=1, max_length=1024)]
_Audiences = Annotated[tuple[_Audience, ...], Field(max_length=64)]
_ClockSkew = Annotated[int, Field(ge=0, le=MAX_CLOCK_SKEW_SECONDS)]
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", re.ASCII)
_GCE_INSTANCE_ID = re.compile(r"^[0-9]{1,20}$", re.ASCII)


# --- GCE instance identity token -------------------------------------------------


class GceIitEvidence(EvidenceSection):
    """A GCE instance identity token (``format=full``), compact JWS text."""

    token: _Token


class GceIitTrust(FrozenModel):
    """Google's signing keys (a JWKS snapshot of oauth2/v3/certs) and what to accept."""

    jwks: Jwks
    audiences: _Audiences = ()
    """Static audiences accepted when no per-request ``nonce_audience`` is given."""
    issuer: Annotated[StrictStr, Field(min_length=1, max_length=256)] = GOOGLE_ISSUER
    project_ids: Annotated[
        tuple[Annotated[StrictStr, Field(max_length=64)], ...], Field(max_length=256)
    ] = ()
    """If non-empty, the token's project must be one of these (else identity_mismatch)."""
    clock_skew_seconds: _ClockSkew = 0


@dataclass(frozen=True, slots=True)
class GceIitResult:
    """A verified GCE token: the node claim plus the facts it names."""

    node: Node
    project_id: str
    project_number: int
    zone: str
    instance_name: str
    service_account_email: str | None


def verify_gce_iit(
    evidence: GceIitEvidence,
    trust: GceIitTrust,
    *,
    now: datetime,
    nonce_audience: str | None = None,
) -> GceIitResult:
    """Verify a GCE instance identity token at ``now``.

    Checks the RS256 signature under ``trust.jwks`` (by ``kid``), ``iss``, ``aud``,
    ``exp``/``iat`` with ``clock_skew_seconds`` of leeway, the ``google.compute_engine``
    claim (only ``format=full`` tokens name an instance) and ``project_ids``.
    Raises :class:`EvidenceError`; see docs/evidence/cloud-k8s-spiffe.md for the codes.
    """
    field = "token"
    token = _check_token(evidence.token, trust, now=now, nonce_audience=nonce_audience)
    claims = token.claims
    google = claim_object(claims, "google", field=field)
    gce = claim_object(google, "compute_engine", field=f"{field}.google")
    gce_field = f"{field}.google.compute_engine"
    instance_id = claim_text(gce, "instance_id", field=gce_field, max_length=20)
    if not _GCE_INSTANCE_ID.match(instance_id):
        raise EvidenceError(
            "instance_id is not numeric", field=f"{gce_field}.instance_id", code=MALFORMED
        )
    project_id = claim_text(gce, "project_id", field=gce_field, max_length=64)
    project_number = gce.get("project_number")
    if (
        isinstance(project_number, bool)
        or not isinstance(project_number, int)
        or project_number < 0
    ):
        raise EvidenceError(
            "project_number must be a non-negative integer",
            field=f"{gce_field}.project_number",
            code=MALFORMED,
        )
    zone = claim_text(gce, "zone", field=gce_field, max_length=64)
    instance_name = claim_text(gce, "instance_name", field=gce_field, max_length=253)
    if trust.project_ids and project_id not in trust.project_ids:
        raise EvidenceError(
            f"project {project_id!r} is not a trusted project",
            field=f"{gce_field}.project_id",
            code=IDENTITY_MISMATCH,
        )
    email = claims.get("email")
    node = Node(
        kind="gcp_iit",
        id=instance_id,
        verified=True,
        nonce_verified=token.nonce_verified,
        issued_at=token.issued_at,
        expires_at=token.expires_at,
    )
    return GceIitResult(
        node=node,
        project_id=project_id,
        project_number=project_number,
        zone=zone,
        instance_name=instance_name,
        service_account_email=email if isinstance(email, str) else None,
    )


# --- Kubernetes projected service account token ----------------------------------


class PsatEvidence(EvidenceSection):
    """A Kubernetes projected service account token, compact JWS text."""

    token: _Token


class PsatTrust(FrozenModel):
    """One cluster's service account issuer, its JWKS and the accepted audiences."""

    issuer: Annotated[StrictStr, Field(min_length=1, max_length=1024)]
    jwks: Jwks
    audiences: _Audiences = ()
    clock_skew_seconds: _ClockSkew = 0


@dataclass(frozen=True, slots=True)
class PsatResult:
    """A verified PSAT: the runtime facts it binds, and the node when it names one."""

    runtime: Runtime
    node: Node | None
    issuer: str
    subject: str
    pod_uid: str | None
    service_account_uid: str | None
    node_uid: str | None


def verify_psat(
    evidence: PsatEvidence,
    trust: PsatTrust,
    *,
    now: datetime,
    nonce_audience: str | None = None,
) -> PsatResult:
    """Verify a projected service account token at ``now``.

    Checks the signature under ``trust.jwks``, ``iss`` (exact), ``aud``, ``exp``, ``nbf``
    and ``iat`` with ``clock_skew_seconds`` of leeway, the ``kubernetes.io`` claim
    (namespace, service account; pod and node when present) and that ``sub`` is
    ``system:serviceaccount:<namespace>:<name>``. The returned ``Runtime`` is verified
    and expires with the token; it carries no image digest (a PSAT does not bind one).
    """
    field = "token"
    token = _check_token(evidence.token, trust, now=now, nonce_audience=nonce_audience)
    claims = token.claims
    k8s_field = f"{field}.kubernetes.io"
    k8s = claim_object(claims, "kubernetes.io", field=field)
    namespace = _k8s_name(k8s, "namespace", field=k8s_field)
    service_account = claim_object(k8s, "serviceaccount", field=k8s_field)
    sa_name = _k8s_name(service_account, "name", field=f"{k8s_field}.serviceaccount")
    sa_uid = _optional_text(service_account, "uid", field=f"{k8s_field}.serviceaccount")
    pod_name = pod_uid = node_name = node_uid = None
    if "pod" in k8s:
        pod = claim_object(k8s, "pod", field=k8s_field)
        pod_name = _k8s_name(pod, "name", field=f"{k8s_field}.pod")
        pod_uid = _optional_text(pod, "uid", field=f"{k8s_field}.pod")
    if "node" in k8s:
        node_claim = claim_object(k8s, "node", field=k8s_field)
        node_name = _k8s_name(node_claim, "name", field=f"{k8s_field}.node")
        node_uid = _optional_text(node_claim, "uid", field=f"{k8s_field}.node")
    subject = claim_text(claims, "sub", field=field)
    expected_subject = f"system:serviceaccount:{namespace}:{sa_name}"
    if not hmac.compare_digest(subject.encode("utf-8"), expected_subject.encode("utf-8")):
        raise EvidenceError(
            "sub does not name the token's namespace and service account",
            field=f"{field}.sub",
            code=IDENTITY_MISMATCH,
        )
    runtime = Runtime(
        verified=True,
        namespace=namespace,
        service_account=sa_name,
        pod=pod_name,
        expires_at=token.expires_at,
    )
    node = None
    if node_name is not None:
        node = Node(
            kind="k8s_psat",
            id=node_name,
            verified=True,
            nonce_verified=token.nonce_verified,
            issued_at=token.issued_at,
            expires_at=token.expires_at,
        )
    return PsatResult(
        runtime=runtime,
        node=node,
        issuer=trust.issuer,
        subject=subject,
        pod_uid=pod_uid,
        service_account_uid=sa_uid,
        node_uid=node_uid,
    )


# --- helpers ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CheckedToken:
    claims: dict[str, Any]
    issued_at: datetime
    expires_at: datetime
    nonce_verified: bool


def _check_token(
    token: str, trust: GceIitTrust | PsatTrust, *, now: datetime, nonce_audience: str | None
) -> _CheckedToken:
    """The checks both tokens share: signature, ``iss``, lifetime (``iat`` required), ``aud``."""
    now = require_utc(now)
    field = "token"
    claims = verify_jws(token, trust.jwks, field=field).claims
    _check_issuer(claims, trust.issuer, field=field)
    lifetime = check_lifetime(claims, now=now, leeway_seconds=trust.clock_skew_seconds, field=field)
    return _CheckedToken(
        claims=claims,
        issued_at=required_issued_at(lifetime, field=field),
        expires_at=lifetime.expires_at,
        nonce_verified=check_audience(
            claims, audiences=trust.audiences, nonce_audience=nonce_audience, field=field
        ),
    )


def _check_issuer(claims: dict[str, Any], issuer: str, *, field: str) -> None:
    actual = claim_text(claims, "iss", field=field)
    if not hmac.compare_digest(actual.encode("utf-8"), issuer.encode("utf-8")):
        raise EvidenceError(
            f"issuer {actual[:128]!r} is not the trusted issuer",
            field=f"{field}.iss",
            code=IDENTITY_MISMATCH,
        )


def _k8s_name(obj: dict[str, Any], name: str, *, field: str) -> str:
    value = claim_text(obj, name, field=field, max_length=253)
    if not _K8S_NAME.match(value):
        raise EvidenceError(
            f"'{name}' is not a Kubernetes object name", field=f"{field}.{name}", code=MALFORMED
        )
    return value


def _optional_text(obj: dict[str, Any], name: str, *, field: str) -> str | None:
    if name not in obj:
        return None
    return claim_text(obj, name, field=field, max_length=128)
