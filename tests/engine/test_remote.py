"""RemoteEvaluator over real loopback HTTP: against ``serve`` and against scripted servers."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import gzip
import ipaddress
import json
import math
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from serving import BackgroundServer

from attestpolicy.decision import Decision
from attestpolicy.engine.local import LocalEvaluator
from attestpolicy.engine.remote import (
    DEFAULT_MAX_RESPONSE_BYTES,
    RemoteConfigError,
    RemoteEvaluator,
)
from attestpolicy.errors import EvaluatorError
from attestpolicy.policy import PolicySource
from attestpolicy.server import create_app

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
# A well-formed allow, as a server would send it (decision.rego's shape before ttl_terms).
ALLOW: dict[str, Any] = {
    "allow": True,
    "ttl_seconds": 60,
    "reasons": [],
    "ttl_bound_by": "default",
    "valid_until": None,
}
DECISION_URL_PATH = "/v1/data/attestpolicy/v1/decision"

# A small policy whose decision depends on input.mode: an allow, a deny, a value that is
# not a decision, a regorus type error (startswith on a number) and, for any other mode,
# no decision at all.
TEST_POLICY = """\
package attestpolicy.v1

default ttl := 300

ttl := data.attestpolicy.config.limits.default_ttl_seconds

decision := {
    "allow": true,
    "ttl_seconds": ttl,
    "reasons": [],
    "ttl_bound_by": "default",
    "valid_until": null,
} if input.mode == "allow"

decision := {
    "allow": false,
    "ttl_seconds": 0,
    "reasons": [{"code": "test.denied", "message": sprintf("denied %v", [input.who])}],
    "ttl_bound_by": null,
    "valid_until": null,
} if input.mode == "deny"

decision := "not a decision" if input.mode == "malformed"

decision := startswith(input.number, "x") if input.mode == "type_error"
"""


def _evaluate(evaluator: RemoteEvaluator, policy_input: dict[str, Any]) -> Decision:
    return evaluator.evaluate(policy_input, evaluated_at=NOW)


def _only_reason(decision: Decision) -> tuple[str, str]:
    assert decision.allow is False
    assert decision.ttl_seconds == 0
    assert len(decision.reasons) == 1
    return decision.reasons[0].code, decision.reasons[0].message


# --- the real server ------------------------------------------------------------


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEvaluator]:
    policy_dir = tmp_path_factory.mktemp("remote-policy")
    (policy_dir / "policy.rego").write_text(TEST_POLICY)
    evaluator = LocalEvaluator(PolicySource.from_directory(policy_dir))
    yield evaluator
    # Drop this thread's engine here: regorus engines must be freed by their own thread,
    # and the garbage collector may run on any thread.
    evaluator.close()


@pytest.fixture(scope="module")
def served(local: LocalEvaluator) -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(local)) as server:
        yield server


@pytest.fixture
def remote(served: BackgroundServer) -> Iterator[RemoteEvaluator]:
    evaluator = RemoteEvaluator(served.url)
    yield evaluator
    evaluator.close()


@pytest.mark.parametrize(
    "policy_input",
    [{"mode": "allow"}, {"mode": "deny", "who": "spiffe://example.org/ns/a/sa/b"}],
    ids=["allow", "deny"],
)
def test_round_trip_equals_local_decision(
    remote: RemoteEvaluator, local: LocalEvaluator, policy_input: dict[str, Any]
) -> None:
    expected = local.evaluate(policy_input, evaluated_at=NOW)
    got = _evaluate(remote, policy_input)
    fields = {"allow", "ttl_seconds", "reasons", "ttl_bound_by", "valid_until", "evaluated_at"}
    assert got.model_dump(include=fields) == expected.model_dump(include=fields)
    assert got.allow is (policy_input["mode"] == "allow")
    assert got.decision_id != expected.decision_id


def test_policy_revision_names_server_and_served_revision(
    remote: RemoteEvaluator, served: BackgroundServer, local: LocalEvaluator
) -> None:
    assert remote.revision == f"remote:{served.url}"
    decision = _evaluate(remote, {"mode": "allow"})
    assert decision.policy_revision == f"remote:{served.url};attestpolicy@{local.revision}"


def test_decision_ids_are_unique_per_call(remote: RemoteEvaluator) -> None:
    ids = {_evaluate(remote, {"mode": "allow"}).decision_id for _ in range(5)}
    assert len(ids) == 5


def test_undefined_decision_is_engine_undefined(remote: RemoteEvaluator) -> None:
    code, message = _only_reason(_evaluate(remote, {"mode": "nothing-matches"}))
    assert code == "engine.undefined"
    assert "no result" in message


def test_served_value_that_is_not_a_decision_is_engine_error(remote: RemoteEvaluator) -> None:
    code, message = _only_reason(_evaluate(remote, {"mode": "malformed"}))
    assert code == "engine.error"
    assert "must be an object" in message


def test_engine_failure_is_remote_error_with_the_servers_message(remote: RemoteEvaluator) -> None:
    code, message = _only_reason(_evaluate(remote, {"mode": "type_error", "number": 7}))
    assert code == "remote.error"
    assert message.startswith("HTTP 500 from OPA: internal_error: error(s) occurred")
    assert "startswith" in message


def test_concurrent_threads_each_get_correct_decisions(remote: RemoteEvaluator) -> None:
    results: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def work(mode: str) -> None:
        for _ in range(20):
            decision = _evaluate(remote, {"mode": mode, "who": mode})
            with lock:
                results.append((mode, decision.allow))

    threads = [threading.Thread(target=work, args=(m,)) for m in ("allow", "deny") * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 80
    assert all(allow is (mode == "allow") for mode, allow in results)


def test_input_that_cannot_be_encoded_is_a_deny_not_an_exception(
    remote: RemoteEvaluator,
) -> None:
    for bad in ({"mode": "allow", "when": NOW}, {"mode": "allow", "x": math.nan}):
        code, message = _only_reason(_evaluate(remote, bad))
        assert code == "remote.error"
        assert "request to OPA" in message


def test_closed_evaluator_denies(served: BackgroundServer) -> None:
    evaluator = RemoteEvaluator(served.url)
    assert _evaluate(evaluator, {"mode": "allow"}).allow is True
    evaluator.close()
    code, message = _only_reason(_evaluate(evaluator, {"mode": "allow"}))
    assert code == "remote.error"
    assert "closed" in message


# --- transport failures -----------------------------------------------------------


def test_server_down_is_remote_error_naming_the_connection() -> None:
    # A bound socket that does not listen: connecting to it is refused, and no other
    # process can take the port while the test runs.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        for retries in (0, 2):
            decision = _evaluate(RemoteEvaluator(url, retries=retries), {"mode": "allow"})
            code, message = _only_reason(decision)
            assert code == "remote.error"
            assert message == f"connection to OPA at {url} failed: Connection refused"
            assert decision.policy_revision == f"remote:{url}"


@dataclass
class Exchange:
    """One request a scripted server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int


