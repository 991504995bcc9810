"""``attestpolicy serve`` under a native load generator: scaling with workers, CPU per decision.

Run from the repository root (needs Debian's ``wrk``: ``apt-get install -y wrk``)::

    .venv/bin/python benchmarks/bench_serve.py            # 3 rounds of 5 s runs (~1.5 min)
    .venv/bin/python benchmarks/bench_serve.py --quick    # 2 rounds of 3 s runs

It starts ``attestpolicy serve --config attestpolicy/examples/config.json`` twice on free
ports of 127.0.0.1, with 1 and with 2 workers, and has ``wrk`` POST the realistic claim
set (``attestpolicy/examples/claims/allow-fully-attested.json`` as ``{"input": ...}``)
to ``/v1/data/attestpolicy/v1/decision`` over a few keep-alive connections, for a
bounded time per run. ``serve`` keeps no decision cache: every request is evaluated (a
cache miss). Each round has three runs:

- ``cpu``: 1 worker, in 1 s windows of load, each after 1 s in which this process
  evaluates the same input with regorus alone (``set_input`` + ``eval_rule``, the
  shipped policy and configuration): the server and the engine are timed in turn under
  the same conditions (this machine's speed drifts by tens of percent within a minute).
  Server CPU per decision is utime + stime (``/proc/<pid>/stat``) of every process of
  the server divided by the decisions answered; the engine's is this thread's CPU time
  divided by its decisions.
- ``1w`` and ``2w``: decisions/s with 1 and 2 workers, nothing else running here.

The goals are medians over the rounds. The machine's cores are shared by the server,
``wrk`` and anything else running: ``wrk``'s CPU and everything else's ("other load")
are reported beside the server's. Nothing is asserted; the rows are ``goals.Goal`` s.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "attestpolicy" / "examples"
CLAIMS = EXAMPLES / "claims" / "allow-fully-attested.json"
CONFIG = EXAMPLES / "config.json"
DECISION_URL_PATH = "/v1/data/attestpolicy/v1/decision"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from goals import Goal  # noqa: E402  (after the path set-up)

_WRK_SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = assert(io.open(os.getenv("ATTESTPOLICY_BENCH_BODY"), "rb"))
wrk.body = file:read("*a")
file:close()
"""


# --- the engine, timed in this process ---------------------------------------------------


def claims_input() -> dict[str, Any]:
    """The realistic claim set, as the policy input."""
    claims: dict[str, Any] = json.loads(CLAIMS.read_text())
    return claims


class Engine:
    """regorus with the shipped policy and example configuration, as ``serve`` loads them
    (built on, and bound to, the thread that makes it)."""

    def __init__(self, policy_input: dict[str, Any]) -> None:
        import regorus

        from attestpolicy.engine._inprocess import load_state
        from attestpolicy.policy import DECISION_PATH, PolicySource

        state = load_state(PolicySource.from_directory(None), json.loads(CONFIG.read_text()), "")
        self._engine = regorus.Engine()
        for name, text in state.source.modules.items():
            self._engine.add_policy(name, text)
        self._engine.add_data(state.data)
        self._rule = "data." + DECISION_PATH.replace("/", ".")
        self._input = policy_input
        result = self.decide()
        if not result["allow"]:
            raise RuntimeError(f"the engine denies the benchmark's claim set: {result}")

    def decide(self) -> Any:
        """``set_input`` + ``eval_rule`` of the decision."""
        self._engine.set_input(self._input)
        return self._engine.eval_rule(self._rule)

    def run(self, seconds: float) -> tuple[int, float]:
        """Decide for ``seconds`` (after a few warm-up decisions): (decisions, CPU s)."""
        for _ in range(5):
            self.decide()
        decisions = 0
        start, end = time.thread_time_ns(), time.monotonic() + seconds
        while time.monotonic() < end:
            self.decide()
            decisions += 1
        return decisions, (time.thread_time_ns() - start) / 1e9


