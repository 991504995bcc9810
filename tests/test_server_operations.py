"""``serve``'s operational switches: ?pretty, ?metrics, unsupported parameters, the JSON
access log with decision ids, the log level, and graceful shutdown."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from serving import BackgroundServer, serve_process

from attestpolicy._server_api import DataApi, DataApiApp, QueryRecord
from attestpolicy._server_operations import OperationsSettings
from attestpolicy.engine._inprocess import InProcessEvaluator
from attestpolicy.errors import AttestPolicyError
from attestpolicy.server import ServerLimits, create_app, load_evaluator

EXAMPLES = Path(__file__).resolve().parents[1] / "attestpolicy" / "examples"
DECISION = "/v1/data/attestpolicy/v1/decision"


def _claims() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (EXAMPLES / "claims" / "allow-fully-attested.json").read_text()
    )
    return loaded


@pytest.fixture(scope="module")
def evaluator() -> Iterator[InProcessEvaluator]:
    evaluator = load_evaluator(config_path=EXAMPLES / "config.json")
    yield evaluator
    evaluator.close()


@pytest.fixture(scope="module")
def url(evaluator: InProcessEvaluator) -> Iterator[str]:
    with BackgroundServer(create_app(evaluator)) as server:
        yield server.url


def test_pretty_answers_are_indented_and_equal(url: str) -> None:
    body = {"input": _claims()}
    plain = requests.post(f"{url}{DECISION}", json=body, timeout=10)
    pretty = requests.post(f"{url}{DECISION}?pretty=true", json=body, timeout=10)
    assert b"\n" not in plain.content
    assert pretty.content.startswith(b'{\n  "result"')
    assert pretty.json() == plain.json()


def test_metrics_report_the_evaluation_and_handler_times(url: str) -> None:
    answer = requests.post(f"{url}{DECISION}?metrics=true", json={"input": _claims()}, timeout=10)
    metrics = answer.json()["metrics"]
    assert set(metrics) == {"timer_rego_query_eval_ns", "timer_server_handler_ns"}
    assert 0 < metrics["timer_rego_query_eval_ns"] <= metrics["timer_server_handler_ns"]
    assert "metrics" not in requests.post(f"{url}{DECISION}", json={}, timeout=10).json()


@pytest.mark.parametrize("param", ["explain=full", "explain", "instrument=true"])
def test_unsupported_parameters_are_400_not_ignored(url: str, param: str) -> None:
    answer = requests.post(f"{url}{DECISION}?{param}", json={"input": _claims()}, timeout=10)
    assert answer.status_code == 400
    content = answer.json()
    assert content["code"] == "invalid_parameter"
    assert param.split("=")[0] in content["message"]


def test_access_log_lines_carry_the_decision_id(
    evaluator: InProcessEvaluator, caplog: pytest.LogCaptureFixture
) -> None:
    logged: list[QueryRecord] = []
    api = DataApi(evaluator, ServerLimits(), on_query=logged.append)
    api.warm_up()
    with (
        caplog.at_level(logging.INFO, logger="attestpolicy.access"),
        BackgroundServer(DataApiApp(api, access_log=True)) as server,
    ):
        answer = requests.post(
            f"{server.url}{DECISION}?pretty=true", json={"input": _claims()}, timeout=10
        )
        missing = requests.get(f"{server.url}/nowhere?input=secret", timeout=10)
    assert answer.status_code == 200
    assert missing.status_code == 404
    decision_id = answer.json()["decision_id"]
    (record,) = logged
    assert record.decision_id == decision_id
    assert record.path == "attestpolicy/v1/decision"
    assert record.input == _claims()
    assert record.result == answer.json()["result"]
    assert record.revision == evaluator.revision
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "attestpolicy.access"]
    first, second = lines
    assert first["decision_id"] == decision_id
    assert (first["method"], first["path"], first["status"]) == ("POST", DECISION, 200)
    assert first["duration_ms"] > 0
    assert (second["path"], second["status"]) == ("/nowhere", 404)
    assert "decision_id" not in second
    assert "secret" not in json.dumps(lines)  # the query string is never logged


def test_no_decision_id_without_a_decision_log(url: str) -> None:
    assert "decision_id" not in requests.post(f"{url}{DECISION}", json={}, timeout=10).json()


def test_a_failing_query_hook_changes_no_answer(evaluator: InProcessEvaluator) -> None:
    def broken(record: QueryRecord) -> None:
        raise RuntimeError("log sink bug")

    api = DataApi(evaluator, ServerLimits(), on_query=broken)
    api.warm_up()
    with BackgroundServer(DataApiApp(api)) as server:
        answer = requests.post(f"{server.url}{DECISION}", json={"input": _claims()}, timeout=10)
    assert answer.status_code == 200
    assert answer.json()["result"]["allow"] is True


def test_operations_settings_round_trip_and_checks() -> None:
    settings = OperationsSettings(access_log=True, log_level="debug")
    assert OperationsSettings.from_json(settings.to_json()) == settings
    with pytest.raises(AttestPolicyError, match="log_level"):
        OperationsSettings(log_level="verbose")
    with pytest.raises(AttestPolicyError, match="unusable"):
        OperationsSettings.from_json('{"colour": 1}')
    settings.configure_logging()
    settings.configure_logging()  # once per process: no second handler
    logger = logging.getLogger("attestpolicy")
    assert logger.level == logging.DEBUG
    assert sum(getattr(h, "_attestpolicy_serve", False) for h in logger.handlers) == 1


_SLOW_POLICY = """package attestpolicy.v1

import rego.v1

decision := {"slow": count([x | some x in numbers.range(1, 3000000); x % 7 == 0])}
"""


def test_graceful_shutdown_answers_requests_in_progress(tmp_path: Path) -> None:
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "slow.rego").write_text(_SLOW_POLICY)
    argv = [
        sys.executable,
        "-m",
        "attestpolicy",
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--policy",
        str(policy),
        "--eval-timeout",
        "30",
        "--access-log",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    log_path = tmp_path / "serve.log"
    answers: list[requests.Response] = []
    answered_at: list[float] = []
    with serve_process(argv, cwd=tmp_path, env=env, log_path=log_path) as (process, url):
        started = threading.Event()

        def ask() -> None:
            started.set()
            answers.append(requests.post(f"{url}{DECISION}", json={"input": {}}, timeout=60))
            answered_at.append(time.monotonic())

        asker = threading.Thread(target=ask)
        asker.start()
        started.wait()
        # Wait until the request is being evaluated, then ask the server to stop.
        threading.Event().wait(0.3)
        process.send_signal(signal.SIGTERM)
        stopping_at = time.monotonic()
        asker.join(timeout=60)
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    (answer,) = answers
    assert answered_at[0] > stopping_at  # it was still in progress when the server stopped
    assert answer.status_code == 200
    assert answer.json()["result"]["slow"] > 0
    access = [line for line in log_path.read_text().splitlines() if '"status":200' in line]
    assert access, log_path.read_text()
