"""AMD SEV-SNP attestation reports, and Azure's SNP-backed vTPM (HCL report + TPM quote).

``verify_sev_snp`` checks a 1184-byte ATTESTATION_REPORT (SEV-SNP ABI, versions 2, 3
and 5): the VCEK -> ASK -> ARK chain to a configured ARK, that the VCEK belongs to this
chip (hwID = CHIP_ID) and TCB (its SPL extensions = REPORTED_TCB), the ECDSA P-384 /
SHA-384 signature over bytes 0x000..0x29F, the guest policy (no DEBUG unless allowed) and
REPORT_DATA against the nonce. It returns a :class:`~attestpolicy.claims.Node` of kind
``sev_snp`` whose measurements are ``snp.*`` fields (``snp.measurement`` is the launch
digest).

``verify_az_snp_vtpm`` checks an Azure confidential VM's HCL report (an SNP report whose
REPORT_DATA binds the SHA-256 of the runtime data), takes the vTPM attestation key
(``HCLAkPub``) from that runtime data and verifies a TPM quote with it: kind
``az_snp_vtpm``, measurements ``snp.*`` plus ``pcr.sha256.*``.

Reports carry no time: ``issued_at`` is the document's ``collected_at``. See
docs/evidence/node-tpm-cc.md.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, ClassVar, Final

from asn1crypto import core as asn1_core
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pydantic import AfterValidator, Field, StrictBool

from attestpolicy._model import FrozenModel
from attestpolicy.claims import Node
from attestpolicy.evidence._common import (
    Base64Bytes,
    Code,
    PemText,
    decode_base64,
    fail,
    load_json_object,
    require_utc,
)
from attestpolicy.evidence._crypto.amd_chain import (
    Asn1Certificate,
    asn1_certificate,
    checked_asn1_pem,
    verify_pinned_chain,
)
from attestpolicy.evidence._crypto.x509 import fingerprint
from attestpolicy.evidence.node._collected import CollectedSection, check_report_data
from attestpolicy.evidence.node._tpm_quote import QuoteInput, verify_quote

__all__ = [
    "AzSnpVtpmEvidence",
    "AzSnpVtpmQuote",
    "SevSnpEvidence",
    "SevSnpTrust",
    "verify_az_snp_vtpm",
    "verify_sev_snp",
]

REPORT_SIZE: Final = 0x4A0
SIGNED_SIZE: Final = 0x2A0
_VERSIONS: Final = frozenset({2, 3, 5})
_POLICY_DEBUG: Final = 1 << 19
_OID_PRODUCT: Final = "1.3.6.1.4.1.3704.1.2"
_OID_HWID: Final = "1.3.6.1.4.1.3704.1.4"
_OID_SPL: Final = {  # VCEK TCB extensions -> byte of the (Milan/Genoa) TCB_VERSION
    "1.3.6.1.4.1.3704.1.3.1": (0, "bootloader"),
    "1.3.6.1.4.1.3704.1.3.2": (1, "tee"),
    "1.3.6.1.4.1.3704.1.3.3": (6, "snp"),
    "1.3.6.1.4.1.3704.1.3.8": (7, "microcode"),
}
_PRODUCTS: Final = ("Milan", "Genoa")
_HCL_REPORT_MAX: Final = 16384
_HCL_HEADER: Final = 0x20
_HCL_RUNTIME: Final = _HCL_HEADER + REPORT_SIZE
_HCL_HASHES: Final = {1: hashlib.sha256, 2: hashlib.sha384, 3: hashlib.sha512}
_MAX_RUNTIME_JSON: Final = 8192


_AmdPem = Annotated[PemText, AfterValidator(checked_asn1_pem)]


class SevSnpEvidence(CollectedSection):
    """The ``sev_snp`` section: a raw report, its VCEK and (optionally) the ASK, as PEM."""

    _field_prefix: ClassVar[str] = "sev_snp"

    report: Annotated[Base64Bytes, Field(min_length=REPORT_SIZE, max_length=REPORT_SIZE)]
    """The 1184-byte ATTESTATION_REPORT, standard base64."""
    vcek: PemText
    ask: PemText | None = None


class SevSnpTrust(FrozenModel):
    """AMD roots (ARK) and intermediates (ASK) per product, as PEM; debug guests refused."""

    ark_certificates: Annotated[tuple[_AmdPem, ...], Field(min_length=1, max_length=16)]
    ask_certificates: Annotated[tuple[_AmdPem, ...], Field(max_length=8)] = ()
    allow_debug: StrictBool = False
    """Accept guests whose policy allows debugging (the host can read their memory)."""


class AzSnpVtpmQuote(FrozenModel):
    """The vTPM quote of an Azure CVM, as Azure's ``tpm-quote`` JSON gives it."""

    attest: Annotated[Base64Bytes, Field(min_length=1, max_length=1024)]
    """TPMS_ATTEST, base64."""
    signature: Annotated[Base64Bytes, Field(min_length=256, max_length=512)]
    """Raw RSASSA-PKCS1-v1_5 SHA-256 signature (no TPMT_SIGNATURE header), base64."""
    pcrs: Annotated[
        tuple[Annotated[Base64Bytes, Field(min_length=32, max_length=32)], ...],
        Field(min_length=24, max_length=24),
    ]
    """The 24 SHA-256 PCR values, index 0 first, base64."""


