"""``serve``'s operational services over real HTTP on 127.0.0.1: /metrics (one worker and
two, aggregated), /v1/status, decision logs (one file per worker), bundle polling with a hot
swap, watching a policy directory, and a shadow bundle."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from serving import BackgroundServer, serve_cli

from attestpolicy._server_operations import OperationsSettings
from attestpolicy.bundle import build_bundle
from attestpolicy.bundle._server import BundleServer
from attestpolicy.policy import default_policy_dir
from attestpolicy.server import ENV_CONFIG, create_app, load_evaluator

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "attestpolicy" / "examples"
DECISION = "/v1/data/attestpolicy/v1/decision"


def _claims() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (EXAMPLES / "claims" / "allow-fully-attested.json").read_text()
    )
    return loaded


def _decide(url: str, query: str = "") -> dict[str, Any]:
    answer = requests.post(f"{url}{DECISION}{query}", json={"input": _claims()}, timeout=30)
    assert answer.status_code == 200, answer.text
    content: dict[str, Any] = answer.json()
    return content


def _samples(url: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = requests.get(f"{url}/metrics", timeout=10).text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def _revision(url: str) -> str:
    revision: str = _decide(url, "?provenance=true")["provenance"]["bundles"]["attestpolicy"][
        "revision"
    ]
    return revision


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    evaluator = load_evaluator(config_path=EXAMPLES / "config.json")
    with BackgroundServer(create_app(evaluator)) as server:
        yield server.url
    evaluator.close()


def test_metrics_count_the_data_api_decisions(url: str) -> None:
    before = sum(_samples(url, "attestpolicy_decisions_total").values())
    for _ in range(3):
        assert _decide(url)["result"]["allow"] is True
    counted = _samples(url, "attestpolicy_decisions_total")
    assert sum(counted.values()) - before == 3
    assert any(dict(labels).get("result") == "allow" for labels in counted)


def test_status_without_a_bundle_feed(url: str) -> None:
    status = requests.get(f"{url}/v1/status", timeout=10).json()["result"]
    assert set(status) >= {"labels", "plugins"}
    assert "bundles" not in status
    assert "decision_id" not in _decide(url)  # no decision log: no decision id, as OPA


_CANDIDATE = """package attestpolicy.v1

