"""The Data API of ``serve`` as a plain ASGI application: routes, admission, body, answers.

:class:`DataApiApp` routes each request (``/health``, ``/v1/data[/{path}]``), admits it
to a lane (:mod:`attestpolicy._server_lanes`), reads its body under the limits of
:class:`~attestpolicy._server_limits.ServerLimits`, and parses, evaluates and encodes on
the lane's thread. Every failure is one of OPA's error documents (``{"code",
"message"}``); ``docs/server.md`` lists them. There is no framework in between: the
event loop's share of a decision is the HTTP parser's, this module's and the hand-off
to the lane.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, Final
from urllib.parse import parse_qsl

from attestpolicy._json import loads_strict
from attestpolicy._server_lanes import EvaluationTimeout, Lane, Slot
from attestpolicy._server_limits import ServerLimits
from attestpolicy.engine._inprocess import InProcessEvaluator
from attestpolicy.errors import EvaluatorError

__all__ = [
    "ACCESS_LOGGER",
    "Answer",
    "ApiError",
    "DataApi",
    "DataApiApp",
    "QueryOptions",
    "QueryRecord",
    "Receive",
    "Route",
    "Scope",
    "Send",
    "decode_json",
    "error_answer",
    "header",
    "json_answer",
]

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_BUNDLE_NAME: Final = "attestpolicy"
_DATA_PREFIX: Final = "/v1/data"
_HEALTH: Final = "/health"
_DATA_METHODS: Final = ("GET", "HEAD", "POST")
_HEALTH_METHODS: Final = ("GET", "HEAD")
_STATUS_CODES: Final = {
    400: "invalid_parameter",
    404: "resource_not_found",
    405: "invalid_operation",
    408: "invalid_parameter",
    413: "invalid_parameter",
}
_RETRY_AFTER_SECONDS: Final = b"1"
_UNSUPPORTED_PARAMS: Final = ("explain", "instrument")
_LOGGER = logging.getLogger("uvicorn.error")
ACCESS_LOGGER: Final = logging.getLogger("attestpolicy.access")
"""The access log: a JSON line per request, at INFO (``serve --access-log``)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete HTTP answer: status, JSON body and any headers besides its type and size."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()
    decision_id: str | None = None
    """The decision logged for this answer, if any (for the access log)."""
    content_type: bytes = b"application/json"

    async def send(self, send: Send) -> None:
        headers = [
            (b"content-type", self.content_type),
            (b"content-length", b"%d" % len(self.body)),
            *self.headers,
        ]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


@dataclass(frozen=True, slots=True)
class Route:
    """A route besides the Data API: its methods and its handler, which gets the request's
    scope and whole body (empty for GET and HEAD) and runs on a lane thread."""

    methods: tuple[str, ...]
    handle: Callable[[Scope, bytes], Answer]


class ApiError(Exception):
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
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.close = close
        self.headers = headers


def _busy(lane: Lane, limit: str, *, close: bool) -> ApiError:
    return ApiError(
        503,
        f"server busy: {lane.capacity} {lane.name} requests in progress ({limit}); try again",
        close=close,
    )


def _json_default(value: object) -> object:
    """Rego sets come back from regorus as Python sets; OPA sends them as sorted arrays."""
    if isinstance(value, set | frozenset):
        return sorted(value, key=lambda item: json.dumps(item, sort_keys=True, default=str))
    raise TypeError(f"value of type {type(value).__name__} is not JSON serializable")


_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_json_default
)
_PRETTY_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, indent=2, default=_json_default
)


def json_answer(content: Mapping[str, Any], status: int = 200, *, pretty: bool = False) -> Answer:
    encoder = _PRETTY_ENCODER if pretty else _ENCODER
    return Answer(status, encoder.encode(content).encode("utf-8"))


def error_answer(error: ApiError) -> Answer:
    code = "internal_error" if error.status >= 500 else _STATUS_CODES.get(error.status)
    content: dict[str, Any] = {"code": code or "invalid_parameter", "message": error.message}
    if error.errors:
        content["errors"] = error.errors
    headers = list(error.headers)
    if error.status == 503:
        headers.append((b"retry-after", _RETRY_AFTER_SECONDS))
    if error.close:
        headers.append((b"connection", b"close"))
    return Answer(error.status, json_answer(content).body, tuple(headers))


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of the (lower-case) header ``name``, or None."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _query(scope: Scope) -> list[tuple[str, str]]:
    """The query parameters, in order, blank values kept (as Starlette and OPA read them)."""
    text = bytes(scope.get("query_string", b"")).decode("latin-1")
    return parse_qsl(text, keep_blank_values=True) if text else []


