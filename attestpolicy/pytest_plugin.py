"""The attestpolicy pytest plugin: Rego tests as pytest items, and policy fixtures.

Installed with the package (entry point ``pytest11``), active in every pytest run of an
environment that has attestpolicy; only pytest imports this module.

Rego tests: every ``*_test.rego`` file pytest reaches is collected; each ``test_*``
rule becomes one item per engine, ``file_test.rego::test_name[regorus]`` and
``[opa]``, run the way ``attestpolicy test`` runs it (:mod:`attestpolicy.regotest`).
A failing item shows the rule's location and the statement of its body that does not
hold, with the values of its terms, replayed in the engine that failed. A test file is
run with the Rego modules and ``data.json`` files of the configured policy
directories, plus those of its own directory and below unless it lies inside one of
them; each such set is loaded once per engine and session.

Settings (``[tool.pytest.ini_options]`` or any pytest ini file; paths are relative to
it):

``rego_engines``
    The engines, comma-separated: ``regorus,opa`` (default), ``regorus`` or ``opa``;
    ``--rego-engines`` overrides it. Items for OPA's engine are skipped, with the command
    that installs it, where it cannot be imported.
``rego_policy_dirs``
    Directories loaded with every test file: the policy the tests import.
``rego_shipped_policy``
    ``true`` to load the policy shipped with attestpolicy too (for a policy that extends
    it).
``rego_config``
    The configuration ``rego_pdp`` decides with (JSON or YAML; default: the shipped
    example ``attestpolicy/examples/config.json``).
``rego_claims``
    The claim set ``claim_set`` starts from (default: the shipped example
    ``attestpolicy/examples/claims/allow-fully-attested.json``).

Fixtures:

``rego_pdp``
    A :class:`~attestpolicy.PolicyDecisionPoint` on the configured policy (the policy
    directories and/or the shipped policy; the shipped one when none is configured) and
    configuration, in regorus. Parametrize it indirectly with an engine name
    (``@pytest.mark.parametrize("rego_pdp", ["regorus", "opa"], indirect=True)``) or a
    mapping of :meth:`~attestpolicy.PolicyDecisionPoint.local` arguments (``config``: a
    mapping or a file, ``engine``, ``policy_dir``, ``cache``). Module-scoped, so that
    Hypothesis' ``@given`` can use it: do not revoke through it.
``claim_set``
    ``claim_set(**sections)`` returns a valid :class:`~attestpolicy.ClaimSet`: the base
    claim set with each keyword's section merged in (a mapping is merged key by key,
    ``None`` removes the section or key, any other value replaces it; datetimes become
    RFC 3339 text). ``base=`` starts from another claim set (a mapping, a ClaimSet or a
    JSON file).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

if TYPE_CHECKING:
    from attestpolicy.claims import ClaimSet
    from attestpolicy.pdp import PolicyDecisionPoint
    from attestpolicy.regotest import RegoTest, RegoTestResult, RegoTestSuite

__all__ = [
    "ClaimSetFactory",
    "RegoFile",
    "RegoItem",
    "RegoTestFailure",
    "claim_set",
    "pytest_addoption",
    "pytest_collect_file",
    "pytest_configure",
    "pytest_unconfigure",
    "rego_pdp",
]

_TEST_FILE_SUFFIX: Final = "_test.rego"  # attestpolicy.regotest.TEST_FILE_SUFFIX
_ENGINES: Final = ("regorus", "opa")
_DEFAULT_ENGINES: Final = "regorus,opa"
_EXAMPLES: Final = "examples"
_DEFAULT_CONFIG: Final = ("config.json",)
_DEFAULT_CLAIMS: Final = ("claims", "allow-fully-attested.json")


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--rego-engines`` and the ``rego_*`` ini settings."""
    group = parser.getgroup("attestpolicy", "Rego tests and policy fixtures (attestpolicy)")
    group.addoption(
        "--rego-engines",
        metavar="LIST",
        default=None,
        help="engines to run *_test.rego tests in: regorus,opa (default), regorus or opa",
    )
    parser.addini(
        "rego_engines",
        "engines to run *_test.rego tests in, comma-separated (default: regorus,opa)",
        default=_DEFAULT_ENGINES,
    )
    parser.addini(
        "rego_policy_dirs",
        "Rego policy directories loaded with every *_test.rego file, and rego_pdp's policy",
        type="paths",
        default=[],
    )
    parser.addini(
        "rego_shipped_policy",
        "also load the policy shipped with attestpolicy (a policy that extends it)",
        type="bool",
        default=False,
    )
    parser.addini(
        "rego_config",
        "configuration file rego_pdp decides with (default: the shipped example)",
        type="paths",
        default=[],
    )
    parser.addini(
        "rego_claims",
        "claim set file claim_set starts from (default: the shipped example)",
        type="paths",
        default=[],
    )


