"""The credential registry's file: schema versions and the migrations between them.

``PRAGMA application_id`` marks a SQLite file as a credential registry and ``PRAGMA
user_version`` holds its schema version. Opening a file brings it to :data:`SCHEMA_VERSION`
in one transaction (the migrations from its version on, in order), so a process that opens
an older file upgrades it for every process sharing it; a file from a newer attestpolicy,
or another application's database, is refused, never guessed at.

Times are integer microseconds since the Unix epoch (UTC): exact for a ``datetime``, and
range queries (live, expired, unexpired revoked) run on the indexes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

from attestpolicy.broker._errors import BrokerError

__all__ = ["APPLICATION_ID", "MIGRATIONS", "SCHEMA_VERSION", "migrate"]

APPLICATION_ID: Final = 0x41504352
"""``PRAGMA application_id`` of a credential registry ("APCR")."""

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    # 0 -> 1: issued credentials, and the revocable (member, value) pairs each rests on
    (
        "CREATE TABLE credentials ("
        " jti TEXT PRIMARY KEY, subject TEXT NOT NULL, audience TEXT NOT NULL,"
        " issued_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,"
        " revoked_at INTEGER, revocation_reason TEXT) WITHOUT ROWID",
        "CREATE INDEX credentials_expiry ON credentials (expires_at)",
        "CREATE INDEX credentials_revoked ON credentials (jti, expires_at)"
        " WHERE revoked_at IS NOT NULL",
        "CREATE TABLE credential_values ("
        " member TEXT NOT NULL, value TEXT NOT NULL, jti TEXT NOT NULL,"
        " PRIMARY KEY (member, value, jti)) WITHOUT ROWID",
        "CREATE INDEX credential_values_jti ON credential_values (jti)",
    ),
    # 1 -> 2: single-use nonces (serve's GET /v1/nonce), kept until pruned so that a reuse
    # is told apart from a nonce never issued; and a revision counted up by every revocation,
    # so that reading the revocation list again costs one row while nothing was revoked
    (
        "CREATE TABLE nonces ("
        " value TEXT PRIMARY KEY, expires_at INTEGER NOT NULL,"
        " used INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID",
        "CREATE INDEX nonces_expiry ON nonces (expires_at)",
        "CREATE TABLE revocation_revision (revision INTEGER NOT NULL)",
        "INSERT INTO revocation_revision VALUES (0)",
    ),
)
"""``MIGRATIONS[v]`` brings a file from version ``v`` to ``v + 1``."""

SCHEMA_VERSION: Final = len(MIGRATIONS)
"""The version this attestpolicy writes."""


def migrate(connection: sqlite3.Connection, path: Path) -> None:
    """Bring the registry open on ``connection`` (autocommit mode) to :data:`SCHEMA_VERSION`.

    Creates the schema in an empty file. Raises :class:`BrokerError` for a newer schema or a
    file that is not a credential registry; ``sqlite3.Error`` for an unreadable one.
    """
    with connection:
        connection.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        application = connection.execute("PRAGMA application_id").fetchone()[0]
        if version == SCHEMA_VERSION and application == APPLICATION_ID:
            return
        tables = connection.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
        if application != APPLICATION_ID and (application or version or tables):
            raise BrokerError(f"{path} is a SQLite file but not a credential registry")
        if version > SCHEMA_VERSION:
            raise BrokerError(
                f"credential registry {path} has schema {version}, newer than this "
                f"attestpolicy's {SCHEMA_VERSION}: upgrade attestpolicy to open it"
            )
        for step in MIGRATIONS[version:]:
            for statement in step:
                connection.execute(statement)
        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
