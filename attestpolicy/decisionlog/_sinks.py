"""Where decision log events go: the sink interface, JSON lines in a file, standard output.

A sink receives events already masked and encoded (one JSON object per item, no newline)
from the logger's writer thread, never from a deciding thread. It never raises: what it
cannot write it counts as failed, and it goes on with the next events.
"""

from __future__ import annotations

import abc
import contextlib
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from attestpolicy.decisionlog._errors import DecisionLogConfigError, check_count
from attestpolicy.decisionlog._throttle import ThrottledWarning

__all__ = ["DEFAULT_BACKUPS", "DEFAULT_MAX_BYTES", "FileSink", "Sink", "SinkStats", "StdoutSink"]

DEFAULT_MAX_BYTES: Final = 100 * 1024 * 1024
"""A log file is rotated before it would pass this size (100 MiB) by default."""

DEFAULT_BACKUPS: Final = 5
"""Rotated files kept by default (``decisions.jsonl.1`` ... ``.5``)."""


@dataclass(frozen=True)
class SinkStats:
    """A sink's counts of events: ``written`` (delivered), ``dropped`` (pushed out of a
    full buffer, or still unsent at close), ``failed`` (lost to an error), ``pending``
    (buffered, not yet delivered)."""

    name: str
    written: int = 0
    dropped: int = 0
    failed: int = 0
    pending: int = 0


class Sink(abc.ABC):
    """The interface of a decision log sink (subclass it for your own)."""

    @abc.abstractmethod
    def write(self, lines: Sequence[bytes]) -> None:
        """Take these events (each a JSON object, UTF-8, without a newline). Called from
        the logger's writer thread only. Must not raise and should not block for long."""

    def flush(self, timeout: float) -> bool:
        """Deliver what is buffered, waiting at most ``timeout`` seconds; whether all was."""
        return True

    def close(self, timeout: float) -> None:  # noqa: B027  (most sinks hold nothing)
        """Deliver what is buffered (at most ``timeout`` seconds) and release resources."""

    @abc.abstractmethod
    def stats(self) -> SinkStats:
        """The counts so far."""


class FileSink(Sink):
    """JSON lines appended to ``path``, rotated by size.

    Before a line would take the file past ``max_bytes`` (None: never), the file becomes
    ``<path>.1`` (``.1`` becomes ``.2`` and so on; ``backups`` files are kept, the oldest
    deleted) and a new one is started. Each batch is written and flushed to the operating
    system at once; a failed write (disk full) is cut back to the last whole line, its
    events are counted as failed, and the file is reopened on the next batch. One process
    per file: several processes appending to one file would rotate it under each other.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
    ) -> None:
        if max_bytes is not None:
            check_count("max_bytes", max_bytes, 1)
        self._max_bytes = max_bytes
        self._backups = check_count("backups", backups, 0)
        self._path = Path(path)
        self._lock = threading.Lock()
        self._size = 0
        self._written = 0
        self._failed = 0
        self._closed = False
        self._warning = ThrottledWarning()
        try:
            self._file: int | None = self._open()
        except OSError as exc:
            raise DecisionLogConfigError(
                f"cannot open the decision log {self._path}: {exc.strerror or exc}"
            ) from None

    @property
    def path(self) -> Path:
        """The file written to."""
        return self._path

    def _open(self) -> int:
        descriptor = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._size = os.fstat(descriptor).st_size
        return descriptor

    def _close_file(self) -> None:
        if self._file is not None:
            descriptor, self._file = self._file, None
            with contextlib.suppress(OSError):
                os.close(descriptor)

    def _rotated(self, number: int) -> Path:
        return self._path.with_name(f"{self._path.name}.{number}")

    def _rotate(self) -> int:
        self._close_file()
        if self._backups:
            for number in range(self._backups - 1, 0, -1):
                if self._rotated(number).exists():
                    os.replace(self._rotated(number), self._rotated(number + 1))
            os.replace(self._path, self._rotated(1))
        else:
            self._path.unlink()
        self._file = self._open()
        return self._file

    def _append(self, descriptor: int, chunk: list[bytes]) -> None:
        data = memoryview(b"\n".join(chunk) + b"\n")
        start, total = self._size, len(data)
        try:
            while data:
                data = data[os.write(descriptor, data) :]
        except OSError:
            with contextlib.suppress(OSError):  # no half line left behind
                os.ftruncate(descriptor, start)
            raise
        self._size = start + total
        self._written += len(chunk)

    def write(self, lines: Sequence[bytes]) -> None:
        """Append the events (rotating first when the next one would not fit)."""
        if not lines:
            return
        with self._lock:
            done = self._written
            try:
                if self._closed:
                    raise OSError("the file sink is closed")
                descriptor = self._file if self._file is not None else self._open()
                self._file = descriptor
                chunk: list[bytes] = []
                pending = 0
                for line in lines:
                    needed = len(line) + 1
                    full = self._max_bytes is not None and (
                        self._size + pending + needed > self._max_bytes
                    )
                    if full and self._size + pending > 0:
                        if chunk:
                            self._append(descriptor, chunk)
                            chunk, pending = [], 0
                        descriptor = self._rotate()
                    chunk.append(line)
                    pending += needed
                self._append(descriptor, chunk)
            except OSError as exc:
                lost = len(lines) - (self._written - done)
                self._failed += lost
                self._close_file()
                self._warning.warn(
                    "decision log %s: %d event(s) not written: %s",
                    self._path,
                    lost,
                    exc.strerror or exc,
                )

    def close(self, timeout: float) -> None:
        """Close the file (later writes count as failed)."""
        if not self._lock.acquire(timeout=max(timeout, 0.0)):
            return  # a write is stuck (a hung file system): leave it to finish
        try:
            self._closed = True
            self._close_file()
        finally:
            self._lock.release()

    def stats(self) -> SinkStats:
        """Lines written, and lines lost to write errors."""
        with self._lock:
            return SinkStats(f"file:{self._path}", written=self._written, failed=self._failed)


class StdoutSink(Sink):
    """JSON lines on standard output (whatever ``sys.stdout`` is at each write), flushed
    after each batch. Output to a closed pipe counts as failed."""

    def __init__(self) -> None:
        self._written = 0
        self._failed = 0
        self._warning = ThrottledWarning()

    def write(self, lines: Sequence[bytes]) -> None:
        """Write the events, one per line."""
        if not lines:
            return
        data = b"\n".join(lines) + b"\n"
        stream = sys.stdout
        try:
            binary = getattr(stream, "buffer", None)
            if binary is not None:
                stream.flush()  # what was printed before comes before
                binary.write(data)
                binary.flush()
            else:
                stream.write(data.decode("utf-8"))
                stream.flush()
        except (OSError, ValueError) as exc:  # a closed pipe or stream
            self._failed += len(lines)
            self._warning.warn(
                "decision log on stdout: %d event(s) not written: %s", len(lines), exc
            )
        else:
            self._written += len(lines)

    def stats(self) -> SinkStats:
        """Lines written, and lines lost to output errors."""
        return SinkStats("stdout", written=self._written, failed=self._failed)
