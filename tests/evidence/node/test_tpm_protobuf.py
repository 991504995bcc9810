"""The go-tpm-tools Attestation reader (protobuf package) at the wire level.

Messages are written here byte by byte with a ten-line encoder (independent of the reader
under test); the real GCE vectors are checked in test_tpm.py.
"""

from __future__ import annotations

import pytest
from evidence.helpers import TEST_ASSETS, expect_error

from attestpolicy.evidence.node._tpm_protobuf import parse_go_tpm_attestation

ASSETS = TEST_ASSETS / "tpm"


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def tag(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def field(number: int, data: bytes) -> bytes:
    """A length-delimited field."""
    return tag(number, 2) + varint(len(data)) + data


def number(field_number: int, value: int) -> bytes:
    """A varint field."""
    return tag(field_number, 0) + varint(value)


def pcr(index: bytes, value: bytes) -> bytes:
    return field(2, index + field(2, value))


def quote(pcrs: bytes, *, extra: bytes = b"") -> bytes:
    return field(1, b"attest") + field(2, b"sig") + field(3, pcrs) + extra


SHA256_BANK = number(1, 0x0B) + pcr(number(1, 0), b"\x00" * 32) + pcr(number(1, 7), b"\x07" * 32)


def attestation(*quotes: bytes, extra: bytes = b"") -> bytes:
    return field(1, b"ak") + b"".join(field(2, q) for q in quotes) + extra


def test_a_hand_written_attestation_decodes() -> None:
    event_log = field(3, b"an unread event log") + field(5, b"a canonical event log")
    parsed = parse_go_tpm_attestation(
        attestation(quote(SHA256_BANK), extra=event_log + field(6, b"cert") + field(7, b"ca")),
        "pb",
    )
    assert parsed.ak_pub == b"ak"
    assert parsed.ak_cert == b"cert"
    assert parsed.intermediate_certs == (b"ca",)
    (only,) = parsed.quotes
    assert (only.quote, only.raw_sig, only.hash_alg) == (b"attest", b"sig", 0x0B)
    assert only.pcrs == {0: b"\x00" * 32, 7: b"\x07" * 32}


def test_the_real_attestation_has_three_banks_of_24() -> None:
    parsed = parse_go_tpm_attestation((ASSETS / "gce-cos-85-nonce9009.pb").read_bytes(), "pb")
    assert [q.hash_alg for q in parsed.quotes] == [0x04, 0x0B, 0x0C]
    assert all(sorted(q.pcrs) == list(range(24)) for q in parsed.quotes)
    assert parsed.ak_cert is not None
    assert parsed.ak_cert.startswith(b"\x30\x82\x05\x38")


def test_unknown_fields_are_skipped_in_every_message() -> None:
    bank = SHA256_BANK + number(9, 1)
    parsed = parse_go_tpm_attestation(
        attestation(quote(bank, extra=field(12, b"?")), extra=number(15, 3)), "pb"
    )
    assert parsed.quotes[0].pcrs[7] == b"\x07" * 32


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            attestation(quote(SHA256_BANK)) + field(6, b"a") + field(6, b"b"), id="ak_cert"
        ),
        pytest.param(attestation(quote(SHA256_BANK) + field(1, b"x")), id="quote.quote"),
        pytest.param(attestation(quote(SHA256_BANK) + field(2, b"x")), id="quote.raw_sig"),
        pytest.param(attestation(quote(SHA256_BANK) + field(3, SHA256_BANK)), id="quote.pcrs"),
        pytest.param(
            attestation(quote(SHA256_BANK + pcr(number(1, 7), b"\x01" * 32))), id="same PCR"
        ),
        pytest.param(
            attestation(quote(number(1, 0x0B) + pcr(number(1, 1) + field(2, b"v"), b"w"))),
            id="PCR value",
        ),
    ],
)
def test_a_field_given_twice_is_malformed(raw: bytes) -> None:
    expect_error("evidence.malformed", lambda: parse_go_tpm_attestation(raw, "pb"))


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(number(1, 5) + field(2, quote(SHA256_BANK)), id="ak_pub as a varint"),
        pytest.param(attestation(quote(SHA256_BANK)) + number(7, 1), id="intermediate"),
        pytest.param(attestation(number(1, 1) + field(3, SHA256_BANK)), id="quote as a varint"),
        pytest.param(attestation(quote(field(1, b"\x0b") + pcr(b"", b"v"))), id="bank packed"),
    ],
)
def test_a_described_field_with_the_wrong_wire_type_is_malformed(raw: bytes) -> None:
    expect_error("evidence.malformed", lambda: parse_go_tpm_attestation(raw, "pb"))


def test_a_pcr_index_is_not_truncated_to_32_bits() -> None:
    bank = number(1, 0x0B) + pcr(number(1, 2**32 + 7), b"\x07" * 32)
    parsed = parse_go_tpm_attestation(attestation(quote(bank)), "pb")
    assert parsed.quotes[0].pcrs == {2**32 + 7: b"\x07" * 32}


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(field(1, b"ak"), id="no quote"),
        pytest.param(field(2, quote(SHA256_BANK)), id="no ak_pub"),
        pytest.param(attestation(field(1, b"attest")), id="quote without pcrs"),
        pytest.param(attestation(*[quote(SHA256_BANK)] * 9), id="nine quotes"),
        pytest.param(attestation(quote(SHA256_BANK)) + field(7, b"c") * 9, id="nine CAs"),
        pytest.param(
            attestation(
                quote(number(1, 0x0B) + b"".join(pcr(number(1, i), b"v") for i in range(33)))
            ),
            id="33 PCRs",
        ),
        pytest.param(attestation(quote(SHA256_BANK))[:-3], id="truncated"),
        pytest.param(tag(1, 0) + b"\xff" * 10 + b"\x01", id="varint of 11 bytes"),
        pytest.param(tag(1, 7) + b"\x00", id="wire type 7"),
    ],
)
def test_incomplete_or_hostile_input_is_malformed(raw: bytes) -> None:
    expect_error("evidence.malformed", lambda: parse_go_tpm_attestation(raw, "pb"))