@dataclass
class Script:
    """What a scripted server answers to every request."""

    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    hold: bool = False  # wait (bounded) for the test to finish before answering
    drop: bool = False  # close the connection without answering


class ScriptedServer:
    """A loopback HTTP(S) server that answers every request as scripted and records it."""

    def __init__(self, script: Script, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.exchanges: list[Exchange] = []
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.exchanges.append(
                    Exchange(
                        self.command,
                        self.path,
                        dict(self.headers.items()),
                        body,
                        self.client_address[1],
                    )
                )
                if script.drop:
                    self.close_connection = True
                    return
                if script.hold:
                    server.release.wait(timeout=10)
                self.send_response(script.status)
                self.send_header("Content-Type", script.content_type)
                self.send_header("Content-Length", str(len(script.body)))
                for name, value in script.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(script.body)

            do_GET = do_POST = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(tls: ssl.SSLContext | None = None, **script: Any) -> ScriptedServer:
        server = ScriptedServer(Script(**script), tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def _json(document: object) -> bytes:
    return json.dumps(document).encode()


def test_slow_server_is_a_read_timeout(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(hold=True)
    evaluator = RemoteEvaluator(f"http://127.0.0.1:{server.port}", read_timeout=0.2)
    code, message = _only_reason(_evaluate(evaluator, {"mode": "allow"}))
    assert code == "remote.error"
    assert message.startswith("read timeout:")
    assert "within 0.2s" in message


def test_http_500_carries_opas_code_and_message(scripted: Callable[..., ScriptedServer]) -> None:
    body = {
        "code": "internal_error",
        "message": "error(s) occurred while evaluating query",
        "errors": [{"code": "eval_conflict_error", "message": "complete rules must not produce"}],
    }
    server = scripted(status=500, body=_json(body))
    code, message = _only_reason(
        _evaluate(RemoteEvaluator(f"http://127.0.0.1:{server.port}"), {"mode": "allow"})
    )
    assert code == "remote.error"
    assert message == (
        "HTTP 500 from OPA: internal_error: error(s) occurred while evaluating query: "
        "complete rules must not produce"
    )
    assert len(server.exchanges) == 1  # a 500 on a POST is not retried


def test_http_401_from_opa_authentication(scripted: Callable[..., ScriptedServer]) -> None:
    body = {"code": "unauthorized", "message": "request rejected by administrative policy"}
    server = scripted(status=401, body=_json(body))
    code, message = _only_reason(
        _evaluate(RemoteEvaluator(f"http://127.0.0.1:{server.port}"), {"mode": "allow"})
    )
    assert code == "remote.error"
    assert message == ("HTTP 401 from OPA: unauthorized: request rejected by administrative policy")


def test_http_error_without_an_opa_body(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(status=502, body=b"<html>bad gateway</html>", content_type="text/html")
    code, message = _only_reason(
        _evaluate(RemoteEvaluator(f"http://127.0.0.1:{server.port}"), {"mode": "allow"})
    )
    assert code == "remote.error"
    assert message.startswith("HTTP 502 from OPA: Bad Gateway")


@pytest.mark.parametrize("body", [b"not json at all", b'{"result": ', b""])
def test_body_that_is_not_json_is_remote_error(
    scripted: Callable[..., ScriptedServer], body: bytes
) -> None:
    server = scripted(body=body)
    code, message = _only_reason(
        _evaluate(RemoteEvaluator(f"http://127.0.0.1:{server.port}"), {"mode": "allow"})
    )
    assert code == "remote.error"
    assert message.startswith("invalid JSON in the response from OPA")


def test_json_that_is_not_an_object_is_remote_error(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted(body=b'[{"result": {"allow": true}}]')
    code, message = _only_reason(
        _evaluate(RemoteEvaluator(f"http://127.0.0.1:{server.port}"), {"mode": "allow"})
    )
    assert code == "remote.error"
    assert "not an object (list)" in message


def test_missing_result_is_undefined_and_decision_id_stays_ours(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted(body=_json({"decision_id": "opa-decision-1"}))
    decision = _evaluate(RemoteEvaluator(f"http://127.0.0.1:{server.port}"), {"mode": "allow"})
    assert _only_reason(decision)[0] == "engine.undefined"
    assert decision.decision_id != "opa-decision-1"


@pytest.mark.parametrize(
    "result",
    [
        None,
        "allow",
        True,
        ALLOW | {"allow": "true"},
        ALLOW | {"ttl_seconds": 0},
        {"allow": True, "ttl_seconds": 60},
        {"allow": True, "ttl_seconds": 60, "ttl_bound_by": "x", "reasons": [{"code": "a"}]},
    ],
)
def test_malformed_results_are_engine_error(
    scripted: Callable[..., ScriptedServer], result: object
) -> None:
    server = scripted(body=_json({"result": result}))
    code, _ = _only_reason(
        _evaluate(RemoteEvaluator(f"http://127.0.0.1:{server.port}"), {"mode": "allow"})
    )
    assert code == "engine.error"


def test_request_shape_token_and_path_prefix(scripted: Callable[..., ScriptedServer]) -> None:
    allow = ALLOW | {"ttl_seconds": 90, "ttl_bound_by": "audience"}
    provenance = {"version": "1.4.2", "bundles": {"authz": {"revision": "r42"}}}
    server = scripted(body=_json({"result": allow, "provenance": provenance}))
    url = f"http://127.0.0.1:{server.port}/opa/"
    evaluator = RemoteEvaluator(url, token="s3cret-token")
    decision = _evaluate(evaluator, {"mode": "allow", "n": [1, 2]})
    assert decision.allow is True
    assert decision.ttl_seconds == 90
    assert decision.ttl_bound_by == "audience"
    assert decision.policy_revision == f"remote:http://127.0.0.1:{server.port}/opa;authz@r42"
    (exchange,) = server.exchanges
    assert exchange.method == "POST"
    assert exchange.path == "/opa/v1/data/attestpolicy/v1/decision?provenance=true"
    assert exchange.headers["Authorization"] == "Bearer s3cret-token"
    assert exchange.headers["Accept-Encoding"] == "identity"  # a compressed body is refused
    assert json.loads(exchange.body) == {"input": {"mode": "allow", "n": [1, 2]}}


@pytest.mark.parametrize("provenance", ["garbage", {"bundles": ["x"]}, {"bundles": {"b": 1}}])
def test_malformed_provenance_is_ignored(
    scripted: Callable[..., ScriptedServer], provenance: object
) -> None:
    allow = ALLOW | {"ttl_seconds": 90, "ttl_bound_by": "audience"}
    server = scripted(body=_json({"result": allow, "provenance": provenance}))
    decision = _evaluate(RemoteEvaluator(f"http://127.0.0.1:{server.port}"), {"mode": "allow"})
    assert decision.allow is True
    assert decision.policy_revision == f"remote:http://127.0.0.1:{server.port}"


def test_redirects_are_not_followed(scripted: Callable[..., ScriptedServer]) -> None:
    target = scripted(body=_json({"result": {"allow": True, "ttl_seconds": 60}}))
    redirector = scripted(
        status=307,
        body=b"",
        headers={"Location": f"http://127.0.0.1:{target.port}{DECISION_URL_PATH}"},
    )
    evaluator = RemoteEvaluator(f"http://127.0.0.1:{redirector.port}", token="t")
    code, message = _only_reason(_evaluate(evaluator, {"mode": "allow"}))
    assert code == "remote.error"
    assert "redirect (HTTP 307)" in message
    assert target.exchanges == []


def test_a_sent_request_is_never_replayed(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(drop=True)
    evaluator = RemoteEvaluator(f"http://127.0.0.1:{server.port}", retries=3)
    code, message = _only_reason(_evaluate(evaluator, {"mode": "allow"}))
    assert code == "remote.error"
    assert message.startswith(f"connection to OPA at http://127.0.0.1:{server.port} failed")
    assert len(server.exchanges) == 1


# --- TLS with a private CA ----------------------------------------------------------


@dataclass
class Pki:
    ca_pem: Path
    server_context: ssl.SSLContext


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attestpolicy test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "opa.test")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = directory / "ca.pem"
    ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    chain = directory / "server.pem"
    chain.write_bytes(
        leaf_cert.public_bytes(serialization.Encoding.PEM)
        + leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    return Pki(ca_pem=ca_pem, server_context=context)


def test_https_with_private_ca_bundle(scripted: Callable[..., ScriptedServer], pki: Pki) -> None:
    allow = ALLOW | {"ttl_seconds": 60, "ttl_bound_by": "default"}
    server = scripted(tls=pki.server_context, body=_json({"result": allow}))
    evaluator = RemoteEvaluator(
        f"https://127.0.0.1:{server.port}", ca_bundle=pki.ca_pem, token="tls-token"
    )
    decision = _evaluate(evaluator, {"mode": "allow"})
    assert decision.allow is True
    assert server.exchanges[0].headers["Authorization"] == "Bearer tls-token"


def test_https_without_the_ca_is_a_tls_error(
    scripted: Callable[..., ScriptedServer], pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An ambient CA bundle in the environment must not be trusted implicitly.
    for variable in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(variable, str(pki.ca_pem))
    monkeypatch.setenv("SSL_CERT_DIR", str(pki.ca_pem.parent))
    allow = ALLOW | {"ttl_seconds": 60, "ttl_bound_by": "default"}
    server = scripted(tls=pki.server_context, body=_json({"result": allow}))
    code, message = _only_reason(
        _evaluate(RemoteEvaluator(f"https://127.0.0.1:{server.port}"), {"mode": "allow"})
    )
    assert code == "remote.error"
    assert message.startswith(f"TLS error talking to OPA at https://127.0.0.1:{server.port}")
    assert server.exchanges == []


def test_connections_are_reused_and_reopened_when_the_server_closes_them(
    scripted: Callable[..., ScriptedServer],
) -> None:
    allow = _json({"result": ALLOW | {"ttl_seconds": 60, "ttl_bound_by": "default"}})
    keeps = scripted(body=allow)
    evaluator = RemoteEvaluator(f"http://127.0.0.1:{keeps.port}")
    assert all(_evaluate(evaluator, {"mode": "allow"}).allow for _ in range(3))
    assert len({exchange.client_port for exchange in keeps.exchanges}) == 1
    closes = scripted(body=allow, headers={"Connection": "close"})
    evaluator = RemoteEvaluator(f"http://127.0.0.1:{closes.port}")
    assert all(_evaluate(evaluator, {"mode": "allow"}).allow for _ in range(3))
    assert len({exchange.client_port for exchange in closes.exchanges}) == 3


def test_a_compressed_answer_is_remote_error(scripted: Callable[..., ScriptedServer]) -> None:
    allow = ALLOW | {"ttl_seconds": 60, "ttl_bound_by": "default"}
    server = scripted(
        body=gzip.compress(_json({"result": allow})), headers={"Content-Encoding": "gzip"}
    )
    code, message = _only_reason(
        _evaluate(RemoteEvaluator(f"http://127.0.0.1:{server.port}"), {"mode": "allow"})
    )
    assert code == "remote.error"
    assert "Content-Encoding 'gzip'" in message


# --- time and size bounds -----------------------------------------------------------

# A loose bound on how long a decision cut by its deadline takes: the point is "about
# the deadline", against the tens of seconds the slow servers below would take.
SLACK_SECONDS = 1.5


class RawServer:
    """A loopback TCP server handing each connection to ``handle`` in a thread of its own.

    For answers ``http.server`` cannot give: bytes sent one at a time, endless bodies.
    ``sent`` counts what the handlers got into the kernel; ``close`` ends them by shutting
    down every socket they use (``adopt`` adds one they opened).
    """

    def __init__(self, handle: Callable[[RawServer, socket.socket], None]) -> None:
        self.handle = handle
        self.stop = threading.Event()
        self.handled = threading.Event()
        self.sent = 0
        self.sockets: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _serve(self) -> None:
        handlers: list[threading.Thread] = []
        while not self.stop.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.adopt(connection)
            handler = threading.Thread(target=self._run, args=(connection,), daemon=True)
            handler.start()
            handlers.append(handler)
        for handler in handlers:
            handler.join(timeout=10)

    def _run(self, connection: socket.socket) -> None:
        connection.settimeout(10)
        try:
            with connection:
                self.handle(self, connection)
        except OSError:
            pass  # the client went away
        finally:
            self.handled.set()

    def adopt(self, sock: socket.socket) -> socket.socket:
        self.sockets.append(sock)
        return sock

    def send(self, connection: socket.socket, data: bytes) -> None:
        connection.sendall(data)
        self.sent += len(data)

    def drip(self, connection: socket.socket, data: bytes, interval: float) -> None:
        """Send ``data`` one byte every ``interval`` seconds (until stopped)."""
        for index in range(len(data)):
            if self.stop.wait(interval):
                return
            self.send(connection, data[index : index + 1])

    def close(self) -> None:
        self.stop.set()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(timeout=10)
        self.listener.close()


@pytest.fixture
def raw() -> Iterator[Callable[[Callable[[RawServer, socket.socket], None]], RawServer]]:
    servers: list[RawServer] = []

    def start(handle: Callable[[RawServer, socket.socket], None]) -> RawServer:
        server = RawServer(handle)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def _read_request(connection: socket.socket) -> bytes:
    """Read one HTTP request with a Content-Length body (what the evaluator sends): its bytes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError("the client closed the connection")
        data += chunk
    head = data.partition(b"\r\n\r\n")[0]
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    assert length is not None
    while len(data) < len(head) + 4 + int(length.group(1)):
        data += connection.recv(65536)
    return data


def _head(*headers: str) -> bytes:
    return (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + "".join(f"{header}\r\n" for header in headers)
        + "\r\n"
    ).encode()


def _deadline_message(url: str, seconds: float) -> str:
    return f"deadline exceeded: the exchange with OPA at {url} did not complete within {seconds:g}s"


def test_a_body_sent_a_byte_at_a_time_is_cut_at_the_default_deadline(
    raw: Callable[[Callable[[RawServer, socket.socket], None]], RawServer],
) -> None:
    # Each byte comes well within read_timeout, so only a deadline over the whole
    # exchange (by default connect_timeout + read_timeout = 1 s here) ends it; the
    # whole body would take about 19 s.
    body = b" " * 63 + b"{"

    def drip_body(server: RawServer, connection: socket.socket) -> None:
        _read_request(connection)
        server.send(connection, _head(f"Content-Length: {len(body)}"))
        server.drip(connection, body, 0.3)

    server = raw(drip_body)
    evaluator = RemoteEvaluator(server.url, connect_timeout=0.5, read_timeout=0.5)
    started = time.monotonic()
    decision = _evaluate(evaluator, {"mode": "allow"})
    elapsed = time.monotonic() - started
    assert _only_reason(decision) == ("remote.error", _deadline_message(server.url, 1.0))
    assert elapsed < 1.0 + SLACK_SECONDS


@pytest.mark.parametrize("tls", [False, True], ids=["http-headers", "https-handshake"])
def test_a_server_slow_from_its_first_byte_is_cut_at_the_deadline(
    raw: Callable[[Callable[[RawServer, socket.socket], None]], RawServer],
    scripted: Callable[..., ScriptedServer],
    pki: Pki,
    tls: bool,
) -> None:
    # A relay passes the client's bytes on at once and the server's one every 0.1 s:
    # the status line and headers (http) or the TLS handshake (https) take many reads,
    # none of which waits as long as the timeouts, so only the deadline ends the exchange.
    allow = ALLOW | {"ttl_seconds": 60, "ttl_bound_by": "default"}
    upstream = scripted(tls=pki.server_context if tls else None, body=_json({"result": allow}))

    def pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass

    def slow_relay(server: RawServer, client: socket.socket) -> None:
        upstream_address = ("127.0.0.1", upstream.port)
        with server.adopt(socket.create_connection(upstream_address, timeout=10)) as sock:
            threading.Thread(target=pipe, args=(client, sock), daemon=True).start()
            while (data := sock.recv(65536)) and not server.stop.is_set():
                server.drip(client, data, 0.1)

    relay = raw(slow_relay)
    url = relay.url.replace("http:", "https:") if tls else relay.url
    ca_bundle = pki.ca_pem if tls else None
    evaluator = RemoteEvaluator(
        url, connect_timeout=2.0, read_timeout=2.0, deadline=0.8, ca_bundle=ca_bundle
    )
    started = time.monotonic()
    decision = _evaluate(evaluator, {"mode": "allow"})
    elapsed = time.monotonic() - started
    assert _only_reason(decision) == ("remote.error", _deadline_message(url, 0.8))
    assert elapsed < 0.8 + SLACK_SECONDS
    # Unhindered, the same server answers within the same deadline.
    direct = f"{'https' if tls else 'http'}://127.0.0.1:{upstream.port}"
    fast = RemoteEvaluator(direct, deadline=0.8, ca_bundle=ca_bundle)
    assert _evaluate(fast, {"mode": "allow"}).allow is True


def test_an_endless_chunked_answer_is_abandoned_at_the_default_cap(
    raw: Callable[[Callable[[RawServer, socket.socket], None]], RawServer],
) -> None:
    total = 64 * 1024 * 1024
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)

    def stream(server: RawServer, connection: socket.socket) -> None:
        _read_request(connection)
        server.send(connection, _head("Transfer-Encoding: chunked"))
        while server.sent < total and not server.stop.is_set():
            server.send(connection, chunk)
        server.send(connection, b"0\r\n\r\n")

    server = raw(stream)
    code, message = _only_reason(_evaluate(RemoteEvaluator(server.url), {"mode": "allow"}))
    assert code == "remote.error"
    assert message == (
        f"response too large: OPA at {server.url} sent more than {DEFAULT_MAX_RESPONSE_BYTES} "
        f"bytes; max_response_bytes is {DEFAULT_MAX_RESPONSE_BYTES}"
    )
    assert DEFAULT_MAX_RESPONSE_BYTES == 4 * 1024 * 1024
    # The client stopped reading: the server could only fill the sockets' buffers.
    assert server.handled.wait(timeout=10)
    assert server.sent < total / 2


def test_an_announced_length_over_the_cap_is_refused_unread(
    raw: Callable[[Callable[[RawServer, socket.socket], None]], RawServer],
) -> None:
    def announce(server: RawServer, connection: socket.socket) -> None:
        _read_request(connection)
        server.send(connection, _head(f"Content-Length: {2**30}"))
        server.stop.wait(10)  # and never send the body

    server = raw(announce)
    evaluator = RemoteEvaluator(server.url, max_response_bytes=1024)
    code, message = _only_reason(_evaluate(evaluator, {"mode": "allow"}))
    assert code == "remote.error"
    assert message == (
        f"response too large: OPA at {server.url} announced {2**30} bytes; "
        "max_response_bytes is 1024"
    )


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_the_size_cap_is_exact(
    raw: Callable[[Callable[[RawServer, socket.socket], None]], RawServer], chunked: bool
) -> None:
    allow = _json({"result": ALLOW | {"ttl_seconds": 60, "ttl_bound_by": "default"}})
    body = allow + b" " * (1000 - len(allow))

    def answer(server: RawServer, connection: socket.socket) -> None:
        while True:
            _read_request(connection)
            if chunked:  # in pieces of 300 bytes
                pieces = [body[i : i + 300] for i in range(0, len(body), 300)]
                framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
                server.send(connection, _head("Transfer-Encoding: chunked") + framed)
            else:
                server.send(connection, _head(f"Content-Length: {len(body)}") + body)

    server = raw(answer)
    assert _evaluate(RemoteEvaluator(server.url, max_response_bytes=1000), {"mode": "allow"}).allow
    code, message = _only_reason(
        _evaluate(RemoteEvaluator(server.url, max_response_bytes=999), {"mode": "allow"})
    )
    assert code == "remote.error"
    assert message.endswith("max_response_bytes is 999")


# --- framing -----------------------------------------------------------------------


def test_the_request_is_a_fixed_head_and_the_json_body(
    raw: Callable[[Callable[[RawServer, socket.socket], None]], RawServer],
) -> None:
    requests: list[bytes] = []
    allow = _json({"result": ALLOW})

    def answer(server: RawServer, connection: socket.socket) -> None:
        while True:
            requests.append(_read_request(connection))
            server.send(connection, _head(f"Content-Length: {len(allow)}") + allow)

    server = raw(answer)
    port = server.url.rsplit(":", 1)[1]
    evaluator = RemoteEvaluator(server.url + "/opa", token="s3cret-token")
    assert _evaluate(evaluator, {"mode": "allow", "n": [1, 2]}).allow
    assert _evaluate(evaluator, {"mode": "allow", "n": [1, 2]}).allow
    body = b'{"input":{"mode":"allow","n":[1,2]}}'
    expected = (
        "POST /opa/v1/data/attestpolicy/v1/decision?provenance=true HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "User-Agent: attestpolicy\r\n"
        "Accept-Encoding: identity\r\n"
        "Accept: application/json\r\n"
        "Content-Type: application/json\r\n"
        "Authorization: Bearer s3cret-token\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    assert requests == [expected, expected]  # on one connection (one handler)


def test_a_chunked_answer_with_a_trailer_keeps_the_connection(
    raw: Callable[[Callable[[RawServer, socket.socket], None]], RawServer],
) -> None:
    allow = _json({"result": ALLOW})
    framed = b"".join(
        b"%x;ext=1\r\n%s\r\n" % (len(piece), piece) for piece in (allow[:10], allow[10:])
    )
    connections: list[socket.socket] = []

    def answer(server: RawServer, connection: socket.socket) -> None:
        connections.append(connection)
        while True:
            _read_request(connection)
            head = _head("Transfer-Encoding: Chunked")
            server.send(connection, head + framed + b"0\r\nX-Trailer: 1\r\n\r\n")

    server = raw(answer)
    evaluator = RemoteEvaluator(server.url)
    assert all(_evaluate(evaluator, {"mode": "allow"}).allow for _ in range(3))
    assert len(connections) == 1


@pytest.mark.parametrize(
    ("headers", "body", "fragment"),
    [
        (
            ("Transfer-Encoding: chunked", "Content-Length: 5"),
            b"5\r\n{}   \r\n0\r\n\r\n",
            "sent Transfer-Encoding 'chunked' with a Content-Length",
        ),
        (("Transfer-Encoding: gzip, chunked",), b"", "sent Transfer-Encoding 'gzip, chunked'"),
        (("Content-Length: 2", "Content-Length: 3"), b"{} ", "invalid Content-Length ('2, 3')"),
        (("Content-Length: 100",), b'{"result": ', "failed: IncompleteRead(11 bytes read"),
        (("Content-Length: -1",), b"{}", "invalid Content-Length ('-1')"),
        (("Content-Length: 0x2",), b"{}", "invalid Content-Length ('0x2')"),
    ],
    ids=["chunked-and-length", "other-coding", "two-lengths", "cut-short", "negative", "hex"],
)
def test_an_ambiguous_or_short_body_is_remote_error(
    raw: Callable[[Callable[[RawServer, socket.socket], None]], RawServer],
    headers: tuple[str, ...],
    body: bytes,
    fragment: str,
) -> None:
    def answer(server: RawServer, connection: socket.socket) -> None:
        _read_request(connection)
        server.send(connection, _head(*headers) + body)  # then close

    server = raw(answer)
    code, message = _only_reason(_evaluate(RemoteEvaluator(server.url), {"mode": "allow"}))
    assert code == "remote.error"
    assert fragment in message
    assert message.startswith(f"OPA at {server.url} ") or "failed: " in message


# --- construction ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "127.0.0.1:8181",
        "opa:8181",
        "ftp://127.0.0.1:8181",
        "unix:///run/opa.sock",
        "http://",
        "http://:8181",
        "http://user:pass@127.0.0.1:8181",
        "http://127.0.0.1:8181/?pretty=true",
        "http://127.0.0.1:8181/#frag",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:port",
        "http://127.0.0.1:8181/v1/data/attestpolicy/v1/decision",
        "http://127.0.0.1:8181/v1",
        "http://127.0.0.1:8181/my opa",
        "http://127.0.0.1:8181/caf\u00e9",
    ],
)
def test_unusable_urls_are_rejected(url: str) -> None:
    with pytest.raises(RemoteConfigError) as info:
        RemoteEvaluator(url)
    assert isinstance(info.value, EvaluatorError)
    assert info.value.code == "remote.invalid_config"


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("HTTP://LocalHost:8181/", "http://localhost:8181"),
        ("http://127.0.0.1:8181", "http://127.0.0.1:8181"),
        ("https://opa.example.internal", "https://opa.example.internal:443"),
        ("http://[::1]:8181", "http://[::1]:8181"),
        ("http://127.0.0.1:8181/opa/", "http://127.0.0.1:8181/opa"),
        ("https://b\u00fccher.example", "https://xn--bcher-kva.example:443"),
    ],
)
def test_urls_are_normalized(url: str, normalized: str) -> None:
    evaluator = RemoteEvaluator(url)
    assert evaluator.url == normalized
    assert evaluator.revision == f"remote:{normalized}"


@pytest.mark.parametrize(
    ("url", "options", "fragment"),
    [
        ("http://127.0.0.1:1", {"connect_timeout": 0}, "connect_timeout"),
        ("http://127.0.0.1:1", {"read_timeout": -1.0}, "read_timeout"),
        ("http://127.0.0.1:1", {"read_timeout": math.inf}, "read_timeout"),
        ("http://127.0.0.1:1", {"read_timeout": math.nan}, "read_timeout"),
        ("http://127.0.0.1:1", {"connect_timeout": True}, "connect_timeout"),
        ("http://127.0.0.1:1", {"connect_timeout": "1"}, "connect_timeout"),
        ("http://127.0.0.1:1", {"deadline": 0}, "deadline"),
        ("http://127.0.0.1:1", {"deadline": -1.0}, "deadline"),
        ("http://127.0.0.1:1", {"deadline": math.inf}, "deadline"),
        ("http://127.0.0.1:1", {"deadline": math.nan}, "deadline"),
        ("http://127.0.0.1:1", {"deadline": True}, "deadline"),
        ("http://127.0.0.1:1", {"deadline": "2.5"}, "deadline"),
        ("http://127.0.0.1:1", {"max_response_bytes": 0}, "max_response_bytes"),
        ("http://127.0.0.1:1", {"max_response_bytes": -1}, "max_response_bytes"),
        ("http://127.0.0.1:1", {"max_response_bytes": 1024.0}, "max_response_bytes"),
        ("http://127.0.0.1:1", {"max_response_bytes": True}, "max_response_bytes"),
        ("http://127.0.0.1:1", {"max_response_bytes": "4MiB"}, "max_response_bytes"),
        ("http://127.0.0.1:1", {"retries": -1}, "retries"),
        ("http://127.0.0.1:1", {"retries": 11}, "retries"),
        ("http://127.0.0.1:1", {"retries": True}, "retries"),
        ("http://127.0.0.1:1", {"token": ""}, "token"),
        ("http://127.0.0.1:1", {"token": "a\r\nX-Injected: 1"}, "token"),
        ("http://127.0.0.1:1", {"token": "two words"}, "token"),
        ("http://127.0.0.1:1", {"token": "t\u00f6ken"}, "token"),
        ("http://opa.example.internal:8181", {"token": "t"}, "clear text"),
        ("http://127.0.0.1:1", {"ca_bundle": "ca.pem"}, "https"),
        ("https://127.0.0.1:1", {"ca_bundle": "/nonexistent/ca.pem"}, "not found"),
    ],
)
def test_unusable_options_are_rejected(url: str, options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(RemoteConfigError, match=fragment):
        RemoteEvaluator(url, **options)


def test_a_ca_bundle_without_certificates_is_rejected(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    with pytest.raises(RemoteConfigError, match="unusable"):
        RemoteEvaluator("https://127.0.0.1:1", ca_bundle=not_pem)


def test_token_over_loopback_http_is_allowed() -> None:
    for url in ("http://127.0.0.1:8181", "http://localhost:8181", "http://[::1]:8181"):
        assert RemoteEvaluator(url, token="t").url.startswith("http://")


# --- the shipped policy, end to end ----------------------------------------------


def test_shipped_policy_decides_the_same_remotely() -> None:
    from attestpolicy.claims import ClaimSet
    from attestpolicy.config import load_config

    examples = Path(__file__).resolve().parents[2] / "attestpolicy" / "examples"
    claim_files = sorted((examples / "claims").glob("*.json"))
    if not (examples / "config.json").is_file() or not claim_files:
        pytest.skip("the shipped example configuration and claims are not present")
    local = LocalEvaluator(PolicySource.from_directory(), load_config(examples / "config.json"))
    fields = {
        "allow",
        "ttl_seconds",
        "reasons",
        "ttl_bound_by",
        "valid_until",
        "ttl_terms",
        "revocable",
    }
    try:
        with BackgroundServer(create_app(local)) as server:
            remote = RemoteEvaluator(server.url)
            for path in claim_files:
                claims = ClaimSet.parse(path.read_bytes())
                policy_input = claims.with_now(claims.now or NOW).to_input()
                expected = local.evaluate(policy_input, evaluated_at=NOW)
                got = remote.evaluate(policy_input, evaluated_at=NOW)
                if expected.reason_codes == ("engine.error",):
                    # An engine failure travels as HTTP 500: a remote.error deny.
                    code, message = _only_reason(got)
                    assert (code, message.split(": ")[0]) == ("remote.error", "HTTP 500 from OPA")
                else:
                    assert got.model_dump(include=fields) == expected.model_dump(include=fields)
            remote.close()
    finally:
        local.close()


def test_a_cached_remote_allow_is_revoked_by_key_id() -> None:
    """A remote PDP caches the server's allow, and revoking the signing key's id drops it:
    the cache indexes the decision's own revocable values (key ids included)."""
    from attestpolicy.config import load_config
    from attestpolicy.pdp import PolicyDecisionPoint

    examples = Path(__file__).resolve().parents[2] / "attestpolicy" / "examples"
    config = copy.deepcopy(load_config(examples / "config.json"))
    config["trusted_signers"]["key_ids"] = {"cosign-key-1": "the release key"}
    claims = json.loads((examples / "claims" / "allow-fully-attested.json").read_text())
    claims["image"]["signatures"] = [{"verified": True, "key_id": "cosign-key-1"}]
    server_side = LocalEvaluator(PolicySource.from_directory(), config)
    try:
        with BackgroundServer(create_app(server_side)) as server:
            pdp = PolicyDecisionPoint.remote(server.url, cache=True)
            first = pdp.decide(claims)  # learns the server's revision
            assert first.allow, first.reasons
            assert ("signer_subjects", "cosign-key-1") in (first.revocable or ())
            assert pdp.decide(claims).allow  # evaluated again, now under that revision
            assert pdp.decide(claims).allow
            stats = pdp.cache_stats()
            assert stats is not None
            assert (stats.hits, stats.entries) == (1, 1)
            # The operator revokes the key on the server and in this PDP.
            server_side.revoke([("signer_subjects", "cosign-key-1")], reason="leaked")
            assert pdp.revoke(signer_subject="cosign-key-1") == 1
            after = pdp.decide(claims)
            assert not after.allow
            assert after.reason_codes == ("image.untrusted_signer",)
            pdp.close()
    finally:
        server_side.close()


def test_a_remote_cache_sees_a_server_side_revocation_within_its_max_age() -> None:
    """Without pdp.revoke, a revocation made on the server alone: the cached allow is
    served for at most cache_max_age_seconds, then the server's deny."""
    from attestpolicy.config import load_config
    from attestpolicy.pdp import PolicyDecisionPoint

    examples = Path(__file__).resolve().parents[2] / "attestpolicy" / "examples"
    claims = json.loads((examples / "claims" / "allow-fully-attested.json").read_text())
    server_side = LocalEvaluator(
        PolicySource.from_directory(), load_config(examples / "config.json")
    )
    try:
        with BackgroundServer(create_app(server_side)) as server:
            pdp = PolicyDecisionPoint.remote(server.url, cache=True, cache_max_age_seconds=0.5)
            for _ in range(3):
                assert pdp.decide(claims).allow
            server_side.revoke([("node_ids", claims["node"]["id"])], reason="stolen")
            assert pdp.decide(claims).allow  # cached: the server was not asked
            time.sleep(0.6)
            assert pdp.decide(claims).reason_codes == ("node.revoked",)
            pdp.close()
    finally:
        server_side.close()
