"""The credential broker's routes of ``serve`` (enabled by ``--signing-key``).

- ``GET /v1/nonce``: a single-use nonce with a short lifetime, for a fresh quote.
- ``POST /v1/credentials``: ``{"evidence": {...}, "nonce": "..."}`` in; a credential
  (``200 {"token", "token_type", "jti", "expires_at", "decision"}``) or OPA's error
  document with the deny's reasons (``403 {"code": "forbidden", "message", "errors",
  "decision"}``) out.
- ``POST /v1/ear``: the same decision as a signed EAR attestation result (also for a deny:
  its status says so).
- ``GET /.well-known/jwks.json``: the public keys credentials are verified with.
- ``GET /v1/revocations``: the revoked, unexpired credentials (``ETag``, ``If-None-Match``).
- ``POST /v1/revocations``: revoke values (and the credentials resting on them), with the
  admin bearer token; without a configured token the route answers 404.

Every worker opens the same registry (SQLite) and signing key; the trust configuration is
the server's own (a client never chooses what it is verified against).
"""

from __future__ import annotations

import hmac
import importlib
import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from attestpolicy._server_api import (
    Answer,
    ApiError,
    Route,
    Scope,
    decode_json,
    header,
    json_answer,
)
from attestpolicy._server_limits import ServerSettingsError
from attestpolicy.broker import (
    BrokerError,
    CredentialBroker,
    CredentialRegistry,
    IssuedCredential,
    KeySet,
    SigningKey,
)
from attestpolicy.decision import Decision
from attestpolicy.engine._inprocess import InProcessEvaluator
from attestpolicy.engine.cache import DecisionCache
from attestpolicy.errors import AttestPolicyError
from attestpolicy.pdp import PolicyDecisionPoint

if TYPE_CHECKING:
    from attestpolicy.metrics import Metrics

__all__ = ["ADMIN_TOKEN_ENV", "BrokerRoutes", "BrokerSettings"]

ADMIN_TOKEN_ENV: Final = "ATTESTPOLICY_ADMIN_TOKEN"  # noqa: S105  (a variable name)
"""Environment variable holding the admin bearer token of ``POST /v1/revocations``."""

_MAX_ADMIN_TOKEN_BYTES: Final = 4096
_PRUNE_INTERVAL_SECONDS: Final = 60.0
_NO_STORE: Final = (b"cache-control", b"no-store")
_REVOKE_FIELDS: Final = {
    "signer": "signer_subject",
    "key_id": "key_id",
    "image_digest": "image_digest",
    "node_id": "node_id",
    "spiffe_id": "spiffe_id",
}


