"""The decision cache: a compiled (Cython) cache and its pure-Python twin.

Both implementations behave identically and run the same tests; the compiled one
(:mod:`attestpolicy.engine._cache_ext`) is used when it is importable, the twin
otherwise (with a :class:`RuntimeWarning`). ``ATTESTPOLICY_CACHE_IMPL=cython|python``
selects one explicitly (``cython`` then fails loudly if the extension is missing).

Entries are matched on the canonical encoding of ``(revision, claims without the
top-level "now")``, compared byte for byte, so no hash collision can ever serve another
claim set's decision; :func:`compute_key` is the SHA-256 of that encoding. The encoding
is type-tagged (``1``, ``1.0``, ``true`` and ``"1"`` differ), sorts object members by
UTF-8 key bytes and keeps array order (docs/cache.md has the byte layout).

The cache knows no policy rule: it keeps what the decision itself carries. An allow is
served while ``now < valid_until`` with its TTL recomputed for ``now`` from the decision's
``ttl_terms`` (the shortest term, the first on a tie; a term with ``until`` shrinks with
time); a deny only with negative caching. ``revoke(pairs)`` drops, at once, every entry
whose decision lists one of the ``(member, value)`` pairs in its ``revocable``.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
import struct
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from attestpolicy.decision import Decision, Reason, TtlTerm

__all__ = [
    "IMPL_ENV_VAR",
    "CacheImplementation",
    "CacheStats",
    "CacheTicket",
    "DecisionCache",
    "PythonDecisionCache",
    "cache_implementation",
    "canonical_encoding",
    "compute_key",
    "decode_encoding",
    "load_implementation",
]

IMPL_ENV_VAR: Final = "ATTESTPOLICY_CACHE_IMPL"
"""Environment variable selecting the implementation: ``cython``, ``python`` or unset."""

ABI_VERSION: Final = 3
"""Bumped on any change of key format or behaviour; the extension must report the same."""

KEY_MAGIC: Final = b"attestpolicy.cache.key.v1\x00"
MAX_DEPTH: Final = 64
"""Deepest container nesting accepted in a claim set (the claims object is depth 0)."""

MAX_NEGATIVE_TTL_SECONDS: Final = 86_400
_MAX_TTL: Final = 2**62
_US: Final = 1_000_000
_ENTRY_BYTES: Final = 512
_MENTION_BYTES: Final = 160
_REASON_BYTES: Final = 128

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_DOUBLE: Final = struct.Struct(">d")
_DECISION_FIELDS: Final = frozenset(Decision.model_fields)


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of the cache's size and counters."""

    entries: int
    approx_bytes: int
    hits: int
    misses: int
    evictions: int
    expirations: int
    revocations: int
    implementation: str


class CacheTicket(NamedTuple):
    """What :meth:`PythonDecisionCache.lookup` hands back for a later ``store``.

    ``encoding`` is the canonical encoding the entry is matched on (byte for byte);
    ``epoch`` changes on every ``revoke``/``clear``: a ticket taken before one of them
    is refused by ``store``, so an evaluation racing a revocation is never cached.
    The caller must not mutate ``claims`` between ``lookup`` and ``store``.
    """

    encoding: bytes
    claims: Mapping[str, Any]
    epoch: int

    @property
    def key(self) -> bytes:
        """The 32-byte key (SHA-256 of ``encoding``), as :func:`compute_key` gives it."""
        return hashlib.sha256(self.encoding).digest()


# --- the canonical key -------------------------------------------------------


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


def _py_canonical_encoding(claims: Mapping[str, Any], revision: str) -> bytes:
    """The canonical bytes the key hashes (pure Python)."""
    if not isinstance(claims, Mapping):
        raise TypeError(f"claims must be a mapping, got {type(claims).__name__}")
    if type(revision) is not str:
        raise TypeError(f"revision must be str, got {type(revision).__name__}")
    out = bytearray(KEY_MAGIC)
    _encode_str(out, revision)
    _encode_object(out, claims, 0, top=True)
    return bytes(out)


def _py_compute_key(claims: Mapping[str, Any], revision: str) -> bytes:
    """The 32-byte cache key of ``claims`` under ``revision`` (pure Python)."""
    return hashlib.sha256(_py_canonical_encoding(claims, revision)).digest()


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


