"""Each limit of ``serve`` (security issue 9, finding 4), one at a time, over real loopback.

The servers are real (uvicorn on 127.0.0.1 with the real regorus engine); to hold an
evaluation open for as long as a test needs, :class:`HeldEvaluator` makes paths under
``held/`` wait for the test's signal before evaluating.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from serving import BackgroundServer, serve_cli

from attestpolicy._server_api import _cannot_be_oversized, _oversized
from attestpolicy._server_lanes import Lane
from attestpolicy.cli import build_parser, main
from attestpolicy.engine.local import LocalEvaluator
from attestpolicy.policy import PolicySource
from attestpolicy.server import (
    HTTP_PARSERS,
    ServerLimits,
    ServerSettingsError,
    create_app,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
POLICY = """\
package attestpolicy.v1

decision := {"allow": true, "ttl_seconds": 60} if input.mode == "allow"

echo := input
"""
ALLOW = {"input": {"mode": "allow"}}
DECISION = "/v1/data/attestpolicy/v1/decision"
HELD = "/v1/data/held"
PARSERS = sorted(HTTP_PARSERS)
WAIT = 30.0  # seconds: the longest any step may take before the test fails


class HeldEvaluator(LocalEvaluator):
    """regorus, except that a path under ``held/`` waits for :attr:`go` first."""

    def __init__(self, source: PolicySource) -> None:
        super().__init__(source)
        self.go = threading.Event()
        self.entered = threading.Semaphore(0)

    def evaluate_path(self, path: str, policy_input: Any | None) -> tuple[bool, Any]:
        if path.startswith("held"):
            self.entered.release()
            self.go.wait(WAIT)
        return super().evaluate_path(path, policy_input)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> PolicySource:
    directory = tmp_path_factory.mktemp("limits")
    (directory / "policy.rego").write_text(POLICY)
    return PolicySource.from_directory(directory)


@pytest.fixture
def serve(source: PolicySource) -> Iterator[Callable[..., Any]]:
    """``serve(**limits)`` -> (url, evaluator): a server with those limits (and the HTTP
    parser ``http_parser``, default httptools as ``serve``)."""
    evaluators: list[HeldEvaluator] = []

    @contextmanager
    def start(
        *, http_parser: Literal["httptools", "h11"] = "httptools", **limits: Any
    ) -> Iterator[tuple[str, HeldEvaluator]]:
        evaluator = HeldEvaluator(source)
        evaluators.append(evaluator)
        settings = ServerLimits(**limits)
        app = create_app(evaluator, limits=settings)
        with BackgroundServer(app, limits=settings, http_parser=http_parser) as server:
            try:
                yield server.url, evaluator
            finally:
                evaluator.go.set()

    yield start
    for evaluator in evaluators:
        evaluator.go.set()
        evaluator.close()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(8) as executor:
        yield executor


def _post(url: str, body: Any, *, timeout: float = WAIT) -> requests.Response:
    """POST ``body`` (JSON, or bytes or an iterator of bytes as they are) on a new connection."""
    data = json.dumps(body).encode() if isinstance(body, dict | list) else body
    with requests.Session() as session:
        session.trust_env = False
        return session.post(url, data=data, timeout=timeout)


def _hold(pool: ThreadPoolExecutor, evaluator: HeldEvaluator, url: str) -> Future[Any]:
    """POST to a held path and wait until its evaluation has started."""
    pending = pool.submit(_post, url, {"input": {"pad": "x" * 2000}})
    assert evaluator.entered.acquire(timeout=WAIT), "the held evaluation never started"
    return pending


def _opa_error(response: requests.Response, status: int, fragment: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == ("internal_error" if status >= 500 else "invalid_parameter")
    assert fragment in body["message"]
    return body


def _eventually(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, "condition never reached"
        time.sleep(0.05)


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=WAIT)


def _closed_by_server(sock: socket.socket) -> bool:
    """Read until the server closes the connection (True), or WAIT passes (False)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def _read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and body of one HTTP answer on a raw socket."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


