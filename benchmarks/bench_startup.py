"""Command-line start-up: ``attestpolicy --help`` and one ``decide``, wall clock.

Run from the repository root (after the README's set-up command)::

    .venv/bin/python benchmarks/bench_startup.py            # 21 rounds
    .venv/bin/python benchmarks/bench_startup.py --quick    # 7 rounds
    .venv/bin/python benchmarks/bench_startup.py --imports  # ... and what decide imports

Each round runs every command once, interleaved, as a new process: the console script
``attestpolicy`` beside this interpreter, with bytecode cached as after a normal install
(``PYTHONDONTWRITEBYTECODE`` removed, the cache in a temporary ``PYTHONPYCACHEPREFIX``,
filled by a warm-up round). ``python -c pass`` is the interpreter's own floor. The goal is
0.3 s (issue 13) for ``--help`` and for ``decide``, wall clock; the CPU time the process
used (user + system) is printed beside it, as it is what the wall time comes down to on an
idle machine. ``--imports`` lists the modules that ``decide`` spends its import time in
(``python -X importtime``). Nothing here is asserted: the machine is shared and noisy.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from goals import Goal, installed_bytecode_environment

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "attestpolicy" / "examples"
TARGET_SECONDS = 0.3


def _command() -> list[str]:
    script = Path(sys.executable).with_name("attestpolicy")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "attestpolicy"]


def commands() -> dict[str, list[str]]:
    """The timed commands, by name."""
    cli = _command()
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "attestpolicy --help": [*cli, "--help"],
        "attestpolicy decide --help": [*cli, "decide", "--help"],
        "attestpolicy decide": [*cli, *_decide_arguments()],
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_once(argv: Sequence[str], env: dict[str, str]) -> tuple[float, float]:
    cpu, start = _cpu_seconds(), time.perf_counter()
    subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, check=False)
    return time.perf_counter() - start, _cpu_seconds() - cpu


def measure(rounds: int) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds per run of each command, ``rounds`` interleaved rounds after a
    warm-up."""
    timed = commands()
    with tempfile.TemporaryDirectory(prefix="attestpolicy-pycache-") as cache:
        env = installed_bytecode_environment(cache)
        for argv in timed.values():  # the warm-up fills the bytecode cache
            result = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, check=False)
            if result.returncode not in (0, 1):
                raise RuntimeError(f"{argv[1:]} exited {result.returncode}: {result.stderr!r}")
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in timed}
        for _ in range(rounds):
            for name, argv in timed.items():
                samples[name].append(_run_once(argv, env))
    return samples


def _decide_arguments() -> list[str]:
    claims = EXAMPLES / "claims" / "allow-fully-attested.json"
    return ["decide", "--claims", str(claims), "--config", str(EXAMPLES / "config.json")]


def goals_from(samples: dict[str, list[tuple[float, float]]]) -> list[Goal]:
    """``--help`` and ``decide`` against 0.3 s (wall medians), CPU and the floor beside."""
    floor = statistics.median(wall for wall, _ in samples["python -c pass"])
    rows = []
    for name in ("attestpolicy --help", "attestpolicy decide"):
        median = statistics.median(wall for wall, _ in samples[name])
        cpu = statistics.median(cpu for _, cpu in samples[name])
        detail = f"CPU {cpu:.3f} s; python -c pass {floor:.3f} s"
        rows.append(Goal(f"start-up: {name}", median, TARGET_SECONDS, unit=" s", detail=detail))
    return rows


def goals(quick: bool) -> list[Goal]:
    """The start-up goals from one run (7 rounds quick, else 21)."""
    return goals_from(measure(7 if quick else 21))


def import_profile(limit: int = 15) -> list[tuple[str, float]]:
    """The top-level and pydantic modules ``decide`` imports, by cumulative milliseconds."""
    argv = [sys.executable, "-X", "importtime", "-m", "attestpolicy", *_decide_arguments()]
    with tempfile.TemporaryDirectory(prefix="attestpolicy-pycache-") as cache:
        env = installed_bytecode_environment(cache)
        subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, check=False)  # warm-up
        lines = subprocess.run(
            argv, env=env, cwd=ROOT, capture_output=True, text=True, check=False
        ).stderr.splitlines()
    rows = []
    for line in lines:
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].rstrip()
        depth = (len(name) - len(name.lstrip())) // 2
        if depth == 0 or name.strip() == "pydantic":
            rows.append((name.strip(), int(parts[1]) / 1000))
    return sorted(rows, key=lambda row: -row[1])[:limit]


def main(argv: Sequence[str]) -> int:
    """Print the table, the goals and, with ``--imports``, the import profile."""
    samples = measure(7 if "--quick" in argv else 21)
    runs = len(samples["python -c pass"])
    print(f"{'command':28} {'p50 s':>7} {'min s':>7} {'max s':>7} {'CPU p50':>8}  ({runs} runs)")
    for name, values in samples.items():
        wall = [w for w, _ in values]
        cpu = statistics.median(c for _, c in values)
        print(
            f"{name:28} {statistics.median(wall):7.3f} {min(wall):7.3f} {max(wall):7.3f} {cpu:8.3f}"
        )
    for goal in goals_from(samples):
        print(goal.line())
    if "--imports" in argv:
        print("\nimport time of `attestpolicy decide` (cumulative ms, one run):")
        for name, ms in import_profile():
            print(f"  {ms:8.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
