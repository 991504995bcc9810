"""Line coverage of the policy files by a Rego test run, from each engine's own tracer.

regorus counts the lines of the statements and rule values it evaluated
(``set_enable_coverage``, ``get_coverage_report_as_json``: covered and not-covered line
numbers per file, for the whole engine). It lists a file only once something in it was
evaluated, so the lines of a file no test reached are read from a copy of the engine
that evaluated its package. OPA's Go evaluator reports, per evaluation
(``coverage=True``, then ``last_coverage``), covered and not-covered row ranges over
every module, rule heads included, as ``opa test --coverage`` does; a run's report is the
union over its tests, a line covered by any test being covered. The two engines draw
lines differently (OPA counts a rule's head and skips rules its index rules out), so
each report names its engine and the numbers are not compared across engines.

Test files (``*_test.rego``) are left out: the report is about the policy under test.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["CoverageReport", "FileCoverage", "OpaCoverage", "regorus_coverage"]

_TEST_FILE_SUFFIX: Final = "_test.rego"


@dataclass(frozen=True)
class FileCoverage:
    """The covered and not-covered lines of one policy file."""

    file: str
    covered: frozenset[int]
    not_covered: frozenset[int]

    @property
    def lines(self) -> int:
        """How many lines the engine counts in this file."""
        return len(self.covered) + len(self.not_covered)

    @property
    def percent(self) -> float:
        """Covered lines as a percentage of counted lines (100 for a file with none)."""
        return 100.0 * len(self.covered) / self.lines if self.lines else 100.0

    def to_json(self) -> dict[str, Any]:
        """OPA's per-file fields: ``covered``/``not_covered`` row ranges and the counts."""
        return {
            "covered": _ranges_json(self.covered),
            "not_covered": _ranges_json(self.not_covered),
            "covered_lines": len(self.covered),
            "not_covered_lines": len(self.not_covered),
            "coverage": round(self.percent, 2),
        }


@dataclass(frozen=True)
class CoverageReport:
    """Line coverage of every policy file one engine loaded, sorted by file."""

    engine: str
    files: tuple[FileCoverage, ...]

    @property
    def covered_lines(self) -> int:
        """Covered lines over all files."""
        return sum(len(entry.covered) for entry in self.files)

    @property
    def lines(self) -> int:
        """Counted lines over all files."""
        return sum(entry.lines for entry in self.files)

    @property
    def percent(self) -> float:
        """The total: covered lines as a percentage of counted lines."""
        return 100.0 * self.covered_lines / self.lines if self.lines else 100.0

    def to_json(self) -> dict[str, Any]:
        """The report in the shape of ``opa test --coverage`` (plus the engine)."""
        return {
            "engine": self.engine,
            "files": {entry.file: entry.to_json() for entry in self.files},
            "covered_lines": self.covered_lines,
            "not_covered_lines": self.lines - self.covered_lines,
            "coverage": round(self.percent, 2),
        }

    def text(self) -> str:
        """A table: one row per file (percentage, lines, the lines not covered), a total."""
        width = max([len(entry.file) for entry in self.files] + [len("total")])
        rows = [f"coverage ({self.engine}):"]
        for entry in self.files:
            row = f"  {entry.file:<{width}}  {entry.percent:6.1f}%  {_fraction(entry)}"
            if entry.not_covered:
                row += f"  not covered: {_ranges_text(entry.not_covered)}"
            rows.append(row)
        total = f"{self.covered_lines}/{self.lines}"
        rows.append(f"  {'total':<{width}}  {self.percent:6.1f}%  {total:>9}")
        return "\n".join(rows) + "\n"


def _fraction(entry: FileCoverage) -> str:
    return f"{len(entry.covered)}/{entry.lines}".rjust(9)


def _is_policy_file(file: str) -> bool:
    return not file.endswith(_TEST_FILE_SUFFIX)


def _runs(lines: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive line numbers as (first, last) runs."""
    runs: list[tuple[int, int]] = []
    for line in sorted(lines):
        if runs and line == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], line)
        else:
            runs.append((line, line))
    return runs


def _ranges_json(lines: Iterable[int]) -> list[dict[str, dict[str, int]]]:
    return [{"start": {"row": first}, "end": {"row": last}} for first, last in _runs(lines)]


def _ranges_text(lines: Iterable[int]) -> str:
    return ", ".join(
        str(first) if first == last else f"{first}-{last}" for first, last in _runs(lines)
    )


def _report(engine: str, by_file: Mapping[str, tuple[set[int], set[int]]]) -> CoverageReport:
    files = tuple(
        FileCoverage(file, frozenset(covered), frozenset(not_covered - covered))
        for file, (covered, not_covered) in sorted(by_file.items())
        if _is_policy_file(file)
    )
    return CoverageReport(engine=engine, files=files)


def regorus_coverage(
    report_json: str, unvisited: Mapping[str, Iterable[int]] | None = None
) -> CoverageReport:
    """The report from regorus's ``get_coverage_report_as_json``, plus the files no test
    reached (``unvisited``: file -> its lines, all not covered), which regorus leaves out."""
    document = json.loads(report_json)
    by_file: dict[str, tuple[set[int], set[int]]] = {
        file: (set(), {int(line) for line in lines}) for file, lines in (unvisited or {}).items()
    }
    for entry in document.get("files", []):
        covered = {int(line) for line in entry.get("covered", [])}
        not_covered = {int(line) for line in entry.get("not_covered", [])}
        by_file[str(entry["path"])] = (covered, not_covered)
    return _report("regorus", by_file)


class OpaCoverage:
    """The union of OPA's per-evaluation coverage reports over a test run."""

    def __init__(self, files: Iterable[str]) -> None:
        self._by_file: dict[str, tuple[set[int], set[int]]] = {
            file: (set(), set()) for file in files
        }

    def add(self, report: Mapping[str, Any] | None) -> None:
        """Merge one ``last_coverage`` report (lines outside the run's files are ignored)."""
        files = (report or {}).get("files") or {}
        for file, entry in files.items():
            known = self._by_file.get(file)
            if known is None:
                continue
            known[0].update(_rows(entry.get("covered")))
            known[1].update(_rows(entry.get("not_covered")))

    def report(self) -> CoverageReport:
        """The merged report: a line any test covered is covered."""
        return _report("opa", self._by_file)


def _rows(ranges: Any) -> Iterable[int]:
    for span in ranges or ():
        first, last = int(span["start"]["row"]), int(span["end"]["row"])
        yield from range(first, last + 1)