# --- evaluation lanes --------------------------------------------------------------


def test_evaluation_runs_off_the_event_loop(
    serve: Callable[..., Any], pool: ThreadPoolExecutor
) -> None:
    with serve(eval_threads=2) as (url, evaluator):
        held = _hold(pool, evaluator, url + HELD)
        # While that evaluation waits, the loop and the other thread still answer.
        assert requests.get(url + "/health", timeout=5).json() == {}
        answer = _post(url + DECISION, ALLOW, timeout=5)
        assert answer.json() == {"result": {"allow": True, "ttl_seconds": 60}}
        evaluator.go.set()
        assert held.result(WAIT).status_code == 200


def test_a_full_lane_answers_503_at_once(
    serve: Callable[..., Any], pool: ThreadPoolExecutor
) -> None:
    with serve(eval_threads=1, max_evaluations=1) as (url, evaluator):
        held = _hold(pool, evaluator, url + HELD)
        busy = _post(url + DECISION, ALLOW)
        body = _opa_error(busy, 503, "server busy")
        assert "max_evaluations" in body["message"]
        assert busy.headers["Retry-After"] == "1"
        evaluator.go.set()
        assert held.result(WAIT).status_code == 200
        assert _post(url + DECISION, ALLOW).status_code == 200


def test_a_lane_counts_the_requests_waiting_for_a_thread() -> None:
    lane = Lane("small", threads=1, capacity=2)
    go = threading.Event()

    async def run_two() -> list[bool]:
        first, second = lane.admit(), lane.admit()
        assert first is not None
        assert second is not None
        assert lane.admit() is None  # one running, one waiting for the thread: full
        tasks = [asyncio.create_task(slot.run(WAIT, go.wait, WAIT)) for slot in (first, second)]
        await asyncio.sleep(0)
        go.set()
        return list(await asyncio.gather(*tasks))

    try:
        assert asyncio.run(run_two()) == [True, True]
        _eventually(lambda: lane.admitted == 0)
    finally:
        lane.close()


def test_eval_timeout_answers_503_and_the_evaluation_keeps_its_place(
    serve: Callable[..., Any], pool: ThreadPoolExecutor
) -> None:
    with serve(eval_threads=1, max_evaluations=1, eval_timeout=0.5) as (url, evaluator):
        late = pool.submit(_post, url + HELD, {"input": {}})
        body = _opa_error(late.result(WAIT), 503, "no answer within 0.5s (eval_timeout)")
        assert "errors" not in body
        # The evaluation still runs (a thread cannot stop an engine): its place is taken.
        _opa_error(_post(url + DECISION, ALLOW), 503, "server busy")
        evaluator.go.set()
        _eventually(lambda: _post(url + DECISION, ALLOW).status_code == 200)


def test_no_eval_threads_evaluates_on_the_event_loop(serve: Callable[..., Any]) -> None:
    def lane_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith("attestpolicy-small")}

    # An earlier test's server may still be ending its lane threads: only new ones count.
    before = lane_threads()
    with serve(eval_threads=0, max_evaluations=2, max_input_values=5) as (url, _):
        assert not lane_threads() - before
        for _ in range(3):  # each place is given back
            answer = _post(url + DECISION, ALLOW)
            assert answer.json() == {"result": {"allow": True, "ttl_seconds": 60}}
        assert not lane_threads() - before
        _opa_error(_post(url + DECISION, {"input": [1, 2, 3, 4, 5]}), 400, "max_input_values")
        # Over large_body_bytes: the large lane, on its thread.
        padded = {"input": {"mode": "allow", "a": "x" * 40_000, "b": "x" * 40_000}}
        assert _post(url + DECISION, padded).json()["result"]["allow"] is True


