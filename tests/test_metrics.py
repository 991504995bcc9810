"""Prometheus metrics: real decisions in both engines, real evidence, the broker, serve's
Data API over HTTP, the exposition parsed with prometheus-client's parser, and two real
processes sharing one multiprocess directory."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import multiprocessing
import os
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from bundle.bundle_fleet import CONFIG, build, replace_file, wait_for
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from attestpolicy._background_server import BackgroundServer
from attestpolicy._demo_evidence import FreshEvidence, fresh_evidence
from attestpolicy._server_api import DataApi, DataApiApp, QueryRecord
from attestpolicy._server_limits import ServerLimits
from attestpolicy.broker import CredentialBroker, CredentialRegistry, SigningKey
from attestpolicy.decisionlog import DecisionLogger, FileSink
from attestpolicy.engine.cache import DecisionCache
from attestpolicy.evidence.document import EvidenceDocument
from attestpolicy.metrics import (
    DECISION_PATH,
    EVIDENCE_FORMATS,
    MAX_CODES,
    MULTIPROC_ENV,
    OTHER,
    Metrics,
    mark_process_dead,
    multiprocess_directory,
    multiprocess_mode,
    multiprocess_registry,
    render,
)
from attestpolicy.pdp import PolicyDecisionPoint
from attestpolicy.server import load_evaluator

EXAMPLES = Path(__file__).resolve().parents[1] / "attestpolicy" / "examples"
SIGNATURE = "dev.cosignproject.cosign/signature"
SPAWN = multiprocessing.get_context("spawn")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return loaded


def parse(body: bytes) -> Samples:
    """Every sample of an exposition, by name and labels, through prometheus-client's
    own parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def scrape(metrics: Metrics) -> Samples:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return parse(body)


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for a series that does not exist."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def decisions(samples: Samples, result: str, source: str) -> float:
    return value(samples, "attestpolicy_decisions_total", result=result, source=source)


def count(samples: Samples, histogram: str, **labels: str) -> float:
    return value(samples, f"{histogram}_count", **labels)


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    counted = Metrics()
    yield counted
    counted.close()


@pytest.fixture(scope="module")
def fresh() -> FreshEvidence:
    return fresh_evidence()


def tampered(fresh: FreshEvidence) -> dict[str, Any]:
    """The fresh evidence with one bit of its cosign signature flipped."""
    document = copy.deepcopy(fresh.document)
    annotations = document["image"]["cosign"][0]["signature"]["annotations"]
    signature = bytearray(base64.b64decode(annotations[SIGNATURE]))
    signature[-1] ^= 0x01
    annotations[SIGNATURE] = base64.b64encode(signature).decode()
    return document


# --- decisions on claims ----------------------------------------------------------------


def test_claims_decisions_hits_misses_and_reasons(engine: str, metrics: Metrics) -> None:
    with PolicyDecisionPoint.local(config=example("config"), engine=engine) as pdp:
        metrics.observe(pdp)  # decisions and the cache (no bundle feed here)
        allowed = example("claims/allow-fully-attested")
        assert pdp.decide(allowed).allow  # a miss
        assert pdp.decide(allowed).allow  # a hit
        assert pdp.decide(allowed).allow  # a hit
        unregistered = pdp.decide(example("claims/deny-unregistered"))
        untrusted = pdp.decide(example("claims/deny-untrusted-signer"))
        unreadable = pdp.decide('{"subject": 7}')  # JSON text is not looked up: "off"
        samples = scrape(metrics)
    assert unregistered.reason_codes == ("subject.unregistered",)
    assert untrusted.reason_codes == ("image.untrusted_signer",)
    assert unreadable.reason_codes == ("input.invalid",)
    assert decisions(samples, "allow", "claims") == 3
    assert decisions(samples, "deny", "claims") == 3
    assert decisions(samples, "allow", "evidence") == 0
    for code in ("subject.unregistered", "image.untrusted_signer", "input.invalid"):
        assert value(samples, "attestpolicy_deny_reasons_total", code=code) == 1
    assert value(samples, "attestpolicy_decision_cache_hits_total") == 2
    assert value(samples, "attestpolicy_decision_cache_misses_total") == 3
    duration = "attestpolicy_decision_duration_seconds"
    assert count(samples, duration, source="claims", cache="hit") == 2
    assert count(samples, duration, source="claims", cache="miss") == 3
    assert count(samples, duration, source="claims", cache="off") == 1
    assert count(samples, "attestpolicy_evaluation_duration_seconds") == 3
    assert count(samples, "attestpolicy_verification_duration_seconds") == 0
    assert value(samples, "attestpolicy_decision_cache_entries") == 1  # the allow only
    assert not any(name == "attestpolicy_engine_errors_total" for name, _ in samples)
    assert not any(name == "attestpolicy_bundle_revision" for name, _ in samples)
    hits = value(samples, f"{duration}_bucket", source="claims", cache="hit", le="+Inf")
    assert hits == 2


