"""What a :class:`~attestpolicy.pdp.PolicyDecisionPoint` tells its observers.

An observer (decision logs, metrics, your own) is added with
:meth:`~attestpolicy.pdp.PolicyDecisionPoint.add_observer` and receives one
:class:`DecisionRecord` per decision, on the deciding thread, after the decision is made.
It must be quick (enqueue, count) and must not raise: an observer that raises is logged
and skipped, and never changes or delays a decision beyond its own running time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from attestpolicy.decision import Decision

__all__ = ["CacheOutcome", "DecisionObserver", "DecisionRecord", "EvidenceFailure"]

CacheOutcome = Literal["hit", "miss", "off"]
"""``hit``: answered from the decision cache; ``miss``: evaluated (and cached if it could
be); ``off``: evaluated without the cache (none, or an input it cannot key)."""


@dataclass(frozen=True, slots=True)
class EvidenceFailure:
    """One evidence problem of a ``decide_evidence``: where and which reason code."""

    section: str
    """The evidence section or format (``image.cosign``, ``node.tpm``, ``document``...)."""
    code: str


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One decision, as its observers see it."""

    decision: Decision
    cache: CacheOutcome
    duration_ns: int
    """From the call to the decision (verification included for evidence)."""
    evaluation_ns: int | None = None
    """The engine's share, on an evaluation (None on a hit or before the engine ran)."""
    verification_ns: int | None = None
    """Evidence verification, for ``decide_evidence`` (None otherwise)."""
    evidence_failures: tuple[EvidenceFailure, ...] = ()
    source: Literal["claims", "evidence"] = "claims"
    _input: Callable[[], Mapping[str, Any] | None] = field(default=lambda: None, repr=False)

    def policy_input(self) -> Mapping[str, Any] | None:
        """The policy input the decision was made on (the claim set with its ``now``), or
        None when there was none (unreadable claims, unverifiable evidence). Built on
        first call: call it off the request path (a decision log's writer thread)."""
        return self._input()


class DecisionObserver(Protocol):
    """Anything with ``on_decision(record)``: see the module documentation."""

    def on_decision(self, record: DecisionRecord) -> None:
        """Take note of one decision (quickly; never raise)."""
