"""PolicyDecisionPoint.adecide / adecide_evidence: the executor, deadlines, fail-closed paths.

Slow decisions are real: a policy that makes the engine count through a large range
(tests/pep/slow_policy.py), and a real ``serve`` behind a proxy on 127.0.0.1 that holds each
answer back.
"""

from __future__ import annotations

import asyncio
import copy
import http.client
import http.server
import json
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pep.slow_policy import SLOW_AUDIENCE, slow_pdp
from serving import BackgroundServer

from attestpolicy import ClaimSet, Decision, PolicyDecisionPoint
from attestpolicy.pdp import ASYNC_WORKERS, TIMEOUT_CODE
from attestpolicy.server import create_app, load_evaluator

EXAMPLES = Path(__file__).resolve().parent.parent / "attestpolicy" / "examples"


def _with_audience(claims: Mapping[str, Any], audience: str) -> dict[str, Any]:
    changed = copy.deepcopy(dict(claims))
    changed["request"]["audience"] = audience
    return changed


@pytest.fixture
def pdp(example_config: dict[str, Any]) -> Iterator[PolicyDecisionPoint]:
    with PolicyDecisionPoint.local(config=example_config) as decision_point:
        yield decision_point


def _same(left: Decision, right: Decision) -> bool:
    fields = ("allow", "ttl_seconds", "reasons", "ttl_bound_by", "valid_until", "revocable")
    return all(getattr(left, name) == getattr(right, name) for name in fields)


def _executor_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("attestpolicy-adecide")]


# --- the same decisions as decide() ----------------------------------------------


def test_adecide_decides_as_decide(pdp: PolicyDecisionPoint, claims: dict[str, Any]) -> None:
    unknown = _with_audience(claims, "nobody")

    async def main() -> list[Decision]:
        forms: list[Any] = [claims, json.dumps(claims), json.dumps(claims).encode()]
        forms += [ClaimSet.parse(claims), unknown, claims]  # the last one is a hit
        return [await pdp.adecide(form) for form in forms]

    decisions = asyncio.run(main())
    assert all(_same(decision, pdp.decide(claims)) for decision in decisions[:4])
    assert decisions[0].allow
    assert decisions[0].ttl_seconds == 900
    assert "request.unknown_audience" in decisions[4].reason_codes
    assert _same(decisions[5], decisions[0])
    stats = pdp.cache_stats()
    assert stats is not None
    assert stats.hits >= 1


def test_now_override_and_revocation_reach_adecide(
    pdp: PolicyDecisionPoint, claims: dict[str, Any]
) -> None:
    async def main() -> tuple[Decision, Decision, Decision]:
        late = await pdp.adecide(claims, now=datetime(2026, 11, 22, 11, 0, tzinfo=UTC))
        allowed = await pdp.adecide(claims)
        pdp.revoke(spiffe_id=claims["subject"]["spiffe_id"])
        return late, allowed, await pdp.adecide(claims)  # the cached allow is gone

    late, allowed, revoked = asyncio.run(main())
    assert "node.stale" in late.reason_codes
    assert allowed.allow
    assert "subject.revoked" in revoked.reason_codes


def test_with_a_revocation_store_the_lookup_runs_on_the_executor(
    example_config: dict[str, Any], claims: dict[str, Any], tmp_path: Path
) -> None:
    store = tmp_path / "revocations.sqlite"
    with (
        PolicyDecisionPoint.local(config=example_config, revocations=store) as pdp,
        PolicyDecisionPoint.local(config=example_config, revocations=store) as other,
    ):

        async def main() -> tuple[Decision, Decision]:
            first = await pdp.adecide(claims)
            await pdp.adecide(claims)  # a hit
            other.revoke(image_digest=claims["image"]["digest"])  # another handle on the file
            return first, await pdp.adecide(claims)

        first, after = asyncio.run(main())
    assert first.allow
    assert "image.revoked" in after.reason_codes


# --- never raises -------------------------------------------------------------------


