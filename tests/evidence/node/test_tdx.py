"""Intel TDX quotes v4: go-tdx-guest vectors against Intel's SGX Root CA, and synthetic quotes
with a PCK chain of our own."""

from __future__ import annotations

import hashlib
import struct
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from evidence.helpers import (
    TEST_ASSETS,
    assert_valid_until,
    b64,
    cert_pem,
    expect_error,
    issue,
    key_usage,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from attestpolicy.claims import Node
from attestpolicy.errors import EvidenceError
from attestpolicy.evidence.node.tdx import INTEL_TD_QE_MRSIGNER, TdxEvidence, TdxTrust, verify_tdx

ASSETS = TEST_ASSETS / "cc"
NOW = datetime(2025, 6, 1, tzinfo=UTC)
COLLECTED = "2025-06-01T00:00:00Z"
SPR = "go-tdx-guest_tdx_prod_quote_SPR_E4.dat"
COS = "go-tdx-guest_cos-113-tdx-quote.dat"
# offsets in a v4 quote
BODY = 48
MRTD = BODY + 136
TD_ATTRIBUTES = BODY + 120
SIG_DATA = 48 + 584 + 4
ATT_KEY = SIG_DATA + 64
QE_REPORT = SIG_DATA + 64 + 64 + 6
QE_AUTH = QE_REPORT + 384 + 64 + 2


def intel_trust(**kwargs: Any) -> TdxTrust:
    root = (ASSETS / "go-tdx-guest_trusted_root.pem").read_text()
    return TdxTrust(root_certificates=(root,), **kwargs)


def quote_bytes(name: str) -> bytes:
    return (ASSETS / name).read_bytes()


def verify(quote: bytes, trust: TdxTrust | None = None, **kwargs: Any) -> Node:
    kwargs.setdefault("now", NOW)
    evidence = TdxEvidence.parse({"collected_at": COLLECTED, "quote": b64(quote)})
    return verify_tdx(evidence, trust or intel_trust(), **kwargs)


def flipped(raw: bytes, position: int, mask: int = 0x01) -> bytes:
    data = bytearray(raw)
    data[position] ^= mask
    return bytes(data)


# --- go-tdx-guest vectors ---------------------------------------------------------------


def pck_leaf_id(raw: bytes) -> str:
    start = raw.index(b"-----BEGIN CERTIFICATE-----")
    leaf = x509.load_pem_x509_certificate(raw[start:])
    der = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def test_sapphire_rapids_quote_verifies() -> None:
    raw = quote_bytes(SPR)
    node = verify(raw)
    assert node.kind == "tdx"
    assert node.verified is True
    assert node.nonce_verified is False
    assert node.id == pck_leaf_id(raw)
    assert node.measurements["tdx.mrtd"] == raw[MRTD : MRTD + 48].hex()
    assert node.measurements["tdx.mrtd"].startswith("6363b8043668a3ad953278e10389574d")
    assert {f"tdx.rtmr{index}" for index in range(4)} <= set(node.measurements)
    assert len(node.measurements) == 15


def test_cos_quote_verifies_with_its_nonce() -> None:
    nonce = (ASSETS / "go-tdx-guest_cos-113-nonce.dat").read_bytes()
    node = verify(quote_bytes(COS), nonce=nonce)
    assert node.nonce_verified is True
    assert node.measurements["tdx.report_data"] == nonce.hex()
    assert node.measurements["tdx.mrtd"].startswith("dae67181d3d65e07")


@pytest.mark.parametrize("name", [SPR, COS])
def test_tampered_mrtd_is_rejected(name: str) -> None:
    expect_error(
        "evidence.signature_invalid",
        lambda: verify(flipped(quote_bytes(name), MRTD + 5)),
        "quote.signature",
    )


def test_wrong_nonce_is_rejected() -> None:
    nonce = bytearray((ASSETS / "go-tdx-guest_cos-113-nonce.dat").read_bytes())
    nonce[0] ^= 1
    expect_error(
        "evidence.nonce_mismatch",
        lambda: verify(quote_bytes(COS), nonce=bytes(nonce)),
        "report_data",
    )
    expect_error("evidence.nonce_mismatch", lambda: verify(quote_bytes(SPR), nonce=b"anything"))


@pytest.mark.parametrize(
    ("name", "now"),
    [
        (COS, datetime(2031, 7, 3, tzinfo=UTC)),  # PCK certificate expired
        (SPR, datetime(2022, 9, 19, tzinfo=UTC)),  # PCK certificate not yet valid
    ],
)
def test_pck_certificate_outside_validity_is_expired(name: str, now: datetime) -> None:
    expect_error("evidence.expired", lambda: verify(quote_bytes(name), now=now), "quote.pck_chain")


@pytest.mark.parametrize("name", [SPR, COS])
def test_the_quote_verification_holds_until_the_pck_certificate_expires(name: str) -> None:
    raw = quote_bytes(name)
    leaf = x509.load_pem_x509_certificate(raw[raw.index(b"-----BEGIN CERTIFICATE-----") :])
    assert_valid_until(lambda now: verify(raw, now=now), NOW, leaf.not_valid_after_utc)


def test_quote_against_another_root_is_untrusted() -> None:
    trust = TdxTrust(root_certificates=(synthetic_pki().root_pem,))
    expect_error("evidence.untrusted", lambda: verify(quote_bytes(SPR), trust), "quote.pck_chain")


def test_other_quoting_enclave_signer_is_untrusted() -> None:
    trust = intel_trust(qe_mrsigner="00" * 32)
    expect_error("evidence.untrusted", lambda: verify(quote_bytes(SPR), trust), "qe_report")
    trust = intel_trust(qe_isvprodid=1)
    expect_error("evidence.untrusted", lambda: verify(quote_bytes(SPR), trust), "qe_report")


def test_tampered_qe_report_fails_the_pck_signature() -> None:
    expect_error(
        "evidence.signature_invalid",
        lambda: verify(flipped(quote_bytes(SPR), QE_REPORT + 100)),
        "qe_report.signature",
    )


@pytest.mark.parametrize("position", [ATT_KEY + 3, QE_AUTH + 3])
def test_attestation_key_or_auth_data_not_bound_by_the_qe(position: int) -> None:
    expect_error(
        "evidence.digest_mismatch", lambda: verify(flipped(quote_bytes(SPR), position)), "qe"
    )


@pytest.mark.parametrize(
    ("offset", "value", "code"),
    [
        (0, struct.pack("<H", 3), "evidence.unsupported"),  # version
        (2, struct.pack("<H", 3), "evidence.unsupported"),  # attestation key type
        (4, struct.pack("<I", 0), "evidence.unsupported"),  # TEE type SGX
        (SIG_DATA - 4, struct.pack("<I", 4298), "evidence.malformed"),  # signature data size
        (SIG_DATA - 4, struct.pack("<I", 0xFFFFFF), "evidence.malformed"),
        (QE_REPORT - 6, struct.pack("<H", 5), "evidence.unsupported"),  # cert data type
        (QE_AUTH - 2, struct.pack("<H", 0xFFFF), "evidence.malformed"),  # auth data size
    ],
)
def test_quote_structure_problems(offset: int, value: bytes, code: str) -> None:
    raw = bytearray(quote_bytes(SPR))
    raw[offset : offset + len(value)] = value
    expect_error(code, lambda: verify(bytes(raw)), "quote")


def test_truncated_quote_is_malformed() -> None:
    expect_error("evidence.malformed", lambda: verify(quote_bytes(SPR)[:3000]), "quote")


@pytest.mark.parametrize(
    "data",
    [
        {"collected_at": COLLECTED, "quote": b64(b"\x04\x00")},  # too short
        {"collected_at": COLLECTED, "quote": "not base64!"},
        {"collected_at": COLLECTED, "quote": 5},
        {"collected_at": COLLECTED},
        {"collected_at": COLLECTED, "quote": b64(b"\x00" * 70000)},  # oversized
        {"collected_at": COLLECTED, "quote": b64(b"\x00" * 700), "extra": 1},
    ],
)
def test_malformed_sections(data: dict[str, Any]) -> None:
    expect_error("evidence.malformed", lambda: TdxEvidence.parse(data))


def test_trust_model_validation() -> None:
    with pytest.raises(ValueError, match="root_certificates"):
        TdxTrust(root_certificates=())
    with pytest.raises(ValueError, match="qe_mrsigner"):
        intel_trust(qe_mrsigner="XYZ")


# --- synthetic quotes: our own root, PCK, QE and attestation key -------------------------


class SyntheticPki:
    def __init__(self, sgx_extension: bool = True) -> None:
        self.sgx_extension = sgx_extension
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.pck_key = ec.generate_private_key(ec.SECP256R1())
        root = self._certificate("Test SGX Root CA", "Test SGX Root CA", self.root_key, None)
        ca = self._certificate("Test SGX PCK CA", "Test SGX Root CA", self.ca_key, self.root_key)
        pck = self._certificate("Test SGX PCK", "Test SGX PCK CA", self.pck_key, self.ca_key)
        self.root_pem = cert_pem(root)
        self.chain = cert_pem(pck, ca, root).encode()

    def _certificate(
        self,
        subject: str,
        issuer: str,
        key: ec.EllipticCurvePrivateKey,
        signer: ec.EllipticCurvePrivateKey | None,
    ) -> x509.Certificate:
        is_ca = signer is None or subject != "Test SGX PCK"
        extensions: list[tuple[x509.ExtensionType, bool]] = []
        if not is_ca and self.sgx_extension:
            sgx = x509.ObjectIdentifier("1.2.840.113741.1.13.1")
            extensions.append((x509.UnrecognizedExtension(sgx, b"\x30\x00"), False))
        return issue(
            subject,
            key.public_key(),
            signer or key,
            issuer=issuer,
            ca=is_ca,
            usage=key_usage(digital_signature=not is_ca, key_cert_sign=is_ca, crl_sign=is_ca),
            ski=True,
            extensions=extensions,
            aki=True,
        )


@cache
def synthetic_pki(sgx_extension: bool = True) -> SyntheticPki:
    return SyntheticPki(sgx_extension)


def _raw_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def synthetic_quote(
    td_attributes: bytes = bytes(8),
    qe_attributes: int = 0x15,
    report_data: bytes = b"synthetic nonce",
    trailing: bytes = b"",
    pki: SyntheticPki | None = None,
) -> bytes:
    pki = pki or synthetic_pki()
    attestation = ec.generate_private_key(ec.SECP256R1())
    point = attestation.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )[1:]
    auth = bytes(range(32))
    qe_report = bytearray(384)
    qe_report[48] = qe_attributes
    qe_report[128:160] = bytes.fromhex(INTEL_TD_QE_MRSIGNER)
    struct.pack_into("<H", qe_report, 256, 2)
    qe_report[320:352] = hashlib.sha256(point + auth).digest()
    header = struct.pack("<HHI", 4, 2, 0x81) + bytes(40)
    body = bytearray(584)
    body[120:128] = td_attributes
    body[136:184] = hashlib.sha384(b"td").digest()
    body[520:584] = report_data.ljust(64, b"\x00")
    signed = header + bytes(body)
    qe_data = (
        bytes(qe_report)
        + _raw_signature(pki.pck_key, bytes(qe_report))
        + struct.pack("<H", len(auth))
        + auth
        + struct.pack("<HI", 5, len(pki.chain))
        + pki.chain
    )
    signature_data = (
        _raw_signature(attestation, signed) + point + struct.pack("<HI", 6, len(qe_data)) + qe_data
    )
    return signed + struct.pack("<I", len(signature_data)) + signature_data + trailing