def _counting_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "attestpolicy-metrics"}


def test_a_hit_is_counted_on_each_scrape_and_after_close(metrics: Metrics) -> None:
    before = _counting_threads()
    with PolicyDecisionPoint.local(config=example("config")) as pdp:
        pdp.add_observer(metrics)
        claims = example("claims/allow-fully-attested")
        pdp.decide(claims)
        for expected in (1, 2, 3):
            pdp.decide(claims)
            assert value(scrape(metrics), "attestpolicy_decision_cache_hits_total") == expected
        assert len(_counting_threads() - before) == 1
        metrics.close()
        assert not _counting_threads() - before
        pdp.decide(claims)  # after close: counted on the deciding thread
        registry_only = parse(render(metrics.registry)[0])
    assert value(registry_only, "attestpolicy_decision_cache_hits_total") == 4
    assert decisions(registry_only, "allow", "claims") == 5


def test_hits_from_many_threads_are_all_counted(metrics: Metrics) -> None:
    threads, rounds = 4, 500
    with PolicyDecisionPoint.local(config=example("config")) as pdp:
        pdp.add_observer(metrics)
        claims = example("claims/allow-fully-attested")
        pdp.decide(claims)
        barrier = threading.Barrier(threads + 1)

        def decide() -> None:
            barrier.wait()
            for _ in range(rounds):
                pdp.decide(claims)

        workers = [threading.Thread(target=decide) for _ in range(threads)]
        for worker in workers:
            worker.start()
        barrier.wait()
        while any(worker.is_alive() for worker in workers):
            scrape(metrics)  # scrapes fold hits while others are being noted
        for worker in workers:
            worker.join()
        samples = scrape(metrics)
    assert value(samples, "attestpolicy_decision_cache_hits_total") == threads * rounds
    assert decisions(samples, "allow", "claims") == threads * rounds + 1
    duration = "attestpolicy_decision_duration_seconds"
    assert count(samples, duration, source="claims", cache="hit") == threads * rounds


def test_engine_errors_count_timeouts(engine: str, metrics: Metrics) -> None:
    with PolicyDecisionPoint.local(config=example("config"), engine=engine) as pdp:
        pdp.add_observer(metrics)
        decision = asyncio.run(pdp.adecide(example("claims/allow-fully-attested"), deadline=0))
        samples = scrape(metrics)
    assert decision.reason_codes == ("engine.timeout",)
    assert value(samples, "attestpolicy_engine_errors_total", code="engine.timeout") == 1
    assert value(samples, "attestpolicy_deny_reasons_total", code="engine.timeout") == 1


def test_cache_evictions_by_cause(metrics: Metrics) -> None:
    cache = DecisionCache(max_entries=1)
    with PolicyDecisionPoint.local(config=example("config"), cache=cache) as pdp:
        pdp.add_observer(metrics)
        metrics.watch_cache(pdp)
        first = example("claims/allow-fully-attested")
        second = example("claims/allow-ttl-bound-by-evidence")
        assert pdp.decide(first).allow
        decided = pdp.decide(second)  # evicts the first (capacity)
        assert decided.allow
        assert decided.valid_until is not None
        later = decided.valid_until + timedelta(seconds=1)
        pdp.decide(second, now=later)  # the cached allow has expired
        assert pdp.decide(first).allow  # cached again, evicting nothing (second expired)
        assert pdp.revoke(spiffe_id=first["subject"]["spiffe_id"]) == 1
        samples = scrape(metrics)
    evictions = "attestpolicy_decision_cache_evictions_total"
    assert value(samples, evictions, cause="capacity") == 1
    assert value(samples, evictions, cause="expired") == 1
    assert value(samples, evictions, cause="revoked") == 1
    assert value(samples, "attestpolicy_decision_cache_entries") == 0


