"""Fulcio signing certificates: who they were issued to, and their embedded SCT.

Fulcio records the OIDC token's claims in X.509 extensions under
``1.3.6.1.4.1.57264.1`` (https://github.com/sigstore/fulcio/blob/main/docs/oid-info.md):
the legacy ones (``.1`` to ``.6``) hold raw UTF-8 bytes, the newer ones (``.8`` on)
a DER UTF8String. Identities are matched exactly as ``sigstore.verify.policy.Identity``
does (SAN e-mail, URI or other-name; OIDC issuer extension). Used by image signatures
(Sigstore bundles, cosign) and keyless provenance.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.hazmat.primitives import hashes
from cryptography.x509.certificate_transparency import LogEntryType
from sigstore.errors import Error as SigstoreError
from sigstore.verify.policy import Identity

from attestpolicy.evidence._common import Code, fail
from attestpolicy.evidence._crypto.trusted_root import SigstoreRoot
from attestpolicy.evidence._crypto.x509 import signature_ok, spki_der

__all__ = [
    "CertificateIdentity",
    "FulcioExtensions",
    "certificate_identity",
    "find_identity",
    "fulcio_extensions",
    "match_identity",
    "verify_sct",
]

_PREFIX: Final = "1.3.6.1.4.1.57264.1."
_MAX_EXTENSION_CHARS = 4096
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class FulcioExtensions:
    """The Fulcio certificate extensions of a signing certificate (``None`` when absent).

    ``issuer`` is the OIDC issuer (``.8``, or the legacy ``.1`` when ``.8`` is absent).
    """

    issuer: str | None = None
    github_workflow_trigger: str | None = None
    github_workflow_sha: str | None = None
    github_workflow_name: str | None = None
    github_workflow_repository: str | None = None
    github_workflow_ref: str | None = None
    build_signer_uri: str | None = None
    build_signer_digest: str | None = None
    runner_environment: str | None = None
    source_repository_uri: str | None = None
    source_repository_digest: str | None = None
    source_repository_ref: str | None = None
    source_repository_identifier: str | None = None
    source_repository_owner_uri: str | None = None
    source_repository_owner_identifier: str | None = None
    build_config_uri: str | None = None
    build_config_digest: str | None = None
    build_trigger: str | None = None
    run_invocation_uri: str | None = None
    source_repository_visibility: str | None = None


# (arc, attribute, DER-encoded?)
_EXTENSIONS: Final = (
    (2, "github_workflow_trigger", False),
    (3, "github_workflow_sha", False),
    (4, "github_workflow_name", False),
    (5, "github_workflow_repository", False),
    (6, "github_workflow_ref", False),
    (9, "build_signer_uri", True),
    (10, "build_signer_digest", True),
    (11, "runner_environment", True),
    (12, "source_repository_uri", True),
    (13, "source_repository_digest", True),
    (14, "source_repository_ref", True),
    (15, "source_repository_identifier", True),
    (16, "source_repository_owner_uri", True),
    (17, "source_repository_owner_identifier", True),
    (18, "build_config_uri", True),
    (19, "build_config_digest", True),
    (20, "build_trigger", True),
    (21, "run_invocation_uri", True),
    (22, "source_repository_visibility", True),
)


def _extension_text(cert: x509.Certificate, arc: int, *, der: bool) -> str | None:
    oid = x509.ObjectIdentifier(f"{_PREFIX}{arc}")
    try:
        ext = cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise ValueError(f"extension {oid.dotted_string} has an unexpected type")
    try:
        text = asn1.decode_der(str, value.value) if der else value.value.decode("utf-8")
    except ValueError:
        raise ValueError(f"extension {oid.dotted_string} is not a UTF-8 string") from None
    if len(text) > _MAX_EXTENSION_CHARS:
        raise ValueError(f"extension {oid.dotted_string} is too long")
    return text


def fulcio_extensions(cert: x509.Certificate) -> FulcioExtensions:
    """Read the Fulcio extensions of ``cert``; raise ``ValueError`` on a malformed one."""
    values = {name: _extension_text(cert, arc, der=der) for arc, name, der in _EXTENSIONS}
    legacy_issuer = _extension_text(cert, 1, der=False)
    issuer = _extension_text(cert, 8, der=True)
    if issuer is not None and legacy_issuer is not None and issuer != legacy_issuer:
        raise ValueError("the two OIDC issuer extensions (.1 and .8) disagree")
    return FulcioExtensions(issuer=issuer or legacy_issuer, **values)


def find_identity(
    cert: x509.Certificate, identities: Sequence[tuple[str, str]]
) -> tuple[str, str] | None:
    """The first ``(subject, issuer)`` of ``identities`` that ``cert`` carries, or ``None``."""
    for subject, issuer in identities:
        try:
            Identity(identity=subject, issuer=issuer).verify(cert)
        except (SigstoreError, x509.ExtensionNotFound, ValueError):
            continue
        return subject, issuer
    return None


def match_identity(
    cert: x509.Certificate, identities: Sequence[tuple[str, str]], *, field: str
) -> tuple[str, str]:
    """:func:`find_identity`, raising ``evidence.identity_mismatch`` when none matches."""
    found = find_identity(cert, identities)
    if found is None:
        expected = ", ".join(f"{subject} ({issuer})" for subject, issuer in identities[:4])
        fail(
            Code.IDENTITY_MISMATCH,
            field,
            f"signing certificate identity is none of the expected ones: {expected}",
        )
    return found


# The extensions the hand-checked (intoto 0.0.2) provenance path reports, as FulcioExtensions
# attribute names. Kept as it was: provenance.py reports every extension present for bundles
# sigstore-python verifies, so the two paths differ (the legacy github_workflow_* ones).
_IDENTITY_EXTENSIONS: Final = (
    "build_signer_uri",
    "build_signer_digest",
    "runner_environment",
    "source_repository_uri",
    "source_repository_digest",
    "source_repository_ref",
    "build_config_uri",
    "build_config_digest",
    "build_trigger",
    "run_invocation_uri",
)


@dataclass(frozen=True, slots=True)
class CertificateIdentity:
    """Who a Fulcio certificate was issued to, and its non-empty workflow extensions."""

    subject: str
    issuer: str
    extensions: dict[str, str]


def certificate_identity(leaf: x509.Certificate) -> CertificateIdentity:
    """The SAN (URI or e-mail), OIDC issuer and Fulcio extensions; raise ``ValueError``."""
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
    found = fulcio_extensions(leaf)
    if not found.issuer:
        raise ValueError("signing certificate carries no OIDC issuer extension")
    extensions = {name: value for name in _IDENTITY_EXTENSIONS if (value := getattr(found, name))}
    return CertificateIdentity(subject=names[0], issuer=found.issuer, extensions=extensions)


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
    issuer_key_hash = hashlib.sha256(spki_der(chain[0].public_key())).digest()
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
        if signature_ok(logs[0].key, sct.signature, signed):
            return
    raise ValueError("no SCT verifies against a trusted CT log")
