"""Differential tests: regorus and real OPA decide identically, and as the contract says.

Issue 7: the policy must give the same decision in the in-process engine (regorus) and
in OPA. Hypothesis generates configurations of the issue-7 format and policy inputs,
evaluates ``data.attestpolicy.v1.decision`` in both engines (OPA's own Go evaluator,
embedded through ``opa_bindings``) and requires the whole decision object to be equal:
allow, ttl_seconds, ttl_bound_by, valid_until and every reason's code *and* message.
Then it checks the (common) decision against :mod:`policy_model`, written from the
contract text.

Inputs come in three kinds: raw input (absent keys, nulls, wrong types, unicode, huge
numbers, integral and non-integral floats, nested garbage, unknown keys), exactly what
the PDP passes to its engine (``ClaimSet.parse(...).to_input()`` with ``now`` set), and
valid inputs under configurations whose per-decision parts are corrupted.

One regorus engine and one OPA engine per test; each example swaps the configuration
and the input (regorus: its data; OPA: a ``with`` modifier on
``data.attestpolicy.config`` - :func:`test_with_modifier_is_the_same_as_loaded_data`
checks that this is the same as loading the configuration as data).

Budget: ``ATTESTPOLICY_DIFFERENTIAL_EXAMPLES`` (default 3000) is the total number of
generated examples, spread over the property tests. See docs/differential.md::

    ATTESTPOLICY_DIFFERENTIAL_EXAMPLES=100000 .venv/bin/python -m pytest -q \\
        tests/rego/test_differential.py
"""

from __future__ import annotations

import copy
import importlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
import regorus
from hypothesis import HealthCheck, given, settings
from hypothesis import event as _event
from hypothesis import note as _note
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from policy_model import (
    CONFIG_ONLY_CODES,
    EVIDENCE_CLASSES,
    ModelDecision,
    assert_well_formed,
    code_summary,
    config_read_parts_valid,
    input_is_valid,
    model_decision,
    timestamp_ns,
)
from test_policy_properties import example, example_config

from attestpolicy.policy import PolicySource
from attestpolicy.testing._generators import (
    DELETE,
    DIGESTS,
    ISSUERS,
    JSON_VALUES,
    KEY_IDS,
    NODE_IDS,
    SIGNER_SUBJECTS,
    SPECIAL_FIELDS,
    SPIFFE_IDS,
    JSONPath,
    allow_leaning_scenarios,
    corruptions_of,
    json_paths,
    scenarios,
    set_path,
)
from attestpolicy.testing._generators import engine_input as pdp_input

ROOT: Final = Path(__file__).resolve().parents[2]
DECISION_RULE: Final = "data.attestpolicy.v1.decision"
OPA_QUERY: Final = (
    "decision := data.attestpolicy.v1.decision"
    " with data.attestpolicy.config as input.config with input as input.input"
)
ENV_EXAMPLES: Final = "ATTESTPOLICY_DIFFERENTIAL_EXAMPLES"
DEFAULT_EXAMPLES: Final = 3000


def _budget(share: float) -> int:
    """This test's part of the total example budget (the environment variable's)."""
    total = int(os.environ.get(ENV_EXAMPLES, "") or DEFAULT_EXAMPLES)
    return max(10, round(total * share))


def _settings(share: float) -> settings:
    return settings(
        max_examples=_budget(share),
        deadline=None,
        derandomize=False,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
            HealthCheck.filter_too_much,
        ],
    )


# --- the two engines ----------------------------------------------------------------


def _opa_module() -> Any:
    """opa_bindings (untyped), or a test failure naming the missing package."""
    try:
        return importlib.import_module("opa_bindings")
    except ImportError:  # pragma: no cover - the venv has it (see the README)
        if os.environ.get("ATTESTPOLICY_REGORUS_ONLY") == "1":
            pytest.skip("ATTESTPOLICY_REGORUS_ONLY=1: OPA's engine is not required")
        pytest.fail(
            "opa_bindings is not installed: pip install --ignore-requires-python "
            "opa-golib-python-bindings==0.4.4 (or set ATTESTPOLICY_REGORUS_ONLY=1)"
        )


