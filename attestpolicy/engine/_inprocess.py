"""What the in-process evaluators share: snapshot, data, revision, engines per thread.

Two engines evaluate the policy in this process: regorus (:mod:`attestpolicy.engine.local`,
the default) and OPA's own Go evaluator (:mod:`attestpolicy.engine.opa`, from the
``opa-golib-python-bindings`` wheel). Both are an :class:`InProcessEvaluator`: the loaded
(policy, configuration) state is one immutable snapshot swapped by a single attribute
assignment, so a decision never mixes two revisions; each thread gets its own engine per
snapshot, built on first use; every engine failure becomes a fail-closed deny.
"""

from __future__ import annotations

import abc
import hashlib
import json
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Final, Literal

from attestpolicy.decision import Decision, decision_from_policy_result
from attestpolicy.engine.cache import canonical_encoding
from attestpolicy.errors import EvaluatorError, PolicyError
from attestpolicy.policy import DECISION_PATH, PolicySource, config_revision
from attestpolicy.revocations import Revocations, RevocationStore, with_revoked, without

__all__ = [
    "DEFAULT_ENGINE",
    "ENGINE_NAMES",
    "MAX_QUERY_DEPTH",
    "EngineName",
    "InProcessEvaluator",
    "LoadedState",
    "PolicyBase",
    "added_revocations",
    "check_engine_name",
    "data_path_query",
    "data_path_segments",
    "index_below",
    "input_problem",
    "load_state",
    "make_evaluator",
    "with_revocations",
]

EngineName = Literal["regorus", "opa"]
ENGINE_NAMES: Final[tuple[EngineName, ...]] = ("regorus", "opa")
"""The in-process engines, by the name ``engine=`` and ``--engine`` take."""

DEFAULT_ENGINE: Final[EngineName] = "regorus"

DECISION_SEGMENTS: Final = tuple(DECISION_PATH.split("/"))
MAX_ERROR_CHARS: Final = 500


class PolicyBase:
    """The identity of one (policy, configuration) pair, shared by every snapshot that
    differs from another only in its runtime revocations: an engine built for one of them
    serves the others once the new revocations are added to it (no rebuild, no copy)."""

    __slots__ = ("__weakref__", "revision")

    def __init__(self, revision: str) -> None:
        self.revision = revision


@dataclass(frozen=True, eq=False)
class LoadedState:
    """One immutable (policy, configuration, revocations) snapshot.

    ``data`` is the base document without the runtime revocations: the policy source's
    data with the configuration at ``data.attestpolicy.config``; :meth:`document` adds the
    revocations at ``data.attestpolicy.revocations``.
    """

    source: PolicySource
    config: Mapping[str, Any] | None
    revocations: Revocations
    data: Mapping[str, Any]
    base: PolicyBase
    revision: str

    def document(self) -> dict[str, Any]:
        """The whole base document, revocations included (shallow copies on their path)."""
        document = dict(self.data)
        if self.revocations:
            attestpolicy_data = dict(document.get("attestpolicy") or {})
            attestpolicy_data["revocations"] = self.revocations
            document["attestpolicy"] = attestpolicy_data
        return document


def load_state(
    source: PolicySource,
    config: Mapping[str, Any] | None,
    engine_version: str,
    revocations: Revocations | None = None,
) -> LoadedState:
    """The snapshot for ``source``, ``config`` and ``revocations`` (deep copies, so callers
    may mutate theirs).

    Its revision is ``<policy revision>+config-<hash>[+revocations-<hash>]+<engine version>``.
    """
    data: dict[str, Any] = json.loads(json.dumps(dict(source.data)))
    # One serialization is both the copy and the revision (hashing it: key order counts,
    # so two equal configurations written in another order only share no cache entries).
    text = json.dumps(None if config is None else dict(config))
    config_copy = json.loads(text)
    attestpolicy_data = data.setdefault("attestpolicy", {})
    if not isinstance(attestpolicy_data, dict):
        raise PolicyError("policy data 'attestpolicy' must be an object")
    if config_copy is not None:
        attestpolicy_data["config"] = config_copy
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    base = PolicyBase(f"{source.revision}+config-{digest}")
    return _snapshot(source, config_copy, data, base, revocations or {}, engine_version)


