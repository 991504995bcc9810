"""What both middlewares share: exclusions, OPA-style error answers, the deny log line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final

from starlette.types import Scope, Send

__all__ = ["LOGGER_NAME", "Exclusions", "log_deny", "send_error"]

LOGGER_NAME: Final = "attestpolicy.pep"
"""The logger of the deny lines (one JSON object per line, at WARNING)."""

_LOG = logging.getLogger(LOGGER_NAME)
_MAX_LOGGED_CHARS: Final = 256


class Exclusions:
    """Requests a middleware lets through unchecked: by method, or by path (an exact
    path, or a prefix when the entry ends in ``/*``: ``/public/*``). Paths are matched
    on ``scope["path"]`` as the server decoded it, without the query."""

    def __init__(self, paths: Iterable[str], methods: Iterable[str]) -> None:
        if isinstance(paths, str) or isinstance(methods, str):
            raise ValueError("exclude_paths and exclude_methods are sequences, not strings")
        exact, prefixes = set(), []
        for path in paths:
            if not isinstance(path, str) or not path.startswith("/"):
                raise ValueError(f"excluded path {path!r} must start with '/'")
            if path.endswith("/*"):
                prefixes.append(path[:-1])
            else:
                exact.add(path)
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)
        self._methods = frozenset(method.upper() for method in methods)

    def __contains__(self, scope: Scope) -> bool:
        if scope.get("method") in self._methods:
            return True
        path = scope.get("path", "")
        return path in self._exact or path.startswith(self._prefixes)


async def send_error(
    scope: Scope,
    send: Send,
    status: int,
    content: Mapping[str, Any],
    headers: Iterable[tuple[str, str]] = (),
) -> None:
    """Answer with an OPA-style JSON error document (or, on a WebSocket, close it)."""
    if scope["type"] == "websocket":  # before accept: the server answers HTTP 403
        await send({"type": "websocket.close", "code": 1008, "reason": str(content["code"])})
        return
    body = json.dumps(content, separators=(",", ":")).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *((name.encode("latin-1"), value.encode("latin-1")) for name, value in headers),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def log_deny(
    middleware: str, scope: Scope, status: int, code: str, message: str, **extra: Any
) -> None:
    """One JSON line at WARNING: who refused what, and why (never a token)."""
    client = scope.get("client")
    entry = {
        "event": "pep.deny",
        "middleware": middleware,
        "status": status,
        "code": code,
        "message": message[:_MAX_LOGGED_CHARS],
        "method": scope.get("method", scope["type"].upper()),
        "path": str(scope.get("path", ""))[:_MAX_LOGGED_CHARS],
        "client": client[0] if client else None,
        **{name: value for name, value in extra.items() if value is not None},
    }
    _LOG.warning("%s", json.dumps(entry, sort_keys=True, default=str))