def synthetic_trust(**kwargs: Any) -> TdxTrust:
    return TdxTrust(root_certificates=(synthetic_pki().root_pem,), **kwargs)


def test_synthetic_quote_verifies() -> None:
    node = verify(synthetic_quote(), synthetic_trust(), nonce=b"synthetic nonce")
    assert node.measurements["tdx.mrtd"] == hashlib.sha384(b"td").hexdigest()
    assert node.nonce_verified is True


def test_bytes_after_the_signature_data_are_ignored() -> None:
    quote = synthetic_quote(trailing=b"\nnot covered by any length\n")
    assert verify(quote, synthetic_trust()).verified is True


def test_debug_td_needs_allow_debug() -> None:
    quote = synthetic_quote(td_attributes=b"\x01" + bytes(7))
    expect_error("evidence.untrusted", lambda: verify(quote, synthetic_trust()), "td_attributes")
    assert verify(quote, synthetic_trust(allow_debug=True)).verified is True


def test_debug_quoting_enclave_is_untrusted() -> None:
    quote = synthetic_quote(qe_attributes=0x17)
    expect_error("evidence.untrusted", lambda: verify(quote, synthetic_trust()), "qe_report")


def test_leaf_that_is_not_a_pck_certificate_is_untrusted() -> None:
    pki = synthetic_pki(sgx_extension=False)
    trust = TdxTrust(root_certificates=(pki.root_pem,))
    expect_error("evidence.untrusted", lambda: verify(synthetic_quote(pki=pki), trust), "pck")


