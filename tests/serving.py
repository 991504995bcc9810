"""Servers for tests: `attestpolicy serve` in a subprocess, or an ASGI app in a thread."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import requests
import uvicorn
from starlette.types import ASGIApp

from attestpolicy.server import ServerLimits, uvicorn_config

__all__ = ["BackgroundServer", "serve_process"]

_LISTENING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")


@contextmanager
def serve_process(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_path: Path, timeout: float = 60
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Run ``argv`` (a server on 127.0.0.1:0) until ``/health`` answers; yield it and its URL.

    The server runs in its own session; on exit it is sent SIGTERM and, if it does not
    stop within 30 s, its whole process group is killed.
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
        )
    try:
        url = ""
        deadline = time.monotonic() + timeout
        while not url and time.monotonic() < deadline and process.poll() is None:
            found = _LISTENING.search(log_path.read_text())
            if found:
                try:
                    if requests.get(f"{found.group(1)}/health", timeout=2).status_code == 200:
                        url = found.group(1)
                except requests.ConnectionError:
                    pass
            if not url:
                time.sleep(0.1)
        assert url, log_path.read_text()
        yield process, url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


class BackgroundServer:
    """Serve an ASGI app on an ephemeral port of 127.0.0.1 in a daemon thread.

    Use it as a context manager: ``with BackgroundServer(create_app(evaluator)) as server:``.
    The server applies the connection limits of ``limits`` (default: the defaults) as
    ``attestpolicy serve`` does, and runs the app's lifespan (which stops its threads).
    """

    def __init__(
        self, app: ASGIApp, *, limits: ServerLimits | None = None, startup_timeout: float = 10.0
    ) -> None:
        self._app = app
        self._limits = limits or ServerLimits()
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
        config = uvicorn_config(self._app, self._limits, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="attestpolicy-serve", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the background server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Ask the server to exit and wait for its thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=self._startup_timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
