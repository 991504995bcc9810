"""The issued-credential registry: a real SQLite file; revoking a value marks and returns
exactly the live credentials resting on it, across processes and restarts; nonces are used
once, whoever asks."""

from __future__ import annotations

import base64
import multiprocessing
import re
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from attestpolicy.broker import BrokerError, CredentialRegistry, IssuedCredential
from attestpolicy.broker._registry import _LIST_REVOKED, _REVOKE_JTI, _REVOKE_PAIR
from attestpolicy.errors import AttestPolicyError
from attestpolicy.revocations import RevocationStore

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
SIGNER = ("signer_subjects", "https://github.com/acme/build/.github/workflows/release.yml@main")
OTHER_SIGNER = ("signer_subjects", "sha256:4f0c7b9d1e2a3b4c")
IMAGE = ("image_digests", "sha256:" + "d9" * 32)
NODE = ("node_ids", "tpm-ek-1")
SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "credentials.db"


@pytest.fixture
def registry(path: Path) -> Iterator[CredentialRegistry]:
    with CredentialRegistry(path) as opened:
        yield opened


def record(
    registry: CredentialRegistry,
    jti: str,
    *revocable: tuple[str, str],
    issued: datetime = NOW - timedelta(minutes=1),
    ttl: timedelta = timedelta(minutes=15),
) -> None:
    registry.record(
        jti=jti,
        subject=f"spiffe://acme.example/{jti}",
        audience="payments",
        issued_at=issued,
        expires_at=issued + ttl,
        revocable=list(revocable),
    )


def test_revoke_returns_exactly_the_live_credentials_resting_on_the_value(
    registry: CredentialRegistry,
) -> None:
    record(registry, "live", SIGNER, IMAGE)
    record(registry, "live-too", NODE, SIGNER)
    record(registry, "expired", SIGNER, issued=NOW - timedelta(hours=1))
    record(registry, "expires-now", SIGNER, issued=NOW - timedelta(minutes=15))
    record(registry, "revoked-before", SIGNER)
    record(registry, "unrelated", OTHER_SIGNER, IMAGE)
    record(registry, "no-values")
    assert [c.jti for c in registry.revoke_jti(["revoked-before"], reason="first", now=NOW)] == [
        "revoked-before"
    ]

    marked = registry.revoke([SIGNER], reason="key leaked", now=NOW)

    assert marked == [
        IssuedCredential(
            jti="live",
            subject="spiffe://acme.example/live",
            audience="payments",
            issued_at=NOW - timedelta(minutes=1),
            expires_at=NOW + timedelta(minutes=14),
            revocable=(IMAGE, SIGNER),
            revoked_at=NOW,
            revocation_reason="key leaked",
        ),
        IssuedCredential(
            jti="live-too",
            subject="spiffe://acme.example/live-too",
            audience="payments",
            issued_at=NOW - timedelta(minutes=1),
            expires_at=NOW + timedelta(minutes=14),
            revocable=(NODE, SIGNER),
            revoked_at=NOW,
            revocation_reason="key leaked",
        ),
    ]
    assert registry.revoke([SIGNER], reason="again", now=NOW) == []
    assert registry.is_revoked("live")
    assert registry.is_revoked("revoked-before")
    assert not registry.is_revoked("unrelated")
    assert not registry.is_revoked("expired")
    assert not registry.is_revoked("never-recorded")
    # the first revocation's time and reason stay
    assert registry.revoke_jti(["revoked-before"], reason="x", now=NOW) == []
    assert [c.jti for c in registry.revoke([IMAGE], reason="cve", now=NOW)] == ["unrelated"]


def test_a_credential_resting_on_several_revoked_values_is_returned_once(
    registry: CredentialRegistry,
) -> None:
    record(registry, "a", SIGNER, IMAGE, NODE)
    record(registry, "b", IMAGE)
    record(registry, "c", NODE)
    marked = registry.revoke([NODE, SIGNER, IMAGE, SIGNER], reason="r", now=NOW)
    assert [c.jti for c in marked] == ["a", "b", "c"]
    assert marked[0].revocable == (IMAGE, NODE, SIGNER)


