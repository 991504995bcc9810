"""uvicorn's HTTP protocols with a deadline, and a size bound, for every request head.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive`` seconds, but
only counts from the last byte received and never arms the timer on a new connection:
a client that connects and sends nothing, or one header byte every few seconds, holds
the connection (and a place under ``limit_concurrency``) for ever. These protocols give
each connection ``timeout_keep_alive`` seconds, from when it opens or from the end of
the previous answer, to deliver a complete request head; otherwise it is closed (and
an answer the client has not read is dropped).

Two parsers, the same limits:

- :class:`HttpToolsHeadDeadlineProtocol` (the default of ``serve``): uvicorn's protocol on
  ``httptools`` (llhttp, compiled). llhttp keeps no bound on a head's size, so this one
  counts the bytes received while a head is incomplete and answers ``400`` (and closes)
  past :data:`MAX_HEAD_BYTES`.
- :class:`HeadDeadlineProtocol`: uvicorn's protocol on ``h11`` (pure Python), which
  bounds an incomplete head itself (uvicorn's ``h11_max_incomplete_event_size``, 16 KiB).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final, Protocol, cast

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["MAX_HEAD_BYTES", "HeadDeadlineProtocol", "HttpToolsHeadDeadlineProtocol"]

MAX_HEAD_BYTES: Final = 16 * 1024
"""Bytes a connection may send while a request head is incomplete (h11's own bound)."""


class _Cycle(Protocol):
    response_complete: bool


class _Connection(Protocol):
    """What the deadline reads of a uvicorn protocol."""

    cycle: _Cycle | None
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    timeout_keep_alive: float


class _HeadDeadline:
    """The deadline, mixed into a uvicorn protocol (listed before it among the bases).

    A request head is awaited from when the connection opens and from the end of each
    answer. The deadline only closes a connection that has no request in progress:
    with a pipelined request, whose head arrived while the previous answer was being
    made, the deadline is armed again at the end of its own answer.
    """

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(Any, super()).connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        cast(Any, super()).on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        cast(Any, super()).connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        connection = cast(_Connection, self)
        if not connection.transport.is_closing():
            self._head_timer = connection.loop.call_later(
                connection.timeout_keep_alive, self._head_deadline
            )

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_deadline(self) -> None:
        self._head_timer = None
        connection = cast(_Connection, self)
        transport = connection.transport
        if transport.is_closing():
            return
        if connection.cycle is not None and not connection.cycle.response_complete:
            return  # a head arrived: its request is being answered
        if transport.get_write_buffer_size():
            transport.abort()  # the client is not reading its answer either
        else:
            transport.close()


class HeadDeadlineProtocol(_HeadDeadline, H11Protocol):
    """:class:`H11Protocol` closing a connection whose next request head is late."""


class HttpToolsHeadDeadlineProtocol(_HeadDeadline, HttpToolsProtocol):
    """:class:`HttpToolsProtocol` closing a connection whose next request head is late,
    or larger than :data:`MAX_HEAD_BYTES`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        # Bytes are counted while a head is incomplete, a read at a time: a head may
        # exceed the bound by at most one read (as with h11).
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES:
            self._head_too_large()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    def _head_too_large(self) -> None:
        self._in_head = False
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.send_400_response("Request head too large.")
        else:  # an answer is being written: no room for another
            self.transport.close()
