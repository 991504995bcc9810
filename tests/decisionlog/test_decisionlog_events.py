"""Decision log events: OPA's event fields and attestpolicy's extras, from every way of
deciding (decide, adecide, decide_evidence) in both engines and from log_query."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from decisionlog.helpers import checked, read_log
from pydantic import ValidationError

import attestpolicy
from attestpolicy import ClaimSet, PolicyDecisionPoint
from attestpolicy._demo_evidence import DEMO_SPIFFE_ID, fresh_evidence
from attestpolicy._instance import INSTANCE_ID
from attestpolicy.claims import parse_timestamp
from attestpolicy.decisionlog import (
    DECISION_PATH,
    DecisionLogConfigError,
    DecisionLogEvent,
    DecisionLogger,
    FileSink,
    event_json_schema,
)

SIGNATURE = "dev.cosignproject.cosign/signature"
NANOS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def _logged(tmp_path: Path) -> tuple[DecisionLogger, Path]:
    path = tmp_path / "decisions.jsonl"
    return DecisionLogger(FileSink(path)), path


def _deny_claims(claims: dict[str, Any]) -> dict[str, Any]:
    denied = copy.deepcopy(claims)
    denied["subject"]["spiffe_id"] = "spiffe://prod.example.com/ns/unknown/sa/nobody"
    return denied


def test_decide_miss_hit_and_deny_in_each_engine(
    tmp_path: Path, engine: str, claims: dict[str, Any], example_config: dict[str, Any]
) -> None:
    logger, path = _logged(tmp_path)
    with PolicyDecisionPoint.local(config=example_config, engine=engine) as pdp, logger:
        pdp.add_observer(logger)
        miss = pdp.decide(claims)
        hit = pdp.decide(claims)
        deny = pdp.decide(_deny_claims(claims))
        assert logger.flush(10)
    assert miss.allow
    assert hit.allow
    assert not deny.allow
    first, second, third = read_log(path)
    expected_input = ClaimSet.parse(claims).to_input()
    for event, decision in ((first, miss), (second, hit), (third, deny)):
        assert event["decision_id"] == decision.decision_id
        assert event["path"] == DECISION_PATH == "attestpolicy/v1/decision"
        assert event["bundles"] == {"attestpolicy": {"revision": decision.policy_revision}}
        assert event["result"] == decision.to_json_dict()
        assert parse_timestamp(event["timestamp"][:26] + "Z") == decision.evaluated_at
        assert event["labels"]["version"] == attestpolicy.__version__
        assert uuid.UUID(event["labels"]["id"])
        assert "erased" not in event
        assert "masked" not in event
        assert not DecisionLogEvent.model_validate(event).input_altered
    assert first["input"] == second["input"] == expected_input
    assert first["attestpolicy"] == {
        "source": "claims",
        "cache": "miss",
        "reason_codes": [],
        "ttl_bound_by": miss.ttl_bound_by,
        "evidence_failures": [],
    }
    assert second["attestpolicy"]["cache"] == "hit"
    assert third["attestpolicy"]["reason_codes"] == list(deny.reason_codes)
    assert third["attestpolicy"]["ttl_bound_by"] is None
    assert first["metrics"]["timer_rego_query_eval_ns"] > 0
    assert "timer_rego_query_eval_ns" not in second["metrics"]  # a hit evaluates nothing
    assert all(event["metrics"]["timer_attestpolicy_decide_ns"] > 0 for event in (first, second))
    assert first["labels"] == second["labels"] == third["labels"]


def test_timestamps_have_nanoseconds(tmp_path: Path, claims: dict[str, Any]) -> None:
    logger, path = _logged(tmp_path)
    with PolicyDecisionPoint.local(config=None) as pdp, logger:
        pdp.add_observer(logger)
        decision = pdp.decide(claims)
        logger.log_query("x", None, True, revision="", eval_ns=None)
    decided, queried = read_log(path)
    assert NANOS.match(decided["timestamp"])
    assert NANOS.match(queried["timestamp"])
    micros = decision.evaluated_at.strftime("%Y-%m-%dT%H:%M:%S.%f")
    assert decided["timestamp"] == f"{micros}000Z"  # the decision's own instant


def test_unreadable_claims_and_no_cache(tmp_path: Path, example_config: dict[str, Any]) -> None:
    logger, path = _logged(tmp_path)
    with PolicyDecisionPoint.local(config=example_config, cache=False) as pdp, logger:
        pdp.add_observer(logger)
        decision = pdp.decide({"subject": 7})
    (event,) = read_log(path)
    assert event["decision_id"] == decision.decision_id
    assert "input" not in event  # no policy input was made
    assert event["attestpolicy"]["cache"] == "off"
    assert event["attestpolicy"]["reason_codes"] == ["input.invalid"]
    assert DecisionLogEvent.model_validate(event).input_altered  # nothing to replay


def test_adecide_on_the_loop_and_on_the_executor(
    tmp_path: Path, engine: str, claims: dict[str, Any], example_config: dict[str, Any]
) -> None:
    logger, path = _logged(tmp_path)

    async def twice(pdp: PolicyDecisionPoint) -> list[attestpolicy.Decision]:
        return [await pdp.adecide(claims), await pdp.adecide(claims)]

    with PolicyDecisionPoint.local(config=example_config, engine=engine) as pdp, logger:
        pdp.add_observer(logger)
        decisions = asyncio.run(twice(pdp))
    events = read_log(path)
    assert [e["decision_id"] for e in events] == [d.decision_id for d in decisions]
    assert [e["attestpolicy"]["cache"] for e in events] == ["miss", "hit"]
    assert events[0]["input"] == events[1]["input"] == ClaimSet.parse(claims).to_input()


def test_decide_evidence_allow_tampered_and_unreadable(tmp_path: Path, engine: str) -> None:
    fresh = fresh_evidence()
    tampered = copy.deepcopy(fresh.document)
    annotations = tampered["image"]["cosign"][0]["signature"]["annotations"]
    signature = bytearray(base64.b64decode(annotations[SIGNATURE]))
    signature[-1] ^= 0x01
    annotations[SIGNATURE] = base64.b64encode(signature).decode()
    logger, path = _logged(tmp_path)
    with PolicyDecisionPoint.local(config=fresh.config, engine=engine) as pdp, logger:
        pdp.add_observer(logger)
        allowed = pdp.decide_evidence(fresh.document, fresh.trust)
        denied = pdp.decide_evidence(tampered, fresh.trust)
        broken = pdp.decide_evidence({"version": 99}, fresh.trust)
    assert allowed.allow
    assert not denied.allow
    ok, bad, unreadable = read_log(path)
    assert ok["decision_id"] == allowed.decision_id
    assert ok["attestpolicy"]["source"] == "evidence"
    assert ok["attestpolicy"]["evidence_failures"] == []
    assert ok["metrics"]["timer_attestpolicy_verify_ns"] > 0
    assert ok["input"]["subject"]["spiffe_id"] == DEMO_SPIFFE_ID
    assert not DecisionLogEvent.model_validate(ok).input_altered  # claims: replayable
    assert {
        "section": "image.cosign",
        "code": "evidence.signature_invalid",
    } in bad["attestpolicy"]["evidence_failures"]
    assert bad["result"] == denied.to_json_dict()
    assert "input" not in unreadable
    assert unreadable["attestpolicy"]["reason_codes"] == list(broken.reason_codes)


def test_log_query_events(tmp_path: Path) -> None:
    logger, path = _logged(tmp_path)
    with logger:
        given = logger.log_query(
            "/v1/data/../attestpolicy/v1/decision/",
            {"audience": "vault"},
            {"allow": False},
            revision="rev-1",
            eval_ns=1234,
            decision_id="d-1",
            requested_by="127.0.0.1:5000",
        )
        made = logger.log_query(
            "attestpolicy/config/missing", {"a": 1}, None, revision="", eval_ns=None, defined=False
        )
        null_result = logger.log_query("p", None, None, revision="rev-1", eval_ns=0)
    assert given == "d-1"
    assert uuid.UUID(made)
    first, second, third = read_log(path)
    assert first["decision_id"] == "d-1"
    assert first["path"] == "v1/data/../attestpolicy/v1/decision"  # only the slashes around go
    assert first["bundles"] == {"attestpolicy": {"revision": "rev-1"}}
    assert first["input"] == {"audience": "vault"}
    assert first["result"] == {"allow": False}
    assert first["requested_by"] == "127.0.0.1:5000"
    assert first["metrics"] == {"timer_rego_query_eval_ns": 1234}
    assert first["attestpolicy"] == {"source": "query"}
    assert second["decision_id"] == made
    assert "result" not in second  # undefined, as OPA logs it
    assert "bundles" not in second
    assert second["metrics"] == {}
    assert third["decision_id"] == null_result
    assert "input" not in third  # no input given
    assert third["result"] is None  # a defined null result is kept


def test_user_labels_and_their_checks(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    with DecisionLogger(FileSink(path), labels={"app": "payments", "region": "eu"}) as logger:
        logger.log_query("p", {}, True, revision="r", eval_ns=1)
        labels = logger.labels
    (event,) = read_log(path)
    assert event["labels"] == labels
    assert labels["app"] == "payments"
    assert set(labels) == {"id", "version", "app", "region"}
    assert labels["id"] == INSTANCE_ID  # one per process, as serve's status document
    with DecisionLogger(FileSink(tmp_path / "second.jsonl")) as second:
        assert second.labels == {"id": INSTANCE_ID, "version": attestpolicy.__version__}
    for bad in ({"id": "mine"}, {"version": "9"}, {"": "x"}, {"k": 1}):
        with pytest.raises(DecisionLogConfigError, match="label"):
            DecisionLogger(FileSink(tmp_path / "other.jsonl"), labels=bad)  # type: ignore[arg-type]


def test_the_schema_and_the_model_reject_what_opa_would_not_read() -> None:
    event = {
        "labels": {"id": "i", "version": "v"},
        "decision_id": "d",
        "path": "p",
        "timestamp": "2026-01-01T00:00:00.000000000Z",
        "metrics": {},
        "attestpolicy": {"source": "query"},
    }
    checked(event)
    validator = jsonschema.Draft202012Validator(event_json_schema())
    bad_events = [
        {**event, "unknown": 1},
        {**event, "labels": {"id": "i"}},
        {**event, "timestamp": "2026-01-01T00:00:00Z"},
        {**event, "metrics": {"timer_x_ns": -1}},
        {**event, "metrics": {"eval": 1}},
        {**event, "erased": ["/data/x"]},
        {**event, "attestpolicy": {"source": "claims"}},
        {**event, "attestpolicy": {"source": "query", "cache": "hit"}},
        {**event, "bundles": {"attestpolicy": {}}},
    ]
    for bad in bad_events:
        with pytest.raises(ValidationError):
            DecisionLogEvent.model_validate(bad)
        assert not validator.is_valid(bad)
    assert json.loads(json.dumps(event_json_schema()))["$schema"].endswith("2020-12/schema")
