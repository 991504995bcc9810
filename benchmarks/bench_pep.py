"""Issue 11: the PEP's costs: token verification in CredentialMiddleware, and adecide.

- a request through ``CredentialMiddleware`` around a minimal ASGI app, called in-process
  (no HTTP): p50 and p99, beside the bare app, so the difference is the middleware's cost;
- the verification step alone (header, key, signature and claims: ``TokenVerifier``)
  and pyjwt's own ``decode`` of the same token with the same key;
- ``await pdp.adecide()`` against ``pdp.decide()`` on a cache hit and on a miss, and the
  hit when it is sent to the executor like a miss (the thread hop the hit path saves),
  timed interleaved (one of each per round).

The JWKS and revocation list are served on 127.0.0.1 by a stdlib server (the middleware
fetches them once, then polls in the background); the keys are made at start.
Run from the repository root: ``.venv/bin/python benchmarks/bench_pep.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import jwt  # noqa: E402
from goals import median_us  # noqa: E402  (after the path set-up)
from starlette.types import Message, Receive, Scope, Send  # noqa: E402

from attestpolicy import PolicyDecisionPoint  # noqa: E402
from attestpolicy.broker import KeySet, SigningKey  # noqa: E402
from attestpolicy.pep import CredentialMiddleware  # noqa: E402
from attestpolicy.pep._jwks import check_algorithms, parse_jwks  # noqa: E402
from attestpolicy.pep._tokens import TokenVerifier  # noqa: E402

EXAMPLES = ROOT / "attestpolicy" / "examples"
ISSUER = "https://broker.bench"
AUDIENCE = "vault"


@dataclass(frozen=True)
class Row:
    """One operation: median (and p99 where each call was timed) in microseconds."""

    name: str
    p50_us: float
    p99_us: float | None
    samples: int


def _credential(key: SigningKey) -> tuple[str, dict[str, Any]]:
    """A token in the broker's format (ES256, the attestation claim), valid for 1 h."""
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "spiffe://prod.example.com/ns/payments/sa/api",
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "jti": str(uuid.uuid4()),
        "attestation": {
            "policy_revision": "sha256:bench",
            "ttl_bound_by": "default",
            "evidence": {
                "image_digest": "sha256:" + "ab" * 32,
                "signers": [{"issuer": "https://token.actions.githubusercontent.com"}],
                "builder_id": None,
                "source_repo": None,
                "node": {"kind": "tpm", "id": "node-1"},
            },
        },
    }
    return key.sign(claims), claims


