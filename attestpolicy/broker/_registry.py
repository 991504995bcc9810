"""The issued-credential registry: which live credentials rest on which revocable values.

A :class:`CredentialRegistry` is one SQLite file (WAL) shared by every process that opens it,
e.g. all ``attestpolicy serve`` workers and the ``attestpolicy revoke`` command. The broker
records each credential it issues with the ``(member, value)`` pairs of its decision's
``revocable``; revoking a value then marks, and returns, exactly the live credentials that
rested on it. The file also holds the single-use nonces that make evidence fresh.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import secrets
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

from attestpolicy._closing import Closing
from attestpolicy._model import FrozenModel
from attestpolicy.broker._errors import BrokerError
from attestpolicy.broker._schema import migrate
from attestpolicy.revocations import MAX_VALUE_CHARS, RevocationError, check_pairs

__all__ = [
    "MAX_NONCE_LIFETIME_SECONDS",
    "CredentialRegistry",
    "IssuedCredential",
    "IssuedNonce",
    "RevocationList",
]

MAX_NONCE_LIFETIME_SECONDS: Final = 3600.0
"""The longest a nonce may stay usable: nonces exist to make evidence fresh."""

_BUSY_TIMEOUT_MS: Final = 5000
_NONCE_BYTES: Final = 32
_NONCE_TEXT = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of 32 bytes, no padding
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_REVOKE: Final = (
    "UPDATE credentials SET revoked_at = :now, revocation_reason = :why"
    " WHERE revoked_at IS NULL AND expires_at > :now AND jti {}"
    " RETURNING jti, subject, audience, issued_at, expires_at, revoked_at, revocation_reason"
)
_REVOKE_PAIR: Final = _REVOKE.format(
    "IN (SELECT jti FROM credential_values WHERE member = :member AND value = :value)"
)
_REVOKE_JTI: Final = _REVOKE.format("= :jti")
_LIST_REVOKED: Final = (
    "SELECT jti, expires_at FROM credentials"
    " WHERE revoked_at IS NOT NULL AND expires_at > :now ORDER BY jti"
)
_BUMP_REVISION: Final = "UPDATE revocation_revision SET revision = revision + 1"
_T = TypeVar("_T")


class IssuedCredential(FrozenModel):
    """A credential as the registry holds it: who it was issued to, until when, and the
    revocable ``(member, value)`` pairs it rests on."""

    jti: str
    subject: str
    audience: str
    issued_at: datetime
    expires_at: datetime
    revocable: tuple[tuple[str, str], ...]
    revoked_at: datetime | None = None
    revocation_reason: str | None = None


class IssuedNonce(FrozenModel):
    """A single-use nonce: ``value`` is base64url (no padding) of 32 random bytes."""

    value: str
    expires_at: datetime


class RevocationList(FrozenModel):
    """The unexpired revoked credentials, ``(jti, expires_at)`` sorted by jti.

    ``etag`` is a hash of exactly what :meth:`to_json_dict` lists under ``revoked``: every
    process sharing the file gives the same one, and it changes whenever a credential is
    revoked or a revoked one expires. ``generated_at`` (when the list was read) is not part
    of it.
    """

    etag: str
    revoked: tuple[tuple[str, datetime], ...]
    generated_at: datetime

    def to_json_dict(self) -> dict[str, Any]:
        """``{"revoked": [{"jti", "exp"}], "generated_at"}``, times as NumericDate seconds."""
        return {
            "revoked": [
                {"jti": jti, "exp": _exp_seconds(_micros(exp, "exp"))} for jti, exp in self.revoked
            ],
            "generated_at": math.floor(self.generated_at.timestamp()),
        }


@dataclass(frozen=True)
class _ListedRevocations:
    """The revocation list read at ``since`` (microseconds) under ``revision``: the same
    until a revocation bumps the revision or its first entry expires (at ``until``)."""

    revision: int
    since: int
    until: int
    revocations: RevocationList

    @classmethod
    def of(cls, revision: int, since: int, rows: list[tuple[str, int]]) -> _ListedRevocations:
        listed = "\n".join(f"{jti} {_exp_seconds(expires_at)}" for jti, expires_at in rows)
        revocations = RevocationList(
            etag=hashlib.sha256(listed.encode()).hexdigest()[:32],
            revoked=tuple((jti, _moment(expires_at)) for jti, expires_at in rows),
            generated_at=_moment(since),
        )
        until = min((expires_at for _, expires_at in rows), default=sys.maxsize)
        return cls(revision, since, until, revocations)

    def answers(self, revision: int, at: int) -> bool:
        """Whether this is still the list at ``at`` under ``revision``."""
        return revision == self.revision and self.since <= at < self.until


def _exp_seconds(micros: int) -> int:
    """NumericDate of an expiry, rounded up: a relying party never drops an entry before the
    credential expires."""
    return -(-micros // 1_000_000)


def _micros(moment: object, name: str) -> int:
    if not isinstance(moment, datetime):
        raise BrokerError(f"{name} must be a datetime, got {type(moment).__name__}")
    if moment.utcoffset() is None:
        raise BrokerError(f"{name} must be timezone-aware, got {moment.isoformat()}")
    return (moment - _EPOCH) // _MICROSECOND


def _moment(micros: int) -> datetime:
    return _EPOCH + micros * _MICROSECOND


def _now(now: datetime | None) -> int:
    return _micros(datetime.now(UTC) if now is None else now, "now")


def _text(value: object, name: str, *, empty: bool = False) -> str:
    if not (
        isinstance(value, str)
        and (value or empty)
        and len(value) <= MAX_VALUE_CHARS
        and "\x00" not in value
        and _encodable(value)
    ):
        raise BrokerError(
            f"{name} must be a {'' if empty else 'non-empty '}string of at most "
            f"{MAX_VALUE_CHARS} characters (valid UTF-8, no NUL)"
        )
    return value


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: SQLite could not store it
        return False
    return True


def _pairs(pairs: object, name: str, *, empty: bool = False) -> list[tuple[str, str]]:
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Iterable):
        raise BrokerError(f"{name} must be an iterable of (member, value) pairs")
    items = list(pairs)
    if not items and empty:
        return []
    try:
        checked = check_pairs(items)
    except RevocationError as exc:
        raise BrokerError(f"{name}: {exc}") from None
    for member, value in checked:
        _text(value, f"{name} {member} value")
    return sorted(set(checked))


def _jtis(jtis: object) -> list[str]:
    if isinstance(jtis, (str, bytes)) or not isinstance(jtis, Iterable):
        raise BrokerError("jtis must be an iterable of strings")
    checked = sorted({_text(jti, "jti") for jti in jtis})
    if not checked:
        raise BrokerError("no jti to revoke")
    return checked


def _nonce_bytes(value: object) -> bytes:
    if not isinstance(value, str) or not _NONCE_TEXT.fullmatch(value):
        raise BrokerError(
            "nonce is malformed: expected base64url (no padding) of 32 bytes",
            code="nonce.invalid",
        )
    return base64.urlsafe_b64decode(value + "=")


class CredentialRegistry(Closing):
    """Issued credentials and nonces in a SQLite file, shared by every process that opens it.

    Thread-safe; open one per process (a connection does not survive ``fork``). Every
    method takes ``now`` (an aware datetime, default the current time) for tests and
    replays. Malformed arguments and an unusable file raise :class:`BrokerError`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._listed: _ListedRevocations | None = None
        try:
            self._db = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=_BUSY_TIMEOUT_MS / 1000,
            )
        except sqlite3.Error as exc:
            raise BrokerError(f"credential registry {self.path} is unusable: {exc}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            migrate(self._db, self.path)
        except sqlite3.Error as exc:
            self._db.close()
            raise BrokerError(f"credential registry {self.path} is unusable: {exc}") from None
        except BrokerError:
            self._db.close()
            raise

    def _run(self, work: Callable[[sqlite3.Connection], _T], *, write: bool = True) -> _T:
        """``work`` under the lock, in one transaction (``BEGIN IMMEDIATE`` when writing)."""
        with self._lock:
            try:
                with self._db:
                    self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                    return work(self._db)
            except sqlite3.Error as exc:
                raise BrokerError(f"credential registry {self.path}: {exc}") from None

    def record(
        self,
        *,
        jti: str,
        subject: str,
        audience: str,
        issued_at: datetime,
        expires_at: datetime,
        revocable: Sequence[tuple[str, str]],
    ) -> None:
        """Record an issued credential and the revocable pairs it rests on (may be none: it
        can still be revoked by jti). A jti is recorded once."""
        row = (
            _text(jti, "jti"),
            _text(subject, "subject"),
            _text(audience, "audience"),
            _micros(issued_at, "issued_at"),
            _micros(expires_at, "expires_at"),
        )
        if row[4] <= row[3]:
            raise BrokerError("expires_at must be after issued_at")
        values = [
            (member, value, jti) for member, value in _pairs(revocable, "revocable", empty=True)
        ]

        def insert(db: sqlite3.Connection) -> None:
            try:
                db.execute("INSERT INTO credentials VALUES (?, ?, ?, ?, ?, NULL, NULL)", row)
            except sqlite3.IntegrityError:
                raise BrokerError(f"credential {jti!r} is already recorded") from None
            db.executemany("INSERT INTO credential_values VALUES (?, ?, ?)", values)

        self._run(insert)

    def revoke(
        self, pairs: Iterable[tuple[str, str]], *, reason: str, now: datetime | None = None
    ) -> list[IssuedCredential]:
        """Mark revoked every live credential (unexpired, not yet revoked) resting on any of
        ``pairs``; return exactly those, sorted by jti."""
        selections = [{"member": m, "value": v} for m, v in _pairs(pairs, "pairs")]
        return self._revoke(_REVOKE_PAIR, selections, reason, now)

    def revoke_jti(
        self, jtis: Iterable[str], *, reason: str, now: datetime | None = None
    ) -> list[IssuedCredential]:
        """Mark revoked the live credentials among ``jtis``; return exactly those (an
        unknown, expired or already revoked jti is skipped), sorted by jti."""
        return self._revoke(_REVOKE_JTI, [{"jti": jti} for jti in _jtis(jtis)], reason, now)

    def _revoke(
        self, statement: str, selections: list[dict[str, str]], reason: str, now: datetime | None
    ) -> list[IssuedCredential]:
        parameters = {"now": _now(now), "why": _text(reason, "reason", empty=True)}

        def mark(db: sqlite3.Connection) -> list[IssuedCredential]:
            marked: list[tuple[Any, ...]] = []
            for selection in selections:  # a credential marked once is no longer live
                marked += db.execute(statement, {**parameters, **selection}).fetchall()
            if marked:
                db.execute(_BUMP_REVISION)
            return self._with_values(db, marked)

        return self._run(mark)

    @staticmethod
    def _with_values(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[IssuedCredential]:
        credentials = []
        for jti, subject, audience, issued_at, expires_at, revoked_at, why in sorted(rows):
            pairs = db.execute(
                "SELECT member, value FROM credential_values WHERE jti = ? ORDER BY member, value",
                (jti,),
            ).fetchall()
            credentials.append(
                IssuedCredential(
                    jti=jti,
                    subject=subject,
                    audience=audience,
                    issued_at=_moment(issued_at),
                    expires_at=_moment(expires_at),
                    revocable=tuple(pairs),
                    revoked_at=None if revoked_at is None else _moment(revoked_at),
                    revocation_reason=why,
                )
            )
        return credentials

    def revoked(self, *, now: datetime | None = None) -> RevocationList:
        """The revoked credentials that have not expired yet, for relying parties to poll.

        Read again only when a revocation was made (by any process) or an entry expired
        since the last read; otherwise the last list is returned with a new ``generated_at``.
        """
        at = _now(now)

        def read(db: sqlite3.Connection) -> RevocationList:
            revision = db.execute("SELECT revision FROM revocation_revision").fetchone()[0]
            listed = self._listed
            if listed is None or not listed.answers(revision, at):
                rows = db.execute(_LIST_REVOKED, {"now": at}).fetchall()
                listed = self._listed = _ListedRevocations.of(revision, at, rows)
            return listed.revocations.model_copy(update={"generated_at": _moment(at)})

        return self._run(read, write=False)

    def is_revoked(self, jti: str) -> bool:
        """Whether the credential ``jti`` was revoked (False for a jti never recorded)."""
        checked = _text(jti, "jti")
        row = self._run(
            lambda db: db.execute(
                "SELECT revoked_at IS NOT NULL FROM credentials WHERE jti = ?", (checked,)
            ).fetchone(),
            write=False,
        )
        return bool(row and row[0])

    def prune(self, *, now: datetime | None = None) -> int:
        """Delete the expired credentials (revoked or not: an expired credential is refused
        anyway) and the expired or used nonces; return how many rows went."""
        at = _now(now)

        def delete(db: sqlite3.Connection) -> int:
            db.execute(
                "DELETE FROM credential_values WHERE jti IN"
                " (SELECT jti FROM credentials WHERE expires_at <= ?)",
                (at,),
            )
            credentials = db.execute("DELETE FROM credentials WHERE expires_at <= ?", (at,))
            nonces = db.execute("DELETE FROM nonces WHERE used OR expires_at <= ?", (at,))
            return int(credentials.rowcount + nonces.rowcount)

        return self._run(delete)

    def issue_nonce(
        self, *, lifetime_seconds: float = 60.0, now: datetime | None = None
    ) -> IssuedNonce:
        """A new single-use nonce, usable for ``lifetime_seconds`` (at most
        :data:`MAX_NONCE_LIFETIME_SECONDS`)."""
        if (
            isinstance(lifetime_seconds, bool)
            or not isinstance(lifetime_seconds, (int, float))
            or not 0 < lifetime_seconds <= MAX_NONCE_LIFETIME_SECONDS
        ):
            raise BrokerError(
                f"lifetime_seconds must be a number in (0, {MAX_NONCE_LIFETIME_SECONDS:g}]"
            )
        expires_at = _now(now) + round(lifetime_seconds * 1_000_000)
        value = base64.urlsafe_b64encode(secrets.token_bytes(_NONCE_BYTES)).rstrip(b"=").decode()
        self._run(lambda db: db.execute("INSERT INTO nonces VALUES (?, ?, 0)", (value, expires_at)))
        return IssuedNonce(value=value, expires_at=_moment(expires_at))

    def consume_nonce(self, value: str, *, now: datetime | None = None) -> bytes:
        """Use the nonce ``value`` once, across every process sharing the file; return its
        32 bytes. Raises :class:`BrokerError` with code ``nonce.invalid`` when it is
        malformed, unknown, already used or expired."""
        raw = _nonce_bytes(value)
        at = _now(now)

        def use(db: sqlite3.Connection) -> str | None:
            claimed = db.execute(
                "UPDATE nonces SET used = 1 WHERE value = ? AND used = 0 AND expires_at > ?",
                (value, at),
            )
            if claimed.rowcount == 1:
                return None
            row = db.execute("SELECT used, expires_at FROM nonces WHERE value = ?", (value,))
            found = row.fetchone()
            if found is None:
                return "is unknown (never issued by this registry, or pruned)"
            used, expires_at = found
            return "was already used" if used else f"expired at {_moment(expires_at).isoformat()}"

        refused = self._run(use)
        if refused is not None:
            raise BrokerError(f"nonce {refused}", code="nonce.invalid")
        return raw

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()
