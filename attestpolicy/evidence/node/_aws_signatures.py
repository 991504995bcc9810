"""The signatures over an AWS instance identity document, checked with AWS's certificates.

* ``signature``: RSA PKCS#1 v1.5 SHA-256 over the exact document bytes;
* ``pkcs7``: CMS SignedData (RFC 5652) with one signer, RSA SHA-256 (``rsa2048``) or legacy
  DSA SHA-1 (``pkcs7``). The signature covers the signed attributes re-tagged as a SET
  (RFC 5652 5.4); the message-digest attribute must equal the hash of the document.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from asn1crypto import cms
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, padding, rsa

from attestpolicy.errors import EvidenceError
from attestpolicy.evidence._common import Code, decode_base64, fail
from attestpolicy.evidence._crypto.x509 import check_validity

__all__ = [
    "MAX_PKCS7_BYTES",
    "Form",
    "SignedData",
    "parse_pkcs7",
    "verify_pkcs7",
    "verify_rsa_signature",
]

MAX_PKCS7_BYTES: Final = 64 * 1024
_PKCS7_PEM = re.compile(
    r"^\s*-----BEGIN PKCS7-----\s*([A-Za-z0-9+/=\s]*?)\s*-----END PKCS7-----\s*$"
)

Form = Literal["rsa-sha256", "pkcs7-rsa2048", "pkcs7-dsa"]


def verify_rsa_signature(
    document: bytes, signature: bytes, certs: tuple[x509.Certificate, ...], *, now: datetime
) -> None:
    """Verify the ``signature`` form: RSA PKCS#1 v1.5 SHA-256 over the document bytes."""
    if not certs:
        fail(Code.UNTRUSTED, "signature", "no trusted 'rsa' certificate for this region")
    for cert in certs:
        if _signature_valid(cert, signature, document, hashes.SHA256()):
            check_validity(cert, now, field="certificate")
            return
    fail(
        Code.SIGNATURE_INVALID,
        "signature",
        "signature does not verify under the region's certificates",
    )


# --- PKCS7 forms ---------------------------------------------------------------------

_DIGESTS: Final[dict[str, tuple[type[hashes.HashAlgorithm], str]]] = {
    # CMS digest algorithm -> (hash, trust certificate kind)
    "sha256": (hashes.SHA256, "rsa2048"),
    "sha1": (hashes.SHA1, "dsa"),
}
_SIGNATURE_ALGORITHMS: Final[dict[str, frozenset[str]]] = {
    "sha256": frozenset({"rsassa_pkcs1v15", "sha256_rsa"}),
    "sha1": frozenset({"dsa", "sha1_dsa"}),
}


@dataclass(frozen=True, slots=True)
class SignedData:
    """What verification needs from an AWS PKCS7 (CMS SignedData with one signer)."""

    content: bytes | None
    issuer: bytes
    serial: int
    digest_algorithm: str
    signature_algorithm: str
    signed_attrs: bytes  # re-tagged as a SET: the bytes the signature covers
    content_type: str
    message_digest: bytes
    signing_time: datetime | None
    signature: bytes

    def document(self, document: str | None) -> bytes:
        """The signed document: the PKCS7 content, or ``document`` for a detached PKCS7."""
        if self.content is None:
            if document is None:
                fail(Code.MALFORMED, "document", "detached PKCS7 needs 'document'")
            return document.encode("utf-8")
        if document is not None and not hmac.compare_digest(document.encode("utf-8"), self.content):
            fail(
                Code.DIGEST_MISMATCH,
                "document",
                "document differs from the document signed in the PKCS7",
            )
        return self.content


def parse_pkcs7(text: str) -> SignedData:
    """Parse the ``pkcs7`` evidence field: base64 DER, PEM-armoured or not."""
    return _parse_der(_pkcs7_bytes(text))


def _pkcs7_bytes(text: str) -> bytes:
    match = _PKCS7_PEM.match(text)
    body = match.group(1).replace(" ", "").replace("\t", "") if match else text
    return decode_base64(
        body, field="pkcs7", max_bytes=MAX_PKCS7_BYTES, wrapped=True, allow_empty=False
    )


