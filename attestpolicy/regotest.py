"""Run Rego unit tests in process, the way ``opa test`` does, in regorus or OPA's engine.

Every ``.rego`` file under the given paths is loaded into one engine, regorus or OPA's
own Go evaluator (``engine="opa"``, from the optional ``opa-golib-python-bindings``
wheel), with ``data.json`` files placed at the data path named by their directory (as
OPA does). Each rule named ``test_*`` in the package of a ``*_test.rego`` file (listed
from regorus's syntax tree, for both engines) is a test: it passes when its value is
exactly ``true``, fails when it is false or undefined, and is an error when the engine
raises. A test that is undefined is explained: the first statement of its body that
does not hold, with the values of its terms, replayed in the same engine
(:mod:`attestpolicy._regotest_explain`). With ``coverage=True`` the run also reports
line coverage of the policy files from the engine's own tracer
(:mod:`attestpolicy._regotest_coverage`).

:func:`run_tests` runs a directory's tests and returns a :class:`RegoTestReport`
(``attestpolicy test``); :class:`RegoTestSuite` loads once and runs tests one by one
(the pytest plugin, :mod:`attestpolicy.pytest_plugin`).

A regorus engine is bound to the thread that made it: a suite is used, and closed, in
the thread that loaded it.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import regorus

from attestpolicy._closing import Closing
from attestpolicy._rego_index import PolicyIndex
from attestpolicy._regotest_coverage import CoverageReport, OpaCoverage, regorus_coverage
from attestpolicy._regotest_explain import FailureExplanation, explain_undefined, index_modules
from attestpolicy.errors import PolicyError
from attestpolicy.policy import default_policy_dir

__all__ = [
    "MAX_EXPLAINED",
    "TEST_FILE_SUFFIX",
    "CoverageReport",
    "FailureExplanation",
    "Outcome",
    "RegoTest",
    "RegoTestReport",
    "RegoTestResult",
    "RegoTestSuite",
    "default_policy_dir",
    "exit_code",
    "list_tests",
    "run_tests",
]

TEST_FILE_SUFFIX: Final = "_test.rego"
_TEST_PREFIX: Final = "test_"
_DATA_FILE: Final = "data.json"
_RULER: Final = "-" * 80
_OPA_PATH_KEY: Final = "__attestpolicy_test_rule__"
MAX_EXPLAINED: Final = 25
"""Undefined tests explained per suite: a replay in OPA's engine recompiles the policy
(about 0.5 s with the shipped one), so a run where everything fails stays quick."""
_REPLAY_LIMITS: Final = {"max_col": 1 << 20, "max_file_bytes": 1 << 26, "max_lines": 1 << 20}


class Outcome(enum.Enum):
    """The result of one Rego test."""

    PASS = "PASS"  # noqa: S105 - a test outcome, not a password
    FAIL = "FAIL"
    ERROR = "ERROR"


@dataclass(frozen=True)
class RegoTest:
    """One test rule: ``name`` is its full path (``data.pkg_test.test_x``), ``line`` the
    line of its (first) definition in ``file``."""

    name: str
    file: str
    line: int

    @property
    def package(self) -> str:
        """The rule's package path, ``data.pkg_test``."""
        return self.name.rpartition(".")[0]

    @property
    def rule(self) -> str:
        """The rule's name, ``test_x``."""
        return self.name.rpartition(".")[2]


