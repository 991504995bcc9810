"""The decision cache's key: a canonical, type-tagged encoding of (revision, claims).

Entries are matched on this encoding byte for byte (no hash collision can serve another
claim set's decision); the compiled twin (``_cache_ext.pyx``) writes the same bytes, which
docs/cache.md lays out. :func:`decode_encoding` reads them back, so the PDP can decide a
cache miss on exactly what it looked up.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "KEY_MAGIC",
    "MAX_DEPTH",
    "canonical_encoding",
    "compute_key",
    "decode_encoding",
]

KEY_MAGIC: Final = b"attestpolicy.cache.key.v1\x00"
MAX_DEPTH: Final = 64
"""Deepest container nesting accepted in a claim set (the claims object is depth 0)."""

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_DOUBLE: Final = struct.Struct(">d")


def _encode_len(out: bytearray, length: int) -> None:
    while length >= 0x80:
        out.append((length & 0x7F) | 0x80)
        length >>= 7
    out.append(length)


def _encode_str(out: bytearray, text: str) -> None:
    raw = text.encode("utf-8")
    out.append(0x73)  # "s"
    _encode_len(out, len(raw))
    out += raw


def _encode_object(out: bytearray, members: Mapping[Any, Any], depth: int, top: bool) -> None:
    items: list[tuple[bytes, str, Any]] = []
    for name, value in members.items():
        if type(name) is not str:
            raise TypeError(f"claims object keys must be str, got {type(name).__name__}")
        raw = name.encode("utf-8")
        if top and raw == b"now":
            continue
        items.append((raw, name, value))
    items.sort(key=lambda item: item[0])
    out.append(0x64)  # "d"
    _encode_len(out, len(items))
    for _, name, value in items:
        _encode_str(out, name)
        _encode_value(out, value, depth + 1)


def _encode_value(out: bytearray, value: object, depth: int) -> None:
    kind = type(value)
    if kind is str:
        _encode_str(out, value)  # type: ignore[arg-type]
    elif kind is dict or kind is list:
        if depth >= MAX_DEPTH:
            raise ValueError(f"claims nest deeper than {MAX_DEPTH} levels")
        if kind is dict:
            _encode_object(out, value, depth, top=False)  # type: ignore[arg-type]
        else:
            out.append(0x6C)  # "l"
            _encode_len(out, len(value))  # type: ignore[arg-type]
            for item in value:  # type: ignore[attr-defined]
                _encode_value(out, item, depth + 1)
    elif kind is bool:
        out.append(0x54 if value else 0x46)  # "T" / "F"
    elif kind is int:
        number: int = value  # type: ignore[assignment]
        if _INT64_MIN <= number <= _INT64_MAX:
            out.append(0x69)  # "i"
            out += number.to_bytes(8, "big", signed=True)
        else:
            size = (number.bit_length() + 8) // 8
            out.append(0x49)  # "I"
            _encode_len(out, size)
            out += number.to_bytes(size, "big", signed=True)
    elif kind is float:
        real: float = value  # type: ignore[assignment]
        if not math.isfinite(real):
            raise ValueError(f"claims must not contain {real!r}: not a JSON number")
        out.append(0x66)  # "f"
        out += _DOUBLE.pack(real)
    elif value is None:
        out.append(0x4E)  # "N"
    else:
        raise TypeError(f"claims must be JSON-like, got {kind.__name__}")


def canonical_encoding(claims: Mapping[str, Any], revision: str) -> bytes:
    """The canonical bytes the key hashes (pure Python)."""
    if not isinstance(claims, Mapping):
        raise TypeError(f"claims must be a mapping, got {type(claims).__name__}")
    if type(revision) is not str:
        raise TypeError(f"revision must be str, got {type(revision).__name__}")
    out = bytearray(KEY_MAGIC)
    _encode_str(out, revision)
    _encode_object(out, claims, 0, top=True)
    return bytes(out)


def compute_key(claims: Mapping[str, Any], revision: str) -> bytes:
    """The 32-byte cache key of ``claims`` under ``revision`` (pure Python)."""
    return hashlib.sha256(canonical_encoding(claims, revision)).digest()


def decode_encoding(encoding: bytes) -> tuple[str, dict[str, Any]]:
    """``(revision, claims)`` back from a canonical encoding (claims without ``now``).

    The PDP decides a cache miss on this copy, so the key and the decision come from one
    read of the caller's claims: a claims object changed by another thread in between
    can never be decided as one thing and stored as another. Raises ``ValueError`` for
    bytes that are not a canonical encoding.
    """
    if type(encoding) is not bytes or not encoding.startswith(KEY_MAGIC):
        raise ValueError("not a canonical encoding: bad magic")
    try:
        revision, position = _decode_value(encoding, len(KEY_MAGIC), 0)
        claims, position = _decode_value(encoding, position, 0)
    except (IndexError, UnicodeDecodeError, struct.error) as exc:
        raise ValueError(f"not a canonical encoding: {exc}") from None
    if type(revision) is not str or type(claims) is not dict or position != len(encoding):
        raise ValueError("not a canonical encoding of (revision, claims)")
    return revision, claims


def _decode_length(data: bytes, position: int) -> tuple[int, int]:
    byte = data[position]
    if byte < 0x80:
        return byte, position + 1
    length = shift = 0
    while True:
        byte = data[position]
        position += 1
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            return length, position
        shift += 7
        if shift > 63:
            raise ValueError("not a canonical encoding: length overflow")


def _decode_text(data: bytes, position: int) -> tuple[str, int]:
    length, position = _decode_length(data, position)
    end = position + length
    if end > len(data):
        raise ValueError("not a canonical encoding: truncated")
    return data[position:end].decode("utf-8"), end


def _decode_value(data: bytes, position: int, depth: int) -> tuple[Any, int]:
    """The value :func:`_encode_value` wrote at ``position``, and the position after it."""
    tag = data[position]
    position += 1
    if tag == 0x73:  # "s"
        return _decode_text(data, position)
    if tag == 0x64 or tag == 0x6C:  # "d" / "l"
        if depth >= MAX_DEPTH:
            raise ValueError(f"claims nest deeper than {MAX_DEPTH} levels")
        count, position = _decode_length(data, position)
        if tag == 0x6C:
            items = []
            for _ in range(count):
                item, position = _decode_value(data, position, depth + 1)
                items.append(item)
            return items, position
        members: dict[str, Any] = {}
        for _ in range(count):
            if data[position] != 0x73:
                raise ValueError("not a canonical encoding: object key is not a string")
            name, position = _decode_text(data, position + 1)
            members[name], position = _decode_value(data, position, depth + 1)
        return members, position
    if tag == 0x54 or tag == 0x46:  # "T" / "F"
        return tag == 0x54, position
    if tag == 0x4E:  # "N"
        return None, position
    if tag == 0x69:  # "i"
        return int.from_bytes(data[position : position + 8], "big", signed=True), position + 8
    if tag == 0x66:  # "f"
        real: float = _DOUBLE.unpack_from(data, position)[0]
        return real, position + 8
    if tag == 0x49:  # "I"
        length, position = _decode_length(data, position)
        return int.from_bytes(data[position : position + length], "big", signed=True), (
            position + length
        )
    raise ValueError(f"not a canonical encoding: unknown tag {tag:#x}")
