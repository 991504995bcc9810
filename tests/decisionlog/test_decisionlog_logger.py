"""The logger: enqueue only, a bounded queue dropping the oldest, and no failure (a slow
or broken sink, a broken mask, an input that cannot be built or encoded) that reaches or
changes a decision."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from decisionlog.helpers import read_log

from attestpolicy import Decision, PolicyDecisionPoint
from attestpolicy.decisionlog import (
    DecisionLogConfigError,
    DecisionLogEvent,
    DecisionLogger,
    FileSink,
    MaskRule,
    Sink,
    SinkStats,
)
from attestpolicy.observe import DecisionRecord


class GatedSink(Sink):
    """Keeps what it is given, but each write waits for ``gate`` (a stuck disk)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.lines: list[bytes] = []

    def write(self, lines: Sequence[bytes]) -> None:
        self.entered.set()
        self.gate.wait(60)
        self.lines.extend(lines)

    def stats(self) -> SinkStats:
        return SinkStats("gated", written=len(self.lines))


class BrokenSink(Sink):
    def write(self, lines: Sequence[bytes]) -> None:
        raise RuntimeError("sink bug")

    def stats(self) -> SinkStats:
        return SinkStats("broken")


class BrokenMask(MaskRule):
    def apply(self, event: dict[str, Any], erased: list[str], masked: list[str]) -> None:
        event["input"]["half"] = "done"
        raise KeyError("mask bug")


def _ids(sink: GatedSink) -> list[str]:
    return [DecisionLogEvent.model_validate_json(line).decision_id for line in sink.lines]


def test_decisions_do_not_wait_for_a_stuck_sink_and_the_oldest_are_dropped(
    claims: dict[str, Any], example_config: dict[str, Any]
) -> None:
    with PolicyDecisionPoint.local(config=example_config) as plain:
        expected = [plain.decide(claims).allow for _ in range(10)]
    sink = GatedSink()
    logger = DecisionLogger(sink, buffer_size=3)
    try:
        with PolicyDecisionPoint.local(config=example_config) as pdp:
            pdp.add_observer(logger)
            first = pdp.decide(claims)
            assert sink.entered.wait(30)  # the writer is stuck in the sink with the first
            decisions = [pdp.decide(claims) for _ in range(10)]
            assert not sink.gate.is_set()  # all ten were answered while the sink was stuck
            stats = logger.stats()
            assert (stats.received, stats.queued, stats.dropped) == (11, 3, 7)
            assert [d.allow for d in decisions] == expected
            sink.gate.set()
            assert logger.flush(30)
    finally:
        sink.gate.set()
        logger.close()
    assert _ids(sink) == [first.decision_id] + [d.decision_id for d in decisions[-3:]]
    stats = logger.stats()
    assert (stats.written, stats.dropped, stats.failed, stats.queued) == (4, 7, 0, 0)


def test_close_gives_up_on_a_stuck_sink_at_its_deadline() -> None:
    sink = GatedSink()
    logger = DecisionLogger(sink)
    try:
        logger.log_query("p", {}, True, revision="", eval_ns=None)
        assert sink.entered.wait(30)
        for _ in range(5):
            logger.log_query("p", {}, True, revision="", eval_ns=None)
        logger.close(timeout=0.2)  # returns though the sink never does
        stats = logger.stats()
        assert (stats.received, stats.dropped, stats.queued) == (6, 5, 0)
        logger.log_query("p", {}, True, revision="", eval_ns=None)  # after close: dropped
        assert logger.stats().dropped == 6
    finally:
        sink.gate.set()


def test_a_broken_sink_costs_its_events_only(
    tmp_path: Path, claims: dict[str, Any], example_config: dict[str, Any]
) -> None:
    path = tmp_path / "log.jsonl"
    logger = DecisionLogger([BrokenSink(), FileSink(path)])
    with PolicyDecisionPoint.local(config=example_config) as pdp, logger:
        pdp.add_observer(logger)
        decision = pdp.decide(claims)
        assert logger.flush(10)
        stats = logger.stats()
    assert decision.allow
    assert [e["decision_id"] for e in read_log(path)] == [decision.decision_id]
    assert (stats.written, stats.failed) == (1, 1)
    assert [s.name for s in stats.sinks] == ["broken", f"file:{path}"]


def test_a_broken_mask_erases_input_and_result(
    tmp_path: Path, claims: dict[str, Any], example_config: dict[str, Any]
) -> None:
    path = tmp_path / "log.jsonl"
    logger = DecisionLogger(FileSink(path), masks=(BrokenMask(),))
    with PolicyDecisionPoint.local(config=example_config) as pdp, logger:
        pdp.add_observer(logger)
        decision = pdp.decide(claims)
    (event,) = read_log(path)
    assert decision.allow
    assert "input" not in event
    assert "result" not in event
    assert event["erased"] == ["/input", "/result"]
    assert "masked" not in event
    assert event["attestpolicy"]["reason_codes"] == []  # the extras still say what happened
    assert DecisionLogEvent.model_validate(event).input_altered
    assert logger.stats().mask_errors == 1


def _record(policy_input: Mapping[str, Any] | None, *, fail: bool = False) -> DecisionRecord:
    def read() -> Mapping[str, Any] | None:
        if fail:
            raise RuntimeError("input bug")
        return policy_input

    return DecisionRecord(
        decision=Decision.deny("engine.error", "x"), cache="off", duration_ns=5, _input=read
    )


def test_events_that_cannot_be_built_or_encoded_are_failed_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    with DecisionLogger(FileSink(path)) as logger:
        logger.on_decision(_record(None, fail=True))
        logger.log_query("p", {"a": {1, 2}}, True, revision="", eval_ns=None)  # not JSON
        logger.log_query("p", {"a": "\ud800"}, True, revision="", eval_ns=None)  # not UTF-8
        logger.on_decision(_record({"ok": True}))
        assert logger.flush(10)
        stats = logger.stats()
    (event,) = read_log(path)
    assert event["input"] == {"ok": True}
    assert (stats.received, stats.failed, stats.written) == (4, 3, 1)


def test_a_closed_logger_drops_and_decisions_go_on(
    tmp_path: Path, claims: dict[str, Any], example_config: dict[str, Any]
) -> None:
    logger = DecisionLogger(FileSink(tmp_path / "log.jsonl"))
    with PolicyDecisionPoint.local(config=example_config) as pdp:
        pdp.add_observer(logger)
        pdp.decide(claims)
        logger.close()
        logger.close()  # twice is fine
        assert pdp.decide(claims).allow
        assert logger.flush(1)  # nothing pending
    stats = logger.stats()
    assert (stats.received, stats.written, stats.dropped) == (1, 1, 1)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"sinks": []}, "one or more Sink"),
        ({"sinks": ["stdout"]}, "one or more Sink"),
        ({"buffer_size": 0}, "buffer_size must be an integer >= 1"),
        ({"close_timeout": -1}, "close_timeout must be a positive number"),
        ({"close_timeout": float("inf")}, "close_timeout must be a finite number"),
    ],
)
def test_logger_settings_are_checked(
    tmp_path: Path, arguments: dict[str, Any], message: str
) -> None:
    given = {"sinks": FileSink(tmp_path / "log"), **arguments}
    with pytest.raises(DecisionLogConfigError, match=message):
        DecisionLogger(**given)