class AzSnpVtpmEvidence(CollectedSection):
    """The ``az_snp_vtpm`` section: HCL report, VCEK (+ ASK) and the vTPM quote."""

    _field_prefix: ClassVar[str] = "az_snp_vtpm"

    hcl_report: Annotated[
        Base64Bytes, Field(min_length=_HCL_RUNTIME + 20, max_length=_HCL_REPORT_MAX)
    ]
    """The HCL report (``HCLA`` header, SNP report, runtime data), standard base64."""
    vcek: PemText
    ask: PemText | None = None
    tpm_quote: AzSnpVtpmQuote


@dataclass(frozen=True, slots=True)
class _Report:
    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    platform_info: int
    flags: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    reported_tcb: bytes
    chip_id: bytes
    signature: bytes
    signed: bytes

    def measurements(self) -> dict[str, str]:
        return {
            "snp.author_key_digest": self.author_key_digest.hex(),
            "snp.family_id": self.family_id.hex(),
            "snp.guest_svn": f"{self.guest_svn:08x}",
            "snp.host_data": self.host_data.hex(),
            "snp.id_key_digest": self.id_key_digest.hex(),
            "snp.image_id": self.image_id.hex(),
            "snp.measurement": self.measurement.hex(),
            "snp.platform_info": f"{self.platform_info:016x}",
            "snp.policy": f"{self.policy:016x}",
            "snp.report_data": self.report_data.hex(),
            "snp.report_id": self.report_id.hex(),
            "snp.reported_tcb": self.reported_tcb[::-1].hex(),
            "snp.version": f"{self.version:08x}",
            "snp.vmpl": f"{self.vmpl:08x}",
        }


def _parse_report(raw: bytes, field: str) -> _Report:
    if len(raw) != REPORT_SIZE:
        fail(Code.MALFORMED, field, f"report is {len(raw)} bytes, not {REPORT_SIZE}")
    version, guest_svn, policy = struct.unpack_from("<IIQ", raw, 0x00)
    if version not in _VERSIONS:
        fail(Code.UNSUPPORTED, field, f"report version {version} is not 2, 3 or 5")
    vmpl, signature_algo = struct.unpack_from("<II", raw, 0x30)
    if signature_algo != 1:
        fail(Code.UNSUPPORTED, field, f"signature algorithm {signature_algo} is not ECDSA P-384")
    (platform_info,) = struct.unpack_from("<Q", raw, 0x40)
    (flags,) = struct.unpack_from("<I", raw, 0x48)
    if flags & 0b10:
        fail(Code.UNSUPPORTED, field, "MASK_CHIP_KEY is set: the report is not signed")
    if (flags >> 2) & 0b111 != 0:
        fail(Code.UNSUPPORTED, field, "the report is not signed by a VCEK (VLEK is not supported)")
    signature = raw[0x2A0 : 0x2A0 + 144]
    r, s = signature[:72], signature[72:]
    if any(r[48:]) or any(s[48:]) or any(raw[0x2A0 + 144 :]):
        fail(Code.MALFORMED, field, "signature has non-zero padding")
    return _Report(
        version=version,
        guest_svn=guest_svn,
        policy=policy,
        family_id=raw[0x10:0x20],
        image_id=raw[0x20:0x30],
        vmpl=vmpl,
        platform_info=platform_info,
        flags=flags,
        report_data=raw[0x50:0x90],
        measurement=raw[0x90:0xC0],
        host_data=raw[0xC0:0xE0],
        id_key_digest=raw[0xE0:0x110],
        author_key_digest=raw[0x110:0x140],
        report_id=raw[0x140:0x160],
        reported_tcb=raw[0x180:0x188],
        chip_id=raw[0x1A0:0x1E0],
        signature=encode_dss_signature(
            int.from_bytes(r[:48], "little"), int.from_bytes(s[:48], "little")
        ),
        signed=raw[:SIGNED_SIZE],
    )