def test_synthetic_quote_is_untrusted_under_intel_root() -> None:
    expect_error("evidence.untrusted", lambda: verify(synthetic_quote()), "pck_chain")


# --- property tests -----------------------------------------------------------------------


@cache
def spr_baseline() -> Node:
    return verify(quote_bytes(SPR))


@given(position=st.integers(0, 4934), mask=st.integers(1, 255))
@settings(max_examples=150, deadline=None)
def test_mutated_quote_fails_or_is_unchanged(position: int, mask: int) -> None:
    try:
        node = verify(flipped(quote_bytes(SPR), position, mask))
    except EvidenceError:
        return
    # only PEM framing the chain parser tolerates was hit: the claims are unchanged
    assert node == spr_baseline()
    assert position >= QE_AUTH + 32 + 6


@given(raw=st.binary(min_size=636, max_size=2000))
@settings(max_examples=100, deadline=None)
def test_random_quotes_only_raise_evidence_error(raw: bytes) -> None:
    with pytest.raises(EvidenceError):
        verify(raw)


@given(signed=st.binary(min_size=624, max_size=624))
@settings(max_examples=100, deadline=None)
def test_random_signed_part_never_verifies(signed: bytes) -> None:
    header = struct.pack("<HHI", 4, 2, 0x81)
    with pytest.raises(EvidenceError):
        verify(header + signed + quote_bytes(SPR)[632:])