def test_watch_cache_without_a_cache_and_refusals(metrics: Metrics) -> None:
    with PolicyDecisionPoint.local(config=example("config"), cache=False) as pdp:
        metrics.watch_cache(pdp)
        pdp.add_observer(metrics)
        pdp.decide(example("claims/allow-fully-attested"))
        samples = scrape(metrics)
    assert value(samples, "attestpolicy_decision_cache_entries") == 0
    assert value(samples, "attestpolicy_decision_cache_misses_total") == 0  # "off"
    with pytest.raises(TypeError, match="cache_stats"):
        metrics.watch_cache(object())  # type: ignore[arg-type]

    def broken() -> None:
        raise RuntimeError("no stats")

    metrics.watch_cache(broken)  # logged, never raised
    assert value(scrape(metrics), "attestpolicy_decision_cache_entries") == 0


# --- decisions on evidence ------------------------------------------------------------------


def test_evidence_verification_and_failures_by_format(
    engine: str, fresh: FreshEvidence, metrics: Metrics
) -> None:
    with PolicyDecisionPoint.local(config=fresh.config, engine=engine) as pdp:
        pdp.add_observer(metrics)
        assert pdp.decide_evidence(fresh.document, fresh.trust).allow
        denied = pdp.decide_evidence(tampered(fresh), fresh.trust)
        unreadable = pdp.decide_evidence({"version": 99}, fresh.trust)
        samples = scrape(metrics)
    assert not denied.allow
    assert "evidence.signature_invalid" in denied.reason_codes
    assert decisions(samples, "allow", "evidence") == 1
    assert decisions(samples, "deny", "evidence") == 2
    failures = "attestpolicy_evidence_failures_total"
    assert value(samples, failures, format="image.cosign", code="evidence.signature_invalid") == 1
    (code,) = unreadable.reason_codes
    assert value(samples, failures, format="document", code=code) == 1
    assert value(samples, "attestpolicy_deny_reasons_total", code="evidence.signature_invalid") == 1
    assert count(samples, "attestpolicy_verification_duration_seconds") == 2  # not unreadable
    duration = "attestpolicy_decision_duration_seconds"
    assert count(samples, duration, source="evidence", cache="miss") == 2
    assert count(samples, duration, source="evidence", cache="off") == 1  # unreadable


def test_evidence_formats_are_the_documents_sections() -> None:
    def fields(section: str) -> set[str]:
        model: Any = EvidenceDocument.model_fields[section].annotation
        inner = next(a for a in getattr(model, "__args__", (model,)) if a is not type(None))
        return {f"{section}.{name}" for name in inner.model_fields}

    expected = {"provenance"} | (fields("image") - {"image.reference"})
    expected |= fields("node") | fields("runtime")
    assert set(EVIDENCE_FORMATS) == expected


def test_no_workload_value_is_ever_a_label(
    fresh: FreshEvidence, metrics: Metrics, tmp_path: Path
) -> None:
    """Every label value comes from a bounded set: never a SPIFFE ID, digest or id."""
    registry = CredentialRegistry(tmp_path / "credentials.db")
    with PolicyDecisionPoint.local(config=fresh.config) as pdp:
        pdp.add_observer(metrics)
        metrics.watch_cache(pdp)
        with CredentialBroker(pdp, SigningKey.generate(), "https://broker.test", registry) as b:
            issued = b.issue(fresh.document, fresh.trust)
            pdp.decide_evidence(tampered(fresh), fresh.trust)
            pdp.decide_evidence(fresh.document, fresh.trust)
            b.revoke(spiffe_id=fresh.spiffe_id)
            denied = pdp.decide_evidence(fresh.document, fresh.trust)
        metrics.bundle_activation(True, revision="2026-12-01.1")
        samples = scrape(metrics)
    assert issued.token is not None
    assert not denied.allow
    secrets = {
        fresh.spiffe_id,
        fresh.image_digest,
        fresh.image_digest.removeprefix("sha256:"),
        fresh.signer_key_id,
        fresh.image_reference,
        issued.decision.decision_id,
        denied.decision_id,
        pdp.revision,
    }
    bounded = {
        "result": {"allow", "deny"},
        "source": {"claims", "evidence", "data_api"},
        "cache": {"hit", "miss", "off"},
        "cause": {"capacity", "expired", "revoked"},
        "format": set(EVIDENCE_FORMATS) | {"image", "node", "runtime", "document"},
        "revision": {"2026-12-01.1"},
    }
    code = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+")
    seen = set()
    for _, labels in samples:
        for name, label in labels:
            seen.add(name)
            assert not any(secret in label for secret in secrets), (name, label)
            if name == "le":
                float(label)
            elif name == "code":
                assert code.fullmatch(label), label
            else:
                assert label in bounded[name], (name, label)
    assert seen == {*bounded, "le", "code"}


