"""What a verification depends on, as digests: the verified-evidence cache's key parts.

A document or trust configuration is digested over an encoding that is *injective*: two
inputs with the same digest parse to the same model, so a cached result is never served
for input that would have verified differently (or failed to parse).

* JSON bytes: SHA-256 of the bytes as given.
* A mapping: SHA-256 of a canonical, type-tagged encoding (sorted keys, each string
  with its length), computed only for plain JSON data: ``dict``, ``list``, ``str``,
  ``int``, ``float``, ``bool`` and ``None``, exactly those types (keys included: a key
  ``1`` and a key ``"1"`` differ). Anything else (a tuple, a ``str`` subclass, a
  ``datetime`` from YAML, keys that do not sort) has no digest, and is verified without
  the cache.
* A parsed model (frozen): SHA-256 of its JSON dump, computed once per object and
  remembered while the object lives.

Each kind is prefixed, so a mapping and bytes with the same text never share a digest.
:func:`resolve_trust` also parses a trust mapping once per digest (a small LRU), so passing
the configuration as a dict costs a digest per call, not a parse.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Final, Generic, TypeVar

from pydantic import BaseModel

from attestpolicy.evidence.document import TrustConfig, parse_trust_config

__all__ = ["document_digest", "resolve_trust", "trust_revision"]

_MAX_DEPTH: Final = 64
_TRUST_REVISIONS: Final = 16  # parsed trust configurations kept (by digest)

_O = TypeVar("_O")
_V = TypeVar("_V")


def _encode(value: object, out: list[bytes], depth: int = 0) -> bool:
    """Append the canonical encoding of plain JSON data to ``out``; False for anything else.

    Injective: every value is tagged with its type and every string carries its length,
    so one encoding is one value. A mapping is its sorted keys, each followed by its value.
    (Strings inside a container are written inline, without a call per string: most nodes
    of a document or a trust configuration are strings.)
    """
    kind = type(value)
    groups: list[Any]
    if kind is dict:
        assert isinstance(value, dict)
        try:  # keys are unique: only keys are compared
            groups = sorted(value.items())  # (key, value) pairs, each written in turn
        except TypeError:  # keys of types that do not compare
            return False
        opening, closing = b"{", b"}"
    elif kind is list:
        groups, opening, closing = [value], b"[", b"]"
    else:
        return _scalar(value, out)
    if depth >= _MAX_DEPTH:
        return False
    append = out.append
    append(opening)
    for group in groups:
        for item in group:
            if type(item) is str:
                data = item.encode("utf-8", "surrogatepass")
                append(b"s%d:" % len(data))
                append(data)
            elif not _encode(item, out, depth + 1):
                return False
    append(closing)
    return True


def _scalar(value: object, out: list[bytes]) -> bool:
    kind = type(value)
    if kind is str:
        assert isinstance(value, str)
        data = value.encode("utf-8", "surrogatepass")
        out.extend((b"s%d:" % len(data), data))
    elif kind is int:
        assert isinstance(value, int)
        out.append(b"i%d;" % value)
    elif kind is float:
        out.append(b"d%s;" % repr(value).encode("ascii"))
    elif kind is bool:
        out.append(b"t" if value else b"f")
    elif value is None:
        out.append(b"n")
    else:
        return False
    return True


def _mapping_digest(value: Mapping[str, Any]) -> bytes | None:
    out = [b"mapping\0"]
    if not _encode(value, out):
        return None
    return hashlib.sha256(b"".join(out)).digest()


def _digest(kind: bytes, data: bytes) -> bytes:
    return hashlib.sha256(kind + data).digest()


def _model_digest(model: BaseModel) -> bytes | None:
    try:
        return _digest(b"model\0", model.model_dump_json().encode("utf-8", "surrogatepass"))
    except (TypeError, ValueError):
        return None


class _PerObject(Generic[_O, _V]):
    """A value computed once per live object (by identity; frozen models only)."""

    def __init__(self, compute: Callable[[_O], _V]) -> None:
        self._compute = compute
        self._lock = threading.Lock()
        self._items: dict[int, tuple[weakref.ref[Any], _V]] = {}

    def __call__(self, obj: _O) -> _V:
        key = id(obj)
        item = self._items.get(key)
        if item is not None and item[0]() is obj:
            return item[1]
        value = self._compute(obj)
        try:
            ref = weakref.ref(obj, lambda dead: self._forget(key, dead))
        except TypeError:  # not weakly referenceable: computed every time
            return value
        with self._lock:
            self._items[key] = (ref, value)
        return value

    def _forget(self, key: int, dead: weakref.ref[Any]) -> None:
        with self._lock:
            item = self._items.get(key)
            if item is not None and item[0] is dead:
                del self._items[key]


_model_digests: Final = _PerObject[BaseModel, "bytes | None"](_model_digest)


def document_digest(document: object) -> bytes | None:
    """The digest of an evidence document (bytes, mapping or parsed), or None: not cacheable."""
    if isinstance(document, bytes):
        return _digest(b"bytes\0", document)
    if isinstance(document, BaseModel):
        return _model_digests(document)
    if isinstance(document, Mapping):
        return _mapping_digest(document)
    return None


class _TrustRevisions:
    """Parsed trust configurations by the digest of the mapping they were parsed from."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._parsed: OrderedDict[bytes, TrustConfig] = OrderedDict()

    def resolve(self, trust: Mapping[str, Any], revision: bytes | None) -> TrustConfig:
        if revision is None:
            return parse_trust_config(trust)
        with self._lock:
            parsed = self._parsed.get(revision)
            if parsed is not None:
                self._parsed.move_to_end(revision)
                return parsed
        parsed = parse_trust_config(trust)  # outside the lock: ConfigError propagates
        with self._lock:
            self._parsed[revision] = parsed
            while len(self._parsed) > self._size:
                self._parsed.popitem(last=False)
        return parsed


_trust_revisions: Final = _TrustRevisions(_TRUST_REVISIONS)


def trust_revision(trust: object) -> bytes | None:
    """The revision of a trust configuration: the digest of a mapping's canonical encoding, or
    of a parsed :class:`TrustConfig` (once per object). None: not cacheable."""
    if isinstance(trust, TrustConfig):
        return _model_digests(trust)
    if isinstance(trust, Mapping):
        return _mapping_digest(trust)
    return None


def resolve_trust(trust: TrustConfig | Mapping[str, Any], revision: bytes | None) -> TrustConfig:
    """The parsed trust configuration; a mapping is parsed once per ``revision``
    (:func:`trust_revision`). Raises ConfigError for an invalid one (never remembered)."""
    if isinstance(trust, TrustConfig):
        return trust
    if isinstance(trust, Mapping):
        return _trust_revisions.resolve(trust, revision)
    return parse_trust_config(trust)
