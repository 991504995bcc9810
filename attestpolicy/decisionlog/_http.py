"""Upload decision log events to a service speaking OPA's decision log API.

``POST <url><resource>`` (``/logs`` by default) with ``Content-Type: application/json``,
``Content-Encoding: gzip`` and, as body, a gzip-compressed JSON array of events; any 2xx
is success. As OPA does, a batch is filled up to a compressed size (``batch_bytes``,
OPA's ``upload_size_limit_bytes``), the ratio of the last batch guiding how many events
to take, and a failed batch is put back at the head of the buffer and retried after an
exponential backoff with jitter. Unlike OPA, an answer that retrying cannot change (a 4xx
other than 408 and 429, a redirect) drops the batch as failed instead of retrying it
forever. The buffer holds at most ``buffer_size`` events: when it is full the oldest are
dropped and counted, so a collector that is down costs bounded memory and never slows
the writer (nor, behind it, a decision).
"""

from __future__ import annotations

import gzip
import ipaddress
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import urllib3

from attestpolicy import __version__
from attestpolicy.decisionlog._errors import (
    DecisionLogConfigError,
    check_count,
    check_seconds,
)
from attestpolicy.decisionlog._sinks import Sink, SinkStats
from attestpolicy.decisionlog._throttle import ThrottledWarning

__all__ = ["DEFAULT_BATCH_BYTES", "DEFAULT_BUFFER_SIZE", "HttpSink"]

DEFAULT_BATCH_BYTES: Final = 32_768
"""Largest compressed upload by default (OPA's ``upload_size_limit_bytes`` default)."""

DEFAULT_BUFFER_SIZE: Final = 10_000
"""Events buffered at most by default (OPA's ``buffer_size_limit_events`` default)."""

_RESPONSE_BYTES: Final = 64 * 1024  # read of a collector's answer; more closes the connection
_RETRY_STATUSES: Final = frozenset({408, 429})
_FILL: Final = 0.9  # aim a batch at 90% of the limit, as OPA does
_VISIBLE_ASCII: Final = frozenset(chr(code) for code in range(0x21, 0x7F))