@dataclass(frozen=True)
class RegoTestResult:
    """One evaluated test rule: ``name`` is its full path, e.g. ``data.pkg_test.test_x``.

    ``message`` says in a few words what went wrong (``undefined``, ``value: 1``, the
    engine's error); ``explanation`` is there for an undefined test.
    """

    name: str
    file: str
    outcome: Outcome
    duration_ns: int
    message: str = ""
    row: int = 0
    """The line of the test rule in ``file`` (0: unknown)."""
    explanation: FailureExplanation | None = None

    def line(self) -> str:
        """The ``opa test -v`` line for this test."""
        return f"{self.name}: {self.outcome.value} ({self.duration_ns / 1e6:.3f}ms)"

    def details(self) -> list[str]:
        """For a test that did not pass: where it is, what it was, and why."""
        if self.outcome is Outcome.PASS:
            return []
        where = f"{self.file}:{self.row}" if self.row else self.file
        if self.outcome is Outcome.ERROR:
            return [f"{where}: error: {row}" for row in self.message.splitlines()[:1]] + [
                f"  {row}" for row in self.message.splitlines()[1:]
            ]
        what = "is undefined" if self.message == "undefined" else f"is not true ({self.message})"
        out = [f"{where}: {self.name} {what}"]
        if self.explanation is not None:
            out.extend(self.explanation.lines())
        return out

    def to_json(self) -> dict[str, Any]:
        """The result in the shape of ``opa test --format json`` (plus ``outcome``,
        ``message`` and ``explanation``)."""
        package, _, rule = self.name.rpartition(".")
        out: dict[str, Any] = {
            "location": {"file": self.file, "row": self.row},
            "package": package,
            "name": rule,
            "outcome": self.outcome.value.lower(),
            "duration": self.duration_ns,
        }
        if self.outcome is Outcome.FAIL:
            out["fail"] = True
            out["message"] = self.message
        if self.outcome is Outcome.ERROR:
            out["error"] = {"message": self.message}
        if self.explanation is not None:
            out["explanation"] = self.explanation.to_json()
        return out


@dataclass(frozen=True)
class RegoTestReport:
    """All test results of one run, plus the files that could not be loaded."""

    results: tuple[RegoTestResult, ...]
    load_errors: tuple[str, ...] = ()
    engine: str = "regorus"
    """The engine the tests ran in: ``regorus`` or ``opa``."""
    engine_version: str = ""
    """The engine and its version, e.g. ``opa-0.4.4``."""
    coverage: CoverageReport | None = None
    """Line coverage of the policy files (with ``coverage=True``)."""
    run: str | None = None
    """The ``--run`` pattern that selected the tests, if any."""

    def count(self, outcome: Outcome) -> int:
        """How many tests had ``outcome``."""
        return sum(1 for result in self.results if result.outcome is outcome)

    @property
    def ok(self) -> bool:
        """True when everything loaded, at least one test ran, and every test passed."""
        return (
            not self.load_errors
            and bool(self.results)
            and self.count(Outcome.PASS) == len(self.results)
        )

    def header(self) -> str:
        """One line naming the engine, for reports of several engines."""
        return f"engine: {self.engine} ({self.engine_version or self.engine})"

    def text(self, *, verbose: bool = True) -> str:
        """The report formatted like ``opa test``: with ``verbose`` (``-v``) one line per
        test, grouped by file, with its time; without, only the tests that did not pass.
        Each of those shows where it is and why; a summary closes the report."""
        lines = [f"error: {error}" for error in self.load_errors]
        if self.load_errors:
            lines.append(_RULER)
            lines.append(f"{len(self.load_errors)} file(s) could not be loaded; no test was run")
            return "\n".join(lines) + "\n"
        if not self.results:
            matched = f" matched --run {self.run!r}" if self.run is not None else " found"
            return f"no tests{matched}\n"
        listed = [r for r in self.results if verbose or r.outcome is not Outcome.PASS]
        current_file = None
        for result in listed:
            if result.file != current_file:
                if current_file is not None:
                    lines.append("")
                lines.append(f"{result.file}:")
                current_file = result.file
            lines.append(result.line())
            lines.extend(f"  {row}" for row in result.details())
        total = len(self.results)
        if listed:
            lines.append(_RULER)
        lines.append(f"PASS: {self.count(Outcome.PASS)}/{total}")
        for outcome in (Outcome.FAIL, Outcome.ERROR):
            if self.count(outcome):
                lines.append(f"{outcome.value}: {self.count(outcome)}/{total}")
        text = "\n".join(lines) + "\n"
        if self.coverage is not None:
            text += self.coverage.text()
        return text

    def to_json(self) -> dict[str, Any]:
        """The report as JSON: the engine, load errors, one entry per test, the counts,
        and the coverage when it was measured."""
        out: dict[str, Any] = {
            "engine": self.engine,
            "version": self.engine_version,
            "load_errors": list(self.load_errors),
            "tests": [result.to_json() for result in self.results],
            "summary": {
                "total": len(self.results),
                **{outcome.value.lower(): self.count(outcome) for outcome in Outcome},
            },
        }
        if self.coverage is not None:
            out["coverage"] = self.coverage.to_json()
        return out


