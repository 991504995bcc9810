"""Runtime revocations: what ``revoke()`` adds, kept apart from the configuration.

The policy reads them at ``data.attestpolicy.revocations`` (``{member: {value: reason}}``,
members as in ``config.revoked``), so reloading the configuration never lifts one: only
:meth:`~attestpolicy.pdp.PolicyDecisionPoint.lift` does. Held in memory by default, or in a
:class:`RevocationStore`, a SQLite file (WAL) shared by every process that opens it, e.g.
all ``attestpolicy serve`` workers and the ``attestpolicy revoke`` command: a revocation
written by one is seen by the others on their next decision, and survives restarts.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, TypeAlias

from attestpolicy._closing import Closing
from attestpolicy.config import Revoked
from attestpolicy.errors import PolicyError

__all__ = [
    "MAX_VALUE_CHARS",
    "MEMBER_OF_KEYWORD",
    "REVOKED_MEMBERS",
    "SCHEMA_VERSION",
    "RevocationError",
    "RevocationStore",
    "Revocations",
    "check_pairs",
    "with_revoked",
    "without",
]

Revocations: TypeAlias = Mapping[str, Mapping[str, str]]
"""``{member: {value: reason}}``: the document at ``data.attestpolicy.revocations``."""

REVOKED_MEMBERS: Final = frozenset(Revoked.model_fields)
"""The members a value can be revoked under (those of ``config.revoked``)."""

MEMBER_OF_KEYWORD: Final = {
    "signer_subject": "signer_subjects",  # a keyless subject or a signing key id
    "node_id": "node_ids",
    "image_digest": "image_digests",
    "spiffe_id": "spiffe_ids",
}
"""``revoke()``/``lift()`` keyword (and ``attestpolicy revoke`` flag) -> member."""

MAX_VALUE_CHARS: Final = 4096
"""Longest value or reason accepted (a SPIFFE ID, a digest, a signer subject...)."""

SCHEMA_VERSION: Final = 1
"""The store's schema (``PRAGMA user_version``); a newer file is refused, not guessed at."""

_BUSY_TIMEOUT_MS: Final = 5000


class RevocationError(PolicyError):
    """A revocation could not be recorded or read (bad value, unusable store)."""

    code = "revocation.invalid"


def check_pairs(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Validate ``(member, value)`` pairs; raise :class:`RevocationError` naming the bad one."""
    checked = []
    for pair in pairs:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise RevocationError(f"a revocation is a (member, value) pair, got {pair!r}")
        member, value = pair
        if member not in REVOKED_MEMBERS:
            raise RevocationError(
                f"unknown revocation member {member!r}: one of {', '.join(sorted(REVOKED_MEMBERS))}"
            )
        if not isinstance(value, str) or not value or len(value) > MAX_VALUE_CHARS:
            raise RevocationError(
                f"{member} value must be a non-empty string of at most {MAX_VALUE_CHARS} characters"
            )
        checked.append((member, value))
    if not checked:
        raise RevocationError("no value to revoke or lift")
    return checked


def _check_reason(reason: object) -> str:
    if not isinstance(reason, str) or len(reason) > MAX_VALUE_CHARS:
        raise RevocationError(f"reason must be a string of at most {MAX_VALUE_CHARS} characters")
    return reason


def with_revoked(
    revocations: Revocations, pairs: Iterable[tuple[str, str]], reason: str
) -> dict[str, dict[str, str]]:
    """A copy of ``revocations`` with ``pairs`` added (a value already revoked keeps its
    reason)."""
    updated = {member: dict(values) for member, values in revocations.items()}
    for member, value in check_pairs(pairs):
        updated.setdefault(member, {}).setdefault(value, _check_reason(reason))
    return updated


def without(
    revocations: Revocations, pairs: Iterable[tuple[str, str]]
) -> dict[str, dict[str, str]]:
    """A copy of ``revocations`` with ``pairs`` lifted (members left empty are dropped)."""
    updated = {member: dict(values) for member, values in revocations.items()}
    for member, value in check_pairs(pairs):
        updated.get(member, {}).pop(value, None)
    return {member: values for member, values in updated.items() if values}


class RevocationStore(Closing):
    """Revocations in a SQLite file, shared by every process that opens it.

    Thread-safe. :meth:`changed` is cheap (``PRAGMA data_version`` on a reader connection:
    a few microseconds), so evaluators ask it before every decision.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._writer = self._connect()
            self._reader = self._connect()
            with self._writer:
                version = self._writer.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise RevocationError(
                        f"revocation store {self.path} has schema {version}, newer than "
                        f"this attestpolicy's {SCHEMA_VERSION}"
                    )
                self._writer.execute(
                    "CREATE TABLE IF NOT EXISTS revocations ("
                    " member TEXT NOT NULL, value TEXT NOT NULL, reason TEXT NOT NULL,"
                    " revoked_at TEXT NOT NULL, PRIMARY KEY (member, value)) WITHOUT ROWID"
                )
                self._writer.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise RevocationError(f"revocation store {self.path} is unusable: {exc}") from None
        self._lock = threading.Lock()
        self._seen_version = -1

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=_BUSY_TIMEOUT_MS / 1000,
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        return connection

    def add(
        self, pairs: Iterable[tuple[str, str]], reason: str, *, now: datetime | None = None
    ) -> int:
        """Revoke each ``(member, value)`` with ``reason``; return how many were new (a
        value already revoked keeps its reason)."""
        rows = [
            (member, value, _check_reason(reason), (now or datetime.now(UTC)).isoformat())
            for member, value in check_pairs(pairs)
        ]
        return self._write("INSERT OR IGNORE INTO revocations VALUES (?, ?, ?, ?)", rows)

    def lift(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Lift each ``(member, value)``; return how many were revoked."""
        return self._write(
            "DELETE FROM revocations WHERE member = ? AND value = ?", check_pairs(pairs)
        )

    def _write(self, statement: str, rows: Sequence[tuple[str, ...]]) -> int:
        with self._lock:
            try:
                with self._writer:  # one transaction
                    self._writer.execute("BEGIN IMMEDIATE")
                    before = self._writer.total_changes
                    self._writer.executemany(statement, rows)
                    return self._writer.total_changes - before
            except sqlite3.Error as exc:
                raise RevocationError(f"revocation store {self.path}: {exc}") from None

    def snapshot(self) -> dict[str, dict[str, str]]:
        """Every revocation, ``{member: {value: reason}}``."""
        with self._lock:
            try:
                self._seen_version = self._reader.execute("PRAGMA data_version").fetchone()[0]
                rows = self._reader.execute(
                    "SELECT member, value, reason FROM revocations"
                ).fetchall()
            except sqlite3.Error as exc:
                raise RevocationError(f"revocation store {self.path}: {exc}") from None
        revocations: dict[str, dict[str, str]] = {}
        for member, value, reason in rows:
            revocations.setdefault(member, {})[value] = reason
        return revocations

    def changed(self) -> bool:
        """Whether the file changed since the last :meth:`snapshot` (by any process)."""
        with self._lock:
            try:
                version = self._reader.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error:
                return True  # fail closed: the caller re-reads, and reports what breaks
            return bool(version != self._seen_version)

    def close(self) -> None:
        """Close the connections."""
        with self._lock:
            self._reader.close()
            self._writer.close()