# --- helpers shared by both implementations ----------------------------------


def _epoch_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime."""
    if not isinstance(moment, datetime):
        raise TypeError(f"expected an aware datetime, got {type(moment).__name__}")
    if moment.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware")
    return (moment - _EPOCH) // _ONE_US


def _check_limits(
    max_entries: int,
    negative_ttl_seconds: float,
    max_bytes: int,
    max_age_seconds: float | None = None,
) -> tuple[int, int, int, int]:
    """Validate the constructor arguments; return (max_entries, negative_ttl_us, max_bytes,
    max_age_ns) with max_age_ns 0 for no age limit."""
    if type(max_entries) is not int or max_entries < 1:
        raise ValueError("max_entries must be an int >= 1")
    if type(max_bytes) is not int or max_bytes < 1:
        raise ValueError("max_bytes must be an int >= 1")
    if type(negative_ttl_seconds) not in (int, float):
        raise TypeError("negative_ttl_seconds must be a number")
    if not 0 <= negative_ttl_seconds <= MAX_NEGATIVE_TTL_SECONDS:
        raise ValueError(f"negative_ttl_seconds must be within 0..{MAX_NEGATIVE_TTL_SECONDS}")
    max_age_ns = 0
    if max_age_seconds is not None:
        if type(max_age_seconds) not in (int, float):
            raise TypeError("max_age_seconds must be a number or None")
        if not 0 < max_age_seconds <= MAX_NEGATIVE_TTL_SECONDS:
            raise ValueError(f"max_age_seconds must be within (0, {MAX_NEGATIVE_TTL_SECONDS}]")
        max_age_ns = round(max_age_seconds * 1_000_000_000)
    return max_entries, round(negative_ttl_seconds * _US), max_bytes, max_age_ns


class _EntryFields(NamedTuple):
    allow: bool
    reasons: tuple[Reason, ...]
    ttl_terms: tuple[TtlTerm, ...] | None
    fixed: tuple[int, int, str | None]  # (seconds, rank, name) of the shortest fixed term
    shrinking: tuple[tuple[int, int, str], ...]  # (until_us, rank, name) per shrinking term
    valid_until: datetime | None
    valid_until_us: int | None
    policy_revision: str
    stored_us: int
    created_ns: int  # time.monotonic_ns() when stored: the wall-clock age of the entry
    deny_until_us: int
    mentions: tuple[tuple[str, str], ...]
    size: int


_NO_FIXED_TERM: Final = (_MAX_TTL, _MAX_TTL, None)


def ttl_at(
    fixed: tuple[int, int, str | None],
    shrinking: tuple[tuple[int, int, str], ...],
    now_us: int,
) -> tuple[int, str | None]:
    """The TTL and the term bounding it at ``now_us``: the shortest term, the first on a tie."""
    ttl, rank, name = fixed
    for until_us, term_rank, term_name in shrinking:
        seconds = (until_us - now_us) // _US
        if seconds < ttl or (seconds == ttl and term_rank < rank):
            ttl, rank, name = seconds, term_rank, term_name
    return ttl, name


def _split_terms(
    decision: Decision,
) -> tuple[tuple[int, int, str | None], tuple[tuple[int, int, str], ...]]:
    """The decision's TTL terms as (shortest fixed term, shrinking terms)."""
    fixed: tuple[int, int, str | None] = _NO_FIXED_TERM
    shrinking: list[tuple[int, int, str]] = []
    for rank, term in enumerate(decision.ttl_terms or ()):
        if term.until is not None:
            shrinking.append((_epoch_us(term.until), rank, term.name))
        elif term.seconds is not None and term.seconds < fixed[0]:
            fixed = (term.seconds, rank, term.name)
    return fixed, tuple(shrinking)


