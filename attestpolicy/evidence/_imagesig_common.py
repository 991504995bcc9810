"""Helpers shared by the image-signature verifiers (Sigstore bundles and cosign)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from pydantic import BaseModel, ValidationError

from attestpolicy.claims import Image, ImageSignature
from attestpolicy.errors import EvidenceError

__all__ = [
    "CLOCK_SKEW",
    "MALFORMED",
    "ImageSignatureResult",
    "SigningKey",
    "b64decode_standard",
    "check_not_future",
    "key_id",
    "load_certificates",
    "load_public_key",
    "loads_strict",
    "malformed_on_error",
    "require_aware",
    "sha256_digest",
    "signing_key",
    "validate_model",
]

CLOCK_SKEW: Final = timedelta(minutes=5)
"""How far a signed time (Rekor, TSA) may lie after ``now`` before it is refused."""

MALFORMED: Final = "evidence.malformed"

SigningKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

_STANDARD_B64 = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")
_MIN_RSA_BITS = 2048
_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_MAX_PEM_CERTS = 16


@dataclass(frozen=True, slots=True)
class ImageSignatureResult:
    """A verified image signature: the claims part plus what it was checked against.

    ``digest`` is set only when the evidence reference is pinned by digest; for a
    tag-only reference it is ``None`` (the policy then denies ``image.digest_required``).
    ``signed_digest`` is the manifest digest the signature covers, always set;
    ``signed_reference`` the docker-reference a cosign signature names (``None`` for
    Sigstore bundles); ``signed_time`` the verified Rekor/TSA time, if any.
    """

    reference: str
    digest: str | None
    signed_digest: str
    signature: ImageSignature
    signed_time: datetime | None
    signed_reference: str | None = None

    def image(self) -> Image:
        """The :class:`~attestpolicy.claims.Image` claim for this one signature."""
        return Image(reference=self.reference, digest=self.digest, signatures=(self.signature,))


_M = TypeVar("_M", bound=BaseModel)


def validate_model(model: type[_M], data: object, *, prefix: str = "") -> _M:
    """Validate ``data`` as ``model``; turn pydantic's error into ``evidence.malformed``."""
    if not isinstance(data, Mapping):
        raise EvidenceError("expected a JSON object", field=prefix or "(evidence)", code=MALFORMED)
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(part) for part in first["loc"])
        field = ".".join(part for part in (prefix, loc) if part) or "(evidence)"
        raise EvidenceError(first["msg"], field=field, code=MALFORMED) from None


@contextmanager
def malformed_on_error(field: str) -> Iterator[None]:
    """Let :class:`EvidenceError` through; turn any other exception into ``evidence.malformed``.

    The last line of defence: parsers below us (cryptography, pydantic, sigstore) raise
    many exception types for hostile input, and none of them may escape a verifier.
    """
    try:
        yield
    except EvidenceError:
        raise
    except Exception as exc:
        raise EvidenceError(
            f"evidence could not be processed: {type(exc).__name__}: {exc}",
            field=field,
            code=MALFORMED,
        ) from None


def require_aware(now: datetime) -> datetime:
    """Return ``now`` if it is timezone-aware; raise ``TypeError`` (a caller bug) otherwise."""
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise TypeError("now must be a timezone-aware datetime")
    return now


def check_not_future(signed: datetime, now: datetime, *, field: str) -> None:
    """Refuse a signed time more than :data:`CLOCK_SKEW` after ``now`` (``evidence.expired``)."""
    if signed > now + CLOCK_SKEW:
        raise EvidenceError(
            f"signed time {signed.isoformat()} is after now ({now.isoformat()}): not yet valid",
            field=field,
            code="evidence.expired",
        )


def b64decode_standard(text: str, *, field: str) -> bytes:
    """Decode canonical RFC 4648 standard base64 with ``=`` padding; else malformed.

    Canonical: the unused bits of the last character are zero, so one byte string has
    exactly one accepted encoding.
    """
    if not isinstance(text, str) or not _STANDARD_B64.match(text):
        raise EvidenceError("not standard base64 with padding", field=field, code=MALFORMED)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise EvidenceError("not standard base64", field=field, code=MALFORMED) from None
    if base64.b64encode(data).decode("ascii") != text:
        raise EvidenceError("non-canonical base64", field=field, code=MALFORMED)
    return data


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate JSON key {key[:64]!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def loads_strict(data: bytes | str, *, field: str) -> Any:
    """Parse JSON, refusing duplicate keys, NaN/Infinity and invalid UTF-8 (malformed)."""
    try:
        return json.loads(
            data, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except (ValueError, RecursionError) as exc:
        raise EvidenceError(f"not valid JSON: {exc}", field=field, code=MALFORMED) from None


def load_public_key(pem: str) -> SigningKey:
    """Load one PEM public key of a supported type; raise ``ValueError`` otherwise.

    Supported: ECDSA P-256/P-384/P-521, RSA of at least 2048 bits, Ed25519.
    """
    try:
        key: PublicKeyTypes = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a PEM public key: {exc}") from None
    return signing_key(key)


def signing_key(key: object) -> SigningKey:
    """Return ``key`` if it is a supported signing key; raise ``ValueError`` otherwise."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _CURVES):
            raise ValueError(f"unsupported elliptic curve {key.curve.name}")
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise ValueError(f"RSA key of {key.key_size} bits is below {_MIN_RSA_BITS}")
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise ValueError(f"unsupported public key type {type(key).__name__}")


def load_certificates(pem: str) -> list[x509.Certificate]:
    """Load one or more PEM certificates (at most 16); raise ``ValueError`` otherwise."""
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except Exception as exc:  # cryptography raises ValueError, InvalidVersion, ...
        raise ValueError(f"not PEM certificates: {exc}") from None
    if len(certs) > _MAX_PEM_CERTS:
        raise ValueError(f"more than {_MAX_PEM_CERTS} certificates")
    return certs


def key_id(key: PublicKeyTypes) -> str:
    """``sha256:<hex>`` of the key's DER SubjectPublicKeyInfo."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return sha256_digest(der)