def with_revocations(
    state: LoadedState, revocations: Revocations, engine_version: str
) -> LoadedState:
    """``state`` with other runtime revocations: the same base, nothing else copied."""
    return _snapshot(
        state.source, state.config, state.data, state.base, revocations, engine_version
    )


def _snapshot(
    source: PolicySource,
    config: Mapping[str, Any] | None,
    data: Mapping[str, Any],
    base: PolicyBase,
    revocations: Revocations,
    engine_version: str,
) -> LoadedState:
    copied = {member: dict(values) for member, values in revocations.items() if values}
    revision = base.revision
    if copied:
        revision += f"+revocations-{config_revision(copied)[len('sha256:') :]}"
    return LoadedState(
        source=source,
        config=config,
        revocations=copied,
        data=data,
        base=base,
        revision=f"{revision}+{engine_version}",
    )


def added_revocations(old: Revocations, new: Revocations) -> dict[str, dict[str, str]] | None:
    """What ``new`` adds to ``old``, or None when it also removes or changes an entry."""
    added: dict[str, dict[str, str]] = {}
    for member, values in old.items():
        kept = new.get(member, {})
        if any(kept.get(value) != reason for value, reason in values.items()):
            return None
    for member, values in new.items():
        before = old.get(member, {})
        fresh = {value: reason for value, reason in values.items() if value not in before}
        if fresh:
            added[member] = fresh
    return added


def data_path_segments(path: str) -> list[str]:
    """The segments of a Data API path (``/a/b/c/`` -> ``["a", "b", "c"]``)."""
    return [segment for segment in path.strip("/").split("/") if segment]


MAX_QUERY_DEPTH: Final = 8
"""Deepest path an engine is queried for; a deeper path indexes that value in Python (the
engines fail to parse queries of hundreds of segments, where OPA's Data API answers)."""


def index_below(value: Any, rest: list[str]) -> tuple[bool, Any]:
    """``(defined, value)`` of ``value[rest[0]][rest[1]]...`` (a plain JSON value)."""
    for segment in rest:
        if not isinstance(value, dict) or segment not in value:
            return False, None
        value = value[segment]
    return True, value


def data_path_query(path: str) -> str:
    """A safe Rego reference for a Data API path (``a/b/c`` -> ``data["a"]["b"]["c"]``)."""
    return "data" + "".join(f"[{json.dumps(segment)}]" for segment in data_path_segments(path))


# Engines live in a module-level thread-local registry, never inside an evaluator:
# a regorus Engine must also be *dropped* on its own thread, and an evaluator can be
# garbage-collected anywhere. Each thread frees the engines of dead bases itself, the next
# time it looks one up (an OPA engine is closed when it is dropped). An entry is keyed by
# its snapshot's base and remembers the revocations it holds.


class _ThreadEngine:
    __slots__ = ("base", "engine", "revocations")

    def __init__(self, base: PolicyBase, engine: Any, revocations: Revocations) -> None:
        self.base = weakref.ref(base)
        self.engine = engine
        self.revocations = revocations


_THREAD_ENGINES = threading.local()


def _thread_engines() -> dict[int, _ThreadEngine]:
    engines: dict[int, _ThreadEngine] | None = getattr(_THREAD_ENGINES, "engines", None)
    if engines is None:
        engines = _THREAD_ENGINES.engines = {}
    return engines


