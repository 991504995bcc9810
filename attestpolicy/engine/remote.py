"""The remote evaluator: ask an OPA server (or ``attestpolicy serve``) over its Data API.

Each call is ``POST <url>/v1/data/attestpolicy/v1/decision?provenance=true`` with
``{"input": <policy input>}``, sent over HTTP/1.1 with urllib3's connection class (one
keep-alive connection per thread). Every failure becomes a fail-closed deny, never an
exception:

- no ``result`` key in the answer: ``engine.undefined``;
- a ``result`` that is not a well-formed decision: ``engine.error``;
- anything else (refused, timed out, past the deadline, too large, TLS, HTTP error,
  redirect, invalid JSON): ``remote.error`` with a message naming the failure and, for an
  HTTP error, OPA's own ``code`` and ``message``.

Time and memory are bounded. ``deadline`` bounds the whole exchange (connection attempts,
TLS handshake, request, headers and body): every socket operation waits at most the time
left, and a watchdog thread shuts the socket down when the deadline passes, so a server
sending one byte at a time cannot stretch a decision. The body is read in chunks and
abandoned past ``max_response_bytes``. ``retries`` only repeats connection attempts that
failed before the request was sent.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from http.client import HTTPException
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.exceptions import SSLError as Urllib3SSLError

from attestpolicy._json import loads_strict
from attestpolicy.decision import Decision, decision_from_policy_result
from attestpolicy.errors import EvaluatorError
from attestpolicy.policy import DECISION_PATH

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "RemoteConfigError", "RemoteEvaluator"]

DEFAULT_MAX_RESPONSE_BYTES: Final = 4 * 1024 * 1024
"""Largest answer read from OPA by default (4 MiB); a decision is a few kilobytes."""

_MAX_MESSAGE_CHARS: Final = 500
_MAX_RETRIES: Final = 10
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_READ_CHUNK_BYTES: Final = 64 * 1024
_ABORT_REPEAT_SECONDS: Final = 0.05


class RemoteConfigError(EvaluatorError, ValueError):
    """The remote evaluator was given an unusable URL, time limit, size cap, token or CA bundle."""

    code = "remote.invalid_config"


@dataclass(frozen=True)
class _Endpoint:
    """A parsed OPA base URL."""

    scheme: str
    hostname: str  # as given to the resolver: IPv6 literals without brackets
    host: str  # as it appears in a URL: IPv6 literals in brackets
    port: int
    prefix: str  # "" or "/some/prefix" (a reverse proxy's mount point)
    loopback: bool

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.prefix}"


def _parse_url(url: str) -> _Endpoint:
    if not isinstance(url, str) or not url.strip():
        raise RemoteConfigError("OPA URL must be a non-empty string")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise RemoteConfigError(f"invalid OPA URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise RemoteConfigError(f"OPA URL must use http or https, got {url!r}")
    hostname = parts.hostname
    if not hostname:
        raise RemoteConfigError(f"OPA URL has no host: {url!r}")
    if parts.username is not None or parts.password is not None:
        raise RemoteConfigError("OPA URL must not carry credentials; use token= instead")
    if parts.query or parts.fragment:
        raise RemoteConfigError(f"OPA URL must not have a query or fragment: {url!r}")
    prefix = parts.path.rstrip("/")
    if prefix.endswith("/v1") or "/v1/data" in prefix:
        raise RemoteConfigError(
            f"pass the server's base URL (e.g. http://127.0.0.1:8181), not an API path: {url!r}"
        )
    try:
        address = ipaddress.ip_address(hostname)
    except ValueError:
        loopback = hostname == "localhost"
        host = hostname
    else:
        loopback = address.is_loopback
        host = f"[{hostname}]" if address.version == 6 else hostname
    return _Endpoint(
        scheme=scheme,
        hostname=hostname,
        host=host,
        port=port if port is not None else _DEFAULT_PORTS[scheme],
        prefix=prefix,
        loopback=loopback,
    )


def _check_seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RemoteConfigError(f"{name} must be a number of seconds")
    if not math.isfinite(value) or value <= 0:
        raise RemoteConfigError(f"{name} must be a positive, finite number of seconds")
    return float(value)


def _check_max_response_bytes(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RemoteConfigError("max_response_bytes must be a positive integer (bytes)")
    return value


def _check_token(token: str | None, endpoint: _Endpoint) -> str | None:
    if token is None:
        return None
    if not isinstance(token, str) or not token or any(c in token for c in "\r\n\0"):
        raise RemoteConfigError("token must be a non-empty string without line breaks")
    if endpoint.scheme == "http" and not endpoint.loopback:
        raise RemoteConfigError(
            "refusing to send a bearer token in clear text: use https for a non-loopback OPA"
        )
    return token


def _tls_context(ca_bundle: str | Path | None, endpoint: _Endpoint) -> ssl.SSLContext | None:
    """The TLS configuration of an https endpoint (``None`` for http).

    The server's certificate and name are always verified, against ``ca_bundle`` (a PEM
    file or a hashed directory) or else the system store at OpenSSL's built-in location.
    Nothing comes from the environment: ``SSL_CERT_FILE``, ``SSL_CERT_DIR`` and
    ``SSLKEYLOGFILE`` are ignored.
    """
    if endpoint.scheme != "https":
        if ca_bundle is not None:
            raise RemoteConfigError("ca_bundle is only meaningful with an https OPA URL")
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the name
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.hostname_checks_common_name = False
    if ca_bundle is None:
        system = ssl.get_default_verify_paths()
        cafile, capath = Path(system.openssl_cafile), Path(system.openssl_capath)
        context.load_verify_locations(
            cafile=cafile if cafile.is_file() else None,
            capath=capath if capath.is_dir() else None,
        )
        return context
    path = Path(ca_bundle)
    if not path.exists():
        raise RemoteConfigError(f"CA bundle not found: {path}")
    try:
        if path.is_dir():
            context.load_verify_locations(capath=path)
        else:
            context.load_verify_locations(cafile=path)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise RemoteConfigError(f"CA bundle {path} is unusable: {exc}") from None
    return context


class _DeadlineExceeded(Exception):
    """The exchange ran out of time (turned into a ``remote.error`` message)."""


class _Exchange:
    """One decision's request to OPA: its connection and its deadline."""

    __slots__ = ("connected", "connection", "end", "sock")

    def __init__(self, connection: HTTPConnection, seconds: float) -> None:
        self.connection = connection
        self.end = time.monotonic() + seconds
        self.connected = False  # past connecting (TCP and TLS): the request is being sent
        self.sock: socket.socket | None = None  # kept: http.client may drop the connection's

    def timeout(self, limit: float) -> float:
        """``limit``, or the time left if that is shorter; raise once the deadline has passed."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise _DeadlineExceeded
        return min(limit, left)

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def abort(self) -> None:
        """Shut the sockets down (from the watchdog thread): a blocked read returns at once."""
        for sock in (self.connection.sock, self.sock):
            if sock is not None:
                # The plain socket's shutdown: SSLSocket's would also drop its TLS state
                # under the thread that is reading.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread, shared by every evaluator, that aborts exchanges past their deadline.

    A socket timeout bounds one read only, and http.client reads a status line, headers
    and a body in many reads; a TLS handshake too. Shutting the socket down from this
    thread ends whichever read is blocked. Expired exchanges are aborted again every
    50 ms until they finish, in case a new socket appeared (a connection attempt that
    completed just then).
    """

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._exchanges: set[_Exchange] = set()
        self._wake_at = math.inf
        self._thread: threading.Thread | None = None

    def watch(self, exchange: _Exchange) -> None:
        with self._condition:
            self._exchanges.add(exchange)
            if self._thread is None or not self._thread.is_alive():  # first use, or forked
                self._thread = threading.Thread(
                    target=self._run, name="attestpolicy-remote-deadline", daemon=True
                )
                self._thread.start()
            elif exchange.end < self._wake_at:
                self._condition.notify()

    def unwatch(self, exchange: _Exchange) -> None:
        with self._condition:
            self._exchanges.discard(exchange)

    def _run(self) -> None:
        with self._condition:
            while True:
                now = time.monotonic()
                wake_at = math.inf
                for exchange in self._exchanges:
                    if exchange.end <= now:
                        exchange.abort()
                        wake_at = min(wake_at, now + _ABORT_REPEAT_SECONDS)
                    else:
                        wake_at = min(wake_at, exchange.end)
                self._wake_at = wake_at
                self._condition.wait(None if math.isinf(wake_at) else wake_at - now)


