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

import dataclasses
import gc
import importlib.util
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import uvicorn

from attestpolicy._server_api import DataApi, DataApiApp
from attestpolicy._server_limits import MAX_BODY_BYTES, ServerLimits, ServerSettingsError
from attestpolicy._server_operations import OperationsSettings
from attestpolicy._server_protocol import HeadDeadlineProtocol, HttpToolsHeadDeadlineProtocol
from attestpolicy._server_ready import ReadyFile
from attestpolicy._server_services import WorkerServices
from attestpolicy._server_workers import Workers, listen_sockets
from attestpolicy.config import load_config
from attestpolicy.engine._inprocess import (
    DEFAULT_ENGINE,
    InProcessEvaluator,
    check_engine_name,
    make_evaluator,
)
from attestpolicy.policy import PolicyDirs, PolicySource
from attestpolicy.revocations import RevocationStore

if TYPE_CHECKING:  # the broker (and its crypto and evidence stack) loads only when used
    from attestpolicy._server_broker import BrokerRoutes, BrokerSettings

__all__ = [
    "ENV_BROKER",
    "ENV_CONFIG",
    "ENV_ENGINE",
    "ENV_LIMITS",
    "ENV_OPERATIONS",
    "ENV_POLICY_DIR",
    "ENV_REVOCATIONS",
    "HTTP_PARSERS",
    "MAX_BODY_BYTES",
    "DataApiApp",
    "ServerLimits",
    "ServerSettingsError",
    "create_app",
    "create_serve_app",
    "load_evaluator",
    "parse_addr",
    "run_server",
    "uvicorn_config",
]

ENV_POLICY_DIR: Final = "ATTESTPOLICY_SERVE_POLICY_DIR"
"""Environment variable :func:`create_app` reads the policy directory from (unset: shipped);
several directories (one policy) are separated by :data:`os.pathsep`."""

ENV_CONFIG: Final = "ATTESTPOLICY_SERVE_CONFIG"
"""Environment variable :func:`create_app` reads the configuration file path from."""

ENV_ENGINE: Final = "ATTESTPOLICY_SERVE_ENGINE"
"""Environment variable :func:`create_app` reads the engine name from (unset: regorus)."""

ENV_LIMITS: Final = "ATTESTPOLICY_SERVE_LIMITS"
"""Environment variable :func:`create_app` reads :class:`ServerLimits` from, as JSON
(unset: the defaults)."""

ENV_REVOCATIONS: Final = "ATTESTPOLICY_SERVE_REVOCATIONS"
"""The revocation store (a SQLite file) every worker shares, or empty for none."""

ENV_OPERATIONS: Final = "ATTESTPOLICY_SERVE_OPERATIONS"
"""The operational settings (:class:`~attestpolicy._server_operations.OperationsSettings`
as JSON): access log, log level."""

ENV_BROKER: Final = "ATTESTPOLICY_SERVE_BROKER"
"""The broker's settings (:class:`~attestpolicy._server_broker.BrokerSettings` as JSON),
or empty: no broker routes."""

HTTP_PARSERS: Final = {
    "httptools": HttpToolsHeadDeadlineProtocol,
    "h11": HeadDeadlineProtocol,
}
"""The HTTP/1.1 parsers :func:`uvicorn_config` takes, each with the head deadline and
size bound (:mod:`attestpolicy._server_protocol`): httptools (compiled, the default)
and h11 (pure Python)."""

_LOOP: Final = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"  # not on Windows
_APP_FACTORY: Final = "attestpolicy.server:create_serve_app"
_MAX_WORKERS: Final = 256


def load_evaluator(
    policy_dir: PolicyDirs | None = None,
    config_path: str | Path | None = None,
    *,
    engine: str = DEFAULT_ENGINE,
    revocations_path: str | Path | None = None,
) -> InProcessEvaluator:
    """Load and compile the policy (default: shipped; several directories are one policy)
    and the JSON configuration, if any.

    ``engine`` is ``"regorus"`` (default) or ``"opa"``; ``revocations_path`` a revocation
    store (SQLite) shared with other processes. Raises
    :class:`~attestpolicy.errors.PolicyError`, :class:`~attestpolicy.errors.ConfigError`,
    :class:`~attestpolicy.errors.EngineUnavailableError` or ValueError (unknown engine).
    """
    check_engine_name(engine)
    source = PolicySource.from_directory(policy_dir)
    config = load_config(config_path) if config_path is not None else None
    store = RevocationStore(revocations_path) if revocations_path is not None else None
    return make_evaluator(engine, source, config, revocations=store)


