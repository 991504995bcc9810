"""Warnings about a failing decision log, at most one per interval (a collector that is
down for an hour must not write a line per event to the process's own log)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Final

__all__ = ["LOGGER", "ThrottledWarning"]

LOGGER: Final = logging.getLogger("attestpolicy.decisionlog")

_INTERVAL_SECONDS: Final = 10.0


class ThrottledWarning:
    """Log a warning now, then at most once per interval, counting those held back."""

    def __init__(self, interval: float = _INTERVAL_SECONDS) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._next = 0.0
        self._held = 0

    def warn(self, message: str, *args: object) -> None:
        """Log ``message % args`` unless one was logged less than an interval ago."""
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._held += 1
                return
            held, self._held = self._held, 0
            self._next = now + self._interval
        suffix = f" ({held} similar message(s) held back)" if held else ""
        LOGGER.warning(message + suffix, *args)
