"""The Evaluator protocol shared by the in-process and the remote evaluators."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from attestpolicy.decision import Decision
from attestpolicy.policy import PolicySource

__all__ = ["Evaluator"]


@runtime_checkable
class Evaluator(Protocol):
    """Evaluates ``data.attestpolicy.v1.decision`` for one policy input.

    Implementations never raise for an evaluation failure: they return a fail-closed
    deny (``engine.error``, ``engine.undefined`` or ``remote.error``).
    """

    @property
    def revision(self) -> str:
        """The revision of the policy and configuration this evaluator decides with."""
        ...

    def evaluate(self, policy_input: dict[str, Any], *, evaluated_at: datetime) -> Decision:
        """Decide for a validated policy input (``ClaimSet.to_input()`` with ``now``)."""
        ...

    def revoke(self, pairs: Sequence[tuple[str, str]], *, reason: str) -> bool:
        """Revoke ``(config.revoked member, value)`` pairs for every later decision (in
        the runtime revocations, which survive reloads).

        Returns True when this evaluator's own decisions now deny them, False when it
        cannot change the data it decides with (a remote server owns its data).
        """
        ...

    def lift(self, pairs: Sequence[tuple[str, str]]) -> bool:
        """Lift runtime revocations; True when applied, False when the data is elsewhere."""
        ...

    def reload(
        self, source: PolicySource | None = None, config: Mapping[str, Any] | None = None
    ) -> str:
        """Atomically swap in a new policy and/or configuration; return the new revision.

        Raises :class:`~attestpolicy.errors.PolicyError` when the evaluator cannot
        (a remote server loads its own bundles) or the new policy does not compile.
        """
        ...

    def close(self) -> None:
        """Release connections and engines."""
        ...
