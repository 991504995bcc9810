"""go-tpm-tools' ``attest.Attestation``, decoded by the ``protobuf`` package.

The messages are described at import, in a private descriptor pool (no generated code,
no clash with another copy of go-tpm-tools' messages), after ``attest.proto`` and
``tpm.proto`` of github.com/google/go-tpm-tools::

    Attestation { bytes ak_pub = 1; repeated tpm.Quote quotes = 2; bytes ak_cert = 6;
                  repeated bytes intermediate_certs = 7; ... }
    Quote { bytes quote = 1; bytes raw_sig = 2; PCRs pcrs = 3; }
    PCRs  { HashAlgo hash = 1; map<uint32, bytes> pcrs = 2; }

Only those fields are described; the others (event logs, instance info, TEE
attestations) stay unknown fields, never decoded. The description is wire-compatible and
decodes what Go's protobuf decodes, but refuses what Go would silently resolve:

* every singular ``bytes`` field is declared ``repeated``, so one given twice is refused
  (Go keeps the last);
* the PCR map is declared as its wire form, a repeated entry message, so a PCR given
  twice is refused (Go keeps the last), and the PCR index and the bank are read as 64-bit
  integers (Go truncates them to 32 bits; an out-of-range value is then refused);
* a described field with the wrong wire type (which protobuf, like Go, keeps as an
  unknown field) is refused in the attestation, a quote or its PCRs.

protobuf itself refuses truncated input, varints longer than ten bytes, and wire types 6
and 7. Where it is laxer than Go: the bits of a ten-byte varint past the 64th are dropped
(Go refuses them), and groups are skipped as unknown fields (as Go does).
Nothing here is trusted by being parsed: the quotes are verified against the AK, and the
PCR values against the signed PCR digest (:mod:`attestpolicy.evidence.node._tpm_quote`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from attestpolicy.evidence._common import Code, fail

__all__ = ["GoTpmAttestation", "GoTpmQuote", "parse_go_tpm_attestation"]

_MAX_QUOTES: Final = 8
_MAX_INTERMEDIATES: Final = 8
_MAX_PCRS: Final = 32
_PACKAGE: Final = "attestpolicy.go_tpm_tools"


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


_Field = descriptor_pb2.FieldDescriptorProto
_BYTES: Final = _Field.TYPE_BYTES
_UINT64: Final = _Field.TYPE_UINT64
_MESSAGE: Final = _Field.TYPE_MESSAGE
_REPEATED: Final = _Field.LABEL_REPEATED
_SINGULAR: Final = _Field.LABEL_OPTIONAL

# message -> (number, name, type, label, message type); see the module doc for the labels
_MESSAGES: Final[dict[str, tuple[tuple[int, str, int, int, str], ...]]] = {
    "PcrEntry": ((1, "key", _UINT64, _SINGULAR, ""), (2, "value", _BYTES, _REPEATED, "")),
    "PCRs": ((1, "hash", _UINT64, _SINGULAR, ""), (2, "pcrs", _MESSAGE, _REPEATED, "PcrEntry")),
    "Quote": (
        (1, "quote", _BYTES, _REPEATED, ""),
        (2, "raw_sig", _BYTES, _REPEATED, ""),
        (3, "pcrs", _MESSAGE, _REPEATED, "PCRs"),
    ),
    "Attestation": (
        (1, "ak_pub", _BYTES, _REPEATED, ""),
        (2, "quotes", _MESSAGE, _REPEATED, "Quote"),
        (6, "ak_cert", _BYTES, _REPEATED, ""),
        (7, "intermediate_certs", _BYTES, _REPEATED, ""),
    ),
}
_DESCRIBED: Final = {
    name: frozenset(number for number, *_ in fields) for name, fields in _MESSAGES.items()
}


def _attestation_class() -> Any:
    """Describe the messages in a private pool; return the Attestation message class."""
    file = descriptor_pb2.FileDescriptorProto(
        name="attestpolicy/go_tpm_tools.proto", package=_PACKAGE, syntax="proto3"
    )
    for name, fields in _MESSAGES.items():
        message = file.message_type.add(name=name)
        for number, field_name, kind, label, type_name in fields:
            field = message.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = f".{_PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.Attestation"))


_Attestation: Final = _attestation_class()


def _check(message: Any, name: str, field: str, *singular: str) -> None:
    """No described field with a wrong wire type; each ``singular`` field at most once."""
    unknowns = UnknownFieldSet(message)
    for index in range(len(unknowns)):
        unknown = unknowns[index]
        if unknown.field_number in _DESCRIBED[name]:
            fail(
                Code.MALFORMED,
                field,
                f"protobuf: field {unknown.field_number} has wire type {unknown.wire_type}",
            )
    for attribute in singular:
        if len(getattr(message, attribute)) > 1:
            fail(Code.MALFORMED, field, f"protobuf: singular field {attribute} appears twice")


def _one(values: Any) -> bytes:
    """A singular ``bytes`` field (declared repeated, checked by :func:`_check`)."""
    return bytes(values[0]) if values else b""


def parse_go_tpm_attestation(data: bytes, field: str) -> GoTpmAttestation:
    """Decode a serialized go-tpm-tools ``attest.Attestation`` message."""
    try:
        message = _Attestation.FromString(data)
    except DecodeError as exc:
        fail(Code.MALFORMED, field, f"protobuf: {exc}")
    _check(message, "Attestation", field, "ak_pub", "ak_cert")
    if not message.quotes:
        fail(Code.MALFORMED, field, "attestation has no quotes")
    if len(message.quotes) > _MAX_QUOTES:
        fail(Code.MALFORMED, field, f"attestation has over {_MAX_QUOTES} quotes")
    if len(message.intermediate_certs) > _MAX_INTERMEDIATES:
        fail(Code.MALFORMED, field, f"attestation has over {_MAX_INTERMEDIATES} intermediates")
    ak_pub = _one(message.ak_pub)
    if not ak_pub:
        fail(Code.MALFORMED, field, "attestation has no ak_pub")
    quotes = tuple(
        _quote(quote, f"{field}.quotes[{index}]") for index, quote in enumerate(message.quotes)
    )
    return GoTpmAttestation(
        ak_pub, quotes, _one(message.ak_cert) or None, tuple(message.intermediate_certs)
    )


def _quote(message: Any, field: str) -> GoTpmQuote:
    _check(message, "Quote", field, "quote", "raw_sig", "pcrs")
    if not message.pcrs:
        fail(Code.MALFORMED, field, "quote has no pcrs")
    bank = message.pcrs[0]
    _check(bank, "PCRs", f"{field}.pcrs")
    if len(bank.pcrs) > _MAX_PCRS:
        fail(Code.MALFORMED, field, f"quote has over {_MAX_PCRS} PCR values")
    pcrs: dict[int, bytes] = {}
    for entry in bank.pcrs:
        if len(entry.value) > 1:
            fail(Code.MALFORMED, f"{field}.pcrs", "protobuf: a PCR value appears twice")
        if entry.key in pcrs:
            fail(Code.MALFORMED, field, f"PCR {entry.key} appears twice")
        pcrs[entry.key] = _one(entry.value)
    return GoTpmQuote(
        quote=_one(message.quote), raw_sig=_one(message.raw_sig), hash_alg=bank.hash, pcrs=pcrs
    )