def _prepare_entry(
    encoding_size: int, decision: Decision, now_us: int, negative_ttl_us: int
) -> _EntryFields | None:
    """The entry for a decision made at ``now_us``; None when it must not be cached.

    An allow is cached only when it carries its TTL terms and revocable values, and
    those terms give back its TTL and bounding term at ``now_us`` (anything else could
    serve a TTL a fresh evaluation would not).
    """
    if not isinstance(decision, Decision):
        raise TypeError(f"expected a Decision, got {type(decision).__name__}")
    fixed: tuple[int, int, str | None] = _NO_FIXED_TERM
    shrinking: tuple[tuple[int, int, str], ...] = ()
    valid_until_us = None
    if decision.allow:
        if not decision.ttl_terms or decision.revocable is None:
            return None
        if decision.reasons or not 0 < decision.ttl_seconds <= _MAX_TTL:
            raise ValueError("an allow needs no reasons and a positive ttl_seconds")
        fixed, shrinking = _split_terms(decision)
        if ttl_at(fixed, shrinking, now_us) != (decision.ttl_seconds, decision.ttl_bound_by):
            raise ValueError(
                "the decision's ttl_terms do not give its ttl_seconds and ttl_bound_by"
            )
        if decision.valid_until is not None:
            valid_until_us = _epoch_us(decision.valid_until)
            if valid_until_us <= now_us:
                return None
        deny_until_us = 0
        mentions = tuple(dict.fromkeys(decision.revocable))  # each pair indexed once
    else:
        if negative_ttl_us <= 0:
            return None
        deny_until_us = now_us + negative_ttl_us
        mentions = ()
    size = (
        _ENTRY_BYTES
        + encoding_size
        + len(decision.policy_revision)
        + sum(_MENTION_BYTES + len(kind) + len(value) for kind, value in mentions)
        + sum(_REASON_BYTES + len(r.code) + len(r.message) for r in decision.reasons)
    )
    return _EntryFields(
        decision.allow,
        decision.reasons,
        decision.ttl_terms,
        fixed,
        shrinking,
        decision.valid_until,
        valid_until_us,
        decision.policy_revision,
        now_us,
        time.monotonic_ns(),
        deny_until_us,
        mentions,
        size,
    )


def _revocation_targets(pairs: object) -> list[tuple[str, str]]:
    """Validate ``revoke`` arguments: (member, value) pairs of strings."""
    if isinstance(pairs, str | bytes) or not hasattr(pairs, "__iter__"):
        raise TypeError("revoke() takes an iterable of (member, value) pairs")
    targets = []
    for pair in pairs:
        if (
            type(pair) is not tuple
            or len(pair) != 2
            or type(pair[0]) is not str
            or type(pair[1]) is not str
        ):
            raise TypeError(f"each revocation must be a (member, value) tuple of str, got {pair!r}")
        targets.append((pair[0], pair[1]))
    if not targets:
        raise ValueError("revoke() needs at least one (member, value) pair")
    return targets


_new_object = object.__new__
_set_attribute = object.__setattr__


def _fresh_decision(
    fields: _EntryFields, ttl_seconds: int, ttl_bound_by: str | None, now: datetime
) -> Decision:
    """The Decision an entry serves at ``now``, built without re-running validation."""
    decision: Decision = _new_object(Decision)
    _set_attribute(
        decision,
        "__dict__",
        {
            "allow": fields.allow,
            "ttl_seconds": ttl_seconds,
            "reasons": fields.reasons,
            "ttl_bound_by": ttl_bound_by,
            "valid_until": fields.valid_until,
            "decision_id": str(uuid.uuid4()),
            "evaluated_at": now,
            "policy_revision": fields.policy_revision,
            "ttl_terms": fields.ttl_terms,
            "revocable": fields.mentions,
        },
    )
    _set_attribute(decision, "__pydantic_fields_set__", set(_DECISION_FIELDS))
    _set_attribute(decision, "__pydantic_extra__", None)
    _set_attribute(decision, "__pydantic_private__", None)
    return decision


# --- the pure-Python twin ----------------------------------------------------


class _Entry:
    __slots__ = ("fields", "slot")

    def __init__(self, slot: bytes, fields: _EntryFields) -> None:
        self.slot = slot  # the canonical encoding: dict lookup compares it byte for byte
        self.fields = fields


