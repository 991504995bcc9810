"""Decision observers: one record per decision, never a changed or failed decision."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from attestpolicy._demo_evidence import fresh_evidence
from attestpolicy.claims import ClaimSet
from attestpolicy.observe import DecisionRecord, EvidenceFailure
from attestpolicy.pdp import PolicyDecisionPoint

EXAMPLES = Path(__file__).resolve().parents[1] / "attestpolicy" / "examples"
SIGNATURE = "dev.cosignproject.cosign/signature"


class Recorder:
    def __init__(self) -> None:
        self.records: list[DecisionRecord] = []

    def on_decision(self, record: DecisionRecord) -> None:
        self.records.append(record)


class Failing:
    def on_decision(self, record: DecisionRecord) -> None:
        raise RuntimeError("observer bug")


@pytest.fixture
def config() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EXAMPLES / "config.json").read_text())
    return loaded


@pytest.fixture
def claims() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (EXAMPLES / "claims" / "allow-fully-attested.json").read_text()
    )
    return loaded


def test_a_miss_then_a_hit(config: dict[str, Any], claims: dict[str, Any]) -> None:
    recorder = Recorder()
    with PolicyDecisionPoint.local(config=config) as pdp:
        pdp.add_observer(recorder)
        first = pdp.decide(claims)
        second = pdp.decide(claims)
    assert first.allow
    assert (second.allow, second.ttl_seconds) == (first.allow, first.ttl_seconds)
    miss, hit = recorder.records
    assert (miss.cache, hit.cache) == ("miss", "hit")
    assert miss.decision is first
    assert miss.evaluation_ns is not None
    assert miss.evaluation_ns > 0
    assert hit.evaluation_ns is None
    assert miss.duration_ns >= miss.evaluation_ns
    assert miss.source == hit.source == "claims"
    expected = ClaimSet.parse(claims).to_input()  # the normalized claim set, with its now
    assert expected["now"] == claims["now"]
    assert miss.policy_input() == expected
    assert hit.policy_input() == expected


def test_without_the_cache_and_with_unreadable_claims(config: dict[str, Any]) -> None:
    recorder = Recorder()
    with PolicyDecisionPoint.local(config=config, cache=False) as pdp:
        pdp.add_observer(recorder)
        decision = pdp.decide({"subject": 7})
    assert decision.reason_codes == ("input.invalid",)
    (record,) = recorder.records
    assert record.cache == "off"
    assert record.policy_input() is None
    assert record.evaluation_ns is None


def test_a_failing_observer_changes_nothing(
    config: dict[str, Any], claims: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    with PolicyDecisionPoint.local(config=config) as pdp:
        expected = pdp.decide(claims, now=None)
        pdp.add_observer(Failing())
        pdp.add_observer(recorder)
        with caplog.at_level(logging.ERROR, logger="attestpolicy.pdp"):
            decision = pdp.decide(claims)
    assert decision.allow == expected.allow
    assert len(recorder.records) == 1  # the next observer still ran
    assert "observer" in caplog.text


def test_removed_observers_hear_nothing(config: dict[str, Any], claims: dict[str, Any]) -> None:
    recorder = Recorder()
    with PolicyDecisionPoint.local(config=config) as pdp:
        pdp.add_observer(recorder)
        pdp.remove_observer(recorder)
        pdp.decide(claims)
        with pytest.raises(TypeError, match="on_decision"):
            pdp.add_observer(object())  # type: ignore[arg-type]
    assert recorder.records == []


def test_evidence_records_carry_verification_and_failures() -> None:
    fresh = fresh_evidence()
    recorder = Recorder()
    with PolicyDecisionPoint.local(config=fresh.config) as pdp:
        pdp.add_observer(recorder)
        allowed = pdp.decide_evidence(fresh.document, fresh.trust)
        tampered = copy.deepcopy(fresh.document)
        annotations = tampered["image"]["cosign"][0]["signature"]["annotations"]
        signature = bytearray(base64.b64decode(annotations[SIGNATURE]))
        signature[-1] ^= 0x01
        annotations[SIGNATURE] = base64.b64encode(signature).decode()
        denied = pdp.decide_evidence(tampered, fresh.trust)
        unreadable = pdp.decide_evidence({"version": 99}, fresh.trust)
    assert allowed.allow
    assert not denied.allow
    ok, bad, broken = recorder.records
    assert len(recorder.records) == 3  # one per decision, not one more for the inner decide
    assert ok.source == bad.source == broken.source == "evidence"
    assert ok.verification_ns is not None
    assert ok.verification_ns > 0
    assert ok.evidence_failures == ()
    assert ok.policy_input() is not None
    assert bad.decision is denied
    assert EvidenceFailure("image.cosign", "evidence.signature_invalid") in bad.evidence_failures
    assert broken.decision is unreadable
    assert broken.policy_input() is None
    assert [f.code for f in broken.evidence_failures] == list(unreadable.reason_codes)


def test_adecide_tells_observers_once(config: dict[str, Any], claims: dict[str, Any]) -> None:
    recorder = Recorder()

    async def twice(pdp: PolicyDecisionPoint) -> None:
        await pdp.adecide(claims)
        await pdp.adecide(claims)

    with PolicyDecisionPoint.local(config=config) as pdp:
        pdp.add_observer(recorder)
        asyncio.run(twice(pdp))
    assert [r.cache for r in recorder.records] == ["miss", "hit"]
