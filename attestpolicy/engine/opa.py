"""The in-process evaluator with OPA's own Go evaluator (``engine="opa"``).

OPA comes from the ``opa-golib-python-bindings`` wheel (import ``opa_bindings``): OPA
v1.20.2's Go ``rego`` package built as a C shared library, driven through ctypes. The
wheel declares Python >= 3.14 but runs on 3.11; install it with::

    pip install --ignore-requires-python opa-golib-python-bindings==0.4.4

It is optional: without it, building an :class:`OpaEvaluator` raises
:class:`~attestpolicy.errors.EngineUnavailableError` whose message is that command.

Facts this module relies on (measured with wheel 0.4.4):

- An ``OpaEngine`` may be shared by threads, but it serializes evaluations under a
  lock; its ctypes calls release the GIL, so one engine per thread (as for regorus)
  lets threads evaluate in parallel.
- Queries use strict builtin errors: a builtin error is an ``OpaError`` (an
  ``engine.error`` deny here), an undefined document ``OpaUndefinedError``
  (``engine.undefined``). Compile errors surface as ``prepare_error`` on the first
  query, so a new engine is checked (and the decision query prepared) at build time.
- Every distinct query string is compiled into a prepared query kept by the engine:
  about 80 ms and 3 MB each with this project's policy. Data API paths are therefore
  never turned into query text: a path is passed as input to one fixed query per depth
  (up to :data:`MAX_QUERY_DEPTH` segments; deeper paths index the value at that depth).
- ``add_data(value, path)`` takes a dotted path; a slash silently makes a key named
  ``"a/b"``. The whole base document is merged at the root here, which needs no path.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib import metadata
from types import ModuleType
from typing import Any, ClassVar, Final

from attestpolicy.engine._inprocess import (
    DECISION_SEGMENTS,
    MAX_QUERY_DEPTH,
    InProcessEvaluator,
    LoadedState,
    index_below,
)
from attestpolicy.errors import EngineUnavailableError, PolicyError
from attestpolicy.policy import PolicySource
from attestpolicy.revocations import RevocationStore

__all__ = [
    "MAX_QUERY_DEPTH",
    "OPA_DISTRIBUTION",
    "OPA_INSTALL_COMMAND",
    "OPA_VERSION",
    "OpaEvaluator",
    "load_opa_bindings",
    "opa_available",
    "opa_engine_version",
]

OPA_DISTRIBUTION: Final = "opa-golib-python-bindings"
OPA_INSTALL_COMMAND: Final = f"pip install --ignore-requires-python {OPA_DISTRIBUTION}==0.4.4"
OPA_VERSION: Final = "v1.20.2"
"""The OPA release whose Go evaluator the pinned wheel (0.4.4) embeds."""

"""Data API paths up to this many segments are evaluated by OPA itself."""

_DECISION_DOCUMENT: Final = ".".join(DECISION_SEGMENTS)
_PREPARE_ERROR: Final = "prepare_error"


def load_opa_bindings() -> ModuleType:
    """The ``opa_bindings`` module, with its shared library loaded.

    Raises :class:`~attestpolicy.errors.EngineUnavailableError` (with the install
    command) when it cannot be imported or its library cannot be loaded.
    """
    try:
        module = importlib.import_module("opa_bindings")
        module.OpaEngine().close()  # loads the Go library: fails here, not per decision
    except (ImportError, OSError, AttributeError) as exc:
        raise EngineUnavailableError(
            f"OPA's engine is not available ({type(exc).__name__}: {exc}); "
            f"install it with: {OPA_INSTALL_COMMAND}"
        ) from None
    return module


def opa_available() -> bool:
    """True when OPA's engine can be used in this process."""
    try:
        load_opa_bindings()
    except EngineUnavailableError:
        return False
    return True


def opa_engine_version() -> str:
    """``opa-<version of the opa-golib-python-bindings wheel>``."""
    try:
        return "opa-" + metadata.version(OPA_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "opa-unknown"


def _path_query(depth: int) -> str:
    """The fixed query for a path of ``depth`` segments, passed as ``input.path``."""
    ref = "data" + "".join(f"[p[{index}]]" for index in range(depth))
    bind = "p := input.path; " if depth else ""
    return f"{bind}x := {ref} with input as input.input"


_PATH_QUERIES: Final = tuple(_path_query(depth) for depth in range(MAX_QUERY_DEPTH + 1))


class OpaEvaluator(InProcessEvaluator):
    """Evaluate the policy in-process with OPA's Go evaluator (thread-safe, fail-closed)."""

    engine_name: ClassVar = "opa"

    def __init__(
        self,
        source: PolicySource,
        config: Mapping[str, Any] | None = None,
        *,
        revocations: RevocationStore | None = None,
    ) -> None:
        self._opa = load_opa_bindings()
        self._version = opa_engine_version()
        super().__init__(source, config, revocations=revocations)

    @property
    def engine_version(self) -> str:
        """``opa-<version of the opa-golib-python-bindings wheel>``."""
        return self._version

    def _new_engine(self, state: LoadedState) -> Any:
        engine = self._opa.OpaEngine()
        try:
            for name, text in state.source.modules.items():
                engine.add_policy(name, text)
            engine.add_data(state.document())
            try:  # compile now, and prepare the decision query once for this engine
                engine.eval_document(_DECISION_DOCUMENT, {})
            except self._opa.OpaError as exc:
                if exc.code == _PREPARE_ERROR:
                    raise
        except self._opa.OpaError as exc:
            engine.close()
            raise PolicyError(f"policy failed to load: {self._error_message(exc)}") from None
        return engine

    def _eval_decision(self, engine: Any, policy_input: dict[str, Any]) -> object:
        try:
            return engine.eval_document(_DECISION_DOCUMENT, policy_input)
        except self._opa.OpaUndefinedError:
            return None

    def _eval_path(self, engine: Any, segments: list[str], policy_input: Any) -> tuple[bool, Any]:
        if tuple(segments) == DECISION_SEGMENTS:
            try:
                return True, engine.eval_document(_DECISION_DOCUMENT, policy_input)
            except self._opa.OpaUndefinedError:
                return False, None
        head, rest = segments[:MAX_QUERY_DEPTH], segments[MAX_QUERY_DEPTH:]
        rows = engine.eval_query(_PATH_QUERIES[len(head)], {"path": head, "input": policy_input})
        if not rows:
            return False, None
        return index_below(rows[0]["x"], rest)  # a plain JSON value below MAX_QUERY_DEPTH
