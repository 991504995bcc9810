"""Kubernetes projected service account tokens (PSAT): who a pod runs as, and where.

A PSAT is a JWT checked against a JWKS snapshot of the cluster's service account issuer
from the trust configuration (no key fetching, ever). It binds namespace, service account
and pod into a verified :class:`~attestpolicy.claims.Runtime` (and, when the token names
its node, a ``k8s_psat`` :class:`~attestpolicy.claims.Node`, fresh only when the token
names the caller's per-request audience:
:func:`~attestpolicy.evidence._crypto.tokens.verify_identity_token`).
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, StrictStr

from attestpolicy._model import FrozenModel
from attestpolicy.claims import Node, Runtime
from attestpolicy.evidence._common import ClockSkewSeconds, Code, fail
from attestpolicy.evidence._crypto.jose import Jwks, claim_object, claim_text
from attestpolicy.evidence._crypto.tokens import Audiences, TokenSection, verify_identity_token

__all__ = ["PsatEvidence", "PsatResult", "PsatTrust", "verify_psat"]

_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", re.ASCII)


class PsatEvidence(TokenSection):
    """A Kubernetes projected service account token, compact JWS text."""


class PsatTrust(FrozenModel):
    """One cluster's service account issuer, its JWKS and the accepted audiences."""

    issuer: Annotated[StrictStr, Field(min_length=1, max_length=1024)]
    jwks: Jwks
    audiences: Audiences = ()
    clock_skew_seconds: ClockSkewSeconds = 0


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
    token = verify_identity_token(evidence.token, trust, now=now, nonce_audience=nonce_audience)
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
        fail(
            Code.IDENTITY_MISMATCH,
            f"{field}.sub",
            "sub does not name the token's namespace and service account",
        )
    runtime = Runtime(
        verified=True,
        namespace=namespace,
        service_account=sa_name,
        pod=pod_name,
        expires_at=token.expires_at,
    )
    return PsatResult(
        runtime=runtime,
        node=None if node_name is None else token.node("k8s_psat", node_name),
        issuer=trust.issuer,
        subject=subject,
        pod_uid=pod_uid,
        service_account_uid=sa_uid,
        node_uid=node_uid,
    )


# --- helpers ---------------------------------------------------------------------


def _k8s_name(obj: dict[str, Any], name: str, *, field: str) -> str:
    value = claim_text(obj, name, field=field, max_length=253)
    if not _K8S_NAME.match(value):
        fail(Code.MALFORMED, f"{field}.{name}", f"'{name}' is not a Kubernetes object name")
    return value


def _optional_text(obj: dict[str, Any], name: str, *, field: str) -> str | None:
    if name not in obj:
        return None
    return claim_text(obj, name, field=field, max_length=128)
