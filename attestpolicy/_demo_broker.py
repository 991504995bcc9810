"""``attestpolicy demo --broker``: evidence to credential to service to revocation, live.

Over real HTTP on 127.0.0.1, in this process: ``serve``'s application with the credential
broker (a signing key, registry and revocation store made for the run in a temporary
directory) and a Starlette service behind :class:`~attestpolicy.pep.CredentialMiddleware`.
The evidence is made fresh (:mod:`attestpolicy._demo_evidence`). The service reads the
client certificate from a header, as behind a TLS-terminating proxy, since the credential
is bound to the workload's X.509-SVID.
"""

from __future__ import annotations

import contextlib
import io
import json
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TextIO
from urllib.parse import quote

import urllib3
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from attestpolicy._background_server import BackgroundServer
from attestpolicy._demo_evidence import FreshEvidence, fresh_evidence
from attestpolicy._server_broker import BrokerSettings
from attestpolicy.broker import SigningKey
from attestpolicy.pep import CredentialMiddleware
from attestpolicy.server import create_app, load_evaluator

__all__ = ["run_broker_demo", "write_fresh_evidence"]

ISSUER: Final = "https://broker.demo.example"
_CLIENT_CERT_HEADER: Final = "x-client-cert"
_WAIT_SECONDS: Final = 10.0


def write_fresh_evidence(directory: Path, fresh: FreshEvidence | None = None) -> list[Path]:
    """Write ``evidence.json``, ``trust.json`` and ``config.json`` made fresh now (valid
    for an hour) into ``directory``; return their paths."""
    fresh = fresh or fresh_evidence()
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in (
        ("evidence", fresh.document),
        ("trust", fresh.trust),
        ("config", fresh.config),
    ):
        path = directory / f"{name}.json"
        path.write_text(json.dumps(document, indent=2) + "\n")
        written.append(path)
    return written


async def _orders(request: Request) -> JSONResponse:
    attestation = request.state.attestation
    return JSONResponse({"orders": [], "caller": attestation["sub"]})


