"""A bundle server: the ``*.tar.gz`` bundles of a directory, over OPA's bundle service API.

``GET /bundles/<path>`` answers the file ``<path>`` under the directory, or
``<path>.tar.gz`` when ``<path>`` does not end in ``.tar.gz``, so both an explicit OPA
``resource`` (``bundles/attestpolicy.tar.gz``) and OPA's default one for a bundle named
``attestpolicy`` (``bundles/attestpolicy``) find ``DIR/attestpolicy.tar.gz``. Each answer
carries a strong ``ETag`` (the SHA-256 of the file); a request whose ``If-None-Match``
names it gets ``304 Not Modified`` without a body. With a token, ``/bundles/`` needs
``Authorization: Bearer <token>`` (401 otherwise). With a verification key, a file that
is not signed by it, or does not verify, is not served (500). ``GET /health`` answers
``200 {}``. Files are read as they are when asked for (replace them atomically); symlinks,
dot files and paths outside the directory are never served. Errors are OPA's
``{"code", "message"}`` documents.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import stat
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from attestpolicy._keys import PublicKey
from attestpolicy.bundle._loading import DEFAULT_LIMITS, BundleLimits, load_bundle
from attestpolicy.errors import BundleError

__all__ = ["BUNDLE_PREFIX", "BUNDLE_TYPE", "BundleServer"]

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

BUNDLE_PREFIX: Final = "/bundles/"
BUNDLE_TYPE: Final = "application/gzip"
_SUFFIX: Final = ".tar.gz"
_METHODS: Final = ("GET", "HEAD")
_MAX_CACHED: Final = 256
_LOG = logging.getLogger("attestpolicy.bundle.server")

_Fingerprint = tuple[int, int, int, int]


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    content_type: bytes = b"application/json"


def _error(status: int, code: str, message: str, *extra: tuple[bytes, bytes]) -> _Answer:
    body = json.dumps({"code": code, "message": message}).encode()
    return _Answer(status, body, extra)


def _not_found(path: str) -> _Answer:
    return _error(404, "resource_not_found", f"no bundle at {path}")


@dataclass(frozen=True)
class _Known:
    """What was learned about one file at one fingerprint."""

    etag: str
    problem: str | None


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak comparison, or ``*``)."""
    if header is None:
        return False
    wanted = etag.removeprefix("W/")
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == wanted:
            return True
    return False