def create_app(
    evaluator: InProcessEvaluator | None = None,
    *,
    limits: ServerLimits | None = None,
    broker: BrokerSettings | None = None,
    operations: OperationsSettings | None = None,
    freeze_heap: bool = False,
) -> DataApiApp:
    """The ASGI application, with its evaluation threads started and their engines built.

    Without ``evaluator`` the policy directory, configuration file, engine and limits are
    read from :data:`ENV_POLICY_DIR`, :data:`ENV_CONFIG`, :data:`ENV_ENGINE` and
    :data:`ENV_LIMITS`: this is the factory each uvicorn worker process calls (``uvicorn
    --factory attestpolicy.server:create_app``). ``limits`` defaults to
    :class:`ServerLimits`' defaults. The connection limits (``max_connections``,
    ``header_timeout``) belong to the HTTP server: :func:`run_server` applies them.
    The threads stop at the application's lifespan shutdown; ``app.state.evaluator`` is
    the evaluator. With ``broker`` settings (from :data:`ENV_BROKER` without
    ``evaluator``) the credential broker's routes are served too (``docs/broker.md``);
    ``operations`` (from :data:`ENV_OPERATIONS`) turns on the access log, metrics,
    decision logs, bundle polling or watching and a shadow bundle (``docs/operations.md``).
    ``freeze_heap`` is for a process that serves only this application (as ``serve``'s
    do: :func:`create_serve_app`): once it is built, and after each bundle it activates,
    every object then alive is frozen (``gc.freeze``), so that the collector's full
    collections stop walking the configuration. With 100k workloads that walk paused one
    decision for about 190 ms every few thousand misses (docs/server.md).
    """
    policy_dir: PolicyDirs | None = None
    config_path = revocations_path = None
    engine: str = DEFAULT_ENGINE
    if evaluator is None:
        policy_dir = _env_policy_dirs()
        config_path = os.environ.get(ENV_CONFIG) or None
        engine = os.environ.get(ENV_ENGINE) or DEFAULT_ENGINE
        revocations_path = os.environ.get(ENV_REVOCATIONS) or None
        if limits is None and os.environ.get(ENV_LIMITS):
            limits = ServerLimits.from_json(os.environ[ENV_LIMITS])
        if broker is None and os.environ.get(ENV_BROKER):
            from attestpolicy._server_broker import BrokerSettings

            broker = BrokerSettings.from_json(os.environ[ENV_BROKER])
        if operations is None and os.environ.get(ENV_OPERATIONS):
            operations = OperationsSettings.from_json(os.environ[ENV_OPERATIONS])
    operations = operations or OperationsSettings()
    operations.configure_logging()
    services = WorkerServices(
        operations,
        evaluator=evaluator,
        engine=engine,
        policy_dir=policy_dir,
        config_path=config_path,
        revocations_path=revocations_path,
        freeze_heap=freeze_heap,
    )
    try:
        routes = services.routes()
        broker_routes = None
        if broker is not None:
            broker_routes = _broker_routes(broker, services.evaluator, services)
            routes.update(broker_routes.routes())
    except BaseException:
        services.close()
        raise

    def close() -> None:
        if broker_routes is not None:
            broker_routes.close()
        services.close()

    api = DataApi(
        services.evaluator,
        limits or ServerLimits(),
        routes,
        on_close=close,
        on_query=services.on_query,
        on_engine_error=services.metrics.engine_error if services.metrics is not None else None,
        decision_ids=services.logs_decisions,
    )
    api.warm_up()
    if freeze_heap:
        gc.freeze()
    return DataApiApp(api, access_log=operations.access_log)


def create_serve_app() -> DataApiApp:
    """The application of each ``serve`` process (uvicorn's factory): :func:`create_app`
    from the environment, with ``freeze_heap``: the process serves nothing else."""
    return create_app(freeze_heap=True)


def _broker_routes(
    settings: BrokerSettings, evaluator: InProcessEvaluator, services: WorkerServices | None
) -> BrokerRoutes:
    from attestpolicy._server_broker import BrokerRoutes

    routes = BrokerRoutes(
        settings, evaluator, metrics=services.metrics if services is not None else None
    )
    if services is not None:
        services.observe(routes.pdp)
    return routes


