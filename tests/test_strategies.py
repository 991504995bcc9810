"""attestpolicy.testing.strategies: what each strategy promises, and that it reaches the
contract's classes and boundaries."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import pytest
import regorus
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from policy_model import glob_match, timestamp_ns

from attestpolicy.claims import ClaimSet
from attestpolicy.config import validate_config
from attestpolicy.errors import ClaimsError, ConfigError
from attestpolicy.pdp import PolicyDecisionPoint
from attestpolicy.policy import POLICY_REASON_CODES, PolicySource
from attestpolicy.testing import strategies
from attestpolicy.testing._generators import EVIDENCE_CLASSES, FAULTS, engine_input, scenarios

ROOT: Final = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG: Final[dict[str, Any]] = json.loads(
    (ROOT / "attestpolicy" / "examples" / "config.json").read_text(encoding="utf-8")
)
CHECK: Final = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
SEARCH: Final = settings(max_examples=3000, deadline=None, database=None, phases=[Phase.generate])
"""For find(): the first example found is enough (no shrinking)."""


def parses(document: object) -> bool:
    if not isinstance(document, dict):
        return False
    try:
        ClaimSet.parse(copy.deepcopy(document))
    except ClaimsError:
        return False
    return True


@pytest.fixture(scope="module")
def pdp() -> PolicyDecisionPoint:
    """The shipped policy under the shipped example configuration."""
    return PolicyDecisionPoint.local(config=EXAMPLE_CONFIG, cache=False)


# --- what each strategy promises ------------------------------------------------------


@CHECK
@given(config=strategies.configs())
def test_configs_are_valid(config: dict[str, Any]) -> None:
    validate_config(config)


@CHECK
@given(claims=strategies.claim_sets())
def test_claim_sets_parse_and_carry_now(claims: dict[str, Any]) -> None:
    assert parses(claims)
    assert claims["now"] is not None


@CHECK
@given(claims=strategies.claim_sets(config=EXAMPLE_CONFIG))
def test_claim_sets_for_a_config_parse(claims: dict[str, Any]) -> None:
    assert parses(claims)


@CHECK
@given(claims=strategies.claim_sets(config=EXAMPLE_CONFIG, valid=False))
def test_invalid_claim_sets_are_objects_that_do_not_parse(claims: Any) -> None:
    assert isinstance(claims, dict)
    assert not parses(claims)


@CHECK
@given(scenario=strategies.scenarios())
def test_scenarios_pair_a_valid_config_with_a_valid_claim_set(
    scenario: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    config, claims = scenario
    validate_config(config)
    assert parses(claims)


@CHECK
@given(document=strategies.raw_inputs())
def test_raw_inputs_are_json_both_engines_can_receive(document: Any) -> None:
    text = json.dumps(document, ensure_ascii=False, allow_nan=False)
    assert "\x00" not in text
    text.encode("utf-8")  # no lone surrogate


def test_a_config_that_is_not_valid_is_refused_at_once() -> None:
    broken = copy.deepcopy(EXAMPLE_CONFIG)
    broken["limits"]["min_ttl_seconds"] = 0
    with pytest.raises(ConfigError, match="min_ttl_seconds"):
        strategies.claim_sets(config=broken)
    with pytest.raises(ConfigError):
        strategies.raw_inputs(config={"workloads": []})


def test_the_config_is_copied_not_shared() -> None:
    config = copy.deepcopy(EXAMPLE_CONFIG)
    strategy = strategies.claim_sets(config=config)
    config.clear()
    claims = find(strategy, lambda c: True, settings=SEARCH)
    assert claims["subject"]["spiffe_id"] in EXAMPLE_CONFIG["workloads"]


# --- fail-closed properties on the shipped policy ---------------------------------------


@CHECK
@given(claims=strategies.claim_sets(config=EXAMPLE_CONFIG, valid=False))
def test_an_invalid_claim_set_is_denied_as_invalid(
    pdp: PolicyDecisionPoint, claims: dict[str, Any]
) -> None:
    decision = pdp.decide(claims)
    assert not decision.allow
    assert decision.reason_codes == ("input.invalid",)


@CHECK
@given(document=strategies.raw_inputs(config=EXAMPLE_CONFIG))
def test_raw_input_is_never_allowed_unless_it_is_a_claim_set(
    pdp: PolicyDecisionPoint, document: Any
) -> None:
    if isinstance(document, str | bytes):
        document = json.dumps(document)  # decide() reads a str as JSON text
    decision = pdp.decide(document)
    if not parses(document):
        assert not decision.allow
        assert decision.reason_codes == ("input.invalid",)


# --- tied to the configuration: allows are reachable ------------------------------------


def test_claim_sets_for_a_config_reach_an_allow(pdp: PolicyDecisionPoint) -> None:
    for audience in ("vault", "aws-sts"):

        def allowed(claims: dict[str, Any], audience: str = audience) -> bool:
            return claims["request"]["audience"] == audience and pdp.decide(claims).allow

        find(strategies.claim_sets(config=EXAMPLE_CONFIG), allowed, settings=SEARCH)


def test_claim_sets_for_a_config_use_its_subjects_digests_and_signers() -> None:
    registered = find(
        strategies.claim_sets(config=EXAMPLE_CONFIG),
        lambda c: (
            c["subject"]["spiffe_id"] in EXAMPLE_CONFIG["workloads"]
            and c.get("image") is not None
            and c["image"]["digest"]
            in EXAMPLE_CONFIG["workloads"][c["subject"]["spiffe_id"]].get("image_digests", [])
        ),
        settings=SEARCH,
    )
    assert registered["image"]["reference"].endswith("@" + registered["image"]["digest"])
    patterns = EXAMPLE_CONFIG["trusted_signers"]["issuers"][
        "https://token.actions.githubusercontent.com"
    ]

    def signed_through_a_glob(claims: dict[str, Any]) -> bool:
        signatures = (claims.get("image") or {}).get("signatures") or []
        return any(
            s["subject"] is not None
            and "*" in pattern
            and glob_match(pattern, s["subject"])
            and "/" in s["subject"][pattern.index("*") :]
            for s in signatures
            for pattern in patterns
        )

    find(strategies.claim_sets(config=EXAMPLE_CONFIG), signed_through_a_glob, settings=SEARCH)


# --- every class and boundary is reached ------------------------------------------------


def _age_at_limit(claims: dict[str, Any], config: dict[str, Any]) -> bool:
    node, now = claims.get("node"), timestamp_ns(claims["now"])
    if node is None or now is None:
        return False
    age = now - (timestamp_ns(node["issued_at"]) or 0)
    limit: int = config["limits"]["max_evidence_age_seconds"] * 1_000_000_000
    return limit > 0 and age == limit


def _skew_at_limit(claims: dict[str, Any], config: dict[str, Any]) -> bool:
    node, now = claims.get("node"), timestamp_ns(claims["now"])
    if node is None or now is None:
        return False
    skew = (timestamp_ns(node["issued_at"]) or 0) - now
    limit: int = config["limits"]["clock_skew_seconds"] * 1_000_000_000
    return limit > 0 and skew == limit


def _expiry_in(seconds: int) -> Callable[[dict[str, Any], dict[str, Any]], bool]:
    """Some evidence expires exactly ``seconds`` after now (-1: the minimum TTL)."""

    def check(claims: dict[str, Any], config: dict[str, Any]) -> bool:
        ahead = config["limits"]["min_ttl_seconds"] if seconds < 0 else seconds
        expected = (timestamp_ns(claims["now"]) or 0) + ahead * 1_000_000_000
        return any(
            timestamp_ns((claims.get(part) or {}).get("expires_at")) == expected
            for part in ("node", "runtime")
        )

    return check


def _requested_ttl_ties(claims: dict[str, Any], config: dict[str, Any]) -> bool:
    requested = claims["request"].get("requested_ttl_seconds")
    audience = config["audiences"].get(claims["request"]["audience"])
    return audience is not None and requested == audience["max_ttl_seconds"]


def _class(name: str, state: str) -> Callable[[dict[str, Any], dict[str, Any]], bool]:
    if state == "present":
        return lambda claims, config: isinstance(claims.get(name), dict)
    if state == "null":
        return lambda claims, config: name in claims and claims[name] is None
    return lambda claims, config: name not in claims


def _optional_field(state: str) -> Callable[[dict[str, Any], dict[str, Any]], bool]:
    def check(claims: dict[str, Any], config: dict[str, Any]) -> bool:
        node = claims.get("node") or {}
        if state == "null":
            return "expires_at" in node and node["expires_at"] is None
        return bool(node) and "expires_at" not in node

    return check


BOUNDARIES: Final[dict[str, Callable[[dict[str, Any], dict[str, Any]], bool]]] = {
    "age exactly at the limit": _age_at_limit,
    "skew exactly at the limit": _skew_at_limit,
    "expiry exactly at now": _expiry_in(0),
    "expiry exactly min TTL ahead": _expiry_in(-1),
    "requested TTL ties the audience's": _requested_ttl_ties,
    "node.expires_at null": _optional_field("null"),
    "node.expires_at absent": _optional_field("absent"),
    **{
        f"{name} {state}": _class(name, state)
        for name in EVIDENCE_CLASSES
        for state in ("present", "null", "absent")
    },
}


@pytest.mark.parametrize("boundary", sorted(BOUNDARIES))
def test_claim_sets_reach(boundary: str) -> None:
    check = BOUNDARIES[boundary]
    find(
        strategies.claim_sets(config=EXAMPLE_CONFIG),
        lambda claims: check(claims, EXAMPLE_CONFIG),
        settings=SEARCH,
    )


def test_scenarios_reach_every_reason_code() -> None:
    """Every fault kind scenarios() injects, a few times each (derandomized): together
    they reach each of the default policy's reason codes."""
    engine = regorus.Engine()
    for name, text in PolicySource.from_directory().modules.items():
        engine.add_policy(name, text)
    seen: set[str] = set()

    def collect(scenario: tuple[dict[str, Any], dict[str, Any]]) -> None:
        config, claims = scenario
        engine.clear_data()
        engine.add_data({"attestpolicy": {"config": config}})
        engine.set_input(engine_input(claims))
        decision = engine.eval_rule("data.attestpolicy.v1.decision")
        seen.update(reason["code"] for reason in decision["reasons"])

    few = settings(max_examples=5, deadline=None, database=None, derandomize=True)
    for fault in range(len(FAULTS)):
        few(given(scenarios(fault))(collect))()
    assert sorted(POLICY_REASON_CODES - seen) == []


# --- Hypothesis stays an optional dependency --------------------------------------------


def test_importing_attestpolicy_never_imports_hypothesis() -> None:
    code = (
        "import sys, attestpolicy\n"
        "from attestpolicy import PolicyDecisionPoint, ClaimSet\n"
        "import attestpolicy.pdp, attestpolicy.cli\n"
        "print('hypothesis' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "False"


def test_without_hypothesis_the_error_names_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['hypothesis'] = None\n"
        "try:\n"
        "    import attestpolicy.testing.strategies\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "pip install 'attestpolicy[testing]'" in result.stdout


def test_the_testing_extra_is_hypothesis_with_the_projects_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    (hypothesis,) = extras["testing"]
    assert hypothesis.startswith("hypothesis")
    assert hypothesis in extras["test"]
    assert not any(dep.startswith("hypothesis") for dep in project["dependencies"])


@CHECK
@given(data=st.data())
def test_claim_sets_under_generated_configs_parse(data: st.DataObject) -> None:
    config = data.draw(strategies.configs(), label="config")
    assert parses(data.draw(strategies.claim_sets(config=config), label="claims"))
