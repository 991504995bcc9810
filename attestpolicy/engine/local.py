"""The in-process evaluator: the regorus Rego engine, one engine per thread.

regorus engines are bound to the thread that created them and evaluation holds the
GIL, so each thread gets its own engine, built once per (policy, configuration)
revision. The loaded state is one immutable snapshot swapped by a single attribute
assignment, so a decision never mixes two revisions.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from typing import Any, Final

import regorus

from attestpolicy.decision import Decision, decision_from_policy_result
from attestpolicy.errors import EvaluatorError, PolicyError
from attestpolicy.policy import DECISION_PATH, PolicySource, config_revision

__all__ = ["ENGINE_VERSION", "LocalEvaluator", "data_path_query", "engine_error_message"]

ENGINE_VERSION: Final = "regorus-" + metadata.version("gordon-to-regorus")
_DECISION_RULE: Final = "data." + DECISION_PATH.replace("/", ".")
_MAX_ERROR_CHARS: Final = 500


def engine_error_message(exc: BaseException) -> str:
    """A short, single-purpose message for an engine exception (no Rust backtrace)."""
    text = str(exc).split("Stack backtrace:", 1)[0].strip() or type(exc).__name__
    return text[:_MAX_ERROR_CHARS]


def _is_engine_failure(exc: BaseException) -> bool:
    """Errors to turn into denies: every Exception plus pyo3's PanicException."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


@dataclass(frozen=True, eq=False)
class _LoadedState:
    """One immutable (policy, configuration) snapshot."""

    source: PolicySource
    data: Mapping[str, Any]
    revision: str


# Engines live in a module-level thread-local registry, never inside an evaluator:
# a regorus Engine must also be *dropped* on its own thread, and an evaluator can be
# garbage-collected anywhere. Each thread frees the engines of dead snapshots itself,
# the next time it looks one up.
_THREAD_ENGINES = threading.local()


def _thread_engines() -> dict[int, tuple[weakref.ref[_LoadedState], Any]]:
    engines: dict[int, tuple[weakref.ref[_LoadedState], Any]] | None = getattr(
        _THREAD_ENGINES, "engines", None
    )
    if engines is None:
        engines = _THREAD_ENGINES.engines = {}
    return engines


def data_path_query(path: str) -> str:
    """A safe Rego reference for a Data API path (``a/b/c`` -> ``data["a"]["b"]["c"]``)."""
    segments = [segment for segment in path.strip("/").split("/") if segment]
    return "data" + "".join(f"[{json.dumps(segment)}]" for segment in segments)


class LocalEvaluator:
    """Evaluate the policy in-process with regorus (thread-safe, fail-closed)."""

    def __init__(self, source: PolicySource, config: Mapping[str, Any] | None = None) -> None:
        self._state = self._load(source, config)
        # Build (and so compile-check) one engine now: a broken policy fails here,
        # at start-up, instead of as a deny on every request.
        self._engine_for(self._state)

    @staticmethod
    def _load(source: PolicySource, config: Mapping[str, Any] | None) -> _LoadedState:
        data: dict[str, Any] = json.loads(json.dumps(dict(source.data)))
        if config is not None:
            attestpolicy_data = data.setdefault("attestpolicy", {})
            if not isinstance(attestpolicy_data, dict):
                raise PolicyError("policy data 'attestpolicy' must be an object")
            attestpolicy_data["config"] = json.loads(json.dumps(dict(config)))
        revision = (
            f"{source.revision}+config-{config_revision(config)[len('sha256:') :]}+{ENGINE_VERSION}"
        )
        return _LoadedState(source=source, data=data, revision=revision)

    @property
    def revision(self) -> str:
        """Policy revision + configuration revision + engine version."""
        return self._state.revision

    @property
    def config(self) -> Mapping[str, Any] | None:
        """The configuration document in use (``data.attestpolicy.config``), if any."""
        attestpolicy_data = self._state.data.get("attestpolicy")
        if isinstance(attestpolicy_data, Mapping):
            config = attestpolicy_data.get("config")
            return config if isinstance(config, Mapping) else None
        return None

    @property
    def policy_revision(self) -> str:
        """The revision of the Rego modules alone."""
        return self._state.source.revision

    def swap(
        self, source: PolicySource | None = None, config: Mapping[str, Any] | None = None
    ) -> str:
        """Atomically replace the policy and/or configuration; return the new revision.

        The new policy is compiled before the swap, so a broken one leaves the old in place.
        """
        current = self._state
        new_state = self._load(
            source or current.source,
            config if config is not None else self.config,
        )
        self._build_engine(new_state)
        self._state = new_state
        return new_state.revision

    def _build_engine(self, state: _LoadedState) -> Any:
        engine = regorus.Engine()
        try:
            for name, text in state.source.modules.items():
                engine.add_policy(name, text)
            engine.add_data(state.data)
        except BaseException as exc:
            if not _is_engine_failure(exc):
                raise
            raise PolicyError(f"policy failed to load: {engine_error_message(exc)}") from None
        return engine

    def _engine_for(self, state: _LoadedState) -> Any:
        engines = _thread_engines()
        entry = engines.get(id(state))
        if entry is not None and entry[0]() is state:
            return entry[1]
        for key, (ref, _) in list(engines.items()):
            if ref() is None:  # snapshot gone: free its engine here, on its own thread
                del engines[key]
        engine = self._build_engine(state)
        engines[id(state)] = (weakref.ref(state), engine)
        return engine

    def evaluate(self, policy_input: dict[str, Any], *, evaluated_at: datetime) -> Decision:
        """Decide with the current snapshot; any engine failure is an ``engine.error`` deny."""
        state = self._state
        try:
            engine = self._engine_for(state)
            engine.set_input(policy_input)
            result = engine.eval_rule(_DECISION_RULE)
        except BaseException as exc:
            if not _is_engine_failure(exc):
                raise
            return Decision.deny(
                "engine.error",
                f"policy evaluation failed: {engine_error_message(exc)}",
                policy_revision=state.revision,
                evaluated_at=evaluated_at,
            )
        return decision_from_policy_result(
            result, policy_revision=state.revision, evaluated_at=evaluated_at
        )

    def evaluate_path(self, path: str, policy_input: Any | None) -> tuple[bool, Any]:
        """Evaluate any data path, as OPA's Data API does: ``(defined, value)``.

        Raises :class:`~attestpolicy.errors.EvaluatorError` when the engine fails.
        """
        state = self._state
        try:
            engine = self._engine_for(state)
            engine.set_input(policy_input if policy_input is not None else {})
            result = engine.eval_query(data_path_query(path))
        except BaseException as exc:
            if not _is_engine_failure(exc):
                raise
            raise EvaluatorError(engine_error_message(exc), code="engine.error") from None
        rows = result.get("result") or []
        if not rows:
            return False, None
        return True, rows[0]["expressions"][0]["value"]

    def close(self) -> None:
        """Drop this thread's engine (other threads free theirs on their next lookup)."""
        _thread_engines().pop(id(self._state), None)
