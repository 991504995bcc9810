"""A bounds-checked reader for the fixed binary layouts of TPM structures and TDX quotes."""

from __future__ import annotations

import struct
from typing import Literal

from attestpolicy.evidence._common import Code, fail

__all__ = ["ByteReader"]


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
