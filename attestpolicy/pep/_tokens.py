"""Broker credentials checked: the bearer token, its header, signature, claims and binding."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
from collections.abc import Mapping
from typing import Any, Final

import jwt

from attestpolicy._json import loads_strict

__all__ = [
    "Rejection",
    "TokenVerifier",
    "UnknownKey",
    "bearer_token",
    "check_binding",
    "thumbprint",
]

_BEARER: Final = re.compile(
    r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)"
)
_REQUIRED_CLAIMS: Final = ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]
_STATUS_CODES: Final = {401: "unauthorized", 403: "forbidden", 503: "unavailable"}

# What each PyJWT failure means, most specific first (subclasses before their bases).
_JWT_FAILURES: Final[tuple[tuple[type[jwt.PyJWTError], str], ...]] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not yet valid"),
    (jwt.InvalidAudienceError, "the token is not for this audience"),
    (jwt.InvalidIssuerError, "the token is not from the expected issuer"),
    (jwt.InvalidSignatureError, "the token's signature does not verify"),
    (jwt.InvalidAlgorithmError, "the token's algorithm is not the key's"),
    (jwt.DecodeError, "the token is malformed"),
)


class Rejection(Exception):
    """A refused request: the HTTP ``status`` (401, 403 or 503) and why.

    ``bearer_error`` is the RFC 6750 error of the ``WWW-Authenticate`` challenge sent
    with a 401 (None: a bare challenge, for a request without a token); ``claims`` are
    the verified claims, when the refusal came after the signature was checked.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        bearer_error: str | None = "invalid_token",
        claims: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.bearer_error = bearer_error
        self.claims = claims

    @property
    def code(self) -> str:
        """The OPA-style error code: ``unauthorized``, ``forbidden`` or ``unavailable``."""
        return _STATUS_CODES[self.status]


class UnknownKey(Exception):
    """The token names a key id the cached JWKS does not have."""

    def __init__(self, kid: str) -> None:
        super().__init__(kid)
        self.kid = kid


def bearer_token(headers: list[tuple[bytes, bytes]], max_bytes: int) -> str:
    """The token of the request's one ``Authorization: Bearer`` header, else Rejection."""
    values = [value for name, value in headers if name.lower() == b"authorization"]
    if not values:
        raise Rejection(401, "no bearer token", bearer_error=None)
    if len(values) > 1:
        raise Rejection(401, "more than one Authorization header", bearer_error="invalid_request")
    if len(values[0]) > max_bytes + 64:
        raise Rejection(401, f"the token is over {max_bytes} bytes", bearer_error="invalid_request")
    found = _BEARER.fullmatch(values[0].decode("latin-1"))
    if found is None:
        raise Rejection(
            401, "the Authorization header is not a bearer JWT", bearer_error="invalid_request"
        )
    token = found.group(1)
    if len(token) > max_bytes:
        raise Rejection(401, f"the token is over {max_bytes} bytes", bearer_error="invalid_request")
    return token


def thumbprint(certificate_der: bytes) -> str:
    """RFC 8705 ``x5t#S256``: base64url (no padding) of the SHA-256 of the DER certificate."""
    digest = hashlib.sha256(certificate_der).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_binding(claims: Mapping[str, Any], certificate_der: bytes | None) -> None:
    """Check the token's ``cnf`` against the client certificate; Rejection when bound
    to another certificate, or to one while none was presented (fail closed)."""
    cnf = claims.get("cnf")
    if cnf is None:
        return
    bound = cnf.get("x5t#S256") if isinstance(cnf, dict) else None
    if not isinstance(bound, str):
        raise Rejection(401, "the token's cnf claim is not an x5t#S256 binding", claims=claims)
    if certificate_der is None:
        raise Rejection(
            401,
            "the token is bound to a client certificate (cnf) and none was presented",
            claims=claims,
        )
    if not hmac.compare_digest(thumbprint(certificate_der), bound):
        raise Rejection(
            401, "the client certificate is not the one the token is bound to", claims=claims
        )


def _header(token: str) -> dict[str, Any]:
    """The token's (unverified) JOSE header: what pyjwt reads too, parsed strictly."""
    segment = token.split(".", 1)[0]
    try:
        header = loads_strict(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise Rejection(401, "the token is malformed") from None
    if not isinstance(header, dict):
        raise Rejection(401, "the token is malformed")
    return header


class TokenVerifier:
    """Verifies a broker credential: header, signature (against a key of the JWKS),
    ``iss``, ``aud``, ``exp``, ``nbf`` and ``iat`` with ``leeway_seconds``, and the
    claims every credential has (``sub``, ``jti``, ``attestation``)."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        algorithms: frozenset[str],
        leeway_seconds: float,
    ) -> None:
        for name, value in (("issuer", issuer), ("audience", audience)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string")
        if isinstance(leeway_seconds, bool) or not isinstance(leeway_seconds, int | float):
            raise ValueError("leeway_seconds must be a number")
        if not (math.isfinite(leeway_seconds) and 0 <= leeway_seconds <= 300):
            raise ValueError("leeway_seconds must be between 0 and 300")
        self._issuer = issuer
        self._audience = audience
        self._algorithms = algorithms
        self._leeway = float(leeway_seconds)

    def verify(self, token: str, keys: Mapping[str, jwt.PyJWK]) -> dict[str, Any]:
        """The verified claims; :class:`UnknownKey` when ``keys`` lacks the token's kid,
        :class:`Rejection` (401) for every other problem."""
        header = _header(token)
        algorithm, kid = header.get("alg"), header.get("kid")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise Rejection(401, "the token's algorithm is not allowed")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
            raise Rejection(401, "the token is not a JWT (typ)")
        if not isinstance(kid, str):
            raise Rejection(401, "the token names no key (kid)")
        key = keys.get(kid)
        if key is None:
            raise UnknownKey(kid)
        if key.algorithm_name != algorithm:
            raise Rejection(401, "the token's algorithm is not its key's")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": _REQUIRED_CLAIMS, "strict_aud": True},
            )
        except jwt.MissingRequiredClaimError as exc:
            raise Rejection(401, f"the token has no {exc.claim} claim") from None
        except jwt.PyJWTError as exc:
            message = next(
                (text for kind, text in _JWT_FAILURES if isinstance(exc, kind)),
                "the token is invalid",
            )
            raise Rejection(401, message) from None
        for name in ("sub", "jti"):
            if not isinstance(claims[name], str) or not claims[name]:
                raise Rejection(401, f"the token's {name} claim is not a non-empty string")
        if not isinstance(claims.get("attestation"), dict):
            raise Rejection(401, "the token has no attestation claim")
        return claims
