"""DecisionLogger: decision log events from a PolicyDecisionPoint and from serve's Data API.

The deciding thread only enqueues (a lock, a deque append). A writer thread, waking every
tenth of a second or when a batch is waiting, builds each event (the record's policy
input, the decision as JSON), applies the masks (to its own copy of the input and result,
made only when a mask applies), encodes it and hands the batch to every sink. The queue
is bounded: when the writer falls behind, the oldest waiting events are dropped and
counted. Nothing here raises into a decision or changes one.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from attestpolicy._closing import Closing
from attestpolicy._instance import instance_labels
from attestpolicy.decisionlog._errors import (
    DecisionLogConfigError,
    check_count,
    check_seconds,
)
from attestpolicy.decisionlog._event import decision_event, query_event
from attestpolicy.decisionlog._mask import DEFAULT_MASKS, MaskRule
from attestpolicy.decisionlog._sinks import Sink, SinkStats
from attestpolicy.decisionlog._throttle import LOGGER, ThrottledWarning
from attestpolicy.observe import DecisionRecord

__all__ = ["DEFAULT_BUFFER_SIZE", "DecisionLogStats", "DecisionLogger"]

DEFAULT_BUFFER_SIZE: Final = 10_000
"""Events waiting for the writer thread, at most, by default."""

_BATCH: Final = 256  # events the writer takes at a time, and wakes up early for
_WRITE_INTERVAL: Final = 0.1  # seconds the writer sleeps between batches at most
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_RESERVED_LABELS: Final = frozenset({"id", "version"})


@dataclass(frozen=True)
class DecisionLogStats:
    """What a :class:`DecisionLogger` did with the events it was given.

    ``received``: events offered while open. ``queued``: waiting for the writer thread.
    ``dropped``: lost to a full buffer (the logger's queue or a sink's), or offered after
    :meth:`~DecisionLogger.close`, or unsent when it ended. ``failed``: lost to an error
    (an event that could not be built or encoded, a sink's write error or rejection).
    ``written``: delivered, summed over the sinks. ``mask_errors``: events whose masks
    failed (written with input and result erased). ``sinks``: each sink's own counts.
    """

    received: int
    queued: int
    dropped: int
    failed: int
    written: int
    mask_errors: int
    sinks: tuple[SinkStats, ...]


@dataclass(frozen=True, slots=True)
class _Query:
    """A Data API query waiting to be logged."""

    decision_id: str
    path: str
    input: Any
    result: Any
    defined: bool
    revision: str
    eval_ns: int | None
    requested_by: str | None
    timestamp_ns: int


def _json_copy(value: Any) -> Any:
    """A copy of a JSON tree (objects and arrays copied, scalars shared)."""
    kind = type(value)
    if kind is dict:
        return {key: _json_copy(item) for key, item in value.items()}
    if kind is list:
        return [_json_copy(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _json_copy(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_json_copy(item) for item in value]
    return value


def _labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    extra = dict(labels or {})
    for key, value in extra.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise DecisionLogConfigError(f"labels are non-empty strings to strings: {key!r}")
        if key in _RESERVED_LABELS:
            raise DecisionLogConfigError(f"label {key!r} is set by the logger itself")
    return {**instance_labels(), **extra}


def _sinks(sinks: Sink | Sequence[Sink]) -> tuple[Sink, ...]:
    checked = (sinks,) if isinstance(sinks, Sink) else tuple(sinks)
    if not checked or not all(isinstance(sink, Sink) for sink in checked):
        raise DecisionLogConfigError("a decision logger needs one or more Sink objects")
    return checked


class DecisionLogger(Closing):
    """Decision logs in OPA's event format, masked, written by a background thread.

    Add it to a decision point with ``pdp.add_observer(logger)``: every ``decide``,
    ``adecide`` and ``decide_evidence`` is then logged. :meth:`log_query` logs a Data
    API query (``serve``). ``sinks`` is one :class:`Sink` or several (each gets every
    event). ``masks`` are applied in order before any sink sees an event (default
    :data:`DEFAULT_MASKS`; pass ``(*DEFAULT_MASKS, *load_masks(path))`` to add yours,
    ``()`` for none). ``labels`` are added to the event's ``labels`` beside the
    instance ``id`` (a UUID per process, as in ``serve``'s status document) and
    attestpolicy's ``version``. At most
    ``buffer_size`` events wait for the writer thread; when it falls behind, the oldest
    are dropped and counted. :meth:`close` (or the ``with`` block's end) delivers what
    is left, for at most ``close_timeout`` seconds.
    """

    def __init__(
        self,
        sinks: Sink | Sequence[Sink],
        *,
        masks: Sequence[MaskRule] = DEFAULT_MASKS,
        labels: Mapping[str, str] | None = None,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        close_timeout: float = 5.0,
    ) -> None:
        self._sinks = _sinks(sinks)
        self._masks = tuple(masks)
        if not all(isinstance(rule, MaskRule) for rule in self._masks):
            raise DecisionLogConfigError("masks must be MaskRule objects (see parse_masks)")
        self._buffer_size = check_count("buffer_size", buffer_size, 1)
        self._close_timeout = check_seconds("close_timeout", close_timeout, allow_zero=True)
        self._labels = _labels(labels)
        self._queue: deque[DecisionRecord | _Query] = deque()
        self._lock = threading.Lock()
        self._left = threading.Condition(self._lock)  # events left the queue
        self._wake = threading.Event()
        self._closed = False
        self._received = 0
        self._evicted = 0  # queued events pushed out by newer ones
        self._refused = 0  # offered after close, or abandoned in the queue at close
        self._processed = 0
        self._failed = 0
        self._mask_errors = 0
        self._drop_warning = ThrottledWarning()
        self._error_warning = ThrottledWarning()
        self._thread = threading.Thread(
            target=self._run, name="attestpolicy-decision-log", daemon=True
        )
        self._thread.start()

    @property
    def labels(self) -> Mapping[str, str]:
        """The labels of every event (``id``, ``version`` and yours)."""
        return dict(self._labels)

    # --- the deciding side ----------------------------------------------------------

    def on_decision(self, record: DecisionRecord) -> None:
        """Queue one decision (a DecisionObserver): never blocks, never raises."""
        self._offer(record)

    def log_query(
        self,
        path: str,
        input: Any,
        result: Any,
        *,
        revision: str,
        eval_ns: int | None,
        decision_id: str | None = None,
        defined: bool = True,
        requested_by: str | None = None,
    ) -> str:
        """Queue the event of one Data API query and return its decision id.

        ``path`` is the data path (``attestpolicy/v1/decision``; slashes around it are
        dropped), ``revision`` the policy revision (``bundles``), ``eval_ns`` the
        evaluation time (``metrics.timer_rego_query_eval_ns``). ``defined=False`` logs an
        undefined result (no ``result``, as OPA). ``requested_by`` is the client address.
        ``input`` and ``result`` are copied on the writer thread: do not change them after
        the call. Never blocks, never raises.
        """
        decision_id = decision_id or str(uuid.uuid4())
        query = _Query(
            decision_id,
            path,
            input,
            result,
            defined,
            revision,
            eval_ns,
            requested_by,
            time.time_ns(),
        )
        self._offer(query)
        return decision_id

    def _offer(self, item: DecisionRecord | _Query) -> None:
        evicted = False
        with self._lock:
            if self._closed:
                self._refused += 1
                return
            if len(self._queue) >= self._buffer_size:
                self._queue.popleft()
                self._evicted += 1
                evicted = True
            self._queue.append(item)
            self._received += 1
            full = len(self._queue) >= _BATCH
        if full and not self._wake.is_set():
            self._wake.set()
        if evicted:
            self._drop_warning.warn("decision log: the writer is behind, dropped the oldest event")

    # --- the writer thread ----------------------------------------------------------

    def _run(self) -> None:
        # The writer wakes every interval, or when a batch is waiting: not once per event,
        # which would hand the GIL back and forth with the deciding thread at each one.
        while True:
            self._wake.wait(_WRITE_INTERVAL)
            self._wake.clear()
            while True:
                with self._lock:
                    if not self._queue:
                        stop = self._closed
                        break
                    count = min(len(self._queue), _BATCH)
                    batch = [self._queue.popleft() for _ in range(count)]
                self._write(batch)
                with self._left:
                    self._processed += len(batch)
                    self._left.notify_all()
            if stop:
                return

    def _build(self, item: DecisionRecord | _Query) -> dict[str, Any]:
        if isinstance(item, _Query):
            return query_event(
                self._labels,
                item.decision_id,
                item.path,
                item.input,
                item.result,
                defined=item.defined,
                revision=item.revision,
                eval_ns=item.eval_ns,
                requested_by=item.requested_by,
                timestamp_ns=item.timestamp_ns,
            )
        return decision_event(item, self._labels)

    def _mask(self, event: dict[str, Any]) -> None:
        erased: list[str] = []
        masked: list[str] = []
        try:
            if not any(rule.applies_to(event) for rule in self._masks):
                return  # written as it is: no copy needed
            for part in ("input", "result"):  # the record's and the caller's stay as they are
                if part in event:
                    event[part] = _json_copy(event[part])
            for rule in self._masks:
                rule.apply(event, erased, masked)
        except Exception:  # a broken mask: keep nothing it may have been meant to hide
            self._mask_errors += 1
            LOGGER.exception("decision log: a mask failed; input and result are erased")
            event.pop("input", None)
            event.pop("result", None)
            erased, masked = ["/input", "/result"], []
        if erased:
            event["erased"] = erased
        if masked:
            event["masked"] = masked

    def _write(self, batch: list[DecisionRecord | _Query]) -> None:
        lines: list[bytes] = []
        for item in batch:
            try:
                event = self._build(item)
            except Exception as exc:  # a bug must not stop the log
                self._failed += 1
                self._error_warning.warn("decision log: an event could not be built: %r", exc)
                continue
            self._mask(event)
            try:
                lines.append(_ENCODER.encode(event).encode("utf-8"))
            except Exception as exc:  # not JSON (a caller's input of a foreign type)
                self._failed += 1
                self._error_warning.warn("decision log: an event could not be encoded: %r", exc)
        if not lines:
            return
        for sink in self._sinks:
            try:
                sink.write(lines)
            except Exception:  # a sink's bug: its events are lost, the others still go
                self._failed += len(lines)
                LOGGER.exception("decision log: sink %r failed", sink)

    # --- control ----------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait (at most ``timeout`` seconds) until every event queued so far has been
        handed to the sinks and they delivered it; whether all of that finished in time."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._left:
            target = self._received
            self._wake.set()
            while self._processed + self._evicted < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._left.wait(remaining)
        done = True
        for sink in self._sinks:
            done = sink.flush(max(deadline - time.monotonic(), 0.0)) and done
        return done

    def close(self, timeout: float | None = None) -> None:
        """Stop taking events, deliver what is queued and close the sinks, within
        ``timeout`` seconds (default ``close_timeout``); what is left then is counted as
        dropped. Later events are dropped (and counted)."""
        limit = self._close_timeout if timeout is None else max(float(timeout), 0.0)
        deadline = time.monotonic() + limit
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake.set()
        self._thread.join(max(deadline - time.monotonic(), 0.0))
        with self._lock:
            self._refused += len(self._queue)
            self._queue.clear()
        for sink in self._sinks:
            try:
                sink.close(max(deadline - time.monotonic(), 0.0))
            except Exception:
                LOGGER.exception("decision log: sink %r failed to close", sink)

    def stats(self) -> DecisionLogStats:
        """The counts so far (see :class:`DecisionLogStats`)."""
        with self._lock:
            received, queued = self._received, len(self._queue)
            dropped = self._evicted + self._refused
            failed, mask_errors = self._failed, self._mask_errors
        sinks = tuple(sink.stats() for sink in self._sinks)
        return DecisionLogStats(
            received=received,
            queued=queued,
            dropped=dropped + sum(s.dropped for s in sinks),
            failed=failed + sum(s.failed for s in sinks),
            written=sum(s.written for s in sinks),
            mask_errors=mask_errors,
            sinks=sinks,
        )
