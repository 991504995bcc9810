"""``--format json|pretty|table`` on decide, evaluate, verify and demo; ``--version`` and
``version``. JSON stays the default wherever JSON was printed before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from attestpolicy.cli import main
from attestpolicy.policy import PolicySource

EXAMPLES = Path(__file__).resolve().parent.parent / "attestpolicy" / "examples"
CONFIG = str(EXAMPLES / "config.json")
ALLOW = str(EXAMPLES / "claims" / "allow-fully-attested.json")
DENY = str(EXAMPLES / "claims" / "deny-tag-only.json")
EVIDENCE = str(EXAMPLES / "evidence" / "allow-eks-workload.json")
EVIDENCE_DENY = str(EXAMPLES / "evidence" / "deny-tag-only.json")
TRUST = str(EXAMPLES / "trust.json")
EVIDENCE_CONFIG = str(EXAMPLES / "evidence-config.json")
PINNED = ("--now", "2025-11-24T07:45:00Z", "--nonce", "9009")
FORMATS = ("json", "pretty", "table")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def table_rows(text: str) -> list[list[str]]:
    """The rows of a table (two or more spaces between cells), header first, no rule."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert set(lines[1].replace(" ", "")) == {"-"}, lines[:2]
    return [
        [cell.strip() for cell in line.split("  ") if cell.strip()]
        for line in lines[:1] + lines[2:]
    ]


# --- decide and evaluate ----------------------------------------------------------------


def decide(capsys: pytest.CaptureFixture[str], claims: str, *extra: str) -> tuple[int, str]:
    code, out, err = run(capsys, "decide", "--claims", claims, "--config", CONFIG, *extra)
    assert err == ""
    return code, out


def evaluate(capsys: pytest.CaptureFixture[str], evidence: str, *extra: str) -> tuple[int, str]:
    code, out, _ = run(
        capsys,
        *("evaluate", "--evidence", evidence, "--trust", TRUST, "--config", EVIDENCE_CONFIG),
        *PINNED,
        *extra,
    )
    return code, out


@pytest.mark.parametrize("command", [decide, evaluate])
def test_json_is_the_default_and_the_same_decision(
    capsys: pytest.CaptureFixture[str], command: Any
) -> None:
    source = ALLOW if command is decide else EVIDENCE
    default_code, default = command(capsys, source)
    code, explicit = command(capsys, source, "--format", "json")
    assert code == default_code == 0
    first, second = json.loads(default), json.loads(explicit)
    for changing in ("decision_id", "evaluated_at"):
        first.pop(changing), second.pop(changing)
    assert first == second
    assert first["allow"] is True


@pytest.mark.parametrize("command", [decide, evaluate])
@pytest.mark.parametrize("fmt", FORMATS)
def test_an_allow_in_each_format(
    capsys: pytest.CaptureFixture[str], command: Any, fmt: str
) -> None:
    source = ALLOW if command is decide else EVIDENCE
    code, out = command(capsys, source, "--format", fmt)
    assert code == 0
    _, reference = command(capsys, source)
    decision = json.loads(reference)
    if fmt == "json":
        assert json.loads(out)["ttl_seconds"] == decision["ttl_seconds"]
    elif fmt == "pretty":
        first = out.splitlines()[0]
        assert first == (
            f"ALLOW for {decision['ttl_seconds']} s (bound by {decision['ttl_bound_by']}), "
            f"valid until {decision['valid_until']}"
        )
        assert "ttl terms: " in out
        for member, value in decision["revocable"]:
            assert f"revocable: {member} {value}" in out
        assert decision["policy_revision"] in out
    else:
        header, row = table_rows(out)
        assert header == ["decision", "ttl", "bound by", "valid until", "reasons"]
        assert row == [
            "ALLOW",
            str(decision["ttl_seconds"]),
            decision["ttl_bound_by"],
            decision["valid_until"],
            "-",
        ]


@pytest.mark.parametrize("command", [decide, evaluate])
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_deny_in_each_format(capsys: pytest.CaptureFixture[str], command: Any, fmt: str) -> None:
    source = DENY if command is decide else EVIDENCE_DENY
    code, out = command(capsys, source, "--format", fmt)
    assert code == 1
    _, reference = command(capsys, source)
    reasons = json.loads(reference)["reasons"]
    assert reasons
    if fmt == "json":
        assert json.loads(out)["reasons"] == reasons
    elif fmt == "pretty":
        lines = out.splitlines()
        assert lines[0] == f"DENY ({len(reasons)} reason{'s' if len(reasons) > 1 else ''})"
        assert lines[1 : 1 + len(reasons)] == [
            f"  {reason['code']}: {reason['message']}" for reason in reasons
        ]
    else:
        _, row = table_rows(out)
        assert row[:2] == ["DENY", "0"]
        assert row[-1] == ", ".join(reason["code"] for reason in reasons)


# --- verify -----------------------------------------------------------------------------------


