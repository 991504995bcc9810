"""The registry file's schema: a version 1 file (made here with version 1's DDL, as a
released attestpolicy wrote it) is upgraded in place with its data; newer files and other
applications' databases are refused."""

from __future__ import annotations

import multiprocessing
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from attestpolicy.broker import BrokerError, CredentialRegistry
from attestpolicy.broker._schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
US = 1_000_000
NOW_US = int(NOW.timestamp()) * US
SPAWN = multiprocessing.get_context("spawn")

V1_DDL = (  # version 1 as released: never edit (files in the field were made with it)
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
)


def make_v1(path: Path) -> None:
    """A version 1 registry with a live, a revoked and an expired credential."""
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        for statement in V1_DDL:
            connection.execute(statement)
        connection.executemany(
            "INSERT INTO credentials VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                ("live", "spiffe://a/w1", "payments", NOW_US - 60 * US, NOW_US + 840 * US,
                 None, None),
                ("revoked", "spiffe://a/w2", "payments", NOW_US - 60 * US, NOW_US + 600 * US,
                 NOW_US - 30 * US, "key leaked"),
                ("expired", "spiffe://a/w3", "ledger", NOW_US - 3600 * US, NOW_US - 60 * US,
                 None, None),
            ],
        )  # fmt: skip
        connection.executemany(
            "INSERT INTO credential_values VALUES (?, ?, ?)",
            [
                ("signer_subjects", "s1", "live"),
                ("node_ids", "n1", "live"),
                ("signer_subjects", "s1", "revoked"),
                ("signer_subjects", "s1", "expired"),
            ],
        )
        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        connection.execute("PRAGMA user_version = 1")
    assert _header(path) == (1, APPLICATION_ID)


def _header(path: Path) -> tuple[int, int]:
    with sqlite3.connect(path) as connection:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        application = connection.execute("PRAGMA application_id").fetchone()[0]
    return version, application


def _schema(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as connection:
        rows: list[tuple[str, str, str]] = connection.execute(
            "SELECT type, name, sql FROM sqlite_schema ORDER BY name"
        ).fetchall()
    return rows


def test_version_1_is_the_released_ddl() -> None:
    """A released migration never changes: a new schema is a new migration."""
    assert MIGRATIONS[0] == V1_DDL
    assert SCHEMA_VERSION == 2


def test_a_version_1_file_is_upgraded_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "credentials.db"
    make_v1(path)
    with CredentialRegistry(path) as registry:
        assert _header(path) == (SCHEMA_VERSION, APPLICATION_ID)
        assert registry.is_revoked("revoked")
        listed = registry.revoked(now=NOW)
        assert listed.revoked == (("revoked", NOW + timedelta(seconds=600)),)
        marked = registry.revoke([("signer_subjects", "s1")], reason="r", now=NOW)
        assert [(c.jti, c.subject, c.issued_at, c.revocable) for c in marked] == [
            (
                "live",
                "spiffe://a/w1",
                NOW - timedelta(seconds=60),
                (("node_ids", "n1"), ("signer_subjects", "s1")),
            )
        ]
        nonce = registry.issue_nonce(now=NOW)  # version 2's table
        assert len(registry.consume_nonce(nonce.value, now=NOW)) == 32
        assert registry.prune(now=NOW) == 2  # "expired", and the used nonce
    fresh = tmp_path / "fresh.db"
    CredentialRegistry(fresh).close()
    assert _schema(path) == _schema(fresh)  # upgraded == made new


def _open(path: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        with CredentialRegistry(path) as registry:
            results.put(registry.is_revoked("revoked"))
    except BrokerError as exc:
        results.put(str(exc))


def test_processes_opening_a_version_1_file_at_once_upgrade_it_once(tmp_path: Path) -> None:
    path = tmp_path / "credentials.db"
    make_v1(path)
    barrier = SPAWN.Barrier(4)
    results = SPAWN.Queue()
    workers = [SPAWN.Process(target=_open, args=(str(path), barrier, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert outcomes == [True] * 4
    assert _header(path) == (SCHEMA_VERSION, APPLICATION_ID)


def test_a_newer_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "credentials.db"
    CredentialRegistry(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = _schema(path)
    with pytest.raises(BrokerError, match="has schema 3, newer than this attestpolicy's 2"):
        CredentialRegistry(path)
    assert _schema(path) == before
    assert _header(path) == (SCHEMA_VERSION + 1, APPLICATION_ID)


@pytest.mark.parametrize(
    "statements",
    [
        ("CREATE TABLE other (x)",),  # another application's database, unversioned
        ("PRAGMA user_version = 1",),  # versioned but not marked as a registry
        ("PRAGMA application_id = 7",),
        (f"PRAGMA application_id = {APPLICATION_ID - 1}", "PRAGMA user_version = 1"),
    ],
)
def test_other_sqlite_files_are_refused_untouched(
    tmp_path: Path, statements: tuple[str, ...]
) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        for statement in statements:
            connection.execute(statement)
    before = (_schema(path), _header(path))
    with pytest.raises(
        BrokerError, match=r"other\.db is a SQLite file but not a credential registry"
    ):
        CredentialRegistry(path)
    assert (_schema(path), _header(path)) == before


def test_an_empty_file_becomes_a_registry(tmp_path: Path) -> None:
    path = tmp_path / "credentials.db"
    path.touch()
    CredentialRegistry(path).close()
    assert _header(path) == (SCHEMA_VERSION, APPLICATION_ID)
    assert {name for kind, name, _ in _schema(path) if kind == "table"} == {
        "credentials",
        "credential_values",
        "nonces",
        "revocation_revision",
    }


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "credentials.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    with pytest.raises(BrokerError, match="unusable") as refused:
        CredentialRegistry(path)
    assert refused.value.code == "broker.error"
