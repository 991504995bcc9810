"""Shadow mode: the candidate decides beside the active policy; the active answer is untouched."""

from __future__ import annotations

import base64
import copy
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from attestpolicy._demo_evidence import fresh_evidence
from attestpolicy.decision import Decision
from attestpolicy.engine.local import LocalEvaluator
from attestpolicy.pdp import PolicyDecisionPoint
from attestpolicy.policy import DECISION_PATH, PolicySource
from attestpolicy.replay import Outcome, load_candidate
from attestpolicy.shadow import SHADOW_LOGGER, Shadow, ShadowComparison

COSIGN_SIGNATURE = "dev.cosignproject.cosign/signature"
EXAMPLES = Path(__file__).resolve().parents[1] / "attestpolicy" / "examples"
REVOKED_SIGNER = (
    "https://github.com/example-org/payments-api/.github/workflows/release.yml@refs/tags/v1.4.2"
)


def _config(revoke: bool = False) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((EXAMPLES / "config.json").read_text())
    if revoke:
        config["revoked"]["signer_subjects"][REVOKED_SIGNER] = "compromised runner"
    return config


def _claim_sets() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(EXAMPLES.glob("claims/*.json"))]


def _signed_by_revoked(claims: Mapping[str, Any]) -> bool:
    image = claims.get("image") or {}
    return any(s.get("subject") == REVOKED_SIGNER for s in image.get("signatures", []))


def _answers(decisions: Sequence[Decision]) -> list[tuple[bool, int, tuple[str, ...]]]:
    return [(d.allow, d.ttl_seconds, d.reason_codes) for d in decisions]


class _Listener:
    def __init__(self) -> None:
        self.comparisons: list[ShadowComparison] = []

    def __call__(self, comparison: ShadowComparison) -> None:
        self.comparisons.append(comparison)


def test_agreements_and_disagreements_are_counted_and_the_answer_kept(
    caplog: pytest.LogCaptureFixture, engine: str
) -> None:
    claim_sets = _claim_sets()
    with PolicyDecisionPoint.local(config=_config(), engine=engine) as alone:
        expected = [alone.decide(claims) for claims in claim_sets]

    listener = _Listener()
    candidate = load_candidate(config=_config(revoke=True), engine=engine)
    with (
        caplog.at_level(logging.WARNING, logger=SHADOW_LOGGER),
        PolicyDecisionPoint.local(config=_config(), engine=engine) as pdp,
        Shadow(candidate.evaluator, listener=listener) as shadow,
    ):
        pdp.add_observer(shadow)
        shadowed = [pdp.decide(claims) for claims in claim_sets]
        again = pdp.decide(claim_sets[0])  # a cache hit is shadowed too
        assert shadow.flush(60)
        stats = shadow.stats()

    assert _answers(shadowed) == _answers(expected)
    assert _answers([again]) == _answers(expected[:1])
    # every decision on an image the revoked signer signed disagrees: an allow becomes a
    # deny, a deny gains image.untrusted_signer (the first claim set, an allow, twice)
    decided = [*zip(claim_sets, expected, strict=True), (claim_sets[0], again)]
    disagreements = sum(_signed_by_revoked(c) for c, _ in decided)
    narrowed = sum(_signed_by_revoked(c) and d.allow for c, d in decided)
    assert _signed_by_revoked(claim_sets[0])
    assert expected[0].allow
    assert stats.submitted == stats.compared == len(claim_sets) + 1
    assert stats.agreed == stats.compared - disagreements
    assert stats.disagreed == {
        "allow_to_deny": narrowed,
        "deny_to_allow": 0,
        "reasons_changed": disagreements - narrowed,
        "ttl_changed": 0,
    }
    assert stats.by_reason["allow_to_deny"] == {"image.untrusted_signer": narrowed}
    assert (stats.dropped, stats.skipped, stats.failed, stats.pending) == (0, 0, 0, 0)

    assert len(listener.comparisons) == stats.compared
    by_id = {c.decision_id: c for c in listener.comparisons}
    first = by_id[shadowed[0].decision_id]
    assert first.active == Outcome.of(shadowed[0])
    assert first.change == "allow_to_deny"
    assert first.workload == claim_sets[0]["subject"]["spiffe_id"]

    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == SHADOW_LOGGER]
    assert len(lines) == disagreements
    logged = next(line for line in lines if line["decision_id"] == shadowed[0].decision_id)
    assert logged["change"] == "allow_to_deny"
    assert logged["active"] == {"allow": True, "reasons": [], "ttl_seconds": 900}
    assert logged["shadow"]["reasons"] == ["image.untrusted_signer"]
    assert logged["shadow_revision"] == candidate.revision


def test_a_data_api_answer_is_submitted_with_its_input() -> None:
    claims = _claim_sets()[0]
    active = LocalEvaluator(PolicySource.from_directory(), _config())
    defined, document = active.evaluate_path(DECISION_PATH, claims)
    assert defined
    with Shadow(load_candidate(config=_config(revoke=True)).evaluator) as shadow:
        assert shadow.submit(claims, document, decision_id="d-1")
        assert shadow.submit(claims, None, decision_id="d-undefined")  # undefined: a deny
        assert not shadow.submit(claims, document, path="attestpolicy/v1")  # other paths: no
        assert not shadow.submit(claims, {"allow": "yes"})  # not a decision document
        assert shadow.submit({"subject": {}}, document)  # no now: skipped
        assert shadow.flush(60)
        stats = shadow.stats()
    assert stats.submitted == 4
    assert stats.compared == 2
    assert stats.disagreed["allow_to_deny"] == 1
    assert stats.disagreed["reasons_changed"] == 1  # engine.undefined -> the policy's reasons
    assert (stats.failed, stats.skipped) == (1, 1)


