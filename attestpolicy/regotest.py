"""Run Rego unit tests in process, the way ``opa test -v`` does.

Every ``.rego`` file under the given paths is loaded into one engine, regorus or OPA's
own Go evaluator (``engine="opa"``, from the optional ``opa-golib-python-bindings``
wheel), with ``data.json`` files placed at the data path named by their directory (as
OPA does). Each rule named ``test_*`` in the package of a ``*_test.rego`` file (listed
from regorus's syntax tree, for both engines) is evaluated: it passes when its value is
exactly ``true``, fails when it is false or undefined, and is an error when the engine
raises. ``attestpolicy test [DIR] [--engine regorus|opa|both]`` prints
:meth:`RegoTestReport.text` per engine and exits non-zero unless every report is
:attr:`RegoTestReport.ok`.

A regorus engine is bound to the thread that made it: :func:`run_tests` creates,
uses and drops its engines within the calling thread.
"""

from __future__ import annotations

import enum
import functools
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import regorus

from attestpolicy.policy import default_policy_dir

__all__ = [
    "Outcome",
    "RegoTestReport",
    "RegoTestResult",
    "default_policy_dir",
    "run_tests",
]

_TEST_FILE_SUFFIX: Final = "_test.rego"
_TEST_PREFIX: Final = "test_"
_DATA_FILE: Final = "data.json"
_RULER: Final = "-" * 80
_OPA_PATH_KEY: Final = "__attestpolicy_test_rule__"


class Outcome(enum.Enum):
    """The result of one Rego test."""

    PASS = "PASS"  # noqa: S105 - a test outcome, not a password
    FAIL = "FAIL"
    ERROR = "ERROR"


@dataclass(frozen=True)
class RegoTestResult:
    """One evaluated test rule: ``name`` is its full path, e.g. ``data.pkg_test.test_x``."""

    name: str
    file: str
    outcome: Outcome
    duration_ns: int
    message: str = ""

    def line(self) -> str:
        """The ``opa test -v`` line for this test."""
        return f"{self.name}: {self.outcome.value} ({self.duration_ns / 1e6:.3f}ms)"


@dataclass(frozen=True)
class RegoTestReport:
    """All test results of one run, plus the files that could not be loaded."""

    results: tuple[RegoTestResult, ...]
    load_errors: tuple[str, ...] = ()
    engine: str = "regorus"
    """The engine the tests ran in: ``regorus`` or ``opa``."""
    engine_version: str = ""
    """The engine and its version, e.g. ``opa-0.4.4``."""

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

    def text(self) -> str:
        """The report formatted like ``opa test -v``: one line per test, then a summary."""
        lines = [f"error: {error}" for error in self.load_errors]
        current_file = None
        for result in self.results:
            if result.file != current_file:
                if current_file is not None:
                    lines.append("")
                lines.append(f"{result.file}:")
                current_file = result.file
            lines.append(result.line())
            if result.message:
                lines.extend(f"  {row}" for row in result.message.splitlines())
        total = len(self.results)
        if self.load_errors:
            lines.append(_RULER)
            lines.append(f"{len(self.load_errors)} file(s) could not be loaded; no test was run")
            return "\n".join(lines) + "\n"
        if not total:
            lines.append("no tests found")
            return "\n".join(lines) + "\n"
        lines.append(_RULER)
        lines.append(f"PASS: {self.count(Outcome.PASS)}/{total}")
        for outcome in (Outcome.FAIL, Outcome.ERROR):
            if self.count(outcome):
                lines.append(f"{outcome.value}: {self.count(outcome)}/{total}")
        return "\n".join(lines) + "\n"