def test_large_bodies_have_their_own_lane(
    serve: Callable[..., Any], pool: ThreadPoolExecutor
) -> None:
    large = {"input": {"mode": "allow", "pad": "x" * 2000}}
    with serve(large_body_bytes=1024, max_large_requests=1) as (url, evaluator):
        held = _hold(pool, evaluator, url + HELD)
        # A second large body is refused from its Content-Length, before it is read ...
        refused = _post(url + DECISION, large)
        assert "max_large_requests" in _opa_error(refused, 503, "server busy")["message"]
        assert refused.headers["Connection"] == "close"
        # ... or, sent chunked, as soon as it grows past large_body_bytes.
        blob = json.dumps(large).encode()
        chunked = _post(url + DECISION, iter([blob[:1000], blob[1000:]]))
        _opa_error(chunked, 503, "max_large_requests")
        # So is a GET whose input parameter is as large.
        as_param = {"input": json.dumps(large["input"])}
        refused = requests.get(url + DECISION, params=as_param, timeout=WAIT)
        _opa_error(refused, 503, "max_large_requests")
        # Small requests go on meanwhile.
        assert _post(url + DECISION, ALLOW).status_code == 200
        evaluator.go.set()
        assert held.result(WAIT).status_code == 200
        assert _post(url + DECISION, large).json() == {"result": {"allow": True, "ttl_seconds": 60}}


def test_max_input_values(serve: Callable[..., Any]) -> None:
    with serve(max_input_values=10) as (url, _):
        at_limit = {"input": {"mode": "allow", "list": [1, 2, 3, 4, 5, 6, 7]}}  # 10 values
        assert _post(url + DECISION, at_limit).status_code == 200
        over = {"input": {"mode": "allow", "list": [1, 2, 3, 4, 5, 6, 7, 8]}}
        _opa_error(
            _post(url + DECISION, over),
            400,
            "input refused: it has more than 10 JSON values (max_input_values)",
        )
        param = requests.get(url + DECISION, params={"input": json.dumps(over["input"])}, timeout=5)
        _opa_error(param, 400, "max_input_values")


def test_max_input_string_chars(serve: Callable[..., Any]) -> None:
    with serve(max_input_string_chars=8) as (url, _):
        assert _post(url + DECISION, {"input": {"mode": "allow", "12345678": "x" * 8}}).ok
        for refused in ({"mode": "allow", "s": "x" * 9}, {"mode": "allow", "k" * 9: 1}):
            answer = _post(url + DECISION, {"input": refused})
            _opa_error(answer, 400, "a string longer than 8 characters (max_input_string_chars)")


# --- connections and bodies ----------------------------------------------------------


@pytest.mark.parametrize("parser", PARSERS)
def test_body_timeout_answers_408_and_closes(serve: Callable[..., Any], parser: str) -> None:
    with serve(body_timeout=0.5, http_parser=parser) as (url, _), _connect(url) as sock:
        sock.sendall(
            b"POST /v1/data/attestpolicy/v1/decision HTTP/1.1\r\nHost: t\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n" + b'{"input":'
        )
        status, headers, body = _read_answer(sock)
        assert status == 408
        assert headers["connection"] == "close"
        document = json.loads(body)
        assert document["code"] == "invalid_parameter"
        assert document["message"] == "request body not received within 0.5s (body_timeout)"
        assert _closed_by_server(sock)