decision := {
	"allow": false, "ttl_seconds": 0, "ttl_bound_by": null, "valid_until": null,
	"reasons": [{"code": "candidate.denies", "message": "the candidate denies everything"}],
	"ttl_terms": [], "revocable": [],
}
"""


def test_decision_log_and_shadow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "decisions.jsonl"
    claims = _claims()
    candidate_policy = tmp_path / "candidate"
    candidate_policy.mkdir()
    (candidate_policy / "deny.rego").write_text(_CANDIDATE)
    candidate = tmp_path / "candidate.tar.gz"
    candidate.write_bytes(build_bundle(candidate_policy, revision="candidate-1"))
    monkeypatch.setenv(ENV_CONFIG, str(EXAMPLES / "config.json"))
    operations = OperationsSettings(decision_log=str(log), shadow_bundle=str(candidate))
    with (
        caplog.at_level(logging.WARNING, logger="attestpolicy.shadow"),
        BackgroundServer(create_app(operations=operations)) as server,
    ):
        content = _decide(server.url)
        assert content["result"]["allow"] is True  # the shadow never changes the answer
        decision_id = content["decision_id"]
        _eventually(lambda: any(r.name == "attestpolicy.shadow" for r in caplog.records))
    (event,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert event["decision_id"] == decision_id
    assert event["path"] == "attestpolicy/v1/decision"
    assert event["result"]["allow"] is True
    assert event["input"]["subject"] == claims["subject"]
    (disagreement,) = [r.getMessage() for r in caplog.records if r.name == "attestpolicy.shadow"]
    assert decision_id in disagreement
    assert "candidate.denies" in disagreement


def _serve_args(*extra: str) -> list[str]:
    return ["--config", str(EXAMPLES / "config.json"), *extra]


def test_two_workers_one_metrics_page_and_a_log_file_each(tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    args = _serve_args("--workers", "2", "--decision-log", str(log))
    with serve_cli(tmp_path, *args) as (_, url):
        for _ in range(12):  # new connections: the kernel spreads them over the workers
            requests.post(f"{url}{DECISION}", json={"input": _claims()}, timeout=30).close()
        _eventually(lambda: sum(_samples(url, "attestpolicy_decisions_total").values()) >= 12)
        _eventually(
            lambda: sum(len(p.read_text().splitlines()) for p in tmp_path.glob("decisions.*")) >= 12
        )
    files = sorted(tmp_path.glob("decisions.jsonl.*"))
    assert files, list(tmp_path.iterdir())
    assert all(path.name.rsplit(".", 1)[1].isdigit() for path in files)  # <file>.<pid>


def test_bundle_url_polls_and_swaps(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    bundle = served / "attestpolicy.tar.gz"
    bundle.write_bytes(build_bundle(default_policy_dir(), revision="r1"))
    with BackgroundServer(BundleServer(served)) as bundles:
        args = _serve_args(
            "--workers",
            "1",
            "--bundle-url",
            f"{bundles.url}/bundles/attestpolicy.tar.gz",
            "--bundle-min-delay",
            "0.2",
            "--bundle-max-delay",
            "0.4",
        )
        with serve_cli(tmp_path, *args) as (_, url):
            assert _revision(url).startswith("r1+")
            bundle.write_bytes(build_bundle(default_policy_dir(), revision="r2"))
            _eventually(lambda: _revision(url).startswith("r2+"))
            status = requests.get(f"{url}/v1/status", timeout=10).json()["result"]
            assert status["bundles"]["attestpolicy"]["active_revision"] == "r2"
            assert status["plugins"]["bundle"]["state"] == "OK"
            bundle.write_bytes(b"not a bundle")
            _eventually(
                lambda: (
                    "code"
                    in requests.get(f"{url}/v1/status", timeout=10).json()["result"]["bundles"][
                        "attestpolicy"
                    ]
                )
            )
            assert _revision(url).startswith("r2+")  # the last good one stays
            assert _decide(url)["result"]["allow"] is True


def test_watch_reloads_the_policy_directory(tmp_path: Path) -> None:
    policy = tmp_path / "policy"
    shutil.copytree(default_policy_dir(), policy)
    args = _serve_args("--workers", "1", "--policy", str(policy), "--watch")
    with serve_cli(tmp_path, *args) as (_, url):
        first = _revision(url)
        (policy / "attestpolicy" / "v1" / "zz_extra.rego").write_text(
            "package attestpolicy.v1\n\nextra_rule := true\n"
        )
        _eventually(lambda: _revision(url) != first)
        assert _decide(url)["result"]["allow"] is True


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--decision-log-masks", "{missing}"], "mask"),
        (["--bundle-url", "http://127.0.0.1:9/x", "--policy", "."], "--policy"),
        (["--watch", "--bundle-url", "http://127.0.0.1:9/x"], "--watch"),
        (["--shadow-bundle", "{missing}"], "missing"),
        (["--watch", "--bundle-verification-key", "{missing}"], "verification key"),
    ],
)
def test_unusable_operations_settings_exit_2(
    tmp_path: Path, extra: list[str], fragment: str
) -> None:
    argv = [a.replace("{missing}", str(tmp_path / "missing")) for a in extra]
    result = subprocess.run(
        [sys.executable, "-m", "attestpolicy", "serve", "--addr", "127.0.0.1:0", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert fragment in result.stderr


def test_engine_errors_are_counted(tmp_path: Path) -> None:
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "p.rego").write_text(
        'package attestpolicy.v1\n\ndecision := startswith(input.number, "x")\n'
    )
    evaluator = load_evaluator(policy)
    with BackgroundServer(create_app(evaluator)) as server:
        answer = requests.post(f"{server.url}{DECISION}", json={"input": {"number": 1}}, timeout=30)
        assert answer.status_code == 500
        counted = _samples(server.url, "attestpolicy_engine_errors_total")
    evaluator.close()
    assert counted == {(("code", "engine.error"),): 1.0}


# --- the heap of a serve process ----------------------------------------------------------

_FROZEN_HEAP = r"""
import gc, json, sys, time
from pathlib import Path
from attestpolicy._server_operations import OperationsSettings
from attestpolicy.server import create_app, create_serve_app

policy = Path(sys.argv[1])


def tracked(evaluator):
    # The configuration the evaluator holds: frozen objects are not in gc.get_objects().
    config = evaluator.config
    return any(o is config for o in gc.get_objects())


plain = create_app()  # the library's application: the caller's collector is left alone
report = {"create_app": tracked(plain.state.evaluator)}
plain.state.evaluator.close()
served = create_serve_app()  # what each serve process runs
report["create_serve_app"] = tracked(served.state.evaluator)
served.state.evaluator.close()
gc.unfreeze()
watched = create_app(freeze_heap=True, operations=OperationsSettings(watch=True))
evaluator = watched.state.evaluator
first = evaluator.revision
report["watched"] = tracked(evaluator)
(policy / "attestpolicy" / "v1" / "zz_extra.rego").write_text(
    "package attestpolicy.v1\n\nextra_rule := true\n"
)
deadline = time.monotonic() + 60
while evaluator.revision == first and time.monotonic() < deadline:
    time.sleep(0.05)
report["swapped"] = evaluator.revision != first
report["after the swap"] = tracked(evaluator)
print(json.dumps(report))
"""


def test_a_serve_process_freezes_its_heap_once_built_and_after_each_bundle(
    tmp_path: Path,
) -> None:
    """create_serve_app (each serve process) and create_app(freeze_heap=True) move the
    loaded configuration out of the collector's full collections, again after a bundle
    swap; create_app alone (a library caller's process) does not. In a new process: a
    frozen heap must never be pytest's."""
    policy = tmp_path / "policy"
    shutil.copytree(default_policy_dir(), policy)
    env = {
        **os.environ,
        "ATTESTPOLICY_SERVE_POLICY_DIR": str(policy),
        ENV_CONFIG: str(EXAMPLES / "config.json"),
    }
    result = subprocess.run(
        [sys.executable, "-c", _FROZEN_HEAP, str(policy)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "create_app": True,
        "create_serve_app": False,
        "watched": False,
        "swapped": True,
        "after the swap": False,
    }


def test_serve_starts_its_processes_from_create_serve_app() -> None:
    from attestpolicy import server

    assert server._APP_FACTORY == "attestpolicy.server:create_serve_app"
