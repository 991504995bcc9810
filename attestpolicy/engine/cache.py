"""The decision cache: a compiled (Cython) cache and its pure-Python twin.

Both implementations behave identically and run the same tests; the compiled one
(:mod:`attestpolicy.engine._cache_ext`) is used when it is importable, the twin
otherwise (with a :class:`RuntimeWarning`). ``ATTESTPOLICY_CACHE_IMPL=cython|python``
selects one explicitly; any other value, or ``cython`` without the extension, raises
:class:`CacheImplementationError` on import.

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
import os
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from attestpolicy.decision import Decision
from attestpolicy.engine import _cache_key as _key
from attestpolicy.engine._cache_entry import (
    CacheStats,
    EntryFields,
    check_limits,
    epoch_us,
    fresh_decision,
    prepare_entry,
    revocation_targets,
    ttl_at,
)
from attestpolicy.errors import AttestPolicyError

__all__ = [
    "IMPL_ENV_VAR",
    "CacheImplementation",
    "CacheImplementationError",
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

ABI_VERSION: Final = 4
"""Bumped on any change of key format or behaviour; the extension must report the same."""


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


# --- the pure-Python twin ----------------------------------------------------


class _Entry:
    __slots__ = ("fields", "slot")

    def __init__(self, slot: bytes, fields: EntryFields) -> None:
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
        self._max_entries, self._negative_ttl_us, self._max_bytes, self._max_age_ns = check_limits(
            max_entries, negative_ttl_seconds, max_bytes, max_age_seconds
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
        now_us = epoch_us(now)
        encoding = _key.canonical_encoding(claims, revision)
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
        fields = prepare_entry(len(ticket.encoding), decision, epoch_us(now), self._negative_ttl_us)
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
        encoding = _key.canonical_encoding(claims, revision)
        with self._lock:
            epoch = self._epoch
        self.store(CacheTicket(encoding, claims, epoch), decision, now=now)

    def revoke(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Drop every entry whose decision lists any ``(member, value)`` pair in its
        ``revocable``; return how many."""
        targets = revocation_targets(pairs)
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
        return fresh_decision(fields, ttl, bound_by, now)

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
    decode_encoding: Callable[[bytes], tuple[str, dict[str, Any]]]
    cache_class: type[PythonDecisionCache]


_PYTHON: Final = CacheImplementation(
    "python", _key.compute_key, _key.canonical_encoding, _key.decode_encoding, PythonDecisionCache
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
        "cython",
        module.compute_key,
        module.canonical_encoding,
        module.decode_encoding,
        module.DecisionCache,
    )
    expected = _key.canonical_encoding(_SELF_TEST_CLAIMS, "self-test")
    if compiled.canonical_encoding(_SELF_TEST_CLAIMS, "self-test") != expected or (
        compiled.decode_encoding(expected) != _key.decode_encoding(expected)
    ):
        raise ImportError("attestpolicy.engine._cache_ext disagrees with the twin: rebuild it")
    return compiled


class CacheImplementationError(AttestPolicyError, ImportError):
    """:data:`IMPL_ENV_VAR` names no implementation, or one that cannot be used (raised
    when this module is imported)."""

    code = "cache.unavailable"


def _select() -> CacheImplementation:
    choice = os.environ.get(IMPL_ENV_VAR, "").strip().lower()
    if choice and choice not in ("cython", "python"):
        raise CacheImplementationError(
            f"{IMPL_ENV_VAR} must be cython or python (or unset: cython when it is "
            f"built, else python), got {os.environ[IMPL_ENV_VAR][:64]!r}"
        )
    if choice == "cython":
        try:
            return load_implementation(choice)
        except ImportError as exc:
            raise CacheImplementationError(
                f"{IMPL_ENV_VAR}=cython but the compiled cache cannot be used: {exc} "
                f"(reinstall to build it, or set {IMPL_ENV_VAR}=python)"
            ) from None
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

decode_encoding: Final = _SELECTED.decode_encoding
"""``decode_encoding(encoding) -> (revision, claims)``: the encoding read back."""


def cache_implementation() -> str:
    """The implementation in use: ``"cython"`` or ``"python"``."""
    return _SELECTED.name
