"""Pieces shared by the node-evidence verifiers (TPM, SEV-SNP, TDX).

None of these attestations carries a time: their sections say when they were collected
(:class:`CollectedSection`), which becomes the node claim's ``issued_at``
(:func:`collected_node`). Reports and quotes are fixed binary layouts read with a
bounds-checked :class:`ByteReader`; SEV-SNP and TDX bind the verifier's nonce as
REPORT_DATA (:func:`check_report_data`).
"""

from __future__ import annotations

import hmac
import struct
from typing import ClassVar, Final, Literal, Self

from pydantic import model_validator

from attestpolicy.claims import Node, Timestamp
from attestpolicy.evidence._common import (
    LARGE_SECTION_CHARS,
    Code,
    EvidenceSection,
    fail,
)

__all__ = ["ByteReader", "CollectedSection", "check_report_data", "collected_node"]

_REPORT_DATA_BYTES: Final = 64


class CollectedSection(EvidenceSection):
    """A node evidence section with no signed time: when it was collected, and until when
    the collector vouches for it (``Node.issued_at`` / ``Node.expires_at``)."""

    _max_chars: ClassVar[int] = LARGE_SECTION_CHARS

    collected_at: Timestamp
    expires_at: Timestamp | None = None

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.expires_at is not None and self.expires_at <= self.collected_at:
            raise ValueError("expires_at must be after collected_at")
        return self


def collected_node(
    evidence: CollectedSection,
    *,
    kind: Literal["tpm", "sev_snp", "az_snp_vtpm", "tdx"],
    id: str,
    nonce_verified: bool,
    measurements: dict[str, str],
) -> Node:
    """The verified node claim for ``evidence``, timed by its collection window."""
    return Node(
        kind=kind,
        id=id,
        verified=True,
        nonce_verified=nonce_verified,
        issued_at=evidence.collected_at,
        expires_at=evidence.expires_at,
        measurements=measurements,
    )


def check_report_data(report_data: bytes, nonce: bytes, field: str) -> None:
    """``nonce`` (1..64 bytes) zero-padded to 64 bytes must equal REPORT_DATA."""
    if not nonce or len(nonce) > _REPORT_DATA_BYTES:
        fail(Code.NONCE_MISMATCH, field, "the expected nonce must be 1 to 64 bytes")
    if not hmac.compare_digest(report_data, nonce.ljust(_REPORT_DATA_BYTES, b"\x00")):
        fail(Code.NONCE_MISMATCH, field, "REPORT_DATA is not the expected nonce")


class ByteReader:
    """A cursor over ``data``; every read is bounds-checked and fails naming ``field``."""

    __slots__ = ("_data", "_field", "_order", "_pos")

    def __init__(self, data: bytes, field: str, *, byteorder: Literal["big", "little"]) -> None:
        self._data = data
        self._field = field
        self._order = ">" if byteorder == "big" else "<"
        self._pos = 0

    def take(self, size: int, what: str) -> bytes:
        """The next ``size`` bytes."""
        end = self._pos + size
        if end > len(self._data):
            fail(Code.MALFORMED, self._field, f"truncated while reading {what}")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def _unpack(self, code: str, size: int, what: str) -> int:
        value: int = struct.unpack(self._order + code, self.take(size, what))[0]
        return value

    def u8(self, what: str) -> int:
        """The next unsigned byte."""
        return self._unpack("B", 1, what)

    def u16(self, what: str) -> int:
        """The next unsigned 16-bit integer."""
        return self._unpack("H", 2, what)

    def u32(self, what: str) -> int:
        """The next unsigned 32-bit integer."""
        return self._unpack("I", 4, what)

    def u64(self, what: str) -> int:
        """The next unsigned 64-bit integer."""
        return self._unpack("Q", 8, what)

    def rest(self) -> int:
        """How many bytes are left."""
        return len(self._data) - self._pos

    def end(self) -> None:
        """Refuse trailing bytes."""
        if self._pos != len(self._data):
            fail(Code.MALFORMED, self._field, f"{len(self._data) - self._pos} trailing byte(s)")