@dataclass(frozen=True)
class Outcome:
    """What one engine made of one (configuration, input): a decision or a failure."""

    decision: Any
    failure: str | None = None

    @property
    def canonical(self) -> str:
        if self.failure is not None:
            return "FAILURE: " + self.failure
        return json.dumps(self.decision, sort_keys=True)


class Engines:
    """The shipped policy loaded once into regorus and once into OPA's Go engine."""

    def __init__(self) -> None:
        source = PolicySource.from_directory()
        self.base_data: dict[str, Any] = json.loads(json.dumps(dict(source.data)))
        self.regorus = regorus.Engine()
        opa = _opa_module()
        self.opa = opa.OpaEngine()
        self.undefined_error: type[BaseException] = opa.OpaUndefinedError
        for name, text in source.modules.items():
            self.regorus.add_policy(name, text)
            self.opa.add_policy(name, text)
        if self.base_data:
            self.opa.add_data(self.base_data)
        self.evaluations = 0

    def _data(self, config: Any) -> dict[str, Any]:
        data = copy.deepcopy(self.base_data)
        data.setdefault("attestpolicy", {})["config"] = config
        return data

    def with_regorus(self, config: Any, policy_input: Any) -> Outcome:
        try:
            self.regorus.clear_data()
            self.regorus.add_data(self._data(config))
            self.regorus.set_input(policy_input)
            result = self.regorus.eval_rule(DECISION_RULE)
        except BaseException as exc:  # a PanicException is a BaseException
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            return Outcome(None, f"regorus {type(exc).__name__}: {_short(exc)}")
        if result is None:
            return Outcome(None, "regorus: undefined")
        return Outcome(result)

    def with_opa(self, config: Any, policy_input: Any) -> Outcome:
        try:
            rows = self.opa.eval_query(OPA_QUERY, {"config": config, "input": policy_input})
        except Exception as exc:
            return Outcome(None, f"opa {type(exc).__name__}: {_short(exc)}")
        if not rows:
            return Outcome(None, "opa: undefined")
        return Outcome(rows[0]["decision"])

    def both(self, config: Any, policy_input: Any) -> tuple[Outcome, Outcome]:
        self.evaluations += 1
        return self.with_regorus(config, policy_input), self.with_opa(config, policy_input)

    def close(self) -> None:
        self.opa.close()


def _short(exc: BaseException) -> str:
    return str(exc).split("Stack backtrace:", 1)[0].strip()[:400]


@pytest.fixture
def engines() -> Iterator[Engines]:
    """One regorus engine and one OPA engine for the whole test (all its examples)."""
    pair = Engines()
    yield pair
    pair.close()


def note(text: str) -> None:
    if currently_in_test_context():
        _note(text)


def event(text: str) -> None:
    if currently_in_test_context():
        _event(text)


# --- comparison ---------------------------------------------------------------------


def _elide(value: Any) -> Any:
    """``value`` with long strings and lists shortened (for readable failure reports)."""
    if isinstance(value, str) and len(value) > 80:
        return f"{value[:24]}...<{len(value)} chars>...{value[-8:]}"
    if isinstance(value, list):
        head = [_elide(item) for item in value[:8]]
        return head + ([f"...<{len(value)} items>"] if len(value) > 8 else [])
    if isinstance(value, dict):
        return {key: _elide(item) for key, item in value.items()}
    return value


def _show(value: Any) -> str:
    return json.dumps(_elide(value), sort_keys=True, ensure_ascii=False)


def describe(config: Any, policy_input: Any, left: Outcome, right: Outcome) -> str:
    return "\n".join(
        (
            "config   = " + _show(config),
            "input    = " + _show(policy_input),
            "regorus  = " + (_show(left.decision) if left.failure is None else left.canonical),
            "opa      = " + (_show(right.decision) if right.failure is None else right.canonical),
        )
    )