class _Unreadable(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("unreadable")

    def __iter__(self) -> Iterator[str]:
        return iter(["subject"])

    def __len__(self) -> int:
        return 1


@pytest.mark.parametrize("cache", [True, False])
def test_bad_claims_and_deadlines_are_denies(
    example_config: dict[str, Any], claims: dict[str, Any], cache: bool
) -> None:
    with PolicyDecisionPoint.local(config=example_config, cache=cache) as pdp:

        async def main() -> list[Decision]:
            bad_claims: list[Any] = [42, _Unreadable(), b"\xff", "{", {"subject": None}]
            decisions = [await pdp.adecide(bad) for bad in bad_claims]
            for deadline in (float("nan"), "1", True):
                decisions.append(await pdp.adecide(claims, deadline=deadline))  # type: ignore[arg-type]
            return decisions

        decisions = asyncio.run(main())
    assert all(d.reason_codes == ("input.invalid",) for d in decisions), decisions
    assert "deadline must be a number of seconds" in decisions[-1].reasons[0].message


def test_a_passed_deadline_denies_and_inf_waits(
    pdp: PolicyDecisionPoint, claims: dict[str, Any]
) -> None:
    async def main() -> list[Decision]:
        return [await pdp.adecide(claims, deadline=d) for d in (0, -1.0, float("inf"))]

    zero, negative, unbounded = asyncio.run(main())
    assert zero.reason_codes == negative.reason_codes == (TIMEOUT_CODE,)
    assert zero.reasons[0].message == "no decision within the 0 s deadline"
    assert unbounded.allow


# --- deadlines with a slow decision, in each engine ---------------------------------


def test_deadline_passed_is_engine_timeout(
    engine: str, claims: dict[str, Any], tmp_path: Path
) -> None:
    slow = _with_audience(claims, SLOW_AUDIENCE)
    with slow_pdp(tmp_path, engine, cache=False) as pdp:

        async def main() -> tuple[Decision, Decision, Decision]:
            timed_out = await pdp.adecide(slow, deadline=0.05)
            fast = await pdp.adecide(claims, deadline=30)
            whole = await pdp.adecide(slow, deadline=60)
            return timed_out, fast, whole

        timed_out, fast, whole = asyncio.run(main())
    assert not timed_out.allow
    assert timed_out.reason_codes == (TIMEOUT_CODE,)
    assert timed_out.reasons[0].message == "no decision within the 0.05 s deadline"
    assert timed_out.policy_revision == fast.policy_revision
    assert fast.allow
    assert whole.allow


def test_the_loop_keeps_running_during_an_opa_engine_evaluation(
    claims: dict[str, Any], tmp_path: Path, requires_opa: None
) -> None:
    """OPA's engine is called through ctypes, which lets go of the GIL. (regorus holds it
    for the whole evaluation: docs/pep.md says what that means for a service.)"""
    with slow_pdp(tmp_path, "opa", cache=False) as pdp:
        ticks, started, ended = asyncio.run(
            _ticking_while(pdp, _with_audience(claims, SLOW_AUDIENCE))
        )
    assert sum(1 for tick in ticks if started < tick < ended) >= 5


async def _ticking_while(
    pdp: PolicyDecisionPoint, claims: Mapping[str, Any]
) -> tuple[list[float], float, float]:
    """Run one adecide beside a 10 ms ticker: (tick times, decision start, decision end)."""
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    started = time.monotonic()
    decision = await pdp.adecide(claims)
    ended = time.monotonic()
    task.cancel()
    assert decision.allow, decision.reasons
    return ticks, started, ended


# --- remote: the same executor, the evaluator's own deadline ------------------------


class _DelayingProxy(http.server.ThreadingHTTPServer):
    """Forwards each POST to ``upstream`` after ``delay`` seconds (127.0.0.1)."""

    daemon_threads = True

    def __init__(self, upstream_port: int, delay: float) -> None:
        super().__init__(("127.0.0.1", 0), _DelayingHandler)
        self.upstream_port = upstream_port
        self.delay_seconds = delay


class _DelayingHandler(http.server.BaseHTTPRequestHandler):
    server: _DelayingProxy
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.server.delay_seconds)
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=10)
        upstream.request("POST", self.path, body, {"Content-Type": "application/json"})
        answer = upstream.getresponse()
        data = answer.read()
        upstream.close()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # stdlib name
        """Quiet."""


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """``serve``'s app with the example configuration, on 127.0.0.1."""
    loaded = load_evaluator(config_path=EXAMPLES / "config.json")
    try:
        with BackgroundServer(create_app(loaded)) as server:
            yield server.url
    finally:
        loaded.close()


@pytest.fixture
def slow_url(served: str) -> Iterator[str]:
    """``served`` behind a proxy that holds each answer back for 0.4 s."""
    proxy = _DelayingProxy(int(served.rsplit(":", 1)[1]), 0.4)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{proxy.server_address[1]}"
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=10)


def test_remote_adecide_allows_and_hits(served: str, claims: dict[str, Any]) -> None:
    with PolicyDecisionPoint.remote(served, cache=True) as pdp:

        async def main() -> list[Decision]:
            return [await pdp.adecide(claims, deadline=5) for _ in range(3)]

        decisions = asyncio.run(main())
        stats = pdp.cache_stats()
    assert decisions[0].allow
    assert all(_same(decision, decisions[0]) for decision in decisions)
    # the first answer names the server's bundle revision: the second is cached under it
    assert stats is not None
    assert (stats.misses, stats.hits) == (2, 1)


def test_remote_deadline_and_the_loop_stays_free(slow_url: str, claims: dict[str, Any]) -> None:
    with PolicyDecisionPoint.remote(slow_url, read_timeout=5.0) as pdp:
        ticks, started, ended = asyncio.run(_ticking_while(pdp, claims))

        async def main() -> Decision:
            return await pdp.adecide(claims, deadline=0.1)

        timed_out = asyncio.run(main())
    assert sum(1 for tick in ticks if started < tick < ended) >= 5
    assert timed_out.reason_codes == (TIMEOUT_CODE,)
    assert timed_out.policy_revision.startswith("remote:")


