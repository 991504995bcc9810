"""The Evaluator protocol shared by the in-process and the remote evaluators."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from attestpolicy.decision import Decision

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

    def close(self) -> None:
        """Release connections and engines."""
        ...
