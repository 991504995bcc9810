"""Serve an ASGI application on 127.0.0.1 in a thread (the broker demo, and tests)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Self

import uvicorn

from attestpolicy._closing import Closing
from attestpolicy._server_limits import ServerLimits
from attestpolicy.server import uvicorn_config

__all__ = ["BackgroundServer"]


class BackgroundServer(Closing):
    """Serve an ASGI app on an ephemeral port of 127.0.0.1 in a daemon thread.

    Use it as a context manager: ``with BackgroundServer(create_app(evaluator)) as server:``.
    The server applies the connection limits of ``limits`` (default: the defaults) as
    ``attestpolicy serve`` does, with ``http_parser`` (default httptools, as ``serve``),
    and runs the app's lifespan (which stops its threads).
    """

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        *,
        limits: ServerLimits | None = None,
        http_parser: Literal["httptools", "h11"] = "httptools",
        startup_timeout: float = 10.0,
    ) -> None:
        self._app: Any = app
        self._limits = limits or ServerLimits()
        self._http_parser: Literal["httptools", "h11"] = http_parser
        self._startup_timeout = startup_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running server."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BackgroundServer:
        """Bind, start serving and wait until the server accepts requests."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        # proto must be IPPROTO_TCP: asyncio only sets TCP_NODELAY on such sockets.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn_config(
            self._app, self._limits, http_parser=self._http_parser, log_level="warning"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="attestpolicy-serve", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("the background server did not start")
            time.sleep(0.01)
        return self

    def close(self) -> None:
        """Ask the server to exit and wait for its thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=self._startup_timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> Self:
        self.start()
        return self
