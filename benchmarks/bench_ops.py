"""Issue 12: what operating it costs a decision: decision logs (and metrics).

Decision logs (a ``DecisionLogger`` with the default masks, writing JSON lines to a file
in a temporary directory), each timed interleaved against the same decision without it
(one of each per round, the order alternating, so a noisy neighbour slows both alike):

- on a cache miss (a claim set never seen before, cache on): goal <= 1.05x;
- on a cache hit: goal, the hit's cost plus the enqueue: the logged hit against a hit
  with an observer that does nothing (the PDP's record of the decision) plus
  ``on_decision`` alone (the enqueue), <= 1.10x;
- the writer thread's own work per event (the policy input, masks, JSON, the file), off
  the deciding thread but on the same GIL, and the throughput of misses with the writer
  included (N logged decisions and the flush, against N plain ones).

Metrics (``attestpolicy.metrics.Metrics`` observing the PDP) the same way, alone and with
the decision log: on a miss <= 1.05x; on a hit, against the hit with a record (with the
decision log: plus the enqueue), <= 1.10x: a hit is only noted in a deque on the deciding
thread; the metrics thread's work per hit (counting what was noted) is measured apart.

Run from the repository root: ``.venv/bin/python benchmarks/bench_ops.py [--quick]``.
"""

from __future__ import annotations

import copy
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from goals import Goal  # noqa: E402  (after the path set-up)

from attestpolicy import PolicyDecisionPoint  # noqa: E402
from attestpolicy.decisionlog import DecisionLogger, FileSink  # noqa: E402
from attestpolicy.metrics import Metrics  # noqa: E402
from attestpolicy.observe import DecisionRecord  # noqa: E402

EXAMPLES = ROOT / "attestpolicy" / "examples"


@dataclass(frozen=True)
class Row:
    """One measured operation: median and p99 in microseconds."""

    name: str
    p50_us: float
    p99_us: float | None
    samples: int


class _Recorder:
    """An observer that keeps the records (to replay them into a logger)."""

    def __init__(self) -> None:
        self.records: list[DecisionRecord] = []

    def on_decision(self, record: DecisionRecord) -> None:
        self.records.append(record)


class _Nothing:
    """An observer that does nothing: what the PDP's record of a decision costs."""

    def on_decision(self, record: DecisionRecord) -> None:
        """Nothing."""


def _config() -> dict[str, Any]:
    config: dict[str, Any] = json.loads((EXAMPLES / "config.json").read_text())
    return config


def _claims() -> dict[str, Any]:
    claims: dict[str, Any] = json.loads(
        (EXAMPLES / "claims" / "allow-fully-attested.json").read_text()
    )
    return claims


def _variants(count: int) -> list[dict[str, Any]]:
    """Claim sets that differ in their cache key (each decided once: a miss)."""
    claims = _claims()
    variants = []
    for index in range(count):
        variant = copy.deepcopy(claims)
        variant["request"]["requested_ttl_seconds"] = 600 + index
        variants.append(variant)
    return variants


def _interleaved(operations: dict[str, Callable[[int], object]], rounds: int) -> list[Row]:
    """Each operation once per round (``operation(round)``), the order reversed every
    other round, after a warm-up of a tenth; p50 and p99 per operation."""
    warmup = rounds // 10 + 5
    timings: dict[str, list[int]] = {name: [] for name in operations}
    names = list(operations)
    clock = time.perf_counter_ns
    for index in range(rounds + warmup):
        for name in names if index % 2 else reversed(names):
            start = clock()
            operations[name](index)
            elapsed = clock() - start
            if index >= warmup:
                timings[name].append(elapsed)
    return [
        Row(name, statistics.median(t) / 1000, statistics.quantiles(t, n=100)[98] / 1000, len(t))
        for name, t in timings.items()
    ]


def _logger(folder: Path, name: str) -> DecisionLogger:
    return DecisionLogger(FileSink(folder / f"{name}.jsonl"))