def test_revoke_jti_skips_unknown_expired_and_revoked_credentials(
    registry: CredentialRegistry,
) -> None:
    record(registry, "live", SIGNER)
    record(registry, "expired", SIGNER, issued=NOW - timedelta(days=1))
    marked = registry.revoke_jti(
        ["live", "expired", "unknown", "live"], reason="lost laptop", now=NOW
    )
    assert [(c.jti, c.revocable, c.revocation_reason) for c in marked] == [
        ("live", (SIGNER,), "lost laptop")
    ]
    assert registry.revoke_jti(["live"], reason="", now=NOW) == []


def test_revocations_and_records_persist_across_reopening(path: Path) -> None:
    with CredentialRegistry(path) as first:
        record(first, "a", SIGNER)
        record(first, "b", SIGNER)
        first.revoke_jti(["a"], reason="r", now=NOW)
        etag = first.revoked(now=NOW).etag
    with CredentialRegistry(path) as reopened:
        assert reopened.is_revoked("a")
        assert reopened.revoked(now=NOW).etag == etag
        assert [c.jti for c in reopened.revoke([SIGNER], reason="r", now=NOW)] == ["b"]
        with pytest.raises(BrokerError, match="'a' is already recorded"):
            record(reopened, "a", NODE)


def test_the_revocation_list_and_its_etag(path: Path, registry: CredentialRegistry) -> None:
    record(registry, "b", SIGNER)
    record(registry, "a", SIGNER, ttl=timedelta(minutes=15, microseconds=1))
    record(registry, "c", SIGNER, ttl=timedelta(minutes=5))
    empty = registry.revoked(now=NOW)
    assert empty.revoked == ()
    assert registry.revoked(now=NOW + timedelta(seconds=5)).etag == empty.etag

    registry.revoke([SIGNER], reason="r", now=NOW)
    listed = registry.revoked(now=NOW)
    assert listed.etag != empty.etag
    assert [jti for jti, _ in listed.revoked] == ["a", "b", "c"]
    exp = NOW + timedelta(minutes=14)
    assert listed.to_json_dict() == {
        "revoked": [  # exp in whole seconds, rounded up
            {"jti": "a", "exp": int(exp.timestamp()) + 1},
            {"jti": "b", "exp": int(exp.timestamp())},
            {"jti": "c", "exp": int(exp.timestamp()) - 600},
        ],
        "generated_at": int(NOW.timestamp()),
    }
    assert listed.etag.isalnum()
    assert len(listed.etag) == 32
    with CredentialRegistry(path) as other_process_view:
        assert other_process_view.revoked(now=NOW).etag == listed.etag

    later = registry.revoked(now=NOW + timedelta(minutes=10))  # "c" expired: off the list
    assert [jti for jti, _ in later.revoked] == ["a", "b"]
    assert later.etag != listed.etag
    record(registry, "d", NODE)  # a new credential is no revocation: same list, same etag
    assert registry.revoked(now=NOW + timedelta(minutes=10)).etag == later.etag
    registry.revoke([NODE], reason="r", now=NOW + timedelta(minutes=10))
    assert registry.revoked(now=NOW + timedelta(minutes=10)).etag != later.etag
    everything_expired = registry.revoked(now=NOW + timedelta(days=1))
    assert everything_expired.revoked == ()
    assert everything_expired.etag == empty.etag


