"""JWS/JWT verification core shared by the identity-token and JWT-SVID verifiers.

Only asymmetric algorithms (RS*, PS*, ES*) with a key picked by ``kid`` from a trusted
JWKS are accepted; ``none`` and HMAC never are. PyJWT checks the signature with the one
algorithm the trusted key allows. Time claims are checked here against the caller's
explicit ``now`` (PyJWT's own clock is never used).
"""

from __future__ import annotations

import hmac
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import ConfigDict, Field, PrivateAttr, StrictInt, StrictStr

from attestpolicy._keys import accepted_public_key
from attestpolicy._model import FrozenModel
from attestpolicy.evidence._common import (
    Code,
    decode_base64,
    fail,
    load_json_object,
)
from attestpolicy.evidence._validity import valid_until

MAX_TOKEN_CHARS: Final = 16 * 1024
"""Largest accepted compact JWS, in characters."""

MAX_JWKS_KEYS: Final = 64

_COMPACT_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$", re.ASCII)
_MAX_NUMERIC_DATE: Final = 253402300799  # 9999-12-31T23:59:59Z
_MAX_AUDIENCES: Final = 64

# algorithm -> (key type, EC curve or None)
_ALGORITHMS: Final[dict[str, tuple[str, str | None]]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
}
SUPPORTED_ALGORITHMS: Final = tuple(_ALGORITHMS)
_SIGNING_USES: Final = (None, "sig", "jwt-svid")

_B64URL = Annotated[StrictStr, Field(min_length=1, max_length=2048, pattern=r"^[A-Za-z0-9_-]+$")]


