"""``serve --ready-file``: a file that appears once the server answers, and goes when it stops.

A script starts ``attestpolicy serve ... --ready-file FILE &`` and waits for FILE instead of
sleeping and hoping. The file is written (atomically: a temporary file renamed) when
``GET /health`` answers 200, that is once a worker has compiled the policy and accepts
connections; it holds the server's base URL (``http://127.0.0.1:8181``: with port 0, the
port picked). A stale file is removed before the server listens, and the file when it stops.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import sys
import threading
import time
from pathlib import Path
from typing import Final

from attestpolicy._server_limits import ServerSettingsError

__all__ = ["ReadyFile"]

_POLL_SECONDS: Final = 0.05
_WILDCARDS: Final = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104


class ReadyFile:
    """The ready file at ``path``: :meth:`announce` writes it, :meth:`remove` removes it."""

    def __init__(self, path: str | Path) -> None:
        """Check that the file can be written (its directory exists) and remove a stale one.

        Raises :class:`ServerSettingsError` otherwise, before anything listens.
        """
        self.path = Path(path).resolve()
        if not self.path.parent.is_dir():
            raise ServerSettingsError(f"--ready-file: no such directory: {self.path.parent}")
        if self.path.is_dir():
            raise ServerSettingsError(f"--ready-file: {self.path} is a directory")
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise ServerSettingsError(
                f"--ready-file: cannot remove the stale {self.path}: {exc.strerror or exc}"
            ) from None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def announce(self, host: str, port: int) -> None:
        """Write the file, from a daemon thread, once ``GET /health`` answers 200."""
        host = _WILDCARDS.get(host, host)
        url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._wait_and_write, args=(host, port, url), name="ready-file", daemon=True
        )
        self._thread.start()

    def remove(self) -> None:
        """Stop waiting and remove the file (the server stopped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)

    def _wait_and_write(self, host: str, port: int, url: str) -> None:
        while not self._stop.is_set():
            if _healthy(host, port):
                self._write(url)
                return
            time.sleep(_POLL_SECONDS)

    def _write(self, url: str) -> None:
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            temporary.write_text(url + "\n", encoding="utf-8")
            if not self._stop.is_set():
                os.replace(temporary, self.path)
        except OSError as exc:  # the directory went away: say so, the server keeps serving
            print(f"attestpolicy: warning: cannot write --ready-file: {exc}", file=sys.stderr)
        finally:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)


def _healthy(host: str, port: int) -> bool:
    connection = http.client.HTTPConnection(host, port, timeout=1.0)
    try:
        connection.request("GET", "/health")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