def miss_rows(rounds: int, folder: Path) -> tuple[list[Row], str]:
    """decide() on a miss, with and without a decision log (interleaved)."""
    variants = _variants(2 * (rounds + rounds // 10 + 5))
    config = _config()
    metrics, both_metrics = Metrics(), Metrics()
    with (
        PolicyDecisionPoint.local(config=config) as plain,
        PolicyDecisionPoint.local(config=config) as logged,
        PolicyDecisionPoint.local(config=config) as counted,
        PolicyDecisionPoint.local(config=config) as both,
        _logger(folder, "miss") as logger,
        _logger(folder, "miss-both") as both_logger,
    ):
        logged.add_observer(logger)
        metrics.observe(counted)
        both.add_observer(both_logger)
        both_metrics.observe(both)
        rows = _interleaved(
            {
                "decide() miss": lambda i: plain.decide(variants[2 * i]),
                "decide() miss, decision log on": lambda i: logged.decide(variants[2 * i + 1]),
                "decide() miss, metrics on": lambda i: counted.decide(variants[2 * i]),
                "decide() miss, decision log and metrics on": (
                    lambda i: both.decide(variants[2 * i + 1])
                ),
            },
            rounds,
        )
        logger.flush(120)
        stats = logger.stats()
    metrics.close()
    both_metrics.close()
    return rows, f"{stats.written} events written, {stats.dropped} dropped"


def hit_rows(rounds: int, folder: Path) -> tuple[list[Row], str]:
    """decide() on a hit: plain, with an observer that does nothing, with a decision log;
    and on_decision alone (the enqueue)."""
    claims = _claims()
    config = _config()
    recorder = _Recorder()
    metrics, both_metrics = Metrics(), Metrics()
    with (
        PolicyDecisionPoint.local(config=config) as plain,
        PolicyDecisionPoint.local(config=config) as observed,
        PolicyDecisionPoint.local(config=config) as logged,
        PolicyDecisionPoint.local(config=config) as counted,
        PolicyDecisionPoint.local(config=config) as both,
        _logger(folder, "hit") as logger,
        _logger(folder, "enqueue") as enqueue_only,
        _logger(folder, "hit-both") as both_logger,
    ):
        observed.add_observer(_Nothing())
        logged.add_observer(logger)
        logged.add_observer(recorder)
        metrics.observe(counted)
        both.add_observer(both_logger)
        both_metrics.observe(both)
        for pdp in (plain, observed, logged, counted, both):
            pdp.decide(claims)  # cached from now on
        record = recorder.records[-1]
        logged.remove_observer(recorder)
        rows = _interleaved(
            {
                "decide() hit": lambda _: plain.decide(claims),
                "decide() hit, an observer doing nothing": lambda _: observed.decide(claims),
                "decide() hit, decision log on": lambda _: logged.decide(claims),
                "on_decision() alone (the enqueue)": lambda _: enqueue_only.on_decision(record),
                "decide() hit, metrics on": lambda _: counted.decide(claims),
                "decide() hit, decision log and metrics on": lambda _: both.decide(claims),
            },
            rounds,
        )
        logger.flush(120)
        stats = logger.stats()
    metrics.close()
    both_metrics.close()
    detail = f"{stats.written} events written, {stats.dropped} dropped"
    if stats.dropped:
        detail += " (back-to-back hits outran the writer: the oldest were dropped, as designed)"
    return rows, detail


def writer_rows(count: int, folder: Path) -> list[Row]:
    """The writer thread's work per event (records of misses and of hits, replayed into a
    logger, timed from the first enqueue to the end of the flush)."""
    config = _config()
    recorder = _Recorder()
    claims = _claims()
    with PolicyDecisionPoint.local(config=config) as pdp:
        pdp.add_observer(recorder)
        for variant in _variants(count):
            pdp.decide(variant)
        misses = list(recorder.records)
        recorder.records.clear()
        for _ in range(count):
            pdp.decide(claims)
        hits = recorder.records[1:]  # the first was a miss
    rows = []
    for name, records in (("miss", misses), ("hit", hits)):
        with DecisionLogger(FileSink(folder / f"writer-{name}.jsonl"), buffer_size=count) as logger:
            start = time.perf_counter_ns()
            for record in records:
                logger.on_decision(record)
            logger.flush(300)
            per_event = (time.perf_counter_ns() - start) / len(records) / 1000
        rows.append(Row(f"writer thread, per event ({name} record)", per_event, None, len(records)))
    return rows


def metrics_thread_rows(count: int) -> list[Row]:
    """A hit's cost to the metrics: noting it (``on_decision``, on the deciding thread)
    and counting it (``close`` counts what was noted: the thread's work), per hit."""
    recorder = _Recorder()
    claims = _claims()
    with PolicyDecisionPoint.local(config=_config()) as pdp:
        pdp.add_observer(recorder)
        pdp.decide(claims)
        pdp.decide(claims)
    hit = recorder.records[-1]  # the first was a miss
    metrics = Metrics()
    start = time.perf_counter_ns()
    for _ in range(count):
        metrics.on_decision(hit)
    noted = time.perf_counter_ns()
    metrics.close()
    counted = time.perf_counter_ns()
    return [
        Row(
            "metrics, per hit: noted (deciding thread)", (noted - start) / count / 1000, None, count
        ),
        Row(
            "metrics, per hit: counted (its thread)", (counted - noted) / count / 1000, None, count
        ),
    ]


def throughput_row(rounds: int, folder: Path) -> tuple[float, str]:
    """Misses in blocks, the writer's work included: each round decides a block without a
    decision log, then a block with one and flushes it; the median block times compared."""
    block = 100
    variants = _variants(2 * block * rounds)
    config = _config()
    plain_times, logged_times = [], []
    clock = time.perf_counter_ns
    with (
        PolicyDecisionPoint.local(config=config) as plain,
        PolicyDecisionPoint.local(config=config) as logged,
        _logger(folder, "throughput") as logger,
    ):
        logged.add_observer(logger)
        for index in range(rounds):
            start = 2 * block * index
            begin = clock()
            for variant in variants[start : start + block]:
                plain.decide(variant)
            middle = clock()
            for variant in variants[start + block : start + 2 * block]:
                logged.decide(variant)
            logger.flush(300)
            plain_times.append(middle - begin)
            logged_times.append(clock() - middle)
    plain_ms = statistics.median(plain_times) / 1e6
    logged_ms = statistics.median(logged_times) / 1e6
    detail = (
        f"blocks of {block} misses: {plain_ms:.0f} ms plain, {logged_ms:.0f} ms logged and flushed"
    )
    return logged_ms / plain_ms, detail


def _median(rows: list[Row], name: str) -> float:
    return next(row.p50_us for row in rows if row.name == name)


def measure(quick: bool) -> tuple[list[Row], list[Goal], list[str]]:
    """Every row, the goals, and notes, from one run."""
    rounds = 150 if quick else 1000
    hit_rounds = 2000 if quick else 20000
    with tempfile.TemporaryDirectory(prefix="attestpolicy-bench-ops-") as name:
        folder = Path(name)
        misses, miss_detail = miss_rows(rounds, folder)
        hits, hit_detail = hit_rows(hit_rounds, folder)
        writer = writer_rows(200 if quick else 1000, folder)
        writer += metrics_thread_rows(2000 if quick else 20000)
        throughput, throughput_detail = throughput_row(3 if quick else 10, folder)
    miss, logged_miss = _median(misses, "decide() miss"), _median(misses, misses[1].name)
    hit = _median(hits, "decide() hit")
    observed = _median(hits, "decide() hit, an observer doing nothing")
    logged_hit = _median(hits, "decide() hit, decision log on")
    enqueue = _median(hits, "on_decision() alone (the enqueue)")
    goals = [
        Goal(
            "decision log on a cache miss",
            logged_miss / miss,
            1.05,
            detail=f"miss {miss:.0f} us, logged {logged_miss:.0f} us ({miss_detail})",
        ),
        Goal(
            "decision log on a cache hit / (hit + record + enqueue)",
            logged_hit / (observed + enqueue),
            1.10,
            detail=(
                f"hit {hit:.2f} us, with a record {observed:.2f} us, enqueue {enqueue:.2f} us,"
                f" logged {logged_hit:.2f} us"
            ),
        ),
        *_metrics_goals(misses, hits),
    ]
    notes = [
        f"hits: {hit_detail}",
        f"misses with the writer's work included: {throughput:.2f}x ({throughput_detail})",
    ]
    return [*misses, *hits, *writer], goals, notes


def _metrics_goals(misses: list[Row], hits: list[Row]) -> list[Goal]:
    """The goals of the metrics, alone and with the decision log."""
    miss = _median(misses, "decide() miss")
    observed = _median(hits, "decide() hit, an observer doing nothing")
    enqueue = _median(hits, "on_decision() alone (the enqueue)")
    measured = []
    for what, parts, extra in (
        ("metrics", "", 0.0),
        ("decision log and metrics", " + enqueue", enqueue),
    ):
        with_miss = _median(misses, f"decide() miss, {what} on")
        with_hit = _median(hits, f"decide() hit, {what} on")
        measured += [
            Goal(
                f"{what} on a cache miss",
                with_miss / miss,
                1.05,
                detail=f"miss {miss:.0f} us, with {what} {with_miss:.0f} us",
            ),
            Goal(
                f"{what} on a cache hit / (hit + record{parts})",
                with_hit / (observed + extra),
                1.10,
                detail=f"hit + record{parts} {observed + extra:.2f} us, with it {with_hit:.2f} us",
            ),
        ]
    return measured


def goals(quick: bool) -> list[Goal]:
    """The goals of issue 12 (decision logs; metrics), from one run."""
    return measure(quick)[1]


def main(quick: bool) -> None:
    """Print the table, the notes and the goals."""
    logging.getLogger("attestpolicy.decisionlog").setLevel(logging.ERROR)  # drops are counted
    rows, measured_goals, notes = measure(quick)
    print(f"{'operation':58} {'p50':>10} {'p99':>10} {'samples':>8}")
    for row in rows:
        p99 = f"{row.p99_us:7.2f} us" if row.p99_us is not None else f"{'-':>10}"
        print(f"{row.name:58} {row.p50_us:7.2f} us {p99} {row.samples:8}")
    for note in notes:
        print(note)
    print("\ngoals (issue 12; one run, medians)")
    for goal in measured_goals:
        print(goal.line())


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
