"""The worker processes of ``serve``: one listening socket each, on one port.

With one listening socket shared by every worker, the worker whose event loop wakes
first accepts every pending connection: the keep-alive connections of one client (a
PEP's pool, a load generator) often all land on one worker while the others idle
(measured here: 3 runs in 8 with 8 connections and 2 workers). So on Linux each worker
listens on its own socket, all bound to the same address with ``SO_REUSEPORT``, and the
kernel spreads new connections over them by a hash of their addresses. Only processes
of the same user can bind a port such a group holds.

:class:`Workers` supervises them as uvicorn's own supervisor does: worker ``i`` always
serves socket ``i``; one that exits or stops answering the supervisor's health check is
replaced on the same socket (connections that arrive meanwhile wait in its backlog);
SIGINT or SIGTERM stop them all; SIGHUP replaces them one at a time.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Final

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from attestpolicy._server_limits import ServerSettingsError

__all__ = ["Workers", "listen_sockets"]

_LOGGER = logging.getLogger("uvicorn.error")
_SPAWN = multiprocessing.get_context("spawn")
_CHECK_EVERY_SECONDS: Final = 0.5
_HEALTH_CHECK_SECONDS: Final = 5.0
_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


def listen_sockets(host: str, port: int, workers: int) -> list[socket.socket]:
    """The listening sockets for ``workers`` workers on ``host:port`` (port 0: a free one).

    One per worker, sharing the port with ``SO_REUSEPORT``, on Linux; one shared by all
    elsewhere (where ``SO_REUSEPORT`` does not spread connections) and for one worker.
    Raises :class:`ServerSettingsError` when the address cannot be bound.
    """
    count = workers if workers > 1 and sys.platform == "linux" else 1
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(_bound_socket(host, port, reuse_port=count > 1))
            port = sockets[0].getsockname()[1]
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _bound_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A bound TCP socket, made here rather than by uvicorn.

    It must be created with ``IPPROTO_TCP``: asyncio only sets TCP_NODELAY on accepted
    connections of such sockets, and uvicorn's own multi-worker socket (protocol 0,
    kept as 0 when handed to the workers) would add Nagle's ~40 ms to every answer.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServerSettingsError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    sock.set_inheritable(True)
    return sock


def _serve(config: uvicorn.Config, sock: socket.socket, health: Connection) -> None:
    """A worker process: answer health checks, and serve ``sock`` until told to stop."""
    config.configure_logging()
    server = uvicorn.Server(config)

    def answer_health_checks() -> None:
        try:
            while True:
                health.recv()
                health.send(server.started)
        except (EOFError, OSError):  # the supervisor is gone
            return

    threading.Thread(target=answer_health_checks, daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):  # the supervisor stops this worker too
        server.run(sockets=[sock])


class _Worker:
    """One worker process serving one socket."""

    def __init__(self, config: uvicorn.Config, sock: socket.socket) -> None:
        self._health, child_end = _SPAWN.Pipe()
        self.process: BaseProcess = _SPAWN.Process(
            target=_serve, args=(config, sock, child_end), name="attestpolicy-serve"
        )
        self.process.start()
        child_end.close()

    def healthy(self, timeout: float) -> bool:
        """Whether it runs and answers a health check within ``timeout`` seconds."""
        if not self.process.is_alive():
            return False
        try:
            self._health.send(b"ping")
            if not self._health.poll(timeout):
                return False
            self._health.recv()
        except (EOFError, OSError):
            return False
        return True

    def stop(self) -> None:
        """Ask it to stop (SIGTERM: uvicorn shuts down gracefully)."""
        if self.process.exitcode is None and self.process.pid is not None:
            os.kill(self.process.pid, signal.SIGTERM)

    def kill(self) -> None:
        self.process.kill()

    def join(self) -> None:
        self.process.join()
        self._health.close()


class Workers:
    """``config.workers`` worker processes, worker ``i`` on ``sockets[i % len(sockets)]``."""

    def __init__(
        self,
        config: uvicorn.Config,
        sockets: list[socket.socket],
        *,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self.config = config
        self._on_exit = on_exit
        self.sockets = sockets
        self.count = config.workers
        self.workers: list[_Worker] = []
        self._exit = threading.Event()
        self._signals: list[int] = []
        self._health_timeout = float(
            getattr(config, "timeout_worker_healthcheck", _HEALTH_CHECK_SECONDS)
        )

    def _start(self, index: int) -> _Worker:
        return _Worker(self.config, self.sockets[index % len(self.sockets)])

    def run(self) -> None:
        """Start the workers and keep them running until SIGINT or SIGTERM."""
        previous: dict[signal.Signals, Any] = {}
        for number in (*_STOP_SIGNALS, signal.SIGHUP):
            previous[number] = signal.signal(number, self._on_signal)
        _LOGGER.info("Started parent process [%d]", os.getpid())
        try:
            self.workers = [self._start(index) for index in range(self.count)]
            while not self._exit.wait(_CHECK_EVERY_SECONDS):
                self._handle_signals()
                self._replace_unhealthy()
        finally:
            for worker in self.workers:
                worker.stop()
            for worker in self.workers:
                self._join(worker)
            for number, handler in previous.items():
                signal.signal(number, handler)
            _LOGGER.info("Stopping parent process [%d]", os.getpid())

    def _join(self, worker: _Worker) -> None:
        """Wait for a stopping worker, then tell ``on_exit`` (its metrics files go)."""
        worker.join()
        pid = worker.process.pid
        if self._on_exit is not None and pid is not None:
            try:
                self._on_exit(pid)
            except Exception:
                _LOGGER.exception("cleaning up after worker [%d] failed", pid)

    def _on_signal(self, number: int, frame: object) -> None:
        self._signals.append(number)
        if number in _STOP_SIGNALS:
            self._exit.set()

    def _handle_signals(self) -> None:
        while self._signals:
            if self._signals.pop(0) == signal.SIGHUP.value:
                _LOGGER.info("Received SIGHUP, restarting processes.")
                for index, worker in enumerate(self.workers):
                    if self._exit.is_set():
                        return
                    worker.stop()
                    self._join(worker)
                    self.workers[index] = self._start(index)

    def _replace_unhealthy(self) -> None:
        for index, worker in enumerate(self.workers):
            if self._exit.is_set() or worker.healthy(self._health_timeout):
                continue
            worker.kill()  # gone, or hung
            self._join(worker)
            if worker.process.exitcode == STARTUP_FAILURE:
                # It failed before serving: the app or the socket is broken, and a new
                # worker would fail the same way.
                _LOGGER.error(
                    "Child process [%s] failed to start, stopping the parent process.",
                    worker.process.pid,
                )
                self._exit.set()
                return
            _LOGGER.info("Child process [%s] died", worker.process.pid)
            self.workers[index] = self._start(index)
