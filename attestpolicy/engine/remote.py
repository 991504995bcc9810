"""The remote evaluator: ask an OPA server (or ``attestpolicy serve``) over its Data API.

Each call is ``POST <url>/v1/data/attestpolicy/v1/decision?provenance=true`` with
``{"input": <policy input>}`` over HTTP/1.1, one keep-alive connection per thread.
urllib3's connection class opens it (TCP, TLS and their errors); the request is written
in one ``sendall`` (its head is built once, at construction) and the answer is parsed by
``http.client.HTTPResponse``, the standard library's parser. Every failure becomes a
fail-closed deny, never an exception:

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

import json
import socket
import ssl
import threading
import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime
from http.client import HTTPException, HTTPResponse
from pathlib import Path
from typing import Any, Final

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
from attestpolicy.engine._deadline import WATCHDOG, DeadlineExceeded, Exchange
from attestpolicy.engine._remote_options import (
    RemoteConfigError,
    check_max_response_bytes,
    check_seconds,
    check_token,
    parse_url,
    request_head,
    tls_context,
)
from attestpolicy.errors import EvaluatorError, PolicyError
from attestpolicy.policy import DECISION_PATH, PolicySource

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "RemoteConfigError", "RemoteEvaluator"]

DEFAULT_MAX_RESPONSE_BYTES: Final = 4 * 1024 * 1024
"""Largest answer read from OPA by default (4 MiB); a decision is a few kilobytes."""

_MAX_MESSAGE_CHARS: Final = 500
_MAX_RETRIES: Final = 10
_READ_CHUNK_BYTES: Final = 64 * 1024
_ENCODER: Final = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


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
        self._endpoint = parse_url(url)
        self._connect_timeout = check_seconds("connect_timeout", connect_timeout)
        self._read_timeout = check_seconds("read_timeout", read_timeout)
        self._deadline = (
            self._connect_timeout + self._read_timeout
            if deadline is None
            else check_seconds("deadline", deadline)
        )
        self._max_response_bytes = check_max_response_bytes(max_response_bytes)
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise RemoteConfigError("retries must be an integer")
        if not 0 <= retries <= _MAX_RETRIES:
            raise RemoteConfigError(f"retries must be between 0 and {_MAX_RETRIES}")
        self._retries = retries
        self._tls = tls_context(ca_bundle, self._endpoint)
        # Everything before the Content-Length value, the same for every request.
        self._head = request_head(
            self._endpoint,
            f"/v1/data/{DECISION_PATH}?provenance=true",
            check_token(token, self._endpoint),
        )
        self._base_revision = f"remote:{self._endpoint.url}"
        self._revision = self._base_revision  # + the bundle revisions of the latest answer
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
        """``remote:<url>`` plus the bundle revisions OPA reported in its latest answer
        (``;attestpolicy@<revision>``): a cache keyed on it stops serving the decisions of
        a policy revision once the server has answered with another."""
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
        revision = self._base_revision + _provenance_suffix(body)
        self._revision = revision
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
            request = _ENCODER.encode({"input": policy_input}).encode()
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
        exchange = Exchange(self._connection(), self._deadline)
        WATCHDOG.watch(exchange)
        try:
            answer = self._send(exchange, self._connect(exchange), request)
            if exchange.expired:  # complete, but too late
                raise DeadlineExceeded
            return answer
        except Exception as exc:
            exchange.connection.close()  # its state is unknown: the next call reconnects
            if isinstance(exc, EvaluatorError):
                raise
            raise self._fail(self._describe(exc, exchange)) from None
        finally:
            WATCHDOG.unwatch(exchange)

    def _connect(self, exchange: Exchange) -> socket.socket:
        """The thread's connection if the server kept it open, else a new one: its socket."""
        connection = exchange.connection
        if not connection.is_connected:  # never opened, or closed (or written to) by the server
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
        sock: socket.socket = connection.sock
        exchange.sock, exchange.connected = sock, True
        return sock

    def _send(
        self, exchange: Exchange, sock: socket.socket, request: bytes
    ) -> tuple[int, str, bytes]:
        """One request on ``sock``, in one write; its answer parsed by http.client."""
        sock.settimeout(exchange.timeout(self._read_timeout))
        sock.sendall(b"%s%d\r\n\r\n%s" % (self._head, len(request), request))
        response = HTTPResponse(sock, method="POST")
        try:
            sock.settimeout(exchange.timeout(self._read_timeout))
            response.begin()
            status, reason = response.status, response.reason or ""
            if 300 <= status < 400:
                raise self._fail(
                    f"OPA at {self.url} answered with a redirect (HTTP {status}); not followed"
                )
            payload = self._read_body(exchange, sock, response)
        finally:
            response.close()  # its file object; the socket stays open
        if response.will_close:
            exchange.connection.close()
        return status, reason, payload

    def _read_body(self, exchange: Exchange, sock: socket.socket, response: HTTPResponse) -> bytes:
        """The whole body, under the size cap; raise for anything that is not plain bytes."""
        headers = response.headers
        encoding = (headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding != "identity":
            raise self._fail(f"OPA at {self.url} sent a body with Content-Encoding {encoding!r}")
        transfer = headers.get_all("Transfer-Encoding") or []
        lengths = headers.get_all("Content-Length") or []
        if transfer and ([t.strip().lower() for t in transfer] != ["chunked"] or lengths):
            # Another coding, or two framings: where the body ends is ambiguous
            # (RFC 9112, section 6.3), and a coded body would defeat the size cap.
            raise self._fail(
                f"OPA at {self.url} sent Transfer-Encoding {', '.join(transfer)!r}"
                + (" with a Content-Length" if lengths else "")
            )
        values = {value.strip() for value in lengths}
        if len(values) > 1 or not all(value.isascii() and value.isdigit() for value in values):
            # http.client would take the first, or read a malformed one as "until closed"
            raise self._fail(
                f"OPA at {self.url} sent an invalid Content-Length ({', '.join(lengths)!r})"
            )
        cap = self._max_response_bytes
        announced = response.length
        if announced is not None:  # Content-Length: one read (short is IncompleteRead)
            if announced > cap:
                raise self._too_large(f"announced {announced} bytes")
            sock.settimeout(exchange.timeout(self._read_timeout))
            return response.read()
        payload = bytearray()  # chunked, or until the server closes: piece by piece
        while True:
            sock.settimeout(exchange.timeout(self._read_timeout))
            chunk = response.read1(_READ_CHUNK_BYTES)
            if not chunk:
                return bytes(payload)
            if len(payload) + len(chunk) > cap:
                raise self._too_large(f"sent more than {cap} bytes")
            payload += chunk

    def _too_large(self, what: str) -> EvaluatorError:
        return self._fail(
            f"response too large: OPA at {self.url} {what}; "
            f"max_response_bytes is {self._max_response_bytes}"
        )

    def _describe(self, exc: Exception, exchange: Exchange) -> str:
        """The ``remote.error`` message for a transport failure."""
        if isinstance(exc, DeadlineExceeded) or exchange.expired:
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

    def revoke(self, pairs: Sequence[tuple[str, str]], *, reason: str) -> bool:
        """Nothing to do here: the server owns the data it decides with (returns False).

        Push the revocation to the server's data as well; the PDP's cache drops the
        decisions that rest on the revoked values at once.
        """
        return False

    def lift(self, pairs: Sequence[tuple[str, str]]) -> bool:
        """Nothing to do here: the server owns its data (returns False)."""
        return False

    def reload(
        self, source: PolicySource | None = None, config: Mapping[str, Any] | None = None
    ) -> str:
        """Always raises :class:`~attestpolicy.errors.PolicyError`: the server loads its
        own policy and data (bundles)."""
        raise PolicyError(
            "reload() needs an in-process evaluator: an OPA server loads its own bundles"
        )

    def close(self) -> None:
        """Close every connection; later evaluations deny with ``remote.error``."""
        with self._lock:
            self._closed = True
            connections = list(self._connections)
            self._connections.clear()
        for connection in connections:
            connection.close()
