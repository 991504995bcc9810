"""PolicyDecisionPoint end to end with the real engine: decisions, fail-closed paths, cache."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from attestpolicy import ClaimSet, Decision, PolicyDecisionPoint
from attestpolicy.engine.local import LocalEvaluator
from attestpolicy.errors import ConfigError, EvaluatorError, PolicyError
from attestpolicy.policy import PolicySource

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


@pytest.fixture
def pdp(example_config: dict[str, Any]) -> PolicyDecisionPoint:
    return PolicyDecisionPoint.local(config=example_config)


def _write_policy(directory: Path, body: str) -> Path:
    (directory / "policy.rego").write_text("package attestpolicy.v1\n\nimport rego.v1\n\n" + body)
    return directory


# --- decisions with the shipped policy -----------------------------------------


def test_allow_from_dict_json_and_claimset(
    pdp: PolicyDecisionPoint, claims: dict[str, Any]
) -> None:
    for form in (claims, json.dumps(claims), json.dumps(claims).encode(), ClaimSet.parse(claims)):
        decision = pdp.decide(form)
        assert decision.allow, decision.reasons
        assert decision.ttl_seconds == 900
        assert decision.ttl_bound_by == "default"
        assert decision.reasons == ()
        assert decision.policy_revision == pdp.revision


def test_request_ttl_and_now_override(pdp: PolicyDecisionPoint, claims: dict[str, Any]) -> None:
    claims["request"]["requested_ttl_seconds"] = 120
    decision = pdp.decide(claims)
    assert (decision.ttl_seconds, decision.ttl_bound_by) == (120, "request")
    # at a later time the node evidence is stale: a deny
    late = pdp.decide(claims, now=NOW + timedelta(hours=1))
    assert not late.allow
    assert "node.stale" in late.reason_codes


def test_now_filled_with_current_time_when_absent(
    pdp: PolicyDecisionPoint, claims: dict[str, Any]
) -> None:
    del claims["now"]  # the example evidence dates from 2026-11-22T09:59Z
    decision = pdp.decide(claims)
    assert not decision.allow
    assert "node.stale" in decision.reason_codes


def test_no_config_denies_everything(claims: dict[str, Any]) -> None:
    decision = PolicyDecisionPoint.local().decide(claims)
    assert not decision.allow
    assert decision.ttl_seconds == 0


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda c: c["request"].update(requested_ttl_seconds=0), "request.requested_ttl_seconds"),
        (lambda c: c.update(now="not a time"), "now"),
        (lambda c: c["image"].update(digest="sha512:" + "a" * 128), "image.digest"),
    ],
)
def test_invalid_input_is_a_deny_naming_the_field(
    pdp: PolicyDecisionPoint, claims: dict[str, Any], mutate: Any, field: str
) -> None:
    mutate(claims)
    decision = pdp.decide(claims)
    assert not decision.allow
    assert decision.reason_codes == ("input.invalid",)
    assert decision.reasons[0].message.startswith(field + ":")


@pytest.mark.parametrize("bad", ["{", b"\x00\xff", "[]", 42, None, object()])
def test_garbage_claims_fail_closed(pdp: PolicyDecisionPoint, bad: Any) -> None:
    decision = pdp.decide(bad)
    assert not decision.allow
    assert decision.reason_codes == ("input.invalid",)


def test_invalid_config_rejected_at_construction(example_config: dict[str, Any]) -> None:
    bad = copy.deepcopy(example_config)
    bad["limits"]["min_ttl_seconds"] = "60"
    with pytest.raises(ConfigError, match=r"limits\.min_ttl_seconds"):
        PolicyDecisionPoint.local(config=bad)
    with pytest.raises(ConfigError, match="trusted_signer"):
        PolicyDecisionPoint.local(config={**example_config, "trusted_signer": []})


# --- fail-closed engine paths ------------------------------------------------------


def test_engine_error_is_a_deny(tmp_path: Path, claims: dict[str, Any]) -> None:
    _write_policy(tmp_path, 'decision := {"allow": startswith(input.request, "x")}\n')
    decision = PolicyDecisionPoint.local(tmp_path).decide(claims)
    assert not decision.allow
    assert decision.reason_codes == ("engine.error",)
    assert "startswith" in decision.reasons[0].message
    assert "Stack backtrace" not in decision.reasons[0].message


def test_undefined_decision_is_a_deny(tmp_path: Path, claims: dict[str, Any]) -> None:
    _write_policy(tmp_path, 'decision := {"allow": true} if input.nothing_here\n')
    decision = PolicyDecisionPoint.local(tmp_path).decide(claims)
    assert decision.reason_codes == ("engine.undefined",)


def test_malformed_allow_is_a_deny(tmp_path: Path, claims: dict[str, Any]) -> None:
    _write_policy(tmp_path, 'decision := {"allow": true, "ttl_seconds": "forever"}\n')
    decision = PolicyDecisionPoint.local(tmp_path).decide(claims)
    assert not decision.allow
    assert decision.reason_codes == ("engine.error",)


def test_broken_policy_fails_at_load(tmp_path: Path) -> None:
    _write_policy(tmp_path, "decision := {\n")
    with pytest.raises(PolicyError, match="policy failed to load"):
        PolicyDecisionPoint.local(tmp_path)
    with pytest.raises(PolicyError, match="policy directory not found"):
        PolicyDecisionPoint.local(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PolicyError, match=r"no \.rego files"):
        PolicyDecisionPoint.local(tmp_path / "empty")


def test_evaluator_exception_is_a_deny(claims: dict[str, Any]) -> None:
    class Exploding:
        revision = "r"

        def evaluate(self, policy_input: dict[str, Any], *, evaluated_at: datetime) -> Decision:
            raise RuntimeError("boom")

        def revoke(self, pairs: Sequence[tuple[str, str]], *, reason: str) -> bool:
            return False

        def lift(self, pairs: Sequence[tuple[str, str]]) -> bool:
            return False

        def reload(
            self, source: PolicySource | None = None, config: Mapping[str, Any] | None = None
        ) -> str:
            return self.revision

        def close(self) -> None:
            pass

    decision = PolicyDecisionPoint(Exploding()).decide(claims)
    assert decision.reason_codes == ("engine.error",)
    assert "boom" in decision.reasons[0].message


# --- the cache on the decide() path -------------------------------------------------


def test_cache_hit_key_order_and_fresh_ids(
    pdp: PolicyDecisionPoint, claims: dict[str, Any]
) -> None:
    first = pdp.decide(claims)
    reordered = json.loads(json.dumps(claims, sort_keys=True))
    reordered = dict(reversed(list(reordered.items())))
    second = pdp.decide(reordered)
    stats = pdp.cache_stats()
    assert stats is not None
    assert stats.hits == 1
    assert second.allow
    assert second.ttl_seconds == first.ttl_seconds
    assert second.decision_id != first.decision_id


def test_changed_claim_misses(pdp: PolicyDecisionPoint, claims: dict[str, Any]) -> None:
    pdp.decide(claims)
    claims["node"]["measurements"]["pcr.sha256.7"] = "00" * 32
    decision = pdp.decide(claims)
    assert not decision.allow
    assert "node.measurement_mismatch" in decision.reason_codes
    stats = pdp.cache_stats()
    assert stats is not None
    assert stats.hits == 0


def test_cached_allow_not_served_past_valid_until(
    pdp: PolicyDecisionPoint, claims: dict[str, Any]
) -> None:
    del claims["now"]
    first = pdp.decide(claims, now=NOW)
    assert first.allow
    assert first.valid_until is not None
    just_before = first.valid_until - timedelta(microseconds=1)
    assert pdp.decide(claims, now=just_before).allow
    after = pdp.decide(claims, now=first.valid_until + timedelta(seconds=1))
    assert not after.allow
    assert "node.stale" in after.reason_codes


def test_cached_ttl_shrinks_with_evidence_expiry(
    pdp: PolicyDecisionPoint, claims: dict[str, Any]
) -> None:
    del claims["now"]
    claims["runtime"]["expires_at"] = "2026-11-22T10:10:00Z"
    first = pdp.decide(claims, now=NOW)
    assert (first.ttl_seconds, first.ttl_bound_by) == (600, "evidence_expiry")
    later = pdp.decide(claims, now=NOW + timedelta(seconds=100))
    stats = pdp.cache_stats()
    assert stats is not None
    assert stats.hits == 1
    assert (later.ttl_seconds, later.ttl_bound_by) == (500, "evidence_expiry")


def test_revoke_takes_effect_on_the_next_call(
    pdp: PolicyDecisionPoint, claims: dict[str, Any]
) -> None:
    assert pdp.decide(claims).allow
    old_revision = pdp.revision
    assert pdp.revoke(node_id=claims["node"]["id"]) == 1
    assert pdp.revision != old_revision
    decision = pdp.decide(claims)
    assert not decision.allow
    assert decision.reason_codes == ("node.revoked",)


def test_revoke_spiffe_id_and_signer(pdp: PolicyDecisionPoint, claims: dict[str, Any]) -> None:
    assert pdp.decide(claims).allow
    pdp.revoke(spiffe_id=claims["subject"]["spiffe_id"])
    assert "subject.revoked" in pdp.decide(claims).reason_codes
    with pytest.raises(ValueError, match="at least one"):
        pdp.revoke()
    with pytest.raises(TypeError):
        pdp.revoke(node_id=7)  # type: ignore[arg-type]


def test_reload_changes_revision_at_once(
    pdp: PolicyDecisionPoint, claims: dict[str, Any], example_config: dict[str, Any]
) -> None:
    assert pdp.decide(claims).ttl_seconds == 900
    tighter = copy.deepcopy(example_config)
    tighter["audiences"]["vault"]["max_ttl_seconds"] = 300
    pdp.reload(config=tighter)
    decision = pdp.decide(claims)
    assert (decision.ttl_seconds, decision.ttl_bound_by) == (300, "audience")


def test_cache_can_be_disabled(example_config: dict[str, Any], claims: dict[str, Any]) -> None:
    pdp = PolicyDecisionPoint.local(config=example_config, cache=False)
    pdp.decide(claims)
    assert pdp.cache_stats() is None


def test_concurrent_decisions_during_swaps_never_mix_revisions(
    example_config: dict[str, Any], claims: dict[str, Any]
) -> None:
    tighter = copy.deepcopy(example_config)
    tighter["audiences"]["vault"]["max_ttl_seconds"] = 300
    configs = [example_config, tighter]
    expected_ttl: dict[str, int] = {}
    pdp = PolicyDecisionPoint.local(config=example_config)
    expected_ttl[pdp.revision] = 900
    results: list[Decision] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker() -> None:
        try:
            while not stop.is_set():
                results.append(pdp.decide(claims))
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for index in range(20):
            revision = pdp.reload(config=configs[(index + 1) % 2])
            expected_ttl[revision] = 300 if (index + 1) % 2 else 900
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors
    assert len(results) > 20
    for decision in results:
        assert decision.allow
        assert decision.ttl_seconds == expected_ttl[decision.policy_revision]


def test_engines_are_per_thread_and_freed_safely(example_config: dict[str, Any]) -> None:
    evaluator = LocalEvaluator(PolicySource.from_directory(), example_config)
    seen: list[str] = []

    def use() -> None:
        seen.append(evaluator.evaluate({"now": "x"}, evaluated_at=NOW).reason_codes[0])

    thread = threading.Thread(target=use)
    thread.start()
    thread.join()
    assert seen == ["input.invalid"]


# --- the caller's claims are read once --------------------------------------------


class _ChangingClaims(Mapping[str, Any]):
    """Claims whose request names one audience on the first read and another after:
    what a caller's dict looks like when another thread edits it during decide()."""

    def __init__(self, claims: dict[str, Any], first: str, later: str) -> None:
        self._claims, self._audiences, self._reads = claims, (first, later), 0

    def __getitem__(self, key: str) -> Any:
        value = self._claims[key]
        if key == "request":
            value = {**value, "audience": self._audiences[min(self._reads, 1)]}
            self._reads += 1
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._claims)

    def __len__(self) -> int:
        return len(self._claims)