@dataclass(frozen=True, kw_only=True)
class BrokerSettings:
    """What ``serve`` needs to issue credentials (every worker reads the same files)."""

    signing_key: str
    """PEM private key file (no group/other permissions)."""
    issuer: str
    """The ``iss`` of every credential and EAR."""
    credentials: str
    """The issued-credential registry (SQLite), shared by all workers."""
    trust: str
    """The trust configuration evidence is verified against."""
    admin_token_file: str | None = None
    """File holding the admin token; else :data:`ADMIN_TOKEN_ENV`; else no admin route."""
    nonce_lifetime_seconds: float = 60.0

    def __post_init__(self) -> None:
        for name in ("signing_key", "issuer", "credentials", "trust"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ServerSettingsError(f"broker setting {name} must be a non-empty string")
        lifetime = self.nonce_lifetime_seconds
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float):
            raise ServerSettingsError("nonce_lifetime_seconds must be a number")
        if not 1 <= lifetime <= 3600:
            raise ServerSettingsError("nonce_lifetime_seconds must be between 1 and 3600")

    def to_json(self) -> str:
        """The settings as JSON (how ``run_server`` hands them to its workers)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BrokerSettings:
        """The settings :meth:`to_json` wrote; ServerSettingsError if they are not that."""
        try:
            values = json.loads(text)
            return cls(**values)
        except (ValueError, TypeError) as exc:
            raise ServerSettingsError(f"unusable broker settings: {exc}") from None

    def admin_token(self) -> str | None:
        """The admin token (file first, then the environment), or None: route disabled."""
        if self.admin_token_file is not None:
            path = Path(self.admin_token_file)
            try:
                raw = path.read_bytes()[: _MAX_ADMIN_TOKEN_BYTES + 1]
            except OSError as exc:
                raise ServerSettingsError(
                    f"cannot read admin token file {path}: {exc.strerror or exc}"
                ) from None
            if path.stat().st_mode & 0o077:
                raise ServerSettingsError(
                    f"admin token file {path} is readable by group or others "
                    f"(mode {path.stat().st_mode & 0o777:o}): chmod 600 it"
                )
            token = raw.decode("utf-8", "replace").strip()
        else:
            token = os.environ.get(ADMIN_TOKEN_ENV, "").strip()
        if not token:
            if self.admin_token_file is not None:
                raise ServerSettingsError(f"admin token file {self.admin_token_file} is empty")
            return None
        if len(token) < 16 or len(token) > _MAX_ADMIN_TOKEN_BYTES:
            raise ServerSettingsError(
                f"the admin token must be 16 to {_MAX_ADMIN_TOKEN_BYTES} characters"
            )
        return token


def _object(raw: bytes, what: str) -> dict[str, Any]:
    document = decode_json(raw, "body") if raw.strip() else None
    if not isinstance(document, dict):
        raise ApiError(400, f"body must be a JSON object with {what}")
    return document


def _decision_denied(decision: Decision, status: int = 403) -> Answer:
    codes = ", ".join(decision.reason_codes) or "deny"
    return json_answer(
        {
            "code": "forbidden",
            "message": f"credential denied: {codes}",
            "errors": [{"code": r.code, "message": r.message} for r in decision.reasons],
            "decision": decision.to_json_dict(),
        },
        status,
    )


class BrokerRoutes:
    """The broker's routes for one worker: its broker, registry, trust and admin token."""

    def __init__(
        self,
        settings: BrokerSettings,
        evaluator: InProcessEvaluator,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        # The evidence stack loads now, not within the first request's eval_timeout.
        importlib.import_module("attestpolicy.evidence.verify")
        from attestpolicy.evidence.document import load_trust_config

        self.settings = settings
        self._admin_token = settings.admin_token()
        try:
            self._trust = load_trust_config(settings.trust)
            key = SigningKey.load(settings.signing_key)
            self.registry = CredentialRegistry(settings.credentials)
        except AttestPolicyError as exc:
            raise ServerSettingsError(str(exc)) from None
        self.pdp = PolicyDecisionPoint(evaluator, cache=DecisionCache())
        self._next_prune = 0.0
        self._metrics = metrics
        self.broker = CredentialBroker(
            self.pdp, KeySet(key), settings.issuer, self.registry, metrics=metrics
        )

    def routes(self) -> dict[str, Route]:
        """Path -> route."""
        return {
            "/v1/nonce": Route(("GET",), self._nonce),
            "/v1/credentials": Route(("POST",), self._credentials),
            "/v1/ear": Route(("POST",), self._ear),
            "/.well-known/jwks.json": Route(("GET", "HEAD"), self._jwks),
            "/v1/revocations": Route(("GET", "HEAD", "POST"), self._revocations),
        }

    def close(self) -> None:
        """Close the broker (and with it the registry)."""
        self.broker.close()

    # --- handlers (on a lane thread) --------------------------------------------

    def _prune_now_and_then(self) -> None:
        """Expired credentials and spent nonces leave the registry, at most once a minute."""
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + _PRUNE_INTERVAL_SECONDS
            self.registry.prune()

    def _nonce(self, scope: Scope, raw: bytes) -> Answer:
        self._prune_now_and_then()
        nonce = self.registry.issue_nonce(lifetime_seconds=self.settings.nonce_lifetime_seconds)
        body = json_answer({"nonce": nonce.value, "expires_at": nonce.expires_at.isoformat()}).body
        return Answer(200, body, (_NO_STORE,))

    def _evidence_request(self, raw: bytes) -> tuple[Any, bytes | None, Decision | None]:
        """The evidence and the nonce's bytes, or a deny when the nonce is not usable."""
        document = _object(raw, '"evidence" (and "nonce")')
        evidence = document.get("evidence")
        if not isinstance(evidence, dict):
            raise ApiError(400, 'body needs "evidence": the evidence document (an object)')
        nonce = document.get("nonce")
        if nonce is None:
            return evidence, None, None
        if not isinstance(nonce, str):
            raise ApiError(400, '"nonce" must be the string GET /v1/nonce returned')
        try:
            return evidence, self.registry.consume_nonce(nonce), None
        except BrokerError as exc:
            return (
                evidence,
                None,
                Decision.deny(exc.code, str(exc), policy_revision=self.pdp.revision),
            )

    def _credentials(self, scope: Scope, raw: bytes) -> Answer:
        self._prune_now_and_then()
        evidence, nonce, refused = self._evidence_request(raw)
        if refused is not None:
            return _decision_denied(refused)
        credential = self.broker.issue(evidence, self._trust, nonce=nonce)
        if credential.token is None or credential.expires_at is None:
            return _decision_denied(credential.decision)
        content = {
            "token": credential.token,
            "token_type": "Bearer",
            "jti": credential.jti,
            "expires_at": credential.expires_at.isoformat(),
            "decision": credential.decision.to_json_dict(),
        }
        return Answer(200, json_answer(content).body, (_NO_STORE,))

    def _ear(self, scope: Scope, raw: bytes) -> Answer:
        evidence, nonce, refused = self._evidence_request(raw)
        if refused is not None:
            return _decision_denied(refused)
        result = self.broker.ear(evidence, self._trust, nonce=nonce)
        content = {"ear": result.token, "decision": result.decision.to_json_dict()}
        return Answer(200, json_answer(content).body, (_NO_STORE,))

    def _jwks(self, scope: Scope, raw: bytes) -> Answer:
        return Answer(
            200, json_answer(self.broker.jwks()).body, ((b"cache-control", b"max-age=60"),)
        )

    def _revocations(self, scope: Scope, raw: bytes) -> Answer:
        if scope["method"] == "POST":
            return self._revoke(scope, raw)
        listed = self.registry.revoked()
        # Weak: the list is the same, but each answer carries its own generated_at.
        etag = f'W/"{listed.etag}"'.encode("ascii")
        headers = ((b"etag", etag), (b"cache-control", b"no-cache"))
        if etag in (header(scope, b"if-none-match") or "").encode("latin-1").split(b", "):
            return Answer(304, b"", headers)
        return Answer(200, json_answer(listed.to_json_dict()).body, headers)

    def _revoke(self, scope: Scope, raw: bytes) -> Answer:
        if self._admin_token is None:
            raise ApiError(404, "no such route: POST /v1/revocations (no admin token configured)")
        given = header(scope, b"authorization") or ""
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode("utf-8", "replace"), self._admin_token.encode()
        ):
            return Answer(
                401,
                json_answer(
                    {"code": "unauthorized", "message": "the admin bearer token is required"}
                ).body,
                ((b"www-authenticate", b'Bearer realm="attestpolicy"'),),
            )
        document = _object(raw, "the values to revoke")
        values = _revocation_values(document)
        reason = document.get("reason", "revoked with POST /v1/revocations")
        if not isinstance(reason, str):
            raise ApiError(400, '"reason" must be a string')
        jtis = _strings(document, "jti")
        dropped, revoked = 0, list[IssuedCredential]()
        try:
            for keyword, value in values:
                outcome = self.broker.revoke(reason=reason, **{keyword: value})
                dropped += outcome.cache_entries_dropped
                revoked.extend(outcome.credentials)
            if jtis:
                by_jti = self.registry.revoke_jti(jtis, reason=reason)
                if self._metrics is not None:
                    self._metrics.credentials_revoked(len(by_jti))
                revoked.extend(by_jti)
        except (AttestPolicyError, TypeError, ValueError) as exc:
            raise ApiError(400, str(exc)) from None
        content = {
            "revoked": len(values) + len(jtis),
            "cache_entries_dropped": dropped,
            "credentials": [
                {
                    "jti": c.jti,
                    "subject": c.subject,
                    "audience": c.audience,
                    "exp": math.ceil(c.expires_at.timestamp()),  # as the revocation list
                }
                for c in sorted({c.jti: c for c in revoked}.values(), key=lambda c: c.jti)
            ],
        }
        return json_answer(content)


def _strings(document: Mapping[str, Any], name: str) -> list[str]:
    value = document.get(name, [])
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise ApiError(400, f'"{name}" must be a non-empty string or a list of them')
    return list(values)


def _revocation_values(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(revoke() keyword, value)`` for each value named in the body."""
    unknown = set(document) - {*_REVOKE_FIELDS, "jti", "reason"}
    if unknown:
        raise ApiError(
            400,
            f"unknown field(s) {', '.join(sorted(unknown))}: name values with "
            f"{', '.join(sorted(_REVOKE_FIELDS))} or jti",
        )
    values = [
        (keyword, value)
        for name, keyword in _REVOKE_FIELDS.items()
        for value in _strings(document, name)
    ]
    if not values and not document.get("jti"):
        raise ApiError(400, f"name at least one value: {', '.join(sorted(_REVOKE_FIELDS))}, jti")
    return values