def _parse_der(der: bytes) -> SignedData:
    """Extract everything verification needs, eagerly, so parser errors stay here."""
    try:
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            raise ValueError("not a CMS SignedData")
        signed = info["content"]
        if signed["version"].native != "v1":
            raise ValueError("SignedData version must be 1")
        if len(signed["signer_infos"]) != 1:
            raise ValueError("exactly one SignerInfo is required")
        signer = signed["signer_infos"][0]
        if signer["version"].native != "v1" or signer["sid"].name != "issuer_and_serial_number":
            raise ValueError("SignerInfo must be version 1, identified by issuer and serial")
        digest_algorithm = signer["digest_algorithm"]["algorithm"].native
        for identifier in (
            signer["digest_algorithm"],
            signer["signature_algorithm"],
            *signed["digest_algorithms"],
        ):
            if identifier["parameters"].native is not None:
                raise ValueError("algorithm parameters must be absent or NULL")
        declared = [item["algorithm"].native for item in signed["digest_algorithms"]]
        if declared != [digest_algorithm]:
            raise ValueError("digestAlgorithms must list exactly the signer's digest algorithm")
        encap = signed["encap_content_info"]
        if encap["content_type"].native != "data":
            raise ValueError("encapsulated content must be id-data")
        content = encap["content"].native if encap["content"] else None
        attrs = signer["signed_attrs"]
        if not attrs:
            raise ValueError("signed attributes are required")
        values: dict[str, list[Any]] = {}
        for attr in attrs:
            name = attr["type"].native
            if name in values:
                raise ValueError(f"signed attribute {name!r} appears twice")
            values[name] = list(attr["values"].native)
        for name in ("content_type", "message_digest"):
            if len(values.get(name, ())) != 1:
                raise ValueError(f"signed attribute {name!r} must have exactly one value")
        signing_time = values.get("signing_time", [None])
        if len(signing_time) != 1:
            raise ValueError("signing_time must have exactly one value")
        for protection in values.get("cms_algorithm_protection", []):
            if (
                protection["digest_algorithm"]["algorithm"] != digest_algorithm
                or protection["signature_algorithm"]["algorithm"]
                != signer["signature_algorithm"]["algorithm"].native
            ):
                raise ValueError("CMS algorithm protection does not match the SignerInfo")
        content_type = values["content_type"][0]
        message_digest = values["message_digest"][0]
        if not isinstance(content_type, str) or not isinstance(message_digest, bytes):
            raise ValueError("content-type or message-digest attribute has the wrong type")
        if signing_time[0] is not None and not isinstance(signing_time[0], datetime):
            raise ValueError("signing-time attribute is not a time")
        raw_attrs = attrs.dump()
        sid = signer["sid"].chosen
        return SignedData(
            content=content,
            issuer=sid["issuer"].dump(),
            serial=sid["serial_number"].native,
            digest_algorithm=digest_algorithm,
            signature_algorithm=signer["signature_algorithm"]["algorithm"].native,
            signed_attrs=b"\x31" + raw_attrs[1:],
            content_type=content_type,
            message_digest=message_digest,
            signing_time=signing_time[0],
            signature=signer["signature"].native,
        )
    except EvidenceError:
        raise
    except Exception as exc:  # asn1crypto raises many types for hostile input
        fail(Code.MALFORMED, "pkcs7", f"not a valid AWS PKCS7: {exc}")


def verify_pkcs7(
    signed: SignedData,
    document: bytes,
    certificates: Callable[[str], tuple[x509.Certificate, ...]],
    *,
    now: datetime,
) -> Form:
    """Verify a PKCS7 over ``document`` with the region's ``certificates(kind)``; return
    its form."""
    if signed.digest_algorithm not in _DIGESTS:
        fail(
            Code.UNSUPPORTED,
            "pkcs7.signer_info.digest_algorithm",
            f"digest algorithm {signed.digest_algorithm!r} is not supported",
        )
    if signed.signature_algorithm not in _SIGNATURE_ALGORITHMS[signed.digest_algorithm]:
        fail(
            Code.UNSUPPORTED,
            "pkcs7.signer_info.signature_algorithm",
            f"signature algorithm {signed.signature_algorithm!r} with {signed.digest_algorithm}"
            " is not supported",
        )
    hash_type, kind = _DIGESTS[signed.digest_algorithm]
    if signed.content_type != "data":
        fail(
            Code.MALFORMED,
            "pkcs7.signed_attrs.content_type",
            "content-type attribute is not id-data",
        )
    hasher = hashes.Hash(hash_type())
    hasher.update(document)
    digest = hasher.finalize()
    if not hmac.compare_digest(digest, signed.message_digest):
        fail(
            Code.DIGEST_MISMATCH,
            "pkcs7.signed_attrs.message_digest",
            "message-digest attribute does not match the document",
        )
    cert = _signer_certificate(signed, certificates(kind))
    if not _signature_valid(cert, signed.signature, signed.signed_attrs, hash_type()):
        fail(
            Code.SIGNATURE_INVALID, "pkcs7.signer_info.signature", "PKCS7 signature does not verify"
        )
    check_validity(cert, now, field="certificate")
    return "pkcs7-rsa2048" if kind == "rsa2048" else "pkcs7-dsa"


def _signature_valid(
    cert: x509.Certificate, signature: bytes, data: bytes, hash_algorithm: hashes.HashAlgorithm
) -> bool:
    """Verify an RSA PKCS#1 v1.5 or DSA signature with the certificate's key."""
    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
        elif isinstance(key, dsa.DSAPublicKey):
            key.verify(signature, data, hash_algorithm)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _signer_certificate(
    signed: SignedData, certs: tuple[x509.Certificate, ...]
) -> x509.Certificate:
    for cert in certs:
        if cert.serial_number == signed.serial and hmac.compare_digest(
            cert.issuer.public_bytes(), signed.issuer
        ):
            return cert
    fail(
        Code.UNTRUSTED,
        "pkcs7.signer_info.sid",
        "the PKCS7 signer is not a trusted certificate for this region",
    )
