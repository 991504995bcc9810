"""Ill-typed or unexpected values anywhere never crash the engine, and never widen access.

OPA turns a builtin type error into undefined; regorus raises. The policy guards every
builtin argument so both engines reach the same decision; these properties check, with
the in-process engine, that no input or configuration value makes evaluation raise, that
the decision is always a well-formed object, that wrongly typed security-relevant
fields always deny, and that a deny for an invalid input (or an invalid configuration
part) carries only input.invalid / config.invalid reasons. (tests/rego/test_differential.py
compares the two engines themselves.)
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_model import CONFIG_ONLY_CODES, assert_well_formed, input_is_valid

from attestpolicy.claims import ClaimSet
from attestpolicy.testing._generators import JSON_VALUES

EXAMPLES = Path(str(resources.files("attestpolicy") / "examples"))

Decide = Callable[[Mapping[str, Any], Mapping[str, Any]], Any]
# decide() replaces the engine's input and data on every call: reusing it across
# generated examples is safe.
REUSE_ENGINE = [HealthCheck.function_scoped_fixture]
Path_ = tuple[str | int, ...]


def _allowed_input() -> dict[str, Any]:
    text = (EXAMPLES / "claims" / "allow-fully-attested.json").read_text()
    return ClaimSet.parse(text).to_input()


def _config() -> dict[str, Any]:
    """The example configuration."""
    config: dict[str, Any] = json.loads((EXAMPLES / "config.json").read_text())
    return config


WORKLOAD = "spiffe://prod.example.com/ns/payments/sa/api"


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _integral(value: object) -> bool:
    """An integral number of seconds (2.0 counts as 2) no larger than 2147483647."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and float(value).is_integer()
        and value <= 2**31 - 1
    )


def _at_least(low: float) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        return _integral(value) and value >= low  # type: ignore[operator]

    return check


def _between(low: float, high: float) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        return _integral(value) and low < value <= high  # type: ignore[operator]

    return check


