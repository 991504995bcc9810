"""The OPA-compatible ``serve`` server, over real loopback HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
import requests
from serving import BackgroundServer, serve_process

from attestpolicy._server_workers import listen_sockets
from attestpolicy.engine._inprocess import InProcessEvaluator
from attestpolicy.engine.remote import RemoteEvaluator
from attestpolicy.errors import ConfigError, PolicyError
from attestpolicy.server import (
    MAX_BODY_BYTES,
    ServerLimits,
    ServerSettingsError,
    create_app,
    load_evaluator,
    parse_addr,
    run_server,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DECISION = "/v1/data/attestpolicy/v1/decision"

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
    "reasons": [{"code": "test.denied", "message": "mode is deny"}],
    "ttl_bound_by": null,
    "valid_until": null,
} if input.mode == "deny"

decision := startswith(input.number, "x") if input.mode == "type_error"

modes contains mode if some mode in ["deny", "allow"]

echo := input
"""

CONFIG = {
    "limits": {
        "max_evidence_age_seconds": 600,
        "clock_skew_seconds": 30,
        "min_ttl_seconds": 60,
        "default_ttl_seconds": 777,
    }
}


@pytest.fixture(scope="module")
def policy_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("serve")
    policy_dir = directory / "policy"
    policy_dir.mkdir()
    (policy_dir / "policy.rego").write_text(TEST_POLICY)
    config_path = directory / "config.json"
    config_path.write_text(json.dumps(CONFIG))
    return policy_dir, config_path


@pytest.fixture(scope="module")
def evaluator(policy_files: tuple[Path, Path]) -> Iterator[InProcessEvaluator]:
    loaded = load_evaluator(*policy_files)
    yield loaded
    # Drop this thread's engine here: regorus engines must be freed by their own thread,
    # and the garbage collector may run on any thread.
    loaded.close()


@pytest.fixture(scope="module")
def url(evaluator: InProcessEvaluator) -> Iterator[str]:
    with BackgroundServer(create_app(evaluator)) as server:
        yield server.url


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False
    yield session
    session.close()


def _opa_error(response: requests.Response, status: int, code: str) -> str:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) <= {"code", "message", "errors"}
    assert body["code"] == code
    assert isinstance(body["message"], str)
    return str(body["message"])


def test_health(http: requests.Session, url: str) -> None:
    response = http.get(f"{url}/health")
    assert response.status_code == 200
    assert response.json() == {}


def test_post_decision_uses_policy_and_configuration(http: requests.Session, url: str) -> None:
    response = http.post(url + DECISION, json={"input": {"mode": "allow"}})
    assert response.status_code == 200
    assert response.json() == {
        "result": {
            "allow": True,
            "ttl_seconds": 777,
            "reasons": [],
            "ttl_bound_by": "default",
            "valid_until": None,
        }
    }


def test_get_decision_with_input_parameter(http: requests.Session, url: str) -> None:
    response = http.get(url + DECISION, params={"input": json.dumps({"mode": "deny"})})
    assert response.status_code == 200
    assert response.json() == {
        "result": {
            "allow": False,
            "ttl_seconds": 0,
            "reasons": [{"code": "test.denied", "message": "mode is deny"}],
            "ttl_bound_by": None,
            "valid_until": None,
        }
    }


def test_get_configuration_document(http: requests.Session, url: str) -> None:
    response = http.get(f"{url}/v1/data/attestpolicy/config/limits")
    assert response.json() == {"result": CONFIG["limits"]}


def test_input_round_trips_unchanged(http: requests.Session, url: str) -> None:
    document: dict[str, Any] = {
        "s": "ünïcode ✓",
        "n": [1, 2.5, -3],
        "b": False,
        "z": None,
        "o": {"k": "v"},
    }
    response = http.post(f"{url}/v1/data/attestpolicy/v1/echo", json={"input": document})
    assert response.json() == {"result": document}


def test_rego_set_is_a_sorted_array(http: requests.Session, url: str) -> None:
    response = http.post(f"{url}/v1/data/attestpolicy/v1/modes", json={"input": {}})
    assert response.json() == {"result": ["allow", "deny"]}


def test_whole_data_document(http: requests.Session, url: str) -> None:
    response = http.get(f"{url}/v1/data")
    assert response.status_code == 200
    assert response.json()["result"]["attestpolicy"]["config"] == CONFIG


@pytest.mark.parametrize(
    "path",
    [
        "/v1/data/attestpolicy/v1/nothing",
        DECISION,  # undefined for this input
        "/v1/data/no/such/package",
        '/v1/data/attestpolicy"]["v1/decision',  # not a Rego injection: just a missing key
    ],
)
def test_undefined_document_is_empty_object(http: requests.Session, url: str, path: str) -> None:
    response = http.post(url + path, json={"input": {"mode": "none"}})
    assert response.status_code == 200
    assert response.json() == {}


