"""Issue 10, goals 1, 3, 8 and 9: the PDP's own costs, against the engine and at scale.

- goal 1: a cache miss against the raw engine evaluation of the same engine input;
- goal 3: ``PolicyDecisionPoint.local()`` and ``revoke()`` with 100k workloads, and the
  memory an extra deciding thread costs there; beside it, the pause of a full garbage
  collection there, with the heap frozen as ``serve`` freezes it (target 10 ms, ours) and
  without (a library process that does not freeze it);
- goal 8: ``import attestpolicy`` (a PDP-only import), in a fresh interpreter;
- goal 9: a repeated deny with ``negative_ttl_seconds`` against a cache hit.

Run from the repository root: ``.venv/bin/python benchmarks/bench_pdp.py [--quick]``.
"""

from __future__ import annotations

import copy
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from goals import Goal, installed_bytecode_environment, median_us  # noqa: E402
from scale import with_workloads  # noqa: E402

from attestpolicy import ClaimSet, PolicyDecisionPoint  # noqa: E402

EXAMPLES = ROOT / "attestpolicy" / "examples"
DECISION_RULE = "data.attestpolicy.v1.decision"


def _claims(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / "claims" / f"{name}.json").read_text())
    return data


def miss_against_engine(samples: int) -> Goal:
    """decide() on a claim set never seen (cache on) / set_input + eval_rule of its input."""
    config = json.loads((EXAMPLES / "config.json").read_text())
    pdp = PolicyDecisionPoint.local(config=config)
    claims = _claims("allow-fully-attested")
    variants = []
    for index in range(samples * 2 + 200):
        variant = copy.deepcopy(claims)
        variant["request"]["requested_ttl_seconds"] = 600 + index  # a new key each time
        variants.append(variant)
    evaluator = pdp._evaluator  # the same engine the PDP uses, raw
    engine = evaluator._engine_for(evaluator._state)  # type: ignore[attr-defined]
    policy_input = ClaimSet.parse(claims).to_input()

    def raw() -> object:
        engine.set_input(policy_input)
        return engine.eval_rule(DECISION_RULE)

    # Interleaved, one of each per round, so a noisy neighbour slows both alike.
    misses, raws = [], []
    clock = time.perf_counter_ns
    for index, variant in enumerate(variants):
        start = clock()
        pdp.decide(variant)
        middle = clock()
        raw()
        end = clock()
        if index >= 100:  # warm-up
            misses.append(middle - start)
            raws.append(end - middle)
    miss, engine_us = statistics.median(misses) / 1000, statistics.median(raws) / 1000
    pdp.close()
    return Goal(
        "cache miss / raw engine",
        miss / engine_us,
        1.15,
        detail=f"miss {miss:.0f} us, engine {engine_us:.0f} us",
    )


def deny_against_hit(samples: int) -> Goal:
    """A repeated deny with negative caching / a repeated allow (both cache hits)."""
    config = json.loads((EXAMPLES / "config.json").read_text())
    pdp = PolicyDecisionPoint.local(config=config, negative_ttl_seconds=60)
    allow, deny = _claims("allow-fully-attested"), _claims("deny-stale-node")
    hit = median_us(lambda: pdp.decide(allow), samples)
    repeated_deny = median_us(lambda: pdp.decide(deny), samples)
    pdp.close()
    return Goal(
        "repeated deny (negative_ttl_seconds) / cache hit",
        repeated_deny / hit,
        1.2,
        detail=f"deny {repeated_deny:.1f} us, hit {hit:.1f} us",
    )


def import_time() -> Goal:
    """``from attestpolicy import PolicyDecisionPoint`` in a fresh interpreter, bytecode
    cached as after an install (the median of 5): ``import attestpolicy`` alone loads
    nothing (its names load on first use)."""
    code = (
        "import time; t = time.perf_counter(); from attestpolicy import PolicyDecisionPoint; "
        "print(time.perf_counter() - t)"
    )
    with tempfile.TemporaryDirectory(prefix="attestpolicy-pycache-") as cache:
        env = installed_bytecode_environment(cache)

        def once() -> float:
            argv = [sys.executable, "-c", code]
            run = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
            return float(run.stdout)

        once()  # the warm-up writes the bytecode, as an install does
        seconds = statistics.median(once() for _ in range(5))
    return Goal("import PolicyDecisionPoint", seconds, 0.2, unit=" s")


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _full_collection_ms() -> float:
    start = time.perf_counter()
    gc.collect()
    return (time.perf_counter() - start) * 1000


def collection_pause(pdp: PolicyDecisionPoint, label: str) -> Goal:
    """One full garbage collection with ``pdp`` loaded: the pause the decision that
    triggers it waits out, as a library process has it and with the heap frozen as each
    ``serve`` process freezes it (``create_serve_app``). The heap is unfrozen after."""
    assert pdp.revision  # alive and loaded
    unfrozen = statistics.median(_full_collection_ms() for _ in range(3))
    gc.freeze()
    try:
        frozen = statistics.median(_full_collection_ms() for _ in range(3))
    finally:
        gc.unfreeze()
    detail = f"not frozen (a library process): {unfrozen:.0f} ms"
    name = f"full GC pause with {label}, heap frozen as serve does"
    return Goal(name, frozen, 10, unit=" ms", detail=detail)


def at_scale(workloads: int) -> list[Goal]:
    """local(), revoke(), a full collection's pause and an extra thread's memory with
    ``workloads`` workloads."""
    config = with_workloads(workloads)
    claims = _claims("allow-fully-attested")
    start = time.perf_counter()
    pdp = PolicyDecisionPoint.local(config=config)
    local_s = time.perf_counter() - start
    assert pdp.decide(claims).allow
    start = time.perf_counter()
    pdp.revoke(node_id="tpm-ek:sha256:" + "0" * 64, reason="benchmark")
    pdp.decide(claims)  # the revocation is in force on this thread's next decision
    revoke_ms = (time.perf_counter() - start) * 1000
    label = f"{workloads // 1000}k workloads"
    pause = collection_pause(pdp, label)
    before = _rss_mib()
    decided, measured = threading.Event(), threading.Event()

    def decide_and_hold() -> None:  # the thread's engine lives as long as the thread
        unseen = copy.deepcopy(claims)  # a cache miss: this thread evaluates
        unseen["request"]["requested_ttl_seconds"] = 601
        pdp.decide(unseen)
        decided.set()
        measured.wait()

    thread = threading.Thread(target=decide_and_hold)
    thread.start()
    decided.wait()
    per_thread = _rss_mib() - before
    measured.set()
    thread.join()
    pdp.close()
    return [
        Goal(f"local() with {label}", local_s, 1.0, unit=" s"),
        Goal(f"revoke() with {label}", revoke_ms, 50, unit=" ms"),
        pause,
        Goal(f"memory of an extra deciding thread, {label}", per_thread, 10, unit=" MiB"),
    ]


def goals(quick: bool) -> list[Goal]:
    """Goals 1, 3, 8 and 9 from one run."""
    samples = 200 if quick else 1000
    return [
        miss_against_engine(samples),
        deny_against_hit(samples),
        import_time(),
        *at_scale(100_000),
    ]


if __name__ == "__main__":
    for goal in goals(quick="--quick" in sys.argv):
        print(goal.line())