def _optional(check: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda value: value is None or check(value)


def _never(value: object) -> bool:
    return False


# Input fields whose value decides the outcome: a value of the wrong kind must deny.
# (predicate: the values that may legitimately still allow; anything else must deny.)
INPUT_FIELDS: dict[Path_, Callable[[object], bool]] = {
    ("now",): _is_str,
    ("subject",): _never,
    ("subject", "spiffe_id"): _never,
    ("request",): _never,
    ("request", "audience"): _never,
    ("request", "requested_ttl_seconds"): _optional(_at_least(60)),
    ("image", "reference"): _never,
    ("image", "digest"): _never,
    ("image", "signatures"): _never,
    ("image", "signatures", 0): _never,
    ("image", "signatures", 0, "verified"): _never,
    ("image", "signatures", 0, "issuer"): _never,
    ("image", "signatures", 0, "subject"): _is_str,
    ("image", "signatures", 0, "key_id"): lambda v: v is None or _is_str(v),
    ("provenance", "verified"): _never,
    ("provenance", "builder_id"): _never,
    ("provenance", "source_repo"): _never,
    ("provenance", "subject_digests"): lambda v: isinstance(v, list),
    ("provenance", "predicate_type"): lambda v: v is None or _is_str(v),
    ("node",): _never,
    ("node", "kind"): _is_str,
    ("node", "id"): _is_str,
    ("node", "verified"): _never,
    ("node", "nonce_verified"): _never,
    ("node", "issued_at"): _is_str,
    ("node", "expires_at"): _is_str,
    ("node", "measurements"): _never,
    ("node", "measurements", "pcr.sha256.7"): _never,
    ("node", "measurements", "pcr.sha256.9"): _is_str,
    ("runtime", "verified"): _never,
    ("runtime", "namespace"): _never,
    ("runtime", "service_account"): _never,
    ("runtime", "pod"): lambda v: v is None or _is_str(v),
    ("runtime", "image_digest"): lambda v: v is None,
    ("runtime", "expires_at"): lambda v: v is None or _is_str(v),
}

CONFIG_FIELDS: dict[Path_, Callable[[object], bool]] = {
    ("limits", "max_evidence_age_seconds"): _at_least(60),
    ("limits", "clock_skew_seconds"): _at_least(0),
    ("limits", "min_ttl_seconds"): _between(0, 900),
    ("limits", "default_ttl_seconds"): _at_least(60),
    ("limits",): _never,
    ("workloads",): _never,
    ("workloads", WORKLOAD): _never,
    ("workloads", WORKLOAD, "require"): lambda v: (
        v is None  # absent: nothing required
        or (isinstance(v, list) and set(map(str, v)) <= {"image", "provenance", "node", "runtime"})
    ),
    ("workloads", WORKLOAD, "image_digests"): lambda v: v is None or isinstance(v, list),
    ("workloads", WORKLOAD, "max_ttl_seconds"): _optional(_at_least(60)),
    ("workloads", WORKLOAD, "source_repo"): lambda v: v is None,
    ("workloads", WORKLOAD, "namespace"): _never,
    ("audiences",): _never,
    ("audiences", "vault"): _never,
    ("audiences", "vault", "max_ttl_seconds"): _at_least(60),
    ("trusted_signers",): _never,
    ("trusted_signers", "issuers"): _never,
    ("trusted_signers", "key_ids"): lambda v: v is None or isinstance(v, dict),
    ("trusted_builders",): _never,
    ("node_baselines",): lambda v: (
        v is None or (isinstance(v, dict) and v.get("tpm") in (None, {}))
    ),
    ("node_baselines", "tpm"): lambda v: v is None or v == {},
    ("revoked",): lambda v: (
        v is None
        or (
            isinstance(v, dict)
            and all(member is None or isinstance(member, dict) for member in v.values())
        )
    ),
    ("revoked", "image_digests"): lambda v: v is None or isinstance(v, dict),
    ("revoked", "node_ids"): lambda v: v is None or isinstance(v, dict),
    ("revoked", "signer_subjects"): lambda v: v is None or isinstance(v, dict),
    ("revoked", "spiffe_ids"): lambda v: v is None or isinstance(v, dict),
}


def _replace(document: dict[str, Any], path: Path_, value: object) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    target: Any = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


def _get(document: Any, path: Path_) -> Any:
    """The value at ``path`` (null when absent: absent and null are the same)."""
    for key in path:
        document = document.get(key) if isinstance(document, dict) else document[key]
    return document


def _same(a: object, b: object) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_the_unchanged_example_is_allowed(decide: Decide) -> None:
    assert decide(_allowed_input(), _config())["allow"] is True


@settings(max_examples=200, deadline=None, suppress_health_check=REUSE_ENGINE)
@given(path=st.sampled_from(sorted(INPUT_FIELDS, key=repr)), value=JSON_VALUES)
def test_any_input_value_gives_a_well_formed_decision(
    decide: Decide, path: Path_, value: object
) -> None:
    original = _allowed_input()
    changed = _replace(original, path, value)
    decision = decide(changed, _config())
    assert_well_formed(decision)
    if not _same(value, _get(original, path)) and not INPUT_FIELDS[path](value):
        assert decision["allow"] is False, (path, value)
    if not input_is_valid(changed):
        # Invalid input: a deny for input.invalid, and nothing the checks would say.
        codes = {reason["code"] for reason in decision["reasons"]}
        assert decision["allow"] is False, (path, value)
        assert "input.invalid" in codes, (path, value, decision)
        assert codes <= CONFIG_ONLY_CODES, (path, value, decision)


@settings(max_examples=200, deadline=None, suppress_health_check=REUSE_ENGINE)
@given(
    path=st.sampled_from(sorted(CONFIG_FIELDS, key=repr)),
    value=JSON_VALUES,
    runtime_expires=st.booleans(),
)
def test_any_config_value_gives_a_well_formed_decision(
    decide: Decide, path: Path_, value: object, runtime_expires: bool
) -> None:
    config = _config()
    policy_input = _allowed_input()
    if not runtime_expires:
        # Then valid_until comes from node.issued_at + max_evidence_age_seconds alone.
        policy_input["runtime"]["expires_at"] = None
    decision = decide(policy_input, _replace(config, path, value))
    assert_well_formed(decision)
    if not _same(value, _get(config, path)) and not CONFIG_FIELDS[path](value):
        assert decision["allow"] is False, (path, value)
    codes = {reason["code"] for reason in decision["reasons"]}
    if "config.invalid" in codes:
        # An invalid configuration part: config.invalid alone (the input is valid).
        assert codes == {"config.invalid"}, (path, value, decision)


@settings(max_examples=100, deadline=None, suppress_health_check=REUSE_ENGINE)
@given(policy_input=JSON_VALUES, config=JSON_VALUES)
def test_arbitrary_documents_never_crash_and_deny(
    decide: Decide, policy_input: object, config: object
) -> None:
    decision = decide(
        policy_input if isinstance(policy_input, dict) else {"value": policy_input},
        config if isinstance(config, dict) else {"value": config},
    )
    assert_well_formed(decision)
    assert decision["allow"] is False