@pytest.mark.parametrize("body", [b"", b"{}", b'{"input": null}'])
def test_missing_input_is_a_warning(http: requests.Session, url: str, body: bytes) -> None:
    response = http.post(f"{url}/v1/data/attestpolicy/v1/modes", data=body)
    assert response.status_code == 200
    assert response.json() == {
        "result": ["allow", "deny"],
        "warning": {"code": "api_usage_warning", "message": "'input' key missing from the request"},
    }


def test_provenance_reports_the_loaded_revision(
    http: requests.Session, url: str, evaluator: InProcessEvaluator
) -> None:
    response = http.post(url + DECISION + "?provenance", json={"input": {"mode": "allow"}})
    provenance = response.json()["provenance"]
    assert provenance["bundles"] == {"attestpolicy": {"revision": evaluator.revision}}
    assert provenance["version"].startswith("regorus-")
    without = http.post(url + DECISION + "?provenance=false", json={"input": {"mode": "allow"}})
    assert "provenance" not in without.json()


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "body contains malformed input document"),
        (b'{"input": {"mode": "allow"}', "body contains malformed input document"),
        (b'{"input": NaN}', "NaN is not valid JSON"),
        (b'{"input": {"mode": "deny", "mode": "allow"}}', "duplicate member 'mode'"),
        (b'{"input": "\\ud800"}', "lone surrogate"),
        (b'[{"input": {}}]', "not an object"),
        (b'"input"', "not an object"),
        (b"\xff\xfe", "body contains malformed input document"),
        (b"[" * 100_000 + b"]" * 100_000, "body contains malformed input document"),
    ],
)
def test_bad_body_is_400(http: requests.Session, url: str, body: bytes, fragment: str) -> None:
    response = http.post(url + DECISION, data=body, headers={"Content-Type": "application/json"})
    assert fragment in _opa_error(response, 400, "invalid_parameter")


def test_bad_input_parameter_is_400(http: requests.Session, url: str) -> None:
    response = http.get(url + DECISION, params={"input": "{mode: allow}"})
    message = _opa_error(response, 400, "invalid_parameter")
    assert message.startswith("parameter contains malformed input document")


def test_compressed_body_is_400(http: requests.Session, url: str) -> None:
    response = http.post(url + DECISION, data=b"\x1f\x8b", headers={"Content-Encoding": "gzip"})
    assert "compressed" in _opa_error(response, 400, "invalid_parameter")


def test_oversized_body_is_413(http: requests.Session, url: str) -> None:
    body = b'{"input": "' + b"a" * MAX_BODY_BYTES + b'"}'
    response = http.post(url + DECISION, data=body)
    assert _opa_error(response, 413, "invalid_parameter") == "request body too large"
    # The connection stays usable for the next request.
    assert http.get(f"{url}/health").status_code == 200


def test_body_limit_is_exact_and_applies_to_chunked_bodies(
    http: requests.Session, evaluator: InProcessEvaluator
) -> None:
    limit = 1024
    with BackgroundServer(
        create_app(evaluator, limits=ServerLimits(max_body_bytes=limit))
    ) as server:
        target = server.url + "/v1/data/attestpolicy/v1/echo"
        prefix, suffix = b'{"input": "', b'"}'
        padding = limit - len(prefix) - len(suffix)
        at_limit = prefix + b"a" * padding + suffix
        assert len(at_limit) == limit
        assert http.post(target, data=at_limit).json() == {"result": "a" * padding}
        over = prefix + b"a" * (padding + 1) + suffix
        assert http.post(target, data=over).status_code == 413
        chunked = http.post(target, data=iter([over[:600], over[600:]]))
        assert "Content-Length" not in chunked.request.headers
        assert _opa_error(chunked, 413, "invalid_parameter") == "request body too large"


def test_engine_error_is_500(http: requests.Session, url: str) -> None:
    response = http.post(url + DECISION, json={"input": {"mode": "type_error", "number": 1}})
    assert response.status_code == 500, response.text
    body = response.json()
    assert body["code"] == "internal_error"
    assert body["message"] == "error(s) occurred while evaluating query"
    (error,) = body["errors"]
    assert error["code"] == "eval_error"
    assert "startswith" in error["message"]


def test_unknown_route_is_404(http: requests.Session, url: str) -> None:
    for path in ("/", "/v0/data/x", "/v1/policies", "/healthz"):
        response = http.get(url + path)
        assert _opa_error(response, 404, "resource_not_found") == f"no such route: GET {path}"


