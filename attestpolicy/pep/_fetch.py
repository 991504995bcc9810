"""Bounded GETs of the broker's JWKS and revocation list (urllib3, called on a thread)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3

from attestpolicy._http_body import BodyLimitError, read_body

__all__ = ["FetchError", "Fetched", "Fetcher", "check_url"]


class FetchError(Exception):
    """The document could not be had: the message says why (never a body or a header)."""


@dataclass(frozen=True)
class Fetched:
    """A fetched document: ``body`` on a 200; ``not_modified`` on a 304 (no body)."""

    body: bytes
    etag: str | None
    not_modified: bool = False


def check_url(name: str, url: str) -> str:
    """``url`` when it is an http(s) URL with a host and no credentials, else ValueError."""
    if not isinstance(url, str):
        raise ValueError(f"{name} must be a string")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError for a malformed port
    except ValueError as exc:
        raise ValueError(f"{name} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an http or https URL with a host, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{name} must not carry credentials")
    return url


class Fetcher:
    """GETs with a time budget (``timeout`` seconds for connecting and reading the whole
    answer), a size cap, no redirects and no retries. Thread-safe; blocking."""

    def __init__(self, timeout: float, *, ca_bundle: str | None = None) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ValueError("http_timeout_seconds must be a number")
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError("http_timeout_seconds must be finite and > 0")
        self._timeout = float(timeout)
        self._pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=2,
            retries=False,
            timeout=urllib3.Timeout(connect=self._timeout, read=self._timeout),
            ca_certs=ca_bundle,
        )

    def get(self, url: str, *, max_bytes: int, etag: str | None = None) -> Fetched:
        """GET ``url``; a 200 (at most ``max_bytes``) or, with ``etag``, a 304.

        Raises :class:`FetchError` for anything else: connection failures, other status
        codes, a body over the cap, or the time budget spent.
        """
        deadline = time.monotonic() + self._timeout
        headers = {"Accept": "application/json"}
        if etag is not None:
            headers["If-None-Match"] = etag
        try:
            response = self._pool.request(
                "GET", url, headers=headers, preload_content=False, redirect=False
            )
        except urllib3.exceptions.HTTPError as exc:
            raise FetchError(f"GET {url} failed: {type(exc).__name__}") from None
        complete = False
        try:
            if response.status == 304 and etag is not None:
                complete = True
                return Fetched(b"", etag, not_modified=True)
            if response.status != 200:
                raise FetchError(f"GET {url} answered HTTP {response.status}")
            try:
                body = read_body(response, max_bytes=max_bytes, deadline=deadline)
            except BodyLimitError as exc:
                if exc.announced is not None:
                    message = f"{exc.announced} bytes announced, over {max_bytes}"
                elif exc.too_large:
                    message = f"the answer is over {max_bytes} bytes"
                else:
                    message = f"not answered within {self._timeout:g} s"
                raise FetchError(f"GET {url}: {message}") from None
            complete = True
            return Fetched(body, response.headers.get("ETag"))
        except urllib3.exceptions.HTTPError as exc:
            raise FetchError(f"GET {url} failed: {type(exc).__name__}") from None
        finally:
            if not complete:  # unread bytes left: the connection cannot be reused
                response.close()
            response.release_conn()

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.clear()
