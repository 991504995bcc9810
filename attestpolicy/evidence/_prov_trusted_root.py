"""Read the parts of a Sigstore ``trusted_root.json`` the hand-checked Rekor path needs.

Only the transparency logs (Rekor), certificate authorities (Fulcio) and CT logs are
read; every entry keeps its validity window. Nothing here fetches anything.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from attestpolicy.claims import parse_timestamp

__all__ = ["CertificateAuthority", "LogKey", "SigstoreRoot", "parse_trusted_root"]

TRUSTED_ROOT_MEDIA_TYPE: Final = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
_MAX_ENTRIES = 64
_MAX_CHAIN = 8

LogPublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True, slots=True)
class LogKey:
    """A transparency log's (Rekor or CT) public key, its id and validity window."""

    log_id: bytes
    key: LogPublicKey
    start: datetime
    end: datetime | None

    def valid_at(self, when: datetime) -> bool:
        """Whether the key was in use at ``when``."""
        return self.start <= when and (self.end is None or when <= self.end)


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A Fulcio certificate chain (leaf-most first) and its validity window."""

    certificates: tuple[x509.Certificate, ...]
    start: datetime
    end: datetime | None

    def valid_at(self, when: datetime) -> bool:
        """Whether the CA issued certificates at ``when``."""
        return self.start <= when and (self.end is None or when <= self.end)


@dataclass(frozen=True, slots=True)
class SigstoreRoot:
    """The trust anchors of one Sigstore instance."""

    tlogs: tuple[LogKey, ...]
    certificate_authorities: tuple[CertificateAuthority, ...]
    ctlogs: tuple[LogKey, ...]


def parse_trusted_root(document: Mapping[str, Any]) -> SigstoreRoot:
    """Parse a ``trusted_root.json`` object; raise ``ValueError`` when it is malformed."""
    try:
        media_type = document.get("mediaType")
        if media_type != TRUSTED_ROOT_MEDIA_TYPE:
            raise ValueError(f"unsupported trusted root media type {str(media_type)[:80]!r}")
        root = SigstoreRoot(
            tlogs=tuple(_log_key(entry) for entry in _entries(document, "tlogs")),
            certificate_authorities=tuple(
                _authority(entry) for entry in _entries(document, "certificateAuthorities")
            ),
            ctlogs=tuple(_log_key(entry) for entry in _entries(document, "ctlogs")),
        )
    except (KeyError, TypeError, AttributeError, binascii.Error, UnsupportedAlgorithm) as exc:
        raise ValueError(f"malformed trusted root: {exc!r}") from None
    if not root.tlogs or not root.certificate_authorities or not root.ctlogs:
        raise ValueError("trusted root needs tlogs, certificateAuthorities and ctlogs")
    return root


def _entries(document: Mapping[str, Any], name: str) -> Sequence[Mapping[str, Any]]:
    entries = document.get(name, [])
    if not isinstance(entries, list) or len(entries) > _MAX_ENTRIES:
        raise ValueError(f"trusted root {name} must be a list of at most {_MAX_ENTRIES}")
    return entries


def _b64(value: object) -> bytes:
    if not isinstance(value, str):
        raise TypeError("expected a base64 string")
    return base64.b64decode(value, validate=True)


def _window(entry: Mapping[str, Any]) -> tuple[datetime, datetime | None]:
    valid_for = entry["validFor"]
    end = valid_for.get("end")
    return parse_timestamp(valid_for["start"]), None if end is None else parse_timestamp(end)


def _log_key(entry: Mapping[str, Any]) -> LogKey:
    public_key = entry["publicKey"]
    der = _b64(public_key["rawBytes"])
    key = serialization.load_der_public_key(der)
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise ValueError("unsupported transparency log key type")
    log_id = _b64(entry["logId"]["keyId"])
    start, end = _window(public_key)
    return LogKey(log_id=log_id, key=key, start=start, end=end)


def _authority(entry: Mapping[str, Any]) -> CertificateAuthority:
    raw = entry["certChain"]["certificates"]
    if not isinstance(raw, list) or not 0 < len(raw) <= _MAX_CHAIN:
        raise ValueError("certificate authority chain must hold 1 to 8 certificates")
    certificates = tuple(x509.load_der_x509_certificate(_b64(cert["rawBytes"])) for cert in raw)
    start, end = _window(entry)
    return CertificateAuthority(certificates=certificates, start=start, end=end)
