"""The remote evaluator: ask an OPA server (or ``attestpolicy serve``) over its Data API.

Each call is ``POST <url>/v1/data/attestpolicy/v1/decision?provenance=true`` with
``{"input": <policy input>}``, sent with ``opa-python-client``. Every failure becomes a
fail-closed deny, never an exception:

- no ``result`` key in the answer: ``engine.undefined``;
- a ``result`` that is not a well-formed decision: ``engine.error``;
- anything else (refused, timed out, TLS, HTTP error, redirect, invalid JSON): ``remote.error``
  with a message naming the failure and, for an HTTP error, OPA's own ``code`` and ``message``.

Latency is bounded: one connect timeout and one read timeout per attempt, and by default no
retries. ``retries`` only repeats connection attempts that failed before the request was sent.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import requests
from opa_client import OpaClient
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from attestpolicy.decision import Decision, decision_from_policy_result
from attestpolicy.errors import EvaluatorError
from attestpolicy.policy import DECISION_PATH

__all__ = ["RemoteConfigError", "RemoteEvaluator"]

_PACKAGE_PATH, _, _RULE_NAME = DECISION_PATH.rpartition("/")
_MAX_MESSAGE_CHARS: Final = 500
_MAX_RETRIES: Final = 10
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class RemoteConfigError(EvaluatorError, ValueError):
    """The remote evaluator was given an unusable URL, timeout, token or CA bundle."""

    code = "remote.invalid_config"


@dataclass(frozen=True)
class _Endpoint:
    """A parsed OPA base URL."""

    scheme: str
    host: str  # as it appears in a URL: IPv6 literals in brackets
    port: int
    prefix: str  # "" or "/some/prefix" (a reverse proxy's mount point)
    loopback: bool

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.prefix}"

    @property
    def api_root(self) -> str:
        """The ``version`` argument of OpaClient: the path between the port and ``/data``."""
        return f"{self.prefix.lstrip('/')}/v1" if self.prefix else "v1"


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
        host=host,
        port=port if port is not None else _DEFAULT_PORTS[scheme],
        prefix=prefix,
        loopback=loopback,
    )


def _check_timeout(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RemoteConfigError(f"{name} must be a number of seconds")
    if not math.isfinite(value) or value <= 0:
        raise RemoteConfigError(f"{name} must be a positive, finite number of seconds")
    return float(value)


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


def _check_ca_bundle(ca_bundle: str | Path | None, endpoint: _Endpoint) -> str | None:
    if ca_bundle is None:
        return None
    if endpoint.scheme != "https":
        raise RemoteConfigError("ca_bundle is only meaningful with an https OPA URL")
    path = Path(ca_bundle)
    if not path.exists():
        raise RemoteConfigError(f"CA bundle not found: {path}")
    return str(path)


class _OpaTransport(OpaClient):  # type: ignore[misc]  # opa_client ships no type hints
    """OpaClient with a session fit for a policy enforcement point.

    No ambient configuration (proxies, ``.netrc`` credentials and CA bundles from the
    environment are ignored), no redirects (a redirect could send the input and the token
    elsewhere), and retries only for connections that failed before anything was sent.
    """

    def __init__(
        self,
        endpoint: _Endpoint,
        *,
        timeout: tuple[float, float],
        token: str | None,
        ca_bundle: str | None,
        retries: int,
    ) -> None:
        self._ca_bundle = ca_bundle
        self._connect_retries = retries
        super().__init__(
            host=endpoint.host,
            port=endpoint.port,
            version=endpoint.api_root,
            ssl=endpoint.scheme == "https",
            token=token,
            retries=retries,
            timeout=timeout,  # requests accepts a (connect, read) pair
        )

    def _init_session(self) -> requests.Session:
        session: requests.Session = super()._init_session()
        session.trust_env = False
        session.max_redirects = 0
        retry = Retry(
            total=self._connect_retries,
            connect=self._connect_retries,
            read=0,
            redirect=0,
            status=0,
            other=0,
            backoff_factor=0,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        if self.ssl:
            session.verify = self._ca_bundle or True
        return session


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


def _http_error_message(response: requests.Response | None) -> str:
    if response is None:
        return "HTTP error from OPA"
    prefix = f"HTTP {response.status_code} from OPA"
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, Mapping) or not isinstance(body.get("message"), str):
        return f"{prefix}: {response.reason or 'error'} (the body is not an OPA error document)"
    code = body.get("code")
    message = f"{prefix}: " + (f"{code}: " if isinstance(code, str) else "") + str(body["message"])
    details = [
        str(item["message"])
        for item in body.get("errors") or []
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
    proxy is kept). ``token`` is sent as ``Authorization: Bearer`` (https or loopback only);
    ``ca_bundle`` verifies an https server against a private CA. ``retries`` repeats only
    connection attempts that failed before the request was sent (default 0).
    """

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 0.5,
        read_timeout: float = 2.0,
        token: str | None = None,
        ca_bundle: str | Path | None = None,
        retries: int = 0,
    ) -> None:
        self._endpoint = _parse_url(url)
        self._timeout = (
            _check_timeout("connect_timeout", connect_timeout),
            _check_timeout("read_timeout", read_timeout),
        )
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise RemoteConfigError("retries must be an integer")
        if not 0 <= retries <= _MAX_RETRIES:
            raise RemoteConfigError(f"retries must be between 0 and {_MAX_RETRIES}")
        self._retries = retries
        self._token = _check_token(token, self._endpoint)
        self._ca_bundle = _check_ca_bundle(ca_bundle, self._endpoint)
        self._revision = f"remote:{self._endpoint.url}"
        # requests.Session is not thread-safe: one client (and session) per thread.
        self._local = threading.local()
        self._clients: weakref.WeakSet[_OpaTransport] = weakref.WeakSet()
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

    def _client(self) -> _OpaTransport:
        client: _OpaTransport | None = getattr(self._local, "client", None)
        if client is None:
            client = _OpaTransport(
                self._endpoint,
                timeout=self._timeout,
                token=self._token,
                ca_bundle=self._ca_bundle,
                retries=self._retries,
            )
            with self._lock:
                if self._closed:
                    client.close_connection()
                    raise EvaluatorError("the remote evaluator is closed", code="remote.error")
                self._clients.add(client)
            self._local.client = client
        return client

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

    def _query(self, policy_input: dict[str, Any]) -> Mapping[str, Any]:
        """POST the input; return OPA's JSON object or raise EvaluatorError(remote.error)."""
        if self._closed:
            raise EvaluatorError("the remote evaluator is closed", code="remote.error")
        connect_timeout, read_timeout = self._timeout
        try:
            body = self._client().query_rule(
                policy_input,
                _PACKAGE_PATH,
                _RULE_NAME,
                query_params={"provenance": "true"},
            )
        except EvaluatorError:
            raise
        except requests.ConnectTimeout:
            message = f"connect timeout after {connect_timeout:g}s to OPA at {self.url}"
        except requests.ReadTimeout:
            message = f"read timeout: OPA at {self.url} did not answer within {read_timeout:g}s"
        except requests.exceptions.SSLError as exc:
            message = f"TLS error talking to OPA at {self.url}: {_root_cause(exc)}"
        except requests.ConnectionError as exc:
            message = f"connection to OPA at {self.url} failed: {_root_cause(exc)}"
        except requests.TooManyRedirects as exc:
            status = exc.response.status_code if exc.response is not None else "3xx"
            message = f"OPA at {self.url} answered with a redirect (HTTP {status}); not followed"
        except requests.HTTPError as exc:
            message = _http_error_message(exc.response)
        except requests.JSONDecodeError as exc:
            message = f"invalid JSON in the response from OPA at {self.url}: {exc}"
        except Exception as exc:  # any other failure still fails closed
            message = f"request to OPA at {self.url} failed: {type(exc).__name__}: {exc}"
        else:
            if not isinstance(body, Mapping):
                raise EvaluatorError(
                    f"OPA at {self.url} answered with JSON that is not an object "
                    f"({type(body).__name__})",
                    code="remote.error",
                )
            return body
        raise EvaluatorError(_short(message), code="remote.error")

    def close(self) -> None:
        """Close every connection; later evaluations deny with ``remote.error``."""
        with self._lock:
            self._closed = True
            clients = list(self._clients)
            self._clients.clear()
        for client in clients:
            client.close_connection()