def test_the_list_is_read_again_after_a_revocation_by_another_process_or_an_expiry(
    path: Path, registry: CredentialRegistry
) -> None:
    record(registry, "a", SIGNER, ttl=timedelta(minutes=5))
    record(registry, "b", NODE)
    registry.revoke([SIGNER], reason="r", now=NOW)
    first = registry.revoked(now=NOW)
    again = registry.revoked(now=NOW + timedelta(seconds=1))  # unchanged: not read again
    assert (again.etag, again.revoked) == (first.etag, first.revoked)
    assert again.generated_at == NOW + timedelta(seconds=1)
    with CredentialRegistry(path) as other_process:
        other_process.revoke([NODE], reason="r", now=NOW)
    assert [jti for jti, _ in registry.revoked(now=NOW).revoked] == ["a", "b"]
    assert [jti for jti, _ in registry.revoked(now=NOW + timedelta(minutes=4)).revoked] == [
        "b"
    ]  # "a" expired at NOW + 4 minutes
    assert [jti for jti, _ in registry.revoked(now=NOW).revoked] == ["a", "b"]  # an earlier now
    revision = _revision(path)
    assert registry.revoke_jti(["a", "b"], reason="again", now=NOW) == []
    assert registry.revoke([IMAGE], reason="r", now=NOW) == []
    assert _revision(path) == revision  # nothing marked: nobody reads the list again


def _revision(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        revision: int = connection.execute("SELECT revision FROM revocation_revision").fetchone()[0]
    return revision


def _rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as connection:
        count: int = connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
    return count


def test_prune_deletes_expired_credentials_and_spent_nonces(
    path: Path, registry: CredentialRegistry
) -> None:
    record(registry, "expired", SIGNER, IMAGE, issued=NOW - timedelta(hours=1))
    record(registry, "expired-revoked", SIGNER, issued=NOW - timedelta(hours=1))
    registry.revoke_jti(["expired-revoked"], reason="r", now=NOW - timedelta(minutes=50))
    record(registry, "live", SIGNER, NODE)
    record(registry, "live-revoked", NODE)
    registry.revoke_jti(["live-revoked"], reason="r", now=NOW)
    used = registry.issue_nonce(now=NOW)
    registry.consume_nonce(used.value, now=NOW)
    registry.issue_nonce(lifetime_seconds=30, now=NOW - timedelta(minutes=1))  # expired
    fresh = registry.issue_nonce(now=NOW)

    assert registry.prune(now=NOW) == 4  # two credentials, two nonces

    assert _rows(path, "credentials") == 2
    assert _rows(path, "credential_values") == 3
    assert _rows(path, "nonces") == 1
    assert registry.prune(now=NOW) == 0
    assert [jti for jti, _ in registry.revoked(now=NOW).revoked] == ["live-revoked"]
    assert [c.jti for c in registry.revoke([SIGNER], reason="r", now=NOW)] == ["live"]
    assert len(registry.consume_nonce(fresh.value, now=NOW)) == 32
    with pytest.raises(BrokerError, match="unknown"):
        registry.consume_nonce(used.value, now=NOW)


def test_a_nonce_is_32_random_bytes_used_once(registry: CredentialRegistry) -> None:
    nonce = registry.issue_nonce(lifetime_seconds=30, now=NOW)
    assert nonce.expires_at == NOW + timedelta(seconds=30)
    assert len(nonce.value) == 43
    assert "=" not in nonce.value
    raw = base64.urlsafe_b64decode(nonce.value + "=")
    assert registry.consume_nonce(nonce.value, now=NOW + timedelta(seconds=29)) == raw
    with pytest.raises(BrokerError, match="already used") as reused:
        registry.consume_nonce(nonce.value, now=NOW)
    assert reused.value.code == "nonce.invalid"
    assert registry.issue_nonce(now=NOW).value != nonce.value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("A" * 43, "unknown"),
        ("A" * 42, "malformed"),
        ("A" * 44, "malformed"),
        ("A" * 42 + "=", "malformed"),
        ("A" * 42 + "+", "malformed"),
        (b"A" * 43, "malformed"),
        (None, "malformed"),
    ],
)
def test_an_unknown_or_malformed_nonce_is_refused(
    registry: CredentialRegistry, value: Any, message: str
) -> None:
    with pytest.raises(BrokerError, match=message) as refused:
        registry.consume_nonce(value, now=NOW)
    assert refused.value.code == "nonce.invalid"


def test_an_expired_nonce_is_refused(registry: CredentialRegistry) -> None:
    nonce = registry.issue_nonce(lifetime_seconds=0.5, now=NOW)
    with pytest.raises(BrokerError, match=r"expired at 2026-11-22T10:00:00\.5") as refused:
        registry.consume_nonce(nonce.value, now=NOW + timedelta(seconds=0.5))
    assert refused.value.code == "nonce.invalid"


