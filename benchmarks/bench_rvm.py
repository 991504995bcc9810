"""Issue 10, goal 2: is regorus's compiled path (RVM) safe to decide with, and how fast?

The RVM is only worth using if it decides exactly as the interpreter (and OPA) on every
input. This checks a minimal case first: in the RVM, ``x := obj[missing_key]`` binds
``x`` instead of failing, so a rule such as ``not is_object(_node_baselines[kind])``
holds for a missing key. The shipped policy then differs on inputs without a node
(a spurious ``config.invalid``). While that case differs, the RVM is not used.

Run from the repository root: ``.venv/bin/python benchmarks/bench_rvm.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import regorus

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from goals import Goal, median_us  # noqa: E402  (after the path set-up)

from attestpolicy.claims import ClaimSet  # noqa: E402
from attestpolicy.policy import PolicySource  # noqa: E402

MISSING_KEY_POLICY = """package t
import rego.v1
default bound := false
bound if { x := data.obj[input.key]; not is_object(x) }
"""


def _rvm(modules: list[tuple[str, str]], entry: str, data: Any) -> Any:
    program = regorus.Program.compile_from_modules("{}", modules, [entry])
    rvm = regorus.Rvm()
    rvm.load_program(program)
    rvm.set_data_json(json.dumps(data))
    return rvm


def missing_key_binds() -> bool:
    """Whether the RVM binds a variable to an object's missing key (the interpreter fails)."""
    data: dict[str, Any] = {"obj": {"a": {}}}
    rvm = _rvm([("t.rego", MISSING_KEY_POLICY)], "data.t.bound", data)
    rvm.set_input_json(json.dumps({"key": "b"}))
    compiled = json.loads(rvm.execute())
    engine = regorus.Engine()
    engine.add_policy("t.rego", MISSING_KEY_POLICY)
    engine.add_data(data)
    engine.set_input({"key": "b"})
    return bool(compiled != engine.eval_rule("data.t.bound"))


def goals(quick: bool) -> list[Goal]:
    """The RVM's speed against the interpreter's on the realistic claim set, and whether
    the shipped policy decides the same on the examples and on inputs without a node."""
    source = PolicySource.from_directory()
    config = json.loads((ROOT / "attestpolicy" / "examples" / "config.json").read_text())
    data: dict[str, Any] = {"attestpolicy": {"config": config}}
    modules = list(source.modules.items())
    rvm = _rvm(modules, "data.attestpolicy.v1.decision", data)
    engine = regorus.Engine()
    for name, text in modules:
        engine.add_policy(name, text)
    engine.add_data(data)
    inputs = [
        ClaimSet.parse(path.read_text()).to_input()
        for path in sorted((ROOT / "attestpolicy" / "examples" / "claims").glob("*.json"))
    ]
    inputs.append({"now": "2026-11-22T10:00:00Z"})  # no node: the missing-key case
    differing = 0
    for policy_input in inputs:
        rvm.set_input_json(json.dumps(policy_input))
        engine.set_input(policy_input)
        differing += json.loads(rvm.execute()) != engine.eval_rule("data.attestpolicy.v1.decision")
    text = json.dumps(inputs[0])
    samples = 100 if quick else 400
    compiled = median_us(lambda: (rvm.set_input_json(text), rvm.execute()), samples)
    interpreted = median_us(
        lambda: (engine.set_input_json(text), engine.eval_rule("data.attestpolicy.v1.decision")),
        samples,
    )
    blocker = ""
    if missing_key_binds() or differing:
        blocker = (
            f"the RVM binds a missing key; {differing} of {len(inputs)} inputs decide "
            "differently, so it is not used"
        )
    return [
        Goal(
            "compiled path (RVM): miss / raw interpreter",
            compiled / interpreted,
            0.5,
            detail=f"RVM {compiled:.0f} us, interpreter {interpreted:.0f} us",
            blocker=blocker,
        )
    ]


if __name__ == "__main__":
    print(f"RVM binds a missing key (interpreter fails): {missing_key_binds()}")
    for goal in goals(quick="--quick" in sys.argv):
        print(goal.line())