def _extension_values(certificate: Asn1Certificate) -> dict[str, bytes]:
    values: dict[str, bytes] = {}
    for extension in certificate["tbs_certificate"]["extensions"]:
        values[extension["extn_id"].dotted] = extension["extn_value"].contents
    return values


def _check_vcek(vcek: Asn1Certificate, report: _Report, field: str) -> ec.EllipticCurvePublicKey:
    """The VCEK must be a P-384 key certified for this chip and this reported TCB."""
    try:
        key = serialization.load_der_public_key(vcek.public_key.dump())
    except (ValueError, UnsupportedAlgorithm) as exc:
        fail(Code.MALFORMED, field, f"VCEK public key is invalid: {exc}")
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        fail(Code.UNTRUSTED, field, "the VCEK is not an ECDSA P-384 key")
    extensions = _extension_values(vcek)
    try:
        product = asn1_core.IA5String.load(extensions[_OID_PRODUCT], strict=True).native
        hwid = extensions[_OID_HWID]
        spl = {oid: asn1_core.Integer.load(extensions[oid], strict=True).native for oid in _OID_SPL}
    except (KeyError, ValueError, TypeError) as exc:
        fail(Code.MALFORMED, field, f"VCEK lacks a valid AMD extension: {exc}")
    if not isinstance(product, str) or not product.startswith(_PRODUCTS):
        fail(Code.UNSUPPORTED, field, f"VCEK product {product!r} is not Milan or Genoa")
    if len(hwid) == 66 and hwid[:2] == b"\x04\x40":  # some VCEKs wrap hwID in an OCTET STRING
        hwid = hwid[2:]
    if not hmac.compare_digest(hwid, report.chip_id):
        fail(Code.IDENTITY_MISMATCH, f"{field}.hwid", "the VCEK was issued for another chip")
    for oid, (position, name) in _OID_SPL.items():
        if spl[oid] != report.reported_tcb[position]:
            fail(
                Code.IDENTITY_MISMATCH,
                f"{field}.tcb",
                f"the VCEK's {name} SPL {spl[oid]} is not the reported "
                f"{report.reported_tcb[position]}",
            )
    return key


