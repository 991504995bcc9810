"""GCE instance identity tokens: a Google-signed JWT naming the VM it was issued to.

The token is checked against a JWKS snapshot from the trust configuration (no key
fetching, ever) and becomes a :class:`~attestpolicy.claims.Node` of kind ``gcp_iit``,
fresh only when it names the caller's per-request audience
(:func:`~attestpolicy.evidence._crypto.tokens.verify_identity_token`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final

from pydantic import Field, StrictStr

from attestpolicy._model import FrozenModel
from attestpolicy.claims import Node
from attestpolicy.evidence._common import ClockSkewSeconds, Code, fail
from attestpolicy.evidence._crypto.jose import Jwks, claim_object, claim_text
from attestpolicy.evidence._crypto.tokens import Audiences, TokenSection, verify_identity_token

__all__ = ["GOOGLE_ISSUER", "GceIitEvidence", "GceIitResult", "GceIitTrust", "verify_gce_iit"]

GOOGLE_ISSUER: Final = "https://accounts.google.com"
"""The ``iss`` of a GCE instance identity token."""

_GCE_INSTANCE_ID = re.compile(r"^[0-9]{1,20}$", re.ASCII)


class GceIitEvidence(TokenSection):
    """A GCE instance identity token (``format=full``), compact JWS text."""


class GceIitTrust(FrozenModel):
    """Google's signing keys (a JWKS snapshot of oauth2/v3/certs) and what to accept."""

    jwks: Jwks
    audiences: Audiences = ()
    """Static audiences accepted when no per-request ``nonce_audience`` is given."""
    issuer: Annotated[StrictStr, Field(min_length=1, max_length=256)] = GOOGLE_ISSUER
    project_ids: Annotated[
        tuple[Annotated[StrictStr, Field(max_length=64)], ...], Field(max_length=256)
    ] = ()
    """If non-empty, the token's project must be one of these (else identity_mismatch)."""
    clock_skew_seconds: ClockSkewSeconds = 0


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
    token = verify_identity_token(evidence.token, trust, now=now, nonce_audience=nonce_audience)
    claims = token.claims
    google = claim_object(claims, "google", field=field)
    gce = claim_object(google, "compute_engine", field=f"{field}.google")
    gce_field = f"{field}.google.compute_engine"
    instance_id = claim_text(gce, "instance_id", field=gce_field, max_length=20)
    if not _GCE_INSTANCE_ID.match(instance_id):
        fail(Code.MALFORMED, f"{gce_field}.instance_id", "instance_id is not numeric")
    project_id = claim_text(gce, "project_id", field=gce_field, max_length=64)
    project_number = gce.get("project_number")
    if (
        isinstance(project_number, bool)
        or not isinstance(project_number, int)
        or project_number < 0
    ):
        fail(
            Code.MALFORMED,
            f"{gce_field}.project_number",
            "project_number must be a non-negative integer",
        )
    zone = claim_text(gce, "zone", field=gce_field, max_length=64)
    instance_name = claim_text(gce, "instance_name", field=gce_field, max_length=253)
    if trust.project_ids and project_id not in trust.project_ids:
        fail(
            Code.IDENTITY_MISMATCH,
            f"{gce_field}.project_id",
            f"project {project_id!r} is not a trusted project",
        )
    email = claims.get("email")
    return GceIitResult(
        node=token.node("gcp_iit", instance_id),
        project_id=project_id,
        project_number=project_number,
        zone=zone,
        instance_name=instance_name,
        service_account_email=email if isinstance(email, str) else None,
    )