def run_tests(paths: Sequence[Path | str] = (), engine: str = "regorus") -> RegoTestReport:
    """Load the Rego files and ``data.json`` files under ``paths`` and run their tests.

    ``paths`` are directories or single files; empty means the shipped policy
    (:func:`default_policy_dir`). ``engine`` is ``"regorus"`` or ``"opa"`` (OPA's Go
    evaluator; :class:`~attestpolicy.errors.EngineUnavailableError` when it is not
    installed, ValueError for another name). The tests are listed the same way for both
    engines (from regorus's syntax tree). Engine errors never escape: a file that cannot be
    loaded is a load error (and then, as with OPA, no test runs); a test whose evaluation
    raises is an ``ERROR`` result.
    """
    from attestpolicy.engine._inprocess import check_engine_name

    engine_name = check_engine_name(engine)
    opa_engine = None
    if engine_name == "opa":
        from attestpolicy.engine.opa import load_opa_bindings, opa_engine_version

        opa_engine = load_opa_bindings().OpaEngine()
        version = opa_engine_version()
    else:
        from attestpolicy.engine.local import ENGINE_VERSION as version
    try:
        return _run(paths, engine_name, version, opa_engine)
    finally:
        if opa_engine is not None:
            opa_engine.close()


def _run(
    paths: Sequence[Path | str], engine_name: str, version: str, opa_engine: Any
) -> RegoTestReport:
    # regorus (anyhow) attaches a Rust backtrace to its errors when RUST_BACKTRACE is
    # set; RUST_LIB_BACKTRACE=0 turns that off for library errors only.
    os.environ.setdefault("RUST_LIB_BACKTRACE", "0")
    roots = [Path(path) for path in paths] or [default_policy_dir()]
    engine = regorus.Engine()
    load_errors: list[str] = []
    test_files: dict[str, str] = {}  # display name -> package path
    loaded: set[Path] = set()
    sources: list[tuple[str, str]] = []  # (display name, text) of every loaded module
    documents: list[tuple[str, dict[str, Any]]] = []  # (file, document at the data root)
    for root in roots:
        if not root.exists():
            load_errors.append(f"{root}: no such file or directory")
            continue
        for rego_file, display in _rego_files(root):
            if rego_file.resolve() in loaded:
                continue
            loaded.add(rego_file.resolve())
            package = _add_policy(engine, rego_file, display, load_errors, sources)
            if package is not None and rego_file.name.endswith(_TEST_FILE_SUFFIX):
                test_files[display] = package
        for data_file, data_path in _data_files(root):
            _add_data(engine, data_file, data_path, load_errors, documents)
    report = functools.partial(RegoTestReport, engine=engine_name, engine_version=version)
    if opa_engine is not None and not load_errors:
        _load_into_opa(opa_engine, sources, documents, load_errors)
    if load_errors:
        return report(results=(), load_errors=tuple(load_errors))
    try:
        tests = _test_rules(engine, test_files)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # pyo3 panics derive from BaseException
        return report(results=(), load_errors=(f"cannot list tests: {_clean(exc)}",))
    if opa_engine is not None:
        results = tuple(_run_one_opa(opa_engine, name, file) for file, name in tests)
    else:
        results = tuple(_run_one(engine, name, file) for file, name in tests)
    return report(results=results)


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


def _add_policy(
    engine: regorus.Engine,
    path: Path,
    display: str,
    errors: list[str],
    sources: list[tuple[str, str]],
) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(f"{display}: cannot read: {exc}")
        return None
    try:
        package = engine.add_policy(display, text)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # pyo3 panics derive from BaseException
        errors.append(f"{display}: {_clean(exc)}")
        return None
    sources.append((display, text))
    return str(package)


def _add_data(
    engine: regorus.Engine,
    path: Path,
    data_path: tuple[str, ...],
    errors: list[str],
    documents: list[tuple[str, dict[str, Any]]],
) -> None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        errors.append(f"{path.as_posix()}: cannot read JSON: {exc}")
        return
    for segment in reversed(data_path):
        document = {segment: document}
    if not isinstance(document, Mapping):
        errors.append(f"{path.as_posix()}: data at the root must be a JSON object")
        return
    try:
        engine.add_data(dict(document))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # pyo3 panics derive from BaseException
        errors.append(f"{path.as_posix()}: {_clean(exc)}")
        return
    documents.append((path.as_posix(), dict(document)))