@pytest.mark.parametrize("lifetime", [0, -1, 3600.5, float("nan"), float("inf"), True, "60"])
def test_a_nonce_lifetime_is_short_and_positive(
    registry: CredentialRegistry, lifetime: Any
) -> None:
    with pytest.raises(BrokerError, match="lifetime_seconds"):
        registry.issue_nonce(lifetime_seconds=lifetime)


def _consume(path: str, value: str, barrier: Any, results: Any) -> None:
    with CredentialRegistry(path) as registry:
        barrier.wait()
        try:
            registry.consume_nonce(value)
        except BrokerError as exc:
            results.put(exc.code)
        else:
            results.put("used")


def _revoke(path: str, barrier: Any, results: Any) -> None:
    with CredentialRegistry(path) as registry:
        barrier.wait()
        results.put([c.jti for c in registry.revoke([SIGNER], reason="race", now=NOW)])


def _collect(target: Any, count: int, *args: Any) -> list[Any]:
    barrier = SPAWN.Barrier(count)
    results = SPAWN.Queue()
    workers = [SPAWN.Process(target=target, args=(*args, barrier, results)) for _ in range(count)]
    for worker in workers:
        worker.start()
    collected = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    return collected


def test_processes_racing_for_one_nonce_use_it_once(path: Path) -> None:
    with CredentialRegistry(path) as registry:
        nonce = registry.issue_nonce(lifetime_seconds=120)
    outcomes = _collect(_consume, 6, str(path), nonce.value)
    assert sorted(outcomes) == ["nonce.invalid"] * 5 + ["used"]


def test_processes_revoking_one_value_mark_each_credential_once(path: Path) -> None:
    with CredentialRegistry(path) as registry:
        for index in range(200):
            record(registry, f"c{index:03}", SIGNER if index % 2 else IMAGE)
    returned = [jti for jtis in _collect(_revoke, 4, str(path)) for jti in jtis]
    assert sorted(returned) == [f"c{index:03}" for index in range(1, 200, 2)]


def test_threads_share_one_registry(registry: CredentialRegistry) -> None:
    failures: list[BaseException] = []
    marked: list[str] = []

    def work(thread: int) -> None:
        try:
            for index in range(50):
                record(registry, f"t{thread}-{index}", SIGNER, (NODE[0], f"node-{thread}"))
                registry.revoked(now=NOW)
            marked.extend(c.jti for c in registry.revoke([SIGNER], reason="r", now=NOW))
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(thread,)) for thread in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sorted(marked) == sorted(f"t{t}-{i}" for t in range(8) for i in range(50))


