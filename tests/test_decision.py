"""decision_from_policy_result: only a well-formed allow is an allow."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from attestpolicy.decision import Decision, decision_from_policy_result

AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
ALLOW = {
    "allow": True,
    "ttl_seconds": 900,
    "reasons": [],
    "ttl_bound_by": "request",
    "valid_until": "2026-11-22T10:05:00Z",
}


DENY: dict[str, Any] = {
    "allow": False,
    "ttl_seconds": 0,
    "reasons": [],
    "ttl_bound_by": None,
    "valid_until": None,
}


def _decide(result: Any) -> Decision:
    return decision_from_policy_result(result, policy_revision="rev-1", evaluated_at=AT)


def test_well_formed_allow() -> None:
    decision = _decide(ALLOW)
    assert decision.allow
    assert decision.ttl_seconds == 900
    assert decision.ttl_bound_by == "request"
    assert decision.to_json_dict()["valid_until"] == "2026-11-22T10:05:00Z"
    assert decision.policy_revision == "rev-1"
    assert decision.evaluated_at == AT


def test_valid_until_may_be_null() -> None:
    assert _decide(ALLOW | {"valid_until": None}).valid_until is None


def test_deny_reasons_sorted_and_ttl_zero() -> None:
    decision = _decide(
        DENY
        | {
            "reasons": [
                {"code": "node.stale", "message": "b"},
                {"code": "image.unsigned", "message": "a"},
            ],
        }
    )
    assert not decision.allow
    assert decision.ttl_seconds == 0
    assert decision.reason_codes == ("image.unsigned", "node.stale")


def test_deny_without_reasons_gets_one() -> None:
    assert _decide(DENY).reason_codes == ("policy.deny",)


def test_ttl_terms_and_revocable_are_parsed() -> None:
    decision = _decide(
        ALLOW
        | {
            "ttl_terms": [
                {"name": "request", "seconds": 900},
                {"name": "evidence_expiry", "until": "2026-11-22T11:00:00.5Z"},
            ],
            "revocable": [["node_ids", "n1"], ["image_digests", "sha256:aa"]],
        }
    )
    assert decision.ttl_terms is not None
    assert [term.name for term in decision.ttl_terms] == ["request", "evidence_expiry"]
    assert decision.ttl_terms[1].until == datetime(2026, 11, 22, 11, 0, 0, 500000, tzinfo=UTC)
    assert decision.revocable == (("image_digests", "sha256:aa"), ("node_ids", "n1"))
    older = _decide(ALLOW)  # a policy that does not state them: allowed, never cached
    assert (older.ttl_terms, older.revocable) == (None, None)


def test_undefined_is_engine_undefined() -> None:
    decision = _decide(None)
    assert not decision.allow
    assert decision.reason_codes == ("engine.undefined",)


@pytest.mark.parametrize(
    "result",
    [
        True,
        "allow",
        [ALLOW],
        {},
        ALLOW | {"allow": "true"},
        ALLOW | {"allow": 1},
        ALLOW | {"ttl_seconds": 0},
        ALLOW | {"ttl_seconds": -1},
        ALLOW | {"ttl_seconds": 1.5},
        ALLOW | {"ttl_seconds": True},
        ALLOW | {"ttl_seconds": "900"},
        ALLOW | {"ttl_bound_by": None},
        ALLOW | {"valid_until": "soon"},
        ALLOW | {"reasons": [{"code": "x", "message": "y"}]},
        ALLOW | {"reasons": "none"},
        {k: v for k, v in ALLOW.items() if k != "ttl_seconds"},
        DENY | {"reasons": [{"code": 1, "message": "m"}]},
        DENY | {"reasons": ["x"]},
        # The remote review's findings: reasons that are not an array of reasons, a huge TTL.
        DENY | {"reasons": None},
        DENY | {"reasons": {}},
        DENY | {"reasons": ""},
        DENY | {"reasons": 0},
        DENY | {"reasons": False},
        ALLOW | {"reasons": None},
        ALLOW | {"ttl_seconds": 1e18},
        ALLOW | {"ttl_seconds": 2**31},
        {"allow": False},
        DENY | {"ttl_seconds": 5},
        DENY | {"ttl_bound_by": "default"},
        DENY | {"revocable": [["node_ids", "n"]]},
        ALLOW | {"extra": 1},
        ALLOW | {"reasons": [{"code": "", "message": "m"}]},
        ALLOW | {"reasons": [{"code": "c", "message": "m", "x": 1}]},
        # ttl_terms must agree with the TTL
        ALLOW | {"ttl_terms": [{"name": "audience", "seconds": 900}]},
        ALLOW | {"ttl_terms": [{"name": "request", "seconds": 600}]},
        ALLOW | {"ttl_terms": [{"name": "request", "seconds": 900}, {"name": "a", "seconds": 10}]},
        ALLOW
        | {"ttl_terms": [{"name": "request", "seconds": 900, "until": "2026-11-22T10:00:00Z"}]},
        ALLOW | {"ttl_terms": [{"name": "request"}]},
        ALLOW | {"ttl_terms": []},
        ALLOW | {"ttl_terms": "request"},
        ALLOW | {"revocable": [["node_ids"]]},
        ALLOW | {"revocable": [["node_ids", 1]]},
        ALLOW | {"revocable": {"node_ids": ["n"]}},
    ],
)
def test_malformed_results_fail_closed(result: Any) -> None:
    decision = _decide(result)
    assert not decision.allow
    assert decision.ttl_seconds == 0
    assert decision.reason_codes == ("engine.error",)


def test_decision_ids_are_unique() -> None:
    assert len({_decide(ALLOW).decision_id for _ in range(100)}) == 100


def test_deny_helper_and_json() -> None:
    decision = Decision.deny("remote.error", "down", policy_revision="r", evaluated_at=AT)
    data = decision.to_json_dict()
    assert data["allow"] is False
    assert data["reasons"] == [{"code": "remote.error", "message": "down"}]
    assert data["evaluated_at"] == "2026-11-22T10:00:00Z"
    assert data["ttl_bound_by"] is None