def _bool_param(params: list[tuple[str, str]], name: str) -> bool:
    """OPA's boolean query parameters: ``?name`` or ``?name=true`` (any case)."""
    values = [value for key, value in params if key == name]
    if values == [""]:
        return True
    return any(value.lower() == "true" for value in values)


@dataclass(frozen=True, slots=True)
class QueryOptions:
    """The Data API's query parameters that change an answer (as OPA reads them)."""

    provenance: bool = False
    pretty: bool = False
    metrics: bool = False

    @classmethod
    def of(cls, params: list[tuple[str, str]]) -> QueryOptions:
        """Read them; 400 for those this server does not support (never ignored)."""
        for name in _UNSUPPORTED_PARAMS:
            if any(key == name for key, _ in params):
                raise ApiError(
                    400,
                    f"?{name} is not supported by attestpolicy serve"
                    + (" (see attestpolicy decide --explain)" if name == "explain" else ""),
                )
        return cls(
            provenance=_bool_param(params, "provenance"),
            pretty=_bool_param(params, "pretty"),
            metrics=_bool_param(params, "metrics"),
        )


@dataclass(frozen=True, slots=True)
class QueryRecord:
    """One Data API evaluation, for the decision log: what was asked and answered."""

    decision_id: str
    path: str
    input: Any
    defined: bool
    result: Any
    revision: str
    evaluation_ns: int


def decode_json(raw: bytes | str, what: str) -> Any:
    try:
        return loads_strict(raw)
    except ValueError as exc:
        raise ApiError(400, f"{what} contains malformed input document: {exc}") from None


def _cannot_be_oversized(text_length: int, limits: ServerLimits) -> bool:
    """Whether JSON text of ``text_length`` bytes (or characters) is within the input
    limits whatever it holds: a value takes at least 2 of them but the last (``0,``,
    ``[]``), and a string's character at least one."""
    return text_length <= min(limits.max_input_string_chars, 2 * limits.max_input_values - 1)


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


