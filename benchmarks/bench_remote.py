"""Issue 10, goal 6: the remote client against a raw ``http.client`` POST of the same body.

Run from the repository root: ``.venv/bin/python benchmarks/bench_remote.py [--quick]``.

Each client POSTs the realistic claim set's policy input (``{"input": ...}``, the bytes
the remote evaluator sends) to ``/v1/data/attestpolicy/v1/decision?provenance=true`` on
one kept-alive loopback connection, to two servers in turn:

- a minimal server (a thread per connection in its own process, answering every request
  with the same decision document, ``Content-Length`` and keep-alive): the server costs
  next to nothing, so the ratios show the clients' own costs;
- ``attestpolicy serve`` (one worker): the realistic figure, where the server's time
  (a few milliseconds on the shared development machine, mostly the policy's
  evaluation) is part of both sides.

Clients, timed in interleaved rounds so that a noisy neighbour slows them all alike:

- ``raw http.client``: ``HTTPConnection.request`` + ``getresponse().read()`` of a body
  encoded once (no JSON, no validation): the floor;
- ``RemoteEvaluator.evaluate()``: the input (a dict) to a :class:`Decision`;
- ``decide() (cache off)``: ``PolicyDecisionPoint.remote(url, cache=False).decide(claims)``,
  which also validates the claims (:meth:`ClaimSet.parse`) and sets ``now``;
- ``opa-python-client query_rule``: the transport the project first used, through its
  public API (a ``requests`` session); installed for this comparison only, skipped when
  absent.

Reported: p50 and p99 of each, the ratios of the p50s to the raw POST's, and the
in-process parts of a call timed alone. The goal row is ``decide()`` against ``serve``;
its detail adds the minimal server's ratio and what the client adds in microseconds.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import importlib
import io
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from goals import Goal  # noqa: E402  (after the path set-up)
from run import Row, print_table, realistic_claims, serve  # noqa: E402

from attestpolicy import ClaimSet, PolicyDecisionPoint  # noqa: E402
from attestpolicy.claims import format_timestamp  # noqa: E402
from attestpolicy.engine.remote import RemoteEvaluator  # noqa: E402

DECISION_TARGET = "/v1/data/attestpolicy/v1/decision?provenance=true"
TARGET_RATIO = 1.2
OPA_CLIENT_BLOCKER = (
    "its public API has no total deadline and reads bodies whole (no size cap): issue 9"
)


# --- the minimal server ---------------------------------------------------------------


def _serve_connection(conn: socket.socket, response: bytes) -> None:
    """Answer every request on ``conn`` with ``response`` until the client closes it."""
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = b""
    with conn:
        while True:
            end = buffer.find(b"\r\n\r\n")
            while end < 0:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                end = buffer.find(b"\r\n\r\n")
            head, buffer = buffer[:end], buffer[end + 4 :]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buffer) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            buffer = buffer[length:]
            conn.sendall(response)


def run_fixed_server(body_path: str) -> None:
    """The minimal server's process: print its port, then answer until killed."""
    body = Path(body_path).read_bytes()
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_serve_connection, args=(conn, response), daemon=True).start()