def test_hostile_codes_are_bounded(metrics: Metrics) -> None:
    """Codes from a remote or custom policy: only well-formed ones, and at most MAX_CODES."""
    odd = [
        {"code": "spiffe://example.org/ns/shop/sa/checkout"},
        {"code": "sha256:" + "ab" * 32},
        {"code": ["not", "a", "string"]},
        {"code": "Image.Untrusted"},
        "not an object",
    ]
    metrics.on_query(QueryRecord("1", DECISION_PATH, {}, True, {"reasons": odd}, "r", 10))
    for index in range(MAX_CODES + 10):
        reasons = [{"code": f"custom.code_{index}"}]
        metrics.on_query(QueryRecord("2", DECISION_PATH, {}, True, {"reasons": reasons}, "r", 10))
    samples = scrape(metrics)
    codes = {
        dict(labels)["code"]: sample
        for (name, labels), sample in samples.items()
        if name == "attestpolicy_deny_reasons_total"
    }
    assert len(codes) == MAX_CODES + 1
    assert codes[OTHER] == 4 + 10  # the malformed ones, and those past the limit
    assert decisions(samples, "deny", "data_api") == MAX_CODES + 11


# --- the broker, bundles, decision logs ----------------------------------------------------


def test_credentials_issued_and_revoked(
    engine: str, fresh: FreshEvidence, metrics: Metrics, tmp_path: Path
) -> None:
    registry = CredentialRegistry(tmp_path / "credentials.db")
    with (
        PolicyDecisionPoint.local(config=fresh.config, engine=engine) as pdp,
        CredentialBroker(
            pdp, SigningKey.generate(), "https://broker.test", registry, metrics=metrics
        ) as broker,
    ):
        pdp.add_observer(metrics)
        first = broker.issue(fresh.document, fresh.trust)
        second = broker.issue(fresh.document, fresh.trust)
        refused = broker.issue(tampered(fresh), fresh.trust)
        outcome = broker.revoke(image_digest=fresh.image_digest)
        again = broker.revoke(image_digest=fresh.image_digest)  # nothing live is left
        samples = scrape(metrics)
    assert first.token is not None
    assert second.token is not None
    assert refused.token is None
    assert len(outcome.credentials) == 2
    assert again.credentials == ()
    assert value(samples, "attestpolicy_credentials_issued_total") == 2
    assert value(samples, "attestpolicy_credentials_revoked_total") == 2


def test_bundle_activations_failures_and_the_active_revision(metrics: Metrics) -> None:
    assert value(scrape(metrics), "attestpolicy_bundle_last_activation_timestamp_seconds") == 0
    metrics.bundle_activation(True, revision="rev-1")
    metrics.bundle_activation(False)
    metrics.bundle_activation(False, revision="rev-2")  # refused: rev-1 stays active
    first = scrape(metrics)
    metrics.bundle_activation(True, revision="rev-2")
    metrics.bundle_activation(True, revision="x" * 500)
    second = scrape(metrics)
    assert value(first, "attestpolicy_bundle_activations_total") == 1
    assert value(first, "attestpolicy_bundle_failures_total") == 2
    assert value(first, "attestpolicy_bundle_revision", revision="rev-1") == 1
    assert value(first, "attestpolicy_bundle_last_activation_timestamp_seconds") > 1.7e9
    revisions = {
        dict(labels)["revision"]: sample
        for (name, labels), sample in second.items()
        if name == "attestpolicy_bundle_revision"
    }
    assert revisions == {OTHER: 1}  # one series at a time; an oversized revision bounded
    assert value(second, "attestpolicy_bundle_activations_total") == 3


