"""Servers for tests: `attestpolicy serve` in a subprocess, or an ASGI app in a thread."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import requests

from attestpolicy._background_server import BackgroundServer

__all__ = ["BackgroundServer", "serve_cli", "serve_process"]  # BackgroundServer: the package's

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