def test_wrong_method_is_405(http: requests.Session, url: str) -> None:
    response = http.delete(url + DECISION)
    _opa_error(response, 405, "invalid_operation")
    assert set(response.headers["allow"].split(", ")) >= {"GET", "POST"}
    assert http.post(f"{url}/health").status_code == 405


def test_refused_input_is_400(http: requests.Session, url: str) -> None:
    """The engine refuses input nested deeper than 64 levels: the caller's fault, not 500."""
    deep: Any = "bottom"
    for _ in range(70):
        deep = [deep]
    response = http.post(url + DECISION, json={"input": {"mode": deep}})
    message = _opa_error(response, 400, "invalid_parameter")
    assert message.startswith("policy input refused:")


# --- package documents (security issue 9, finding 10) ----------------------------

EXAMPLES = REPO_ROOT / "attestpolicy" / "examples"


@pytest.fixture(params=["regorus", "opa"])
def shipped(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(engine, url): the shipped policy and example configuration, served by each engine."""
    if request.param == "opa":
        request.getfixturevalue("requires_opa")
    loaded = load_evaluator(config_path=EXAMPLES / "config.json", engine=request.param)
    try:
        with BackgroundServer(create_app(loaded)) as server:
            yield request.param, server.url
    finally:
        loaded.close()


@pytest.mark.parametrize(
    ("prefix", "below"),
    [("", ["attestpolicy", "v1"]), ("/attestpolicy", ["v1"]), ("/attestpolicy/v1", [])],
)
def test_package_paths_answer_the_package_document(
    http: requests.Session,
    shipped: tuple[str, str],
    prefix: str,
    below: list[str],
) -> None:
    """``/v1/data`` and package paths answer the document of the package's rules, as OPA
    does (they were 500 ``unhashable type: 'list'``)."""
    _, url = shipped
    claims = json.loads((EXAMPLES / "claims" / "allow-fully-attested.json").read_text())
    decision = http.post(url + DECISION, json={"input": claims}).json()["result"]
    assert decision["allow"] is True
    response = http.post(f"{url}/v1/data{prefix}", json={"input": claims})
    assert response.status_code == 200, response.text
    document = response.json()["result"]
    for segment in below:
        document = document[segment]
    assert document["decision"] == decision


# --- settings -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("127.0.0.1:8181", ("127.0.0.1", 8181)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),  # noqa: S104
        ("localhost:80", ("localhost", 80)),
        ("[::1]:8181", ("::1", 8181)),
    ],
)
def test_parse_addr(addr: str, expected: tuple[str, int]) -> None:
    assert parse_addr(addr) == expected


@pytest.mark.parametrize(
    "addr", ["", "8181", ":8181", "127.0.0.1", "127.0.0.1:", "127.0.0.1:http", "h:65536", "h:-1"]
)
def test_parse_addr_rejects(addr: str) -> None:
    with pytest.raises(ServerSettingsError):
        parse_addr(addr)


def test_run_server_fails_before_listening(tmp_path: Path, policy_files: tuple[Path, Path]) -> None:
    policy_dir, _ = policy_files
    with pytest.raises(ServerSettingsError, match="workers"):
        run_server("127.0.0.1:0", policy_dir=policy_dir, workers=0)
    with pytest.raises(ServerSettingsError, match="address"):
        run_server("nowhere", policy_dir=policy_dir)
    with pytest.raises(PolicyError, match=r"no \.rego files"):
        run_server("127.0.0.1:0", policy_dir=tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "p.rego").write_text("package attestpolicy.v1\n\ndecision := {\n")
    with pytest.raises(PolicyError, match="failed to load"):
        run_server("127.0.0.1:0", policy_dir=broken)
    bad_config = tmp_path / "config.json"
    bad_config.write_text(json.dumps({"limits": {"default_ttl_seconds": "long"}}))
    with pytest.raises(ConfigError):
        run_server("127.0.0.1:0", policy_dir=policy_dir, config_path=bad_config)


def test_create_app_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, http: requests.Session, policy_files: tuple[Path, Path]
) -> None:
    policy_dir, config_path = policy_files
    monkeypatch.setenv("ATTESTPOLICY_SERVE_POLICY_DIR", str(policy_dir))
    monkeypatch.setenv("ATTESTPOLICY_SERVE_CONFIG", str(config_path))
    app = create_app()
    with BackgroundServer(app) as server:
        response = http.post(server.url + DECISION, json={"input": {"mode": "allow"}})
    app.state.evaluator.close()
    assert response.json()["result"]["ttl_seconds"] == 777


# --- worker processes -------------------------------------------------------------

_RUN = (
    "import sys; from attestpolicy.server import run_server; "
    "run_server(sys.argv[1], policy_dir=sys.argv[2], config_path=sys.argv[3], "
    "workers=int(sys.argv[4]))"
)


def _wait_for_workers(log_path: Path, workers: int) -> None:
    """Wait until ``workers`` worker processes have started serving (a loaded machine may
    start one well after the other, which already answers)."""
    deadline = time.monotonic() + 60
    while log_path.read_text().count("Application startup complete.") < workers:
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.1)


def _worker_pids(parent: int) -> set[int]:
    children: set[int] = set()
    for task in Path(f"/proc/{parent}/task").iterdir():
        children.update(int(pid) for pid in (task / "children").read_text().split())
    return {pid for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()}


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("workers", [1, 2])
def test_run_server_with_worker_processes(
    tmp_path: Path, policy_files: tuple[Path, Path], http: requests.Session, workers: int
) -> None:
    policy_dir, config_path = policy_files
    log_path = tmp_path / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    args = ["127.0.0.1:0", str(policy_dir), str(config_path), str(workers)]
    argv = [sys.executable, "-c", _RUN, *args]
    with serve_process(argv, cwd=tmp_path, env=env, log_path=log_path) as (process, url):
        _wait_for_workers(log_path, workers)
        assert http.get(f"{url}/health", timeout=5).json() == {}
        if workers > 1:
            assert len(_worker_pids(process.pid)) == workers
        remote = RemoteEvaluator(url, read_timeout=10)
        now = datetime.now(UTC)
        for _ in range(20):  # fresh connections, spread over the workers by the kernel
            decision = remote.evaluate({"mode": "allow"}, evaluated_at=now)
            assert (decision.allow, decision.ttl_seconds) == (True, 777)
            remote.close()
            remote = RemoteEvaluator(url, read_timeout=10)
        assert remote.evaluate({"mode": "deny"}, evaluated_at=now).reason_codes == ("test.denied",)
        remote.close()
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert log_path.read_text().count("Finished server process") == workers
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", int(url.rsplit(":", 1)[1]))) != 0


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:"):
                inodes.add(target)
    return inodes


@pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT spreads connections on Linux")
def test_workers_share_the_connections_of_one_client(
    tmp_path: Path, policy_files: tuple[Path, Path]
) -> None:
    """16 keep-alive connections opened at once reach both workers: each worker listens on
    its own socket (SO_REUSEPORT), so none takes every pending connection."""
    policy_dir, config_path = policy_files
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    argv = [sys.executable, "-c", _RUN, "127.0.0.1:0", str(policy_dir), str(config_path), "2"]
    log_path = tmp_path / "serve.log"
    with serve_process(argv, cwd=tmp_path, env=env, log_path=log_path) as (process, url):
        _wait_for_workers(log_path, 2)
        workers = _worker_pids(process.pid)
        assert len(workers) == 2
        before = {pid: _socket_inodes(pid) for pid in workers}
        port = int(url.rsplit(":", 1)[1])
        connections = [HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(16)]
        try:
            # All 16 wait to be accepted at once, as a client's pool opening together.
            for pid in workers:
                os.kill(pid, signal.SIGSTOP)
            try:
                for connection in connections:
                    connection.connect()
            finally:
                for pid in workers:
                    os.kill(pid, signal.SIGCONT)
            for connection in connections:
                connection.request("GET", "/health")
                assert connection.getresponse().read() == b"{}"
            gained = {pid: len(_socket_inodes(pid) - before[pid]) for pid in workers}
        finally:
            for connection in connections:
                connection.close()
        assert sum(gained.values()) == 16
        assert all(gained.values()), gained


def test_listen_sockets_share_one_port() -> None:
    sockets = listen_sockets("127.0.0.1", 0, 3)
    try:
        ports = {sock.getsockname()[1] for sock in sockets}
        expected = 3 if sys.platform == "linux" else 1
        assert (len(sockets), len(ports)) == (expected, 1)
        for sock in sockets:
            sock.listen()
        with pytest.raises(ServerSettingsError, match="cannot listen"):
            listen_sockets("127.0.0.1", ports.pop(), 1)  # taken, and not shared
    finally:
        for sock in sockets:
            sock.close()


def test_very_deep_paths_answer_like_opa(http: requests.Session, shipped: tuple[str, str]) -> None:
    """A path of 600 segments: indexed in Python past MAX_QUERY_DEPTH (regorus could not
    parse the query: a 500), undefined here, as OPA answers."""
    _, url = shipped
    response = http.post(f"{url}/v1/data/attestpolicy/" + "/".join(["x"] * 600), json={"input": {}})
    assert response.status_code == 200, response.text
    assert response.json() == {}