@contextlib.contextmanager
def fixed_server(body: bytes, workdir: Path) -> Iterator[str]:
    """The minimal server answering ``body``, in its own process; yield its URL."""
    body_path = workdir / "decision-response.json"
    body_path.write_bytes(body)
    process = subprocess.Popen(
        [sys.executable, __file__, "--fixed-server", str(body_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(timeout=30)


# --- the clients ----------------------------------------------------------------------


def _raw_client(url: str, body: bytes) -> Callable[[], object]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port))
    headers = {"Content-Type": "application/json", "Accept": "application/json"}

    def post() -> bytes:
        connection.request("POST", DECISION_TARGET, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"raw POST: HTTP {response.status}")
        return payload

    return post


def _opa_client(url: str, policy_input: dict[str, Any]) -> Callable[[], object] | None:
    try:  # untyped, and not a dependency: through importlib, as Any
        opa = importlib.import_module("opa_client.opa")
    except ImportError:
        return None
    host, port = url.removeprefix("http://").split(":")
    client = opa.OpaClient(host=host, port=int(port))

    def query() -> object:
        return client.query_rule(
            policy_input, "attestpolicy/v1", "decision", query_params={"provenance": True}
        )

    return query


def clients(url: str, claims: dict[str, Any]) -> dict[str, Callable[[], object]]:
    """Every client of the comparison, each checked once (an allow) against ``url``."""
    policy_input = ClaimSet.parse(claims).to_input()
    policy_input["now"] = format_timestamp(datetime.now(UTC))
    body = json.dumps({"input": policy_input}, allow_nan=False, separators=(",", ":")).encode()
    evaluator = RemoteEvaluator(url)
    pdp = PolicyDecisionPoint.remote(url, cache=False)
    operations: dict[str, Callable[[], object]] = {
        "raw http.client": _raw_client(url, body),
        "RemoteEvaluator.evaluate()": lambda: evaluator.evaluate(
            policy_input, evaluated_at=datetime.now(UTC)
        ),
        "decide() (cache off)": lambda: pdp.decide(claims),
    }
    opa = _opa_client(url, policy_input)
    if opa is not None:
        operations["opa-python-client query_rule"] = opa
    for name, operation in operations.items():
        answer = operation()
        allowed = getattr(answer, "allow", None)
        if isinstance(answer, bytes | dict):
            document = json.loads(answer) if isinstance(answer, bytes) else answer
            allowed = document["result"]["allow"]
        if allowed is not True:
            raise RuntimeError(f"{name} was not answered with an allow: {answer!r}")
    return operations


def time_interleaved(
    operations: dict[str, Callable[[], object]], rounds: int, per_round: int
) -> list[Row]:
    """``rounds`` rounds of ``per_round`` calls of each operation in turn; p50 and p99."""
    timings: dict[str, list[int]] = {name: [] for name in operations}
    clock = time.perf_counter_ns
    for operation in operations.values():  # warm-up
        for _ in range(per_round):
            operation()
    for _ in range(rounds):
        for name, operation in operations.items():
            samples = timings[name]
            for _ in range(per_round):
                start = clock()
                operation()
                samples.append(clock() - start)
    result = []
    for name, samples in timings.items():
        samples.sort()
        result.append(
            Row(
                name,
                len(samples),
                samples[len(samples) // 2] / 1000,
                samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1000,
            )
        )
    return result


def print_timings(title: str, timings: list[Row]) -> None:
    """One table (p50, p99), then each p50 over the raw POST's."""
    print_table(title, timings)
    raw = next(t for t in timings if t.name == "raw http.client")
    for t in timings:
        if t is not raw:
            print(f"  {t.name} / raw http.client (p50): {t.p50_us / raw.p50_us:.2f}x")


def _ratio(timings: list[Row], name: str) -> tuple[float, str]:
    by_name = {t.name: t for t in timings}
    raw, measured = by_name["raw http.client"], by_name[name]
    detail = (
        f"p50 {measured.p50_us:.0f} us vs {raw.p50_us:.0f} us, "
        f"p99 {measured.p99_us:.0f} us vs {raw.p99_us:.0f} us"
    )
    return measured.p50_us / raw.p50_us, detail


def measure(quick: bool) -> tuple[list[Row], list[Row], list[Row]]:
    """The comparison against ``attestpolicy serve``, then against the minimal server,
    then the in-process parts."""
    import tempfile

    claims = realistic_claims()
    rounds = 10 if quick else 40
    with serve(workers=1) as url:
        operations = clients(url, claims)
        realistic = time_interleaved(operations, rounds, 20)
        # The minimal server answers what serve answered for this claim set.
        response = operations["raw http.client"]()
        assert isinstance(response, bytes)
    with tempfile.TemporaryDirectory() as workdir, fixed_server(response, Path(workdir)) as url:
        minimal = time_interleaved(clients(url, claims), rounds * 3, 50)
    return realistic, minimal, client_parts(claims, response, 2000 if quick else 10000)


def client_parts(claims: dict[str, Any], answer: bytes, samples: int) -> list[Row]:
    """The in-process parts of one remote decide(), each timed alone (no I/O)."""
    from attestpolicy._json import loads_strict
    from attestpolicy.decision import decision_from_policy_result

    now = datetime.now(UTC)
    policy_input = ClaimSet.parse(claims).to_input()
    policy_input["now"] = format_timestamp(now)
    encoder = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
    result = json.loads(answer)["result"]
    parts: dict[str, Callable[[], object]] = {
        "ClaimSet.parse + to_input (pdp)": lambda: ClaimSet.parse(claims).to_input(),
        "JSON encode of the input": lambda: encoder.encode({"input": policy_input}).encode(),
        "loads_strict of the answer": lambda: loads_strict(answer),
        "decision_from_policy_result": lambda: decision_from_policy_result(
            result, policy_revision="remote:x", evaluated_at=now
        ),
        "http.client response parse": functools.partial(_parse_response, answer),
    }
    return time_interleaved(parts, 10, samples // 10)


def _parse_response(body: bytes) -> bytes:
    """http.client's parse of a 200 answer with ``body`` (as the client and raw POST do)."""

    class _Socket:
        def makefile(self, mode: str) -> io.BufferedReader:
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            length = b"Content-Length: %d\r\n\r\n" % len(body)
            return io.BufferedReader(io.BytesIO(head + length + body))

    response = http.client.HTTPResponse(_Socket(), method="POST")  # type: ignore[arg-type]
    response.begin()
    return response.read()


def goals_from(realistic: list[Row], minimal: list[Row]) -> list[Goal]:
    """The goal row (decide() against serve) and the rows that explain it."""
    rows = []
    ratio, detail = _ratio(realistic, "decide() (cache off)")
    alone, _ = _ratio(minimal, "decide() (cache off)")
    raw_alone = next(t.p50_us for t in minimal if t.name == "raw http.client")
    detail += (
        f"; against a minimal server {alone:.2f}x "
        f"(+{(alone - 1) * raw_alone:.0f} us over {raw_alone:.0f} us)"
    )
    rows.append(
        Goal("remote client: decide() / raw http.client POST", ratio, TARGET_RATIO, detail=detail)
    )
    names = {t.name for t in realistic}
    if "opa-python-client query_rule" in names:
        ratio, detail = _ratio(realistic, "opa-python-client query_rule")
        rows.append(
            Goal(
                "opa-python-client query_rule / raw http.client POST",
                ratio,
                TARGET_RATIO,
                detail=detail,
                blocker=OPA_CLIENT_BLOCKER,
            )
        )
    return rows


def goals(quick: bool) -> list[Goal]:
    """Goal 6 from one run (the tables are printed too)."""
    realistic, minimal, parts = measure(quick)
    print_timings("remote clients against attestpolicy serve (1 worker)", realistic)
    print_timings("remote clients against a minimal fixed-answer server", minimal)
    print_table("in-process parts of a remote decide() (each alone, no I/O)", parts)
    return goals_from(realistic, minimal)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fixed-server"]:
        run_fixed_server(sys.argv[2])
    else:
        for goal in goals(quick="--quick" in sys.argv):
            print(goal.line())
