"""AWS EC2 instance identity documents (IID), verified against AWS's published certificates.

Three signed forms are accepted, each checked with the certificates the trust section
lists for the document's region:

* ``signature``: RSA PKCS#1 v1.5 SHA-256 over the exact document bytes (``rsa`` certs);
* ``pkcs7`` from the ``rsa2048`` endpoint: CMS SignedData, RSA SHA-256 (``rsa2048`` certs);
* ``pkcs7`` from the legacy ``pkcs7`` endpoint: CMS SignedData, DSA SHA-1 (``dsa`` certs;
  list DSA certificates only if you accept this legacy form).

The signature checks are in ``_aws_signatures``. An IID carries no nonce, so
``Node.nonce_verified`` is always False: bind freshness some other way (a TPM quote or
token with a nonce, or a registry refusing a second attestation of the same instance)
and only then treat the node as fresh. ``max_age_seconds`` bounds how old the signing
time may be and becomes ``Node.expires_at``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, rsa
from pydantic import Field, PrivateAttr, StrictStr, field_validator, model_validator

from attestpolicy._model import FrozenModel
from attestpolicy.claims import Node, parse_timestamp
from attestpolicy.evidence._common import (
    ClockSkewSeconds,
    Code,
    EvidenceSection,
    decode_base64,
    fail,
    load_json_object,
    require_utc,
)
from attestpolicy.evidence._crypto.x509 import load_pem_certificates
from attestpolicy.evidence._validity import valid_until
from attestpolicy.evidence.node._aws_signatures import (
    MAX_PKCS7_BYTES,
    Form,
    parse_pkcs7,
    verify_pkcs7,
    verify_rsa_signature,
)

__all__ = [
    "AwsIidEvidence",
    "AwsIidResult",
    "AwsIidTrust",
    "AwsRegionCertificates",
    "verify_aws_iid",
]

MAX_DOCUMENT_BYTES: Final = 16 * 1024
_MAX_CERTS_PER_KIND: Final = 8

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$", re.ASCII)
_INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,32}$", re.ASCII)
_ACCOUNT_ID = re.compile(r"^[0-9]{12}$", re.ASCII)


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
    form: Form
    if evidence.pkcs7 is not None:
        signed = parse_pkcs7(evidence.pkcs7)
        document = signed.document(evidence.document)
        facts = _parse_document(document)
        form = verify_pkcs7(signed, document, _region_trust(trust, facts).certificates, now=now)
        signed_at = signed.signing_time
    elif evidence.signature is not None and evidence.document is not None:
        document = evidence.document.encode("utf-8")
        facts = _parse_document(document)
        region = _region_trust(trust, facts)
        signature = decode_base64(
            evidence.signature, field="signature", max_bytes=1024, wrapped=True, allow_empty=False
        )
        verify_rsa_signature(document, signature, region.certificates("rsa"), now=now)
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
        valid_until(expires_at + skew)
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
