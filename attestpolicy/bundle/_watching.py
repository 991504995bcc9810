"""Watching a local bundle: a ``.tar.gz`` file or a bundle directory, re-read when it changes.

Every ``interval`` seconds the watcher compares the path's fingerprint (for a file, and
for each entry of a directory: name, inode, size and modification time in nanoseconds)
with the last one it read. A change is one attempt through the same path as a download:
load, verify, activate; nothing else is an attempt, so a bad bundle is reported once and
stays reported until the path changes again. Replace files atomically (write elsewhere,
then rename) so a half-written bundle is never read; one that is read anyway fails to
load, keeps the last good bundle, and is read again when the writer finishes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Final

from attestpolicy._keys import PublicKey
from attestpolicy.bundle._feed import BundleFeed, Fetched, check_seconds
from attestpolicy.bundle._loading import DEFAULT_LIMITS, BundleLimits, LoadedBundle
from attestpolicy.bundle._polling import DEFAULT_NAME
from attestpolicy.errors import BundleError

__all__ = ["DEFAULT_WATCH_INTERVAL", "BundleWatcher"]

DEFAULT_WATCH_INTERVAL: Final = 1.0

_Fingerprint = tuple[tuple[str, int, int, int, int], ...]


def _entry(name: str, info: os.stat_result) -> tuple[str, int, int, int, int]:
    return (name, info.st_mode, info.st_ino, info.st_size, info.st_mtime_ns)


def fingerprint(path: Path, max_entries: int) -> _Fingerprint:
    """What changes when the bundle at ``path`` changes (OSError when it cannot be read)."""
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        return (_entry("", info),)
    entries = [_entry("", info)]
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in [*dirnames, *sorted(filenames)]:
            full = Path(dirpath, name)
            entries.append(_entry(full.relative_to(path).as_posix(), full.lstat()))
            if len(entries) > max_entries + 1:
                raise BundleError(f"bundle directory {path} has more than {max_entries} entries")
    return tuple(entries)


class BundleWatcher(BundleFeed):
    """Watch ``path`` (a ``.tar.gz`` file or a bundle directory) and activate each new,
    verified bundle read from it (see the module). ``interval`` is the seconds between
    checks; the other arguments are :class:`~attestpolicy.bundle.BundlePoller`'s."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        on_bundle: Callable[[LoadedBundle], object],
        on_activation: Callable[[bool], object] | None = None,
        verification_key: PublicKey | bytes | str | None = None,
        scope: str | None = None,
        interval: float = DEFAULT_WATCH_INTERVAL,
        limits: BundleLimits = DEFAULT_LIMITS,
        name: str = DEFAULT_NAME,
    ) -> None:
        if not isinstance(path, str | os.PathLike):
            raise TypeError("the bundle path must be a string or a path")
        if check_seconds("interval", interval) <= 0:
            raise ValueError("interval must be > 0")
        super().__init__(
            name,
            on_bundle=on_bundle,
            on_activation=on_activation,
            verification_key=verification_key,
            scope=scope,
            limits=limits,
        )
        self._path = Path(path)
        self._interval = float(interval)
        self._seen: _Fingerprint | None = None

    @property
    def source(self) -> str:
        """The watched path."""
        return str(self._path)

    def _fetch(self, active_etag: str | None) -> Fetched | str | None:
        try:
            current = fingerprint(self._path, self._limits.max_files)
            problem = None
        except FileNotFoundError:
            problem = f"bundle not found: {self._path}"
        except OSError as exc:
            problem = f"cannot read bundle {self._path}: {exc.strerror or exc}"
        except BundleError as exc:
            problem = str(exc)
        if problem is not None:  # reported once, until the path changes
            current = ((problem, 0, 0, 0, 0),)
        if current == self._seen:
            return None
        self._seen = current
        if problem is not None:
            raise BundleError(problem)
        size = current[0][3] if len(current) == 1 else 0
        return Fetched(self._path, None, size)

    def _delay(self, failures: int) -> float:
        return self._interval