class Jwk(FrozenModel):
    """One public JSON Web Key (RFC 7517): RSA or EC; private members are rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    kty: Literal["RSA", "EC"]
    kid: Annotated[StrictStr, Field(min_length=1, max_length=256)] | None = None
    use: Annotated[StrictStr, Field(max_length=64)] | None = None
    alg: Annotated[StrictStr, Field(max_length=16)] | None = None
    key_ops: Annotated[tuple[StrictStr, ...], Field(max_length=8)] | None = None
    n: _B64URL | None = None
    e: _B64URL | None = None
    crv: Literal["P-256", "P-384", "P-521"] | None = None
    x: _B64URL | None = None
    y: _B64URL | None = None
    x5c: (
        Annotated[tuple[Annotated[StrictStr, Field(max_length=16384)], ...], Field(max_length=8)]
        | None
    ) = None
    x5t: _B64URL | None = None
    x5t_s256: _B64URL | None = Field(default=None, alias="x5t#S256")


@dataclass(frozen=True, slots=True)
class _TrustedKey:
    kty: str
    crv: str | None
    alg: str | None
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class Jwks(FrozenModel):
    """A JSON Web Key Set (RFC 7517 section 5), also in SPIFFE bundle form.

    Keys whose ``use`` is absent, ``sig`` or ``jwt-svid`` are signature keys and need a
    unique ``kid``; other keys (``enc``, ``x509-svid``) are ignored for JWTs.
    """

    keys: Annotated[tuple[Jwk, ...], Field(min_length=1, max_length=MAX_JWKS_KEYS)]
    spiffe_sequence: StrictInt | None = None
    spiffe_refresh_hint: StrictInt | None = None

    _by_kid: dict[str, _TrustedKey] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        """Load every signature key once; a bad key makes the whole set invalid."""
        for jwk in self.keys:
            if jwk.use not in _SIGNING_USES:
                continue
            if jwk.kid is None:
                raise ValueError("every signature key needs a 'kid'")
            if jwk.kid in self._by_kid:
                raise ValueError(f"duplicate kid {jwk.kid!r}")
            if jwk.alg is not None and jwk.alg not in _ALGORITHMS:
                raise ValueError(f"key {jwk.kid!r}: unsupported alg {jwk.alg!r}")
            self._by_kid[jwk.kid] = _load_key(jwk)
        if not self._by_kid:
            raise ValueError("the key set has no signature key")

    def key_for(self, kid: str) -> _TrustedKey | None:
        """The trusted signature key with this ``kid``, or None."""
        return self._by_kid.get(kid)


def _load_key(jwk: Jwk) -> _TrustedKey:
    data = jwk.model_dump(exclude_none=True, by_alias=True)
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    try:
        if jwk.kty == "RSA":
            if jwk.n is None or jwk.e is None:
                raise ValueError("RSA key needs 'n' and 'e'")
            rsa_key = RSAAlgorithm.from_jwk(data)
            if not isinstance(rsa_key, rsa.RSAPublicKey):
                raise ValueError("not an RSA public key")
            key = rsa_key
        else:
            if jwk.crv is None or jwk.x is None or jwk.y is None:
                raise ValueError("EC key needs 'crv', 'x' and 'y'")
            ec_key = ECAlgorithm.from_jwk(data)
            if not isinstance(ec_key, ec.EllipticCurvePublicKey):
                raise ValueError("not an EC public key")
            key = ec_key
    except jwt.PyJWTError as exc:
        raise ValueError(f"key {jwk.kid!r}: {exc}") from None
    try:
        accepted_public_key(key)  # RSA of at least 2048 bits (the curves are P-256/384/521)
    except ValueError as exc:
        raise ValueError(f"key {jwk.kid!r}: {exc}") from None
    if jwk.alg is not None:
        kty, crv = _ALGORITHMS[jwk.alg]
        if kty != jwk.kty or (crv is not None and crv != jwk.crv):
            raise ValueError(f"key {jwk.kid!r}: alg {jwk.alg} does not fit a {jwk.kty} key")
    return _TrustedKey(kty=jwk.kty, crv=jwk.crv, alg=jwk.alg, key=key)


@dataclass(frozen=True, slots=True)
class VerifiedJws:
    """A compact JWS whose signature verified under a trusted key."""

    header: dict[str, Any]
    claims: dict[str, Any]


def verify_jws(
    token: str, jwks: Jwks, *, field: str, allowed_typ: tuple[str, ...] = ("JWT",)
) -> VerifiedJws:
    """Verify a compact JWS against ``jwks``; return its header and JSON claims.

    Errors: ``evidence.malformed`` (shape, encoding, JSON), ``evidence.unsupported``
    (``none``/HMAC/unknown alg, ``crit``/``b64`` headers, wrong ``typ``),
    ``evidence.untrusted`` (unknown ``kid`` or a key that does not fit the alg),
    ``evidence.signature_invalid``.
    """
    _check_shape(token, field=field)
    header_b64, _, signature_b64 = token.split(".")
    header = load_json_object(_b64url(header_b64, field=f"{field}.header"), field=f"{field}.header")
    _b64url(signature_b64, field=f"{field}.signature")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in _ALGORITHMS:
        fail(
            Code.UNSUPPORTED,
            f"{field}.header.alg",
            f"algorithm {str(alg)[:16]!r} is not one of {', '.join(SUPPORTED_ALGORITHMS)}",
        )
    for name in ("crit", "b64"):
        if name in header:
            fail(Code.UNSUPPORTED, f"{field}.header", f"header parameter {name!r} is not supported")
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.upper() not in allowed_typ):
        fail(
            Code.UNSUPPORTED, f"{field}.header.typ", f"typ must be one of {', '.join(allowed_typ)}"
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        fail(Code.MALFORMED, f"{field}.header.kid", "header has no 'kid'")
    trusted = jwks.key_for(kid)
    if trusted is None:
        fail(Code.UNTRUSTED, f"{field}.header.kid", f"no trusted key with kid {kid[:64]!r}")
    kty, crv = _ALGORITHMS[alg]
    if (
        (trusted.alg is not None and trusted.alg != alg)
        or trusted.kty != kty
        or (crv is not None and trusted.crv != crv)
    ):
        fail(
            Code.UNTRUSTED,
            f"{field}.header.alg",
            f"trusted key {kid[:64]!r} may not be used with {alg}",
        )
    try:
        decoded = jwt.PyJWS().decode_complete(
            token,
            key=trusted.key,
            algorithms=[alg],
            options={"verify_signature": True, "enforce_minimum_key_length": True},
        )
    except jwt.InvalidSignatureError:
        fail(Code.SIGNATURE_INVALID, f"{field}.signature", "signature does not verify")
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        fail(Code.MALFORMED, field, f"cannot verify: {exc}")
    claims = load_json_object(decoded["payload"], field=f"{field}.payload")
    return VerifiedJws(header=header, claims=claims)


def peek_claims(token: str, *, field: str) -> dict[str, Any]:
    """The claims of a compact JWS WITHOUT verifying it (only to pick the key set)."""
    _check_shape(token, field=field)
    payload_b64 = token.split(".")[1]
    return load_json_object(
        _b64url(payload_b64, field=f"{field}.payload"), field=f"{field}.payload"
    )


def _b64url(segment: str, *, field: str) -> bytes:
    return decode_base64(segment, field=field, alphabet="urlsafe", padded=False)


def _check_shape(token: str, *, field: str) -> None:
    if len(token) > MAX_TOKEN_CHARS:
        fail(Code.MALFORMED, field, f"over the {MAX_TOKEN_CHARS} character limit")
    if not _COMPACT_JWS.match(token):
        fail(Code.MALFORMED, field, "not a compact JWS (three base64url segments)")


# --- claims --------------------------------------------------------------------


def numeric_date(claims: Mapping[str, Any], name: str, *, field: str) -> datetime | None:
    """The NumericDate claim ``name`` as an aware UTC datetime, or None when absent."""
    value = claims.get(name)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= _MAX_NUMERIC_DATE
    ):
        fail(Code.MALFORMED, f"{field}.{name}", f"'{name}' is not a NumericDate")
    return datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True, slots=True)
class Lifetime:
    """The validated time claims of a token."""

    issued_at: datetime | None
    expires_at: datetime


def check_lifetime(
    claims: Mapping[str, Any], *, now: datetime, leeway_seconds: int, field: str
) -> Lifetime:
    """Check ``exp`` (required), ``nbf`` and ``iat`` against ``now`` with ``leeway``.

    Missing ``exp`` is ``evidence.malformed``; outside the window (expired, not yet
    valid, issued in the future) is ``evidence.expired``.
    """
    leeway = timedelta(seconds=leeway_seconds)
    expires_at = numeric_date(claims, "exp", field=field)
    not_before = numeric_date(claims, "nbf", field=field)
    issued_at = numeric_date(claims, "iat", field=field)
    if expires_at is None:
        fail(Code.MALFORMED, f"{field}.exp", "token has no 'exp'")
    if issued_at is not None and issued_at > expires_at:
        fail(Code.MALFORMED, f"{field}.iat", "'iat' is after 'exp'")
    if now >= expires_at + leeway:
        fail(Code.EXPIRED, f"{field}.exp", f"token expired at {expires_at.isoformat()}")
    if not_before is not None and now + leeway < not_before:
        fail(Code.EXPIRED, f"{field}.nbf", f"token not valid before {not_before.isoformat()}")
    if issued_at is not None and now + leeway < issued_at:
        fail(Code.EXPIRED, f"{field}.iat", f"token issued in the future ({issued_at.isoformat()})")
    valid_until(expires_at + leeway)
    return Lifetime(issued_at=issued_at, expires_at=expires_at)


def required_issued_at(lifetime: Lifetime, *, field: str) -> datetime:
    """The token's ``iat``; ``evidence.malformed`` when the token has none."""
    if lifetime.issued_at is None:
        fail(Code.MALFORMED, f"{field}.iat", "token has no 'iat'")
    return lifetime.issued_at