class _Publisher(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, jwks: dict[str, Any], revoked: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        entries = [{"jti": str(uuid.uuid4()), "exp": 2_000_000_000} for _ in range(revoked)]
        self.documents = {
            "/.well-known/jwks.json": json.dumps(jwks).encode(),
            "/v1/revocations": json.dumps(
                {"revoked": sorted(entries, key=lambda e: e["jti"]), "generated_at": 1}
            ).encode(),
        }


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Publisher
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = self.server.documents.get(self.path, b"{}")
        etag = '"' + str(hash(body)) + '"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


async def _bare_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _timed_requests(
    app: Callable[[Scope, Receive, Send], Awaitable[None]], token: str, samples: int
) -> list[float]:
    """Each request's time in microseconds (after a warm-up); every answer must be 200."""
    headers = [(b"authorization", f"Bearer {token}".encode()), (b"host", b"bench")]
    statuses: list[int] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    timings = []
    for index in range(samples + samples // 10 + 5):
        scope: Scope = {
            "type": "http",
            "method": "GET",
            "path": "/payments",
            "headers": headers,
            "client": ("127.0.0.1", 1),
        }
        start = time.perf_counter_ns()
        await app(scope, receive, send)
        if index > samples // 10 + 4:
            timings.append((time.perf_counter_ns() - start) / 1000)
    if set(statuses) != {200}:
        raise RuntimeError(f"a benchmark request was refused: {sorted(set(statuses))}")
    return timings


def _p50_p99(name: str, timings: list[float]) -> Row:
    p99 = statistics.quantiles(timings, n=100)[98]
    return Row(name, statistics.median(timings), p99, len(timings))


def middleware_rows(samples: int, revoked: int) -> list[Row]:
    """A request through CredentialMiddleware, the bare app, and the verification alone."""
    key = SigningKey.generate("ES256")
    keys = KeySet(key, retired=[SigningKey.generate("EdDSA")])
    token, _ = _credential(key)
    publisher = _Publisher(keys.jwks(), revoked)
    thread = threading.Thread(target=publisher.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{publisher.server_address[1]}"
    protected = CredentialMiddleware(
        _bare_app,
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_url=f"{url}/.well-known/jwks.json",
        revocations_url=f"{url}/v1/revocations",
    )

    async def measure() -> tuple[list[float], list[float]]:
        through = await _timed_requests(protected, token, samples)
        bare = await _timed_requests(_bare_app, token, samples)
        return through, bare

    try:
        through, bare = asyncio.run(measure())
    finally:
        publisher.shutdown()
        publisher.server_close()
    algorithms = check_algorithms(("ES256", "EdDSA"))
    jwks = parse_jwks(json.dumps(keys.jwks()).encode(), algorithms, 16)
    verifier = TokenVerifier(
        issuer=ISSUER, audience=AUDIENCE, algorithms=algorithms, leeway_seconds=30
    )
    pyjwk = jwks[key.kid]

    def pyjwt_decode() -> object:
        return jwt.decode(token, pyjwk, algorithms=["ES256"], audience=AUDIENCE, issuer=ISSUER)

    return [
        _p50_p99(f"request through CredentialMiddleware ({revoked} revoked)", through),
        _p50_p99("request to the bare app", bare),
        Row(
            "verification step alone (TokenVerifier)",
            median_us(lambda: verifier.verify(token, jwks), samples),
            None,
            samples,
        ),
        Row("pyjwt decode alone (same key)", median_us(pyjwt_decode, samples), None, samples),
    ]


async def _interleaved(
    operations: dict[str, Callable[[], Awaitable[object]]], samples: int
) -> list[Row]:
    """Median of each operation, timed one of each per round (a noisy neighbour slows all
    alike), after a short warm-up."""
    timings: dict[str, list[int]] = {name: [] for name in operations}
    for round_index in range(samples + samples // 10 + 5):
        for name, operation in operations.items():
            start = time.perf_counter_ns()
            await operation()
            if round_index >= samples // 10 + 5:
                timings[name].append(time.perf_counter_ns() - start)
    return [Row(name, statistics.median(t) / 1000, None, len(t)) for name, t in timings.items()]


def decide_rows(samples: int) -> list[Row]:
    """adecide against decide, on a hit and on a miss (cache off), in one event loop."""
    config = json.loads((EXAMPLES / "config.json").read_text())
    claims = json.loads((EXAMPLES / "claims" / "allow-fully-attested.json").read_text())
    with (
        PolicyDecisionPoint.local(config=config) as cached,
        PolicyDecisionPoint.local(config=config, cache=False) as uncached,
        PolicyDecisionPoint.local(config=config) as hopping,
    ):
        hopping._hits_on_loop = False  # every call through the executor, as a store makes it

        async def decide_hit() -> object:
            return cached.decide(claims)

        async def decide_miss() -> object:
            return uncached.decide(claims)

        async def measure() -> list[Row]:
            hits = await _interleaved(
                {
                    "decide() hit": decide_hit,
                    "await adecide() hit (on the loop)": lambda: cached.adecide(claims),
                },
                samples,
            )
            # Alone: the worker thread, still running after it answered, would slow the
            # operation timed next.
            hits += await _interleaved(
                {"await adecide() hit sent to the executor": lambda: hopping.adecide(claims)},
                samples,
            )
            misses = await _interleaved(
                {
                    "decide() miss (cache off)": decide_miss,
                    "await adecide() miss (cache off)": lambda: uncached.adecide(claims),
                },
                max(50, samples // 20),
            )
            return hits + misses

        return asyncio.run(measure())


def main(quick: bool) -> None:
    """Print the table: p50 (and p99 where each request was timed) in microseconds."""
    samples = 500 if quick else 5000
    rows = [*middleware_rows(samples, revoked=1000), *decide_rows(samples)]
    print(f"{'operation':58} {'p50':>10} {'p99':>10} {'samples':>8}")
    for row in rows:
        p99 = f"{row.p99_us:7.1f} us" if row.p99_us is not None else f"{'-':>10}"
        print(f"{row.name:58} {row.p50_us:7.1f} us {p99} {row.samples:8}")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
