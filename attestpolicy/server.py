"""``attestpolicy serve``: OPA's Data API answered by the in-process engine.

The engine is regorus (default) or OPA's own Go evaluator (``engine="opa"``,
``attestpolicy serve --engine opa``); every worker process builds the same one.

Routes (the subset of OPA's REST API a policy enforcement point uses):

- ``POST /v1/data[/{path}]`` with ``{"input": ...}`` and ``GET /v1/data[/{path}]?input=<json>``
  answer ``{"result": value}``, or ``{}`` when the document is undefined. ``?provenance``
  adds ``{"provenance": {..., "bundles": {"attestpolicy": {"revision": ...}}}}``.
- ``GET /health`` answers ``200 {}`` once the policy is compiled.
- Errors are OPA's ``{"code", "message"}`` documents (``docs/server.md`` lists them all):
  400 ``invalid_parameter`` for a malformed body, ``input`` parameter or refused input,
  408 and 413 for a body too slow or too large, 503 ``internal_error`` when the server is
  busy or an answer is late, 500 ``internal_error`` (with ``errors``) when the engine fails,
  404 ``resource_not_found`` and 405 ``invalid_operation`` for unknown routes and methods.

The event loop only moves bytes: parsing, evaluation and encoding run on bounded thread
lanes (:mod:`attestpolicy._server_lanes`) under the limits of :class:`ServerLimits`, and
every limit is answered at once. Scale with worker processes (``workers``): regorus holds
the GIL while it evaluates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.supervisors import Multiprocess

from attestpolicy._json import loads_strict
from attestpolicy._server_lanes import EvaluationTimeout, Lane, Slot
from attestpolicy._server_limits import MAX_BODY_BYTES, ServerLimits, ServerSettingsError
from attestpolicy._server_protocol import HeadDeadlineProtocol
from attestpolicy.config import load_config
from attestpolicy.engine._inprocess import (
    DEFAULT_ENGINE,
    InProcessEvaluator,
    check_engine_name,
    make_evaluator,
)
from attestpolicy.errors import EvaluatorError
from attestpolicy.policy import PolicySource

__all__ = [
    "ENV_CONFIG",
    "ENV_ENGINE",
    "ENV_LIMITS",
    "ENV_POLICY_DIR",
    "MAX_BODY_BYTES",
    "ServerLimits",
    "ServerSettingsError",
    "create_app",
    "load_evaluator",
    "parse_addr",
    "run_server",
    "uvicorn_config",
]

ENV_POLICY_DIR: Final = "ATTESTPOLICY_SERVE_POLICY_DIR"
"""Environment variable :func:`create_app` reads the policy directory from (unset: shipped)."""

ENV_CONFIG: Final = "ATTESTPOLICY_SERVE_CONFIG"
"""Environment variable :func:`create_app` reads the configuration file path from."""

ENV_ENGINE: Final = "ATTESTPOLICY_SERVE_ENGINE"
"""Environment variable :func:`create_app` reads the engine name from (unset: regorus)."""

ENV_LIMITS: Final = "ATTESTPOLICY_SERVE_LIMITS"
"""Environment variable :func:`create_app` reads :class:`ServerLimits` from, as JSON
(unset: the defaults)."""

_APP_FACTORY: Final = "attestpolicy.server:create_app"
_MAX_WORKERS: Final = 256
_BUNDLE_NAME: Final = "attestpolicy"
_STATUS_CODES: Final = {
    400: "invalid_parameter",
    404: "resource_not_found",
    405: "invalid_operation",
    408: "invalid_parameter",
    413: "invalid_parameter",
}
_RETRY_AFTER_SECONDS: Final = "1"


class _ApiError(Exception):
    """An error answered with an OPA error document.

    ``close`` ends the connection after the answer: the request body was not read to
    its end, so the connection cannot carry another request.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: list[dict[str, str]] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.close = close


def _busy(lane: Lane, limit: str, *, close: bool) -> _ApiError:
    return _ApiError(
        503,
        f"server busy: {lane.capacity} {lane.name} requests in progress ({limit}); try again",
        close=close,
    )


def _json_default(value: object) -> object:
    """Rego sets come back from regorus as Python sets; OPA sends them as sorted arrays."""
    if isinstance(value, set | frozenset):
        return sorted(value, key=lambda item: json.dumps(item, sort_keys=True, default=str))
    raise TypeError(f"value of type {type(value).__name__} is not JSON serializable")