# --- the server and its CPU time -----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _children(pid: int) -> list[int]:
    """``pid``'s descendants (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found, pending = [], [pid]
    while pending:
        parent = pending.pop()
        for child, its_parent in parents.items():
            if its_parent == parent:
                found.append(child)
                pending.append(child)
    return found


def _cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _busy_cpu_seconds() -> float:
    """CPU time every CPU of the machine has spent busy (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


def _request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """One request to 127.0.0.1:``port``: (status, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


@contextlib.contextmanager
def serve(workers: int, extra: tuple[str, ...] = ()) -> Iterator[tuple[int, list[int]]]:
    """``attestpolicy serve`` with ``workers`` workers (and arguments ``extra``) on
    127.0.0.1: (port, its pids)."""
    port = _free_port()
    command = [sys.executable, "-m", "attestpolicy", "serve", f"--addr=127.0.0.1:{port}"]
    command += [f"--config={CONFIG}", f"--workers={workers}", *extra]
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": path},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                if _request(port, "GET", "/health")[0] == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("attestpolicy serve did not start")
            time.sleep(0.2)
        time.sleep(2.0 if workers > 1 else 0.0)  # one worker answers: the others start too
        yield port, [process.pid, *_children(process.pid)]
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a graceful shutdown), then, after 30 s, SIGKILL to its process group."""
    process.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    if process.returncode is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


# --- wrk -------------------------------------------------------------------------------

_WRK_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b")
_WRK_BAD = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_WRK_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass(frozen=True)
class Load:
    """How wrk loads a server."""

    seconds: float
    connections: int
    wrk_cpus: str | None
    folder: Path

    def run(self, port: int, seconds: float | None = None) -> tuple[int, float, int, float]:
        """One bounded wrk run: (answers, seconds, bad answers or errors, wrk's CPU s)."""
        command = [
            "wrk",
            "-t1",
            f"-c{self.connections}",
            f"-d{max(1, round(seconds or self.seconds))}s",
            "--timeout",
            "5s",
            "-s",
            str(self.folder / "post.lua"),
            f"http://127.0.0.1:{port}{DECISION_URL_PATH}",
        ]
        if self.wrk_cpus:
            command = ["taskset", "-c", self.wrk_cpus, *command]
        env = {**os.environ, "ATTESTPOLICY_BENCH_BODY": str(self.folder / "body.json")}
        with tempfile.TemporaryFile() as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
            try:
                _, status, usage = os.wait4(process.pid, 0)
            except BaseException:
                process.kill()
                process.wait()
                raise
            process.returncode = os.waitstatus_to_exitcode(status)
            output.seek(0)
            text = output.read().decode(errors="replace")
        total = _WRK_TOTAL.search(text)
        if process.returncode != 0 or total is None:
            raise RuntimeError(f"wrk failed ({process.returncode}):\n{text}")
        bad = _WRK_BAD.search(text)
        errors = _WRK_ERRORS.search(text)
        bad_count = (int(bad.group(1)) if bad else 0) + (
            sum(int(n) for n in errors.groups()) if errors else 0
        )
        elapsed = float(total.group(2)) * _UNIT_SECONDS[total.group(3)]
        return int(total.group(1)), elapsed, bad_count, usage.ru_utime + usage.ru_stime


# --- runs and results ----------------------------------------------------------------


@dataclass(frozen=True)
class LoadRun:
    """One bounded wrk run: ``kind`` is ``cpu`` (1 worker, engine timed meanwhile),
    ``1w`` or ``2w``."""

    kind: str
    decisions: int
    seconds: float
    bad_answers: int
    server_cpu_seconds: float
    process_cpu_seconds: tuple[float, ...]
    wrk_cpu_seconds: float
    other_cpu_seconds: float
    engine_us: float | None = None  # cpu runs: the engine's CPU per decision, in between

    @property
    def rate(self) -> float:
        """Decisions per second."""
        return self.decisions / self.seconds

    @property
    def cpu_per_decision_us(self) -> float:
        """Server CPU (all its processes) per decision, in microseconds."""
        return self.server_cpu_seconds / max(self.decisions, 1) * 1e6

    @property
    def wrk_cpu_per_decision_us(self) -> float:
        """``wrk``'s CPU per decision, in microseconds."""
        return self.wrk_cpu_seconds / max(self.decisions, 1) * 1e6

    @property
    def other_cpus(self) -> float:
        """CPUs used meanwhile by everything but the server, ``wrk`` and the engine meter."""
        return self.other_cpu_seconds / self.seconds


def _load_run(
    kind: str, port: int, pids: list[int], load: Load, engine: Engine | None = None
) -> LoadRun:
    """One run of ``load`` against a server; with ``engine``, a ``cpu`` run: 1 s windows
    of load, each after 1 s of the engine alone (the same conditions, in turn)."""
    windows = max(round(load.seconds), 1) if engine is not None else 1
    decisions = bad = 0
    elapsed = wrk_cpu = server_cpu = busy = 0.0
    engine_decisions, engine_cpu = 0, 0.0
    used = dict.fromkeys(pids, 0.0)
    for _ in range(windows):
        if engine is not None:
            made, cpu = engine.run(1.0)
            engine_decisions, engine_cpu = engine_decisions + made, engine_cpu + cpu
        before = {pid: _cpu_seconds(pid) for pid in pids}
        busy_before = _busy_cpu_seconds()
        answered, seconds, errors, its_cpu = load.run(port, 1 if engine is not None else None)
        busy += _busy_cpu_seconds() - busy_before
        for pid in pids:
            used[pid] += _cpu_seconds(pid) - before[pid]
        decisions, elapsed, bad = decisions + answered, elapsed + seconds, bad + errors
        wrk_cpu += its_cpu
    server_cpu = sum(used.values())
    return LoadRun(
        kind=kind,
        decisions=decisions,
        seconds=elapsed,
        bad_answers=bad,
        server_cpu_seconds=server_cpu,
        process_cpu_seconds=tuple(
            sorted((cpu for cpu in used.values() if cpu > 0.05), reverse=True)
        ),
        wrk_cpu_seconds=wrk_cpu,
        other_cpu_seconds=max(busy - server_cpu - wrk_cpu, 0.0),
        engine_us=engine_cpu / engine_decisions * 1e6 if engine_decisions else None,
    )


@dataclass(frozen=True)
class ServeResults:
    """One run of the benchmark."""

    runs: tuple[LoadRun, ...]
    connections: int
    wrk_cpus: str | None

    def of(self, kind: str) -> list[LoadRun]:
        """The runs of ``kind``."""
        return [run for run in self.runs if run.kind == kind]


def measure(
    *,
    seconds: float,
    connections: int,
    rounds: int = 3,
    wrk_cpus: str | None = None,
    serve_args: tuple[str, ...] = (),
) -> ServeResults:
    """``rounds`` rounds of (cpu, 1w, 2w) runs against a 1-worker and a 2-worker server,
    both started first (a server not under load is idle)."""
    policy_input = claims_input()
    body = json.dumps({"input": policy_input}, separators=(",", ":")).encode()
    runs: list[LoadRun] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-serve-") as name,
        serve(1, serve_args) as (one_port, one_pids),
        serve(2, serve_args) as (two_port, two_pids),
    ):
        load = Load(seconds, connections, wrk_cpus, Path(name))
        (load.folder / "post.lua").write_text(_WRK_SCRIPT)
        (load.folder / "body.json").write_bytes(body)
        for port in (one_port, two_port):
            _check_answer(port, body)
            load.run(port, 1)  # warm-up
        engine = Engine(policy_input)
        for _ in range(rounds):
            runs.append(_load_run("cpu", one_port, one_pids, load, engine))
            runs.append(_load_run("1w", one_port, one_pids, load))
            runs.append(_load_run("2w", two_port, two_pids, load))
    return ServeResults(tuple(runs), connections, wrk_cpus)


