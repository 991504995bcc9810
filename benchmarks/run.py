"""attestpolicy benchmarks: medians, p99s and ratios from one run.

Run from the repository root (after the README's set-up command)::

    .venv/bin/python benchmarks/run.py            # full run (about two minutes)
    .venv/bin/python benchmarks/run.py --quick    # fewer iterations
    .venv/bin/python benchmarks/run.py --scale    # ... plus decision time vs configuration
                                                  # size, regorus and OPA (benchmarks/scale.py)
    .venv/bin/python benchmarks/run.py --services # ... plus the broker, registry and PEP
                                                  # benchmarks (issue 11)

It ends with issue 10's goals, each PASS or FAIL against its target (the ``goals(quick)``
of benchmarks/bench_*.py; each also runs alone: ``python benchmarks/bench_pdp.py``).

Machines are shared and noisy: compare the ratios printed at the end, not absolute
times across runs. Nothing here is asserted; the test suite never times anything.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "attestpolicy" / "examples"

sys.path.insert(0, str(ROOT / "benchmarks"))

from attestpolicy.claims import format_timestamp  # noqa: E402  (after the path set-up)


@dataclass(frozen=True)
class Row:
    """One measured operation."""

    name: str
    samples: int
    p50_us: float
    p99_us: float


def measure(name: str, operation: Callable[[], object], samples: int, warmup: int = 50) -> Row:
    """Time ``operation`` ``samples`` times (after a warm-up); p50 and p99 in microseconds."""
    for _ in range(warmup):
        operation()
    timings = []
    clock = time.perf_counter_ns
    for _ in range(samples):
        start = clock()
        operation()
        timings.append(clock() - start)
    timings.sort()
    return Row(
        name,
        samples,
        timings[len(timings) // 2] / 1000,
        timings[min(len(timings) - 1, int(len(timings) * 0.99))] / 1000,
    )


def realistic_claims() -> dict[str, Any]:
    """Image + provenance + TPM node with 24 PCRs + runtime, fresh at the current time.

    No ``now`` in the claims (the PDP uses its clock, as a PEP would): the node quote is
    stamped a minute ago and the runtime identity expires in an hour.
    """
    claims: dict[str, Any] = json.loads(
        (EXAMPLES / "claims" / "allow-fully-attested.json").read_text()
    )
    claims.pop("now")
    current = datetime.now(UTC).replace(microsecond=0)
    claims["node"]["issued_at"] = format_timestamp(current - timedelta(minutes=1))
    claims["runtime"]["expires_at"] = format_timestamp(current + timedelta(hours=1))
    return claims


def example_config() -> dict[str, Any]:
    """The shipped example configuration."""
    config: dict[str, Any] = json.loads((EXAMPLES / "config.json").read_text())
    return config


# --- in-process ------------------------------------------------------------------


def bench_in_process(scale: int) -> list[Row]:
    """decide() on a miss and on hits with each cache implementation; raw cache lookups."""
    from attestpolicy import PolicyDecisionPoint
    from attestpolicy.engine.cache import load_implementation

    claims, config = realistic_claims(), example_config()
    rows = []
    uncached = PolicyDecisionPoint.local(config=config, cache=False)
    assert uncached.decide(claims).allow
    rows.append(
        measure(
            "decide() miss (validate + regorus)",
            lambda: uncached.decide(claims),
            400 * scale,
        )
    )
    opa = PolicyDecisionPoint.local(config=config, cache=False, engine="opa")
    assert opa.decide(claims).allow
    rows.append(
        measure("decide() miss (validate + OPA's engine)", lambda: opa.decide(claims), 400 * scale)
    )
    for name in ("cython", "python"):
        try:
            implementation = load_implementation(name)
        except ImportError as exc:
            print(f"  ({name} cache unavailable: {exc})")
            continue
        pdp = PolicyDecisionPoint.local(config=config, cache=implementation.cache_class())
        assert pdp.decide(claims).allow
        rows.append(
            measure(
                f"decide() hit, {name} cache",
                functools.partial(pdp.decide, claims),
                5000 * scale,
            )
        )
        cache = implementation.cache_class()
        decision = pdp.decide(claims)  # carries its ttl_terms and revocable values
        moment = decision.evaluated_at  # its TTL is what its terms give at this instant
        ticket, _ = cache.lookup(claims, "rev", moment)
        assert cache.store(ticket, decision, now=moment)
        rows.append(
            measure(
                f"cache lookup hit (key + entry), {name}",
                functools.partial(cache.lookup, claims, "rev", moment),
                5000 * scale,
            )
        )
    return rows


# --- remote over loopback -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serve(workers: int) -> Iterator[str]:
    """Run ``attestpolicy serve`` with ``workers`` processes on a free loopback port."""
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "attestpolicy",
        "serve",
        "--addr",
        f"127.0.0.1:{port}",
        "--config",
        str(EXAMPLES / "config.json"),
        "--workers",
        str(workers),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        import requests

        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(url + "/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("attestpolicy serve did not start")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def bench_remote(scale: int) -> list[Row]:
    """decide() through the remote evaluator against `attestpolicy serve` (1 worker)."""
    from attestpolicy import PolicyDecisionPoint

    claims = realistic_claims()
    with serve(workers=1) as url:
        pdp = PolicyDecisionPoint.remote(url)
        decision = pdp.decide(claims)
        assert decision.allow, decision.reasons
        return [
            measure(
                "decide() remote over loopback",
                lambda: pdp.decide(claims),
                200 * scale,
                warmup=20,
            )
        ]


def _client(url: str, requests_per_client: int, payload: bytes, result: Any) -> None:
    import requests

    session = requests.Session()
    endpoint = url + "/v1/data/attestpolicy/v1/decision"
    start = time.perf_counter()
    for _ in range(requests_per_client):
        response = session.post(
            endpoint, data=payload, headers={"Content-Type": "application/json"}
        )
        if response.status_code != 200 or not response.json()["result"]["allow"]:
            raise RuntimeError(f"unexpected response {response.status_code}")
    result.put(time.perf_counter() - start)


def bench_throughput(scale: int) -> list[tuple[int, float]]:
    """Requests per second against `serve` with 1 and 2 workers (2 client processes)."""
    from attestpolicy.claims import ClaimSet

    payload = json.dumps(
        {"input": ClaimSet.parse(realistic_claims()).with_now(datetime.now(UTC)).to_input()}
    ).encode()
    per_client = 250 * scale
    results = []
    for workers in (1, 2):
        with serve(workers) as url:
            queue: Any = multiprocessing.Queue()
            clients = [
                multiprocessing.Process(target=_client, args=(url, per_client, payload, queue))
                for _ in range(2)
            ]
            start = time.perf_counter()
            for client in clients:
                client.start()
            for client in clients:
                client.join(timeout=600)
            elapsed = time.perf_counter() - start
            if any(client.exitcode != 0 for client in clients):
                raise RuntimeError("a load client failed")
            results.append((workers, 2 * per_client / elapsed))
    return results


# --- evidence verifiers -------------------------------------------------------------


def bench_verifiers(scale: int) -> list[Row]:
    """p50 of each evidence verifier on a real vector."""
    from verifier_cases import verifier_cases

    return [measure(name, operation, 20 * scale, warmup=3) for name, operation in verifier_cases()]


# --- report -------------------------------------------------------------------------


def print_table(title: str, rows: list[Row]) -> None:
    """One aligned table."""
    print(f"\n{title}")
    width = max(len(row.name) for row in rows)
    print(f"  {'operation'.ljust(width)}  {'samples':>8}  {'p50 us':>10}  {'p99 us':>10}")
    for row in rows:
        print(
            f"  {row.name.ljust(width)}  {row.samples:>8}  {row.p50_us:>10.1f}  {row.p99_us:>10.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark and print the tables and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument(
        "--scale",
        action="store_true",
        help="also time decisions against configuration size (benchmarks/scale.py)",
    )
    parser.add_argument(
        "--services",
        action="store_true",
        help="also the broker, registry and PEP benchmarks (issue 11)",
    )
    args = parser.parse_args(argv)
    scale = 1 if args.quick else 5
    print(
        f"attestpolicy benchmarks ({'quick' if args.quick else 'full'}), "
        f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}"
    )

    decide_rows = bench_in_process(scale) + bench_remote(scale)
    print_table(
        "decide() on the realistic claim set (image + provenance + 24 PCRs + runtime)", decide_rows
    )
    by_name = {row.name: row for row in decide_rows}

    throughput = bench_throughput(scale)
    print("\nattestpolicy serve throughput (2 client processes, keep-alive)")
    for workers, rate in throughput:
        print(f"  {workers} worker(s): {rate:8.0f} decisions/s")

    verifier_rows = bench_verifiers(scale)
    print_table("evidence verifiers (real vectors)", verifier_rows)

    print("\nratios (p50)")

    def ratio(label: str, slow: str, fast: str) -> None:
        if slow in by_name and fast in by_name:
            print(f"  {label}: {by_name[slow].p50_us / by_name[fast].p50_us:8.1f}x")

    ratio("miss / cython hit", "decide() miss (validate + regorus)", "decide() hit, cython cache")
    ratio(
        "OPA's engine miss / regorus miss",
        "decide() miss (validate + OPA's engine)",
        "decide() miss (validate + regorus)",
    )
    ratio("python hit / cython hit", "decide() hit, python cache", "decide() hit, cython cache")
    ratio(
        "python lookup / cython lookup",
        "cache lookup hit (key + entry), python",
        "cache lookup hit (key + entry), cython",
    )
    ratio("remote / cython hit", "decide() remote over loopback", "decide() hit, cython cache")
    ratio("remote / miss", "decide() remote over loopback", "decide() miss (validate + regorus)")
    if len(throughput) == 2:
        print(f"  serve 2 workers / 1 worker: {throughput[1][1] / throughput[0][1]:8.2f}x")
    if args.scale:
        import scale as scale_benchmark  # benchmarks/scale.py

        rows = scale_benchmark.run(600 * scale, verbose=False)
        scale_benchmark.print_scale_table(rows)
    print_goals(args.quick)
    if args.services:
        print_sections(args.quick)
    return 0


GOAL_MODULES = (
    "bench_pdp",
    "bench_rvm",
    "bench_evidence",
    "bench_remote",
    "bench_serve",
    "bench_ops",
    "bench_startup",
)
"""The modules (in benchmarks/) whose ``goals(quick)`` give the goal rows (issue 10's,
issue 12's cost of logs and metrics, and issue 13's command-line start-up)."""


def print_goals(quick: bool) -> None:
    """Every performance goal from this run, PASS or FAIL against its target."""
    print("\ngoals (issues 10, 12 and 13; one run, medians)")
    for name in GOAL_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            print(f"  (benchmarks/{name}.py not present)")
            continue
        try:
            goals = module.goals(quick)
        except Exception as exc:  # one broken benchmark must not hide the other goals
            print(f"  FAIL  benchmarks/{name}.py could not measure: {type(exc).__name__}: {exc}")
            continue
        for goal in goals:
            print(f"  {goal.line()}")


SECTION_MODULES = ("bench_broker", "bench_registry", "bench_pep")
"""The modules (in benchmarks/) whose ``main(quick)`` print the broker, registry and PEP
tables (issue 11), with ``--services``."""


def print_sections(quick: bool) -> None:
    """The broker, registry and PEP benchmarks, each as its own table."""
    for name in SECTION_MODULES:
        print(f"\n== benchmarks/{name}.py")
        try:
            importlib.import_module(name).main(quick)
        except ModuleNotFoundError:
            print(f"  (benchmarks/{name}.py not present)")
        except Exception as exc:
            print(f"  could not measure: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
