"""X.509 certificates and public keys: loading, fingerprints, signatures and chains.

Every chain is validated against the given roots only (no system store, no network, no
revocation fetching), with ``cryptography``'s RFC 5280 path validator:

* :func:`verify_chain` (node evidence: TPM AK, Intel PCK): the Web PKI CA profile without
  the EKU rule (TPM and Intel CAs carry their own EKUs or none); the leaf profile is
  checked here: not a CA, and ``digitalSignature`` when a key usage is present.
* :func:`verify_code_signing_chain` (image signatures, provenance): the Web PKI profiles
  with any EKU, then the Sigstore signing profile (``digitalSignature``, ``codeSigning``);
  or, for cosign signatures under a configured private PKI (``profile="private_pki"``), the
  Web PKI profiles relaxed to what containers/image accepts there (Go's ``crypto/x509``
  with ``KeyUsages: [codeSigning]``): a CA without key usage, a leaf without key usage or
  EKU; an EKU, where present, must allow code signing on every certificate of the path.

AMD's pinned chains are checked in :mod:`attestpolicy.evidence._crypto.amd_chain`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Final, Literal, TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from attestpolicy._keys import (
    CERTIFICATE_ERRORS,
    PublicKey,
    UnsupportedKeyError,
    load_public_key,
)
from attestpolicy.errors import EvidenceError
from attestpolicy.evidence._common import Code, fail, sha256_digest
from attestpolicy.evidence._validity import valid_until

__all__ = [
    "SigningProfile",
    "certificate_from_der",
    "certificate_from_pem",
    "certificates_from_pem_bundle",
    "chain_valid_until",
    "check_validity",
    "checked_certificate_pem",
    "checked_public_key_pem",
    "fingerprint",
    "load_pem_certificates",
    "public_key_from_pem",
    "pydantic_check",
    "signature_ok",
    "spki_der",
    "verify_chain",
    "verify_code_signing_chain",
]

_MAX_BUNDLE_CERTS = 16


# --- loading ---------------------------------------------------------------------------
# AMD VCEK/ASK/ARK certificates have a zero serial number, which cryptography reports
# with a deprecation warning on load; the checks stay strict, the warning is silenced.


def load_pem_certificates(
    pem: str | bytes, *, max_count: int = _MAX_BUNDLE_CERTS
) -> list[x509.Certificate]:
    """Load one or more PEM certificates (at most ``max_count``); raise ``ValueError``."""
    data = pem.encode("utf-8") if isinstance(pem, str) else pem
    if data.count(b"-----BEGIN") > max_count:
        raise ValueError(f"more than {max_count} certificates")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return x509.load_pem_x509_certificates(data)
    except Exception as exc:  # cryptography raises ValueError, InvalidVersion, ...
        raise ValueError(f"not PEM certificates: {exc}") from None


def certificates_from_pem_bundle(
    pem: str | bytes, field: str, *, max_count: int = _MAX_BUNDLE_CERTS
) -> list[x509.Certificate]:
    """:func:`load_pem_certificates`, raising ``evidence.malformed`` for ``field``."""
    try:
        return load_pem_certificates(pem, max_count=max_count)
    except ValueError as exc:
        fail(Code.MALFORMED, field, str(exc))


@lru_cache(maxsize=256)
def _cached_pem(pem: str) -> x509.Certificate:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return x509.load_pem_x509_certificate(pem.encode("ascii"))


def certificate_from_pem(pem: str, field: str) -> x509.Certificate:
    """Load one PEM certificate; raise ``evidence.malformed`` for anything else."""
    try:
        return _cached_pem(pem)
    except (*CERTIFICATE_ERRORS, UnicodeEncodeError) as exc:
        fail(Code.MALFORMED, field, f"not a PEM certificate: {exc}")


def certificate_from_der(der: bytes, field: str) -> x509.Certificate:
    """Load one DER certificate; raise ``evidence.malformed`` for anything else."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return x509.load_der_x509_certificate(der)
    except CERTIFICATE_ERRORS as exc:
        fail(Code.MALFORMED, field, f"not a DER certificate: {exc}")


def public_key_from_pem(pem: str, field: str) -> PublicKey:
    """Load an accepted PEM SubjectPublicKeyInfo public key (:mod:`attestpolicy._keys`).

    Raises ``evidence.unsupported`` for a key type, curve or size that is not accepted,
    ``evidence.malformed`` for anything that is not a PEM public key.
    """
    try:
        return load_public_key(pem, what=field)
    except UnsupportedKeyError as exc:
        fail(Code.UNSUPPORTED, field, str(exc))
    except ValueError as exc:
        fail(Code.MALFORMED, field, str(exc))


