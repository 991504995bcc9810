"""The Data API's handlers for ``serve``: admission, body reading, evaluation, answers.

:class:`DataApi` admits each request to a lane (:mod:`attestpolicy._server_lanes`), reads
its body under the limits of :class:`~attestpolicy._server_limits.ServerLimits`, and
parses, evaluates and encodes on the lane's thread. Every failure is one of OPA's error
documents (``{"code", "message"}``); ``docs/server.md`` lists them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from attestpolicy._json import loads_strict
from attestpolicy._server_lanes import EvaluationTimeout, Lane, Slot
from attestpolicy._server_limits import ServerLimits
from attestpolicy.engine._inprocess import InProcessEvaluator
from attestpolicy.errors import EvaluatorError

__all__ = ["DataApi", "http_exception", "unexpected"]

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


class DataApi:
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


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no such route: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return _error_response(_ApiError(exc.status_code, message), exc.headers)


async def unexpected(request: Request, exc: Exception) -> Response:
    return _error_response(_ApiError(500, f"unexpected server error: {type(exc).__name__}"))