class _Demo:
    def __init__(self, stream: TextIO, directory: Path) -> None:
        self.stream = stream
        self.directory = directory
        self.http = urllib3.PoolManager(timeout=urllib3.Timeout(total=30), retries=False)
        self.fresh = fresh_evidence()
        self.ok = True

    def say(self, step: str, text: str) -> None:
        print(f"{step:>2}. {text}", file=self.stream)

    def check(self, condition: bool, failure: str) -> None:
        if not condition:
            self.ok = False
            print(f"    UNEXPECTED: {failure}", file=self.stream)

    def request(self, method: str, url: str, **options: Any) -> tuple[int, Any]:
        answer = self.http.request(method, url, **options)
        return answer.status, json.loads(answer.data) if answer.data else None

    def files(self) -> dict[str, Path]:
        evidence, trust, config = write_fresh_evidence(self.directory, self.fresh)
        key = self.directory / "broker-key.pem"
        SigningKey.generate().save(key)
        admin = self.directory / "admin-token"
        admin.write_text(secrets.token_hex(24))
        admin.chmod(0o600)
        return {
            "evidence": evidence,
            "trust": trust,
            "config": config,
            "key": key,
            "admin": admin,
            "credentials": self.directory / "credentials.db",
            "revocations": self.directory / "revocations.db",
        }

    def run(self) -> None:
        files = self.files()
        settings = BrokerSettings(
            signing_key=str(files["key"]),
            issuer=ISSUER,
            credentials=str(files["credentials"]),
            trust=str(files["trust"]),
            admin_token_file=str(files["admin"]),
        )
        evaluator = load_evaluator(
            config_path=files["config"], revocations_path=files["revocations"]
        )
        with BackgroundServer(create_app(evaluator, broker=settings)) as broker:
            service = Starlette(
                routes=[Route("/orders", _orders)],
                middleware=[
                    Middleware(
                        CredentialMiddleware,
                        issuer=ISSUER,
                        audience=self.fresh.audience,
                        jwks_url=f"{broker.url}/.well-known/jwks.json",
                        revocations_url=f"{broker.url}/v1/revocations",
                        poll_interval_seconds=0.2,
                        client_cert_header=_CLIENT_CERT_HEADER,
                    )
                ],
            )
            with BackgroundServer(service) as server:
                self.flow(broker.url, f"{server.url}/orders", files)

    def flow(self, broker: str, service: str, files: dict[str, Path]) -> None:
        fresh = self.fresh
        self.say("1", f"broker at {broker}, service at {service}; workload {fresh.spiffe_id}")
        token = self.issue(broker)
        if token is None:
            return
        headers = {"Authorization": f"Bearer {token}", _CLIENT_CERT_HEADER: self.svid_header()}
        status, body = self.request("GET", service, headers=headers)
        self.say("4", f"service GET /orders with the credential: {status} {json.dumps(body)}")
        self.check(status == 200, "the service refused a valid credential")

        status, _ = self.request("GET", service, headers={"Authorization": f"Bearer {token}"})
        self.say("5", f"the same credential without the workload's certificate: {status}")
        self.check(status == 401, "a bound credential was accepted without its certificate")

        printed = self.revoke(files)
        jtis = [credential["jti"] for credential in printed.get("credentials", [])]
        self.say(
            "6",
            f"attestpolicy revoke --key-id {fresh.signer_key_id[:19]}...: "
            f"{len(jtis)} live credential(s) to chase: {', '.join(jtis)}",
        )
        self.check(len(jtis) == 1, "revoke did not name exactly the issued credential")

        status, body = self.until(
            lambda: self.request("GET", service, headers=headers), lambda s: s != 200
        )
        self.say(
            "7", f"service GET /orders with the revoked credential: {status} {json.dumps(body)}"
        )
        self.check(status == 403, "the service still accepts a revoked credential")

        status, body = self.credential(broker)
        codes = [error["code"] for error in (body or {}).get("errors", [])]
        self.say("8", f"a new issuance for the same evidence: {status} {', '.join(codes)}")
        self.check(
            status == 403 and "image.untrusted_signer" in codes,
            "a credential was issued after its signing key was revoked",
        )

    def credential(self, broker: str) -> tuple[int, Any]:
        _, nonce = self.request("GET", f"{broker}/v1/nonce")
        return self.request(
            "POST",
            f"{broker}/v1/credentials",
            json={"evidence": self.fresh.document, "nonce": nonce["nonce"]},
        )

    def issue(self, broker: str) -> str | None:
        status, body = self.credential(broker)
        decision = body["decision"]
        verdict = "ALLOW" if decision["allow"] else "DENY"
        self.say(
            "2",
            f"evidence verified and decided: {verdict}, ttl {decision['ttl_seconds']} s "
            f"(bound by {decision['ttl_bound_by']}), reasons: "
            f"{', '.join(r['code'] for r in decision['reasons']) or '-'}",
        )
        self.check(status == 200, f"no credential: {json.dumps(body)}")
        if status != 200:
            return None
        self.say("3", f"credential {body['jti']} issued, expires {body['expires_at']}")
        token: str = body["token"]
        return token

    def svid_header(self) -> str:
        der = self.fresh.svid_certificate
        assert der is not None  # the default fresh evidence carries an X.509-SVID
        pem = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()
        return quote(pem)

    def revoke(self, files: dict[str, Path]) -> dict[str, Any]:
        from attestpolicy.cli import main

        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            main(
                [
                    "revoke",
                    "--store",
                    str(files["revocations"]),
                    "--credentials",
                    str(files["credentials"]),
                    "--key-id",
                    self.fresh.signer_key_id,
                    "--reason",
                    "demo: signing key compromised",
                ]
            )
        printed: dict[str, Any] = json.loads(output.getvalue() or "{}")
        return printed

    @staticmethod
    def until(call: Callable[[], tuple[int, Any]], done: Callable[[int], bool]) -> tuple[int, Any]:
        """``call()`` until ``done(status)`` or the wait is over (the service polls)."""
        deadline = time.monotonic() + _WAIT_SECONDS
        while True:
            status, body = call()
            if done(status) or time.monotonic() > deadline:
                return status, body
            time.sleep(0.1)


def run_broker_demo(stream: TextIO) -> int:
    """Run the flow, printing each step; 0 when every step did what it should, else 1."""
    with tempfile.TemporaryDirectory(prefix="attestpolicy-demo-") as directory:
        demo = _Demo(stream, Path(directory))
        demo.run()
    print("every step as expected" if demo.ok else "FAILED: see UNEXPECTED above", file=stream)
    return 0 if demo.ok else 1