def _check_answer(port: int, body: bytes) -> None:
    status, text = _request(port, "POST", DECISION_URL_PATH, body)
    result = json.loads(text)["result"] if status == 200 else {"allow": False, "status": status}
    if not result["allow"]:
        raise RuntimeError(f"the server denies the benchmark's claim set: {result}")


def goals_from(results: ServeResults) -> list[Goal]:
    """The two goal rows of issue 10 (goal 5): medians over the rounds of one run."""
    one_rate = statistics.median(run.rate for run in results.of("1w"))
    two_rate = statistics.median(run.rate for run in results.of("2w"))
    cpu_runs = results.of("cpu")
    ratio = statistics.median(run.cpu_per_decision_us / (run.engine_us or 1) for run in cpu_runs)
    server_us = statistics.median(run.cpu_per_decision_us for run in cpu_runs)
    engine_us = statistics.median(run.engine_us or 0 for run in cpu_runs)
    two_us = statistics.median(run.cpu_per_decision_us for run in results.of("2w"))
    other = max(run.other_cpus for run in results.runs)
    where = f"wrk -t1 -c{results.connections}" + (
        f" on CPU {results.wrk_cpus}" if results.wrk_cpus else ""
    )
    bad = sum(run.bad_answers for run in results.runs)
    notes = f"{os.cpu_count()} CPUs shared with wrk, other load up to {other:.2f} CPUs"
    if bad:
        notes += f", {bad} non-200 answers or socket errors"
    return [
        Goal(
            "serve: 2 workers / 1 worker decisions/s",
            two_rate / one_rate,
            1.8,
            at_most=False,
            detail=f"{one_rate:.0f} vs {two_rate:.0f}/s ({where}; {notes})",
        ),
        Goal(
            "serve: server CPU per miss / engine time",
            ratio,
            1.3,
            detail=(
                f"{server_us:.0f} us (1 worker; {two_us:.0f} us with 2) vs {engine_us:.0f} us "
                "regorus set_input + eval_rule, timed in between"
            ),
        ),
    ]