def _verify_report(
    raw: bytes,
    vcek_pem: str,
    ask_pem: str | None,
    trust: SevSnpTrust,
    now: datetime,
    prefix: str,
) -> _Report:
    """Every check on a report except REPORT_DATA, which the callers compare."""
    report = _parse_report(raw, f"{prefix}report")
    vcek = asn1_certificate(vcek_pem, f"{prefix}vcek")
    intermediates = [
        asn1_certificate(pem, "trust.ask_certificates") for pem in trust.ask_certificates
    ]
    if ask_pem is not None:
        intermediates.append(asn1_certificate(ask_pem, f"{prefix}ask"))
    roots = [asn1_certificate(pem, "trust.ark_certificates") for pem in trust.ark_certificates]
    verify_pinned_chain(vcek, intermediates, roots, now=now, field=f"{prefix}vcek.chain")
    key = _check_vcek(vcek, report, f"{prefix}vcek")
    try:
        key.verify(report.signature, report.signed, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        fail(
            Code.SIGNATURE_INVALID,
            f"{prefix}report.signature",
            "the report signature does not verify",
        )
    if report.policy & _POLICY_DEBUG and not trust.allow_debug:
        fail(Code.UNTRUSTED, f"{prefix}report.policy", "the guest policy allows debugging")
    return report


def verify_sev_snp(
    evidence: SevSnpEvidence, trust: SevSnpTrust, *, now: datetime, nonce: bytes | None = None
) -> Node:
    """Verify an SEV-SNP report and return the node claim (kind ``sev_snp``).

    ``nonce`` (1..64 bytes) must equal REPORT_DATA zero-padded to 64 bytes; without it the
    report is verified but ``nonce_verified`` is false. The node id is the CHIP_ID in hex.
    """
    now = require_utc(now)
    report = _verify_report(evidence.report, evidence.vcek, evidence.ask, trust, now, "")
    check_report_data(report.report_data, nonce, "report.report_data")
    return evidence.verified_node("sev_snp", report.chip_id.hex(), nonce, report.measurements())


# --- Azure confidential VMs: HCL report + vTPM quote ---------------------------------------


def verify_az_snp_vtpm(
    evidence: AzSnpVtpmEvidence, trust: SevSnpTrust, *, now: datetime, nonce: bytes | None = None
) -> Node:
    """Verify an Azure SNP CVM's HCL report and vTPM quote (kind ``az_snp_vtpm``).

    The SNP report must bind the runtime data (REPORT_DATA = its hash); the runtime data's
    ``HCLAkPub`` key must sign the quote; ``nonce`` is compared with the quote's extraData.
    The node id is the vTPM AK fingerprint (``sha256:<hex>`` of its SubjectPublicKeyInfo).
    """
    now = require_utc(now)
    if nonce is not None and not nonce:
        fail(Code.NONCE_MISMATCH, "tpm_quote.nonce", "the expected nonce is empty")
    raw = evidence.hcl_report
    if raw[:4] != b"HCLA":
        fail(Code.MALFORMED, "hcl_report", "not an HCL report (no HCLA signature)")
    report = _verify_report(
        raw[_HCL_HEADER:_HCL_RUNTIME], evidence.vcek, evidence.ask, trust, now, "hcl_report."
    )
    runtime = _runtime_data(raw, report)
    key = _hcl_ak(runtime)
    measurements = report.measurements()
    quote = QuoteInput(
        attest=evidence.tpm_quote.attest,
        signature=struct.pack(">HHH", 0x0014, 0x000B, len(evidence.tpm_quote.signature))
        + evidence.tpm_quote.signature,
        pcrs={"sha256": dict(enumerate(evidence.tpm_quote.pcrs))},
        field="tpm_quote",
    )
    verify_quote(
        quote,
        key,
        public_area=None,
        allow_sha1=False,
        nonce=nonce,
        measurements=measurements,
    )
    return evidence.verified_node("az_snp_vtpm", fingerprint(key), nonce, measurements)


def _runtime_data(raw: bytes, report: _Report) -> bytes:
    """The runtime data after the SNP report, checked against REPORT_DATA."""
    field = "hcl_report.runtime_data"
    (report_size,) = struct.unpack_from("<I", raw, 8)
    data_size, version, report_type, hash_type, size = struct.unpack_from(
        "<IIIII", raw, _HCL_RUNTIME
    )
    if version != 1:
        fail(Code.UNSUPPORTED, field, f"runtime data version {version} is not 1")
    if data_size != 20 + size or report_size != _HCL_RUNTIME + data_size:
        fail(Code.MALFORMED, field, "runtime data sizes are inconsistent")
    if report_type != 2:
        fail(Code.UNSUPPORTED, field, f"runtime data report type {report_type} is not SNP (2)")
    hasher = _HCL_HASHES.get(hash_type)
    if hasher is None:
        fail(Code.UNSUPPORTED, field, f"runtime data hash type {hash_type} is not supported")
    start = _HCL_RUNTIME + 20
    if size > min(_MAX_RUNTIME_JSON, len(raw) - start):
        fail(Code.MALFORMED, field, f"runtime data size {size} runs past the report")
    runtime = raw[start : start + size]
    expected = hasher(runtime).digest().ljust(64, b"\x00")
    if not hmac.compare_digest(report.report_data, expected):
        fail(Code.DIGEST_MISMATCH, field, "the SNP report does not bind this runtime data")
    return runtime


def _hcl_ak(runtime: bytes) -> rsa.RSAPublicKey:
    """The ``HCLAkPub`` RSA JWK from the (now authenticated) runtime claims."""
    field = "hcl_report.runtime_data.keys"
    claims = load_json_object(runtime, field=field)
    try:
        keys = [key for key in claims["keys"] if key.get("kid") == "HCLAkPub"]
        if len(keys) != 1:
            fail(Code.MALFORMED, field, "runtime data must hold exactly one HCLAkPub key")
        jwk = keys[0]
        if jwk.get("kty") != "RSA":
            fail(Code.UNSUPPORTED, field, "HCLAkPub is not an RSA key")
        n = int.from_bytes(_b64url(jwk["n"], field), "big")
        e = int.from_bytes(_b64url(jwk["e"], field), "big")
        key = rsa.RSAPublicNumbers(e, n).public_key()
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        fail(Code.MALFORMED, field, f"runtime data has no usable HCLAkPub key: {exc}")
    if key.key_size not in (2048, 3072, 4096):
        fail(Code.UNSUPPORTED, field, f"HCLAkPub is RSA-{key.key_size}")
    return key


def _b64url(value: object, field: str) -> bytes:
    """A JWK member: unpadded base64url, 1 to 1024 characters."""
    return decode_base64(
        value, field=field, alphabet="urlsafe", padded=False, max_bytes=768, allow_empty=False
    )