def observed(decision: Mapping[str, Any]) -> ModelDecision:
    """A raw decision object in the model's terms."""
    valid_until = decision["valid_until"]
    ns = timestamp_ns(valid_until) if valid_until is not None else None
    return ModelDecision(
        allow=decision["allow"],
        codes=code_summary([reason["code"] for reason in decision["reasons"]]),
        ttl_seconds=decision["ttl_seconds"],
        ttl_bound_by=decision["ttl_bound_by"],
        valid_until=None,
        valid_until_ns=ns,
        ttl_terms=tuple(
            (term["name"], term.get("seconds"), timestamp_ns(term.get("until")))
            for term in decision["ttl_terms"]
        ),
        revocable=tuple((member, value) for member, value in decision["revocable"]),
    )


def check(engines: Engines, config: Any, policy_input: Any) -> dict[str, Any]:
    """Both engines agree on the whole decision, and it is the contract model's."""
    left, right = engines.both(config, policy_input)
    why = describe(config, policy_input, left, right)
    note(why)
    assert left.failure is None, "regorus failed\n" + why
    assert right.failure is None, "OPA failed\n" + why
    if left.canonical != right.canonical:
        pytest.fail("regorus and OPA disagree\n" + why, pytrace=False)
    decision: dict[str, Any] = left.decision
    assert_well_formed(decision, why)
    assert_model(config, policy_input, decision, why)
    event("allow" if decision["allow"] else "deny")
    return decision


def assert_model(config: Any, policy_input: Any, decision: Mapping[str, Any], why: str) -> None:
    """The decision rule of the contract, against the model."""
    expected = model_decision(config, policy_input)
    seen = observed(decision)
    why = f"model    = {expected}\n{why}"
    valid_input = input_is_valid(policy_input)
    if not valid_input:
        # Invalid input: a deny whose reasons are only input.invalid (and config.invalid).
        assert not seen.allow, "allow of an invalid input\n" + why
        assert "input.invalid" in seen.codes, why
        assert set(seen.codes) <= CONFIG_ONLY_CODES, why
        event("input invalid")
        return
    if not config_read_parts_valid(config, policy_input):
        assert seen.codes == ("config.invalid",), why
        assert not seen.allow, why
        event("config invalid")
        return
    assert (seen.allow, seen.codes) == (expected.allow, expected.codes), why
    assert (seen.ttl_seconds, seen.ttl_bound_by) == (expected.ttl_seconds, expected.ttl_bound_by), (
        why
    )
    assert seen.valid_until_ns == expected.valid_until_ns, why
    assert seen.ttl_terms == expected.ttl_terms, why
    assert seen.revocable == expected.revocable, why


# --- policy inputs ------------------------------------------------------------------


