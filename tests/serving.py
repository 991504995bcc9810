"""Servers for tests: `attestpolicy serve` in a subprocess, or an ASGI app in a thread."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Literal, Self

import requests
import uvicorn

from attestpolicy._closing import Closing
from attestpolicy.server import ServerLimits, uvicorn_config

__all__ = ["BackgroundServer", "serve_cli", "serve_process"]

_REPO_ROOT = Path(__file__).resolve().parents[1]
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


def serve_cli(
    tmp_path: Path, *args: str
) -> AbstractContextManager[tuple[subprocess.Popen[bytes], str]]:
    """``attestpolicy serve --addr 127.0.0.1:0 <args>`` from this checkout, by
    :func:`serve_process`, logging to ``tmp_path / "serve.log"``."""
    argv = [sys.executable, "-m", "attestpolicy", "serve", "--addr", "127.0.0.1:0", *args]
    env = {**os.environ, "PYTHONPATH": str(_REPO_ROOT)}
    return serve_process(argv, cwd=tmp_path, env=env, log_path=tmp_path / "serve.log")


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