def test_a_stalled_large_body_gives_its_place_back(serve: Callable[..., Any]) -> None:
    limits = {"body_timeout": 0.5, "large_body_bytes": 1024, "max_large_requests": 1}
    with serve(**limits) as (url, _), _connect(url) as sock:
        sock.sendall(
            b"POST /v1/data/attestpolicy/v1/decision HTTP/1.1\r\nHost: t\r\n"
            b"Content-Length: 4096\r\n\r\n" + b" " * 2048
        )
        assert _read_answer(sock)[0] == 408
        padded = {"input": {"mode": "allow", "pad": "x" * 2000}}
        assert _post(url + DECISION, padded).status_code == 200


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize(
    "sent",
    [b"", b"GET /health HTTP/1.1\r\n", b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"],
    ids=["nothing", "part of a head", "a request, then nothing"],
)
def test_header_timeout_closes_the_connection(
    serve: Callable[..., Any], sent: bytes, parser: str
) -> None:
    with serve(header_timeout=1, http_parser=parser) as (url, _), _connect(url) as sock:
        sock.sendall(sent)
        if sent.endswith(b"\r\n\r\n"):
            assert _read_answer(sock)[0] == 200
        assert _closed_by_server(sock)


def _closed_while_trickling(sock: socket.socket, data: bytes, pause: float) -> bool:
    """Send ``data`` one byte every ``pause`` s; True once the server has closed."""
    sock.settimeout(pause)
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(1) == b"":
                return True
        except TimeoutError:
            continue  # nothing to read: the connection is still open
        except OSError:  # broken pipe or reset
            return True
    return False


@pytest.mark.parametrize("parser", PARSERS)
def test_header_timeout_is_not_reset_by_each_byte(serve: Callable[..., Any], parser: str) -> None:
    with serve(header_timeout=1, http_parser=parser) as (url, _), _connect(url) as sock:
        slow_head = b"GET /health HTTP/1.1\r\nX-Slow: " + b"a" * int(WAIT / 0.3)
        assert _closed_while_trickling(sock, slow_head, 0.3)


@pytest.mark.parametrize("parser", PARSERS)
def test_header_timeout_spares_a_request_in_progress(
    serve: Callable[..., Any], parser: str
) -> None:
    """Two pipelined requests, the first evaluated for longer than header_timeout: the
    deadline counts from the end of an answer, never while a request is answered."""
    body = json.dumps(ALLOW).encode()
    request = b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s"
    limits = {"header_timeout": 1, "eval_timeout": 5.0}
    with serve(http_parser=parser, **limits) as (url, evaluator), _connect(url) as sock:
        sock.sendall(
            request % (HELD.encode(), len(body), body)
            + request % (DECISION.encode(), len(body), body)
        )
        assert evaluator.entered.acquire(timeout=WAIT)
        time.sleep(1.5)
        evaluator.go.set()
        received = b""
        while chunk := sock.recv(65536):  # both answers, then the close (header_timeout)
            received += chunk
        first, second = received.split(b"HTTP/1.1 ")[1:]
        assert first.startswith(b"200 ")
        assert second.startswith(b"200 ")
        assert json.loads(second.split(b"\r\n\r\n", 1)[1])["result"]["allow"] is True


@pytest.mark.parametrize("parser", PARSERS)
def test_a_request_head_is_at_most_16_kib(serve: Callable[..., Any], parser: str) -> None:
    with serve(http_parser=parser) as (url, _), _connect(url) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n")
        for _ in range(24):  # 24 KiB of headers, a KiB at a time, never ending the head
            try:
                sock.sendall(b"X-Pad: " + b"a" * 1015 + b"\r\n")
            except OSError:  # closed by the server already
                break
            time.sleep(0.01)
        status, headers, _ = _read_answer(sock)
        assert (status, headers["connection"]) == (400, "close")
        assert _closed_by_server(sock)
        # A head just under the bound is answered.
        padded = {f"X-Pad-{n}": "a" * 1000 for n in range(14)}
        assert requests.get(url + "/health", headers=padded, timeout=WAIT).status_code == 200


@pytest.mark.parametrize("parser", PARSERS)
def test_max_connections_answers_503_and_closes(serve: Callable[..., Any], parser: str) -> None:
    with serve(max_connections=3, http_parser=parser) as (url, _):
        idle = [_connect(url) for _ in range(2)]
        try:
            # uvicorn counts every open connection, this one included: 3 reach the limit.
            _eventually(lambda: requests.get(url + "/health", timeout=5).status_code == 503)
            refused = requests.get(url + "/health", timeout=5)
            assert refused.headers["connection"] == "close"
        finally:
            for sock in idle:
                sock.close()
        _eventually(lambda: requests.get(url + "/health", timeout=5).status_code == 200)


def test_lane_threads_stop_with_the_server(serve: Callable[..., Any]) -> None:
    def lane_threads() -> set[threading.Thread]:
        names = ("attestpolicy-small", "attestpolicy-large")
        return {t for t in threading.enumerate() if t.name.startswith(names)}

    before = lane_threads()  # other tests' servers may still be stopping theirs
    with serve(eval_threads=3, max_large_requests=2) as (url, _):
        started = lane_threads() - before
        assert len(started) == 5  # started and warmed up with the app
        assert _post(url + DECISION, ALLOW).status_code == 200
    _eventually(lambda: not any(thread.is_alive() for thread in started))


# --- settings --------------------------------------------------------------------------


def test_limits_round_trip_and_validate() -> None:
    limits = ServerLimits(eval_timeout=0.25, max_connections=7)
    assert ServerLimits.from_json(limits.to_json()) == limits
    assert ServerLimits(eval_threads=0).eval_threads == 0  # on the event loop
    bad_limits = ({"max_evaluations": 0}, {"eval_threads": -1}, {"eval_timeout": float("inf")})
    for bad in (*bad_limits, {"header_timeout": 1.5}):
        with pytest.raises(ServerSettingsError):
            ServerLimits(**bad)
    for text in ("[]", "{", '{"no_such_limit": 1}', '{"max_connections": true}'):
        with pytest.raises(ServerSettingsError):
            ServerLimits.from_json(text)


def test_serve_has_one_flag_per_limit(capsys: pytest.CaptureFixture[str]) -> None:
    from attestpolicy._server_limits import limits_from_arguments

    defaults = build_parser().parse_args(["serve"])
    assert limits_from_arguments(defaults) == ServerLimits()
    given = build_parser().parse_args(["serve", "--max-connections", "9", "--eval-timeout", "2"])
    assert limits_from_arguments(given) == ServerLimits(max_connections=9, eval_timeout=2.0)
    assert main(["serve", "--addr", "127.0.0.1:0", "--max-evaluations", "0"]) == 2
    assert "max_evaluations must be positive" in capsys.readouterr().err


def test_every_limit_is_documented() -> None:
    import dataclasses

    text = (REPO_ROOT / "docs" / "server.md").read_text(encoding="utf-8")
    for item in dataclasses.fields(ServerLimits):
        flag = "--" + item.name.replace("_", "-")
        assert f"| `{item.name}` | `{flag}` |" in text, item.name


def test_serve_workers_apply_the_limits(tmp_path: Path) -> None:
    """``attestpolicy serve --workers 2`` hands every limit to every worker process."""
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "policy.rego").write_text(POLICY)
    args = ["--policy", str(policy), "--workers", "2", "--max-input-values", "3"]
    with serve_cli(tmp_path, *args, "--header-timeout", "1") as (_, url):
        for _ in range(6):  # fresh connections, spread over both workers by the kernel
            _opa_error(_post(url + DECISION, {"input": [1, 2, 3]}), 400, "max_input_values")
            assert _post(url + DECISION, {"input": [1, 2]}).status_code == 200
        with _connect(url) as sock:
            assert _closed_by_server(sock)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=30,
)


@given(_JSON, st.integers(1, 40), st.integers(1, 40))
def test_short_inputs_skip_the_walk_only_when_within_the_limits(
    document: Any, max_values: int, max_chars: int
) -> None:
    """An input whose text is short enough is never walked: it must be within the limits."""
    limits = ServerLimits(max_input_values=max_values, max_input_string_chars=max_chars)
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    for length in (len(text), len(text.encode())):
        if _cannot_be_oversized(length, limits):
            assert _oversized(document, limits) is None
