"""The bearer token between a bundle server and its pollers: from a file or the environment.

A token never goes on a command line (other users can read those): it is read from a
file only its owner can read, or from :data:`TOKEN_ENV`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from attestpolicy.errors import BundleError

__all__ = ["MAX_TOKEN_BYTES", "MIN_TOKEN_CHARS", "TOKEN_ENV", "load_token"]

TOKEN_ENV: Final = "ATTESTPOLICY_BUNDLE_TOKEN"  # noqa: S105  # a variable name
"""The environment variable holding the bundle service's bearer token."""

MIN_TOKEN_CHARS: Final = 16
MAX_TOKEN_BYTES: Final = 4096


def load_token(path: str | os.PathLike[str] | None = None) -> str | None:
    """The token in ``path`` (mode 600 or stricter), else in :data:`TOKEN_ENV`, else None.

    Raises :class:`~attestpolicy.errors.BundleError` for a file that cannot be read, is
    readable by group or others, or holds no usable token (16 to 4096 characters, one
    line).
    """
    if path is not None:
        where = Path(path)
        try:
            with where.open("rb") as handle:
                mode = os.fstat(handle.fileno()).st_mode
                raw = handle.read(MAX_TOKEN_BYTES + 1)
        except OSError as exc:
            raise BundleError(f"cannot read token file {where}: {exc.strerror or exc}") from None
        if stat.S_IMODE(mode) & 0o077:
            raise BundleError(
                f"token file {where} is readable by group or others "
                f"(mode {stat.S_IMODE(mode):o}): chmod 600 it"
            )
        token = raw.decode("utf-8", "replace").strip()
        what = f"token file {where}"
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            return None
        what = TOKEN_ENV
    if not token:
        raise BundleError(f"{what} is empty")
    if len(token) < MIN_TOKEN_CHARS or len(token.encode()) > MAX_TOKEN_BYTES:
        raise BundleError(
            f"{what}: the token must be {MIN_TOKEN_CHARS} to {MAX_TOKEN_BYTES} characters"
        )
    if any(c.isspace() for c in token):
        raise BundleError(f"{what}: the token must be one word (no spaces or line breaks)")
    return token
