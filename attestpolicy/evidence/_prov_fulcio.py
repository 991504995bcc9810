"""Offline checks of a Fulcio signing certificate, with ``cryptography`` only.

The chain is built to the trusted root's certificate authorities at a given (already
verified) time, the embedded SCT is checked against the trusted CT logs, and the
Sigstore X.509 profile (digitalSignature, codeSigning) is enforced. Identity and the
Fulcio OIDC extensions (1.3.6.1.4.1.57264.1.*) are read out for the caller.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from asn1crypto.core import UTF8String
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.certificate_transparency import LogEntryType
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)
from sigstore.errors import Error as SigstoreError
from sigstore.verify.policy import Identity

from attestpolicy.evidence._prov_rekor import verify_signature
from attestpolicy.evidence._prov_trusted_root import SigstoreRoot

__all__ = [
    "FULCIO_EXTENSIONS",
    "CertificateIdentity",
    "certificate_identity",
    "check_profile",
    "matches_identity",
    "verify_chain",
    "verify_sct",
]

_OID_PREFIX = "1.3.6.1.4.1.57264.1."
_ISSUER_V1: Final = x509.ObjectIdentifier(_OID_PREFIX + "1")
_ISSUER_V2: Final = x509.ObjectIdentifier(_OID_PREFIX + "8")

FULCIO_EXTENSIONS: Final[dict[str, str]] = {
    "1.3.6.1.4.1.57264.1.9": "build_signer_uri",
    "1.3.6.1.4.1.57264.1.10": "build_signer_digest",
    "1.3.6.1.4.1.57264.1.11": "runner_environment",
    "1.3.6.1.4.1.57264.1.12": "source_repository_uri",
    "1.3.6.1.4.1.57264.1.13": "source_repository_digest",
    "1.3.6.1.4.1.57264.1.14": "source_repository_ref",
    "1.3.6.1.4.1.57264.1.18": "build_config_uri",
    "1.3.6.1.4.1.57264.1.19": "build_config_digest",
    "1.3.6.1.4.1.57264.1.20": "build_trigger",
    "1.3.6.1.4.1.57264.1.21": "run_invocation_uri",
}
"""Fulcio v2 extensions (DER UTF8String values) read out, by OID, with their names."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_TEXT = 4096


@dataclass(frozen=True, slots=True)
class CertificateIdentity:
    """Who a Fulcio certificate was issued to."""

    subject: str
    issuer: str
    extensions: dict[str, str]


def verify_chain(
    leaf: x509.Certificate, root: SigstoreRoot, when: datetime
) -> list[x509.Certificate]:
    """Build ``leaf``'s chain to a CA valid at ``when``; return it without the leaf.

    Raises ``ValueError`` when no chain builds (or the leaf is not valid at ``when``).
    """
    anchors = [
        cert
        for authority in root.certificate_authorities
        if authority.valid_at(when)
        for cert in authority.certificates
    ]
    if not anchors:
        raise ValueError("no certificate authority of the trusted root was valid then")
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    verifier = (
        PolicyBuilder()
        .store(Store(anchors))
        .time(when)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        return list(verifier.verify(leaf, []).chain[1:])
    except (VerificationError, ValueError, x509.UnsupportedGeneralNameType) as exc:
        raise ValueError(f"certificate chain does not build: {exc}") from None


def check_profile(leaf: x509.Certificate) -> None:
    """Enforce the Sigstore signing-certificate profile; raise ``ValueError``."""
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        extended = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise ValueError(f"signing certificate lacks {exc.oid.dotted_string}") from None
    if not usage.digital_signature:
        raise ValueError("signing certificate key usage lacks digitalSignature")
    if ExtendedKeyUsageOID.CODE_SIGNING not in extended:
        raise ValueError("signing certificate extended key usage lacks codeSigning")


def verify_sct(leaf: x509.Certificate, chain: list[x509.Certificate], root: SigstoreRoot) -> None:
    """Verify the leaf's embedded precertificate SCT against a trusted CT log key."""
    try:
        scts = leaf.extensions.get_extension_for_class(
            x509.PrecertificateSignedCertificateTimestamps
        ).value
    except x509.ExtensionNotFound:
        raise ValueError("signing certificate carries no SCT") from None
    if not chain:
        raise ValueError("SCT check needs the issuing certificate")
    issuer_spki = (
        chain[0]
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    issuer_key_hash = hashlib.sha256(issuer_spki).digest()
    tbs = leaf.tbs_precertificate_bytes
    for sct in list(scts)[:8]:
        if sct.entry_type != LogEntryType.PRE_CERTIFICATE or not isinstance(
            sct.signature_hash_algorithm, hashes.SHA256
        ):
            continue
        when = sct.timestamp.replace(tzinfo=UTC)
        logs = [log for log in root.ctlogs if log.log_id == sct.log_id and log.valid_at(when)]
        if not logs:
            continue
        millis = (when - _EPOCH) // timedelta(milliseconds=1)
        signed = (
            struct.pack("!BBQH", sct.version.value, 0, millis, sct.entry_type.value)
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + struct.pack("!H", len(sct.extension_bytes))
            + sct.extension_bytes
        )
        try:
            verify_signature(logs[0].key, sct.signature, signed)
        except ValueError:
            continue
        return
    raise ValueError("no SCT verifies against a trusted CT log")


def certificate_identity(leaf: x509.Certificate) -> CertificateIdentity:
    """The SAN (URI or e-mail), OIDC issuer and Fulcio extensions of a signing certificate."""
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise ValueError("signing certificate has no subject alternative name") from None
    names = [
        *san.get_values_for_type(x509.UniformResourceIdentifier),
        *san.get_values_for_type(x509.RFC822Name),
    ]
    if len(names) != 1:
        raise ValueError("signing certificate must carry exactly one URI or e-mail SAN")
    issuer_v2 = _extension_text(leaf, _ISSUER_V2, der=True)
    issuer_v1 = _extension_text(leaf, _ISSUER_V1, der=False)
    if issuer_v1 and issuer_v2 and issuer_v1 != issuer_v2:
        raise ValueError("the two OIDC issuer extensions (.1 and .8) disagree")
    issuer = issuer_v2 or issuer_v1
    if not issuer:
        raise ValueError("signing certificate carries no OIDC issuer extension")
    extensions = {}
    for oid, name in FULCIO_EXTENSIONS.items():
        value = _extension_text(leaf, x509.ObjectIdentifier(oid), der=True)
        if value:
            extensions[name] = value
    return CertificateIdentity(subject=names[0], issuer=issuer, extensions=extensions)


def matches_identity(leaf: x509.Certificate, identities: Sequence[tuple[str, str]]) -> bool:
    """Whether ``leaf`` carries one of the exact ``(subject, issuer)`` pairs."""
    for subject, issuer in identities:
        try:
            Identity(identity=subject, issuer=issuer).verify(leaf)
        except (SigstoreError, x509.ExtensionNotFound, ValueError):
            continue
        return True
    return False


def _extension_text(leaf: x509.Certificate, oid: x509.ObjectIdentifier, *, der: bool) -> str:
    try:
        raw = leaf.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return ""
    if not isinstance(raw, x509.UnrecognizedExtension):
        raise ValueError(f"unexpected extension type for {oid.dotted_string}")
    try:
        text = UTF8String.load(raw.value).native if der else raw.value.decode()
    except (ValueError, TypeError, UnicodeDecodeError):
        raise ValueError(f"extension {oid.dotted_string} is not UTF-8 text") from None
    if not isinstance(text, str) or len(text) > _MAX_TEXT:
        raise ValueError(f"extension {oid.dotted_string} is not short text")
    return text
