"""``attestpolicy serve``: OPA's Data API answered by the in-process engine.

The engine is regorus (default) or OPA's own Go evaluator (``engine="opa"``,
``attestpolicy serve --engine opa``); every worker process builds the same one.

Routes (the subset of OPA's REST API a policy enforcement point uses):

- ``POST /v1/data[/{path}]`` with ``{"input": ...}`` and ``GET /v1/data[/{path}]?input=<json>``
  answer ``{"result": value}``, or ``{}`` when the document is undefined. ``?provenance``
  adds ``{"provenance": {..., "bundles": {"attestpolicy": {"revision": ...}}}}``.
- ``GET /health`` answers ``200 {}`` once the policy is compiled.
- Errors are OPA's ``{"code", "message"}`` documents: 400 ``invalid_parameter`` for a
  malformed body or ``input`` parameter, 413 ``invalid_parameter`` for a body over
  :data:`MAX_BODY_BYTES`, 500 ``internal_error`` (with ``errors``) when the engine fails,
  404 ``resource_not_found`` and 405 ``invalid_operation`` for unknown routes and methods.

Evaluation runs synchronously on the event-loop thread: it takes a fraction of a
millisecond and regorus holds the GIL anyway, so a thread pool would add a thread hop and
one engine per pool thread (regorus engines are thread-bound) for no parallelism. Scale with
worker processes (``workers``), each with its own loop and one engine.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.supervisors import Multiprocess

from attestpolicy._json import loads_strict
from attestpolicy.config import load_config
from attestpolicy.engine._inprocess import (
    DEFAULT_ENGINE,
    InProcessEvaluator,
    check_engine_name,
    make_evaluator,
)
from attestpolicy.errors import AttestPolicyError, EvaluatorError
from attestpolicy.policy import PolicySource

__all__ = [
    "ENV_CONFIG",
    "ENV_ENGINE",
    "ENV_POLICY_DIR",
    "MAX_BODY_BYTES",
    "ServerSettingsError",
    "create_app",
    "load_evaluator",
    "parse_addr",
    "run_server",
]

MAX_BODY_BYTES: Final = 2 * 1024 * 1024
"""Largest accepted request body (2 MiB): twice the largest claim set."""

ENV_POLICY_DIR: Final = "ATTESTPOLICY_SERVE_POLICY_DIR"
"""Environment variable :func:`create_app` reads the policy directory from (unset: shipped)."""

ENV_CONFIG: Final = "ATTESTPOLICY_SERVE_CONFIG"
"""Environment variable :func:`create_app` reads the configuration file path from."""

ENV_ENGINE: Final = "ATTESTPOLICY_SERVE_ENGINE"
"""Environment variable :func:`create_app` reads the engine name from (unset: regorus)."""

_APP_FACTORY: Final = "attestpolicy.server:create_app"
_MAX_WORKERS: Final = 256
_BUNDLE_NAME: Final = "attestpolicy"
_STATUS_CODES: Final = {
    400: "invalid_parameter",
    404: "resource_not_found",
    405: "invalid_operation",
    413: "invalid_parameter",
}


class ServerSettingsError(AttestPolicyError, ValueError):
    """``serve`` was given an unusable address or worker count."""

    code = "serve.invalid"


class _ApiError(Exception):
    """An error answered with an OPA error document."""

    def __init__(
        self, status: int, message: str, *, errors: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


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


async def _read_body(request: Request, limit: int) -> bytes:
    if request.headers.get("content-encoding", "identity").lower() != "identity":
        raise _ApiError(400, "compressed request bodies are not supported")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _ApiError(413, "request body too large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _ApiError(413, "request body too large")
        chunks.append(chunk)
    return b"".join(chunks)


class _DataApi:
    """The request handlers, bound to one evaluator."""

    def __init__(self, evaluator: InProcessEvaluator, max_body_bytes: int) -> None:
        self.evaluator = evaluator
        self.max_body_bytes = max_body_bytes

    async def health(self, request: Request) -> Response:
        return _json_response({})

    async def data(self, request: Request) -> Response:
        try:
            return await self._data(request)
        except _ApiError as error:
            return _error_response(error)

    async def _data(self, request: Request) -> Response:
        path = str(request.path_params.get("path", ""))
        missing_input = False
        policy_input: Any = None
        if request.method == "POST":
            raw = await _read_body(request, self.max_body_bytes)
            if raw.strip():
                document = _decode_json(raw, "body")
                if not isinstance(document, dict):
                    raise _ApiError(400, "body contains malformed input document: not an object")
                policy_input = document.get("input")
            missing_input = policy_input is None
        else:
            values = request.query_params.getlist("input")
            if values:
                policy_input = _decode_json(values[-1], "parameter")
        try:
            # Synchronous on purpose: see the module docstring.
            defined, value = self.evaluator.evaluate_path(path, policy_input)
        except EvaluatorError as exc:
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
        if _bool_param(request, "provenance"):
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
    evaluator: InProcessEvaluator | None = None, *, max_body_bytes: int = MAX_BODY_BYTES
) -> Starlette:
    """The ASGI application.

    Without ``evaluator`` the policy directory, configuration file and engine are read
    from :data:`ENV_POLICY_DIR`, :data:`ENV_CONFIG` and :data:`ENV_ENGINE`: this is the
    factory each uvicorn worker process calls (``uvicorn --factory
    attestpolicy.server:create_app``).
    """
    if evaluator is None:
        evaluator = load_evaluator(
            os.environ.get(ENV_POLICY_DIR) or None,
            os.environ.get(ENV_CONFIG) or None,
            engine=os.environ.get(ENV_ENGINE) or DEFAULT_ENGINE,
        )
    api = _DataApi(evaluator, max_body_bytes)
    routes = [
        Route("/health", api.health, methods=["GET"]),
        Route("/v1/data", api.data, methods=["GET", "POST"]),
        Route("/v1/data/{path:path}", api.data, methods=["GET", "POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_exception, Exception: _unexpected},
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


def run_server(
    addr: str,
    *,
    policy_dir: str | Path | None = None,
    config_path: str | Path | None = None,
    workers: int = 1,
    engine: str = DEFAULT_ENGINE,
) -> None:
    """Serve until interrupted (SIGINT/SIGTERM), with ``workers`` processes.

    The policy and configuration are loaded once here first, with ``engine``, so a broken
    policy or configuration or a missing engine raises before anything listens. Workers
    re-load them, with the same engine, through :func:`create_app` from the environment
    variables this function sets.
    """
    host, port = parse_addr(addr)
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise ServerSettingsError("workers must be an integer")
    if not 1 <= workers <= _MAX_WORKERS:
        raise ServerSettingsError(f"workers must be between 1 and {_MAX_WORKERS}")
    policy = str(Path(policy_dir).resolve()) if policy_dir is not None else ""
    config = str(Path(config_path).resolve()) if config_path is not None else ""
    load_evaluator(policy or None, config or None, engine=engine).close()
    os.environ[ENV_POLICY_DIR] = policy
    os.environ[ENV_CONFIG] = config
    os.environ[ENV_ENGINE] = engine
    settings = uvicorn.Config(
        _APP_FACTORY,
        factory=True,
        workers=workers,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        log_level="info",
    )
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
