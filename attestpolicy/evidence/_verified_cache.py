"""The verified-evidence cache: verifying the same evidence again is a lookup.

An entry is the claim set of one *fully verified* evidence document (no problem, every
``verified`` flag true), under a key of everything the verification depended on besides
``now``: the document's digest, the trust configuration's revision, the nonce and the
nonce audience (:mod:`attestpolicy.evidence._fingerprint`). Failures are never stored.

``now`` is handled by the entry's window ``[verified_at, valid_until)``: ``valid_until`` is
the earliest upper time bound a check passed against (certificate ``notAfter``, token
``exp``, document age, key validity: :mod:`attestpolicy.evidence._validity`), capped at
``verified_at + max_age_seconds``. Inside the window every check would pass again with the
same result, so the entry is served with ``now`` replaced; before ``verified_at`` it is not
served (a lower bound might not hold); from ``valid_until`` on it is dropped. The claims'
own times (``node.issued_at``, ``runtime.expires_at``) are judged by the policy against the
decision's ``now``, so a cached claim set is as fresh as a verified one.

Revocation: :meth:`VerifiedEvidenceCache.purge` drops every entry that names a revoked
``(member, value)`` pair, the pairs decisions are revoked by (``signer_subjects``,
``image_digests``, ``node_ids``, ``spiffe_ids``). Purging is belt and braces: the cache
holds claims, not decisions, and the policy decides every cached claim set against the
revocations current at decision time, so caching never lets a revoked value through.

Bounded in entries and in bytes (the claim set's JSON size plus a fixed overhead per
entry), least recently used first out. Thread-safe.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from attestpolicy.claims import ClaimSet

__all__ = [
    "DEFAULT_MAX_AGE_SECONDS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ENTRIES",
    "CacheStats",
    "VerifiedEvidenceCache",
    "fully_verified",
    "revocable_pairs",
]

DEFAULT_MAX_ENTRIES: Final = 1024
DEFAULT_MAX_BYTES: Final = 16 * 1024 * 1024
DEFAULT_MAX_AGE_SECONDS: Final = 300
"""An entry's longest life, whatever its material's expiry: a bound on the cost of any
time dependence a verifier failed to report."""

_ENTRY_OVERHEAD: Final = 1024  # key, window, pairs and object headers, roughly


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters since the cache was made (``entries``/``bytes``: now)."""

    hits: int
    misses: int
    stores: int
    evictions: int
    expirations: int
    purged: int
    entries: int
    bytes: int


@dataclass(frozen=True, slots=True)
class _Entry:
    claims: ClaimSet
    verified_at: datetime
    valid_until: datetime
    pairs: frozenset[tuple[str, str]]
    size: int


def fully_verified(claims: ClaimSet) -> bool:
    """Whether every section of ``claims`` says ``verified: true`` (only those are cached)."""
    sections = (
        *(claims.image.signatures if claims.image else ()),
        claims.provenance,
        claims.node,
        claims.runtime,
    )
    return all(section.verified for section in sections if section is not None)


def revocable_pairs(claims: ClaimSet) -> frozenset[tuple[str, str]]:
    """The ``(member, value)`` pairs a revocation of which drops the entry."""
    pairs = {("spiffe_ids", claims.subject.spiffe_id)}
    if claims.image is not None:
        if claims.image.digest is not None:
            pairs.add(("image_digests", claims.image.digest))
        for signature in claims.image.signatures:
            for value in (signature.subject, signature.key_id):
                if value is not None:
                    pairs.add(("signer_subjects", value))
    if claims.runtime is not None and claims.runtime.image_digest is not None:
        pairs.add(("image_digests", claims.runtime.image_digest))
    if claims.provenance is not None:
        pairs.update(("image_digests", digest) for digest in claims.provenance.subject_digests)
    if claims.node is not None:
        pairs.add(("node_ids", claims.node.id))
    return frozenset(pairs)


class VerifiedEvidenceCache:
    """Claim sets of fully verified evidence, by key, each inside its validity window."""

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
    ) -> None:
        for name, value in (
            ("max_entries", max_entries),
            ("max_bytes", max_bytes),
            ("max_age_seconds", max_age_seconds),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a positive number")
            if not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive number")
        self.max_entries = int(max_entries)
        self.max_bytes = int(max_bytes)
        self.max_age = timedelta(seconds=max_age_seconds)
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = self._stores = 0
        self._evictions = self._expirations = self._purged = 0

    def get(self, key: Hashable, now: datetime) -> ClaimSet | None:
        """The claims verified under ``key``, with ``now`` set, if ``now`` is in the window."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now >= entry.valid_until:
                self._drop(key)
                self._expirations += 1
                entry = None
            if entry is None or now < entry.verified_at:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
        return entry.claims.with_now(now)

    def put(
        self,
        key: Hashable,
        claims: ClaimSet,
        *,
        verified_at: datetime,
        valid_until: datetime | None,
    ) -> bool:
        """Store the claims of a verification at ``verified_at`` that holds until
        ``valid_until`` (None: no bound reported; ``max_age_seconds`` applies either way).

        Returns False, storing nothing, for claims that are not fully verified, an empty
        window, or an entry larger than ``max_bytes``.
        """
        if not fully_verified(claims):
            return False
        until = verified_at + self.max_age
        if valid_until is not None and valid_until < until:
            until = valid_until
        if until <= verified_at:
            return False
        size = len(claims.model_dump_json()) + _ENTRY_OVERHEAD
        if size > self.max_bytes:
            return False
        entry = _Entry(claims, verified_at, until, revocable_pairs(claims), size)
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = entry
            self._bytes += size
            self._stores += 1
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))
                self._evictions += 1
        return True

    def purge(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Drop every entry naming one of the revoked ``(member, value)`` pairs; how many."""
        revoked = frozenset((str(member), str(value)) for member, value in pairs)
        with self._lock:
            doomed = [key for key, entry in self._entries.items() if entry.pairs & revoked]
            for key in doomed:
                self._drop(key)
            self._purged += len(doomed)
        return len(doomed)

    def clear(self) -> int:
        """Drop every entry; how many."""
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            self._bytes = 0
        return count

    def stats(self) -> CacheStats:
        """The counters, read together."""
        with self._lock:
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                stores=self._stores,
                evictions=self._evictions,
                expirations=self._expirations,
                purged=self._purged,
                entries=len(self._entries),
                bytes=self._bytes,
            )

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.size
