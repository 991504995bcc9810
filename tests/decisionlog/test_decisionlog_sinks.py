"""File and stdout sinks: rotation by size with N backups, a full disk, real stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from decisionlog.helpers import checked, read_log

from attestpolicy import PolicyDecisionPoint
from attestpolicy.decisionlog import (
    DecisionLogConfigError,
    DecisionLogger,
    FileSink,
    StdoutSink,
)


def _line(number: int, size: int = 100) -> bytes:
    """A JSON line of exactly ``size`` bytes (before the newline)."""
    head = json.dumps({"n": number, "pad": ""}).encode()
    return json.dumps({"n": number, "pad": "x" * (size - len(head))}).encode()


def _numbers(path: Path) -> list[int]:
    return [json.loads(line)["n"] for line in path.read_text().splitlines()]


def test_rotation_by_size_keeps_n_backups(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    sink = FileSink(path, max_bytes=1010, backups=2)  # ten 101-byte lines per file
    for start in range(0, 45, 5):
        sink.write([_line(n) for n in range(start, start + 5)])
    sink.close(1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "decisions.jsonl",
        "decisions.jsonl.1",
        "decisions.jsonl.2",
    ]
    assert _numbers(path.with_name("decisions.jsonl.2")) == list(range(20, 30))
    assert _numbers(path.with_name("decisions.jsonl.1")) == list(range(30, 40))
    assert _numbers(path) == list(range(40, 45))
    assert all(p.stat().st_size <= 1010 for p in tmp_path.iterdir())
    stats = sink.stats()
    assert (stats.written, stats.failed, stats.dropped) == (45, 0, 0)


def test_rotation_inside_one_batch_and_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(_line(-1) + b"\n")  # appended to, and counted towards the size
    sink = FileSink(path, max_bytes=303, backups=1)
    sink.write([_line(n) for n in range(5)])
    sink.close(1)
    assert _numbers(path.with_name("log.1")) == [-1, 0, 1]
    assert _numbers(path) == [2, 3, 4]


def test_no_backups_starts_over_and_an_oversized_line_gets_a_file_of_its_own(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log"
    sink = FileSink(path, max_bytes=250, backups=0)
    sink.write([_line(0), _line(1), _line(2)])
    assert _numbers(path) == [2]
    sink.write([_line(3, size=600)])
    assert _numbers(path) == [3]  # larger than max_bytes alone: written, not lost
    sink.write([_line(4)])
    assert _numbers(path) == [4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log"]
    unbounded = FileSink(tmp_path / "all", max_bytes=None)
    unbounded.write([_line(n, size=5000) for n in range(50)])
    assert len(_numbers(tmp_path / "all")) == 50


def test_a_logger_rotates_real_decision_events(
    tmp_path: Path, claims: dict[str, Any], example_config: dict[str, Any]
) -> None:
    path = tmp_path / "decisions.jsonl"
    with (
        PolicyDecisionPoint.local(config=example_config) as pdp,
        DecisionLogger(FileSink(path, max_bytes=20_000, backups=3)) as logger,
    ):
        pdp.add_observer(logger)
        ids = [pdp.decide(claims).decision_id for _ in range(40)]
    files = [path.with_name(f"decisions.jsonl.{n}") for n in (3, 2, 1)] + [path]
    assert all(p.exists() for p in files)
    assert not path.with_name("decisions.jsonl.4").exists()
    kept = [event["decision_id"] for p in files for event in read_log(p)]
    assert kept == ids[-len(kept) :]  # the newest, in order, whole lines only
    assert len(kept) < len(ids)


def test_a_full_disk_fails_events_not_decisions(
    claims: dict[str, Any], example_config: dict[str, Any]
) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    with PolicyDecisionPoint.local(config=example_config) as plain:
        expected = [plain.decide(claims).allow, plain.decide({"subject": 1}).allow]
    with (
        PolicyDecisionPoint.local(config=example_config) as pdp,
        DecisionLogger(FileSink("/dev/full", max_bytes=None)) as logger,
    ):
        pdp.add_observer(logger)
        decided = [pdp.decide(claims).allow, pdp.decide({"subject": 1}).allow]
        logger.flush(10)
        stats = logger.stats()
    assert decided == expected == [True, False]
    assert (stats.written, stats.failed, stats.dropped) == (0, 2, 0)


def test_a_file_that_cannot_be_opened_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(DecisionLogConfigError, match="cannot open the decision log"):
        FileSink(tmp_path / "missing-dir" / "log.jsonl")
    with pytest.raises(DecisionLogConfigError, match="cannot open"):
        FileSink(tmp_path)  # a directory
    for bad in ({"max_bytes": 0}, {"max_bytes": True}, {"backups": -1}, {"backups": 1.5}):
        with pytest.raises(DecisionLogConfigError, match="must be an integer"):
            FileSink(tmp_path / "log", **bad)


def test_writes_after_close_fail_and_a_removed_directory_fails(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    sink = FileSink(folder / "log", max_bytes=250)
    sink.write([_line(0)])
    (folder / "log").unlink()
    folder.rmdir()
    sink.write([_line(1)])  # the open file is still there: written
    sink.write([_line(2)])  # rotation needs the directory: failed
    sink.write([_line(3)])  # reopening fails too
    assert (sink.stats().written, sink.stats().failed) == (2, 2)
    sink.close(1)
    sink.write([_line(4)])
    assert sink.stats().failed == 3


def test_stdout_sink_writes_json_lines_to_the_real_stdout() -> None:
    code = (
        "import sys\n"
        "from attestpolicy.decisionlog import DecisionLogger, StdoutSink\n"
        "print('before')\n"
        "with DecisionLogger(StdoutSink()) as logger:\n"
        "    logger.log_query('a/b', {'nonce': 'n', 'x': 'é'}, True, revision='r', eval_ns=5)\n"
        "    logger.log_query('a/c', None, False, revision='r', eval_ns=6)\n"
        "    assert logger.flush(10)\n"
        "    print('after')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=120, check=True
    )
    lines = result.stdout.decode("utf-8").splitlines()
    assert lines[0] == "before"
    assert lines[-1] == "after"
    first, second = (checked(line) for line in lines[1:-1])
    assert first["input"] == {"x": "é"}
    assert first["erased"] == ["/input/nonce"]
    assert second["path"] == "a/c"


def test_stdout_sink_counts_a_closed_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = open(os.devnull, "w")  # noqa: SIM115  (closed on purpose)
    closed.close()
    monkeypatch.setattr(sys, "stdout", closed)
    sink = StdoutSink()
    sink.write([b"{}", b"{}"])
    assert (sink.stats().written, sink.stats().failed) == (0, 2)