def test_bundle_activations_from_a_watched_bundle(tmp_path: Path, metrics: Metrics) -> None:
    path = tmp_path / "attestpolicy.tar.gz"
    path.write_bytes(build("r1", None))
    activations = "attestpolicy_bundle_activations_total"
    with PolicyDecisionPoint.from_bundle(
        path, watch=True, poll_interval=0.05, config=CONFIG, on_activation=metrics.bundle_activation
    ) as pdp:
        metrics.observe(pdp)  # the first activation came before the PDP: shown now
        # The feed reports an activation from its own thread, just after it is active.
        wait_for(lambda: value(scrape(metrics), activations) == 1)
        first = scrape(metrics)
        replace_file(path, b"not a bundle")
        wait_for(lambda: value(scrape(metrics), "attestpolicy_bundle_failures_total") == 1)
        replace_file(path, build("r2", None))
        wait_for(lambda: value(scrape(metrics), activations) == 2)
        second = scrape(metrics)
    assert value(first, activations) == 1
    assert value(first, "attestpolicy_bundle_revision", revision="r1") == 1
    revisions = {
        dict(labels)["revision"]: sample
        for (name, labels), sample in second.items()
        if name == "attestpolicy_bundle_revision"
    }
    assert revisions == {"r2": 1}
    assert value(second, "attestpolicy_bundle_failures_total") == 1


def test_decision_log_drops(tmp_path: Path, metrics: Metrics) -> None:
    logger = DecisionLogger(FileSink(tmp_path / "decisions.jsonl"))
    with PolicyDecisionPoint.local(config=example("config")) as pdp:
        pdp.add_observer(logger)
        metrics.observe(pdp)
        metrics.watch_decision_log(logger)
        pdp.decide(example("claims/allow-fully-attested"))
        logger.close()
        for _ in range(3):
            pdp.decide(example("claims/allow-fully-attested"))  # offered after close: dropped
        metrics.log_dropped(2)  # from elsewhere
        metrics.log_dropped(0)
        samples = scrape(metrics)
    assert logger.stats().dropped == 3
    assert value(samples, "attestpolicy_decision_log_dropped_total") == 5
    assert value(samples, "attestpolicy_decision_log_failed_total") == 0
    assert len((tmp_path / "decisions.jsonl").read_text().splitlines()) == 1
    with pytest.raises(TypeError, match="stats"):
        metrics.watch_decision_log(42)


# --- serve's Data API and /metrics over HTTP ------------------------------------------------


def test_data_api_decisions_and_metrics_over_http(engine: str, metrics: Metrics) -> None:
    evaluator = load_evaluator(None, EXAMPLES / "config.json", engine=engine)
    api = DataApi(evaluator, ServerLimits(), on_query=metrics.on_query)
    api.warm_up()
    decision_url = "/v1/data/" + DECISION_PATH
    with (
        BackgroundServer(DataApiApp(api)) as serve,
        BackgroundServer(metrics.asgi_app()) as exporter,
    ):
        for name in ("allow-fully-attested", "deny-unregistered", "deny-image-drift"):
            answer = requests.post(
                serve.url + decision_url, json={"input": example(f"claims/{name}")}, timeout=10
            )
            assert answer.status_code == 200
        assert requests.get(serve.url + "/v1/data/attestpolicy/config", timeout=10).ok
        scraped = requests.get(exporter.url + "/metrics", timeout=10)
        head = requests.head(exporter.url + "/metrics", timeout=10)
        post = requests.post(exporter.url + "/metrics", timeout=10)
        openmetrics = requests.get(
            exporter.url + "/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
            timeout=10,
        )
    evaluator.close()
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = parse(scraped.content)
    assert decisions(samples, "allow", "data_api") == 1
    assert decisions(samples, "deny", "data_api") == 2
    for code in ("subject.unregistered", "runtime.image_drift"):
        assert value(samples, "attestpolicy_deny_reasons_total", code=code) == 1
    assert count(samples, "attestpolicy_evaluation_duration_seconds") == 4  # config query too
    assert (head.status_code, head.content) == (200, b"")
    assert post.status_code == 405
    assert post.headers["allow"] == "GET, HEAD"
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.content.endswith(b"# EOF\n")


