"""Issue 11: issuing a credential on a decision-cache hit, against the decision alone.

``CredentialBroker.issue_for_claims`` with the same (fresh, realistic) claim set repeated, so
every decision is a cache hit: p50 and p99, and the ratio of each median to ``decide()`` on
a hit. Each issuance is timed interleaved with a ``decide()`` hit, so a noisy neighbour slows
both alike. The parts are timed too (validating the claim set, signing), and issuance with a
registry (a SQLite file: the record, synced, and the confirming decision).

Run from the repository root: ``.venv/bin/python benchmarks/bench_broker.py [--quick]``.
"""

from __future__ import annotations

import functools
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "attestpolicy" / "examples"

from attestpolicy import ClaimSet, PolicyDecisionPoint  # noqa: E402
from attestpolicy.broker import CredentialBroker, CredentialRegistry, SigningKey  # noqa: E402
from attestpolicy.claims import format_timestamp  # noqa: E402


@dataclass(frozen=True)
class Result:
    """One operation: p50 and p99 in microseconds, and the p50 of ``decide()`` on a hit
    measured alongside it."""

    name: str
    samples: int
    p50_us: float
    p99_us: float
    decide_p50_us: float

    @property
    def ratio(self) -> float:
        """The median against ``decide()`` on a hit."""
        return self.p50_us / self.decide_p50_us


def fresh_claims() -> dict[str, Any]:
    """The realistic example claim set, fresh now: no ``now`` (the broker's clock decides),
    the node quote a minute old, the runtime identity valid for an hour."""
    claims: dict[str, Any] = json.loads(
        (EXAMPLES / "claims" / "allow-fully-attested.json").read_text()
    )
    claims.pop("now")
    current = datetime.now(UTC).replace(microsecond=0)
    claims["node"]["issued_at"] = format_timestamp(current - timedelta(minutes=1))
    claims["runtime"]["expires_at"] = format_timestamp(current + timedelta(hours=1))
    return claims


def _percentile(timings: list[int], fraction: float) -> float:
    ordered = sorted(timings)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] / 1000


def beside_decide(
    name: str,
    operation: Callable[[], object],
    decide: Callable[[], object],
    samples: int,
) -> Result:
    """Time ``operation`` and a ``decide()`` hit in turns, after a warm-up."""
    for _ in range(samples // 10 + 20):
        operation()
        decide()
    measured, decided = [], []
    clock = time.perf_counter_ns
    for _ in range(samples):
        start = clock()
        operation()
        middle = clock()
        decide()
        end = clock()
        measured.append(middle - start)
        decided.append(end - middle)
    return Result(
        name,
        samples,
        _percentile(measured, 0.5),
        _percentile(measured, 0.99),
        _percentile(decided, 0.5),
    )


def results(quick: bool) -> list[Result]:
    """Every row, from one run."""
    samples = 500 if quick else 3000
    claims = fresh_claims()
    config = json.loads((EXAMPLES / "config.json").read_text())
    rows = []
    with PolicyDecisionPoint.local(config=config) as pdp, tempfile.TemporaryDirectory() as tmp:

        def decide() -> object:
            return pdp.decide(claims)

        assert pdp.decide(claims).allow
        es256, eddsa = SigningKey.generate("ES256"), SigningKey.generate("EdDSA")
        payload = {"sub": claims["subject"]["spiffe_id"], "aud": "vault", "iat": 1, "exp": 2}
        rows.append(beside_decide("decide() hit (itself)", decide, decide, samples))
        rows.append(
            beside_decide(
                "ClaimSet.parse (the claim set)", lambda: ClaimSet.parse(claims), decide, samples
            )
        )
        rows.append(
            beside_decide("sign a JWT, ES256", lambda: es256.sign(payload), decide, samples)
        )
        rows.append(
            beside_decide("sign a JWT, EdDSA", lambda: eddsa.sign(payload), decide, samples)
        )
        for key in (es256, eddsa):
            broker = CredentialBroker(pdp, key, "https://broker.bench")
            assert broker.issue_for_claims(claims).issued
            rows.append(
                beside_decide(
                    f"issue_for_claims() hit, {key.algorithm}",
                    functools.partial(broker.issue_for_claims, claims),
                    decide,
                    samples,
                )
            )
        broker = CredentialBroker(pdp, es256, "https://broker.bench")
        parsed = ClaimSet.parse(claims)
        rows.append(
            beside_decide(
                "issue_for_claims(ClaimSet) hit, ES256 (parsed once)",
                lambda: broker.issue_for_claims(parsed),
                decide,
                samples,
            )
        )
        rows.append(
            beside_decide(
                "ear_for_claims() hit, ES256",
                lambda: broker.ear_for_claims(claims),
                decide,
                samples,
            )
        )
        with CredentialRegistry(Path(tmp) / "credentials.db") as registry:
            recorded = CredentialBroker(pdp, es256, "https://broker.bench", registry)
            assert recorded.issue_for_claims(claims).issued
            rows.append(
                beside_decide(
                    "issue_for_claims() hit + registry (synced record)",
                    lambda: recorded.issue_for_claims(claims),
                    decide,
                    max(100, samples // 10),
                )
            )
    return rows


def main(quick: bool) -> None:
    """Print the table: p50, p99, samples and the ratio to a decide() hit."""
    rows = results(quick)
    print(f"{'operation':52} {'p50':>9} {'p99':>9} {'samples':>8}  {'/ decide() hit':>14}")
    for row in rows:
        print(
            f"{row.name:52} {row.p50_us:6.1f} us {row.p99_us:6.1f} us {row.samples:8}  "
            f"{row.ratio:13.1f}x"
        )


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