NAIVE = datetime(2026, 11, 22, 10, 0)  # naive: the point of the tests below
GOOD: dict[str, Any] = {
    "jti": "j",
    "subject": "spiffe://acme.example/w",
    "audience": "payments",
    "issued_at": NOW,
    "expires_at": NOW + timedelta(minutes=5),
    "revocable": [SIGNER],
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"jti": ""}, "jti must be a non-empty string"),
        ({"jti": 7}, "jti must be a non-empty string"),
        ({"jti": "x" * 4097}, "at most 4096"),
        ({"subject": None}, "subject must be"),
        ({"audience": "a\x00b"}, "no NUL"),
        ({"audience": "\ud800"}, "valid UTF-8"),
        ({"issued_at": NAIVE}, "issued_at must be timezone-aware"),
        ({"expires_at": "2026-11-22T10:05:00Z"}, "expires_at must be a datetime, got str"),
        ({"expires_at": NOW}, "expires_at must be after issued_at"),
        ({"revocable": "signer_subjects"}, "iterable of \\(member, value\\) pairs"),
        ({"revocable": None}, "iterable of \\(member, value\\) pairs"),
        ({"revocable": [("signers", "x")]}, "unknown revocation member 'signers'"),
        ({"revocable": [("node_ids", "")]}, "non-empty string"),
        ({"revocable": [("node_ids", "n" * 4097)]}, "at most 4096"),
        ({"revocable": [("node_ids", "\ud800")]}, "valid UTF-8"),
        ({"revocable": [["node_ids", "n"]]}, "pair"),
    ],
)
def test_record_refuses_malformed_arguments(
    registry: CredentialRegistry, path: Path, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(BrokerError, match=message):
        registry.record(**{**GOOD, **change})
    assert _rows(path, "credentials") == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.revoke([], reason="r"), "no value to revoke"),
        (lambda r: r.revoke("node_ids", reason="r"), "iterable of"),
        (lambda r: r.revoke([("node_ids", None)], reason="r"), "non-empty string"),
        (lambda r: r.revoke([SIGNER], reason=None), "reason must be a string"),
        (lambda r: r.revoke([SIGNER], reason="r" * 4097), "at most 4096"),
        (lambda r: r.revoke([SIGNER], reason="r", now=NAIVE), "now must be timezone-aware"),
        (lambda r: r.revoke_jti("abc", reason="r"), "iterable of strings"),
        (lambda r: r.revoke_jti([], reason="r"), "no jti"),
        (lambda r: r.revoke_jti([""], reason="r"), "jti must be"),
        (lambda r: r.is_revoked(None), "jti must be"),
        (lambda r: r.revoked(now=NAIVE), "now must be timezone-aware"),
        (lambda r: r.prune(now=1.0), "now must be a datetime"),
        (lambda r: r.issue_nonce(now=NAIVE), "now must be timezone-aware"),
    ],
)
def test_other_calls_refuse_malformed_arguments(
    registry: CredentialRegistry, call: Any, message: str
) -> None:
    record(registry, "j", SIGNER)
    with pytest.raises(BrokerError, match=message):
        call(registry)
    assert not registry.is_revoked("j")


def test_broker_error_is_an_attestpolicy_error() -> None:
    assert issubclass(BrokerError, AttestPolicyError)
    assert BrokerError("x").code == "broker.error"


def test_unusable_files_are_refused(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"not a database" * 100)
    with pytest.raises(
        BrokerError, match=re.escape(f"{corrupt} is unusable: file is not a database")
    ):
        CredentialRegistry(corrupt)
    with pytest.raises(BrokerError, match="unusable: unable to open"):
        CredentialRegistry(tmp_path / "missing-directory" / "r.db")
    with pytest.raises(BrokerError, match="unusable"):
        CredentialRegistry(tmp_path)
    store = tmp_path / "revocations.db"  # a revocation store is no credential registry
    RevocationStore(store).close()
    with pytest.raises(BrokerError, match=r"revocations\.db is a SQLite file but not a credential"):
        CredentialRegistry(store)


def test_a_closed_registry_raises_broker_error(path: Path) -> None:
    registry = CredentialRegistry(path)
    registry.close()
    with pytest.raises(BrokerError, match="closed"):
        registry.revoked()


def _plan(path: Path, statement: str, parameters: dict[str, Any]) -> str:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
    return " | ".join(row[3] for row in rows)


def test_revocation_and_the_list_use_the_indexes(path: Path, registry: CredentialRegistry) -> None:
    """Revoking a value reads the credentials resting on it, never the whole table; the
    revocation list reads only the revoked ones."""
    record(registry, "a", SIGNER)
    by_pair = _plan(path, _REVOKE_PAIR, {"now": 0, "why": "", "member": "m", "value": "v"})
    assert by_pair == (
        "SEARCH credentials USING PRIMARY KEY (jti=?) | LIST SUBQUERY 1"
        " | SEARCH credential_values USING PRIMARY KEY (member=? AND value=?)"
    )
    by_jti = _plan(path, _REVOKE_JTI, {"now": 0, "why": "", "jti": "a"})
    assert by_jti == "SEARCH credentials USING PRIMARY KEY (jti=?)"
    assert (
        _plan(path, _LIST_REVOKED, {"now": 0}) == "SCAN credentials USING INDEX credentials_revoked"
    )