class BundleServer:
    """The ASGI application serving the bundles in ``directory`` (see the module).

    ``token``: the bearer token ``/bundles/`` requires (None: open). ``verification_key``:
    serve only bundles signed by it. ``limits``: the largest file served
    (``max_bundle_bytes``) and, with a key, the checks applied.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        token: str | None = None,
        verification_key: PublicKey | bytes | str | None = None,
        limits: BundleLimits = DEFAULT_LIMITS,
    ) -> None:
        root = Path(directory)
        if not root.is_dir():
            raise BundleError(f"bundle directory not found: {root}")
        if token is not None and (not isinstance(token, str) or not token):
            raise ValueError("token must be a non-empty string")
        if verification_key is not None:
            from attestpolicy.bundle._signing import public_key

            verification_key = public_key(verification_key)
        self._root = root.resolve()
        self._expected = f"Bearer {token}".encode() if token is not None else None
        self._key = verification_key
        self._limits = limits
        self._known: dict[tuple[str, _Fingerprint], _Known] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            raise ValueError(f"unsupported ASGI scope type {scope['type']!r}")
        try:
            answer = await self._answer(scope)
        except Exception as exc:
            _LOG.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            answer = _error(500, "internal_error", f"unexpected error: {type(exc).__name__}")
        headers = [
            (b"content-type", answer.content_type),
            (b"content-length", str(len(answer.body)).encode()),
            *answer.headers,
        ]
        if answer.status == 304:
            headers = list(answer.headers)
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        body = b"" if scope["method"] == "HEAD" or answer.status == 304 else answer.body
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope) -> _Answer:
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/health":
            if method not in _METHODS:
                return _error(405, "invalid_operation", f"{method} is not allowed on {path}")
            return _Answer(200, b"{}")
        if not path.startswith(BUNDLE_PREFIX):
            return _not_found(path)
        if self._expected is not None and not self._authorized(scope):
            return _error(
                401,
                "unauthorized",
                "a valid bearer token is required",
                (b"www-authenticate", b'Bearer realm="attestpolicy-bundles"'),
            )
        if method not in _METHODS:
            allow = (b"allow", ", ".join(_METHODS).encode())
            return _error(405, "invalid_operation", f"{method} is not allowed on {path}", allow)
        relative = _relative(path[len(BUNDLE_PREFIX) :])
        if relative is None:
            return _not_found(path)
        if_none_match = _header(scope, b"if-none-match")
        return await asyncio.to_thread(self._file_answer, path, relative, if_none_match)

    def _authorized(self, scope: Scope) -> bool:
        given = _header(scope, b"authorization")
        assert self._expected is not None
        return given is not None and hmac.compare_digest(given.encode(), self._expected)

    def _file_answer(self, path: str, relative: str, if_none_match: str | None) -> _Answer:
        """The answer for one bundle file (on a thread: it reads and hashes)."""
        target = self._root / relative
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
        try:
            if os.path.realpath(target) != str(target):  # a symlink on the way
                return _not_found(path)
            fd = os.open(target, flags)
        except OSError:
            return _not_found(path)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            return _not_found(path)
        with os.fdopen(fd, "rb") as handle:
            if info.st_size > self._limits.max_bundle_bytes:
                return _error(
                    500,
                    "internal_error",
                    f"bundle {relative} is larger than {self._limits.max_bundle_bytes} bytes",
                )
            fingerprint = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            known = self._known.get((relative, fingerprint))
            if (
                known is not None
                and known.problem is None
                and etag_matches(if_none_match, known.etag)
            ):
                return _Answer(304, headers=((b"etag", known.etag.encode()),))
            content = handle.read(self._limits.max_bundle_bytes + 1)
        if len(content) != info.st_size:  # changed while being read: let the client retry
            return _error(503, "internal_error", f"bundle {relative} is being replaced")
        if known is None:
            known = self._learn(relative, fingerprint, content)
        if known.problem is not None:
            return _error(500, "internal_error", known.problem)
        etag_header = (b"etag", known.etag.encode())
        if etag_matches(if_none_match, known.etag):
            return _Answer(304, headers=(etag_header,))
        return _Answer(200, content, (etag_header,), BUNDLE_TYPE.encode())

    def _learn(self, relative: str, fingerprint: _Fingerprint, content: bytes) -> _Known:
        etag = f'"{hashlib.sha256(content).hexdigest()}"'
        problem = None
        if self._key is not None:
            try:
                load_bundle(
                    content,
                    verification_key=self._key,
                    require_signature=True,
                    limits=self._limits,
                )
            except BundleError as exc:
                problem = f"bundle {relative} is not served: it does not verify: {exc}"
                _LOG.error("%s", problem)
        known = _Known(etag, problem)
        if len(self._known) >= _MAX_CACHED:
            self._known.clear()
        self._known[(relative, fingerprint)] = known
        return known


def _header(scope: Scope, name: bytes) -> str | None:
    values = [value for key, value in scope["headers"] if key.lower() == name]
    if not values:
        return None
    return b", ".join(values).decode("latin-1")


def _relative(raw: str) -> str | None:
    """The file a request names under the directory, or None for an unsafe or empty name."""
    if not raw or any(ord(c) < 0x20 or c in "\\\x7f" for c in raw):
        return None
    segments = raw.split("/")
    if any(not segment or segment.startswith(".") for segment in segments):
        return None
    name = "/".join(segments)
    return name if name.endswith(_SUFFIX) else name + _SUFFIX