def parse_addr(addr: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6); port 0 picks a free port."""
    host, sep, port_text = addr.strip().rpartition(":")
    if not sep or not port_text.isascii() or not port_text.isdigit():
        raise ServerSettingsError(f"address must be host:port, got {addr!r}")
    if int(port_text) > 65535:
        raise ServerSettingsError(f"port {int(port_text)} is out of range (0-65535) in {addr!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ServerSettingsError(
            f"address {addr!r} has no host: name one (0.0.0.0 listens on every interface)"
        )
    return host, int(port_text)


def uvicorn_config(
    app: Any,
    limits: ServerLimits,
    *,
    http_parser: Literal["httptools", "h11"] = "httptools",
    **options: Any,
) -> uvicorn.Config:
    """uvicorn's settings for ``app`` with the connection limits of ``limits`` applied.

    The event loop is uvloop's (asyncio's where uvloop is not installed: Windows);
    ``http_parser`` names one of :data:`HTTP_PARSERS`.
    ``max_connections`` is uvicorn's ``limit_concurrency``; ``header_timeout`` is its
    ``timeout_keep_alive`` and, through the protocol, the time a connection has for each
    request's headers. ``options`` go to :class:`uvicorn.Config`.
    """
    settings: dict[str, Any] = {
        "access_log": False,
        "server_header": False,
        "proxy_headers": False,
        "lifespan": "on",
        "loop": _LOOP,
        "ws": "none",
        **options,
    }
    return uvicorn.Config(
        app,
        http=HTTP_PARSERS[http_parser],
        limit_concurrency=limits.max_connections,
        timeout_keep_alive=limits.header_timeout,
        timeout_graceful_shutdown=math.ceil(limits.shutdown_timeout),
        **settings,
    )


def run_server(
    addr: str,
    *,
    policy_dir: PolicyDirs | None = None,
    config_path: str | Path | None = None,
    workers: int = 1,
    engine: str = DEFAULT_ENGINE,
    limits: ServerLimits | None = None,
    revocations_path: str | Path | None = None,
    broker: BrokerSettings | None = None,
    operations: OperationsSettings | None = None,
    ready_file: str | Path | None = None,
) -> None:
    """Serve until interrupted (SIGINT/SIGTERM), with ``workers`` processes.

    The policy and configuration are loaded once here first, with ``engine``, so a broken
    policy or configuration or a missing engine raises before anything listens. Workers
    re-load them, with the same engine, revocation store and ``limits`` (default:
    :class:`ServerLimits`' defaults, per worker), through :func:`create_app` from the
    environment variables this function sets. ``broker`` adds the credential broker's
    routes; it needs ``revocations_path``, so that a revocation reaches every worker and
    survives restarts. ``operations``: the access log and the log level. ``ready_file``
    is written with the server's URL once it answers ``GET /health``, and removed when it
    stops (:mod:`attestpolicy._server_ready`).
    """
    host, port = parse_addr(addr)
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise ServerSettingsError("workers must be an integer")
    if not 1 <= workers <= _MAX_WORKERS:
        raise ServerSettingsError(f"workers must be between 1 and {_MAX_WORKERS}")
    limits = limits or ServerLimits()
    policy = _resolved_policy_dirs(policy_dir)
    config = str(Path(config_path).resolve()) if config_path is not None else ""
    store = str(Path(revocations_path).resolve()) if revocations_path is not None else ""
    if broker is not None and not store:
        raise ServerSettingsError(
            "the broker needs a revocation store (--revocations FILE): revocations must "
            "reach every worker and survive restarts"
        )
    operations = operations or OperationsSettings()
    if workers > 1 and operations.decision_log is not None:
        operations = dataclasses.replace(operations, decision_log_per_worker=True)
    # Everything loads here first (policy or first bundle, configuration, broker keys,
    # masks, shadow bundle), so that a mistake is an error before anything listens.
    services = WorkerServices(
        dataclasses.replace(operations, metrics=False, decision_log=None),
        engine=engine,
        policy_dir=policy or None,
        config_path=config or None,
        revocations_path=store or None,
    )
    try:
        if broker is not None:
            _broker_routes(broker, services.evaluator, None).close()
        if operations.decision_log_masks is not None:
            from attestpolicy.decisionlog import load_masks

            load_masks(operations.decision_log_masks)
    finally:
        services.close()
    os.environ[ENV_BROKER] = broker.to_json() if broker is not None else ""
    os.environ[ENV_REVOCATIONS] = store
    os.environ[ENV_POLICY_DIR] = os.pathsep.join(policy)
    os.environ[ENV_CONFIG] = config
    os.environ[ENV_ENGINE] = engine
    os.environ[ENV_LIMITS] = limits.to_json()
    os.environ[ENV_OPERATIONS] = operations.to_json()
    settings = uvicorn_config(
        _APP_FACTORY, limits, factory=True, workers=workers, log_level=operations.log_level
    )
    ready = ReadyFile(ready_file) if ready_file is not None else None
    sockets = listen_sockets(host, port, workers)
    bound_host, bound_port = sockets[0].getsockname()[:2]
    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on http://%s:%d (Press CTRL+C to quit)", bound_host, bound_port
    )
    try:
        if ready is not None:
            ready.announce(bound_host, bound_port)
        if workers == 1:
            uvicorn.Server(settings).run(sockets=sockets)
        elif operations.metrics:  # every worker's counts in one /metrics
            from attestpolicy.metrics import mark_process_dead, multiprocess_directory

            with multiprocess_directory():
                Workers(settings, sockets, on_exit=mark_process_dead).run()
        else:
            Workers(settings, sockets).run()
    finally:
        if ready is not None:
            ready.remove()
        for sock in sockets:
            sock.close()


def _resolved_policy_dirs(policy_dir: PolicyDirs | None) -> list[str]:
    """The policy directories as absolute paths, for the workers' :data:`ENV_POLICY_DIR`
    ([] for the shipped policy)."""
    if policy_dir is None:
        return []
    dirs = [policy_dir] if isinstance(policy_dir, str | Path) else list(policy_dir)
    resolved = [str(Path(directory).resolve()) for directory in dirs]
    for directory in resolved:
        if os.pathsep in directory:
            raise ServerSettingsError(
                f"a policy directory's path may not contain {os.pathsep!r}: {directory}"
            )
    return resolved


def _env_policy_dirs() -> list[str] | None:
    """The policy directories :func:`run_server` passed its workers (None: shipped)."""
    value = os.environ.get(ENV_POLICY_DIR)
    return value.split(os.pathsep) if value else None