@st.composite
def base_cases(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A valid configuration and a valid claim set document (mostly near an allow)."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        config = example_config()
        claims = example(
            draw(
                st.sampled_from(
                    (
                        "allow-fully-attested",
                        "allow-ttl-bound-by-evidence",
                        "deny-image-drift",
                        "deny-measurement-mismatch",
                        "deny-untrusted-signer",
                    )
                )
            )
        )
        return config, claims
    strategy = allow_leaning_scenarios() if kind == 1 else scenarios()
    config, claims = draw(strategy)
    return config, claims


@st.composite
def raw_cases(draw: st.DrawFn) -> tuple[dict[str, Any], Any]:
    """A valid configuration and a raw input made from a valid claim set
    (:func:`corruptions_of`, what ``attestpolicy.testing.strategies.raw_inputs`` draws)."""
    config, claims = draw(base_cases())
    return config, draw(corruptions_of(claims))


# --- corrupted configurations -------------------------------------------------------

CONFIG_SPECIALS: Final[tuple[tuple[str, tuple[Any, ...]], ...]] = (
    ("limits", (None, [], {}, "x")),
    ("limits|max_evidence_age_seconds", (300.0, 300.5, -1, 2**31, "300", None, True, 10**30)),
    ("limits|clock_skew_seconds", (0, 0.0, -0.0, -1, 2.5, None, 2**31 - 1, 2**31)),
    ("limits|min_ttl_seconds", (0, 1, 1.0, 60.0, 59.9, None, -60, 2**63)),
    ("limits|default_ttl_seconds", (0, 900.0, 900.1, "900", None, [900])),
    ("workloads", (None, [], {}, "x")),
    ("workloads|{spiffe_id}", (None, [], {}, {"namespace": "payments"}, "x")),
    ("workloads|{spiffe_id}|namespace", (None, "", 1, ["payments"])),
    ("workloads|{spiffe_id}|service_account", (None, "", 1)),
    ("workloads|{spiffe_id}|source_repo", (None, "", 1, [])),
    ("workloads|{spiffe_id}|image_digests", (None, [], "x", [1], ["sha256:x"], {})),
    ("workloads|{spiffe_id}|require", (None, [], ["image", "imagex"], "image", [None], {})),
    ("workloads|{spiffe_id}|max_ttl_seconds", (None, 0, 1, 1.0, 3600.0, 3600.5, -1, 2**31)),
    ("workloads|{spiffe_id}|node_kinds", (None, [], "tpm", ["TPM"], [1], ["tpm"], ["gce_iit"])),
    ("workloads|{spiffe_id}|unknown", (1, None)),
    ("audiences", (None, [], {}, "x")),
    ("audiences|{audience}", (None, [], {}, {"max_ttl_seconds": None})),
    ("audiences|{audience}|max_ttl_seconds", (None, 0, 1800.0, 1800.5, "1800", -5, 2**31)),
    ("trusted_signers", (None, {}, [], "x", [{"issuer": ISSUERS[0], "subject": "*"}])),
    ("trusted_signers|issuers", (None, {}, [], "x", {ISSUERS[0]: "*"}, {ISSUERS[0]: None})),
    (
        "trusted_signers|issuers|" + ISSUERS[0],
        (
            None,
            [],
            "*",
            [1],
            [None, "*"],
            ["*"],
            ["https://github.com/*"],
            ["https://github.com/example-org/?ayments-api/*"],
            ["https://github.com/[e]xample-org/*"],
            ["https://github.com/{example,other}-org/*"],
            ["https://github.com/example-org\\/*"],
            ["*", "**"],
            [""],
        ),
    ),
    ("trusted_signers|key_ids", (None, {}, [], [KEY_IDS[0]], {KEY_IDS[0]: None})),
    ("trusted_builders", (None, {}, [], "x")),
    ("revoked", (None, {}, [], "x")),
    ("revoked|signer_subjects", (None, {}, [], [SIGNER_SUBJECTS[0]], "x")),
    ("revoked|node_ids", (None, {}, [], [NODE_IDS[0]], {NODE_IDS[0]: None})),
    ("revoked|image_digests", (None, {}, [], DIGESTS[1], {DIGESTS[1]: 1})),
    ("revoked|spiffe_ids", (None, {}, [], list(SPIFFE_IDS), {SPIFFE_IDS[0]: False})),
    ("node_baselines", (None, {}, [], "x")),
    ("node_baselines|{kind}", (None, {}, [], "x", {"pcr.sha256.0": "AB"}, {"p": 1}, {"p": ""})),
)


@st.composite
def corrupted_config_cases(draw: st.DrawFn) -> tuple[Any, dict[str, Any]]:
    """A valid (PDP) input under a configuration with 1-2 corrupted parts."""
    config, claims = draw(base_cases())
    policy_input = pdp_input(claims)
    config = copy.deepcopy(config)
    names = {
        "spiffe_id": policy_input["subject"]["spiffe_id"],
        "audience": policy_input["request"]["audience"],
        "kind": (policy_input.get("node") or {}).get("kind", "tpm"),
    }
    for _ in range(draw(st.integers(1, 2))):
        if draw(st.integers(0, 4)) == 0:  # anywhere at all (mostly parts not read)
            paths = json_paths(config)
            if paths:
                path = draw(st.sampled_from(paths))
                set_path(config, path, draw(JSON_VALUES | st.just(DELETE)))
            continue
        dotted, values = draw(st.sampled_from(CONFIG_SPECIALS))
        *parents, last = dotted.format(**names).split("|")
        target: Any = config
        for step in parents:
            if not isinstance(target, dict):
                break
            if not isinstance(target.get(step), dict):
                target[step] = {}
            target = target[step]
        else:
            if isinstance(target, dict):
                target[last] = copy.deepcopy(draw(st.sampled_from(values)))
    return config, policy_input


# --- the properties -----------------------------------------------------------------


@_settings(0.40)
@given(case=raw_cases())
def test_raw_input(engines: Engines, case: tuple[dict[str, Any], Any]) -> None:
    """Raw input (anything JSON): the engines agree, and the contract model holds."""
    config, policy_input = case
    check(engines, config, policy_input)


@_settings(0.30)
@given(case=base_cases())
def test_pdp_input(engines: Engines, case: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """What the PDP passes its engine: the engines agree, and the model holds exactly."""
    config, claims = case
    policy_input = pdp_input(claims)
    decision = check(engines, config, policy_input)
    if config_read_parts_valid(config, policy_input):
        event(f"codes: {sorted({r['code'] for r in decision['reasons']})}")


@_settings(0.30)
@given(case=corrupted_config_cases())
def test_corrupted_config(engines: Engines, case: tuple[Any, dict[str, Any]]) -> None:
    """Configuration parts a decision reads corrupted: engines agree, config.invalid."""
    config, policy_input = case
    check(engines, config, policy_input)


def test_with_modifier_is_the_same_as_loaded_data(engines: Engines) -> None:
    """The harness: OPA with the configuration loaded as data decides as with ``with``."""
    opa = _opa_module()
    cases: list[tuple[Any, Any]] = [
        (example_config(), pdp_input(example(name)))
        for name in ("allow-fully-attested", "deny-image-drift", "deny-untrusted-signer")
    ]
    broken = example_config()
    broken["limits"]["min_ttl_seconds"] = 0.5
    cases.append((broken, pdp_input(example("allow-fully-attested"))))
    cases.append((example_config(), {"now": "2026-11-22T10:00:00Z", "subject": 1}))
    for config, policy_input in cases:
        fresh = opa.OpaEngine()
        try:
            for name, text in PolicySource.from_directory().modules.items():
                fresh.add_policy(name, text)
            fresh.add_data(config, path="attestpolicy.config")
            loaded = fresh.eval_document("attestpolicy.v1.decision", policy_input)
        finally:
            fresh.close()
        assert engines.with_opa(config, policy_input).decision == loaded


# Hand-picked edge values that the generators reach only by chance: each field with
# each special value, on the allow example, in both engines and against the model.
EDGE_CASES: Final = [
    pytest.param(path, value, id=f"{'.'.join(map(str, path))}={json.dumps(value)[:40]}")
    for path, values in SPECIAL_FIELDS
    for value in values
]


@pytest.mark.parametrize(("path", "value"), EDGE_CASES)
def test_edge_values(engines: Engines, path: JSONPath, value: Any) -> None:
    policy_input = pdp_input(example("allow-fully-attested"))
    parent: Any = policy_input
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = copy.deepcopy(value)
    check(engines, example_config(), policy_input)


def test_every_evidence_class_null_is_absent(engines: Engines) -> None:
    """null == absent for every evidence class: the same decision both ways."""
    base = pdp_input(example("allow-fully-attested"))
    for name in EVIDENCE_CLASSES:
        nulled, dropped = copy.deepcopy(base), copy.deepcopy(base)
        nulled[name] = None
        del dropped[name]
        first = check(engines, example_config(), nulled)
        assert first == check(engines, example_config(), dropped)


def test_budget_is_documented() -> None:
    """The environment variable and the 100,000-example command are in the docs."""
    text = (ROOT / "docs" / "differential.md").read_text(encoding="utf-8")
    assert ENV_EXAMPLES + "=100000" in text