_WATCHDOG: Final = _Watchdog()


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[: _MAX_MESSAGE_CHARS - 3] + "..."


def _root_cause(exc: BaseException) -> str:
    """The innermost useful description of a transport failure ("Connection refused")."""
    seen: set[int] = set()
    current: BaseException | None = exc
    innermost: BaseException = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        innermost = current
        if isinstance(current, OSError) and current.strerror and current.errno is not None:
            return current.strerror
        reason = getattr(current, "reason", None)
        nested = current.args[0] if current.args else None
        if isinstance(reason, BaseException):
            current = reason
        elif isinstance(nested, BaseException):
            current = nested
        else:
            current = current.__cause__ or current.__context__
    text = str(innermost)
    # urllib3 prefixes messages with the connection object ("HTTPConnection(...): ...").
    if "): " in text:
        text = text.split("): ", 1)[1]
    return text or type(innermost).__name__


def _http_error_message(status: int, reason: str, payload: bytes) -> str:
    prefix = f"HTTP {status} from OPA"
    try:
        body = loads_strict(payload)
    except ValueError:
        body = None
    if not isinstance(body, Mapping) or not isinstance(body.get("message"), str):
        return f"{prefix}: {reason or 'error'} (the body is not an OPA error document)"
    code = body.get("code")
    message = f"{prefix}: " + (f"{code}: " if isinstance(code, str) else "") + str(body["message"])
    errors = body.get("errors")
    details = [
        str(item["message"])
        for item in (errors if isinstance(errors, list) else [])
        if isinstance(item, Mapping) and isinstance(item.get("message"), str)
    ]
    if details:
        message += ": " + "; ".join(details[:3])
    return message


