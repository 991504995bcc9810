"""uvicorn's h11 protocol with a deadline for every request's headers.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive`` seconds, but
only counts from the last byte received and never arms the timer on a new connection:
a client that connects and sends nothing, or one header byte every few seconds, holds
the connection (and a place under ``limit_concurrency``) for ever. This protocol gives
each connection ``timeout_keep_alive`` seconds, from when it opens or from the end of
the previous answer, to deliver a complete request head; otherwise it is closed (and
an answer the client has not read is dropped).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

__all__ = ["HeadDeadlineProtocol"]


class HeadDeadlineProtocol(H11Protocol):
    """:class:`H11Protocol` closing a connection whose next request head is late."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        self._arm(None)

    def on_response_complete(self) -> None:
        finished = self.cycle
        super().on_response_complete()
        self._arm(finished)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, finished: RequestResponseCycle | None) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self._head_timer = self.loop.call_later(
                self.timeout_keep_alive, self._head_deadline, finished
            )

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_deadline(self, finished: RequestResponseCycle | None) -> None:
        self._head_timer = None
        # A request head has arrived since the timer was armed iff the cycle changed.
        if self.cycle is finished and not self.transport.is_closing():
            if self.transport.get_write_buffer_size():
                self.transport.abort()  # the client is not reading its answer either
            else:
                self.transport.close()
