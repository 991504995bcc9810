"""Sigstore's ``trusted_root.json``: the one place it is loaded.

:func:`load_trusted_root` gives sigstore-python's ``TrustedRoot`` for its ``Verifier``
(Sigstore bundles). :func:`parse_trusted_root` reads the parts the hand-checked Rekor path
(:mod:`attestpolicy.evidence.provenance._intoto_bundle`) needs, more strictly than sigstore's
model does (canonical base64, bounded lists, supported key types): the transparency logs
(Rekor), certificate authorities (Fulcio) and CT logs, each with its validity window.
Nothing here fetches anything; both raise ``ValueError`` for a document they refuse.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from sigstore.errors import Error as SigstoreError
from sigstore.models import TrustedRoot
from sigstore.verify import Verifier
from sigstore_models.trustroot.v1 import TrustedRoot as TrustedRootMessage

from attestpolicy._keys import CERTIFICATE_ERRORS, PublicKey, accepted_public_key
from attestpolicy.claims import parse_timestamp
from attestpolicy.errors import EvidenceError
from attestpolicy.evidence._common import decode_base64

__all__ = [
    "CertificateAuthority",
    "LogKey",
    "SigstoreRoot",
    "load_trusted_root",
    "parse_trusted_root",
]

TRUSTED_ROOT_MEDIA_TYPE: Final = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
_MAX_ENTRIES = 64
_MAX_CHAIN = 8


def load_trusted_root(text: str) -> TrustedRoot:
    """sigstore-python's ``TrustedRoot`` from the document's JSON text, usable by a
    ``Verifier`` (it has Rekor logs and Fulcio CAs)."""
    try:
        root = TrustedRoot(TrustedRootMessage.from_json(text))
        Verifier(trusted_root=root)  # fails on a root without logs or Fulcio CAs
    except (SigstoreError, *CERTIFICATE_ERRORS, TypeError) as exc:
        raise ValueError(f"trusted_root is not a usable Sigstore trusted root: {exc}") from None
    return root


@dataclass(frozen=True, slots=True)
class _Window:
    start: datetime
    end: datetime | None

    def valid_at(self, when: datetime) -> bool:
        """Whether ``when`` is inside the window (both ends included)."""
        return self.start <= when and (self.end is None or when <= self.end)


@dataclass(frozen=True, slots=True)
class LogKey(_Window):
    """A transparency log's (Rekor or CT) public key, its id and validity window."""

    log_id: bytes
    key: PublicKey


@dataclass(frozen=True, slots=True)
class CertificateAuthority(_Window):
    """A Fulcio certificate chain (leaf-most first) and its validity window."""

    certificates: tuple[x509.Certificate, ...]


@dataclass(frozen=True, slots=True)
class SigstoreRoot:
    """The trust anchors of one Sigstore instance."""

    tlogs: tuple[LogKey, ...]
    certificate_authorities: tuple[CertificateAuthority, ...]
    ctlogs: tuple[LogKey, ...]

    def fulcio_anchors(self, when: datetime) -> list[x509.Certificate]:
        """The certificates of every Fulcio CA that issued certificates at ``when``.

        Raises ``ValueError`` when no CA was valid then.
        """
        anchors = [
            cert
            for authority in self.certificate_authorities
            if authority.valid_at(when)
            for cert in authority.certificates
        ]
        if not anchors:
            raise ValueError("no certificate authority of the trusted root was valid then")
        return anchors


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
    except (
        KeyError,
        TypeError,
        AttributeError,
        binascii.Error,
        x509.InvalidVersion,
        UnsupportedAlgorithm,
        EvidenceError,
    ) as exc:
        raise ValueError(f"malformed trusted root: {exc!r}") from None
    if not root.tlogs or not root.certificate_authorities or not root.ctlogs:
        raise ValueError("trusted root needs tlogs, certificateAuthorities and ctlogs")
    return root


def _entries(document: Mapping[str, Any], name: str) -> Sequence[Mapping[str, Any]]:
    entries = document.get(name, [])
    if not isinstance(entries, list) or len(entries) > _MAX_ENTRIES:
        raise ValueError(f"trusted root {name} must be a list of at most {_MAX_ENTRIES}")
    return entries


def _window(entry: Mapping[str, Any]) -> tuple[datetime, datetime | None]:
    valid_for = entry["validFor"]
    end = valid_for.get("end")
    return parse_timestamp(valid_for["start"]), None if end is None else parse_timestamp(end)


def _log_key(entry: Mapping[str, Any]) -> LogKey:
    public_key = entry["publicKey"]
    der = decode_base64(public_key["rawBytes"], field="publicKey.rawBytes")
    key = accepted_public_key(serialization.load_der_public_key(der))
    log_id = decode_base64(entry["logId"]["keyId"], field="logId.keyId")
    start, end = _window(public_key)
    return LogKey(log_id=log_id, key=key, start=start, end=end)


def _authority(entry: Mapping[str, Any]) -> CertificateAuthority:
    raw = entry["certChain"]["certificates"]
    if not isinstance(raw, list) or not 0 < len(raw) <= _MAX_CHAIN:
        raise ValueError("certificate authority chain must hold 1 to 8 certificates")
    certificates = tuple(
        x509.load_der_x509_certificate(decode_base64(cert["rawBytes"], field="rawBytes"))
        for cert in raw
    )
    start, end = _window(entry)
    return CertificateAuthority(certificates=certificates, start=start, end=end)