def test_a_hit_is_answered_while_every_worker_is_busy(
    slow_url: str, claims: dict[str, Any]
) -> None:
    with PolicyDecisionPoint.remote(slow_url, cache=True, read_timeout=5.0) as pdp:

        async def main() -> tuple[Decision, Decision, list[Decision]]:
            for _ in range(2):  # the first answer names the server's bundle revision
                assert (await pdp.adecide(claims)).allow
            busy = [
                asyncio.create_task(pdp.adecide(_with_audience(claims, f"busy-{i}")))
                for i in range(ASYNC_WORKERS)
            ]
            await asyncio.sleep(0.1)  # every worker waits for the server
            hit = await pdp.adecide(claims, deadline=0.05)
            queued = await pdp.adecide(_with_audience(claims, "queued"), deadline=0.05)
            return hit, queued, await asyncio.gather(*busy)

        hit, queued, busy = asyncio.run(main())
    assert hit.allow
    assert queued.reason_codes == (TIMEOUT_CODE,)
    assert all("request.unknown_audience" in decision.reason_codes for decision in busy)


def test_remote_evaluator_deadline_still_applies(slow_url: str, claims: dict[str, Any]) -> None:
    with PolicyDecisionPoint.remote(slow_url, deadline=0.1) as pdp:
        decision = asyncio.run(pdp.adecide(claims, deadline=30))
    assert decision.reason_codes == ("remote.error",)
    assert "deadline exceeded" in decision.reasons[0].message


# --- evidence ------------------------------------------------------------------------


def test_adecide_evidence_verifies_and_decides() -> None:
    from attestpolicy._demo import EVIDENCE_NONCE, EVIDENCE_TIME
    from attestpolicy.evidence.document import load_evidence_document, load_trust_config

    config = json.loads((EXAMPLES / "evidence-config.json").read_text())
    trust = load_trust_config((EXAMPLES / "trust.json").read_bytes())
    allow = load_evidence_document((EXAMPLES / "evidence" / "allow-eks-workload.json").read_bytes())
    wrong = load_evidence_document((EXAMPLES / "evidence" / "deny-wrong-signer.json").read_bytes())
    with PolicyDecisionPoint.local(config=config) as pdp:

        async def main() -> list[Decision]:
            kwargs: dict[str, Any] = {"now": EVIDENCE_TIME, "nonce": EVIDENCE_NONCE}
            return [
                await pdp.adecide_evidence(allow, trust, **kwargs, deadline=60),
                await pdp.adecide_evidence(wrong, trust, **kwargs),
                await pdp.adecide_evidence(allow, trust, **kwargs, deadline=0),
                await pdp.adecide_evidence({"not": "evidence"}, trust, **kwargs),
                await pdp.adecide_evidence(allow, trust, **kwargs, deadline=float("nan")),
            ]

        allowed, wrong_signer, timed_out, malformed, bad_deadline = asyncio.run(main())
        expected = pdp.decide_evidence(allow, trust, now=EVIDENCE_TIME, nonce=EVIDENCE_NONCE)
        expected_wrong = pdp.decide_evidence(wrong, trust, now=EVIDENCE_TIME, nonce=EVIDENCE_NONCE)
    assert allowed.allow
    assert _same(allowed, expected)
    assert not wrong_signer.allow
    assert _same(wrong_signer, expected_wrong)
    assert timed_out.reason_codes == (TIMEOUT_CODE,)
    assert not malformed.allow
    assert malformed.reason_codes[0].startswith("evidence.")
    assert bad_deadline.reason_codes == ("input.invalid",)


# --- lifecycle -----------------------------------------------------------------------


def test_close_stops_the_threads_and_later_calls_deny(
    example_config: dict[str, Any], claims: dict[str, Any]
) -> None:
    pdp = PolicyDecisionPoint.local(config=example_config, cache=False)
    assert asyncio.run(pdp.adecide(claims)).allow
    assert _executor_threads()
    pdp.close()
    assert not _executor_threads()
    after = asyncio.run(pdp.adecide(claims))
    assert after.reason_codes == ("engine.error",)
    assert "closed" in after.reasons[0].message
    assert not _executor_threads()


def test_close_while_decisions_wait_denies_them(slow_url: str, claims: dict[str, Any]) -> None:
    pdp = PolicyDecisionPoint.remote(slow_url, read_timeout=5.0)

    async def main() -> list[Decision]:
        waiting = [asyncio.create_task(pdp.adecide(claims)) for _ in range(ASYNC_WORKERS * 3)]
        await asyncio.sleep(0.1)  # every worker waits for the server, the rest queue
        await asyncio.to_thread(pdp.close)
        return await asyncio.gather(*waiting)

    decisions = asyncio.run(main())
    assert [d.allow for d in decisions[:ASYNC_WORKERS]] == [True] * ASYNC_WORKERS
    closed = decisions[ASYNC_WORKERS:]
    assert all(d.reasons[0].message == "the decision point was closed" for d in closed)
    assert not _executor_threads()


def test_cancelling_the_caller_cancels(slow_url: str, claims: dict[str, Any]) -> None:
    with PolicyDecisionPoint.remote(slow_url, read_timeout=5.0) as pdp:

        async def main() -> None:
            task = asyncio.create_task(pdp.adecide(claims, deadline=10))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
