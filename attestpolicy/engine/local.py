"""The in-process evaluator with regorus, the default engine: one engine per thread.

regorus engines are bound to the thread that created them (and must be dropped there)
and evaluation holds the GIL, so each thread gets its own engine, built once per
(policy, configuration) snapshot (see :mod:`attestpolicy.engine._inprocess`).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from typing import Any, ClassVar, Final

import regorus

from attestpolicy._json import loads_strict
from attestpolicy.engine._inprocess import (
    MAX_QUERY_DEPTH,
    InProcessEvaluator,
    LoadedState,
    data_path_query,
    index_below,
)
from attestpolicy.errors import PolicyError
from attestpolicy.policy import DECISION_PATH

__all__ = ["ENGINE_VERSION", "LocalEvaluator", "data_path_query", "engine_error_message"]

ENGINE_VERSION: Final = "regorus-" + metadata.version("gordon-to-regorus")
_DECISION_RULE: Final = "data." + DECISION_PATH.replace("/", ".")
_MAX_ERROR_CHARS: Final = 500


def engine_error_message(exc: BaseException) -> str:
    """A short, single-purpose message for an engine exception (no Rust backtrace)."""
    text = str(exc).split("Stack backtrace:", 1)[0].strip() or type(exc).__name__
    return text[:_MAX_ERROR_CHARS]


class LocalEvaluator(InProcessEvaluator):
    """Evaluate the policy in-process with regorus (thread-safe, fail-closed)."""

    engine_name: ClassVar = "regorus"

    @property
    def engine_version(self) -> str:
        """``regorus-<version of the gordon-to-regorus wheel>``."""
        return ENGINE_VERSION

    @staticmethod
    def _is_engine_failure(exc: BaseException) -> bool:
        """Every Exception plus pyo3's PanicException (a BaseException)."""
        return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"

    @staticmethod
    def _error_message(exc: BaseException) -> str:
        return engine_error_message(exc)

    def _new_engine(self, state: LoadedState) -> Any:
        engine = regorus.Engine()
        try:
            for name, text in state.source.modules.items():
                engine.add_policy(name, text)
            engine.add_data(state.data)
            if state.revocations:
                self._add_revocations(engine, state.revocations)
        except BaseException as exc:
            if not self._is_engine_failure(exc):
                raise
            raise PolicyError(f"policy failed to load: {engine_error_message(exc)}") from None
        return engine

    def _add_revocations(self, engine: Any, added: Mapping[str, Mapping[str, str]]) -> bool:
        """regorus merges added data into its own: new revocations cost their size only."""
        engine.add_data({"attestpolicy": {"revocations": added}})
        return True

    def _eval_decision(self, engine: Any, policy_input: dict[str, Any]) -> object:
        engine.set_input(policy_input)
        return engine.eval_rule(_DECISION_RULE)

    def _eval_path(self, engine: Any, segments: list[str], policy_input: Any) -> tuple[bool, Any]:
        engine.set_input(policy_input)
        # regorus evaluates a package's document wrongly (a rule may take its default in
        # it, while the rule alone and the root document are right): for a package, or a
        # prefix of one, read the root document and index it here.
        inside_package = any(
            package[: len(segments)] == segments for package in _package_paths(engine)
        )
        depth = 0 if inside_package else min(len(segments), MAX_QUERY_DEPTH)
        # As JSON: a package's document may hold sets of arrays or objects, which regorus
        # cannot turn into a Python set (unhashable); JSON writes sets as arrays, as OPA does.
        query = data_path_query("/".join(segments[:depth]))
        rows = loads_strict(engine.eval_query_as_json(query)).get("result") or []
        if not rows:
            return False, None
        return index_below(rows[0]["expressions"][0]["value"], segments[depth:])


def _package_paths(engine: Any) -> list[list[str]]:
    """The engine's packages as path segments (``data.a.b`` -> ``["a", "b"]``)."""
    return [package.split(".")[1:] for package in engine.get_packages()]
