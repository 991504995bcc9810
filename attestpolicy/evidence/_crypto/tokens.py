"""Identity tokens: the JWT profile GCE instance identity tokens and Kubernetes PSATs share.

An identity token is a compact JWS (:class:`TokenSection`) checked by
:func:`verify_identity_token` against a trust section's JWKS, issuer, audiences and clock
skew; :meth:`IdentityToken.node` is the node claim it vouches for.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

from pydantic import Field, StrictStr

from attestpolicy.claims import Node
from attestpolicy.evidence._common import Code, EvidenceSection, fail, require_utc
from attestpolicy.evidence._crypto.jose import (
    MAX_TOKEN_CHARS,
    Jwks,
    check_audience,
    check_lifetime,
    claim_text,
    required_issued_at,
    verify_jws,
)

__all__ = [
    "Audiences",
    "IdentityToken",
    "IdentityTokenTrust",
    "TokenSection",
    "verify_identity_token",
]


class TokenSection(EvidenceSection):
    """An evidence section that is one compact JWS (``token``)."""

    token: Annotated[StrictStr, Field(min_length=5, max_length=MAX_TOKEN_CHARS)]


Audiences = Annotated[
    tuple[Annotated[StrictStr, Field(min_length=1, max_length=1024)], ...], Field(max_length=64)
]
"""Static audiences a trust section accepts."""


class IdentityTokenTrust(Protocol):
    """What an identity token is checked against (a trust section's fields)."""

    @property
    def jwks(self) -> Jwks: ...

    @property
    def issuer(self) -> str: ...

    @property
    def audiences(self) -> tuple[str, ...]: ...

    @property
    def clock_skew_seconds(self) -> int: ...


@dataclass(frozen=True, slots=True)
class IdentityToken:
    """A verified identity token: its claims, its lifetime, and whether its audience was
    the per-request one."""

    claims: dict[str, Any]
    issued_at: datetime
    expires_at: datetime
    nonce_verified: bool

    def node(self, kind: Literal["gcp_iit", "k8s_psat"], node_id: str) -> Node:
        """The verified node claim this token vouches for, valid as long as the token."""
        return Node(
            kind=kind,
            id=node_id,
            verified=True,
            nonce_verified=self.nonce_verified,
            issued_at=self.issued_at,
            expires_at=self.expires_at,
        )


def verify_identity_token(
    token: str,
    trust: IdentityTokenTrust,
    *,
    now: datetime,
    nonce_audience: str | None,
    field: str = "token",
) -> IdentityToken:
    """The checks every identity token gets: signature under ``trust.jwks``, ``iss``
    (exact), lifetime with ``clock_skew_seconds`` of leeway (``iat`` required) and ``aud``
    (see :func:`check_audience`).

    Freshness: identity tokens carry no nonce. When the caller asked for a token whose
    audience is a per-request value (``nonce_audience``), a token naming exactly that
    audience is fresh (``nonce_verified``); otherwise it is not.
    """
    now = require_utc(now)
    claims = verify_jws(token, trust.jwks, field=field).claims
    issuer = claim_text(claims, "iss", field=field)
    if not hmac.compare_digest(issuer.encode("utf-8"), trust.issuer.encode("utf-8")):
        fail(
            Code.IDENTITY_MISMATCH,
            f"{field}.iss",
            f"issuer {issuer[:128]!r} is not the trusted issuer",
        )
    lifetime = check_lifetime(claims, now=now, leeway_seconds=trust.clock_skew_seconds, field=field)
    return IdentityToken(
        claims=claims,
        issued_at=required_issued_at(lifetime, field=field),
        expires_at=lifetime.expires_at,
        nonce_verified=check_audience(
            claims, audiences=trust.audiences, nonce_audience=nonce_audience, field=field
        ),
    )
