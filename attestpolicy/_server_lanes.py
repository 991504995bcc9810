"""Where ``serve`` evaluates: two bounded lanes of threads, off the event loop.

A lane is a fixed pool of threads (each builds its own engine: regorus engines are
bound to their thread) and a count of the requests it has admitted. Admission never
waits: a full lane refuses at once and the caller answers 503. A request keeps its
place from admission until its evaluation has ended, even when the caller stopped
waiting for it (``eval_timeout``), because a thread cannot interrupt an engine.

regorus holds the GIL for a whole evaluation, so a thread does not make the event
loop independent of a long evaluation; it makes it independent of the *number* of
them. The large lane lets at most ``max_large_requests`` large inputs, the only
expensive ones, be parsed or evaluated at once per worker, so small requests wait
behind at most that many.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from attestpolicy._closing import Closing
from attestpolicy.engine._inprocess import InProcessEvaluator
from attestpolicy.errors import EvaluatorError
from attestpolicy.policy import DECISION_PATH

__all__ = ["EvaluationTimeout", "Lane", "Slot"]

T = TypeVar("T")

_WARM_UP_SECONDS = 60.0


class EvaluationTimeout(Exception):
    """The answer was not ready within the time the caller gave it."""


class Lane:
    """``threads`` threads and at most ``capacity`` admitted requests.

    A lane of no threads runs its requests on the caller's thread (the event loop), each
    when its turn comes: no hand-off between threads, but nothing else runs meanwhile.
    """

    def __init__(self, name: str, threads: int, capacity: int) -> None:
        self.name = name
        self.capacity = capacity
        self._threads = threads
        self._executor = (
            ThreadPoolExecutor(threads, thread_name_prefix=f"attestpolicy-{name}")
            if threads
            else None
        )
        self._lock = threading.Lock()
        self._admitted = 0

    @property
    def admitted(self) -> int:
        """Requests holding a place now."""
        with self._lock:
            return self._admitted

    def admit(self) -> Slot | None:
        """A place in this lane, or None when it is full."""
        with self._lock:
            if self._admitted >= self.capacity:
                return None
            self._admitted += 1
        return Slot(self)

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1

    def warm_up(self, evaluator: InProcessEvaluator) -> None:
        """Start every thread and build its engine now rather than on its first request
        (with no threads: this thread's engine, which serves them if it runs the loop)."""

        def build() -> None:
            # The engine is built first; evaluating without input may just fail.
            with contextlib.suppress(EvaluatorError):
                evaluator.evaluate_path(DECISION_PATH, None)

        if self._executor is None:
            build()
            return
        barrier = threading.Barrier(self._threads, timeout=_WARM_UP_SECONDS)

        def build_one() -> None:
            barrier.wait()  # one task per thread: none may take two
            build()

        for future in [self._executor.submit(build_one) for _ in range(self._threads)]:
            future.result(timeout=_WARM_UP_SECONDS)

    def close(self) -> None:
        """Stop taking work; threads end after their current evaluation."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


class Slot(Closing):
    """One admitted request's place in its lane; :meth:`close` gives it back, once."""

    def __init__(self, lane: Lane) -> None:
        self.lane = lane
        self._held = True

    async def run(self, timeout: float, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on the lane's threads; EvaluationTimeout after ``timeout`` s.

        The place is handed to the evaluation, which gives it back when it ends (at
        once if it had not started when the caller stopped waiting). In a lane of no
        threads it runs here, at once, and cannot time out.
        """
        if self.lane._executor is None:
            with self:
                return function(*args)
        future: Future[T] = self.lane._executor.submit(function, *args)
        self._held = False
        future.add_done_callback(lambda _: self.lane._release())
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.wrap_future(future)
        except TimeoutError:
            raise EvaluationTimeout from None

    def close(self) -> None:
        """Give the place back, unless an evaluation already holds it."""
        if self._held:
            self._held = False
            self.lane._release()