class PythonDecisionCache:
    """Bounded LRU cache of decisions keyed by claims + revision (pure Python).

    ``max_entries`` and ``max_bytes`` bound the size (least recently used entries go
    first); denies are cached only when ``negative_ttl_seconds`` > 0. ``max_age_seconds``
    bounds how long, in wall-clock time, an entry is served at all (for a remote
    evaluator, how long a server-side change can go unseen). Thread-safe.
    """

    implementation: Final = "python"

    def __init__(
        self,
        max_entries: int = 10_000,
        negative_ttl_seconds: float = 0.0,
        max_bytes: int = 64 * 1024 * 1024,
        max_age_seconds: float | None = None,
    ) -> None:
        self._max_entries, self._negative_ttl_us, self._max_bytes, self._max_age_ns = (
            _check_limits(max_entries, negative_ttl_seconds, max_bytes, max_age_seconds)
        )
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._index: dict[tuple[str, str], set[bytes]] = {}
        self._bytes = self._epoch = 0
        self._hits = self._misses = self._evictions = self._expirations = 0
        self._revocations = 0

    def lookup(
        self, claims: Mapping[str, Any], revision: str, now: datetime
    ) -> tuple[CacheTicket, Decision | None]:
        """Return a ticket for ``store`` and the cached decision for ``now``, or None."""
        now_us = _epoch_us(now)
        encoding = _py_canonical_encoding(claims, revision)
        with self._lock:
            entry = self._entries.get(encoding)
            decision = None if entry is None else self._serve(entry, now, now_us)
            if decision is None:
                self._misses += 1
            return CacheTicket(encoding, claims, self._epoch), decision

    def get(self, claims: Mapping[str, Any], revision: str, now: datetime) -> Decision | None:
        """The cached decision for these claims at ``now``, or None."""
        return self.lookup(claims, revision, now)[1]

    def store(self, ticket: CacheTicket, decision: Decision, *, now: datetime) -> bool:
        """Cache ``decision`` (made at ``now``) under ``ticket``; False if not cached.

        Nothing is cached when a ``revoke``/``clear`` happened since the ticket's lookup,
        for a deny without negative caching, or for an allow already past its
        ``valid_until`` or without its TTL terms and revocable values. Raises
        ``ValueError`` for an allow whose TTL terms contradict its TTL.
        """
        if not isinstance(ticket, CacheTicket):
            raise TypeError(f"expected a CacheTicket, got {type(ticket).__name__}")
        fields = _prepare_entry(
            len(ticket.encoding), decision, _epoch_us(now), self._negative_ttl_us
        )
        if fields is None:
            return False
        with self._lock:
            if ticket.epoch != self._epoch or fields.size > self._max_bytes:
                return False
            self._insert(_Entry(ticket.encoding, fields))
        return True

    def put(
        self,
        claims: Mapping[str, Any],
        revision: str,
        decision: Decision,
        *,
        now: datetime,
    ) -> None:
        """Compute the key and ``store`` (prefer lookup/store when evaluations race revokes)."""
        encoding = _py_canonical_encoding(claims, revision)
        with self._lock:
            epoch = self._epoch
        self.store(CacheTicket(encoding, claims, epoch), decision, now=now)

    def revoke(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Drop every entry whose decision lists any ``(member, value)`` pair in its
        ``revocable``; return how many."""
        targets = _revocation_targets(pairs)
        with self._lock:
            self._epoch += 1
            doomed: set[bytes] = set()
            for target in targets:
                doomed.update(self._index.get(target, ()))
            for slot in doomed:
                self._remove(self._entries[slot])
            self._revocations += len(doomed)
            return len(doomed)

    def clear(self) -> None:
        """Drop every entry (counters are kept)."""
        with self._lock:
            self._epoch += 1
            self._entries.clear()
            self._index.clear()
            self._bytes = 0

    def stats(self) -> CacheStats:
        """Entry count, approximate memory and counters."""
        with self._lock:
            return CacheStats(
                entries=len(self._entries),
                approx_bytes=self._bytes,
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                expirations=self._expirations,
                revocations=self._revocations,
                implementation=self.implementation,
            )

    def _serve(self, entry: _Entry, now: datetime, now_us: int) -> Decision | None:
        fields = entry.fields
        if now_us < fields.stored_us:
            return None  # the clock went back: only a fresh evaluation is safe
        if self._max_age_ns and time.monotonic_ns() - fields.created_ns >= self._max_age_ns:
            ttl, bound_by, expired = 0, None, True
        elif fields.allow:
            if fields.valid_until_us is not None and now_us >= fields.valid_until_us:
                ttl, bound_by = 0, None
            else:
                ttl, bound_by = ttl_at(fields.fixed, fields.shrinking, now_us)
            expired = ttl <= 0
        else:
            ttl, bound_by = 0, None
            expired = now_us >= fields.deny_until_us
        if expired:
            self._remove(entry)
            self._expirations += 1
            return None
        self._entries.move_to_end(entry.slot)
        self._hits += 1
        return _fresh_decision(fields, ttl, bound_by, now)

    def _insert(self, entry: _Entry) -> None:
        old = self._entries.get(entry.slot)
        if old is not None:
            self._remove(old)
        self._entries[entry.slot] = entry
        for mention in entry.fields.mentions:
            self._index.setdefault(mention, set()).add(entry.slot)
        self._bytes += entry.fields.size
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            self._remove(next(iter(self._entries.values())))
            self._evictions += 1

    def _remove(self, entry: _Entry) -> None:
        del self._entries[entry.slot]
        for mention in entry.fields.mentions:
            keys = self._index[mention]
            keys.discard(entry.slot)
            if not keys:
                del self._index[mention]
        self._bytes -= entry.fields.size


# --- selection ---------------------------------------------------------------


class CacheImplementation(NamedTuple):
    """One implementation: its name, key functions and cache class."""

    name: str
    compute_key: Callable[[Mapping[str, Any], str], bytes]
    canonical_encoding: Callable[[Mapping[str, Any], str], bytes]
    cache_class: type[PythonDecisionCache]


_PYTHON: Final = CacheImplementation(
    "python", _py_compute_key, _py_canonical_encoding, PythonDecisionCache
)

# Every JSON type, key sorting, hex and non-hex strings, big ints and "now" exclusion:
# a stale or broken extension build disagrees with the twin here and is not used.
_SELF_TEST_CLAIMS: Final[dict[str, Any]] = {
    "now": "2026-11-22T10:00:00Z",
    "z": [None, True, False, 0, -1, 2**63, -(2**70), 1.5, -0.0, "", "é", "x" * 200],
    "a": {"b": {"c": [[], {}]}, "ab": "\u2603", "é": 1},
}


def load_implementation(name: str) -> CacheImplementation:
    """The named implementation; ImportError when the extension is missing or stale."""
    if name == "python":
        return _PYTHON
    if name != "cython":
        raise ValueError(f"cache implementation must be 'cython' or 'python', got {name!r}")
    module = importlib.import_module("attestpolicy.engine._cache_ext")
    if getattr(module, "ABI_VERSION", None) != ABI_VERSION:
        raise ImportError("attestpolicy.engine._cache_ext is stale: rebuild it")
    compiled = CacheImplementation(
        "cython", module.compute_key, module.canonical_encoding, module.DecisionCache
    )
    expected = _py_canonical_encoding(_SELF_TEST_CLAIMS, "self-test")
    if compiled.canonical_encoding(_SELF_TEST_CLAIMS, "self-test") != expected:
        raise ImportError("attestpolicy.engine._cache_ext disagrees with the twin: rebuild it")
    return compiled


def _select() -> CacheImplementation:
    choice = os.environ.get(IMPL_ENV_VAR, "").strip().lower()
    if choice == "cython":
        try:
            return load_implementation(choice)
        except ImportError as exc:
            raise ImportError(
                f"{IMPL_ENV_VAR}=cython but the compiled cache cannot be used: {exc}"
            ) from exc
    if choice:
        return load_implementation(choice)
    try:
        return load_implementation("cython")
    except ImportError as exc:
        warnings.warn(
            f"attestpolicy: compiled decision cache unavailable ({exc}); using the "
            f"pure-Python twin (slower). Set {IMPL_ENV_VAR}=python to silence this.",
            RuntimeWarning,
            stacklevel=2,
        )
        return _PYTHON


_SELECTED: Final = _select()

if TYPE_CHECKING:
    DecisionCache = PythonDecisionCache
else:
    DecisionCache = _SELECTED.cache_class
    """The selected cache class (compiled or twin); both have the same API."""

compute_key: Final = _SELECTED.compute_key
"""``compute_key(claims, revision) -> bytes``: the 32-byte key (selected implementation)."""

canonical_encoding: Final = _SELECTED.canonical_encoding
"""``canonical_encoding(claims, revision) -> bytes``: the bytes the key hashes."""


def cache_implementation() -> str:
    """The implementation in use: ``"cython"`` or ``"python"``."""
    return _SELECTED.name