def check_audience(
    claims: Mapping[str, Any],
    *,
    audiences: tuple[str, ...],
    nonce_audience: str | None,
    field: str,
) -> bool:
    """Check ``aud``; return True when it carried the per-request ``nonce_audience``.

    With ``nonce_audience`` the token must name exactly that audience (else
    ``evidence.nonce_mismatch``); without it, one of the trusted ``audiences``
    (else ``evidence.audience_mismatch``).
    """
    raw = claims.get("aud")
    if raw is None:
        fail(Code.AUDIENCE_MISMATCH, f"{field}.aud", "token has no 'aud'")
    token_audiences = [raw] if isinstance(raw, str) else raw
    if (
        not isinstance(token_audiences, list)
        or not 0 < len(token_audiences) <= _MAX_AUDIENCES
        or not all(isinstance(item, str) for item in token_audiences)
    ):
        fail(
            Code.MALFORMED, f"{field}.aud", "'aud' must be a string or a non-empty list of strings"
        )
    if nonce_audience is not None:
        wanted = nonce_audience.encode("utf-8")
        if any(hmac.compare_digest(item.encode("utf-8"), wanted) for item in token_audiences):
            return True
        fail(Code.NONCE_MISMATCH, f"{field}.aud", "token audience is not the per-request audience")
    if any(item in audiences for item in token_audiences):
        return False
    fail(Code.AUDIENCE_MISMATCH, f"{field}.aud", "token audience is not a trusted audience")


def claim_text(claims: Mapping[str, Any], name: str, *, field: str, max_length: int = 1024) -> str:
    """A required non-empty string claim (``evidence.malformed`` otherwise)."""
    value = claims.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= max_length:
        fail(
            Code.MALFORMED,
            f"{field}.{name}",
            f"'{name}' must be a non-empty string of at most {max_length} characters",
        )
    return value


def claim_object(claims: Mapping[str, Any], name: str, *, field: str) -> dict[str, Any]:
    """A required JSON-object claim (``evidence.malformed`` otherwise)."""
    value = claims.get(name)
    if not isinstance(value, dict):
        fail(Code.MALFORMED, f"{field}.{name}", f"'{name}' must be a JSON object")
    return value