@pytest.mark.parametrize("cache_impl", ["python", "cython"])
def test_claims_changed_during_decide_never_poison_the_cache(
    example_config: dict[str, Any], claims: dict[str, Any], cache_impl: str
) -> None:
    from attestpolicy.engine.cache import load_implementation

    pdp = PolicyDecisionPoint.local(
        config=example_config, cache=load_implementation(cache_impl).cache_class()
    )
    changing = _ChangingClaims(claims, first="unknown.example", later="vault")
    first = pdp.decide(changing)
    unknown = copy.deepcopy(claims)
    unknown["request"]["audience"] = "unknown.example"
    after = pdp.decide(unknown)
    assert not after.allow, "an allow for the known audience was cached under the unknown one"
    assert after.reason_codes == ("request.unknown_audience",)
    assert first.allow is False  # decided on the single read: the unknown audience


class _FailingClaims(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        return iter(["subject", "request"])

    def __len__(self) -> int:
        return 2


@pytest.mark.parametrize("cached", [True, False])
def test_a_mapping_that_raises_is_a_deny_not_an_exception(
    example_config: dict[str, Any], cached: bool
) -> None:
    pdp = PolicyDecisionPoint.local(config=example_config, cache=cached)
    decision = pdp.decide(_FailingClaims())
    assert not decision.allow
    assert decision.reason_codes == ("input.invalid",)
    assert "boom" in decision.reasons[0].message


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("engine", ["regorus", "opa"])
def test_deep_or_cyclic_input_never_reaches_the_engine(
    example_config: dict[str, Any],
    claims: dict[str, Any],
    engine: str,
    request: pytest.FixtureRequest,
) -> None:
    """regorus and OPA's bindings crash the process on such values (SIGSEGV)."""
    if engine == "opa":
        request.getfixturevalue("requires_opa")
    from attestpolicy.engine._inprocess import make_evaluator

    evaluator = make_evaluator(engine, PolicySource.from_directory(), example_config)
    cyclic: dict[str, Any] = {"subject": {}}
    cyclic["subject"]["self"] = cyclic
    for bad in ({"deep": _nested(10_000)}, cyclic, {"subject": {"x": object()}}):
        decision = evaluator.evaluate(bad, evaluated_at=NOW)
        assert decision.reason_codes == ("input.invalid",), decision.reasons
        assert decision.reasons[0].message.startswith("policy input refused: ")
    with pytest.raises(EvaluatorError) as info:
        evaluator.evaluate_path("attestpolicy/v1/decision", _nested(10_000))
    assert info.value.code == "input.invalid"
    within = {"deep": _nested(40), **claims}
    judged = evaluator.evaluate(within, evaluated_at=NOW)  # reaches the policy, which refuses
    assert judged.reason_codes == ("input.invalid",)
    assert judged.reasons[0].message == "input.deep: unknown field"
    evaluator.close()
