"""``attestpolicy demo --broker`` and ``demo --write-evidence``: the whole flow, live."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from attestpolicy._demo_broker import run_broker_demo
from attestpolicy.cli import main
from attestpolicy.pdp import PolicyDecisionPoint


def test_broker_demo_runs_every_step() -> None:
    out = io.StringIO()
    assert run_broker_demo(out) == 0, out.getvalue()
    lines = out.getvalue().splitlines()
    steps = {line.split(".", 1)[0].strip(): line for line in lines if line[:2].strip().isdigit()}
    assert sorted(steps, key=int) == [str(n) for n in range(1, 9)]
    assert "ALLOW" in steps["2"]
    assert ": 200 " in steps["4"]
    assert steps["5"].endswith(": 401")
    assert "1 live credential(s) to chase" in steps["6"]
    assert ": 403 " in steps["7"]
    assert "revoked" in steps["7"]
    assert "image.untrusted_signer" in steps["8"]
    assert lines[-1] == "every step as expected"
    assert "UNEXPECTED" not in out.getvalue()


def test_write_evidence_gives_files_that_decide_allow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--write-evidence", str(tmp_path / "fresh")]) == 0
    written = [Path(p) for p in json.loads(capsys.readouterr().out)["written"]]
    assert [p.name for p in written] == ["evidence.json", "trust.json", "config.json"]
    evidence, trust, config = (json.loads(p.read_text()) for p in written)
    with PolicyDecisionPoint.local(config=config) as pdp:
        assert pdp.decide_evidence(evidence, trust).allow


def test_write_evidence_to_an_unwritable_place_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["demo", "--write-evidence", str(blocker / "sub")]) == 2
    assert "cannot write" in capsys.readouterr().err
