"""A total deadline for one HTTP exchange, enforced by a watchdog thread.

A socket timeout bounds one read only, and an HTTP client reads a status line, headers and a
body in many reads (a TLS handshake too): a server sending one byte at a time could stretch
an exchange without bound. Each :class:`Exchange` has an end instant; every socket wait is
given at most the time left, and the shared :data:`WATCHDOG` shuts the socket down when the
end passes, which ends whichever read is blocked.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
from typing import Final

from urllib3.connection import HTTPConnection

__all__ = ["WATCHDOG", "DeadlineExceeded", "Exchange", "Watchdog"]

_ABORT_REPEAT_SECONDS: Final = 0.05


class DeadlineExceeded(Exception):
    """The exchange ran out of time (turned into a ``remote.error`` message)."""


class Exchange:
    """One decision's request to OPA: its connection and its deadline."""

    __slots__ = ("connected", "connection", "end", "sock")

    def __init__(self, connection: HTTPConnection, seconds: float) -> None:
        self.connection = connection
        self.end = time.monotonic() + seconds
        self.connected = False  # past connecting (TCP and TLS): the request is being sent
        self.sock: socket.socket | None = None  # kept: the connection drops its own on close

    def timeout(self, limit: float) -> float:
        """``limit``, or the time left if that is shorter; raise once the deadline has passed."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded
        return min(limit, left)

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def abort(self) -> None:
        """Shut the sockets down (from the watchdog thread): a blocked read returns at once."""
        for sock in (self.connection.sock, self.sock):
            if sock is not None:
                # The plain socket's shutdown: SSLSocket's would also drop its TLS state
                # under the thread that is reading.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Watchdog:
    """One daemon thread, shared by every evaluator, that aborts exchanges past their deadline.

    A socket timeout bounds one read only, and http.client reads a status line, headers
    and a body in many reads; a TLS handshake too. Shutting the socket down from this
    thread ends whichever read is blocked. Expired exchanges are aborted again every
    50 ms until they finish, in case a new socket appeared (a connection attempt that
    completed just then).
    """

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._exchanges: set[Exchange] = set()
        self._wake_at = math.inf
        self._thread: threading.Thread | None = None

    def watch(self, exchange: Exchange) -> None:
        with self._condition:
            self._exchanges.add(exchange)
            if self._thread is None or not self._thread.is_alive():  # first use, or forked
                self._thread = threading.Thread(
                    target=self._run, name="attestpolicy-remote-deadline", daemon=True
                )
                self._thread.start()
            elif exchange.end < self._wake_at:
                self._condition.notify()

    def unwatch(self, exchange: Exchange) -> None:
        with self._condition:
            self._exchanges.discard(exchange)

    def _run(self) -> None:
        with self._condition:
            while True:
                now = time.monotonic()
                wake_at = math.inf
                for exchange in self._exchanges:
                    if exchange.end <= now:
                        exchange.abort()
                        wake_at = min(wake_at, now + _ABORT_REPEAT_SECONDS)
                    else:
                        wake_at = min(wake_at, exchange.end)
                self._wake_at = wake_at
                self._condition.wait(None if math.isinf(wake_at) else wake_at - now)


WATCHDOG: Final = Watchdog()
