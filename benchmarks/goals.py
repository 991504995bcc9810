"""The performance goals of issue 10 as rows: what was measured, against what target.

Each benchmark module returns :class:`Goal` rows from one run; ``run.py`` prints them all
with PASS/FAIL. Nothing is asserted: the machine is shared and noisy.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Goal:
    """One goal: ``measured`` against ``target`` (``at_most`` or at least)."""

    name: str
    measured: float
    target: float
    unit: str = "x"
    at_most: bool = True
    detail: str = ""
    blocker: str = ""  # why the measured path cannot be used, whatever its speed

    @property
    def passed(self) -> bool:
        """Whether the measurement meets the target (never with a blocker)."""
        if self.blocker:
            return False
        return self.measured <= self.target if self.at_most else self.measured >= self.target

    def line(self) -> str:
        """``PASS  name: 1.08x (goal <= 1.15x)  detail``."""
        sign = "<=" if self.at_most else ">="
        verdict = "PASS" if self.passed else "FAIL"
        goal = f"(goal {sign} {self.target:g}{self.unit})"
        text = f"{verdict}  {self.name}: {self.measured:.3g}{self.unit} {goal}"
        if self.blocker:
            text += f"  BLOCKED: {self.blocker}"
        return f"{text}  {self.detail}" if self.detail else text


def median_us(operation: Callable[[], object], samples: int) -> float:
    """The median time of ``operation`` in microseconds, after a short warm-up."""
    for _ in range(samples // 10 + 5):
        operation()
    timings = []
    for _ in range(samples):
        start = time.perf_counter_ns()
        operation()
        timings.append(time.perf_counter_ns() - start)
    return statistics.median(timings) / 1000


def installed_bytecode_environment(cache: str) -> dict[str, str]:
    """This process's environment for a new interpreter that reads and writes bytecode as
    after a normal install (``PYTHONDONTWRITEBYTECODE`` removed, the cache kept in the
    directory ``cache``, as ``PYTHONPYCACHEPREFIX``): without it, a shell that sets
    ``PYTHONDONTWRITEBYTECODE`` would time the compilation of every module, every run."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = cache
    return env