# --- engines -----------------------------------------------------------------------

Values = Callable[[str], list[Any]]


class _Backend(Protocol):
    """One engine holding the loaded modules and data."""

    def evaluate(self, path: str) -> tuple[bool, Any]:
        """(defined, value) of the rule at ``path``; raises what the engine raises."""

    def replay(self, file: str, text: str) -> contextlib.AbstractContextManager[Values]:
        """The engine with one more module, answering the members of its set rules."""

    def coverage(self) -> CoverageReport | None:
        """The run's coverage, when it is measured."""

    def close(self) -> None:
        """Release the engine."""


def _json_query_value(engine: regorus.Engine, path: str) -> tuple[bool, Any]:
    rows = json.loads(engine.eval_query_as_json(f"x := {path}")).get("result") or []
    return (True, rows[0]["bindings"]["x"]) if rows else (False, None)


class _Regorus:
    def __init__(self, engine: regorus.Engine, packages: Mapping[str, str], coverage: bool) -> None:
        self._engine = engine
        self._packages = packages
        self._coverage = coverage
        engine.set_enable_coverage(coverage)

    def evaluate(self, path: str) -> tuple[bool, Any]:
        try:
            if self._engine.eval_rule(path) is True:
                return True, True
        except TypeError:  # a value Python cannot hold (a set of objects): read it as JSON
            pass
        return _json_query_value(self._engine, path)

    @contextlib.contextmanager
    def replay(self, file: str, text: str) -> Iterator[Values]:
        engine = self._engine.clone()
        engine.set_enable_coverage(False)  # the replay is not part of the run's coverage
        # A replay module renders each statement on one line: lift regorus's line limits.
        engine.set_policy_length_config(**_REPLAY_LIMITS)
        engine.add_policy(file, text)

        def values(path: str) -> list[Any]:
            defined, value = _json_query_value(engine, path)
            return list(value) if defined and isinstance(value, list) else []

        yield values

    def coverage(self) -> CoverageReport | None:
        if not self._coverage:
            return None
        report = self._engine.get_coverage_report_as_json()
        reported = {str(entry["path"]) for entry in json.loads(report).get("files", [])}
        unvisited = {
            file: self._lines_of(file, package)
            for file, package in self._packages.items()
            if file not in reported
        }
        return regorus_coverage(report, unvisited)

    def _lines_of(self, file: str, package: str) -> list[int]:
        """The lines regorus counts in a file no test reached: regorus reports a file
        only once a rule of it is evaluated (then with all its lines), so its package is
        evaluated once in a copy of the engine, errors and all, and the lines read back."""
        engine = self._engine.clone()
        engine.clear_coverage_data()
        with contextlib.suppress(Exception):
            engine.eval_query(f"x := {package}")
        for entry in json.loads(engine.get_coverage_report_as_json()).get("files", []):
            if entry["path"] == file:
                return [*entry.get("covered", []), *entry.get("not_covered", [])]
        return []

    def close(self) -> None:
        """regorus engines are freed with their last reference."""


