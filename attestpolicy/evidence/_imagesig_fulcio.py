"""Signing certificates: Fulcio extensions, identity matching and chain validation.

Fulcio records the OIDC token's claims in X.509 extensions under
``1.3.6.1.4.1.57264.1`` (https://github.com/sigstore/fulcio/blob/main/docs/oid-info.md):
the legacy ones (``.1`` to ``.6``) hold raw UTF-8 bytes, the newer ones (``.8`` on)
a DER UTF8String.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.x509 import ExtendedKeyUsage, KeyUsage
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

from attestpolicy.errors import EvidenceError

__all__ = [
    "FulcioExtensions",
    "check_code_signing",
    "fulcio_extensions",
    "match_identity",
    "verify_chain",
]

_PREFIX: Final = "1.3.6.1.4.1.57264.1."
_MAX_EXTENSION_CHARS = 4096


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


def match_identity(
    cert: x509.Certificate, identities: Sequence[tuple[str, str]], *, field: str
) -> tuple[str, str]:
    """Return the first ``(subject, issuer)`` that ``cert`` carries.

    The subject is matched exactly against the e-mail, URI and Sigstore other-name
    SANs, the issuer against the OIDC issuer extension (``sigstore.verify.policy.Identity``).
    Raise ``evidence.identity_mismatch`` when none matches.
    """
    for subject, issuer in identities:
        try:
            Identity(identity=subject, issuer=issuer).verify(cert)
        except (SigstoreError, x509.ExtensionNotFound, ValueError):
            continue
        return subject, issuer
    expected = ", ".join(f"{subject} ({issuer})" for subject, issuer in identities[:4])
    raise EvidenceError(
        f"signing certificate identity is none of the expected ones: {expected}",
        field=field,
        code="evidence.identity_mismatch",
    )


def check_code_signing(cert: x509.Certificate, *, field: str) -> None:
    """Require the code-signing EKU and, when key usage is present, digitalSignature."""
    try:
        eku = cert.extensions.get_extension_for_class(ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is None or ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        raise EvidenceError(
            "signing certificate lacks the code-signing extended key usage",
            field=field,
            code="evidence.untrusted",
        )
    try:
        usage = cert.extensions.get_extension_for_class(KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not usage.digital_signature:
        raise EvidenceError(
            "signing certificate key usage lacks digitalSignature",
            field=field,
            code="evidence.untrusted",
        )


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    *,
    at: datetime,
    field: str,
) -> None:
    """Build a chain from ``leaf`` to one of ``roots``, valid at ``at``.

    ``evidence.expired`` when the leaf is outside its validity window at ``at``,
    ``evidence.untrusted`` when no valid chain to a root exists.
    """
    if not leaf.not_valid_before_utc <= at <= leaf.not_valid_after_utc:
        raise EvidenceError(
            f"signing certificate is valid from {leaf.not_valid_before_utc.isoformat()} to "
            f"{leaf.not_valid_after_utc.isoformat()}, not at {at.isoformat()}",
            field=field,
            code="evidence.expired",
        )
    # Code-signing certificates carry no clientAuth EKU: accept any EKU here and check
    # code signing separately (as sigstore-python does).
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    verifier = (
        PolicyBuilder()
        .store(Store(list(roots)))
        .time(at)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, list(intermediates))
    except (VerificationError, x509.UnsupportedGeneralNameType, ValueError) as exc:
        raise EvidenceError(
            f"certificate chain does not build to a trusted root: {exc}",
            field=field,
            code="evidence.untrusted",
        ) from None
    check_code_signing(leaf, field=field)