def _json_response(content: Mapping[str, Any], status: int = 200) -> Response:
    body = json.dumps(
        content, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_json_default
    )
    return Response(body.encode("utf-8"), status_code=status, media_type="application/json")


def _error_response(error: _ApiError, headers: Mapping[str, str] | None = None) -> Response:
    code = "internal_error" if error.status >= 500 else _STATUS_CODES.get(error.status)
    content: dict[str, Any] = {"code": code or "invalid_parameter", "message": error.message}
    if error.errors:
        content["errors"] = error.errors
    response = _json_response(content, error.status)
    response.headers.update(headers or {})
    if error.status == 503:
        response.headers["Retry-After"] = _RETRY_AFTER_SECONDS
    if error.close:
        response.headers["Connection"] = "close"
    return response


def _bool_param(request: Request, name: str) -> bool:
    """OPA's boolean query parameters: ``?name`` or ``?name=true`` (any case)."""
    values = request.query_params.getlist(name)
    if values == [""]:
        return True
    return any(value.lower() == "true" for value in values)


def _decode_json(raw: bytes | str, what: str) -> Any:
    try:
        return loads_strict(raw)
    except ValueError as exc:
        raise _ApiError(400, f"{what} contains malformed input document: {exc}") from None


def _oversized(document: Any, limits: ServerLimits) -> str | None:
    """Why ``document`` is too large to evaluate (values or string length), or None.

    Iterative, and it stops at the first problem: the cost of evaluating an input grows
    with its number of values and the length of its strings, more than with its bytes.
    """
    pending = [document]
    count = 0
    longest = limits.max_input_string_chars
    while pending:
        value = pending.pop()
        count += 1
        if count > limits.max_input_values:
            return f"more than {limits.max_input_values} JSON values (max_input_values)"
        texts: Iterable[Any] = ()
        if isinstance(value, dict):
            pending.extend(value.values())
            texts = value  # the keys
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str):
            texts = (value,)
        if any(len(text) > longest for text in texts):
            return f"a string longer than {longest} characters (max_input_string_chars)"
    return None