def _opa_query(depth: int) -> str:
    ref = "".join(f"[p[{index}]]" for index in range(depth))
    return f"p := input.{_OPA_PATH_KEY}; x := data{ref}"


def _opa_value(opa_engine: Any, path: str, coverage: bool = False) -> tuple[bool, Any]:
    """Evaluate a rule in OPA.

    Every distinct query text costs OPA a compilation (about 0.1 s with the shipped
    policy), so the rule's path is passed as input to one fixed query per path depth.
    The test therefore sees ``input`` as that small object rather than undefined (as
    under ``opa test``); tests set their input with ``with input as ...`` anyway.
    """
    segments = path.split(".")[1:]
    rows = opa_engine.eval_query(
        _opa_query(len(segments)), {_OPA_PATH_KEY: segments}, coverage=coverage
    )
    return (True, rows[0]["x"]) if rows else (False, None)


def _new_opa_engine(
    sources: Sequence[tuple[str, str]], documents: Sequence[tuple[str, dict[str, Any]]]
) -> Any:
    from attestpolicy.engine.opa import load_opa_bindings

    opa_engine = load_opa_bindings().OpaEngine()
    for display, text in sources:
        opa_engine.add_policy(display, text)
    for _file, document in documents:
        # Each document is already nested at its directory's path and merged at the root,
        # as OPA does; a dotted add_data path could not hold a directory name with a dot.
        opa_engine.add_data(document)
    return opa_engine


class _Opa:
    def __init__(
        self,
        sources: Sequence[tuple[str, str]],
        documents: Sequence[tuple[str, dict[str, Any]]],
        coverage: bool,
    ) -> None:
        self._sources = tuple(sources)
        self._documents = tuple(documents)
        self._engine = _new_opa_engine(sources, documents)
        self._coverage = OpaCoverage(name for name, _ in sources) if coverage else None

    def compile_errors(self) -> list[str]:
        """OPA compiles the modules together on the first query: its errors, if any."""
        try:
            self._engine.eval_query("x := true")
        except Exception as exc:
            return [f"OPA could not compile the modules: {_clean(exc)}"]
        return []

    def evaluate(self, path: str) -> tuple[bool, Any]:
        result = _opa_value(self._engine, path, coverage=self._coverage is not None)
        if self._coverage is not None:
            self._coverage.add(self._engine.last_coverage)
        return result

    @contextlib.contextmanager
    def replay(self, file: str, text: str) -> Iterator[Values]:
        engine = _new_opa_engine((*self._sources, (file, text)), self._documents)
        try:

            def values(path: str) -> list[Any]:
                defined, value = _opa_value(engine, path)
                return list(value) if defined and isinstance(value, list) else []

            yield values
        finally:
            engine.close()

    def coverage(self) -> CoverageReport | None:
        return self._coverage.report() if self._coverage is not None else None

    def close(self) -> None:
        self._engine.close()


# --- loading -----------------------------------------------------------------------


@dataclass
class _Loaded:
    """What was read from the paths: modules (in a regorus engine too) and data."""

    parser: regorus.Engine = field(default_factory=regorus.Engine)
    errors: list[str] = field(default_factory=list)
    packages: dict[str, str] = field(default_factory=dict)  # display name -> package
    test_files: dict[str, str] = field(default_factory=dict)  # the test files' packages
    sources: list[tuple[str, str]] = field(default_factory=list)
    documents: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _load(paths: Sequence[Path | str]) -> _Loaded:
    # regorus (anyhow) attaches a Rust backtrace to its errors when RUST_BACKTRACE is
    # set; RUST_LIB_BACKTRACE=0 turns that off for library errors only.
    os.environ.setdefault("RUST_LIB_BACKTRACE", "0")
    roots = [Path(path) for path in paths] or [default_policy_dir()]
    loaded = _Loaded()
    seen: set[Path] = set()
    for root in roots:
        if not root.exists():
            loaded.errors.append(f"{root}: no such file or directory")
            continue
        for rego_file, display in _rego_files(root):
            if rego_file.resolve() in seen:
                continue
            seen.add(rego_file.resolve())
            package = _add_policy(loaded, rego_file, display)
            if package is not None and rego_file.name.endswith(TEST_FILE_SUFFIX):
                loaded.test_files[display] = package
        for data_file, data_path in _data_files(root):
            _add_data(loaded, data_file, data_path)
    return loaded