def _provenance_suffix(body: Mapping[str, Any]) -> str:
    """``;<bundle>@<revision>,...`` from OPA's provenance block, or ``""``."""
    provenance = body.get("provenance")
    if not isinstance(provenance, Mapping):
        return ""
    bundles = provenance.get("bundles")
    revisions: list[str] = []
    if isinstance(bundles, Mapping):
        for name in sorted(bundles):
            entry = bundles[name]
            if isinstance(name, str) and isinstance(entry, Mapping):
                revision = entry.get("revision")
                if isinstance(revision, str):
                    revisions.append(f"{name}@{revision}")
    return _short(";" + ",".join(revisions)) if revisions else ""


class RemoteEvaluator:
    """Evaluate ``data.attestpolicy.v1.decision`` on a remote OPA (thread-safe, fail-closed).

    ``url`` is the server's base URL (``http://127.0.0.1:8181``; a path prefix for a reverse
    proxy is kept). ``connect_timeout`` bounds each connection attempt and ``read_timeout``
    each wait for data; ``deadline`` bounds the whole exchange of one decision (default:
    ``connect_timeout + read_timeout``) and ``max_response_bytes`` the answer (default
    4 MiB). ``token`` is sent as ``Authorization: Bearer`` (https or loopback only);
    ``ca_bundle`` verifies an https server against a private CA. ``retries`` repeats only
    connection attempts that failed before the request was sent (default 0).
    """

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 0.5,
        read_timeout: float = 2.0,
        deadline: float | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        token: str | None = None,
        ca_bundle: str | Path | None = None,
        retries: int = 0,
    ) -> None:
        self._endpoint = _parse_url(url)
        self._connect_timeout = _check_seconds("connect_timeout", connect_timeout)
        self._read_timeout = _check_seconds("read_timeout", read_timeout)
        self._deadline = (
            self._connect_timeout + self._read_timeout
            if deadline is None
            else _check_seconds("deadline", deadline)
        )
        self._max_response_bytes = _check_max_response_bytes(max_response_bytes)
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise RemoteConfigError("retries must be an integer")
        if not 0 <= retries <= _MAX_RETRIES:
            raise RemoteConfigError(f"retries must be between 0 and {_MAX_RETRIES}")
        self._retries = retries
        self._tls = _tls_context(ca_bundle, self._endpoint)
        self._target = f"{self._endpoint.prefix}/v1/data/{DECISION_PATH}?provenance=true"
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        checked_token = _check_token(token, self._endpoint)
        if checked_token is not None:
            self._headers["Authorization"] = f"Bearer {checked_token}"
        self._revision = f"remote:{self._endpoint.url}"
        # An HTTP/1.1 connection carries one exchange at a time: one per thread.
        self._local = threading.local()
        self._connections: weakref.WeakSet[HTTPConnection] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def url(self) -> str:
        """The normalized base URL (scheme, host, explicit port, path prefix)."""
        return self._endpoint.url

    @property
    def revision(self) -> str:
        """``remote:<url>``; each Decision adds the bundle revisions OPA reports."""
        return self._revision

    def evaluate(self, policy_input: dict[str, Any], *, evaluated_at: datetime) -> Decision:
        """Ask OPA for the decision; every failure is a deny (never raises)."""
        try:
            return self._evaluate(policy_input, evaluated_at)
        except EvaluatorError as exc:
            message, code = exc.message, exc.code
        except Exception as exc:  # a bug here must still fail closed
            message, code = f"remote evaluation failed: {type(exc).__name__}: {exc}", "remote.error"
        return Decision.deny(
            code, _short(message), policy_revision=self._revision, evaluated_at=evaluated_at
        )

    def _evaluate(self, policy_input: dict[str, Any], evaluated_at: datetime) -> Decision:
        body = self._query(policy_input)
        revision = self._revision + _provenance_suffix(body)
        if "result" not in body:
            return Decision.deny(
                "engine.undefined",
                f"OPA at {self.url} returned no result: data.attestpolicy.v1.decision is undefined",
                policy_revision=revision,
                evaluated_at=evaluated_at,
            )
        result = body["result"]
        if result is None:  # defined, but null: malformed, not undefined
            return Decision.deny(
                "engine.error",
                "malformed decision from policy: decision must be an object, got null",
                policy_revision=revision,
                evaluated_at=evaluated_at,
            )
        return decision_from_policy_result(
            result, policy_revision=revision, evaluated_at=evaluated_at
        )

    def _fail(self, message: str) -> EvaluatorError:
        return EvaluatorError(_short(message), code="remote.error")

    def _query(self, policy_input: dict[str, Any]) -> Mapping[str, Any]:
        """POST the input; return OPA's JSON object or raise EvaluatorError(remote.error)."""
        if self._closed:
            raise self._fail("the remote evaluator is closed")
        try:
            request = json.dumps(
                {"input": policy_input}, allow_nan=False, separators=(",", ":")
            ).encode()
        except (TypeError, ValueError) as exc:
            raise self._fail(
                f"request to OPA at {self.url} failed: the input is not JSON: {exc}"
            ) from None
        status, reason, payload = self._exchange(request)
        if status != 200:
            raise self._fail(_http_error_message(status, reason, payload))
        try:
            body = loads_strict(payload)
        except ValueError as exc:
            raise self._fail(
                f"invalid JSON in the response from OPA at {self.url}: {exc}"
            ) from None
        if not isinstance(body, Mapping):
            raise self._fail(
                f"OPA at {self.url} answered with JSON that is not an object "
                f"({type(body).__name__})"
            )
        return body

    def _connection(self) -> HTTPConnection:
        connection: HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            endpoint = self._endpoint
            if self._tls is None:
                connection = HTTPConnection(endpoint.hostname, endpoint.port)
            else:
                connection = HTTPSConnection(
                    endpoint.hostname, endpoint.port, ssl_context=self._tls
                )
            with self._lock:
                if self._closed:
                    raise self._fail("the remote evaluator is closed")
                self._connections.add(connection)
            self._local.connection = connection
        return connection

    def _exchange(self, request: bytes) -> tuple[int, str, bytes]:
        """Send the request; return status, reason and body, all within the deadline."""
        exchange = _Exchange(self._connection(), self._deadline)
        _WATCHDOG.watch(exchange)
        try:
            answer = self._send(exchange, self._connect(exchange), request)
            if exchange.expired:  # complete, but too late
                raise _DeadlineExceeded
            return answer
        except Exception as exc:
            exchange.connection.close()  # its state is unknown: the next call reconnects
            if isinstance(exc, EvaluatorError):
                raise
            raise self._fail(self._describe(exc, exchange)) from None
        finally:
            _WATCHDOG.unwatch(exchange)

    def _connect(self, exchange: _Exchange) -> socket.socket:
        """The thread's connection if the server kept it open, else a new one: its socket."""
        connection = exchange.connection
        if not connection.is_connected:
            connection.close()
            attempts_left = self._retries
            while True:
                connection.timeout = exchange.timeout(self._connect_timeout)
                try:
                    connection.connect()
                    break
                except ConnectTimeoutError:  # refused, unreachable or timed out: nothing sent
                    connection.close()
                    if attempts_left == 0:
                        raise
                    attempts_left -= 1
        exchange.sock, exchange.connected = connection.sock, True
        return connection.sock

    def _send(
        self, exchange: _Exchange, sock: socket.socket, request: bytes
    ) -> tuple[int, str, bytes]:
        connection = exchange.connection
        connection.timeout = exchange.timeout(self._read_timeout)
        connection.request(
            "POST",
            self._target,
            body=request,
            headers=self._headers,
            preload_content=False,
            decode_content=False,
        )
        connection.timeout = exchange.timeout(self._read_timeout)
        response = connection.getresponse()
        status, reason = response.status, response.reason or ""
        if 300 <= status < 400:
            raise self._fail(
                f"OPA at {self.url} answered with a redirect (HTTP {status}); not followed"
            )
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding != "identity":
            raise self._fail(f"OPA at {self.url} sent a body with Content-Encoding {encoding!r}")
        cap = self._max_response_bytes
        announced = response.length_remaining
        if announced is not None and announced > cap:
            raise self._too_large(f"announced {announced} bytes")
        payload = bytearray()
        while not response.closed:  # http.client closes it once the body is complete
            sock.settimeout(exchange.timeout(self._read_timeout))
            chunk = response.read1(_READ_CHUNK_BYTES)
            if not chunk:
                break
            if len(payload) + len(chunk) > cap:
                raise self._too_large(f"sent more than {cap} bytes")
            payload += chunk
        if not response.closed:  # where the body ended is unknown: don't reuse the connection
            connection.close()
        return status, reason, bytes(payload)

    def _too_large(self, what: str) -> EvaluatorError:
        return self._fail(
            f"response too large: OPA at {self.url} {what}; "
            f"max_response_bytes is {self._max_response_bytes}"
        )

    def _describe(self, exc: Exception, exchange: _Exchange) -> str:
        """The ``remote.error`` message for a transport failure."""
        if isinstance(exc, _DeadlineExceeded) or exchange.expired:
            return (
                f"deadline exceeded: the exchange with OPA at {self.url} "
                f"did not complete within {self._deadline:g}s"
            )
        if isinstance(exc, ssl.SSLError | Urllib3SSLError):
            return f"TLS error talking to OPA at {self.url}: {_root_cause(exc)}"
        if isinstance(exc, TimeoutError | ReadTimeoutError) or (
            isinstance(exc, ConnectTimeoutError) and not isinstance(exc, NewConnectionError)
        ):
            if not exchange.connected:  # the TCP connection or the TLS handshake
                return f"connect timeout after {self._connect_timeout:g}s to OPA at {self.url}"
            return f"read timeout: OPA at {self.url} did not answer within {self._read_timeout:g}s"
        if isinstance(exc, OSError | HTTPException | ProtocolError | NewConnectionError):
            return f"connection to OPA at {self.url} failed: {_root_cause(exc)}"
        return f"request to OPA at {self.url} failed: {type(exc).__name__}: {exc}"

    def close(self) -> None:
        """Close every connection; later evaluations deny with ``remote.error``."""
        with self._lock:
            self._closed = True
            connections = list(self._connections)
            self._connections.clear()
        for connection in connections:
            connection.close()