class _Outcome(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _pool(
    url: str, token: str | None, ca_bundle: Path | str | None, timeout: float
) -> tuple[urllib3.HTTPConnectionPool, str]:
    """The connection pool for ``url`` and its path prefix (checked: see HttpSink)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except (TypeError, ValueError, AttributeError) as exc:
        raise DecisionLogConfigError(f"invalid collector URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DecisionLogConfigError(f"the collector URL must be http(s)://host[:port]: {url!r}")
    if parts.username is not None or parts.query or parts.fragment:
        raise DecisionLogConfigError(
            f"the collector URL must have no credentials, query or fragment: {url!r}"
        )
    if token is not None:
        if not isinstance(token, str) or not token or not _VISIBLE_ASCII.issuperset(token):
            raise DecisionLogConfigError(
                "token must be a non-empty string of printable ASCII without spaces"
            )
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise DecisionLogConfigError(
                "refusing to send a bearer token in clear text: use https for the collector"
            )
    timeouts = urllib3.Timeout(connect=timeout, read=timeout)
    host = parts.hostname
    if parts.scheme == "http":
        if ca_bundle is not None:
            raise DecisionLogConfigError("ca_bundle is only meaningful with an https collector")
        pool: urllib3.HTTPConnectionPool = urllib3.HTTPConnectionPool(
            host, port, timeout=timeouts, maxsize=1, retries=False
        )
    else:
        try:
            context = ssl.create_default_context(
                cafile=str(ca_bundle) if ca_bundle is not None else None
            )
        except (OSError, ValueError) as exc:
            raise DecisionLogConfigError(f"CA bundle {ca_bundle} is unusable: {exc}") from None
        pool = urllib3.HTTPSConnectionPool(
            host, port, timeout=timeouts, maxsize=1, retries=False, ssl_context=context
        )
    return pool, parts.path.rstrip("/")


class HttpSink(Sink):
    """Batched, gzip-compressed upload to OPA's decision log service API.

    ``url`` is the service's base URL (OPA's ``services[].url``) and ``resource`` the path
    under it (OPA's ``decision_logs.resource``, ``/logs``). ``token`` is sent as
    ``Authorization: Bearer`` (https or loopback only); ``ca_bundle`` verifies an https
    collector against a private CA (a PEM file). Events are sent when a batch's worth is
    buffered or ``upload_interval`` seconds after the oldest arrived. A failed upload is
    retried after ``min_backoff`` seconds, doubling up to ``max_backoff``, each delay
    varied by +-20%; ``timeout`` bounds connecting and each read. Uploads run on the
    sink's own thread.
    """

    def __init__(
        self,
        url: str,
        *,
        resource: str = "/logs",
        token: str | None = None,
        ca_bundle: Path | str | None = None,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        upload_interval: float = 1.0,
        timeout: float = 10.0,
        min_backoff: float = 0.1,
        max_backoff: float = 60.0,
    ) -> None:
        if not isinstance(resource, str) or not resource.startswith("/"):
            raise DecisionLogConfigError(f"resource must be a path starting with '/': {resource!r}")
        self._batch_bytes = check_count("batch_bytes", batch_bytes, 64)
        self._buffer_size = check_count("buffer_size", buffer_size, 1)
        self._interval = check_seconds("upload_interval", upload_interval)
        self._min_backoff = check_seconds("min_backoff", min_backoff)
        self._max_backoff = check_seconds("max_backoff", max_backoff)
        if self._max_backoff < self._min_backoff:
            raise DecisionLogConfigError("max_backoff must be >= min_backoff")
        self._pool, prefix = _pool(url, token, ca_bundle, check_seconds("timeout", timeout))
        self._path = prefix + resource
        self._name = f"http:{url.rstrip('/')}{resource}"
        self._headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "User-Agent": f"attestpolicy/{__version__}",
        }
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        self._cond = threading.Condition()
        self._buffer: deque[bytes] = deque()
        self._buffered_bytes = 0
        self._since: float | None = None  # when the oldest buffered event arrived
        self._inflight = 0
        self._flushing = 0
        self._closing = False
        self._abandoned = False
        self._ratio = 0.25  # compressed / uncompressed, of the last batch
        self._written = 0
        self._dropped = 0
        self._failed = 0
        self._warning = ThrottledWarning()
        self._thread = threading.Thread(
            target=self._run, name="attestpolicy-decision-log-upload", daemon=True
        )
        self._thread.start()

    # --- the writer's side ------------------------------------------------------------

    def write(self, lines: Sequence[bytes]) -> None:
        """Buffer the events (dropping the oldest when full); never waits for the network."""
        if not lines:
            return
        with self._cond:
            if self._closing:
                self._dropped += len(lines)
                return
            dropped = 0
            for line in lines:
                if len(self._buffer) >= self._buffer_size:
                    self._buffered_bytes -= len(self._buffer.popleft())
                    dropped += 1
                self._buffer.append(line)
                self._buffered_bytes += len(line) + 1
            if self._since is None:
                self._since = time.monotonic()
            self._dropped += dropped
            self._cond.notify_all()
        if dropped:
            self._warning.warn(
                "decision log upload to %s: buffer full, dropped the %d oldest event(s)",
                self._name,
                dropped,
            )

    def flush(self, timeout: float) -> bool:
        """Upload what is buffered now, waiting at most ``timeout`` seconds for it to be
        delivered (or rejected); whether the buffer emptied in time."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._buffer or self._inflight:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._abandoned:
                        return False
                    self._cond.wait(remaining)
                return True
            finally:
                self._flushing -= 1

    def close(self, timeout: float) -> None:
        """Upload what is left, for at most ``timeout`` seconds; what is still unsent
        then is counted as dropped. Later writes are dropped."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(max(deadline - time.monotonic(), 0.0))
        with self._cond:
            if self._thread.is_alive() and not self._abandoned:
                self._abandoned = True
                self._dropped += len(self._buffer) + self._inflight
                self._buffer.clear()
                self._buffered_bytes = 0
                self._inflight = 0
                self._cond.notify_all()
        if not self._thread.is_alive():
            self._pool.close()

    def stats(self) -> SinkStats:
        """Events delivered, dropped (full buffer, or unsent at close), failed (rejected
        by the collector, or larger than ``batch_bytes`` alone) and pending."""
        with self._cond:
            return SinkStats(
                self._name,
                written=self._written,
                dropped=self._dropped,
                failed=self._failed,
                pending=len(self._buffer) + self._inflight,
            )

    # --- the uploader thread ----------------------------------------------------------

    def _target(self) -> int:
        """How many uncompressed bytes should make a batch of about ``batch_bytes``."""
        return max(int(self._batch_bytes * _FILL / max(self._ratio, 0.01)), 1)

    def _ready(self) -> bool:
        if self._closing or self._flushing or self._buffered_bytes >= self._target():
            return True
        return self._since is not None and time.monotonic() - self._since >= self._interval

    def _take(self) -> list[bytes] | None:
        """Wait for a batch to send and take it out of the buffer (None: stop)."""
        with self._cond:
            while not (self._buffer and self._ready()):
                if self._abandoned or (self._closing and not self._buffer):
                    return None
                wait = None
                if self._since is not None:
                    wait = max(self._since + self._interval - time.monotonic(), 0.001)
                self._cond.wait(wait)
            target = self._target()
            batch: list[bytes] = []
            size = 2
            while self._buffer and (not batch or size + len(self._buffer[0]) + 1 <= target):
                line = self._buffer.popleft()
                self._buffered_bytes -= len(line) + 1
                size += len(line) + 1
                batch.append(line)
            if not self._buffer:
                self._since = None
            self._inflight = len(batch)
            return batch

    def _compress(self, batch: list[bytes]) -> tuple[bytes | None, list[bytes], list[bytes]]:
        """(gzip body or None, the events in it, the events left for the next batch)."""
        rest: list[bytes] = []
        while True:
            raw = b"[" + b",".join(batch) + b"]"
            body = gzip.compress(raw, mtime=0)
            self._ratio = len(body) / len(raw)
            if len(body) <= self._batch_bytes:
                return body, batch, rest
            if len(batch) == 1:
                return None, batch, rest
            keep = max(
                1, min(len(batch) - 1, int(len(batch) * self._batch_bytes * _FILL / len(body)))
            )
            batch, rest = batch[:keep], batch[keep:] + rest

    def _post(self, body: bytes) -> _Outcome:
        try:
            response = self._pool.urlopen(
                "POST",
                self._path,
                body=body,
                headers=self._headers,
                retries=False,
                redirect=False,
                preload_content=False,
                release_conn=False,
            )
        except Exception as exc:  # refused, timed out, TLS...: the collector may come back
            self._warning.warn("decision log upload to %s failed: %s", self._name, exc)
            return _Outcome.RETRY
        try:
            response.read(_RESPONSE_BYTES)
            if response.read(1):  # an answer too long to read: do not reuse the connection
                response.close()
        except Exception:  # the answer broke off: the status is what counts
            response.close()
        finally:
            response.release_conn()
        status = response.status
        if 200 <= status < 300:
            return _Outcome.DELIVERED
        if status in _RETRY_STATUSES or status >= 500:
            self._warning.warn("decision log upload to %s: HTTP %d, retrying", self._name, status)
            return _Outcome.RETRY
        self._warning.warn(
            "decision log upload to %s: HTTP %d, the batch is dropped", self._name, status
        )
        return _Outcome.REJECTED

    def _backoff(self, attempt: int) -> float:
        delay = min(self._max_backoff, self._min_backoff * 2.0 ** min(attempt - 1, 32))
        return delay * random.uniform(0.8, 1.2)  # noqa: S311  (jitter, not a secret)

    def _run(self) -> None:
        attempt = 0
        while (batch := self._take()) is not None:
            body, sent, rest = self._compress(batch)
            outcome = _Outcome.REJECTED if body is None else self._post(body)
            if body is None:
                self._warning.warn(
                    "decision log upload to %s: an event is larger than batch_bytes (%d) "
                    "compressed; it is dropped",
                    self._name,
                    self._batch_bytes,
                )
            with self._cond:
                self._inflight = 0
                if self._abandoned:
                    return
                if outcome is _Outcome.RETRY:
                    self._requeue(sent + rest)
                    attempt += 1
                else:
                    self._requeue(rest)
                    attempt = 0
                    if outcome is _Outcome.DELIVERED:
                        self._written += len(sent)
                    else:
                        self._failed += len(sent)
                self._cond.notify_all()
                if attempt:
                    self._cond.wait_for(lambda: self._abandoned, self._backoff(attempt))

    def _requeue(self, lines: list[bytes]) -> None:
        """Put unsent events back at the head, dropping the oldest beyond the limit."""
        if not lines:
            return
        self._buffer.extendleft(reversed(lines))
        self._buffered_bytes += sum(len(line) + 1 for line in lines)
        while len(self._buffer) > self._buffer_size:
            self._buffered_bytes -= len(self._buffer.popleft()) + 1
            self._dropped += 1
        if self._since is None:
            self._since = time.monotonic()
