"""Intel TDX quotes (DCAP quote format version 4, ECDSA P-256 attestation key).

``verify_tdx`` checks the PCK certificate chain embedded in the quote up to a configured
Intel SGX Root CA, the quoting enclave's report (signed by the PCK key, binding the
attestation key and QE authentication data, from Intel's QE: MRSIGNER and ISVPRODID as
configured, not a debug enclave), the quote signature over header and TD report, the TD
attributes (no DEBUG unless allowed) and REPORT_DATA against the nonce. It returns a
:class:`~attestpolicy.claims.Node` of kind ``tdx`` with ``tdx.mrtd``, ``tdx.rtmr0..3``
and the other TD report fields as measurements.

Not checked: TCB status and QE identity TCB levels (they need Intel's signed TCB info and
QE identity collateral) and revocation (PCK CRLs). The quote has no time: ``issued_at``
is the document's ``collected_at``. See docs/evidence/node-tpm-cc.md.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, ClassVar, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pydantic import (
    AfterValidator,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
)

from attestpolicy._model import FrozenModel
from attestpolicy.claims import Node
from attestpolicy.evidence._common import Base64Bytes, Code, PemText, fail, require_utc
from attestpolicy.evidence._crypto.x509 import (
    certificate_from_pem,
    certificates_from_pem_bundle,
    checked_certificate_pem,
    fingerprint,
    verify_chain,
)
from attestpolicy.evidence.node._byte_reader import ByteReader
from attestpolicy.evidence.node._collected import CollectedSection, check_report_data

__all__ = ["INTEL_TD_QE_MRSIGNER", "TdxEvidence", "TdxTrust", "verify_tdx"]

INTEL_TD_QE_MRSIGNER: Final = "dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5"
"""MRSIGNER of Intel's TD quoting enclave (Intel's QE identity for ``TD_QE``)."""

MAX_QUOTE_BYTES: Final = 64 * 1024
_HEADER: Final = 48
_BODY: Final = 584
_SIGNED: Final = _HEADER + _BODY
_QE_REPORT: Final = 384
_TEE_TDX: Final = 0x81
_ATT_KEY_ECDSA_P256: Final = 2
_CERT_QE_REPORT: Final = 6
_CERT_PCK_CHAIN: Final = 5
_TD_DEBUG: Final = 1
_OID_SGX_EXTENSIONS: Final = x509.ObjectIdentifier("1.2.840.113741.1.13.1")
_QE_DEBUG: Final = 0b10
_BODY_FIELDS: Final = (  # name, offset in the TD report body, size
    ("tee_tcb_svn", 0, 16),
    ("mrseam", 16, 48),
    ("mrsignerseam", 64, 48),
    ("seam_attributes", 112, 8),
    ("td_attributes", 120, 8),
    ("xfam", 128, 8),
    ("mrtd", 136, 48),
    ("mrconfigid", 184, 48),
    ("mrowner", 232, 48),
    ("mrownerconfig", 280, 48),
    ("rtmr0", 328, 48),
    ("rtmr1", 376, 48),
    ("rtmr2", 424, 48),
    ("rtmr3", 472, 48),
    ("report_data", 520, 64),
)


class TdxEvidence(CollectedSection):
    """The ``tdx`` section: a raw quote, as standard base64."""

    _field_prefix: ClassVar[str] = "tdx"

    quote: Annotated[Base64Bytes, Field(min_length=_SIGNED + 4, max_length=MAX_QUOTE_BYTES)]


class TdxTrust(FrozenModel):
    """Intel SGX Root CA certificate(s) and the expected quoting enclave identity."""

    root_certificates: Annotated[
        tuple[Annotated[PemText, AfterValidator(checked_certificate_pem)], ...],
        Field(min_length=1, max_length=8),
    ]
    qe_mrsigner: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] = INTEL_TD_QE_MRSIGNER
    qe_isvprodid: Annotated[StrictInt, Field(ge=0, le=0xFFFF)] = 2
    allow_debug: StrictBool = False
    """Accept debug TDs (the host can read and change their state)."""


@dataclass(frozen=True, slots=True)
class _Quote:
    signed: bytes
    body: bytes
    signature: bytes
    attestation_key: bytes
    qe_report: bytes
    qe_signature: bytes
    qe_auth_data: bytes
    pck_chain: bytes


def _parse_quote(raw: bytes) -> _Quote:
    """Split a v4 quote; every length must match the bytes it describes."""
    cursor = ByteReader(raw, "quote", byteorder="little")
    version = cursor.u16("version")
    key_type = cursor.u16("attestation key type")
    tee_type = cursor.u32("TEE type")
    if version != 4:
        fail(Code.UNSUPPORTED, "quote", f"quote version {version} is not 4")
    if key_type != _ATT_KEY_ECDSA_P256:
        fail(Code.UNSUPPORTED, "quote", f"attestation key type {key_type} is not ECDSA P-256")
    if tee_type != _TEE_TDX:
        fail(Code.UNSUPPORTED, "quote", f"TEE type 0x{tee_type:x} is not TDX")
    cursor.take(_HEADER - 8, "header")
    body = cursor.take(_BODY, "TD report body")
    signature_size = cursor.u32("signature data size")
    if signature_size > cursor.rest():
        fail(Code.MALFORMED, "quote", "signature data runs past the end of the quote")
    signature = cursor.take(64, "quote signature")
    attestation_key = cursor.take(64, "attestation key")
    if cursor.u16("certification data type") != _CERT_QE_REPORT:
        fail(Code.UNSUPPORTED, "quote", "certification data is not QE report certification data")
    outer_size = cursor.u32("certification data size")
    if 64 + 64 + 6 + outer_size != signature_size:
        fail(Code.MALFORMED, "quote", "certification data size does not match the signature data")
    qe_report = cursor.take(_QE_REPORT, "QE report")
    qe_signature = cursor.take(64, "QE report signature")
    qe_auth_data = cursor.take(cursor.u16("QE authentication data size"), "QE auth data")
    if cursor.u16("PCK certification data type") != _CERT_PCK_CHAIN:
        fail(Code.UNSUPPORTED, "quote", "QE certification data is not a PCK certificate chain")
    chain_size = cursor.u32("PCK certificate chain size")
    if _QE_REPORT + 64 + 2 + len(qe_auth_data) + 6 + chain_size != outer_size:
        fail(Code.MALFORMED, "quote", "PCK chain size does not match the certification data")
    pck_chain = cursor.take(chain_size, "PCK certificate chain")
    # Bytes after the signature data are not covered by any length and are ignored, as
    # Intel's verification library and go-tdx-guest do.
    return _Quote(
        signed=raw[:_SIGNED],
        body=body,
        signature=signature,
        attestation_key=attestation_key,
        qe_report=qe_report,
        qe_signature=qe_signature,
        qe_auth_data=qe_auth_data,
        pck_chain=pck_chain,
    )


def _p256_signature(raw: bytes) -> bytes:
    return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def _verify_ecdsa(
    key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes, field: str
) -> None:
    try:
        key.verify(_p256_signature(signature), data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        fail(Code.SIGNATURE_INVALID, field, "the signature does not verify")


def verify_tdx(
    evidence: TdxEvidence, trust: TdxTrust, *, now: datetime, nonce: bytes | None = None
) -> Node:
    """Verify a TDX quote and return the node claim (kind ``tdx``).

    ``nonce`` (1..64 bytes) must equal REPORT_DATA zero-padded to 64 bytes; without it the
    quote is verified but ``nonce_verified`` is false. The node id is the fingerprint
    (``sha256:<hex>`` of the SubjectPublicKeyInfo) of the platform's PCK certificate.
    """
    now = require_utc(now)
    quote = _parse_quote(evidence.quote)
    # 1. the PCK certificate chains to Intel's root
    chain = certificates_from_pem_bundle(quote.pck_chain.rstrip(b"\x00"), "quote.pck_chain")
    if len(chain) < 2:
        fail(Code.MALFORMED, "quote.pck_chain", "the PCK chain needs a leaf and its issuers")
    roots = [
        certificate_from_pem(pem, "trust.root_certificates") for pem in trust.root_certificates
    ]
    verify_chain(chain[0], chain[1:], roots, now=now, field="quote.pck_chain")
    try:
        chain[0].extensions.get_extension_for_oid(_OID_SGX_EXTENSIONS)
    except x509.ExtensionNotFound:
        fail(
            Code.UNTRUSTED,
            "quote.pck_chain",
            "the leaf is not a PCK certificate (no SGX extensions)",
        )
    except ValueError as exc:
        fail(Code.MALFORMED, "quote.pck_chain", f"PCK certificate extensions are invalid: {exc}")
    pck_key = chain[0].public_key()
    if not isinstance(pck_key, ec.EllipticCurvePublicKey) or pck_key.curve.name != "secp256r1":
        fail(Code.UNTRUSTED, "quote.pck_chain", "the PCK key is not ECDSA P-256")
    # 2. the PCK key signed the QE report; the QE is Intel's and binds the attestation key
    _verify_ecdsa(pck_key, quote.qe_signature, quote.qe_report, "quote.qe_report.signature")
    _check_qe(quote, trust)
    # 3. the attestation key signed header + TD report
    try:
        attestation_key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b"\x04" + quote.attestation_key
        )
    except ValueError as exc:
        fail(Code.MALFORMED, "quote.attestation_key", f"not a P-256 point: {exc}")
    _verify_ecdsa(attestation_key, quote.signature, quote.signed, "quote.signature")
    fields = {name: quote.body[start : start + size] for name, start, size in _BODY_FIELDS}
    if fields["td_attributes"][0] & _TD_DEBUG and not trust.allow_debug:
        fail(Code.UNTRUSTED, "quote.td_attributes", "the TD is a debug TD")
    check_report_data(fields["report_data"], nonce, "quote.report_data")
    measurements = {f"tdx.{name}": value.hex() for name, value in sorted(fields.items())}
    return evidence.verified_node("tdx", fingerprint(pck_key), nonce, measurements)


def _check_qe(quote: _Quote, trust: TdxTrust) -> None:
    report = quote.qe_report
    attributes, mrsigner = report[48:64], report[128:160]
    (isvprodid,) = struct.unpack_from("<H", report, 256)
    report_data = report[320:384]
    if attributes[0] & _QE_DEBUG:
        fail(Code.UNTRUSTED, "quote.qe_report", "the quoting enclave is a debug enclave")
    if not hmac.compare_digest(mrsigner, bytes.fromhex(trust.qe_mrsigner)):
        fail(
            Code.UNTRUSTED,
            "quote.qe_report",
            "the quoting enclave is not signed by the expected key",
        )
    if isvprodid != trust.qe_isvprodid:
        fail(
            Code.UNTRUSTED,
            "quote.qe_report",
            f"quoting enclave ISVPRODID {isvprodid} is unexpected",
        )
    bound = hashlib.sha256(quote.attestation_key + quote.qe_auth_data).digest().ljust(64, b"\x00")
    if not hmac.compare_digest(report_data, bound):
        fail(
            Code.DIGEST_MISMATCH,
            "quote.qe_report",
            "the QE report does not bind the attestation key",
        )