def _rego_files(root: Path) -> Iterator[tuple[Path, str]]:
    if root.is_file():
        if root.suffix == ".rego":
            yield root, root.as_posix()
        return
    for path in sorted(root.rglob("*.rego")):
        if path.is_file():
            yield path, path.as_posix()


def _data_files(root: Path) -> Iterator[tuple[Path, tuple[str, ...]]]:
    if root.is_file():
        if root.name == _DATA_FILE:
            yield root, ()
        return
    for path in sorted(root.rglob(_DATA_FILE)):
        if path.is_file():
            yield path, path.parent.relative_to(root).parts


def _add_policy(loaded: _Loaded, path: Path, display: str) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        loaded.errors.append(f"{display}: cannot read: {exc}")
        return None
    try:
        package = loaded.parser.add_policy(display, text)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # pyo3 panics derive from BaseException
        loaded.errors.append(f"{display}: {_clean(exc)}")
        return None
    loaded.sources.append((display, text))
    loaded.packages[display] = str(package)
    return str(package)


def _add_data(loaded: _Loaded, path: Path, data_path: tuple[str, ...]) -> None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        loaded.errors.append(f"{path.as_posix()}: cannot read JSON: {exc}")
        return
    for segment in reversed(data_path):
        document = {segment: document}
    if not isinstance(document, Mapping):
        loaded.errors.append(f"{path.as_posix()}: data at the root must be a JSON object")
        return
    try:
        loaded.parser.add_data(dict(document))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # pyo3 panics derive from BaseException
        loaded.errors.append(f"{path.as_posix()}: {_clean(exc)}")
        return
    loaded.documents.append((path.as_posix(), dict(document)))


def _tests_in(parser: regorus.Engine, test_files: Mapping[str, str]) -> list[RegoTest]:
    """Every ``test_*`` rule of the test files, in file and source order."""
    modules: list[Any] = json.loads(parser.get_ast_as_json())
    by_file = {module["source"]["file"]: module["ast"] for module in modules}
    tests: list[RegoTest] = []
    for file in sorted(test_files):
        package = test_files[file]
        seen: set[str] = set()
        for rule in by_file.get(file, {}).get("rules", []):
            name = _test_rule_name(rule)
            if name is not None and name not in seen:
                seen.add(name)
                line = int(rule["Spec"]["span"]["line"])
                tests.append(RegoTest(f"{package}.{name}", file, line))
    return tests


def _test_rule_name(rule: Mapping[str, Any]) -> str | None:
    """The name of a complete rule ``test_*`` without arguments, else None."""
    head = rule.get("Spec", {}).get("head", {})
    complete = head.get("Compr")
    if not isinstance(complete, Mapping):
        return None
    var = complete.get("refr", {}).get("Var")
    if not isinstance(var, Mapping):
        return None
    name = var.get("value")
    if isinstance(name, str) and name.startswith(_TEST_PREFIX):
        return name
    return None


def list_tests(path: Path | str) -> tuple[RegoTest, ...]:
    """The test rules of one ``*_test.rego`` file, in source order (nothing else is
    loaded). Raises :class:`~attestpolicy.errors.PolicyError` when it cannot be read or
    parsed."""
    loaded = _Loaded()
    display = Path(path).as_posix()
    package = _add_policy(loaded, Path(path), display)
    if package is None:
        raise PolicyError(loaded.errors[0])
    return tuple(_tests_in(loaded.parser, {display: package}))