def test_undefined_and_engine_errors_from_the_data_api(metrics: Metrics) -> None:
    metrics.on_query(QueryRecord("1", DECISION_PATH, {}, False, None, "r", 10))
    metrics.on_query(QueryRecord("2", "/" + DECISION_PATH + "/", {}, True, [1, 2], "r", 10))
    metrics.engine_error()
    samples = scrape(metrics)
    assert decisions(samples, "deny", "data_api") == 2
    assert value(samples, "attestpolicy_engine_errors_total", code="engine.undefined") == 1
    assert value(samples, "attestpolicy_engine_errors_total", code="engine.error") == 2


# --- several processes ------------------------------------------------------------------------


def _worker(allows: int, render_after: bool, results: Any) -> None:
    """A worker process: real decisions counted into the shared directory; the second
    one then answers a scrape for both (a failure: its exit code, and no answer)."""
    body = b""
    try:
        metrics = Metrics()
        assert multiprocess_mode()
        with pytest.raises(RuntimeError, match="one Metrics per process"):
            Metrics()  # it would overwrite the first one's values in the files
        with PolicyDecisionPoint.local(config=example("config")) as pdp:
            pdp.add_observer(metrics)
            metrics.watch_cache(pdp)
            for _ in range(allows):
                pdp.decide(example("claims/allow-fully-attested"))
            pdp.decide(example("claims/deny-unregistered"))
            metrics.bundle_activation(True, revision="rev-1")
            metrics.credential_issued()
            metrics.close()
            if render_after:
                body = metrics.render()[0]
    finally:
        results.put(body)


def test_two_processes_one_scrape() -> None:
    results = SPAWN.Queue()
    with multiprocess_directory() as directory:
        assert os.environ[MULTIPROC_ENV] == str(directory)
        with pytest.raises(RuntimeError, match="set after prometheus_client was imported"):
            Metrics()  # this process imported prometheus-client before the variable was set
        pids = []
        for allows, render_after in ((3, False), (2, True)):  # one after the other
            process = SPAWN.Process(target=_worker, args=(allows, render_after, results))
            process.start()
            body = results.get(timeout=120)
            process.join(timeout=60)
            assert process.exitcode == 0
            assert process.pid is not None
            pids.append(process.pid)
        both = parse(body)
        mark_process_dead(pids[0])
        one_live = parse(render(multiprocess_registry())[0])
    assert MULTIPROC_ENV not in os.environ
    assert not directory.exists()
    for samples in (both, one_live):  # counters and histograms keep a dead worker's counts
        assert decisions(samples, "allow", "claims") == 5
        assert decisions(samples, "deny", "claims") == 2
        assert value(samples, "attestpolicy_decision_cache_hits_total") == 3
        assert value(samples, "attestpolicy_decision_cache_misses_total") == 4
        assert value(samples, "attestpolicy_deny_reasons_total", code="subject.unregistered") == 2
        assert value(samples, "attestpolicy_credentials_issued_total") == 2
        duration = "attestpolicy_decision_duration_seconds"
        assert count(samples, duration, source="claims", cache="hit") == 3
    # live gauges: summed over the workers that are alive (not yet marked dead)
    assert value(both, "attestpolicy_bundle_revision", revision="rev-1") == 2
    assert value(both, "attestpolicy_decision_cache_entries") == 2
    assert value(one_live, "attestpolicy_bundle_revision", revision="rev-1") == 1
    assert value(one_live, "attestpolicy_decision_cache_entries") == 1


def test_outside_multiprocess_mode() -> None:
    assert not multiprocess_mode()
    mark_process_dead(os.getpid())  # nothing to do
    with pytest.raises(ValueError, match="PROMETHEUS_MULTIPROC_DIR"):
        multiprocess_registry()
    registry = CollectorRegistry()
    assert Metrics(registry).registry is registry
