"""What the PEP tests share: keys and tokens made at test time, a broker's publishing
endpoints on 127.0.0.1 (JWKS and revocation list in the contract's wire format), and
Starlette apps behind the middlewares served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import base64
import copy
import http.server
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from serving import BackgroundServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from attestpolicy.pep import CredentialMiddleware

ISSUER = "https://broker.test"
AUDIENCE = "vault"
SPIFFE_ID = "spiffe://prod.example.com/ns/payments/sa/api"
JWKS_PATH = "/.well-known/jwks.json"
REVOCATIONS_PATH = "/v1/revocations"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TestKey:
    """A signing key made at test time, with its public JWK (kid = RFC 7638 thumbprint)."""

    __test__ = False  # not a test class

    def __init__(self, algorithm: str = "ES256") -> None:
        self.algorithm = algorithm
        self.private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
        if algorithm == "ES256":
            self.private = ec.generate_private_key(ec.SECP256R1())
            jwk: dict[str, Any] = jwt.algorithms.ECAlgorithm.to_jwk(
                self.private.public_key(), as_dict=True
            )
            members = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
        else:
            self.private = ed25519.Ed25519PrivateKey.generate()
            jwk = jwt.algorithms.OKPAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
            members = {name: jwk[name] for name in ("crv", "kty", "x")}
        canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
        self.kid = b64url(_sha256(canonical))
        self.jwk: dict[str, str] = {**members, "kid": self.kid, "alg": algorithm, "use": "sig"}

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: Mapping[str, Any], **header: Any) -> str:
        """A compact JWS over ``claims``, header ``{alg, typ: JWT, kid}`` plus ``header``."""
        headers = {"kid": self.kid, **header}
        return jwt.encode(dict(claims), self.private, algorithm=self.algorithm, headers=headers)


def _sha256(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


def credential_claims(
    *,
    now: datetime | None = None,
    lifetime: timedelta = timedelta(minutes=5),
    **changes: Any,
) -> dict[str, Any]:
    """A broker credential's claims in the contract's format (``changes`` override)."""
    issued = int((now or datetime.now(UTC)).timestamp())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": SPIFFE_ID,
        "aud": AUDIENCE,
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(lifetime.total_seconds()),
        "jti": str(uuid.uuid4()),
        "attestation": {
            "policy_revision": "sha256:test",
            "ttl_bound_by": "default",
            "evidence": {
                "image_digest": "sha256:" + "ab" * 32,
                "signers": [{"issuer": None, "subject": None, "key_id": "k1"}],
                "builder_id": None,
                "source_repo": None,
                "node": {"kind": "tpm", "id": "node-1"},
            },
        },
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def client_certificate() -> bytes:
    """A self-signed X.509-SVID-like certificate made now, DER."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(SPIFFE_ID)]),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


# --- the broker's publishing endpoints ---------------------------------------------------