def skip_reason() -> str | None:
    """Why the benchmark cannot run here, or None."""
    if shutil.which("wrk") is None:
        return "wrk is not installed (apt-get install -y wrk)"
    if not Path("/proc/self/stat").exists():
        return "no /proc to read the server's CPU time from"
    return None


def goals(quick: bool) -> list[Goal]:
    """The goal rows, or none (with a message) when wrk is missing."""
    reason = skip_reason()
    if reason is not None:
        print(f"  serve goals skipped: {reason}")
        return []
    return goals_from(measure(seconds=3 if quick else 5, rounds=2 if quick else 3, connections=8))


def print_results(results: ServeResults) -> None:
    """The runs as a table, then the goal rows."""
    print(
        "  run  decisions/s  server CPU/decision  engine CPU/decision  wrk CPU/decision  "
        "CPU s per process  other load (CPUs)  non-200"
    )
    for run in results.runs:
        per_process = " ".join(f"{seconds:.2f}" for seconds in run.process_cpu_seconds)
        engine = f"{run.engine_us:>16.0f} us" if run.engine_us else f"{'':>19}"
        print(
            f"  {run.kind:>3}  {run.rate:>11.0f}  {run.cpu_per_decision_us:>16.0f} us  "
            f"{engine}  {run.wrk_cpu_per_decision_us:>13.0f} us  {per_process:>17}  "
            f"{run.other_cpus:>17.2f}  {run.bad_answers:>7}"
        )
    for goal in goals_from(results):
        print(goal.line())


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 s runs")
    parser.add_argument("--seconds", type=float, help="seconds per run (default 5, at most 30)")
    parser.add_argument("--rounds", type=int, help="rounds of runs (default 3, at most 10)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (default 8)")
    parser.add_argument("--wrk-cpus", metavar="LIST", help="pin wrk to these CPUs (taskset -c)")
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an argument for attestpolicy serve, e.g. --serve-arg=--eval-threads=2 (repeatable)",
    )
    args = parser.parse_args(argv)
    reason = skip_reason()
    if reason is not None:
        print(f"skipped: {reason}")
        return 0
    seconds = min(args.seconds or (3 if args.quick else 5), 30)
    rounds = min(max(args.rounds or (2 if args.quick else 3), 1), 10)
    connections = min(max(args.connections, 1), 64)
    print(
        f"attestpolicy serve under wrk: {rounds} rounds of {seconds:g} s runs, "
        f"{connections} connections, {os.cpu_count()} CPUs, python {sys.version.split()[0]}"
    )
    results = measure(
        seconds=seconds,
        connections=connections,
        rounds=rounds,
        wrk_cpus=args.wrk_cpus,
        serve_args=tuple(args.serve_arg),
    )
    print_results(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
