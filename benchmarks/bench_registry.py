"""Issue 11: revoking a value in a credential registry holding 100k live credentials.

The registry (a SQLite file) gets 100k live credentials spread over 1k signers, 1k images
and 100 nodes (each with its own SPIFFE ID), plus 10k expired ones on the same values.
Revoking one signer (about 100 dependents) and one node (about 1k) is timed on fresh copies
of that file, and each answer is checked: exactly the live credentials recorded with the
value, no expired one. ``record()`` is timed at the shipped durability (every commit synced).

The 110k credentials are written with ``record()`` itself, with syncing turned off for the
build only (same rows, a few seconds instead of a minute).

Run from the repository root: ``.venv/bin/python benchmarks/bench_registry.py [--quick]``.
"""

from __future__ import annotations

import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from goals import median_us  # noqa: E402  (after the path set-up)

from attestpolicy.broker import CredentialRegistry  # noqa: E402

LIVE = 100_000
EXPIRED = 10_000
SIGNERS, IMAGES, NODES = 1_000, 1_000, 100
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

Pair = tuple[str, str]


def _pairs(rng: random.Random, jti: str) -> list[Pair]:
    return [
        ("signer_subjects", f"https://ci.example/signer-{rng.randrange(SIGNERS)}"),
        ("image_digests", f"sha256:{rng.randrange(IMAGES):064x}"),
        ("node_ids", f"tpm-ek-{rng.randrange(NODES)}"),
        ("spiffe_ids", f"spiffe://acme.example/workload/{jti}"),
    ]


def build(path: Path) -> dict[Pair, list[str]]:
    """The registry file; returns the live jtis recorded with each value."""
    rng = random.Random(11)
    live: dict[Pair, list[str]] = defaultdict(list)
    with CredentialRegistry(path) as registry:
        registry._db.execute("PRAGMA synchronous=OFF")  # the build only: same rows, faster
        for index in range(LIVE + EXPIRED):
            jti = f"cred-{index:06}"
            expired = index >= LIVE
            issued = NOW - timedelta(hours=2 if expired else 0, minutes=rng.randrange(10))
            pairs = _pairs(rng, jti)
            registry.record(
                jti=jti,
                subject=f"spiffe://acme.example/workload/{jti}",
                audience="payments",
                issued_at=issued,
                expires_at=issued + timedelta(minutes=15 + rng.randrange(45)),
                revocable=pairs,
            )
            if not expired:
                for pair in pairs:
                    live[pair].append(jti)
        registry._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return live


def revoke_ms(source: Path, pair: Pair, expected: list[str], runs: int) -> float:
    """The median time of revoking ``pair`` (each run on a fresh copy of ``source``), in
    milliseconds; raises unless every run returns exactly ``expected``."""
    timings = []
    for run in range(runs):
        copy = source.with_name(f"copy-{run}.db")
        shutil.copyfile(source, copy)
        with CredentialRegistry(copy) as registry:
            start = time.perf_counter_ns()
            marked = registry.revoke([pair], reason="benchmark", now=NOW)
            timings.append(time.perf_counter_ns() - start)
            returned = [credential.jti for credential in marked]
            if returned != sorted(expected):
                raise AssertionError(
                    f"revoking {pair} returned {len(returned)} credentials, "
                    f"expected exactly the {len(expected)} live ones recorded with it"
                )
        copy.unlink()
    return statistics.median(timings) / 1e6


def record_us(source: Path, samples: int) -> float:
    """The median time of one ``record()`` into a copy of ``source`` (synced commits)."""
    copy = source.with_name("copy-record.db")
    shutil.copyfile(source, copy)
    rng = random.Random(7)
    counter = iter(range(10**9))

    with CredentialRegistry(copy) as registry:

        def one() -> None:
            jti = f"new-{next(counter)}"
            registry.record(
                jti=jti,
                subject=f"spiffe://acme.example/workload/{jti}",
                audience="payments",
                issued_at=NOW,
                expires_at=NOW + timedelta(minutes=15),
                revocable=_pairs(rng, jti),
            )

        median = median_us(one, samples)
    copy.unlink()
    return median


def list_us(source: Path, revoke: Pair, samples: int) -> tuple[float, float, int]:
    """The median time of reading the revocation list after ``revoke``: read anew (as after
    any revocation) and unchanged (one row read); and the list's length."""
    copy = source.with_name("copy-list.db")
    shutil.copyfile(source, copy)
    with CredentialRegistry(copy) as registry:
        registry.revoke([revoke], reason="benchmark", now=NOW)

        def anew() -> None:
            registry._listed = None  # as if another process had just revoked something
            registry.revoked(now=NOW)

        changed = median_us(anew, samples)
        unchanged = median_us(lambda: registry.revoked(now=NOW), samples)
        length = len(registry.revoked(now=NOW).revoked)
    copy.unlink()
    return changed, unchanged, length


def main(quick: bool) -> None:
    """Build the registry once, then print the medians."""
    runs, samples = (3, 100) if quick else (7, 500)
    with tempfile.TemporaryDirectory() as directory:
        source = Path(directory) / "credentials.db"
        start = time.perf_counter()
        live = build(source)
        elapsed = time.perf_counter() - start
        print(f"built {LIVE} live + {EXPIRED} expired credentials with record(): {elapsed:.1f} s")
        signer = ("signer_subjects", "https://ci.example/signer-42")
        node = ("node_ids", "tpm-ek-7")
        print(f"{'operation':58} {'median':>10}  runs")
        for pair in (signer, node):
            milliseconds = revoke_ms(source, pair, live[pair], runs)
            what = f"revoke one {pair[0][:-1]} ({len(live[pair])} live dependents, exact)"
            print(f"{what:58} {milliseconds:8.2f} ms  {runs}")
        changed, unchanged, length = list_us(source, node, samples)
        for state, median in (("read anew", changed), ("unchanged", unchanged)):
            what = f"revocation list of {length}, {state}"
            print(f"{what:58} {median:8.0f} us  {samples}")
        per_record = record_us(source, samples)
        print(
            f"{'record() into the 100k registry (synced commit)':58} "
            f"{per_record:8.0f} us  {samples}  ({1e6 / per_record:.0f} records/s)"
        )


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