class Publisher(http.server.ThreadingHTTPServer):
    """``GET /.well-known/jwks.json`` and ``GET /v1/revocations`` (with ETag and 304) on
    127.0.0.1, serving whatever the test sets; counts the requests of each path."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _PublisherHandler)
        self.jwks: Any = {"keys": []}
        self.revoked: list[dict[str, Any]] = []
        # (body, ETag) of the revocation list, when something else (a registry) makes it
        self.revocation_source: Callable[[], tuple[bytes, str]] | None = None
        self.status: dict[str, int] = {}  # path -> status to answer instead
        self.delay: dict[str, float] = {}  # path -> seconds to wait before answering
        self.hits: dict[str, int] = {JWKS_PATH: 0, REVOCATIONS_PATH: 0}
        self.not_modified = 0
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def revocation_list(self) -> tuple[bytes, str]:
        """The list's body and strong ETag, as the broker's endpoint gives them."""
        if self.revocation_source is not None:
            return self.revocation_source()
        entries = sorted(self.revoked, key=lambda entry: str(entry["jti"]))
        document = {"revoked": entries, "generated_at": int(time.time())}
        etag = '"' + _sha256(json.dumps(entries).encode()).hex()[:32] + '"'
        return json.dumps(document).encode(), etag

    def revoke(self, jti: str, exp: int) -> None:
        self.revoked = [*self.revoked, {"jti": jti, "exp": exp}]

    def start(self) -> Publisher:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering: the port is closed (connections are refused)."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.server_close()


class _PublisherHandler(http.server.BaseHTTPRequestHandler):
    server: Publisher
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path
        publisher = self.server
        if path in publisher.hits:
            publisher.hits[path] += 1
        time.sleep(publisher.delay.get(path, 0.0))
        status = publisher.status.get(path)
        if status is not None:
            self._answer(status, b'{"code":"internal_error","message":"down"}')
        elif path == JWKS_PATH:
            jwks = publisher.jwks
            self._answer(200, jwks if isinstance(jwks, bytes) else json.dumps(jwks).encode())
        elif path == REVOCATIONS_PATH:
            body, etag = publisher.revocation_list()
            if self.headers.get("If-None-Match") == etag:
                publisher.not_modified += 1
                self._answer(304, b"", etag)
            else:
                self._answer(200, body, etag)
        else:
            self._answer(404, b'{"code":"not_found","message":"no such path"}')

    def _answer(self, status: int, body: bytes, etag: str | None = None) -> None:
        self.send_response(status)
        if etag is not None:
            self.send_header("ETag", etag)
        if status != 304:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 304:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@contextmanager
def publishing(*keys: TestKey) -> Iterator[Publisher]:
    """A :class:`Publisher` serving ``keys`` in its JWKS, stopped on exit."""
    publisher = Publisher()
    publisher.jwks = {"keys": [key.jwk for key in keys]}
    publisher.start()
    try:
        yield publisher
    finally:
        publisher.stop()


# --- the protected service ----------------------------------------------------------------


async def _whoami(request: Request) -> JSONResponse:
    return JSONResponse({"attestation": request.state.attestation})


async def _open(request: Request) -> JSONResponse:
    return JSONResponse({"open": True, "attestation": hasattr(request.state, "attestation")})


def plain_app() -> Starlette:
    """The service without protection: ``/whoami`` answers ``request.state.attestation``,
    ``/health`` and ``/public/...`` answer whether there was one."""
    return Starlette(
        routes=[
            Route("/whoami", _whoami, methods=["GET", "POST"]),
            Route("/health", _open),
            Route("/public/{rest:path}", _open),
        ]
    )


def service(**options: Any) -> Starlette:
    """:func:`plain_app` behind :class:`CredentialMiddleware` (``options`` configure it)."""
    app = plain_app()
    app.add_middleware(CredentialMiddleware, **options)
    return app


def pem(der: bytes) -> str:
    """The PEM text of a DER certificate."""
    certificate = x509.load_der_x509_certificate(der)
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def middleware_options(publisher: Publisher, **changes: Any) -> dict[str, Any]:
    """The middleware's settings against ``publisher``: quick polls for the tests."""
    options: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_url": publisher.url + JWKS_PATH,
        "revocations_url": publisher.url + REVOCATIONS_PATH,
        "poll_interval_seconds": 0.1,
        "revocations_max_age_seconds": 30,
        "exclude_paths": ("/health", "/public/*"),
        "http_timeout_seconds": 2.0,
    }
    options.update(changes)
    return options


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """``app`` served by uvicorn on 127.0.0.1 (lifespan on); yields its URL."""
    with BackgroundServer(app) as server:
        yield server.url


def get(url: str, token: str | None = None, **headers: str) -> requests.Response:
    """GET ``url`` with ``Authorization: Bearer <token>`` when a token is given."""
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.get(url, headers=headers, timeout=10)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` every 20 ms until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.02)


def unsigned(claims: Mapping[str, Any], header: Mapping[str, Any]) -> str:
    """``header.claims.`` with an empty signature (what ``alg: none`` looks like)."""
    encoded = [
        b64url(json.dumps(part, separators=(",", ":")).encode())
        for part in (dict(header), dict(claims))
    ]
    return ".".join(encoded) + "."


def modified(claims: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``claims`` with ``changes``."""
    result = copy.deepcopy(dict(claims))
    result.update(changes)
    return result
