"""DecisionMiddleware: the policy decides each request; only an allow gets through."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from attestpolicy.claims import ClaimSet
from attestpolicy.decision import Decision
from attestpolicy.pdp import PolicyDecisionPoint
from attestpolicy.pep._common import LOGGER_NAME, Exclusions, log_deny, send_error

__all__ = ["DecisionMiddleware", "Evidence", "Extract"]

_LOG = logging.getLogger(LOGGER_NAME)


@dataclass(frozen=True)
class Evidence:
    """What ``extract`` returns to have evidence verified and decided
    (:meth:`~attestpolicy.pdp.PolicyDecisionPoint.adecide_evidence`) instead of claims."""

    document: Any
    trust: Any
    nonce: bytes | None = None
    nonce_audience: str | None = None
    now: datetime | None = None  # the verification time (default: the current time)


Extract = Callable[[Request], Awaitable[ClaimSet | Mapping[str, Any] | Evidence]]
"""The async callable that reads a request's claims (or :class:`Evidence`)."""


class _Recording:
    """The request's ``receive``, keeping what ``extract`` read so the app reads it too."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._messages: list[Message] = []

    async def receive(self) -> Message:
        message = await self._receive()
        self._messages.append(message)
        return message

    def replay(self) -> Receive:
        pending = list(self._messages)
        receive = self._receive

        async def replaying() -> Message:
            return pending.pop(0) if pending else await receive()

        return replaying


class DecisionMiddleware:
    """ASGI middleware: each request is decided by the policy; only an allow passes.

    ``extract`` (async) reads the claims from the Starlette request, or returns
    :class:`Evidence` to have evidence verified first; ``await pdp.adecide(...)``
    decides within ``deadline_seconds`` (past it: an ``engine.timeout`` deny). An allow
    passes with ``request.state.decision`` set (the body ``extract`` read is given to the
    app again); a deny, an ``extract`` that raises, or any other fault is a 403 with an
    OPA-style JSON body (``{"code": "forbidden", "message", "decision_id", "errors":
    [{"code", "message"}]}``, the errors being the reasons) and one JSON log line.
    WebSocket connections are refused (closed before accept). ``exclude_paths``
    (exact, or a prefix ending in ``/*``) and ``exclude_methods`` pass unchecked.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        pdp: PolicyDecisionPoint,
        extract: Extract,
        deadline_seconds: float = 0.5,
        exclude_paths: Iterable[str] = (),
        exclude_methods: Iterable[str] = ("OPTIONS",),
    ) -> None:
        if not isinstance(pdp, PolicyDecisionPoint):
            raise TypeError("pdp must be a PolicyDecisionPoint")
        if not callable(extract):
            raise TypeError("extract must be an async callable taking the request")
        if isinstance(deadline_seconds, bool) or not isinstance(deadline_seconds, int | float):
            raise ValueError("deadline_seconds must be a number")
        if not (math.isfinite(deadline_seconds) and deadline_seconds > 0):
            raise ValueError("deadline_seconds must be finite and > 0")
        self.app = app
        self._pdp = pdp
        self._extract = extract
        self._deadline = float(deadline_seconds)
        self._exclusions = Exclusions(exclude_paths, exclude_methods)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan" or (kind in ("http", "websocket") and scope in self._exclusions):
            await self.app(scope, receive, send)
            return
        if kind != "http":
            await self._refuse(scope, send, f"{kind} connections are not decided", None)
            return
        recording = _Recording(receive)
        try:
            decision = await self._decide(Request(scope, recording.receive))
        except Exception as exc:  # extract failed (or a fault): fail closed
            _LOG.info("extract failed: %s: %s", type(exc).__name__, exc)
            await self._refuse(scope, send, f"the request could not be read: {type(exc).__name__}")
            return
        if not decision.allow:
            await self._refuse(scope, send, "denied by policy", decision)
            return
        scope.setdefault("state", {})["decision"] = decision
        await self.app(scope, recording.replay(), send)

    async def _decide(self, request: Request) -> Decision:
        extracted = await self._extract(request)
        if isinstance(extracted, Evidence):
            return await self._pdp.adecide_evidence(
                extracted.document,
                extracted.trust,
                nonce=extracted.nonce,
                nonce_audience=extracted.nonce_audience,
                now=extracted.now,
                deadline=self._deadline,
            )
        return await self._pdp.adecide(extracted, deadline=self._deadline)

    async def _refuse(
        self, scope: Scope, send: Send, message: str, decision: Decision | None = None
    ) -> None:
        reasons = decision.reasons if decision is not None else ()
        codes = [reason.code for reason in reasons]
        text = f"{message}: {', '.join(codes)}" if codes else message
        decision_id = decision.decision_id if decision is not None else None
        log_deny("decision", scope, 403, "forbidden", text, decision_id=decision_id)
        content: dict[str, Any] = {"code": "forbidden", "message": text}
        if decision is not None:
            content["decision_id"] = decision_id
            content["errors"] = [{"code": r.code, "message": r.message} for r in reasons]
        await send_error(scope, send, 403, content)
