"""The decision cache: a compiled (Cython) cache and its pure-Python twin.

Both implementations behave identically and run the same tests; the compiled one
(:mod:`attestpolicy.engine._cache_ext`) is used when it is importable, the twin
otherwise (with a :class:`RuntimeWarning`). ``ATTESTPOLICY_CACHE_IMPL=cython|python``
selects one explicitly (``cython`` then fails loudly if the extension is missing).

Entries are matched on the canonical encoding of ``(revision, claims without the
top-level "now")``, compared byte for byte, so no hash collision can ever serve another
claim set's decision; :func:`compute_key` is the SHA-256 of that encoding. The encoding
is type-tagged (``1``, ``1.0``, ``true`` and ``"1"`` differ), sorts object members by
UTF-8 key bytes and keeps array order (docs/cache.md has the byte layout). An allow is
served while ``now < valid_until`` with its TTL recomputed for ``now``; a deny only with
negative caching; ``revoke(...)`` drops every entry whose claims mention a value, at once.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
import struct
import threading
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from attestpolicy.decision import Decision, Reason

__all__ = [
    "IMPL_ENV_VAR",
    "TTL_TERMS",
    "CacheImplementation",
    "CacheStats",
    "CacheTicket",
    "DecisionCache",
    "PythonDecisionCache",
    "cache_implementation",
    "canonical_encoding",
    "compute_key",
    "load_implementation",
]

IMPL_ENV_VAR: Final = "ATTESTPOLICY_CACHE_IMPL"
"""Environment variable selecting the implementation: ``cython``, ``python`` or unset."""

TTL_TERMS: Final = ("request", "default", "audience", "workload", "evidence_expiry")
"""TTL term names in the policy's tie-break order (the first one wins a tie)."""

ABI_VERSION: Final = 1
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
_REVOKE_KINDS: Final = ("signer_subject", "node_id", "image_digest", "spiffe_id")
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


# --- helpers shared by both implementations ----------------------------------


def _epoch_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime."""
    if not isinstance(moment, datetime):
        raise TypeError(f"expected an aware datetime, got {type(moment).__name__}")
    if moment.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware")
    return (moment - _EPOCH) // _ONE_US


def _check_limits(
    max_entries: int, negative_ttl_seconds: float, max_bytes: int
) -> tuple[int, int, int]:
    """Validate the constructor arguments; return (max_entries, negative_ttl_us, max_bytes)."""
    if type(max_entries) is not int or max_entries < 1:
        raise ValueError("max_entries must be an int >= 1")
    if type(max_bytes) is not int or max_bytes < 1:
        raise ValueError("max_bytes must be an int >= 1")
    if type(negative_ttl_seconds) not in (int, float):
        raise TypeError("negative_ttl_seconds must be a number")
    if not 0 <= negative_ttl_seconds <= MAX_NEGATIVE_TTL_SECONDS:
        raise ValueError(f"negative_ttl_seconds must be within 0..{MAX_NEGATIVE_TTL_SECONDS}")
    return max_entries, round(negative_ttl_seconds * _US), max_bytes


def _mentions(claims: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The (kind, value) pairs ``revoke`` can target that these claims mention."""
    found: dict[tuple[str, str], None] = {}

    def add(kind: str, value: object) -> None:
        if type(value) is str:
            found[(kind, value)] = None

    subject, image = claims.get("subject"), claims.get("image")
    provenance, node, runtime = claims.get("provenance"), claims.get("node"), claims.get("runtime")
    if type(subject) is dict:
        add("spiffe_id", subject.get("spiffe_id"))
    if type(image) is dict:
        add("image_digest", image.get("digest"))
        signatures = image.get("signatures")
        if type(signatures) is list:
            for signature in signatures:
                if type(signature) is dict:
                    add("signer_subject", signature.get("subject"))
    if type(provenance) is dict:
        digests = provenance.get("subject_digests")
        if type(digests) is list:
            for digest in digests:
                add("image_digest", digest)
    if type(node) is dict:
        add("node_id", node.get("id"))
    if type(runtime) is dict:
        add("image_digest", runtime.get("image_digest"))
    return tuple(found)


class _EntryFields(NamedTuple):
    allow: bool
    reasons: tuple[Reason, ...]
    bound_by: str | None
    cap: int  # -1: bound by evidence_expiry (no cap)
    exp_us: int | None
    valid_until: datetime | None
    valid_until_us: int | None
    policy_revision: str
    stored_us: int
    deny_until_us: int
    mentions: tuple[tuple[str, str], ...]
    size: int


