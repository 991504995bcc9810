"""Upload to a log collector on 127.0.0.1 speaking OPA's decision log API: gzip batches
with the masked fields absent; a collector that is down, hangs or refuses; recovery."""

from __future__ import annotations

import copy
import gzip
import json
import socket
from typing import Any

import pytest
from decisionlog.helpers import Collector

from attestpolicy import PolicyDecisionPoint
from attestpolicy._demo_evidence import fresh_evidence
from attestpolicy.decisionlog import DecisionLogConfigError, DecisionLogger, HttpSink

SIGNATURE = "dev.cosignproject.cosign/signature"


def _free_port() -> int:
    """A port nothing listens on (a collector that is down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _deny_claims(claims: dict[str, Any]) -> dict[str, Any]:
    denied = copy.deepcopy(claims)
    denied["subject"]["spiffe_id"] = "spiffe://prod.example.com/ns/unknown/sa/nobody"
    return denied


def test_gzip_batches_reach_the_collector_masked(
    collector: Collector, engine: str, claims: dict[str, Any], example_config: dict[str, Any]
) -> None:
    fresh = fresh_evidence()
    sink = HttpSink(collector.url, token="s3cret", upload_interval=0.05)
    with (
        PolicyDecisionPoint.local(config=example_config, engine=engine) as pdp,
        DecisionLogger(sink) as logger,
    ):
        pdp.add_observer(logger)
        decisions = [pdp.decide(claims), pdp.decide(_deny_claims(claims))]
        query_id = logger.log_query(
            "attestpolicy/v1/decision", fresh.document, {"allow": True}, revision="r", eval_ns=9
        )
        assert logger.flush(30)
        stats = logger.stats()
    assert (stats.written, stats.dropped, stats.failed) == (3, 0, 0)
    uploads = collector.received
    assert uploads
    for upload in uploads:
        assert upload.path == "/logs"
        assert upload.headers["Content-Encoding"] == "gzip"
        assert upload.headers["Content-Type"] == "application/json"
        assert upload.headers["Authorization"] == "Bearer s3cret"
        assert upload.body[:2] == b"\x1f\x8b"  # gzip on the wire
    events = collector.delivered()
    ids = [d.decision_id for d in decisions] + [query_id]
    assert [e["decision_id"] for e in events] == ids
    assert events[0]["attestpolicy"]["cache"] == "miss"
    assert events[1]["attestpolicy"]["reason_codes"] == list(decisions[1].reason_codes)
    raw = b"".join(gzip.decompress(upload.body) for upload in uploads).decode()
    cosign = fresh.document["image"]["cosign"][0]["signature"]
    assert cosign["annotations"][SIGNATURE] not in raw  # masked before it left the process
    assert fresh.document["runtime"]["x509_svid"]["chain"] not in raw
    assert "/input/image/cosign/0/signature" in events[2]["erased"]


def test_batches_stay_under_the_compressed_limit(collector: Collector) -> None:
    sink = HttpSink(f"{collector.url}/prefix", resource="/v1/logs", batch_bytes=2048)
    with DecisionLogger(sink, masks=()) as logger:
        # random-looking input compresses poorly, so several batches are needed
        ids = [
            logger.log_query(
                "p",
                {"blob": f"{n:04d}" + json.dumps(list(range(n, n + 150)))},
                n,
                revision="r",
                eval_ns=n,
            )
            for n in range(60)
        ]
        big = logger.log_query(
            "p", {"blob": "".join(chr(0x4E00 + i) for i in range(9000))}, 0, revision="r", eval_ns=0
        )
        assert logger.flush(30)
        stats = logger.stats()
    assert len(collector.received) > 2
    assert all(upload.path == "/prefix/v1/logs" for upload in collector.received)
    assert all(len(upload.body) <= 2048 for upload in collector.received)
    assert [e["decision_id"] for e in collector.delivered()] == ids  # once each, in order
    assert big not in {e["decision_id"] for e in collector.delivered()}
    assert (stats.written, stats.failed) == (60, 1)  # too large alone: dropped as failed


def test_collector_down_bounded_buffer_then_it_comes_back(
    claims: dict[str, Any], example_config: dict[str, Any]
) -> None:
    port = _free_port()
    with PolicyDecisionPoint.local(config=example_config) as plain:
        expected = [
            plain.decide(claims).allow if n % 2 else plain.decide(_deny_claims(claims)).allow
            for n in range(20)
        ]
    # a long interval and a large batch: nothing is tried until flush(), so the counts
    # below are exact
    sink = HttpSink(
        f"http://127.0.0.1:{port}", buffer_size=5, upload_interval=3600, batch_bytes=1 << 20
    )
    logger = DecisionLogger(sink)
    collector = Collector()
    try:
        with PolicyDecisionPoint.local(config=example_config) as pdp:
            pdp.add_observer(logger)
            decisions = [
                pdp.decide(claims) if n % 2 else pdp.decide(_deny_claims(claims)) for n in range(20)
            ]
            assert [d.allow for d in decisions] == expected  # the same answers
            assert not logger.flush(0.5)  # the collector is down: not delivered
            stats = logger.stats()
            assert (stats.dropped, stats.written, stats.failed) == (15, 0, 0)
            assert stats.sinks[0].pending == 5
            collector.start(port)  # the collector comes back
            assert logger.flush(30)
            later = pdp.decide(claims)
            assert logger.flush(30)
    finally:
        logger.close()
        collector.stop()
    delivered = [e["decision_id"] for e in collector.delivered()]
    assert delivered == [d.decision_id for d in decisions[-5:]] + [later.decision_id]
    stats = logger.stats()
    assert (stats.written, stats.dropped, stats.failed) == (6, 15, 0)


def test_errors_are_retried_with_backoff_until_delivered(collector: Collector) -> None:
    collector.script.extend([503, 500, 429])
    sink = HttpSink(collector.url, upload_interval=0.01, min_backoff=0.01, max_backoff=0.05)
    with DecisionLogger(sink) as logger:
        ids = [logger.log_query("p", {"n": n}, n, revision="r", eval_ns=1) for n in range(3)]
        assert logger.flush(30)
        stats = logger.stats()
    assert [upload.status for upload in collector.received][:3] == [503, 500, 429]
    assert [e["decision_id"] for e in collector.delivered()] == ids  # once each, in order
    assert (stats.written, stats.failed, stats.dropped) == (3, 0, 0)


def test_a_hung_collector_delays_no_decision(
    collector: Collector, engine: str, claims: dict[str, Any], example_config: dict[str, Any]
) -> None:
    collector.gate.clear()  # the collector reads the request, then never answers
    sink = HttpSink(collector.url, upload_interval=0.01, timeout=60)
    logger = DecisionLogger(sink)
    try:
        with PolicyDecisionPoint.local(config=example_config, engine=engine) as pdp:
            pdp.add_observer(logger)
            first = pdp.decide(claims)
            assert collector.arrived.wait(30)  # the upload is under way, and hangs
            decisions = [pdp.decide(claims) for _ in range(20)]
            assert not collector.gate.is_set()  # answered while the collector still hangs
            assert all(d.allow for d in decisions)
            assert first.allow
            collector.gate.set()
            assert logger.flush(30)
    finally:
        collector.gate.set()
        logger.close()
    delivered = [e["decision_id"] for e in collector.delivered()]
    assert delivered == [first.decision_id] + [d.decision_id for d in decisions]


def test_a_rejected_batch_is_not_retried(collector: Collector) -> None:
    collector.status = 400
    sink = HttpSink(collector.url, upload_interval=0.01, min_backoff=0.01)
    with DecisionLogger(sink) as logger:
        logger.log_query("p", {}, True, revision="r", eval_ns=1)
        assert logger.flush(30)
        stats = logger.stats()
    assert len(collector.received) == 1
    assert (stats.written, stats.failed) == (0, 1)


def test_a_redirect_is_not_followed(collector: Collector) -> None:
    collector.status = 307
    with DecisionLogger(HttpSink(collector.url, upload_interval=0.01)) as logger:
        logger.log_query("p", {}, True, revision="r", eval_ns=1)
        assert logger.flush(30)
        assert logger.stats().failed == 1
    assert [upload.path for upload in collector.received] == ["/logs"]


def test_close_with_the_collector_down_counts_what_is_left() -> None:
    sink = HttpSink(f"http://127.0.0.1:{_free_port()}", upload_interval=0.01, min_backoff=0.05)
    logger = DecisionLogger(sink)
    for n in range(4):
        logger.log_query("p", {"n": n}, n, revision="r", eval_ns=1)
    logger.close(timeout=0.5)  # returns at its deadline, delivering nothing
    stats = logger.stats()
    assert (stats.received, stats.written, stats.dropped) == (4, 0, 4)
    sink.write([b"{}"])  # after close: dropped, never buffered
    assert sink.stats().dropped == 5
    assert sink.stats().pending == 0


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("ftp://127.0.0.1/", {}, "must be http"),
        ("http:///logs", {}, "must be http"),
        ("http://user:pw@127.0.0.1", {}, "no credentials"),
        ("http://127.0.0.1/?q=1", {}, "no credentials, query"),
        ("http://127.0.0.1:99999", {}, "invalid collector URL"),
        ("http://collector.example", {"token": "t"}, "clear text"),
        ("http://127.0.0.1", {"token": "has space"}, "printable ASCII"),
        ("http://127.0.0.1", {"ca_bundle": "ca.pem"}, "only meaningful with an https"),
        ("https://127.0.0.1", {"ca_bundle": "/nonexistent/ca.pem"}, "CA bundle"),
        ("http://127.0.0.1", {"resource": "logs"}, "starting with '/'"),
        ("http://127.0.0.1", {"batch_bytes": 10}, "batch_bytes must be an integer >= 64"),
        ("http://127.0.0.1", {"buffer_size": 0}, "buffer_size"),
        ("http://127.0.0.1", {"upload_interval": 0}, "upload_interval"),
        ("http://127.0.0.1", {"min_backoff": 2, "max_backoff": 1}, "max_backoff must be >="),
        ("http://127.0.0.1", {"timeout": float("nan")}, "timeout must be a finite"),
    ],
)
def test_http_sink_settings_are_checked(url: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(DecisionLogConfigError, match=message):
        HttpSink(url, **options)


def test_a_token_may_go_to_loopback_over_http_and_anywhere_over_https() -> None:
    HttpSink("http://localhost:8181", token="t").close(0)
    HttpSink("http://[::1]:8181", token="t").close(0)
    HttpSink("https://collector.example", token="t").close(0)
