"""Fixtures for the policy tests: the shipped policy in a regorus engine, and the examples."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import regorus

from attestpolicy.regotest import default_policy_dir

EXAMPLES = Path(str(resources.files("attestpolicy") / "examples"))
DECISION_RULE = "data.attestpolicy.v1.decision"

Decide = Callable[[Mapping[str, Any], Mapping[str, Any]], Any]
"""decide(input, config) -> the raw value of data.attestpolicy.v1.decision."""


def load_policy() -> regorus.Engine:
    """A fresh engine with every non-test module of the shipped policy."""
    engine = regorus.Engine()
    root = default_policy_dir()
    for path in sorted(root.rglob("*.rego")):
        if not path.name.endswith("_test.rego"):
            engine.add_policy(path.relative_to(root).as_posix(), path.read_text(encoding="utf-8"))
    return engine


@pytest.fixture(scope="session")
def example_config_document() -> dict[str, Any]:
    """attestpolicy/examples/config.json, the data.attestpolicy.config document."""
    document: dict[str, Any] = json.loads((EXAMPLES / "config.json").read_text(encoding="utf-8"))
    return document


@pytest.fixture
def decide() -> Decide:
    """decide(input, config): the raw decision of the shipped policy (engine errors raise).

    The engine is made in the calling thread and used only there.
    """
    engine = load_policy()

    def evaluate(policy_input: Mapping[str, Any], config: Mapping[str, Any]) -> Any:
        engine.clear_data()
        engine.add_data({"attestpolicy": {"config": dict(config)}})
        engine.set_input(dict(policy_input))
        return engine.eval_rule(DECISION_RULE)

    return evaluate