@dataclass
class _Settings:
    """The plugin's settings for one session, and the suites it loaded."""

    engines: tuple[str, ...]
    policy_dirs: tuple[Path, ...]
    shipped_policy: bool
    config_file: Path | None
    claims_file: Path | None
    rootpath: Path
    suites: dict[tuple[tuple[Path, ...], str], RegoTestSuite] = field(default_factory=dict)
    _opa_problem: list[str | None] = field(default_factory=list)

    def opa_problem(self) -> str | None:
        """Why OPA's engine cannot be used here (None when it can); checked once."""
        if not self._opa_problem:
            from attestpolicy.engine.opa import load_opa_bindings
            from attestpolicy.errors import EngineUnavailableError

            try:
                load_opa_bindings()
            except EngineUnavailableError as exc:
                self._opa_problem.append(str(exc))
            else:
                self._opa_problem.append(None)
        return self._opa_problem[0]

    def roots(self, test_file: Path) -> tuple[Path, ...]:
        """What a test file is run with: the policy directories (and the shipped policy),
        plus its own directory unless it lies inside one of them."""
        from attestpolicy.policy import default_policy_dir

        roots = [default_policy_dir().resolve()] if self.shipped_policy else []
        roots.extend(self.policy_dirs)
        if not any(test_file.is_relative_to(root) for root in roots):
            roots.append(test_file.parent)
        return tuple(roots)

    def suite(self, test_file: Path, engine: str) -> RegoTestSuite:
        """The loaded suite for a test file in an engine (loaded on first use)."""
        from attestpolicy.regotest import RegoTestSuite

        key = (self.roots(test_file), engine)
        if key not in self.suites:
            self.suites[key] = RegoTestSuite.load(key[0], engine)
        return self.suites[key]

    def close(self) -> None:
        """Release every suite's engine."""
        for suite in self.suites.values():
            suite.close()
        self.suites.clear()


_SETTINGS = pytest.StashKey[_Settings]()


def _engines(config: pytest.Config) -> tuple[str, ...]:
    option = config.getoption("rego_engines", default=None)
    raw = str(option if option is not None else config.getini("rego_engines"))
    names = tuple(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))
    unknown = [name for name in names if name not in _ENGINES]
    if unknown or not names:
        raise pytest.UsageError(
            f"rego engines {raw!r}: choose from {', '.join(_ENGINES)}, comma-separated"
        )
    return names


def _single_path(config: pytest.Config, name: str) -> Path | None:
    paths: list[Path] = config.getini(name)
    if len(paths) > 1:
        raise pytest.UsageError(f"{name}: one file, not {len(paths)}")
    return paths[0].resolve() if paths else None