def verify(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    return run(capsys, "verify", "--evidence", EVIDENCE, "--trust", TRUST, *PINNED, *extra)


@pytest.mark.parametrize("fmt", FORMATS)
def test_verify_in_each_format(capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    _, reference, _ = verify(capsys)
    claims = json.loads(reference)
    code, out, err = verify(capsys, "--format", fmt)
    assert code == 0, err
    if fmt == "json":
        assert json.loads(out) == claims
    elif fmt == "pretty":
        assert yaml.safe_load(out) == claims  # indented fields, read back as they were
        assert out.startswith("now: ")
    else:
        rows = table_rows(out)
        assert rows[0] == ["field", "value"]
        fields = {row[0]: row[1] if len(row) > 1 else "" for row in rows[1:]}
        assert fields["subject.spiffe_id"] == claims["subject"]["spiffe_id"]
        assert fields["node.verified"] == "true"
        assert fields["image.signatures[0].verified"] == "true"


def test_verify_problems_stay_on_stderr_in_every_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for fmt in FORMATS:
        code, out, err = run(
            capsys,
            *("verify", "--evidence", EVIDENCE, "--trust", TRUST),
            *("--now", "2025-11-24T07:45:00Z", "--nonce", "9008", "--format", fmt),
        )
        assert code == 1
        assert "evidence.nonce_mismatch" in err
        assert "evidence.nonce_mismatch" not in out


# --- demo -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_json() -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "attestpolicy", "demo", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_demo_json_holds_every_decision(demo_json: dict[str, Any]) -> None:
    evidence, claims = demo_json["sections"]
    names = [row["scenario"] for row in claims["rows"]]
    assert names == sorted(path.stem for path in (EXAMPLES / "claims").glob("*.json"))
    for row in claims["rows"]:
        assert row["decision"]["allow"] is row["scenario"].startswith("allow"), row
        assert bool(row["decision"]["reasons"]) is not row["decision"]["allow"]
    assert evidence["rows"][-1]["scenario"].endswith("(now)")
    assert demo_json["policy_revision"].startswith(PolicySource.from_directory().revision)


@pytest.mark.parametrize("fmt", ["pretty", "table"])
def test_demo_tables(
    capsys: pytest.CaptureFixture[str], demo_json: dict[str, Any], fmt: str
) -> None:
    code, out, _ = run(capsys, "demo", "--format", fmt)
    assert code == 0
    section = demo_json["sections"][1]
    part = out[out.index(section["title"]) :]
    for row in section["rows"]:
        codes = ", ".join(reason["code"] for reason in row["decision"]["reasons"]) or "-"
        line = next(line for line in part.splitlines() if line.startswith(row["scenario"] + " "))
        assert line.split()[1] == ("ALLOW" if row["decision"]["allow"] else "DENY")
        assert line.endswith(codes)
    assert ("reasons:" in out) is (fmt == "pretty")
    assert out.rstrip().splitlines()[-1].startswith("policy revision ")


def test_demo_pretty_is_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    _, default, _ = run(capsys, "demo")
    assert "reasons:" in default
    assert default.splitlines()[0].startswith("1. From real evidence")


@pytest.mark.parametrize("flow", [["--broker"], ["--write-evidence", "somewhere"]])
def test_demo_format_is_not_for_the_other_flows(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flow: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "demo", *flow, "--format", "json")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "--format" in err
    assert not (tmp_path / "somewhere").exists()


# --- version ------------------------------------------------------------------------------------


def attestpolicy(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "attestpolicy", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_version_json() -> None:
    from importlib import metadata

    result = attestpolicy("version", "--format", "json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["attestpolicy"] == metadata.version("attestpolicy")
    assert info["engines"]["regorus"]["version"] == metadata.version("gordon-to-regorus")
    assert info["policy_revision"] == PolicySource.from_directory().revision
    opa = info["engines"]["opa"]
    try:
        wheel = metadata.version("opa-golib-python-bindings")
    except metadata.PackageNotFoundError:
        assert opa["installed"] is False
    else:
        assert opa["installed"] is True
        assert opa["package"] == f"opa-golib-python-bindings {wheel}"
        assert opa["version"].startswith("v1.")


@pytest.mark.parametrize("argv", [["--version"], ["version"], ["version", "--format", "pretty"]])
def test_version_pretty(argv: list[str]) -> None:
    result = attestpolicy(*argv)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("attestpolicy ")
    assert lines[1].startswith("engine regorus: ")
    assert lines[2].startswith("engine opa: ")
    assert lines[3] == f"shipped policy: {PolicySource.from_directory().revision}"


def test_version_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "version", "--format", "table")
    assert code == 0
    rows = table_rows(out)
    assert rows[0] == ["component", "version", "detail"]
    assert [row[0] for row in rows[1:]] == [
        "attestpolicy",
        "engine regorus",
        "engine opa",
        "shipped policy",
    ]


def test_version_without_opa(tmp_path: Path) -> None:
    stub = tmp_path / "opa_bindings"
    stub.mkdir()
    (stub / "__init__.py").write_text("raise ImportError('not here')\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }
    result = attestpolicy("version", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    opa = json.loads(result.stdout)["engines"]["opa"]
    assert opa["installed"] is False
    assert "pip install" in opa["install"]
    result = attestpolicy("--version", env=env)
    assert "engine opa: not installed (install it with: pip install" in result.stdout


# --- usage errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["decide", "--claims", ALLOW, "--config", CONFIG, "--format", "xml"],
        ["verify", "--evidence", EVIDENCE, "--trust", TRUST, "--format", "yaml"],
        ["demo", "--format", "csv"],
        ["version", "--format", "text"],
    ],
)
def test_an_unknown_format_is_a_usage_error(argv: list[str]) -> None:
    result = attestpolicy(*argv)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert "--format" in result.stderr.splitlines()[-1]