def pydantic_check(pem: str, load: Callable[[str, str], object], what: str) -> str:
    """``pem`` if ``load(pem, what)`` succeeds; its evidence error as ``ValueError`` (for
    pydantic validators)."""
    try:
        load(pem, what)
    except EvidenceError as exc:
        raise ValueError(exc.message) from None
    return pem


def checked_certificate_pem(pem: str) -> str:
    """Pydantic validator: ``pem`` must load as a certificate (raises ``ValueError``)."""
    return pydantic_check(pem, certificate_from_pem, "certificate")


def checked_public_key_pem(pem: str) -> str:
    """Pydantic validator: ``pem`` must load as a public key (raises ``ValueError``)."""
    return pydantic_check(pem, public_key_from_pem, "public key")


# --- keys and signatures ---------------------------------------------------------------


def spki_der(key: PublicKeyTypes) -> bytes:
    """The DER SubjectPublicKeyInfo of ``key``."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def fingerprint(key: PublicKeyTypes) -> str:
    """``sha256:<hex>`` of the key's DER SubjectPublicKeyInfo."""
    return sha256_digest(spki_der(key))


def signature_ok(key: PublicKey, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` over ``data`` verifies: SHA-256 with ECDSA or RSA PKCS#1 v1.5,
    or Ed25519 (what cosign, Rekor and CT logs sign with)."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, OverflowError):
        return False
    return True


# --- chains validated by cryptography -----------------------------------------------------


def check_validity(cert: x509.Certificate, now: datetime, *, field: str) -> None:
    """Raise ``evidence.expired`` unless ``now`` is inside the certificate's validity
    (reported to :func:`~attestpolicy.evidence._validity.valid_until`)."""
    if now < cert.not_valid_before_utc:
        fail(
            Code.EXPIRED,
            field,
            f"certificate not valid before {cert.not_valid_before_utc.isoformat()}",
        )
    if now > cert.not_valid_after_utc:
        fail(Code.EXPIRED, field, f"certificate expired at {cert.not_valid_after_utc.isoformat()}")
    valid_until(cert.not_valid_after_utc)


def chain_valid_until(chain: Sequence[x509.Certificate]) -> None:
    """Report a chain validated at ``now``: it holds until its first ``notAfter``."""
    valid_until(min(cert.not_valid_after_utc for cert in chain))


# (CA policy, end-entity policy) of the two chain profiles (see the module doc)
_NODE_POLICIES: Final = (
    ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None
    ),
    ExtensionPolicy.permit_all(),
)
_CODE_SIGNING_POLICIES: Final = (
    ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    ),
    ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    ),
)


def _private_ca_usage(
    _policy: object, _cert: x509.Certificate, usage: x509.KeyUsage | None
) -> None:
    """A private CA may omit key usage (Go never reads it); one that has it must sign certs."""
    if usage is not None and not usage.key_cert_sign:
        raise ValueError("CA key usage lacks keyCertSign")


# The private-PKI profile: Web PKI, but key usage optional on CAs (root or intermediate) and
# EKU of any criticality anywhere; what the EKUs and the leaf's key usage allow is checked by
# _check_private_pki_usages once the path is built.
_PRIVATE_PKI_POLICIES: Final = (
    ExtensionPolicy.webpki_defaults_ca()
    .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _private_ca_usage)
    .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None),
    ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None
    ),
)


def _build(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    when: datetime,
    policies: tuple[ExtensionPolicy, ExtensionPolicy],
) -> list[x509.Certificate]:
    verifier = (
        PolicyBuilder()
        .store(Store(list(roots)))
        .time(when)
        .extension_policies(ca_policy=policies[0], ee_policy=policies[1])
        .build_client_verifier()
    )
    return verifier.verify(leaf, list(intermediates)).chain


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    *,
    now: datetime,
    field: str,
) -> list[x509.Certificate]:
    """Validate a node evidence ``leaf`` up to one of ``roots`` at ``now``; return the chain
    (reported to :func:`chain_valid_until`).

    Raises ``evidence.expired`` when the chain only fails because ``now`` is outside a
    certificate's validity window, ``evidence.untrusted`` for every other failure.
    """
    if not roots:
        fail(Code.UNTRUSTED, field, "no trusted root certificates are configured")
    _check_leaf(leaf, field)
    try:
        chain = _build(leaf, intermediates, roots, now, _NODE_POLICIES)
    except VerificationError as exc:
        reason = str(exc)
    except ValueError as exc:
        fail(Code.MALFORMED, field, f"certificate chain cannot be processed: {exc}")
    else:
        chain_valid_until(chain)
        return chain
    for when in (leaf.not_valid_before_utc, leaf.not_valid_after_utc):
        try:
            _build(leaf, intermediates, roots, when, _NODE_POLICIES)
        except (VerificationError, ValueError):
            continue
        fail(Code.EXPIRED, field, f"a certificate of the chain is not valid at {now.isoformat()}")
    fail(Code.UNTRUSTED, field, f"certificate chain does not build to a trusted root: {reason}")


def _check_leaf(leaf: x509.Certificate, field: str) -> None:
    try:
        constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    except ValueError as exc:
        fail(Code.MALFORMED, field, f"leaf certificate extensions are invalid: {exc}")
    if constraints is not None and constraints.ca:
        fail(Code.UNTRUSTED, field, "leaf certificate is a CA certificate")
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not usage.digital_signature:
        fail(Code.UNTRUSTED, field, "leaf certificate key usage does not allow digitalSignature")


SigningProfile: TypeAlias = Literal["sigstore", "private_pki"]
"""The certificate profile of :func:`verify_code_signing_chain`."""


def verify_code_signing_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    *,
    at: datetime,
    profile: SigningProfile = "sigstore",
) -> list[x509.Certificate]:
    """Validate a signing certificate up to one of ``roots`` at ``at``; return the chain.

    ``"sigstore"`` (keyless Fulcio certificates, provenance): code-signing certificates
    carry no clientAuth EKU, so any EKU is accepted by the path validator (as
    sigstore-python does), then the leaf must have ``digitalSignature`` and ``codeSigning``.

    ``"private_pki"`` (cosign signatures under a configured private PKI): containers/image's
    ``verifyPKI`` (``signature/pki_cert.go``) accepts what Go's ``x509.Certificate.Verify``
    accepts with ``KeyUsages: [ExtKeyUsageCodeSigning]``. Go never reads key usage and treats
    a missing EKU as "any". So, beyond RFC 5280 path validation (the Web PKI profiles
    otherwise):

    * a CA (root or intermediate) may lack key usage; one that has it must assert
      keyCertSign (Go does not check this; a CA that says it may not sign certificates is
      refused here);
    * the leaf may lack key usage; one that has it must assert digitalSignature (Go does
      not check this either);
    * an EKU, on the leaf or on any CA of the path, must list codeSigning or
      anyExtendedKeyUsage; a certificate without EKU allows any (Go's
      ``checkChainForKeyUsage``).

    Raises ``ValueError`` naming the failure.
    """
    sigstore = profile == "sigstore"
    policies = _CODE_SIGNING_POLICIES if sigstore else _PRIVATE_PKI_POLICIES
    try:
        chain = _build(leaf, intermediates, roots, at, policies)
    except (VerificationError, x509.UnsupportedGeneralNameType, ValueError) as exc:
        raise ValueError(f"certificate chain does not build to a trusted root: {exc}") from None
    if sigstore:
        _check_sigstore_leaf(leaf)
    else:
        _check_private_pki_usages(chain)
    return chain


def _check_sigstore_leaf(leaf: x509.Certificate) -> None:
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        extended = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise ValueError(f"signing certificate lacks {exc.oid.dotted_string}") from None
    if not usage.digital_signature:
        raise ValueError("signing certificate key usage lacks digitalSignature")
    if ExtendedKeyUsageOID.CODE_SIGNING not in extended:
        raise ValueError("signing certificate lacks the code-signing extended key usage")


_CODE_SIGNING_EKUS: Final = frozenset(
    {ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
)


def _check_private_pki_usages(chain: Sequence[x509.Certificate]) -> None:
    """The leaf's key usage, if any, allows signatures; every EKU on the path allows code
    signing (the CAs' key usage was checked by the path validator's CA policy)."""
    try:
        usage = chain[0].extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.digital_signature:
        raise ValueError("signing certificate key usage lacks digitalSignature")
    for position, certificate in enumerate(chain):
        try:
            extended = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        except x509.ExtensionNotFound:
            continue
        if not _CODE_SIGNING_EKUS & set(extended.value):
            what = (
                "signing certificate"
                if position == 0
                else f"CA {certificate.subject.rfc4514_string()[:200]!r}"
            )
            raise ValueError(f"{what} has an extended key usage without code signing")