def _test_rules(engine: regorus.Engine, test_files: Mapping[str, str]) -> list[tuple[str, str]]:
    """(file, full rule path) of every ``test_*`` rule, in file and source order."""
    modules: list[Any] = json.loads(engine.get_ast_as_json())
    by_file = {module["source"]["file"]: module["ast"] for module in modules}
    tests: list[tuple[str, str]] = []
    for file in sorted(test_files):
        package = test_files[file]
        seen: set[str] = set()
        for rule in by_file.get(file, {}).get("rules", []):
            name = _test_rule_name(rule)
            if name is not None and name not in seen:
                seen.add(name)
                tests.append((file, f"{package}.{name}"))
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


def _run_one(engine: regorus.Engine, name: str, file: str) -> RegoTestResult:
    start = time.perf_counter_ns()
    try:
        value = engine.eval_rule(name)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # pyo3 panics derive from BaseException
        elapsed = time.perf_counter_ns() - start
        return RegoTestResult(name, file, Outcome.ERROR, elapsed, _clean(exc))
    elapsed = time.perf_counter_ns() - start
    if value is True:
        return RegoTestResult(name, file, Outcome.PASS, elapsed)
    detail = "undefined" if value is None else f"value: {json.dumps(value, default=str)[:200]}"
    return RegoTestResult(name, file, Outcome.FAIL, elapsed, detail)


def _load_into_opa(
    opa_engine: Any,
    sources: Sequence[tuple[str, str]],
    documents: Sequence[tuple[str, dict[str, Any]]],
    errors: list[str],
) -> None:
    """Load the same modules and data into OPA; its compile errors are load errors."""
    for display, text in sources:
        try:
            opa_engine.add_policy(display, text)
        except Exception as exc:
            errors.append(f"{display}: {_clean(exc)}")
    for file, document in documents:
        # Each document is already nested at its directory's path and merged at the root,
        # as OPA does; a dotted add_data path could not hold a directory name with a dot.
        try:
            opa_engine.add_data(document)
        except Exception as exc:
            errors.append(f"{file}: {_clean(exc)}")
    if errors:
        return
    try:  # OPA compiles the modules together on the first query
        opa_engine.eval_query("x := true")
    except Exception as exc:
        errors.append(f"OPA could not compile the modules: {_clean(exc)}")


def _opa_test_query(depth: int) -> str:
    ref = "".join(f"[p[{index}]]" for index in range(depth))
    return f"p := input.{_OPA_PATH_KEY}; x := data{ref}"


def _run_one_opa(opa_engine: Any, name: str, file: str) -> RegoTestResult:
    """Evaluate one test rule in OPA.

    Every distinct query text costs OPA a compilation (about 0.1 s with the shipped
    policy), so the rule's path is passed as input to one fixed query per path depth.
    The test therefore sees ``input`` as that small object rather than undefined (as
    under ``opa test``); tests set their input with ``with input as ...`` anyway.
    """
    segments = name.split(".")[1:]
    start = time.perf_counter_ns()
    try:
        rows = opa_engine.eval_query(_opa_test_query(len(segments)), {_OPA_PATH_KEY: segments})
    except Exception as exc:
        elapsed = time.perf_counter_ns() - start
        return RegoTestResult(name, file, Outcome.ERROR, elapsed, _clean(exc))
    elapsed = time.perf_counter_ns() - start
    value = rows[0]["x"] if rows else None
    if value is True:
        return RegoTestResult(name, file, Outcome.PASS, elapsed)
    detail = "undefined" if not rows else f"value: {json.dumps(value, default=str)[:200]}"
    return RegoTestResult(name, file, Outcome.FAIL, elapsed, detail)


def _clean(exc: BaseException) -> str:
    """An engine error message without the Rust backtrace regorus may append."""
    message = str(exc)
    cut = message.find("Stack backtrace:")
    if cut != -1:
        message = message[:cut]
    message = message.strip()
    return message or type(exc).__name__