class DataApi:
    """The request handlers, bound to one evaluator and its lanes."""

    def __init__(
        self,
        evaluator: InProcessEvaluator,
        limits: ServerLimits,
        routes: Mapping[str, Route] | None = None,
        *,
        on_close: Callable[[], None] | None = None,
        on_query: Callable[[QueryRecord], None] | None = None,
        on_engine_error: Callable[[str], None] | None = None,
        decision_ids: bool = True,
    ) -> None:
        self.evaluator = evaluator
        self.limits = limits
        self.routes = dict(routes or {})
        self._on_close = on_close
        self._on_query = on_query
        self._decision_ids = decision_ids
        self._on_engine_error = on_engine_error
        self.small = Lane("small", limits.eval_threads, limits.max_evaluations)
        self.large = Lane("large", limits.max_large_requests, limits.max_large_requests)

    def warm_up(self) -> None:
        self.small.warm_up(self.evaluator)
        self.large.warm_up(self.evaluator)

    def close(self) -> None:
        self.small.close()
        self.large.close()
        if self._on_close is not None:
            self._on_close()

    async def answer(self, scope: Scope, receive: Receive) -> Answer:
        """The answer to one HTTP request (every error as an OPA error document)."""
        try:
            return await self._route(scope, receive)
        except ApiError as error:
            return error_answer(error)

    async def _route(self, scope: Scope, receive: Receive) -> Answer:
        method, path = scope["method"], scope["path"]
        if path == _HEALTH:
            _check_method(method, path, _HEALTH_METHODS)
            return json_answer({})
        if path == _DATA_PREFIX or path.startswith(_DATA_PREFIX + "/"):
            _check_method(method, path, _DATA_METHODS)
            return await self._data(scope, receive, path[len(_DATA_PREFIX) + 1 :])
        route = self.routes.get(path)
        if route is not None:
            _check_method(method, path, route.methods)
            return await self._other(route, scope, receive)
        raise ApiError(404, f"no such route: {method} {path}")

    async def _other(self, route: Route, scope: Scope, receive: Receive) -> Answer:
        """A route of :attr:`routes`: its body read as the Data API's, handled on a lane."""
        raw = b""
        large = None
        if scope["method"] not in ("GET", "HEAD"):
            large = self._admit_declared(scope)
            raw, large = await self._read_body(receive, large)
        with large or self._admit(self.small, close=False) as slot:
            try:
                return await slot.run(self.limits.eval_timeout, _handled, route, scope, raw)
            except EvaluationTimeout:
                raise ApiError(
                    503,
                    f"no answer within {self.limits.eval_timeout:g}s (eval_timeout); try again",
                ) from None

    async def _data(self, scope: Scope, receive: Receive, path: str) -> Answer:
        params = _query(scope)
        provenance = QueryOptions.of(params)
        if scope["method"] != "POST":
            values = [value for key, value in params if key == "input"]
            param = values[-1] if values else None
            # uvicorn takes a request head of any size that arrives in one read.
            lane = self.large if len(param or "") > self.limits.large_body_bytes else self.small
            with self._admit(lane, close=False) as slot:
                return await self._evaluate(slot, path, param, provenance)
        large = self._admit_declared(scope)
        raw, large = await self._read_body(receive, large)
        with large or self._admit(self.small, close=False) as slot:
            return await self._evaluate(slot, path, raw, provenance)

    def _admit(self, lane: Lane, *, close: bool) -> Slot:
        slot = lane.admit()
        if slot is None:
            limit = "max_evaluations" if lane is self.small else "max_large_requests"
            raise _busy(lane, limit, close=close)
        return slot

    def _admit_declared(self, scope: Scope) -> Slot | None:
        """Check the declared size first: a place in the large lane, if the body needs one."""
        if (header(scope, b"content-encoding") or "identity").lower() != "identity":
            raise ApiError(400, "compressed request bodies are not supported", close=True)
        declared = header(scope, b"content-length")
        if declared is None or not declared.isdigit():
            return None
        if int(declared) > self.limits.max_body_bytes:
            raise ApiError(413, "request body too large", close=True)
        if int(declared) > self.limits.large_body_bytes:
            return self._admit(self.large, close=True)
        return None

    async def _read_body(self, receive: Receive, large: Slot | None) -> tuple[bytes, Slot | None]:
        """The whole body within ``body_timeout``; a large-lane place once it is large."""
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":  # http.disconnect: nobody to answer
                        raise ApiError(400, "client disconnected", close=True)
                    chunk: bytes = message.get("body", b"")
                    size += len(chunk)
                    if size > self.limits.max_body_bytes:
                        raise ApiError(413, "request body too large", close=True)
                    if large is None and size > self.limits.large_body_bytes:
                        large = self._admit(self.large, close=True)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except BaseException as exc:
            if large is not None:
                large.close()
            if isinstance(exc, TimeoutError):
                raise ApiError(
                    408,
                    f"request body not received within {self.limits.body_timeout:g}s "
                    "(body_timeout)",
                    close=True,
                ) from None
            raise
        return b"".join(chunks), large

    async def _evaluate(
        self, slot: Slot, path: str, raw: bytes | str | None, options: QueryOptions
    ) -> Answer:
        try:
            return await slot.run(self.limits.eval_timeout, self._answer, path, raw, options)
        except EvaluationTimeout:
            raise ApiError(
                503,
                f"no answer within {self.limits.eval_timeout:g}s (eval_timeout); try again",
            ) from None

    def _answer(self, path: str, raw: bytes | str | None, options: QueryOptions) -> Answer:
        """Parse, evaluate and encode (on a lane thread)."""
        try:
            return self._answer_or_raise(path, raw, options, time.perf_counter_ns())
        except ApiError as error:
            return error_answer(error)

    def _answer_or_raise(
        self, path: str, raw: bytes | str | None, options: QueryOptions, started: int
    ) -> Answer:
        missing_input = False
        policy_input: Any = None
        if isinstance(raw, bytes):  # a POST body
            if raw.strip():
                document = decode_json(raw, "body")
                if not isinstance(document, dict):
                    raise ApiError(400, "body contains malformed input document: not an object")
                policy_input = document.get("input")
            missing_input = policy_input is None
        elif raw is not None:  # a GET input parameter
            policy_input = decode_json(raw, "parameter")
        small = raw is None or _cannot_be_oversized(len(raw), self.limits)
        problem = None if small else _oversized(policy_input, self.limits)
        if problem is not None:
            raise ApiError(400, f"input refused: it has {problem}")
        evaluation_started = time.perf_counter_ns()
        try:
            defined, value = self.evaluator.evaluate_path(path, policy_input)
        except EvaluatorError as exc:
            if exc.code == "input.invalid":
                raise ApiError(400, exc.message) from None
            if self._on_engine_error is not None:
                try:
                    self._on_engine_error(exc.code)
                except Exception:  # counting never changes an answer
                    _LOGGER.exception("the engine error hook failed")
            raise ApiError(
                500,
                "error(s) occurred while evaluating query",
                errors=[{"code": "eval_error", "message": exc.message}],
            ) from None
        evaluation_ns = time.perf_counter_ns() - evaluation_started
        content: dict[str, Any] = {}
        if defined:
            content["result"] = value
        if self._on_query is not None:
            decision_id = str(uuid.uuid4())
            if self._decision_ids:  # OPA names the decision when it logs decisions
                content["decision_id"] = decision_id
            record = QueryRecord(
                decision_id,
                path,
                policy_input,
                defined,
                value,
                self.evaluator.revision,
                evaluation_ns,
            )
            try:
                self._on_query(record)
            except Exception:  # logging never changes or fails an answer
                _LOGGER.exception("the decision log hook failed")
        if missing_input:
            content["warning"] = {
                "code": "api_usage_warning",
                "message": "'input' key missing from the request",
            }
        if options.metrics:
            content["metrics"] = {
                "timer_rego_query_eval_ns": evaluation_ns,
                "timer_server_handler_ns": time.perf_counter_ns() - started,
            }
        if options.provenance:
            content["provenance"] = {
                "version": self.evaluator.engine_version,
                "build_commit": "",
                "build_timestamp": "",
                "build_hostname": "",
                "bundles": {_BUNDLE_NAME: {"revision": self.evaluator.revision}},
            }
        try:
            answer = json_answer(content, pretty=options.pretty)
        except (TypeError, ValueError) as exc:
            raise ApiError(500, f"the result cannot be encoded as JSON: {exc}") from None
        logged = content.get("decision_id")
        return dataclasses.replace(answer, decision_id=logged) if logged else answer


