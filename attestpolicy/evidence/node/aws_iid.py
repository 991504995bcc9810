"""AWS EC2 instance identity documents (IID), verified against AWS's published certificates.

Three signed forms are accepted, each checked with the certificates the trust section
lists for the document's region:

* ``signature``: RSA PKCS#1 v1.5 SHA-256 over the exact document bytes (``rsa`` certs);
* ``pkcs7`` from the ``rsa2048`` endpoint: CMS SignedData, RSA SHA-256 (``rsa2048`` certs);
* ``pkcs7`` from the legacy ``pkcs7`` endpoint: CMS SignedData, DSA SHA-1 (``dsa`` certs;
  list DSA certificates only if you accept this legacy form).

The PKCS7 signature covers the signed attributes re-tagged as a SET (RFC 5652 5.4); the
message-digest attribute must equal the hash of the document. An IID carries no nonce,
so ``Node.nonce_verified`` is always False: bind freshness some other way (a TPM quote or
token with a nonce, or a registry refusing a second attestation of the same instance)
and only then treat the node as fresh. ``max_age_seconds`` bounds how old the signing
time may be and becomes ``Node.expires_at``.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Final, Literal

from asn1crypto import cms
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, padding, rsa
from pydantic import Field, PrivateAttr, StrictStr, field_validator, model_validator

from attestpolicy._model import FrozenModel
from attestpolicy.claims import Node, parse_timestamp
from attestpolicy.errors import EvidenceError
from attestpolicy.evidence._common import (
    ClockSkewSeconds,
    Code,
    EvidenceSection,
    decode_base64,
    fail,
    load_json_object,
    require_utc,
)
from attestpolicy.evidence._crypto.x509 import check_validity, load_pem_certificates

__all__ = [
    "AwsIidEvidence",
    "AwsIidResult",
    "AwsIidTrust",
    "AwsRegionCertificates",
    "verify_aws_iid",
]

MAX_DOCUMENT_BYTES: Final = 16 * 1024
MAX_PKCS7_BYTES: Final = 64 * 1024
_MAX_CERTS_PER_KIND: Final = 8

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$", re.ASCII)
_INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,32}$", re.ASCII)
_ACCOUNT_ID = re.compile(r"^[0-9]{12}$", re.ASCII)
_PKCS7_PEM = re.compile(
    r"^\s*-----BEGIN PKCS7-----\s*([A-Za-z0-9+/=\s]*?)\s*-----END PKCS7-----\s*$"
)

Form = Literal["rsa-sha256", "pkcs7-rsa2048", "pkcs7-dsa"]


class AwsIidEvidence(EvidenceSection):
    """An instance identity document and one of its signatures.

    ``document`` is the document text exactly as IMDS served it (the signed bytes are its
    UTF-8 encoding). ``signature`` (the ``/signature`` endpoint) and ``pkcs7`` (the
    ``/rsa2048`` or ``/pkcs7`` endpoint) are standard base64 (line breaks allowed);
    ``pkcs7`` may also be PEM-armoured (``-----BEGIN PKCS7-----``). Give exactly one of
    them; ``document`` is required with ``signature`` and optional with ``pkcs7`` (the
    PKCS7 embeds the document; if both are given they must be identical).
    """

    document: Annotated[StrictStr, Field(min_length=2, max_length=MAX_DOCUMENT_BYTES)] | None = None
    signature: Annotated[StrictStr, Field(min_length=4, max_length=4096)] | None = None
    pkcs7: Annotated[StrictStr, Field(min_length=4, max_length=MAX_PKCS7_BYTES * 2)] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> AwsIidEvidence:
        if (self.signature is None) == (self.pkcs7 is None):
            raise ValueError("give exactly one of 'signature' or 'pkcs7'")
        if self.signature is not None and self.document is None:
            raise ValueError("'signature' needs 'document'")
        return self


class AwsRegionCertificates(FrozenModel):
    """AWS's published public certificates for one region (PEM, one certificate each)."""

    rsa: Annotated[tuple[StrictStr, ...], Field(max_length=_MAX_CERTS_PER_KIND)] = ()
    rsa2048: Annotated[tuple[StrictStr, ...], Field(max_length=_MAX_CERTS_PER_KIND)] = ()
    dsa: Annotated[tuple[StrictStr, ...], Field(max_length=_MAX_CERTS_PER_KIND)] = ()

    _certs: dict[str, tuple[x509.Certificate, ...]] = PrivateAttr(default_factory=dict)

    @field_validator("rsa", "rsa2048", "dsa")
    @classmethod
    def _pem(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            if len(load_pem_certificates(text, max_count=1)) != 1:
                raise ValueError("each entry must hold exactly one certificate")
        return value

    def model_post_init(self, context: Any, /) -> None:
        """Load every certificate once and check its key type."""
        wanted: dict[str, type[Any]] = {
            "rsa": rsa.RSAPublicKey,
            "rsa2048": rsa.RSAPublicKey,
            "dsa": dsa.DSAPublicKey,
        }
        for kind, key_type in wanted.items():
            certs = tuple(
                load_pem_certificates(text, max_count=1)[0] for text in getattr(self, kind)
            )
            for cert in certs:
                if not isinstance(cert.public_key(), key_type):
                    raise ValueError(f"a {kind!r} certificate must hold a {key_type.__name__}")
            self._certs[kind] = certs

    def certificates(self, kind: str) -> tuple[x509.Certificate, ...]:
        """The loaded certificates of ``kind`` (``rsa``, ``rsa2048`` or ``dsa``)."""
        return self._certs.get(kind, ())


class AwsIidTrust(FrozenModel):
    """Per-region AWS certificates, plus optional account and age limits."""

    regions: Annotated[dict[StrictStr, AwsRegionCertificates], Field(min_length=1, max_length=64)]
    account_ids: Annotated[tuple[StrictStr, ...], Field(max_length=1024)] = ()
    """If non-empty, the document's ``accountId`` must be one of these."""
    max_age_seconds: Annotated[int, Field(gt=0, le=366 * 86400)] | None = None
    """If set, the signing time may be at most this old; it also sets ``Node.expires_at``."""
    clock_skew_seconds: ClockSkewSeconds = 0

    @field_validator("regions")
    @classmethod
    def _region_names(
        cls, value: dict[str, AwsRegionCertificates]
    ) -> dict[str, AwsRegionCertificates]:
        for name in value:
            if not _REGION.match(name):
                raise ValueError(f"not an AWS region name: {name[:64]!r}")
        return value

    @field_validator("account_ids")
    @classmethod
    def _account_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for account in value:
            if not _ACCOUNT_ID.match(account):
                raise ValueError(f"not a 12-digit AWS account id: {account[:64]!r}")
        return value


@dataclass(frozen=True, slots=True)
class AwsIidResult:
    """A verified IID: the node claim and the document facts."""

    node: Node
    form: Form
    region: str
    account_id: str
    availability_zone: str | None
    image_id: str | None
    instance_type: str | None
    pending_time: datetime
    signed_at: datetime | None
    """The PKCS7 signing-time attribute (None for the ``signature`` form)."""


def verify_aws_iid(evidence: AwsIidEvidence, trust: AwsIidTrust, *, now: datetime) -> AwsIidResult:
    """Verify an instance identity document at ``now``.

    ``Node.issued_at`` is the PKCS7 signing time, or ``pendingTime`` for the
    ``signature`` form (which has no other time). Raises :class:`EvidenceError`.
    """
    now = require_utc(now)
    if evidence.pkcs7 is not None:
        signed = _parse_pkcs7(_pkcs7_bytes(evidence.pkcs7))
        document = _signed_document(signed, evidence.document)
        facts = _parse_document(document)
        form = _verify_pkcs7(signed, document, _region_trust(trust, facts), now=now)
        signed_at = signed.signing_time
    elif evidence.signature is not None and evidence.document is not None:
        document = evidence.document.encode("utf-8")
        facts = _parse_document(document)
        region = _region_trust(trust, facts)
        signature = decode_base64(
            evidence.signature, field="signature", max_bytes=1024, wrapped=True, allow_empty=False
        )
        _verify_rsa_signature(document, signature, region.certificates("rsa"), now=now)
        form = "rsa-sha256"
        signed_at = None
    else:
        fail(Code.MALFORMED, "(section)", "give 'document' with 'signature', or 'pkcs7'")
    return _result(facts, trust, form=form, signed_at=signed_at, now=now)


# --- document ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Document:
    instance_id: str
    region: str
    account_id: str
    pending_time: datetime
    availability_zone: str | None
    image_id: str | None
    instance_type: str | None


def _parse_document(document: bytes) -> _Document:
    if len(document) > MAX_DOCUMENT_BYTES:
        fail(Code.MALFORMED, "document", f"over the {MAX_DOCUMENT_BYTES} byte limit")
    data = load_json_object(document, field="document")

    def optional(name: str, pattern: re.Pattern[str] | None = None) -> str | None:
        value = data.get(name)
        if value is None:
            return None
        if (
            not isinstance(value, str)
            or not 0 < len(value) <= 256
            or (pattern is not None and not pattern.match(value))
        ):
            fail(Code.MALFORMED, f"document.{name}", f"'{name}' is invalid")
        return value

    def required(name: str, pattern: re.Pattern[str] | None = None) -> str:
        value = optional(name, pattern)
        if value is None:
            fail(Code.MALFORMED, f"document.{name}", f"'{name}' is missing")
        return value

    pending = required("pendingTime")
    try:
        pending_time = parse_timestamp(pending)
    except ValueError as exc:
        fail(Code.MALFORMED, "document.pendingTime", str(exc))
    return _Document(
        instance_id=required("instanceId", _INSTANCE_ID),
        region=required("region", _REGION),
        account_id=required("accountId", _ACCOUNT_ID),
        pending_time=pending_time,
        availability_zone=optional("availabilityZone"),
        image_id=optional("imageId"),
        instance_type=optional("instanceType"),
    )


def _region_trust(trust: AwsIidTrust, facts: _Document) -> AwsRegionCertificates:
    region = trust.regions.get(facts.region)
    if region is None:
        fail(
            Code.UNTRUSTED,
            "document.region",
            f"no trusted certificates for region {facts.region!r}",
        )
    return region


def _result(
    facts: _Document, trust: AwsIidTrust, *, form: Form, signed_at: datetime | None, now: datetime
) -> AwsIidResult:
    if trust.account_ids and facts.account_id not in trust.account_ids:
        fail(
            Code.IDENTITY_MISMATCH,
            "document.accountId",
            f"account {facts.account_id} is not a trusted account",
        )
    issued_at = signed_at or facts.pending_time
    skew = timedelta(seconds=trust.clock_skew_seconds)
    if issued_at > now + skew:
        fail(Code.EXPIRED, "document", f"document signed in the future ({issued_at.isoformat()})")
    expires_at = None
    if trust.max_age_seconds is not None:
        expires_at = issued_at + timedelta(seconds=trust.max_age_seconds)
        if now >= expires_at + skew:
            fail(
                Code.EXPIRED,
                "document",
                f"document older than {trust.max_age_seconds} s (issued {issued_at.isoformat()})",
            )
    node = Node(
        kind="aws_iid",
        id=facts.instance_id,
        verified=True,
        nonce_verified=False,
        issued_at=issued_at,
        expires_at=expires_at,
    )
    return AwsIidResult(
        node=node,
        form=form,
        region=facts.region,
        account_id=facts.account_id,
        availability_zone=facts.availability_zone,
        image_id=facts.image_id,
        instance_type=facts.instance_type,
        pending_time=facts.pending_time,
        signed_at=signed_at,
    )


# --- RSA-SHA256 signature form -----------------------------------------------------


def _verify_rsa_signature(
    document: bytes, signature: bytes, certs: tuple[x509.Certificate, ...], *, now: datetime
) -> None:
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
class _SignedData:
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


def _signed_document(signed: _SignedData, document: str | None) -> bytes:
    """The signed document: the PKCS7 content, or ``document`` for a detached PKCS7."""
    if signed.content is None:
        if document is None:
            fail(Code.MALFORMED, "document", "detached PKCS7 needs 'document'")
        return document.encode("utf-8")
    if document is not None and not hmac.compare_digest(document.encode("utf-8"), signed.content):
        fail(
            Code.DIGEST_MISMATCH,
            "document",
            "document differs from the document signed in the PKCS7",
        )
    return signed.content


def _pkcs7_bytes(text: str) -> bytes:
    match = _PKCS7_PEM.match(text)
    body = match.group(1).replace(" ", "").replace("\t", "") if match else text
    return decode_base64(
        body, field="pkcs7", max_bytes=MAX_PKCS7_BYTES, wrapped=True, allow_empty=False
    )


def _parse_pkcs7(der: bytes) -> _SignedData:
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
        return _SignedData(
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


def _verify_pkcs7(
    signed: _SignedData, document: bytes, region: AwsRegionCertificates, *, now: datetime
) -> Form:
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
    cert = _signer_certificate(signed, region.certificates(kind))
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
    signed: _SignedData, certs: tuple[x509.Certificate, ...]
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