def _prepare_entry(
    claims: Mapping[str, Any],
    encoding_size: int,
    decision: Decision,
    evidence_expires_at: datetime | None,
    now_us: int,
    negative_ttl_us: int,
) -> _EntryFields | None:
    """Check a decision against the TTL rules; None when it must not be cached.

    Raises ``ValueError`` when the decision and ``evidence_expires_at`` contradict each
    other (caching them could serve a longer TTL than a fresh evaluation would).
    """
    if not isinstance(decision, Decision):
        raise TypeError(f"expected a Decision, got {type(decision).__name__}")
    exp_us = None if evidence_expires_at is None else _epoch_us(evidence_expires_at)
    valid_until_us = None
    if decision.allow:
        ttl, bound_by = decision.ttl_seconds, decision.ttl_bound_by
        if bound_by not in TTL_TERMS:
            raise ValueError(f"an allow needs ttl_bound_by in {TTL_TERMS}, got {bound_by!r}")
        if decision.reasons or not 0 < ttl <= _MAX_TTL:
            raise ValueError("an allow needs no reasons and a positive ttl_seconds")
        expiry_term = None if exp_us is None else (exp_us - now_us) // _US
        if bound_by == "evidence_expiry":
            if expiry_term != ttl:
                raise ValueError(
                    "ttl_bound_by is evidence_expiry but ttl_seconds is not the whole seconds "
                    "from now to evidence_expires_at"
                )
            cap = -1
        else:
            if expiry_term is not None and expiry_term < ttl:
                raise ValueError(f"ttl bound by {bound_by} exceeds the evidence expiry term")
            cap = ttl
        if decision.valid_until is not None:
            valid_until_us = _epoch_us(decision.valid_until)
            if valid_until_us <= now_us:
                return None
        deny_until_us = 0
    else:
        if negative_ttl_us <= 0:
            return None
        bound_by, cap, exp_us = None, 0, None
        deny_until_us = now_us + negative_ttl_us
    mentions = _mentions(claims)
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
        bound_by,
        cap,
        exp_us,
        decision.valid_until,
        valid_until_us,
        decision.policy_revision,
        now_us,
        deny_until_us,
        mentions,
        size,
    )


def _revocation_targets(
    signer_subject: str | None, node_id: str | None, image_digest: str | None, spiffe_id: str | None
) -> list[tuple[str, str]]:
    """Validate ``revoke`` arguments into (kind, value) index keys."""
    targets = []
    for kind, value in zip(
        _REVOKE_KINDS, (signer_subject, node_id, image_digest, spiffe_id), strict=True
    ):
        if value is None:
            continue
        if type(value) is not str:
            raise TypeError(f"{kind} must be str, got {type(value).__name__}")
        targets.append((kind, value))
    if not targets:
        raise ValueError("revoke() needs at least one of " + ", ".join(_REVOKE_KINDS))
    return targets


_new_object = object.__new__
_set_attribute = object.__setattr__


def _fresh_decision(
    allow: bool,
    ttl_seconds: int,
    reasons: tuple[Reason, ...],
    ttl_bound_by: str | None,
    valid_until: datetime | None,
    now: datetime,
    policy_revision: str,
) -> Decision:
    """A Decision built from already-validated values, without re-running validation."""
    decision: Decision = _new_object(Decision)
    _set_attribute(
        decision,
        "__dict__",
        {
            "allow": allow,
            "ttl_seconds": ttl_seconds,
            "reasons": reasons,
            "ttl_bound_by": ttl_bound_by,
            "valid_until": valid_until,
            "decision_id": str(uuid.uuid4()),
            "evaluated_at": now,
            "policy_revision": policy_revision,
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
    first); denies are cached only when ``negative_ttl_seconds`` > 0. Thread-safe.
    """

    implementation: Final = "python"

    def __init__(
        self,
        max_entries: int = 10_000,
        negative_ttl_seconds: float = 0.0,
        max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._max_entries, self._negative_ttl_us, self._max_bytes = _check_limits(
            max_entries, negative_ttl_seconds, max_bytes
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

    def store(
        self,
        ticket: CacheTicket,
        decision: Decision,
        *,
        evidence_expires_at: datetime | None,
        now: datetime,
    ) -> bool:
        """Cache ``decision`` (made at ``now``) under ``ticket``; False if not cached.

        ``evidence_expires_at`` is the earliest of node/runtime ``expires_at`` (the
        policy's ``evidence_expiry`` term). Nothing is cached when a ``revoke``/``clear``
        happened since the ticket's lookup, for a deny without negative caching, or for
        an allow already past its ``valid_until``.
        """
        if not isinstance(ticket, CacheTicket):
            raise TypeError(f"expected a CacheTicket, got {type(ticket).__name__}")
        fields = _prepare_entry(
            ticket.claims,
            len(ticket.encoding),
            decision,
            evidence_expires_at,
            _epoch_us(now),
            self._negative_ttl_us,
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
        evidence_expires_at: datetime | None,
        now: datetime,
    ) -> None:
        """Compute the key and ``store`` (prefer lookup/store when evaluations race revokes)."""
        encoding = _py_canonical_encoding(claims, revision)
        with self._lock:
            epoch = self._epoch
        self.store(
            CacheTicket(encoding, claims, epoch),
            decision,
            evidence_expires_at=evidence_expires_at,
            now=now,
        )

    def revoke(
        self,
        *,
        signer_subject: str | None = None,
        node_id: str | None = None,
        image_digest: str | None = None,
        spiffe_id: str | None = None,
    ) -> int:
        """Drop every entry whose claims mention any given value; return how many."""
        targets = _revocation_targets(signer_subject, node_id, image_digest, spiffe_id)
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
        bound_by = fields.bound_by
        if fields.allow:
            if fields.valid_until_us is not None and now_us >= fields.valid_until_us:
                ttl = 0
            elif fields.exp_us is None:
                ttl = fields.cap
            else:
                ttl = (fields.exp_us - now_us) // _US
                if fields.cap >= 0 and ttl >= fields.cap:
                    ttl = fields.cap
                else:
                    bound_by = "evidence_expiry"
            if ttl <= 0:
                self._remove(entry)
                self._expirations += 1
                return None
        else:
            if now_us >= fields.deny_until_us:
                self._remove(entry)
                self._expirations += 1
                return None
            ttl = 0
        self._entries.move_to_end(entry.slot)
        self._hits += 1
        return _fresh_decision(
            fields.allow,
            ttl,
            fields.reasons,
            bound_by,
            fields.valid_until,
            now,
            fields.policy_revision,
        )

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
