"""What both decision-cache twins share: limits, entries built from a decision, the TTL
a hit serves, revocation arguments and the Decision a hit returns.

The compiled cache (``_cache_ext.pyx``) calls these functions when it stores an entry, so
the rules for what may be cached are written once.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, NamedTuple

from attestpolicy.decision import Decision, Reason, TtlTerm

__all__ = [
    "MAX_NEGATIVE_TTL_SECONDS",
    "CacheStats",
    "EntryFields",
    "check_limits",
    "epoch_us",
    "fresh_decision",
    "prepare_entry",
    "revocation_targets",
    "ttl_at",
]

MAX_NEGATIVE_TTL_SECONDS: Final = 86_400
_MAX_TTL: Final = 2**62
_US: Final = 1_000_000
_ENTRY_BYTES: Final = 512
_MENTION_BYTES: Final = 160
_REASON_BYTES: Final = 128
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)
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


def epoch_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime."""
    if not isinstance(moment, datetime):
        raise TypeError(f"expected an aware datetime, got {type(moment).__name__}")
    if moment.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware")
    return (moment - _EPOCH) // _ONE_US


def check_limits(
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


class EntryFields(NamedTuple):
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
            shrinking.append((epoch_us(term.until), rank, term.name))
        elif term.seconds is not None and term.seconds < fixed[0]:
            fixed = (term.seconds, rank, term.name)
    return fixed, tuple(shrinking)


def prepare_entry(
    encoding_size: int, decision: Decision, now_us: int, negative_ttl_us: int
) -> EntryFields | None:
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
            valid_until_us = epoch_us(decision.valid_until)
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
    return EntryFields(
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


def revocation_targets(pairs: object) -> list[tuple[str, str]]:
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


def fresh_decision(
    fields: EntryFields, ttl_seconds: int, ttl_bound_by: str | None, now: datetime
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
