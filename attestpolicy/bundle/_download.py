"""Downloading a bundle over HTTP as OPA's downloader does (``v1/download/download.go``).

One GET per call, with ``If-None-Match`` carrying the ETag of the active bundle (a 304
means it is still current) and ``Authorization: Bearer <token>`` when a token is set. The
answer is bounded: ``timeout`` seconds to connect, for each read and for the whole body,
and at most ``max_bytes`` of body. Redirects are not followed and nothing is retried here
(the poller's backoff does that). Every failure is a :class:`DownloadError` whose message
never holds the token or a body.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final
from urllib.parse import urlsplit

import urllib3

from attestpolicy._http_body import BodyLimitError, read_body

__all__ = ["ACCEPT", "DownloadError", "Downloaded", "HttpDownloader", "check_url"]

ACCEPT: Final = (
    "application/vnd.openpolicyagent.bundles, application/gzip, application/octet-stream"
)


class DownloadError(Exception):
    """The bundle could not be downloaded; ``http_code`` is the HTTP status, if any."""

    def __init__(self, message: str, *, http_code: int | None = None) -> None:
        super().__init__(message)
        self.http_code = http_code


@dataclass(frozen=True)
class Downloaded:
    """A 200 (``body`` set) or a 304 (``body`` None), and the ETag the server sent."""

    body: bytes | None
    etag: str | None


def check_url(url: object) -> str:
    """``url`` when it is an http(s) URL with a host and no credentials, else ValueError."""
    if not isinstance(url, str):
        raise ValueError("the bundle URL must be a string")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError for a malformed port
    except ValueError as exc:
        raise ValueError(f"the bundle URL is not valid: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"the bundle URL must be http or https with a host, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the bundle URL must not carry credentials: use a token")
    return url


def _status_text(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


class HttpDownloader:
    """Bounded GETs of one bundle URL (thread-safe, blocking)."""

    def __init__(
        self,
        url: str,
        *,
        max_bytes: int,
        timeout: float = 10.0,
        token: str | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        self.url = check_url(url)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ValueError("timeout must be a number of seconds")
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError("timeout must be finite and > 0")
        if token is not None and (not isinstance(token, str) or not token.strip()):
            raise ValueError("token must be a non-empty string")
        if token is not None and any(c in token for c in "\r\n"):
            raise ValueError("token must be one line")
        self._timeout = float(timeout)
        self._max_bytes = max_bytes
        self._headers = {"Accept": ACCEPT, "Prefer": "modes=snapshot"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token.strip()}"
        self._pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=1,
            retries=False,
            timeout=urllib3.Timeout(connect=self._timeout, read=self._timeout),
            ca_certs=ca_bundle,
        )

    def get(self, etag: str | None) -> Downloaded:
        """GET the bundle; with ``etag``, a 304 means the active bundle is still current.

        Raises :class:`DownloadError` for a failed connection, any other status, a body
        over the cap, or the time budget spent.
        """
        deadline = time.monotonic() + self._timeout
        headers = dict(self._headers)
        if etag:
            headers["If-None-Match"] = etag
        try:
            response = self._pool.request(
                "GET", self.url, headers=headers, preload_content=False, redirect=False
            )
        except urllib3.exceptions.HTTPError as exc:
            raise DownloadError(f"request failed: {_reason(exc)}") from None
        complete = False
        try:
            status = response.status
            if status == 304:
                if not etag:
                    raise DownloadError(
                        "server replied with Not Modified to a request without If-None-Match",
                        http_code=status,
                    )
                complete = True
                return Downloaded(None, response.headers.get("ETag") or etag)
            if status != 200:
                if 300 <= status < 400:
                    raise DownloadError(
                        f"server replied with {_status_text(status)} (redirects are not "
                        "followed: give the bundle's final URL)",
                        http_code=status,
                    )
                raise DownloadError(f"server replied with {_status_text(status)}", http_code=status)
            try:
                body = read_body(response, max_bytes=self._max_bytes, deadline=deadline)
            except BodyLimitError as exc:
                if exc.announced is not None:
                    raise DownloadError(
                        f"bundle of {exc.announced} bytes announced, over the "
                        f"{self._max_bytes} bytes accepted"
                    ) from None
                if exc.too_large:
                    raise DownloadError(
                        f"bundle is over the {self._max_bytes} bytes accepted"
                    ) from None
                raise DownloadError(f"bundle not received within {self._timeout:g} s") from None
            complete = True
            return Downloaded(body, response.headers.get("ETag"))
        except urllib3.exceptions.HTTPError as exc:
            raise DownloadError(f"request failed: {_reason(exc)}") from None
        finally:
            if not complete:  # unread bytes left: the connection cannot be reused
                response.close()
            response.release_conn()

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.clear()


def _reason(exc: urllib3.exceptions.HTTPError) -> str:
    # urllib3 prefixes messages with the connection object; keep the cause's words.
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    cut = text.rfind("): ")
    return f"{type(exc).__name__}: {text[cut + 3 :] if cut >= 0 else text}"[:300]