class _Broken:
    """A candidate whose evaluator raises (a bug in it, a closed engine)."""

    revision = "broken"

    def evaluate(self, policy_input: dict[str, Any], *, evaluated_at: datetime) -> Decision:
        raise RuntimeError("candidate bug")

    def close(self) -> None:
        pass


class _Blocking:
    """A candidate that decides only when released (a slow shadow)."""

    revision = "blocking"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def evaluate(self, policy_input: dict[str, Any], *, evaluated_at: datetime) -> Decision:
        self.started.set()
        self.release.wait(60)
        return Decision.deny("test.blocked", "released", evaluated_at=evaluated_at)

    def close(self) -> None:
        self.release.set()


def test_a_failing_shadow_never_touches_the_active_answer() -> None:
    claim_sets = _claim_sets()

    def exploding_listener(comparison: ShadowComparison) -> None:
        raise RuntimeError("listener bug")

    with PolicyDecisionPoint.local(config=_config()) as alone:
        expected = [alone.decide(claims) for claims in claim_sets]
    with (
        PolicyDecisionPoint.local(config=_config()) as pdp,
        Shadow(_Broken(), listener=exploding_listener) as shadow,  # type: ignore[arg-type]
    ):
        pdp.add_observer(shadow)
        answers = [pdp.decide(claims) for claims in claim_sets]
        assert shadow.flush(60)
        stats = shadow.stats()
    assert _answers(answers) == _answers(expected)
    # the candidate's error is its deny (engine.error): compared, and counted as it decided
    assert stats.compared == len(claim_sets)
    assert stats.by_reason["allow_to_deny"] == {"engine.error": sum(d.allow for d in expected)}
    assert stats.failed == len(claim_sets)  # the listener raised each time


def test_a_slow_shadow_drops_decisions_instead_of_delaying_them() -> None:
    claims = _claim_sets()[0]
    blocking = _Blocking()
    with (
        PolicyDecisionPoint.local(config=_config()) as pdp,
        Shadow(blocking, queue_size=3) as shadow,  # type: ignore[arg-type]
    ):
        pdp.add_observer(shadow)
        first = pdp.decide(claims)
        assert blocking.started.wait(60)  # the shadow is busy with the first decision
        later = [pdp.decide(copy.deepcopy(claims)) for _ in range(10)]
        stats = shadow.stats()
        assert (stats.submitted, stats.dropped, stats.pending) == (11, 7, 4)
        blocking.release.set()
        assert shadow.flush(60)
        assert shadow.stats().compared == 4
    assert all(d.allow for d in [first, *later])


def test_close_stops_taking_decisions_and_closes_the_candidate() -> None:
    claims = _claim_sets()[0]
    blocking = _Blocking()
    shadow = Shadow(blocking)  # type: ignore[arg-type]
    assert shadow.submit(claims, {"allow": False, "reasons": [{"code": "x", "message": "m"}]})
    assert blocking.started.wait(60)
    assert shadow.submit(claims, None)  # queued behind the busy one
    shadow.close(timeout=0.05)  # the busy one is not finished: the queued one is dropped
    assert blocking.release.is_set()  # closed
    assert not shadow.submit(claims, None)
    stats = shadow.stats()
    assert stats.dropped == 2
    assert stats.submitted == 3
    shadow.close()  # again: nothing happens


def test_queue_size_is_checked() -> None:
    with pytest.raises(ValueError, match="queue_size"):
        Shadow(_Broken(), queue_size=0)  # type: ignore[arg-type]


def test_an_idle_shadow_closes_cleanly() -> None:
    with Shadow(load_candidate(config=_config()).evaluator) as shadow:
        assert shadow.flush(1)
        assert shadow.stats().submitted == 0
        assert shadow.revision.startswith("sha256:")


def test_evidence_decisions_agree_with_the_same_policy() -> None:
    """A decide_evidence deny carries its evidence problems; the shadow keeps them."""
    fresh = fresh_evidence()
    tampered = copy.deepcopy(fresh.document)
    annotations = tampered["image"]["cosign"][0]["signature"]["annotations"]
    signature = bytearray(base64.b64decode(annotations[COSIGN_SIGNATURE]))
    signature[-1] ^= 0x01
    annotations[COSIGN_SIGNATURE] = base64.b64encode(signature).decode()
    with (
        PolicyDecisionPoint.local(config=fresh.config) as pdp,
        Shadow(load_candidate(config=fresh.config).evaluator) as shadow,
    ):
        pdp.add_observer(shadow)
        assert pdp.decide_evidence(fresh.document, fresh.trust).allow
        denied = pdp.decide_evidence(tampered, fresh.trust)
        pdp.decide_evidence({"version": 99}, fresh.trust)  # no claims: nothing to compare
        assert shadow.flush(60)
        stats = shadow.stats()
    assert "evidence.signature_invalid" in denied.reason_codes
    assert (stats.compared, stats.agreed, stats.skipped) == (2, 2, 1)