# --- running -----------------------------------------------------------------------


class RegoTestSuite(Closing):
    """Rego modules and data loaded into one engine, and the tests among them.

    Made by :meth:`load`; use it (and :meth:`close` it) in the thread that loaded it.
    """

    def __init__(
        self,
        engine: str,
        engine_version: str,
        loaded: _Loaded,
        backend: _Backend | None,
        load_errors: Sequence[str],
    ) -> None:
        self.engine = engine
        """``regorus`` or ``opa``."""
        self.engine_version = engine_version
        """The engine and its version, e.g. ``regorus-0.13.0``."""
        self.load_errors = tuple(load_errors)
        """Files that could not be loaded or compiled: then no test can run."""
        self._loaded = loaded
        self._backend = backend
        self._index: PolicyIndex | FailureExplanation | None = None
        self._explained = 0
        self.tests: tuple[RegoTest, ...] = ()
        """Every test rule of the loaded ``*_test.rego`` files."""
        if backend is not None and not self.load_errors:
            try:
                self.tests = tuple(_tests_in(loaded.parser, loaded.test_files))
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # pyo3 panics derive from BaseException
                self.load_errors = (f"cannot list tests: {_clean(exc)}",)

    @classmethod
    def load(
        cls, paths: Sequence[Path | str] = (), engine: str = "regorus", *, coverage: bool = False
    ) -> RegoTestSuite:
        """Load the Rego and ``data.json`` files under ``paths`` (directories or files;
        empty means the shipped policy) into ``engine`` (``"regorus"`` or ``"opa"``).

        Raises :class:`~attestpolicy.errors.EngineUnavailableError` when OPA's engine is
        asked for and not installed, ValueError for another engine name. Files that do
        not load are :attr:`load_errors`, not exceptions. ``coverage`` measures line
        coverage over the tests run (:meth:`coverage`).
        """
        from attestpolicy.engine._inprocess import check_engine_name

        engine_name = check_engine_name(engine)
        if engine_name == "opa":
            from attestpolicy.engine.opa import load_opa_bindings, opa_engine_version

            load_opa_bindings()  # EngineUnavailableError before reading anything
            version = opa_engine_version()
        else:
            from attestpolicy.engine.local import ENGINE_VERSION as version
        loaded = _load(paths)
        errors = list(loaded.errors)
        backend: _Backend | None = None
        if not errors and engine_name == "opa":
            try:
                opa = _Opa(loaded.sources, loaded.documents, coverage)
            except Exception as exc:
                errors.append(f"OPA could not load the modules: {_clean(exc)}")
            else:
                errors.extend(opa.compile_errors())
                backend = opa
        elif not errors:
            backend = _Regorus(loaded.parser, loaded.packages, coverage)
        return cls(engine_name, version, loaded, backend, errors)

    def run(self, test: RegoTest) -> RegoTestResult:
        """Evaluate one test (an undefined one is explained). Engine errors never
        escape: they are an ``ERROR`` result."""
        if self._backend is None or self.load_errors:
            raise RuntimeError("the suite did not load: see load_errors")
        start = time.perf_counter_ns()
        try:
            defined, value = self._backend.evaluate(test.name)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # pyo3 panics derive from BaseException
            elapsed = time.perf_counter_ns() - start
            return self._result(test, Outcome.ERROR, elapsed, _clean(exc))
        elapsed = time.perf_counter_ns() - start
        if defined and value is True:
            return self._result(test, Outcome.PASS, elapsed)
        if defined:
            return self._result(
                test, Outcome.FAIL, elapsed, f"value: {json.dumps(value, default=str)[:200]}"
            )
        return self._result(test, Outcome.FAIL, elapsed, "undefined", self._explain(test))

    def _explain(self, test: RegoTest) -> FailureExplanation:
        if self._explained >= MAX_EXPLAINED:
            return FailureExplanation(
                notes=(
                    f"not explained: a run explains its first {MAX_EXPLAINED} undefined "
                    "tests (select fewer tests to see this one's values)",
                )
            )
        self._explained += 1
        return self.explain(test)

    def explain(self, test: RegoTest) -> FailureExplanation:
        """Replay the test's body statement by statement in this suite's engine
        (:mod:`attestpolicy._regotest_explain`). :meth:`run` does it for the first
        :data:`MAX_EXPLAINED` undefined tests; on a test that passes every statement
        holds, which the explanation's note says."""
        if self._backend is None or self.load_errors:
            raise RuntimeError("the suite did not load: see load_errors")
        if self._index is None:  # once per suite: indexing parses every module again
            self._index = index_modules(dict(self._loaded.sources))
        if isinstance(self._index, FailureExplanation):
            return self._index
        return explain_undefined(self._index, test.file, test.name, self._backend.replay)

    @staticmethod
    def _result(
        test: RegoTest,
        outcome: Outcome,
        elapsed: int,
        message: str = "",
        explanation: FailureExplanation | None = None,
    ) -> RegoTestResult:
        return RegoTestResult(
            test.name, test.file, outcome, elapsed, message, test.line, explanation
        )

    def coverage(self) -> CoverageReport | None:
        """Line coverage of the policy files over the tests run so far (None unless the
        suite was loaded with ``coverage=True``)."""
        return self._backend.coverage() if self._backend is not None else None

    def close(self) -> None:
        """Release the engine."""
        if self._backend is not None:
            self._backend.close()
            self._backend = None


