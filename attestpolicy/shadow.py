"""Shadow mode: decide with a candidate beside the active policy, off the request path.

A :class:`Shadow` is handed each decision the active policy made (as a decision observer,
``pdp.add_observer(shadow)``, or with :meth:`Shadow.submit` for a Data API answer) and
returns at once: the decision goes into a bounded queue (full: it is dropped and counted),
and one background thread decides the same input with the candidate, at the input's
``now``, and compares, exactly as :func:`attestpolicy.replay.replay` does. The active
answer is never delayed beyond the enqueue, never changed, and nothing the shadow does
(a broken candidate, a failing listener) reaches it.

Each disagreement is one JSON line on the ``attestpolicy.shadow`` logger (WARNING); the
counts are in :meth:`Shadow.stats`, and a ``listener`` receives every comparison on the
background thread (for metrics counters). The candidate's evaluation shares the process:
with regorus it holds the GIL while it runs, as an active evaluation does, so shadowing
costs about one more evaluation of CPU per decision (a cache hit's included).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from attestpolicy._closing import Closing
from attestpolicy.claims import parse_timestamp
from attestpolicy.decision import Decision
from attestpolicy.observe import DecisionRecord
from attestpolicy.policy import DECISION_PATH
from attestpolicy.replay import (
    CHANGES,
    Candidate,
    Change,
    Outcome,
    compare,
    decide_with,
    normalized_path,
    recorded_outcome,
)

__all__ = ["QUEUE_SIZE", "SHADOW_LOGGER", "Shadow", "ShadowComparison", "ShadowStats"]

SHADOW_LOGGER: Final = "attestpolicy.shadow"
"""The logger each disagreement is written to, as one JSON line."""

QUEUE_SIZE: Final = 1024
"""Decisions waiting for the shadow at most (by default); more are dropped and counted."""

_LOG = logging.getLogger(SHADOW_LOGGER)
_STOP: Final = object()


@dataclass(frozen=True, slots=True)
class ShadowComparison:
    """One active decision and the candidate's on the same input."""

    decision_id: str | None
    workload: str | None
    change: Change
    """``unchanged`` (an agreement) or how the candidate differs from the active answer."""
    active: Outcome
    shadow: Outcome

    @property
    def agreed(self) -> bool:
        """True when the candidate decided as the active policy did."""
        return self.change == "unchanged"


@dataclass(frozen=True)
class ShadowStats:
    """The shadow's counters since it started."""

    submitted: int
    """Decisions handed to the shadow (dropped ones included)."""
    compared: int
    agreed: int
    disagreed: Mapping[Change, int]
    """By direction: ``allow_to_deny``, ``deny_to_allow``, ``reasons_changed``,
    ``ttl_changed`` (every key present)."""
    by_reason: Mapping[Change, Mapping[str, int]]
    """Per direction, the reason codes behind it, as in a replay report."""
    dropped: int
    """Not compared: the queue was full, or the shadow was closed."""
    skipped: int
    """Not comparable: no policy input (decided before the policy ran) or no ``now``."""
    failed: int
    """An error in the shadow's own path (logged); never seen by the active answer."""
    pending: int

    def to_json_dict(self) -> dict[str, Any]:
        """The counters as JSON."""
        return {
            "submitted": self.submitted,
            "compared": self.compared,
            "agreed": self.agreed,
            "disagreed": dict(self.disagreed),
            "by_reason": {change: dict(codes) for change, codes in self.by_reason.items()},
            "dropped": self.dropped,
            "skipped": self.skipped,
            "failed": self.failed,
            "pending": self.pending,
        }


@dataclass(frozen=True, slots=True)
class _Job:
    decision_id: str | None
    active: Outcome
    policy_input: Callable[[], Mapping[str, Any] | None]
    evidence_codes: tuple[str, ...] = ()


def _job_of(record: DecisionRecord) -> _Job:
    """What to compare for a PolicyDecisionPoint's decision: a decision on evidence was
    denied for its evidence problems too (``decide_evidence`` adds them to the policy's)."""
    codes = {failure.code for failure in record.evidence_failures}
    return _Job(
        record.decision.decision_id,
        Outcome.of(record.decision),
        record.policy_input,
        tuple(sorted(codes)) if record.source == "evidence" else (),
    )