class InProcessEvaluator(abc.ABC):
    """Evaluate the policy in this process (thread-safe, fail-closed).

    Subclasses supply the engine: :meth:`_new_engine`, :meth:`_eval_decision`,
    :meth:`_eval_path`, and how to recognise and describe its failures.
    """

    engine_name: ClassVar[EngineName]

    def __init__(
        self,
        source: PolicySource,
        config: Mapping[str, Any] | None = None,
        *,
        revocations: RevocationStore | None = None,
    ) -> None:
        self._store = revocations
        initial = revocations.snapshot() if revocations is not None else None
        self._state = load_state(source, config, self.engine_version, initial)
        self._swap_lock = threading.Lock()
        # Build (and so compile-check) one engine now: a broken policy fails here,
        # at start-up, instead of as a deny on every request.
        self._engine_for(self._state)

    # --- what an engine supplies --------------------------------------------------

    @property
    @abc.abstractmethod
    def engine_version(self) -> str:
        """The engine and its version, e.g. ``regorus-0.13.0`` or ``opa-0.4.4``."""

    @abc.abstractmethod
    def _new_engine(self, state: LoadedState) -> Any:
        """A new engine with the snapshot loaded (``state.document()``); raise PolicyError
        if it does not compile."""

    def _add_revocations(self, engine: Any, added: Mapping[str, Mapping[str, str]]) -> bool:
        """Add runtime revocations to a built engine; False when it cannot (then a new
        engine is built)."""
        return False

    @abc.abstractmethod
    def _eval_decision(self, engine: Any, policy_input: dict[str, Any]) -> object:
        """The raw value of the decision rule, or None when it is undefined."""

    @abc.abstractmethod
    def _eval_path(self, engine: Any, segments: list[str], policy_input: Any) -> tuple[bool, Any]:
        """``(defined, value)`` of the document at ``data.<segments>``."""

    @staticmethod
    def _is_engine_failure(exc: BaseException) -> bool:
        """Errors to turn into denies (never KeyboardInterrupt or SystemExit)."""
        return isinstance(exc, Exception)

    @staticmethod
    def _error_message(exc: BaseException) -> str:
        """A short, single-purpose message for an engine exception."""
        return (str(exc).strip() or type(exc).__name__)[:MAX_ERROR_CHARS]

    # --- the Evaluator protocol -------------------------------------------------

    @property
    def revision(self) -> str:
        """Policy, configuration (and revocations) revisions + engine version."""
        return self._current().revision

    @property
    def config(self) -> Mapping[str, Any] | None:
        """The configuration document in use (``data.attestpolicy.config``), if any."""
        return self._state.config

    @property
    def revocations(self) -> Revocations:
        """The runtime revocations in use (``data.attestpolicy.revocations``)."""
        return self._current().revocations

    @property
    def policy_revision(self) -> str:
        """The revision of the Rego modules alone."""
        return self._state.source.revision

    def reload(
        self, source: PolicySource | None = None, config: Mapping[str, Any] | None = None
    ) -> str:
        """Atomically replace the policy and/or configuration; return the new revision.

        ``config`` must already be validated (:func:`~attestpolicy.config.validate_config`).
        The new policy is compiled before the swap, so a broken one leaves the old in place.
        Runtime revocations are kept.
        """
        with self._swap_lock:
            return self._swap(source=source, config=config)

    def revoke(self, pairs: Sequence[tuple[str, str]], *, reason: str) -> bool:
        """Revoke each ``(member, value)`` with ``reason`` in the runtime revocations (and
        the store, when there is one); a value already revoked keeps its reason."""
        with self._swap_lock:
            if self._store is not None:
                self._store.add(pairs, reason)
                self._swap(revocations=self._store.snapshot())
            else:
                self._swap(revocations=with_revoked(self._state.revocations, pairs, reason))
        return True

    def lift(self, pairs: Sequence[tuple[str, str]]) -> bool:
        """Lift runtime revocations (those in the configuration stay: edit it to lift them)."""
        with self._swap_lock:
            if self._store is not None:
                self._store.lift(pairs)
                self._swap(revocations=self._store.snapshot())
            else:
                self._swap(revocations=without(self._state.revocations, pairs))
        return True

    def _current(self) -> LoadedState:
        """The snapshot to decide with, first taking in the store's changes (other
        processes' revocations)."""
        store = self._store
        if store is not None and store.changed():
            with self._swap_lock:
                if store.changed():
                    self._swap(revocations=store.snapshot())
        return self._state

    def _swap(
        self,
        *,
        source: PolicySource | None = None,
        config: Mapping[str, Any] | None = None,
        revocations: Revocations | None = None,
    ) -> str:
        current = self._state
        if source is None and config is None and revocations is not None:
            new_state = with_revocations(current, revocations, self.engine_version)
        else:
            new_state = load_state(
                source or current.source,
                config if config is not None else current.config,
                self.engine_version,
                revocations if revocations is not None else current.revocations,
            )
        self._engine_for(new_state)
        self._state = new_state
        return new_state.revision

    def _engine_for(self, state: LoadedState) -> Any:
        engines = _thread_engines()
        entry = engines.get(id(state.base))
        if entry is not None and entry.base() is state.base:
            if entry.revocations is state.revocations:
                return entry.engine
            added = added_revocations(entry.revocations, state.revocations)
            if added is not None and (not added or self._add_revocations(entry.engine, added)):
                entry.revocations = state.revocations
                return entry.engine
            del engines[id(state.base)]  # lifted revocations: build anew
        for key, stale in list(engines.items()):
            if stale.base() is None:  # base gone: free its engine here, on its own thread
                del engines[key]
        engine = self._new_engine(state)
        engines[id(state.base)] = _ThreadEngine(state.base, engine, state.revocations)
        return engine

    def evaluate(self, policy_input: dict[str, Any], *, evaluated_at: datetime) -> Decision:
        """Decide with the current snapshot; any engine failure is an ``engine.error`` deny.

        An undefined decision is an ``engine.undefined`` deny.
        """
        state = self._current()
        problem = (
            input_problem(policy_input)
            if isinstance(policy_input, dict)
            else f"the input must be an object, got {type(policy_input).__name__}"
        )
        if problem is not None:
            return Decision.deny(
                "input.invalid",
                f"policy input refused: {problem}",
                policy_revision=state.revision,
                evaluated_at=evaluated_at,
            )
        try:
            engine = self._engine_for(state)
            result = self._eval_decision(engine, policy_input)
        except BaseException as exc:
            if not self._is_engine_failure(exc):
                raise
            return Decision.deny(
                "engine.error",
                f"policy evaluation failed: {self._error_message(exc)}",
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
        state = self._current()
        problem = None if policy_input is None else input_problem(policy_input)
        if problem is not None:
            raise EvaluatorError(f"policy input refused: {problem}", code="input.invalid")
        try:
            engine = self._engine_for(state)
            return self._eval_path(
                engine, data_path_segments(path), policy_input if policy_input is not None else {}
            )
        except BaseException as exc:
            if not self._is_engine_failure(exc):
                raise
            raise EvaluatorError(self._error_message(exc), code="engine.error") from None

    def close(self) -> None:
        """Drop this thread's engine (other threads free theirs on their next lookup)."""
        _thread_engines().pop(id(self._state.base), None)


def input_problem(policy_input: object) -> str | None:
    """Why ``policy_input`` must not reach an engine, or None.

    The engines crash the process on values nested thousands deep or cyclic, so anything
    nested deeper than the cache key's limit (64 levels), cyclic, or not JSON-like (str,
    int, float, bool, None, list, dict with str keys) is refused before evaluation; the
    check is the compiled canonical encoder's walk.
    """
    try:
        canonical_encoding({"input": policy_input}, "")
    except (TypeError, ValueError, RecursionError) as exc:
        return str(exc).replace("claims", "the input")
    return None


def check_engine_name(engine: object) -> EngineName:
    """``engine`` if it names an in-process engine; else ValueError saying which do."""
    for name in ENGINE_NAMES:
        if engine == name:
            return name
    raise ValueError(
        f"unknown engine {engine!r}: choose one of " + ", ".join(repr(n) for n in ENGINE_NAMES)
    )


def make_evaluator(
    engine: str,
    source: PolicySource,
    config: Mapping[str, Any] | None = None,
    *,
    revocations: RevocationStore | None = None,
) -> InProcessEvaluator:
    """The in-process evaluator named ``engine`` (``"regorus"`` or ``"opa"``), with its
    runtime revocations in ``revocations`` (a store) or in memory.

    Raises ValueError for another name and
    :class:`~attestpolicy.errors.EngineUnavailableError` when OPA's engine is not installed.
    """
    if check_engine_name(engine) == "opa":
        from attestpolicy.engine.opa import OpaEvaluator

        return OpaEvaluator(source, config, revocations=revocations)
    from attestpolicy.engine.local import LocalEvaluator

    return LocalEvaluator(source, config, revocations=revocations)