def _handled(route: Route, scope: Scope, raw: bytes) -> Answer:
    try:
        return route.handle(scope, raw)
    except ApiError as error:
        return error_answer(error)


def _check_method(method: str, path: str, allowed: tuple[str, ...]) -> None:
    if method not in allowed:
        raise ApiError(
            405,
            f"method {method} is not allowed on {path}",
            headers=((b"allow", ", ".join(allowed).encode("ascii")),),
        )


def _log_access(scope: Scope, answer: Answer, duration_ns: int) -> None:
    """One JSON line on the ``attestpolicy.access`` logger (never the query string: it may
    carry an input)."""
    client = scope.get("client")
    line: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "client": f"{client[0]}:{client[1]}" if client else None,
        "method": scope["method"],
        "path": scope["path"],
        "status": answer.status,
        "bytes": len(answer.body),
        "duration_ms": round(duration_ns / 1e6, 3),
    }
    if answer.decision_id is not None:
        line["decision_id"] = answer.decision_id
    ACCESS_LOGGER.info(json.dumps(line, separators=(",", ":")))


class DataApiApp:
    """The ASGI application of ``serve``: HTTP requests and the lifespan (which stops the
    lanes' threads at shutdown). ``state.evaluator`` is the evaluator it answers with."""

    def __init__(self, api: DataApi, *, access_log: bool = False) -> None:
        self.api = api
        self.state = SimpleNamespace(evaluator=api.evaluator)
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            raise ValueError(f"unsupported ASGI scope type {scope['type']!r}")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter_ns()
        try:
            answer = await self.api.answer(scope, receive)
        except Exception as exc:
            _LOGGER.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            error = ApiError(500, f"unexpected server error: {type(exc).__name__}")
            answer = error_answer(error)
        await answer.send(send)
        if self.access_log:
            _log_access(scope, answer, time.perf_counter_ns() - started)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.api.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