class _DataApi:
    """The request handlers, bound to one evaluator and its lanes."""

    def __init__(self, evaluator: InProcessEvaluator, limits: ServerLimits) -> None:
        self.evaluator = evaluator
        self.limits = limits
        self.small = Lane("small", limits.eval_threads, limits.max_evaluations)
        self.large = Lane("large", limits.max_large_requests, limits.max_large_requests)

    def warm_up(self) -> None:
        self.small.warm_up(self.evaluator)
        self.large.warm_up(self.evaluator)

    def close(self) -> None:
        self.small.close()
        self.large.close()

    async def health(self, request: Request) -> Response:
        return _json_response({})

    async def data(self, request: Request) -> Response:
        try:
            return await self._data(request)
        except _ApiError as error:
            return _error_response(error)

    async def _data(self, request: Request) -> Response:
        path = str(request.path_params.get("path", ""))
        provenance = _bool_param(request, "provenance")
        if request.method != "POST":
            values = request.query_params.getlist("input")
            param = values[-1] if values else None
            # uvicorn takes a request head of any size that arrives in one read.
            lane = self.large if len(param or "") > self.limits.large_body_bytes else self.small
            with self._admit(lane, close=False) as slot:
                return await self._evaluate(slot, path, param, provenance)
        large = self._admit_declared(request)
        raw, large = await self._read_body(request, large)
        with large or self._admit(self.small, close=False) as slot:
            return await self._evaluate(slot, path, raw, provenance)

    def _admit(self, lane: Lane, *, close: bool) -> Slot:
        slot = lane.admit()
        if slot is None:
            limit = "max_evaluations" if lane is self.small else "max_large_requests"
            raise _busy(lane, limit, close=close)
        return slot

    def _admit_declared(self, request: Request) -> Slot | None:
        """Check the declared size first: a place in the large lane, if the body needs one."""
        if request.headers.get("content-encoding", "identity").lower() != "identity":
            raise _ApiError(400, "compressed request bodies are not supported", close=True)
        declared = request.headers.get("content-length")
        if declared is None or not declared.isdigit():
            return None
        if int(declared) > self.limits.max_body_bytes:
            raise _ApiError(413, "request body too large", close=True)
        if int(declared) > self.limits.large_body_bytes:
            return self._admit(self.large, close=True)
        return None

    async def _read_body(self, request: Request, large: Slot | None) -> tuple[bytes, Slot | None]:
        """The whole body within ``body_timeout``; a large-lane place once it is large."""
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > self.limits.max_body_bytes:
                        raise _ApiError(413, "request body too large", close=True)
                    if large is None and size > self.limits.large_body_bytes:
                        large = self._admit(self.large, close=True)
                    chunks.append(chunk)
        except BaseException as exc:
            if large is not None:
                large.close()
            if isinstance(exc, ClientDisconnect):  # nobody to answer: just end the request
                raise _ApiError(400, "client disconnected", close=True) from None
            if isinstance(exc, TimeoutError):
                raise _ApiError(
                    408,
                    f"request body not received within {self.limits.body_timeout:g}s "
                    "(body_timeout)",
                    close=True,
                ) from None
            raise
        return b"".join(chunks), large

    async def _evaluate(
        self, slot: Slot, path: str, raw: bytes | str | None, provenance: bool
    ) -> Response:
        try:
            return await slot.run(self.limits.eval_timeout, self._answer, path, raw, provenance)
        except EvaluationTimeout:
            raise _ApiError(
                503,
                f"no answer within {self.limits.eval_timeout:g}s (eval_timeout); try again",
            ) from None

    def _answer(self, path: str, raw: bytes | str | None, provenance: bool) -> Response:
        """Parse, evaluate and encode (on a lane thread)."""
        try:
            return self._answer_or_raise(path, raw, provenance)
        except _ApiError as error:
            return _error_response(error)

    def _answer_or_raise(self, path: str, raw: bytes | str | None, provenance: bool) -> Response:
        missing_input = False
        policy_input: Any = None
        if isinstance(raw, bytes):  # a POST body
            if raw.strip():
                document = _decode_json(raw, "body")
                if not isinstance(document, dict):
                    raise _ApiError(400, "body contains malformed input document: not an object")
                policy_input = document.get("input")
            missing_input = policy_input is None
        elif raw is not None:  # a GET input parameter
            policy_input = _decode_json(raw, "parameter")
        problem = _oversized(policy_input, self.limits)
        if problem is not None:
            raise _ApiError(400, f"input refused: it has {problem}")
        try:
            defined, value = self.evaluator.evaluate_path(path, policy_input)
        except EvaluatorError as exc:
            if exc.code == "input.invalid":
                raise _ApiError(400, exc.message) from None
            raise _ApiError(
                500,
                "error(s) occurred while evaluating query",
                errors=[{"code": "eval_error", "message": exc.message}],
            ) from None
        content: dict[str, Any] = {}
        if defined:
            content["result"] = value
        if missing_input:
            content["warning"] = {
                "code": "api_usage_warning",
                "message": "'input' key missing from the request",
            }
        if provenance:
            content["provenance"] = {
                "version": self.evaluator.engine_version,
                "build_commit": "",
                "build_timestamp": "",
                "build_hostname": "",
                "bundles": {_BUNDLE_NAME: {"revision": self.evaluator.revision}},
            }
        try:
            return _json_response(content)
        except (TypeError, ValueError) as exc:
            raise _ApiError(500, f"the result cannot be encoded as JSON: {exc}") from None


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no such route: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return _error_response(_ApiError(exc.status_code, message), exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    return _error_response(_ApiError(500, f"unexpected server error: {type(exc).__name__}"))


def load_evaluator(
    policy_dir: str | Path | None = None,
    config_path: str | Path | None = None,
    *,
    engine: str = DEFAULT_ENGINE,
) -> InProcessEvaluator:
    """Load and compile the policy (default: shipped) and the JSON configuration, if any.

    ``engine`` is ``"regorus"`` (default) or ``"opa"``. Raises
    :class:`~attestpolicy.errors.PolicyError`, :class:`~attestpolicy.errors.ConfigError`,
    :class:`~attestpolicy.errors.EngineUnavailableError` or ValueError (unknown engine).
    """
    check_engine_name(engine)
    source = PolicySource.from_directory(policy_dir)
    config = load_config(config_path) if config_path is not None else None
    return make_evaluator(engine, source, config)


def create_app(
    evaluator: InProcessEvaluator | None = None, *, limits: ServerLimits | None = None
) -> Starlette:
    """The ASGI application, with its evaluation threads started and their engines built.

    Without ``evaluator`` the policy directory, configuration file, engine and limits are
    read from :data:`ENV_POLICY_DIR`, :data:`ENV_CONFIG`, :data:`ENV_ENGINE` and
    :data:`ENV_LIMITS`: this is the factory each uvicorn worker process calls (``uvicorn
    --factory attestpolicy.server:create_app``). ``limits`` defaults to
    :class:`ServerLimits`' defaults. The connection limits (``max_connections``,
    ``header_timeout``) belong to the HTTP server: :func:`run_server` applies them.
    The threads stop at the application's lifespan shutdown.
    """
    if evaluator is None:
        evaluator = load_evaluator(
            os.environ.get(ENV_POLICY_DIR) or None,
            os.environ.get(ENV_CONFIG) or None,
            engine=os.environ.get(ENV_ENGINE) or DEFAULT_ENGINE,
        )
        if limits is None and os.environ.get(ENV_LIMITS):
            limits = ServerLimits.from_json(os.environ[ENV_LIMITS])
    api = _DataApi(evaluator, limits or ServerLimits())
    api.warm_up()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            api.close()

    routes = [
        Route("/health", api.health, methods=["GET"]),
        Route("/v1/data", api.data, methods=["GET", "POST"]),
        Route("/v1/data/{path:path}", api.data, methods=["GET", "POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_exception, Exception: _unexpected},
        lifespan=lifespan,
    )
    app.state.evaluator = evaluator
    return app


def parse_addr(addr: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6); port 0 picks a free port."""
    host, sep, port_text = addr.strip().rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ServerSettingsError(f"address must be host:port, got {addr!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ServerSettingsError(
            f"address {addr!r} has no host: name one (0.0.0.0 listens on every interface)"
        )
    return host, int(port_text)


def uvicorn_config(app: Any, limits: ServerLimits, **options: Any) -> uvicorn.Config:
    """uvicorn's settings for ``app`` with the connection limits of ``limits`` applied.

    ``max_connections`` is uvicorn's ``limit_concurrency``; ``header_timeout`` is its
    ``timeout_keep_alive`` and, through :class:`HeadDeadlineProtocol` (h11), the time a
    connection has for each request's headers. ``options`` go to :class:`uvicorn.Config`.
    """
    settings: dict[str, Any] = {
        "access_log": False,
        "server_header": False,
        "proxy_headers": False,
        "lifespan": "on",
        **options,
    }
    return uvicorn.Config(
        app,
        http=HeadDeadlineProtocol,
        limit_concurrency=limits.max_connections,
        timeout_keep_alive=limits.header_timeout,
        **settings,
    )


def run_server(
    addr: str,
    *,
    policy_dir: str | Path | None = None,
    config_path: str | Path | None = None,
    workers: int = 1,
    engine: str = DEFAULT_ENGINE,
    limits: ServerLimits | None = None,
) -> None:
    """Serve until interrupted (SIGINT/SIGTERM), with ``workers`` processes.

    The policy and configuration are loaded once here first, with ``engine``, so a broken
    policy or configuration or a missing engine raises before anything listens. Workers
    re-load them, with the same engine and ``limits`` (default: :class:`ServerLimits`'
    defaults, per worker), through :func:`create_app` from the environment variables
    this function sets.
    """
    host, port = parse_addr(addr)
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise ServerSettingsError("workers must be an integer")
    if not 1 <= workers <= _MAX_WORKERS:
        raise ServerSettingsError(f"workers must be between 1 and {_MAX_WORKERS}")
    limits = limits or ServerLimits()
    policy = str(Path(policy_dir).resolve()) if policy_dir is not None else ""
    config = str(Path(config_path).resolve()) if config_path is not None else ""
    load_evaluator(policy or None, config or None, engine=engine).close()
    os.environ[ENV_POLICY_DIR] = policy
    os.environ[ENV_CONFIG] = config
    os.environ[ENV_ENGINE] = engine
    os.environ[ENV_LIMITS] = limits.to_json()
    settings = uvicorn_config(_APP_FACTORY, limits, factory=True, workers=workers)
    sock = _listen_socket(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on http://%s:%d (Press CTRL+C to quit)", bound_host, bound_port
    )
    try:
        if workers == 1:
            uvicorn.Server(settings).run(sockets=[sock])
        else:
            Multiprocess(settings, sockets=[sock]).run()
    finally:
        sock.close()


def _listen_socket(host: str, port: int) -> socket.socket:
    """The listening socket, made here rather than by uvicorn.

    It must be created with ``IPPROTO_TCP``: asyncio only sets TCP_NODELAY on accepted
    connections of such sockets, and uvicorn's own multi-worker socket (protocol 0,
    kept as 0 when handed to the workers) would add Nagle's ~40 ms to every answer.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServerSettingsError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    sock.set_inheritable(True)
    return sock