def run_tests(
    paths: Sequence[Path | str] = (),
    engine: str = "regorus",
    *,
    run: str | re.Pattern[str] | None = None,
    coverage: bool = False,
) -> RegoTestReport:
    """Load the Rego files and ``data.json`` files under ``paths`` and run their tests.

    ``paths`` are directories or single files; empty means the shipped policy
    (:func:`default_policy_dir`). ``engine`` is ``"regorus"`` or ``"opa"`` (OPA's Go
    evaluator; :class:`~attestpolicy.errors.EngineUnavailableError` when it is not
    installed, ValueError for another name). ``run`` keeps the tests whose full name
    (``data.pkg_test.test_x``) it matches anywhere (``re.search``, as ``opa test --run``);
    a pattern that does not compile is ``re.error``. ``coverage`` adds line coverage of the
    policy files. Engine errors never escape: a file that cannot be loaded is a load error
    (and then, as with OPA, no test runs); a test whose evaluation raises is an ``ERROR``.
    """
    pattern = re.compile(run) if isinstance(run, str) else run
    with RegoTestSuite.load(paths, engine, coverage=coverage) as suite:
        report = RegoTestReport(
            results=(),
            load_errors=suite.load_errors,
            engine=suite.engine,
            engine_version=suite.engine_version,
            run=pattern.pattern if pattern is not None else None,
        )
        if suite.load_errors:
            return report
        selected = [t for t in suite.tests if pattern is None or pattern.search(t.name)]
        results = tuple(suite.run(test) for test in selected)
        return RegoTestReport(
            results=results,
            engine=report.engine,
            engine_version=report.engine_version,
            coverage=suite.coverage(),
            run=report.run,
        )


def _clean(exc: BaseException) -> str:
    """An engine error message without the Rust backtrace regorus may append."""
    message = str(exc)
    cut = message.find("Stack backtrace:")
    if cut != -1:
        message = message[:cut]
    message = message.strip()
    return message or type(exc).__name__


def exit_code(reports: Sequence[RegoTestReport]) -> int:
    """The exit code of ``opa test`` for these reports: 1 when a file could not be loaded
    or no test ran (``opa test --fail-on-empty``), else 2 when a test failed or raised an
    error, else 0."""
    if any(report.load_errors or not report.results for report in reports):
        return 1
    if any(not report.ok for report in reports):
        return 2
    return 0
