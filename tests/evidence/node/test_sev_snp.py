"""AMD SEV-SNP reports (go-sev-guest vector, synthetic reports) and Azure's SNP-backed vTPM
(trustee's az-snp-vtpm vector)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from evidence.helpers import (
    TEST_ASSETS,
    assert_valid_until,
    b64,
    cert_pem,
    der_to_pem,
    expect_error,
    issue,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from attestpolicy.claims import Node
from attestpolicy.errors import EvidenceError
from attestpolicy.evidence.node.sev_snp import (
    AzSnpVtpmEvidence,
    SevSnpEvidence,
    SevSnpTrust,
    verify_az_snp_vtpm,
    verify_sev_snp,
)

ASSETS = TEST_ASSETS / "cc"
NOW = datetime(2025, 6, 1, tzinfo=UTC)
COLLECTED = "2025-06-01T00:00:00Z"
PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?", re.S)


@cache
def milan_ask_ark() -> tuple[str, str]:
    ask, ark = PEM_BLOCK.findall((ASSETS / "go-sev-guest_ask_ark_milan.pem").read_text())
    return ask, ark


def milan_trust(**kwargs: Any) -> SevSnpTrust:
    ask, ark = milan_ask_ark()
    return SevSnpTrust(ark_certificates=(ark,), ask_certificates=(ask,), **kwargs)


def report_bytes() -> bytes:
    return (ASSETS / "go-sev-guest_attestation.bin").read_bytes()


def snp_evidence(report: bytes | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "collected_at": COLLECTED,
        "report": b64(report_bytes() if report is None else report),
        "vcek": der_to_pem((ASSETS / "go-sev-guest_vcek.testcer").read_bytes()),
        **extra,
    }


def verify(evidence: dict[str, Any], trust: SevSnpTrust, **kwargs: Any) -> Node:
    kwargs.setdefault("now", NOW)
    return verify_sev_snp(SevSnpEvidence.parse(evidence), trust, **kwargs)


NONCE = bytes([1, 2, 3, 4, 5])  # the vector's REPORT_DATA, zero-padded


# --- go-sev-guest: a Milan report, VCEK -> ASK -> ARK -----------------------------------


def test_go_sev_guest_report_verifies() -> None:
    node = verify(snp_evidence(), milan_trust(allow_debug=True), nonce=NONCE)
    raw = report_bytes()
    assert node.kind == "sev_snp"
    assert node.verified is True
    assert node.nonce_verified is True
    assert node.id == raw[0x1A0:0x1E0].hex()
    assert node.measurements["snp.measurement"] == (
        "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b"
        "6bdf8a9ece31a5a608eb0cf2e4872b01"
    )
    assert node.measurements["snp.policy"] == "00000000000b0000"
    assert node.measurements["snp.reported_tcb"] == "4405000000000002"
    assert node.issued_at == NOW


def test_go_sev_guest_report_is_a_debug_guest_refused_by_default() -> None:
    expect_error("evidence.untrusted", lambda: verify(snp_evidence(), milan_trust()), "policy")


def test_ask_may_come_with_the_evidence() -> None:
    ask, ark = milan_ask_ark()
    trust = SevSnpTrust(ark_certificates=(ark,), allow_debug=True)
    assert verify(snp_evidence(ask=ask), trust).verified is True
    expect_error("evidence.untrusted", lambda: verify(snp_evidence(), trust), "vcek.chain")


def test_tampered_measurement_is_rejected() -> None:
    raw = bytearray(report_bytes())
    raw[0x90] ^= 0x01
    expect_error(
        "evidence.signature_invalid",
        lambda: verify(snp_evidence(bytes(raw)), milan_trust(allow_debug=True)),
        "report.signature",
    )


def test_tampered_signature_is_rejected() -> None:
    raw = bytearray(report_bytes())
    raw[0x2A0] ^= 0x01
    expect_error(
        "evidence.signature_invalid",
        lambda: verify(snp_evidence(bytes(raw)), milan_trust(allow_debug=True)),
    )


@pytest.mark.parametrize("nonce", [b"\x01\x02\x03\x04\x06", b"\x01\x02\x03\x04", b"", b"x" * 65])
def test_wrong_nonce_is_rejected(nonce: bytes) -> None:
    expect_error(
        "evidence.nonce_mismatch",
        lambda: verify(snp_evidence(), milan_trust(allow_debug=True), nonce=nonce),
        "report_data",
    )


@pytest.mark.parametrize(
    "now", [datetime(2029, 9, 25, tzinfo=UTC), datetime(2022, 9, 23, tzinfo=UTC)]
)
def test_vcek_outside_its_validity_is_expired(now: datetime) -> None:
    expect_error(
        "evidence.expired",
        lambda: verify(snp_evidence(), milan_trust(allow_debug=True), now=now),
        "vcek.chain",
    )


def test_the_report_verification_holds_until_the_vcek_expires() -> None:
    # asn1crypto: the VCEK's serial number is negative, which cryptography deprecates
    vcek = asn1_x509.Certificate.load((ASSETS / "go-sev-guest_vcek.testcer").read_bytes())
    assert_valid_until(
        lambda now: verify(snp_evidence(), milan_trust(allow_debug=True), now=now),
        NOW,
        vcek["tbs_certificate"]["validity"]["not_after"].native,
    )


def test_vcek_of_another_chip_is_an_identity_mismatch() -> None:
    # the Azure vector's VCEK chains to the same Milan ARK but was issued for another chip
    azure_vcek = PEM_BLOCK.findall((ASSETS / "az-snp-vtpm" / "vcek.pem").read_text())[0]
    evidence = snp_evidence()
    evidence["vcek"] = azure_vcek
    expect_error(
        "evidence.identity_mismatch",
        lambda: verify(evidence, milan_trust(allow_debug=True)),
        "vcek.hwid",
    )


def test_chain_to_another_root_is_untrusted() -> None:
    _, _, rogue_root, _ = make_amd_like_chain()
    ask, _ = milan_ask_ark()
    trust = SevSnpTrust(ark_certificates=(rogue_root,), ask_certificates=(ask,), allow_debug=True)
    expect_error("evidence.untrusted", lambda: verify(snp_evidence(), trust), "vcek.chain")


@pytest.mark.parametrize(
    ("offset", "value", "code"),
    [
        (0x00, struct.pack("<I", 1), "evidence.unsupported"),  # report version
        (0x34, struct.pack("<I", 2), "evidence.unsupported"),  # signature algorithm
        (0x48, struct.pack("<I", 0b100), "evidence.unsupported"),  # signed by a VLEK
        (0x48, struct.pack("<I", 0b10), "evidence.unsupported"),  # MASK_CHIP_KEY
        (0x2A0 + 60, b"\x01", "evidence.malformed"),  # r padding
        (0x400, b"\x01", "evidence.malformed"),  # reserved tail
    ],
)
def test_report_header_problems(offset: int, value: bytes, code: str) -> None:
    raw = bytearray(report_bytes())
    raw[offset : offset + len(value)] = value
    expect_error(code, lambda: verify(snp_evidence(bytes(raw)), milan_trust(allow_debug=True)))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.update(report=b64(report_bytes()[:-1])),
        lambda e: e.update(report=b64(report_bytes() + b"\x00")),
        lambda e: e.update(report=e["report"].replace("A", "_", 1)),
        lambda e: e.update(vcek="not a pem"),
        lambda e: e.update(vcek=1),
        lambda e: e.update(collected_at=None),
        lambda e: e.update(extra="field"),
    ],
)
def test_malformed_sections(mutate: Callable[[dict[str, Any]], Any]) -> None:
    evidence = snp_evidence()
    mutate(evidence)
    expect_error("evidence.malformed", lambda: SevSnpEvidence.parse(evidence))


def test_vcek_that_is_not_a_certificate_is_malformed() -> None:
    evidence = snp_evidence()
    evidence["vcek"] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    expect_error("evidence.malformed", lambda: verify(evidence, milan_trust()), "vcek")


def test_trust_refuses_bad_pem() -> None:
    with pytest.raises(ValueError, match="certificate"):
        SevSnpTrust(
            ark_certificates=("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",)
        )


# --- synthetic reports: our own "AMD" chain, P-384 VCEK with AMD extensions -------------


def _der_integer(value: int) -> bytes:
    return bytes([0x02, 0x01, value])


CHIP_ID = bytes(range(64))
TCB = bytes([3, 0, 0, 0, 0, 0, 8, 115])  # bootloader, tee, 4 reserved, snp, microcode


@cache
def make_amd_like_chain(
    spl: tuple[int, int, int, int] = (3, 0, 8, 115),
) -> tuple[ec.EllipticCurvePrivateKey, str, str, str]:
    """(VCEK key, VCEK PEM, root PEM, ASK PEM) made with ECDSA keys of our own."""
    root_key = ec.generate_private_key(ec.SECP384R1())
    ask_key = ec.generate_private_key(ec.SECP384R1())
    vcek_key = ec.generate_private_key(ec.SECP384R1())

    def ca(subject: str, issuer: str, key: Any, signer: Any) -> x509.Certificate:
        return issue(
            subject, key.public_key(), signer, issuer=issuer, ca=True, algorithm=hashes.SHA384()
        )

    root = ca("ARK-test", "ARK-test", root_key, root_key)
    ask = ca("SEV-test", "ARK-test", ask_key, root_key)
    extensions = {
        "1.3.6.1.4.1.3704.1.2": b"\x16\x08Milan-B0",
        "1.3.6.1.4.1.3704.1.4": CHIP_ID,
        "1.3.6.1.4.1.3704.1.3.1": _der_integer(spl[0]),
        "1.3.6.1.4.1.3704.1.3.2": _der_integer(spl[1]),
        "1.3.6.1.4.1.3704.1.3.3": _der_integer(spl[2]),
        "1.3.6.1.4.1.3704.1.3.8": _der_integer(spl[3]),
    }
    vcek = issue(
        "SEV-VCEK",
        vcek_key.public_key(),
        ask_key,
        issuer="SEV-test",
        start=datetime(2024, 1, 1, tzinfo=UTC),
        end=datetime(2031, 1, 1, tzinfo=UTC),
        serial=1,
        extensions=[
            (x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value), False)
            for oid, value in extensions.items()
        ],
        algorithm=hashes.SHA384(),
    )
    return vcek_key, cert_pem(vcek), cert_pem(root), cert_pem(ask)


def make_report(
    key: ec.EllipticCurvePrivateKey, policy: int = 0x30000, report_data: bytes = b"nonce"
) -> bytes:
    raw = bytearray(0x4A0)
    struct.pack_into("<IIQ", raw, 0, 2, 1, policy)
    struct.pack_into("<II", raw, 0x30, 0, 1)
    raw[0x50:0x90] = report_data.ljust(64, b"\x00")
    raw[0x90:0xC0] = hashlib.sha384(b"launch").digest()
    raw[0x180:0x188] = TCB
    raw[0x1A0:0x1E0] = CHIP_ID
    r, s = decode_dss_signature(key.sign(bytes(raw[:0x2A0]), ec.ECDSA(hashes.SHA384())))
    raw[0x2A0 : 0x2A0 + 72] = r.to_bytes(72, "little")
    raw[0x2A0 + 72 : 0x2A0 + 144] = s.to_bytes(72, "little")
    return bytes(raw)


def synthetic(
    policy: int = 0x30000, spl: tuple[int, int, int, int] = (3, 0, 8, 115)
) -> tuple[dict[str, Any], SevSnpTrust]:
    key, vcek, root, ask = make_amd_like_chain(spl)
    evidence = {"collected_at": COLLECTED, "report": b64(make_report(key, policy)), "vcek": vcek}
    return evidence, SevSnpTrust(ark_certificates=(root,), ask_certificates=(ask,))


def test_synthetic_report_verifies() -> None:
    evidence, trust = synthetic()
    node = verify(evidence, trust, nonce=b"nonce")
    assert node.id == CHIP_ID.hex()
    assert node.measurements["snp.measurement"] == hashlib.sha384(b"launch").hexdigest()


def test_vcek_for_another_tcb_is_an_identity_mismatch() -> None:
    evidence, trust = synthetic(spl=(3, 0, 7, 115))  # the VCEK certifies SNP SPL 7, not 8
    expect_error("evidence.identity_mismatch", lambda: verify(evidence, trust), "vcek.tcb")


def test_synthetic_debug_guest_needs_allow_debug() -> None:
    evidence, trust = synthetic(policy=0x30000 | 1 << 19)
    expect_error("evidence.untrusted", lambda: verify(evidence, trust), "report.policy")
    allowed = trust.model_copy(update={"allow_debug": True})
    assert verify(evidence, allowed).verified is True


def test_report_signed_by_another_key_is_rejected() -> None:
    evidence, trust = synthetic()
    impostor = ec.generate_private_key(ec.SECP384R1())
    evidence["report"] = b64(make_report(impostor))
    expect_error("evidence.signature_invalid", lambda: verify(evidence, trust))


# --- Azure SNP CVM: HCL report binds the runtime data whose AK signs the vTPM quote ---------


@cache
def azure_files() -> tuple[bytes, dict[str, Any], list[str]]:
    folder = ASSETS / "az-snp-vtpm"
    quote: dict[str, Any] = json.loads((folder / "tpm-quote-v1.json").read_text())
    return (
        (folder / "hcl-report.bin").read_bytes(),
        quote,
        PEM_BLOCK.findall((folder / "vcek.pem").read_text()),
    )


def azure_evidence(hcl: bytes | None = None) -> dict[str, Any]:
    report, quote, pems = azure_files()

    def hex64(value: str) -> str:
        return b64(bytes.fromhex(value))

    return {
        "collected_at": COLLECTED,
        "hcl_report": b64(report if hcl is None else hcl),
        "vcek": pems[0],
        "ask": pems[1],
        "tpm_quote": {
            "attest": hex64(quote["message"]),
            "signature": hex64(quote["signature"]),
            "pcrs": [hex64(value) for value in quote["pcrs"]],
        },
    }


def azure_trust() -> SevSnpTrust:
    # the ARK comes from go-sev-guest's copy of AMD's Milan chain, not from the evidence
    return SevSnpTrust(ark_certificates=(milan_ask_ark()[1],))


def verify_azure(evidence: dict[str, Any], **kwargs: Any) -> Node:
    kwargs.setdefault("now", NOW)
    return verify_az_snp_vtpm(AzSnpVtpmEvidence.parse(evidence), azure_trust(), **kwargs)


def azure_ak() -> rsa.RSAPublicKey:
    report, _, _ = azure_files()
    start = report.index(b'{"keys"')
    size = struct.unpack_from("<I", report, start - 4)[0]
    jwk = json.loads(report[start : start + size])["keys"][0]
    assert jwk["kid"] == "HCLAkPub"

    def number(text: str) -> int:
        return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")

    return rsa.RSAPublicNumbers(number(jwk["e"]), number(jwk["n"])).public_key()


def test_azure_snp_vtpm_binds_the_quote_to_the_report() -> None:
    node = verify_azure(azure_evidence(), nonce=b"challenge")
    der = azure_ak().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert node.kind == "az_snp_vtpm"
    assert node.id == "sha256:" + hashlib.sha256(der).hexdigest()
    assert node.nonce_verified is True
    assert node.measurements["pcr.sha256.0"] == azure_files()[1]["pcrs"][0]
    assert node.measurements["snp.measurement"].startswith("9ac48fcac8a2d88a")
    assert len([name for name in node.measurements if name.startswith("pcr.sha256.")]) == 24


def test_azure_quote_nonce_is_the_whole_extra_data() -> None:
    # EXPECTED.md lists 6368616c6c656e67 ("challeng"); the quote's extraData is the nine
    # bytes "challenge" (trustee's test uses "challenge"), so the prefix must not match.
    expect_error(
        "evidence.nonce_mismatch",
        lambda: verify_azure(azure_evidence(), nonce=bytes.fromhex("6368616c6c656e67")),
        "tpm_quote.nonce",
    )


def test_azure_tampered_runtime_data_is_not_bound() -> None:
    report = bytearray(azure_files()[0])
    position = report.index(b'"tpm-enabled":true')
    report[position + 14 : position + 18] = b"fals"
    expect_error(
        "evidence.digest_mismatch",
        lambda: verify_azure(azure_evidence(bytes(report))),
        "runtime_data",
    )


def test_azure_tampered_snp_report_fails_its_signature() -> None:
    report = bytearray(azure_files()[0])
    report[0x20 + 0x90] ^= 0x01  # measurement
    expect_error(
        "evidence.signature_invalid",
        lambda: verify_azure(azure_evidence(bytes(report))),
        "hcl_report.report.signature",
    )


def test_azure_tampered_quote_and_pcr() -> None:
    evidence = azure_evidence()
    attest = bytearray(base64.b64decode(evidence["tpm_quote"]["attest"]))
    attest[55] ^= 0x01  # clockInfo.clock
    tampered = copy.deepcopy(evidence)
    tampered["tpm_quote"]["attest"] = b64(bytes(attest))
    expect_error("evidence.signature_invalid", lambda: verify_azure(tampered), "tpm_quote")
    evidence["tpm_quote"]["pcrs"][4] = b64(b"\x00" * 32)
    expect_error("evidence.digest_mismatch", lambda: verify_azure(evidence), "tpm_quote.pcrs")


def test_azure_report_that_is_not_hcl_is_malformed() -> None:
    report = b"XXXX" + azure_files()[0][4:]
    expect_error("evidence.malformed", lambda: verify_azure(azure_evidence(report)))


# --- property tests -----------------------------------------------------------------------


@given(
    position=st.integers(0, 0x4A0 - 1),
    bit=st.integers(0, 7),
    extra=st.lists(st.integers(0, 0x4A0 - 1), max_size=3),
)
@settings(max_examples=150, deadline=None)
def test_any_flipped_report_bit_is_rejected(position: int, bit: int, extra: list[int]) -> None:
    raw = bytearray(report_bytes())
    raw[position] ^= 1 << bit
    for other in extra:
        if other != position:
            raw[other] ^= 0x80
    with pytest.raises(EvidenceError):
        verify(snp_evidence(bytes(raw)), milan_trust(allow_debug=True), nonce=NONCE)


@given(raw=st.binary(min_size=0x4A0, max_size=0x4A0))
@settings(max_examples=100, deadline=None)
def test_random_reports_only_raise_evidence_error(raw: bytes) -> None:
    with pytest.raises(EvidenceError):
        verify(snp_evidence(raw), milan_trust(allow_debug=True))


@given(position=st.integers(0, 2599), value=st.integers(0, 255))
@settings(max_examples=150, deadline=None)
def test_mutated_hcl_report_fails_or_is_unchanged(position: int, value: int) -> None:
    report = bytearray(azure_files()[0])
    if report[position] == value:
        return
    report[position] = value
    try:
        node = verify_azure(azure_evidence(bytes(report)), nonce=b"challenge")
    except EvidenceError:
        return
    # only bytes no check covers were hit (HCL header fields, padding after runtime data)
    assert node == verify_azure(azure_evidence(), nonce=b"challenge")
    assert (4 <= position < 0x20 and not 8 <= position < 12) or position >= 0x4C0 + 20 + 1110


JSON_VALUES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=30)
    | st.lists(st.integers(), max_size=3)
)


@given(key=st.sampled_from(["collected_at", "report", "vcek", "ask"]), value=JSON_VALUES)
@settings(max_examples=100, deadline=None)
def test_wrong_json_types_only_raise_evidence_error(key: str, value: Any) -> None:
    evidence = snp_evidence()
    evidence[key] = value
    try:
        node = verify(evidence, milan_trust(allow_debug=True))
    except EvidenceError:
        return
    assert (key, value) == ("ask", None)
    assert node.verified
