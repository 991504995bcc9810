"""What the broker hands back, and the claims of the credential JWT.

A :class:`Credential` is the typed result of one issuance: the decision, and the JWT when
(and only when) the decision allowed it. :func:`credential_claims` builds the JWT's claims
from the decision and the claim set it was made on: ``iss``, ``sub`` (the SPIFFE ID),
``aud`` (the requested audience), ``iat``/``nbf``/``exp``, ``jti`` (the decision id), the
``attestation`` claim (what the credential rests on) and, when it is bound to an X.509
certificate, ``cnf`` with the certificate's SHA-256 thumbprint (RFC 8705 ``x5t#S256``).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import Field

from attestpolicy._keys import CERTIFICATE_ERRORS
from attestpolicy._model import FrozenModel
from attestpolicy.claims import ClaimSet
from attestpolicy.decision import Decision

__all__ = ["Credential", "attestation_claim", "certificate_thumbprint", "credential_claims"]


class Credential(FrozenModel):
    """One issuance: the decision, and the signed JWT when it allowed one.

    ``token`` (and ``jti``, ``subject``, ``audience``, ``issued_at``, ``expires_at``) is
    None on a deny: check :attr:`issued`, then read ``decision.reasons``. An allow the
    broker does not mint for (no time left before ``valid_until``, a binding mismatch, a
    broker failure) comes back as a deny with the broker's reason. The token is left out
    of ``repr``: it is a bearer credential.
    """

    decision: Decision
    token: str | None = Field(default=None, repr=False)
    jti: str | None = None
    subject: str | None = None
    audience: str | None = None
    issued_at: datetime | None = None
    expires_at: datetime | None = None

    @property
    def issued(self) -> bool:
        """True when a token was minted."""
        return self.token is not None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def certificate_thumbprint(certificate: bytes | x509.Certificate) -> str:
    """``x5t#S256`` of a certificate (PEM or DER bytes, or a certificate object):
    base64url, without padding, of the SHA-256 of its DER encoding (RFC 8705, 3.1).

    Raises ValueError when ``certificate`` is not one X.509 certificate.
    """
    if isinstance(certificate, x509.Certificate):
        der = certificate.public_bytes(serialization.Encoding.DER)
    elif isinstance(certificate, bytes):
        try:
            if certificate.lstrip().startswith(b"-----BEGIN"):
                der = x509.load_pem_x509_certificate(certificate).public_bytes(
                    serialization.Encoding.DER
                )
            else:
                x509.load_der_x509_certificate(certificate)  # refuses anything else
                der = certificate
        except CERTIFICATE_ERRORS as exc:  # InvalidVersion among them: one ValueError
            raise ValueError(f"not an X.509 certificate: {exc}") from None
    else:
        raise ValueError(f"a certificate is PEM or DER bytes, not {type(certificate).__name__}")
    return _b64url(hashlib.sha256(der).digest())


def attestation_claim(decision: Decision, claims: ClaimSet) -> dict[str, Any]:
    """The ``attestation`` claim: the policy revision, what bounded the TTL, and the
    evidence the credential rests on (image digest, the verified signatures' signers,
    builder, source repository, node kind and id)."""
    image, provenance, node = claims.image, claims.provenance, claims.node
    signers = [
        {"issuer": signature.issuer, "subject": signature.subject, "key_id": signature.key_id}
        for signature in (image.signatures if image is not None else ())
        if signature.verified
    ]
    return {
        "policy_revision": decision.policy_revision,
        "ttl_bound_by": decision.ttl_bound_by,
        "evidence": {
            "image_digest": image.digest if image is not None else None,
            "signers": signers,
            "builder_id": provenance.builder_id if provenance is not None else None,
            "source_repo": provenance.source_repo if provenance is not None else None,
            "node": {"kind": node.kind, "id": node.id} if node is not None else None,
        },
    }


def credential_claims(
    *,
    issuer: str,
    decision: Decision,
    claims: ClaimSet,
    issued_at: int,
    expires_at: int,
    thumbprint: str | None,
) -> dict[str, Any]:
    """The credential JWT's claims (times as NumericDate seconds)."""
    payload: dict[str, Any] = {
        "iss": issuer,
        "sub": claims.subject.spiffe_id,
        "aud": claims.request.audience,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": expires_at,
        "jti": decision.decision_id,
        "attestation": attestation_claim(decision, claims),
    }
    if thumbprint is not None:
        payload["cnf"] = {"x5t#S256": thumbprint}
    return payload
