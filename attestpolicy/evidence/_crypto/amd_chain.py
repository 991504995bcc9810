"""AMD's short, pinned certificate chains (VCEK -> ASK -> ARK), parsed with ``asn1crypto``.

``cryptography``'s path validator refuses these chains: their RSA-PSS parameters carry
explicit NULLs and VCEKs have serial number 0 (cryptography 50 warns it will stop loading
them). Every link is checked here: names, signature (RSA-PSS with the encoded parameters,
PKCS#1 v1.5 or ECDSA; SHA-256/384/512), CA flag and keyCertSign on issuers, no unknown
critical extension, and validity at ``now``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, TypeAlias

from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from attestpolicy.evidence._common import Code, fail
from attestpolicy.evidence._crypto.x509 import pydantic_check
from attestpolicy.evidence._validity import valid_until

__all__ = ["Asn1Certificate", "asn1_certificate", "checked_asn1_pem", "verify_pinned_chain"]

_MAX_PINNED_DEPTH = 2  # intermediates between a leaf and a pinned root
_MAX_POOL = 16  # candidate intermediates, and candidate roots
_KNOWN_CRITICAL = frozenset({"basic_constraints", "key_usage", "extended_key_usage"})
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

Asn1Certificate: TypeAlias = Any
"""An ``asn1crypto.x509.Certificate`` (asn1crypto ships no type information)."""


def checked_asn1_pem(pem: str) -> str:
    """Pydantic validator: ``pem`` must parse with asn1crypto (raises ``ValueError``)."""
    return pydantic_check(pem, asn1_certificate, "certificate")


def asn1_certificate(data: bytes | str, field: str) -> Asn1Certificate:
    """Parse one certificate (DER bytes or PEM text) with ``asn1crypto``, fully and strictly.

    Parsed certificates are cached by their encoding and must be treated as read-only.
    """
    try:
        return _cached_asn1(data)
    except (ValueError, TypeError, KeyError, OverflowError, UnicodeError) as exc:
        fail(Code.MALFORMED, field, f"not an X.509 certificate: {exc}")


@lru_cache(maxsize=128)
def _cached_asn1(data: bytes | str) -> Asn1Certificate:
    if isinstance(data, str):
        kind, _, der = asn1_pem.unarmor(data.encode("ascii"))
        if kind != "CERTIFICATE":
            raise ValueError(f"PEM block is {kind!r}, not CERTIFICATE")
    else:
        der = data
    certificate = asn1_x509.Certificate.load(der, strict=True)
    certificate.native  # noqa: B018 - forces the lazy parser over every field now
    return certificate


def verify_pinned_chain(
    leaf: Asn1Certificate,
    intermediates: Sequence[Asn1Certificate],
    roots: Sequence[Asn1Certificate],
    *,
    now: datetime,
    field: str,
) -> list[Asn1Certificate]:
    """Find and check a path leaf -> (at most 2 intermediates) -> one of ``roots``.

    Raises ``evidence.untrusted`` when no path reaches a root, ``evidence.expired`` when a
    certificate of the path is outside its validity window at ``now``.
    """
    if len(intermediates) > _MAX_POOL or len(roots) > _MAX_POOL:
        fail(Code.MALFORMED, field, "too many candidate certificates")
    path = _find_path(leaf, intermediates, roots, field, depth=0)
    if path is None:
        fail(Code.UNTRUSTED, field, "certificate chain does not build to a trusted root")
    for position, certificate in enumerate(path):
        critical = set(certificate.critical_extensions) - _KNOWN_CRITICAL
        if critical:
            fail(Code.UNTRUSTED, field, f"unknown critical extension(s) {sorted(critical)}")
        constraints = certificate.basic_constraints_value
        is_ca = bool(constraints and constraints["ca"].native)
        if position == 0:
            if is_ca:
                fail(Code.UNTRUSTED, field, "leaf certificate is a CA certificate")
            continue
        usage = certificate.key_usage_value
        if not is_ca or (usage is not None and "key_cert_sign" not in usage.native):
            fail(Code.UNTRUSTED, field, "an issuer in the chain is not a certificate authority")
        limit = constraints["path_len_constraint"].native
        if limit is not None and position - 1 > limit:
            fail(Code.UNTRUSTED, field, "an issuer's path length constraint is exceeded")
    for certificate in path:
        validity = certificate["tbs_certificate"]["validity"]
        if not validity["not_before"].native <= now <= validity["not_after"].native:
            fail(
                Code.EXPIRED, field, f"a certificate of the chain is not valid at {now.isoformat()}"
            )
        valid_until(validity["not_after"].native)
    return path


def _find_path(
    certificate: Asn1Certificate,
    intermediates: Sequence[Asn1Certificate],
    roots: Sequence[Asn1Certificate],
    field: str,
    depth: int,
) -> list[Asn1Certificate] | None:
    for root in roots:
        if certificate.issuer == root.subject and _signed_by(certificate, root, field):
            return [certificate, root]
    if depth >= _MAX_PINNED_DEPTH:
        return None
    for issuer in intermediates:
        if issuer is certificate or certificate.issuer != issuer.subject:
            continue
        if _signed_by(certificate, issuer, field):
            rest = _find_path(issuer, intermediates, roots, field, depth + 1)
            if rest is not None:
                return [certificate, *rest]
    return None


def _signed_by(certificate: Asn1Certificate, issuer: Asn1Certificate, field: str) -> bool:
    """Whether ``issuer``'s key verifies ``certificate``'s signature over its TBS bytes."""
    try:
        key = serialization.load_der_public_key(issuer.public_key.dump())
    except (ValueError, UnsupportedAlgorithm) as exc:
        fail(Code.UNSUPPORTED, field, f"issuer key cannot be used: {exc}")
    algorithm = certificate["signature_algorithm"]
    signature = certificate["signature_value"].native
    tbs = certificate["tbs_certificate"].dump()
    kind = algorithm.signature_algo
    try:
        if kind == "rsassa_pss" and isinstance(key, rsa.RSAPublicKey):
            params = algorithm["parameters"]
            digest = params["hash_algorithm"]["algorithm"].native
            mgf = params["mask_gen_algorithm"]
            if mgf["algorithm"].native != "mgf1" or mgf["parameters"]["algorithm"].native != digest:
                fail(
                    Code.UNSUPPORTED, field, "RSA-PSS with a mask generation other than MGF1(hash)"
                )
            chosen = _hash(digest, field)
            pss = padding.PSS(mgf=padding.MGF1(chosen), salt_length=params["salt_length"].native)
            key.verify(signature, tbs, pss, chosen)
        elif kind == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, tbs, padding.PKCS1v15(), _hash(algorithm.hash_algo, field))
        elif kind == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, tbs, ec.ECDSA(_hash(algorithm.hash_algo, field)))
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def _hash(name: str, field: str) -> hashes.HashAlgorithm:
    factory = _HASHES.get(name)
    if factory is None:
        fail(Code.UNSUPPORTED, field, f"certificate signature hash {name!r} is not supported")
    return factory()
