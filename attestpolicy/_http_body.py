"""Reading an HTTP answer's body within a size and a time, for the project's small GET
clients (bundle polling, the PEP's JWKS and revocation list)."""

from __future__ import annotations

import time
from typing import Final

import urllib3

__all__ = ["BodyLimitError", "read_body"]

_CHUNK: Final = 64 * 1024


class BodyLimitError(Exception):
    """The body is over ``max_bytes`` (announced or received), or came too late."""

    def __init__(self, *, too_large: bool, announced: int | None = None) -> None:
        super().__init__("too large" if too_large else "too late")
        self.too_large = too_large
        self.announced = announced


def read_body(response: urllib3.BaseHTTPResponse, *, max_bytes: int, deadline: float) -> bytes:
    """The whole body of a streamed ``response``: at most ``max_bytes``, read before the
    monotonic ``deadline``; :class:`BodyLimitError` otherwise (the caller closes the
    response: unread bytes are left)."""
    announced = response.headers.get("Content-Length")
    if announced is not None and announced.isdigit() and int(announced) > max_bytes:
        raise BodyLimitError(too_large=True, announced=int(announced))
    body = bytearray()
    for chunk in response.stream(_CHUNK):
        body += chunk
        if len(body) > max_bytes:
            raise BodyLimitError(too_large=True)
        if time.monotonic() > deadline:
            raise BodyLimitError(too_large=False)
    return bytes(body)
