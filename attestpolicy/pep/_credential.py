"""CredentialMiddleware: only requests with a valid, unrevoked broker credential get through."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

import jwt
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from attestpolicy.pep._client_cert import check_header_name, presented_certificate
from attestpolicy.pep._common import LOGGER_NAME, Exclusions, log_deny, send_error
from attestpolicy.pep._fetch import Fetcher, check_url
from attestpolicy.pep._jwks import check_algorithms, parse_jwks
from attestpolicy.pep._revocation_list import parse_revocation_list
from attestpolicy.pep._tokens import (
    Rejection,
    TokenVerifier,
    UnknownKey,
    bearer_token,
    check_binding,
)

__all__ = [
    "MAX_JWKS_BYTES",
    "MAX_JWKS_KEYS",
    "MAX_REVOCATION_LIST_BYTES",
    "CredentialMiddleware",
]

_LOG = logging.getLogger(LOGGER_NAME)
_T = TypeVar("_T")

MAX_JWKS_BYTES: Final = 64 * 1024
"""The largest JWKS document read."""
MAX_JWKS_KEYS: Final = 16
"""The most keys a JWKS may have (a larger one is refused whole)."""
MAX_REVOCATION_LIST_BYTES: Final = 16 * 1024 * 1024
"""The largest revocation list read (about 200,000 revoked credentials)."""


def _seconds(name: str, value: float, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds")
    if not (math.isfinite(value) and value > minimum):
        raise ValueError(f"{name} must be finite and > {minimum:g}")
    return float(value)


def _challenge(rejection: Rejection) -> str:
    if rejection.bearer_error is None:
        return "Bearer"
    description = rejection.message.replace("\\", "").replace('"', "'")
    return f'Bearer error="{rejection.bearer_error}", error_description="{description}"'


class CredentialMiddleware:
    """ASGI middleware: a request passes only with a valid broker credential.

    The credential is the ``Authorization: Bearer`` JWT the broker issued: signed by a
    key of the broker's JWKS (``jwks_url``: cached, fetched again for an unknown
    ``kid`` at most every ``jwks_min_refresh_seconds`` and in the background once older
    than ``jwks_max_age_seconds``) with one of ``algorithms`` (asymmetric only), from
    ``issuer``, for ``audience``, within ``exp``/``nbf``/``iat`` give or take
    ``leeway_seconds``, not revoked, and presented with the client certificate it is
    bound to (``cnf``, RFC 8705) when it is bound to one. The certificate is read from
    ``client_cert_header`` (set by a TLS-terminating proxy) when given, else from the
    ASGI TLS extension. The revocation list (``revocations_url``) is polled every
    ``poll_interval_seconds`` in the background, from the app's lifespan startup (or the
    first request) to its shutdown; when it is older than
    ``revocations_max_age_seconds`` every request is refused (503).

    On success ``request.state.attestation`` is the verified claims dict. Otherwise the
    answer is an OPA-style JSON error: 401 ``unauthorized`` (with ``WWW-Authenticate``),
    403 ``forbidden`` (revoked) or 503 ``unavailable``; each refusal is logged as one
    JSON line. ``exclude_paths`` (exact, or a prefix ending in ``/*``) and
    ``exclude_methods`` pass unchecked. docs/pep.md has the whole table.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        issuer: str,
        audience: str,
        jwks_url: str,
        revocations_url: str,
        revocations_max_age_seconds: float = 60,
        poll_interval_seconds: float = 10,
        leeway_seconds: float = 30,
        exclude_paths: Iterable[str] = (),
        exclude_methods: Iterable[str] = ("OPTIONS",),
        algorithms: Iterable[str] = ("ES256", "EdDSA"),
        http_timeout_seconds: float = 2.0,
        jwks_min_refresh_seconds: float = 30,
        jwks_max_age_seconds: float = 300,
        client_cert_header: str | None = None,
        ca_bundle: str | None = None,
        max_token_bytes: int = 16 * 1024,
    ) -> None:
        self.app = app
        self._algorithms = check_algorithms(algorithms)
        self._verifier = TokenVerifier(
            issuer=issuer,
            audience=audience,
            algorithms=self._algorithms,
            leeway_seconds=leeway_seconds,
        )
        self._jwks_url = check_url("jwks_url", jwks_url)
        self._revocations_url = check_url("revocations_url", revocations_url)
        self._poll_interval = _seconds("poll_interval_seconds", poll_interval_seconds)
        self._max_age = _seconds(
            "revocations_max_age_seconds",
            revocations_max_age_seconds,
            minimum=self._poll_interval,
        )
        self._jwks_min_refresh = _seconds("jwks_min_refresh_seconds", jwks_min_refresh_seconds)
        self._jwks_max_age = _seconds("jwks_max_age_seconds", jwks_max_age_seconds)
        self._timeout = _seconds("http_timeout_seconds", http_timeout_seconds)
        if isinstance(max_token_bytes, bool) or not isinstance(max_token_bytes, int):
            raise ValueError("max_token_bytes must be an integer")
        if not 256 <= max_token_bytes <= 1024 * 1024:
            raise ValueError("max_token_bytes must be between 256 and 1048576")
        self._max_token_bytes = max_token_bytes
        self._cert_header = check_header_name(client_cert_header)
        self._exclusions = Exclusions(exclude_paths, exclude_methods)
        self._fetcher = Fetcher(self._timeout, ca_bundle=ca_bundle)
        # What the broker published, as last fetched (monotonic times).
        self._keys: Mapping[str, jwt.PyJWK] = {}
        self._jwks_loaded_at: float | None = None
        self._jwks_tried_at: float | None = None
        self._jwks_failure: str | None = "not fetched yet"
        self._revoked: frozenset[str] | None = None
        self._revocations_loaded_at: float | None = None
        self._etag: str | None = None
        # The background poller, on the loop that started it.
        self._poller: asyncio.Task[None] | None = None
        self._poller_loop: asyncio.AbstractEventLoop | None = None
        self._ready = asyncio.Event()
        self._jwks_lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, self._lifespan(receive), send)
            return
        if kind not in ("http", "websocket"):
            raise RuntimeError(f"CredentialMiddleware cannot check a {kind!r} connection")
        if scope in self._exclusions:
            await self.app(scope, receive, send)
            return
        try:
            claims = await self._admit(scope)
        except Rejection as rejection:
            await self._refuse(scope, send, rejection)
            return
        except Exception:  # fail closed: a fault here never lets a request through
            _LOG.exception("credential check failed")
            await self._refuse(scope, send, Rejection(503, "the credential could not be checked"))
            return
        scope.setdefault("state", {})["attestation"] = claims
        await self.app(scope, receive, send)

    # --- the check ----------------------------------------------------------------

    async def _admit(self, scope: Scope) -> dict[str, Any]:
        await self._start()
        if self._revoked is None or self._revocations_loaded_at is None:
            raise Rejection(503, "the revocation list has not been fetched yet")
        age = time.monotonic() - self._revocations_loaded_at
        if age > self._max_age:
            raise Rejection(503, f"the revocation list is stale ({age:.0f} s since the last fetch)")
        token = bearer_token(scope.get("headers", []), self._max_token_bytes)
        claims = await self._verify(token)
        check_binding(
            claims, presented_certificate(scope, self._cert_header) if "cnf" in claims else None
        )
        if claims["jti"] in self._revoked:
            raise Rejection(403, "the credential has been revoked", claims=claims)
        return claims

    async def _verify(self, token: str) -> dict[str, Any]:
        try:
            return self._verifier.verify(token, self._keys)
        except UnknownKey as unknown:
            await self._refresh_keys_for(unknown.kid)
        try:
            return self._verifier.verify(token, self._keys)
        except UnknownKey:
            if self._jwks_failure is not None:
                raise Rejection(503, "the broker's JWKS cannot be had") from None
            raise Rejection(401, "the token's key (kid) is not in the broker's JWKS") from None

    async def _refuse(self, scope: Scope, send: Send, rejection: Rejection) -> None:
        claims = rejection.claims or {}
        log_deny(
            "credential",
            scope,
            rejection.status,
            rejection.code,
            rejection.message,
            jti=claims.get("jti"),
            sub=claims.get("sub"),
        )
        headers = []
        if rejection.status == 401:
            headers.append(("www-authenticate", _challenge(rejection)))
        elif rejection.status == 503:
            headers.append(("retry-after", str(math.ceil(self._poll_interval))))
        content = {"code": rejection.code, "message": rejection.message}
        await send_error(scope, send, rejection.status, content, headers)

    # --- what the broker publishes ------------------------------------------------------

    async def _off_loop(self, function: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(function, *args))

    def _fetch_jwks(self) -> Mapping[str, jwt.PyJWK]:
        fetched = self._fetcher.get(self._jwks_url, max_bytes=MAX_JWKS_BYTES)
        return parse_jwks(fetched.body, self._algorithms, MAX_JWKS_KEYS)

    def _fetch_revocations(self, etag: str | None) -> tuple[frozenset[str] | None, str | None]:
        fetched = self._fetcher.get(
            self._revocations_url, max_bytes=MAX_REVOCATION_LIST_BYTES, etag=etag
        )
        if fetched.not_modified:
            return None, etag
        return parse_revocation_list(fetched.body), fetched.etag

    async def _refresh_jwks(self) -> None:
        """Fetch the JWKS (the caller holds ``_jwks_lock``); keep the old keys on failure."""
        self._jwks_tried_at = time.monotonic()
        try:
            keys = await self._off_loop(self._fetch_jwks)
        except Exception as exc:
            self._jwks_failure = str(exc)
            _LOG.warning("JWKS not refreshed from %s: %s", self._jwks_url, exc)
            return
        self._keys, self._jwks_failure = keys, None
        self._jwks_loaded_at = time.monotonic()

    async def _refresh_keys_for(self, kid: str) -> None:
        """Fetch the JWKS for an unknown ``kid``, at most every ``jwks_min_refresh_seconds``."""
        async with self._jwks_lock:
            if kid in self._keys:
                return  # another request fetched it meanwhile
            tried = self._jwks_tried_at
            if tried is not None and time.monotonic() - tried < self._jwks_min_refresh:
                return
            await self._refresh_jwks()

    async def _refresh_revocations(self) -> None:
        try:
            revoked, etag = await self._off_loop(self._fetch_revocations, self._etag)
        except Exception as exc:
            _LOG.warning("revocation list not refreshed from %s: %s", self._revocations_url, exc)
            return
        if revoked is not None:
            self._revoked, self._etag = revoked, etag
        self._revocations_loaded_at = time.monotonic()

    async def _refresh_jwks_when_old(self) -> None:
        async with self._jwks_lock:
            loaded = self._jwks_loaded_at
            if loaded is None or time.monotonic() - loaded > self._jwks_max_age:
                await self._refresh_jwks()

    async def _poll(self) -> None:
        while True:
            await asyncio.gather(self._refresh_revocations(), self._refresh_jwks_when_old())
            self._ready.set()
            await asyncio.sleep(self._poll_interval)

    # --- lifecycle ----------------------------------------------------------------------

    async def _start(self) -> None:
        """Start the poller on this loop (once) and wait for its first round, bounded."""
        loop = asyncio.get_running_loop()
        if self._poller is None or self._poller_loop is not loop or self._poller.done():
            self._ready = asyncio.Event()
            self._jwks_lock = asyncio.Lock()
            self._poller_loop = loop
            self._poller = loop.create_task(self._poll(), name="attestpolicy-pep-poller")
        if not self._ready.is_set():
            with contextlib.suppress(TimeoutError):  # the checks then refuse with a 503
                await asyncio.wait_for(self._ready.wait(), 2 * self._timeout + 1)

    async def _stop(self) -> None:
        poller, self._poller = self._poller, None
        if poller is not None and self._poller_loop is asyncio.get_running_loop():
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        self._fetcher.close()

    def _lifespan(self, receive: Receive) -> Receive:
        async def lifespan_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._start()
            elif message["type"] == "lifespan.shutdown":
                await self._stop()
            return message

        return lifespan_receive