def pytest_configure(config: pytest.Config) -> None:
    """Read the settings (a bad engine name is a usage error)."""
    policy_dirs: list[Path] = config.getini("rego_policy_dirs")
    config.stash[_SETTINGS] = _Settings(
        engines=_engines(config),
        policy_dirs=tuple(path.resolve() for path in policy_dirs),
        shipped_policy=bool(config.getini("rego_shipped_policy")),
        config_file=_single_path(config, "rego_config"),
        claims_file=_single_path(config, "rego_claims"),
        rootpath=config.rootpath,
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    """Release the engines the session loaded."""
    settings = config.stash.get(_SETTINGS, None)
    if settings is not None:
        settings.close()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> RegoFile | None:
    """Collect ``*_test.rego`` files."""
    if file_path.name.endswith(_TEST_FILE_SUFFIX):
        file: RegoFile = RegoFile.from_parent(parent, path=file_path)
        return file
    return None


class RegoFile(pytest.File):
    """A ``*_test.rego`` file: one item per ``test_*`` rule and engine."""

    def collect(self) -> Iterator[RegoItem]:
        """The file's tests (a file that does not parse is a collection error)."""
        from attestpolicy.errors import AttestPolicyError
        from attestpolicy.regotest import list_tests

        settings = self.config.stash[_SETTINGS]
        try:
            tests = list_tests(self.path)
        except AttestPolicyError as exc:
            raise self.CollectError(_relative(str(exc), settings.rootpath)) from None
        for test in tests:
            for engine in settings.engines:
                item: RegoItem = RegoItem.from_parent(
                    self, name=f"{test.rule}[{engine}]", test=test, engine=engine
                )
                problem = settings.opa_problem() if engine == "opa" else None
                if problem is not None:
                    item.add_marker(pytest.mark.skip(reason=problem))
                yield item


class RegoTestFailure(Exception):
    """A Rego test that did not pass (its result says how)."""

    def __init__(self, result: RegoTestResult) -> None:
        super().__init__(result.line())
        self.result = result


class _SuiteNotLoaded(Exception):
    """The files a test file runs with could not be loaded."""


class RegoItem(pytest.Item):
    """One Rego test rule in one engine."""

    def __init__(self, *, test: RegoTest, engine: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.test = test
        self.engine = engine

    def runtest(self) -> None:
        """Run the test in its engine; raise :class:`RegoTestFailure` unless it passes."""
        from attestpolicy.regotest import Outcome

        settings = self.config.stash[_SETTINGS]
        suite = settings.suite(self.path.resolve(), self.engine)
        if suite.load_errors:
            raise _SuiteNotLoaded("\n".join(suite.load_errors))
        wanted = (self.path.resolve(), self.test.name)
        matches = [t for t in suite.tests if (Path(t.file).resolve(), t.name) == wanted]
        if not matches:
            raise _SuiteNotLoaded(f"{self.test.name} is not among the loaded tests")
        result = suite.run(matches[0])
        if result.outcome is not Outcome.PASS:
            raise RegoTestFailure(result)

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> str | Any:
        """A failing test's location and explanation, without a Python traceback."""
        rootpath = self.config.stash[_SETTINGS].rootpath
        if isinstance(excinfo.value, RegoTestFailure):
            result = excinfo.value.result
            text = "\n".join([f"{result.line()} in {self.engine}", *result.details()])
            return _relative(text, rootpath)
        if isinstance(excinfo.value, _SuiteNotLoaded):
            return _relative(f"could not load the Rego files:\n{excinfo.value}", rootpath)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        """Where the test rule is: its file and line, and its full name."""
        return self.path, self.test.line - 1, f"{self.test.name} [{self.engine}]"


def _relative(text: str, rootpath: Path) -> str:
    """File names in ``text`` relative to the rootdir (the engines see absolute ones)."""
    return text.replace(rootpath.as_posix().rstrip("/") + "/", "")


# --- fixtures ------------------------------------------------------------------------


def _examples() -> Path:
    return Path(str(resources.files("attestpolicy") / _EXAMPLES))


@pytest.fixture(scope="module")
def rego_pdp(request: pytest.FixtureRequest) -> Iterator[PolicyDecisionPoint]:
    """A PolicyDecisionPoint on the configured policy and configuration (see the module
    documentation); parametrize it indirectly with an engine name or a mapping of
    ``PolicyDecisionPoint.local`` arguments."""
    from attestpolicy.config import load_config
    from attestpolicy.pdp import PolicyDecisionPoint
    from attestpolicy.policy import default_policy_dir

    settings = request.config.stash[_SETTINGS]
    param = getattr(request, "param", None)
    options: dict[str, Any] = {"engine": param} if isinstance(param, str) else dict(param or {})
    if "policy_dir" not in options:
        dirs = list(settings.policy_dirs)
        if settings.shipped_policy or not dirs:
            dirs.insert(0, default_policy_dir())
        options["policy_dir"] = dirs
    config = options.pop("config", settings.config_file or _examples().joinpath(*_DEFAULT_CONFIG))
    if isinstance(config, str | Path):
        config = load_config(config)
    problem = settings.opa_problem() if options.get("engine") == "opa" else None
    if problem is not None:
        pytest.skip(problem)
    pdp = PolicyDecisionPoint.local(config=config, **options)
    try:
        yield pdp
    finally:
        pdp.close()


ClaimSetFactory = Callable[..., "ClaimSet"]
"""``claim_set(base=None, **sections) -> ClaimSet``."""


def _plain(value: Any) -> Any:
    """Overrides as JSON values: models dumped, datetimes as RFC 3339 text."""
    from pydantic import BaseModel

    from attestpolicy.claims import format_timestamp

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _merge(document: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    for key, value in overrides.items():
        if value is None:
            document.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(document.get(key), dict):
            _merge(document[key], value)
        else:
            document[key] = value


@pytest.fixture(scope="session")
def claim_set(request: pytest.FixtureRequest) -> ClaimSetFactory:
    """``claim_set(base=None, **sections)``: a valid ClaimSet from the base claim set with
    the sections merged in (see the module documentation)."""
    from attestpolicy.claims import ClaimSet

    default = request.config.stash[_SETTINGS].claims_file or _examples().joinpath(*_DEFAULT_CLAIMS)

    def build(
        base: Mapping[str, Any] | ClaimSet | Path | str | None = None, **sections: Any
    ) -> ClaimSet:
        if isinstance(base, ClaimSet):
            document: dict[str, Any] = base.to_input()
        elif isinstance(base, Mapping):
            document = copy.deepcopy(dict(base))
        else:
            document = json.loads(Path(base or default).read_text(encoding="utf-8"))
        _merge(document, _plain(sections))
        return ClaimSet.parse(document)

    return build
