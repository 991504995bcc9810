"""A small, strict protobuf wire-format reader for go-tpm-tools' ``attest.Attestation``.

Only the fields the TPM verifier needs are decoded (``attest.proto`` / ``tpm.proto`` of
github.com/google/go-tpm-tools)::

    Attestation { bytes ak_pub = 1; repeated tpm.Quote quotes = 2; bytes ak_cert = 6;
                  repeated bytes intermediate_certs = 7; ... }
    Quote { bytes quote = 1; bytes raw_sig = 2; PCRs pcrs = 3; }
    PCRs  { HashAlgo hash = 1; map<uint32, bytes> pcrs = 2; }

Other fields (event logs, instance info, TEE attestations) are skipped unread. Stricter
than protobuf itself: a singular field that appears twice, a repeated map key, a known
field with the wrong wire type, groups and over-long varints are all rejected.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from attestpolicy.evidence._common import Code, fail

__all__ = ["GoTpmAttestation", "GoTpmQuote", "parse_go_tpm_attestation"]

_VARINT: Final = 0
_I64: Final = 1
_LEN: Final = 2
_I32: Final = 5
_MAX_QUOTES: Final = 8
_MAX_INTERMEDIATES: Final = 8
_MAX_PCRS: Final = 32


@dataclass(frozen=True, slots=True)
class GoTpmQuote:
    """One ``tpm.Quote``: TPMS_ATTEST, TPMT_SIGNATURE and the quoted bank's PCR values."""

    quote: bytes
    raw_sig: bytes
    hash_alg: int
    pcrs: dict[int, bytes]


@dataclass(frozen=True, slots=True)
class GoTpmAttestation:
    """The parts of an ``attest.Attestation`` a quote verification needs."""

    ak_pub: bytes
    quotes: tuple[GoTpmQuote, ...]
    ak_cert: bytes | None
    intermediate_certs: tuple[bytes, ...]


def _varint(data: bytes, pos: int, field: str) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(data):
            fail(Code.MALFORMED, field, "protobuf: truncated varint")
        octet = data[pos]
        pos += 1
        value |= (octet & 0x7F) << shift
        if not octet & 0x80:
            if value >= 1 << 64:
                fail(Code.MALFORMED, field, "protobuf: varint over 64 bits")
            return value, pos
    fail(Code.MALFORMED, field, "protobuf: varint longer than 10 bytes")


def _fields(data: bytes, field: str) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield ``(number, wire type, value)``; value is an int (varint) or the raw bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos, field)
        number, wire = key >> 3, key & 7
        if number == 0 or number > 0x1FFFFFFF:
            fail(Code.MALFORMED, field, f"protobuf: invalid field number {number}")
        value: int | bytes
        if wire == _VARINT:
            value, pos = _varint(data, pos, field)
        elif wire in (_I64, _I32):
            size = 8 if wire == _I64 else 4
            if pos + size > len(data):
                fail(Code.MALFORMED, field, "protobuf: truncated fixed-size field")
            value, pos = data[pos : pos + size], pos + size
        elif wire == _LEN:
            size, pos = _varint(data, pos, field)
            if size > len(data) - pos:
                fail(Code.MALFORMED, field, "protobuf: length-delimited field runs past the end")
            value, pos = data[pos : pos + size], pos + size
        else:
            fail(Code.MALFORMED, field, f"protobuf: unsupported wire type {wire}")
        yield number, wire, value


class _Message:
    """The known fields of one message, checked for wire type and repetition."""

    def __init__(
        self, data: bytes, field: str, singular: dict[int, int], repeated: set[int]
    ) -> None:
        self.field = field
        self.values: dict[int, int | bytes] = {}
        self.lists: dict[int, list[bytes]] = {number: [] for number in repeated}
        for number, wire, value in _fields(data, field):
            if number in repeated:
                if wire != _LEN or not isinstance(value, bytes):
                    fail(Code.MALFORMED, field, f"protobuf: field {number} has wire type {wire}")
                self.lists[number].append(value)
            elif number in singular:
                if wire != singular[number]:
                    fail(Code.MALFORMED, field, f"protobuf: field {number} has wire type {wire}")
                if number in self.values:
                    fail(Code.MALFORMED, field, f"protobuf: singular field {number} appears twice")
                self.values[number] = value

    def get_bytes(self, number: int) -> bytes:
        value = self.values.get(number, b"")
        if not isinstance(value, bytes):
            fail(Code.MALFORMED, self.field, f"protobuf: field {number} is not length-delimited")
        return value

    def get_int(self, number: int) -> int:
        value = self.values.get(number, 0)
        if not isinstance(value, int):
            fail(Code.MALFORMED, self.field, f"protobuf: field {number} is not a varint")
        return value


def parse_go_tpm_attestation(data: bytes, field: str) -> GoTpmAttestation:
    """Decode a serialized go-tpm-tools ``attest.Attestation`` message."""
    message = _Message(data, field, {1: _LEN, 6: _LEN}, {2, 7})
    quotes_raw = message.lists[2]
    intermediates = message.lists[7]
    if not quotes_raw:
        fail(Code.MALFORMED, field, "attestation has no quotes")
    if len(quotes_raw) > _MAX_QUOTES:
        fail(Code.MALFORMED, field, f"attestation has over {_MAX_QUOTES} quotes")
    if len(intermediates) > _MAX_INTERMEDIATES:
        fail(Code.MALFORMED, field, f"attestation has over {_MAX_INTERMEDIATES} intermediates")
    ak_pub = message.get_bytes(1)
    if not ak_pub:
        fail(Code.MALFORMED, field, "attestation has no ak_pub")
    quotes = tuple(_quote(raw, f"{field}.quotes[{index}]") for index, raw in enumerate(quotes_raw))
    ak_cert = message.get_bytes(6) or None
    return GoTpmAttestation(ak_pub, quotes, ak_cert, tuple(intermediates))


def _quote(data: bytes, field: str) -> GoTpmQuote:
    message = _Message(data, field, {1: _LEN, 2: _LEN, 3: _LEN}, set())
    if 3 not in message.values:
        fail(Code.MALFORMED, field, "quote has no pcrs")
    pcrs_message = _Message(message.get_bytes(3), f"{field}.pcrs", {1: _VARINT}, {2})
    if len(pcrs_message.lists[2]) > _MAX_PCRS:
        fail(Code.MALFORMED, field, f"quote has over {_MAX_PCRS} PCR values")
    pcrs: dict[int, bytes] = {}
    for entry in pcrs_message.lists[2]:
        item = _Message(entry, f"{field}.pcrs", {1: _VARINT, 2: _LEN}, set())
        index = item.get_int(1)
        if index in pcrs:
            fail(Code.MALFORMED, field, f"PCR {index} appears twice")
        pcrs[index] = item.get_bytes(2)
    return GoTpmQuote(
        quote=message.get_bytes(1),
        raw_sig=message.get_bytes(2),
        hash_alg=pcrs_message.get_int(1),
        pcrs=pcrs,
    )