class Shadow(Closing):
    """Decides every active decision again with ``candidate``, in the background.

    ``candidate`` is a PolicyDecisionPoint or an evaluator (e.g.
    ``load_candidate(...).evaluator``); :meth:`close` closes it. ``queue_size`` bounds the
    decisions waiting; ``listener(comparison)`` is called for each comparison on the
    shadow's thread (it must be quick; its errors are logged and counted as failures).
    """

    def __init__(
        self,
        candidate: Candidate,
        *,
        queue_size: int = QUEUE_SIZE,
        listener: Callable[[ShadowComparison], None] | None = None,
    ) -> None:
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError("queue_size must be a whole number >= 1")
        self._candidate = candidate
        self._listener = listener
        self._queue: queue.Queue[_Job | DecisionRecord | object] = queue.Queue(queue_size)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._closed = False
        self._pending = 0
        self._submitted = self._compared = self._dropped = self._skipped = self._failed = 0
        self._disagreed: Counter[Change] = Counter()
        self._by_reason: dict[Change, Counter[str]] = {change: Counter() for change in CHANGES}
        self._thread = threading.Thread(target=self._run, name="attestpolicy-shadow", daemon=True)
        self._thread.start()

    @property
    def revision(self) -> str:
        """The candidate's revision."""
        return self._candidate.revision

    # --- the request path: enqueue only -----------------------------------------------

    def on_decision(self, record: DecisionRecord) -> None:
        """A decision observer: shadow a PolicyDecisionPoint's decision (the record is
        read, and its input built, on the shadow's thread)."""
        self._enqueue(record)

    def submit(
        self,
        policy_input: Mapping[str, Any] | None,
        active: Decision | Mapping[str, Any] | None,
        *,
        decision_id: str | None = None,
        path: str = DECISION_PATH,
    ) -> bool:
        """Shadow one answer of the Data API: ``active`` is the decision document
        returned (None: undefined), ``policy_input`` the input it was decided on (not to
        be changed afterwards). Answers for other paths are not shadowed (False); an
        answer that is not a decision document counts as a failure. True when queued."""
        if normalized_path(path) != normalized_path(DECISION_PATH):
            return False
        try:
            if isinstance(active, Decision):
                outcome = Outcome.of(active)
                decision_id = decision_id or active.decision_id
            else:
                outcome = recorded_outcome(active, defined=active is not None)
        except ValueError as exc:
            with self._lock:
                self._submitted += 1
                self._failed += 1
            _LOG.warning("shadow: the active answer is not a decision document: %s", exc)
            return False
        return self._enqueue(_Job(decision_id, outcome, lambda: policy_input))

    def _enqueue(self, job: _Job | DecisionRecord) -> bool:
        with self._lock:
            self._submitted += 1
            if self._closed:
                self._dropped += 1
                return False
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                self._dropped += 1
                return False
            self._pending += 1
        return True

    # --- the shadow's thread --------------------------------------------------------------

    def _run(self) -> None:
        while (job := self._queue.get()) is not _STOP:
            try:
                if isinstance(job, DecisionRecord):
                    self._shadow(_job_of(job))
                elif isinstance(job, _Job):
                    self._shadow(job)
            except Exception:
                with self._lock:
                    self._failed += 1
                _LOG.exception("shadow: a comparison failed")
            finally:
                with self._lock:
                    self._pending -= 1
                    if not self._pending:
                        self._idle.notify_all()

    def _shadow(self, job: _Job) -> None:
        policy_input = job.policy_input()
        if not isinstance(policy_input, Mapping):
            with self._lock:
                self._skipped += 1
            return
        try:
            moment = parse_timestamp(policy_input.get("now"))
        except ValueError:
            with self._lock:
                self._skipped += 1
            return
        after = Outcome.of(decide_with(self._candidate, policy_input, moment))
        if not after.allow and job.evidence_codes:
            after = Outcome(False, tuple(sorted({*after.reason_codes, *job.evidence_codes})))
        change = compare(job.active, after)
        subject = policy_input.get("subject")
        workload = subject.get("spiffe_id") if isinstance(subject, Mapping) else None
        comparison = ShadowComparison(
            job.decision_id,
            workload if isinstance(workload, str) else None,
            change,
            job.active,
            after,
        )
        self._count(comparison)
        if not comparison.agreed:
            _LOG.warning(self._disagreement(comparison))
        if self._listener is not None:
            self._listener(comparison)

    def _count(self, comparison: ShadowComparison) -> None:
        change, before, after = comparison.change, comparison.active, comparison.shadow
        with self._lock:
            self._compared += 1
            if change == "unchanged":
                return
            self._disagreed[change] += 1
            codes = self._by_reason[change]
            if change == "allow_to_deny":
                codes.update(after.reason_codes)
            elif change == "deny_to_allow":
                codes.update(before.reason_codes)
            elif change == "reasons_changed":
                codes.update(f"+{c}" for c in set(after.reason_codes) - set(before.reason_codes))
                codes.update(f"-{c}" for c in set(before.reason_codes) - set(after.reason_codes))

    def _disagreement(self, comparison: ShadowComparison) -> str:
        return json.dumps(
            {
                "msg": "shadow disagreement",
                "decision_id": comparison.decision_id,
                "workload": comparison.workload,
                "change": comparison.change,
                "active": comparison.active.to_json_dict(),
                "shadow": comparison.shadow.to_json_dict(),
                "shadow_revision": self._safe_revision(),
            },
            sort_keys=True,
        )

    def _safe_revision(self) -> str | None:
        try:
            return self._candidate.revision
        except Exception:
            return None

    # --- reading and stopping -------------------------------------------------------------

    def stats(self) -> ShadowStats:
        """The counters now (cheap: for metrics at scrape time)."""
        with self._lock:
            return ShadowStats(
                submitted=self._submitted,
                compared=self._compared,
                agreed=self._compared - sum(self._disagreed.values()),
                disagreed={change: self._disagreed.get(change, 0) for change in CHANGES},
                by_reason={change: dict(codes) for change, codes in self._by_reason.items()},
                dropped=self._dropped,
                skipped=self._skipped,
                failed=self._failed,
                pending=self._pending,
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued decision is compared; False if ``timeout`` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._pending, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking decisions, compare those queued (for at most ``timeout`` seconds;
        the rest are dropped), stop the thread and close the candidate."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.flush(timeout)
        with self._lock:
            while True:  # what is still queued is dropped, not compared
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
                self._dropped += 1
                self._pending -= 1
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._candidate.close()
