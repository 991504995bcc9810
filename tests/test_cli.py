"""The attestpolicy command: outputs and exit codes (0 allow, 1 deny, 2 usage)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attestpolicy.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "attestpolicy" / "examples"
CONFIG = str(EXAMPLES / "config.json")
ALLOW = str(EXAMPLES / "claims" / "allow-fully-attested.json")
DENY = str(EXAMPLES / "claims" / "deny-stale-node.json")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_decide_allow_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "decide", "--claims", ALLOW, "--config", CONFIG)
    decision = json.loads(out)
    assert code == 0
    assert decision["allow"] is True
    assert decision["ttl_seconds"] == 900
    assert decision["ttl_bound_by"] == "default"


def test_decide_deny_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "decide", "--claims", DENY, "--config", CONFIG)
    assert code == 1
    assert [r["code"] for r in json.loads(out)["reasons"]] == ["node.stale"]


def test_decide_now_flag_changes_the_outcome(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys, "decide", "--claims", ALLOW, "--config", CONFIG, "--now", "2026-11-22T11:00:00Z"
    )
    assert code == 1
    assert "node.stale" in out


def test_invalid_claims_are_a_deny_not_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "claims.json"
    bad.write_text('{"subject": {"spiffe_id": 5}}')
    code, out, _ = _run(capsys, "decide", "--claims", str(bad), "--config", CONFIG)
    assert code == 1
    assert json.loads(out)["reasons"][0]["code"] == "input.invalid"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["decide", "--claims", "/nonexistent/claims.json"], "cannot read claims file"),
        (
            ["decide", "--claims", ALLOW, "--config", "/nonexistent.json"],
            "cannot read configuration",
        ),
        (["decide", "--claims", ALLOW, "--now", "yesterday"], "--now"),
        (["decide", "--claims", ALLOW, "--remote", "ftp://x"], "http"),
        (["test", "/nonexistent-dir"], "no such file or directory"),
        (
            ["bundle", "verify", "/nonexistent.tar.gz", "--verification-key", ALLOW],
            "no such bundle",
        ),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert message in err


def test_bad_flags_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["decide", "--bogus"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["decide", "--claims", ALLOW, "--policy", "x", "--remote", "http://127.0.0.1:1"])
    assert info.value.code == 2


def test_invalid_config_file_is_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = json.loads(Path(CONFIG).read_text())
    config["limits"]["default_ttl_seconds"] = -1
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    code, _, err = _run(capsys, "decide", "--claims", ALLOW, "--config", str(path))
    assert code == 2
    assert "limits.default_ttl_seconds" in err


def test_remote_unreachable_is_a_fail_closed_deny(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys, "decide", "--claims", ALLOW, "--remote", "http://127.0.0.1:9", "--timeout", "0.5"
    )
    assert code == 1
    assert json.loads(out)["reasons"][0]["code"] == "remote.error"


def test_schema_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "schema")
    assert code == 0
    assert json.loads(out)["required"] == ["subject", "request"]
    for kind in ("evidence", "trust"):
        code, out, _ = _run(capsys, "schema", kind)
        assert code == 0
        assert "version" in json.loads(out)["properties"]


def test_rego_test_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = _run(capsys, "test")
    assert code == 0
    assert "PASS:" in out
    failing = tmp_path / "p_test.rego"
    failing.write_text("package p_test\n\nimport rego.v1\n\ntest_false if { 1 == 2 }\n")
    code, out, _ = _run(capsys, "test", str(tmp_path))
    assert code == 2  # as opa test: 2 when a test fails
    assert "FAIL" in out


def test_bundle_build_config_bundle(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = json.loads((EXAMPLES / "config.json").read_text())
    good = tmp_path / "config.json"
    good.write_text(json.dumps(config))
    code, out, _ = _run(
        capsys, "bundle", "build", "--config", str(good), "--out", str(tmp_path / "b")
    )
    assert code == 0, out
    written = json.loads((tmp_path / "b" / "attestpolicy" / "config" / "data.json").read_text())
    assert written == config
    # The whole configuration is validated: a bad pattern of an issuer no request names.
    config["trusted_signers"]["issuers"]["https://unused.example"] = ["release-v?"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(config))
    code, _, err = _run(
        capsys, "bundle", "build", "--config", str(bad), "--out", str(tmp_path / "c")
    )
    assert code == 2
    assert "trusted_signers.issuers.https://unused.example.0" in err
    assert not (tmp_path / "c").exists()
    code, _, err = _run(capsys, "bundle", "build", "--config", str(good))
    assert code == 2
    assert "--config needs --out" in err


def test_bundle_build_and_verify(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    private = tmp_path / "key.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = tmp_path / "key.pub"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    out_path = tmp_path / "bundle.tar.gz"
    code, _, _ = _run(
        capsys,
        "bundle",
        "build",
        "--out",
        str(out_path),
        "--signing-key",
        str(private),
        "--signing-alg",
        "ES256",
    )
    assert code == 0
    code, out, _ = _run(
        capsys, "bundle", "verify", str(out_path), "--verification-key", str(public)
    )
    assert code == 0
    assert json.loads(out)["verified"] is True
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    public.write_bytes(
        other.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    code, _, err = _run(
        capsys, "bundle", "verify", str(out_path), "--verification-key", str(public)
    )
    assert code == 1
    assert "bundle rejected" in err


def test_bundle_build_refuses_an_algorithm_that_does_not_fit_the_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """docs/bundles.md: --signing-alg defaults to RS256 (as opa build), so an EC key needs
    ES256; the mismatch is a usage error naming the fitting algorithm, and nothing is written."""
    private = tmp_path / "key.pem"
    private.write_bytes(
        ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    out_path = tmp_path / "bundle.tar.gz"
    build = ["bundle", "build", "--out", str(out_path), "--signing-key", str(private)]
    code, out, err = _run(capsys, *build)
    assert (code, out) == (2, "")
    assert err == (
        "attestpolicy: error: signing algorithm 'RS256' does not fit this key (use one of ES384)\n"
    )
    assert not out_path.exists()
    code, _, err = _run(capsys, *build, "--signing-alg", "ES384")
    assert (code, err) == (0, "")
    assert out_path.stat().st_size > 0


def test_demo_shows_allows_and_denies(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "demo")
    assert code == 0
    assert "ALLOW" in out
    assert "DENY" in out
    assert "evidence_expiry" in out


def test_console_script_help_everywhere() -> None:
    commands: list[Any] = [
        [],
        ["decide"],
        ["test"],
        ["schema"],
        ["serve"],
        ["verify"],
        ["evaluate"],
        ["bundle"],
        ["bundle", "build"],
        ["demo"],
    ]
    for command in commands:
        result = subprocess.run(
            [sys.executable, "-m", "attestpolicy", *command, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, (command, result.stderr)
        assert "usage: attestpolicy" in result.stdout


def test_console_script_is_run_and_keeps_exit_codes_and_output() -> None:
    """The installed ``attestpolicy`` command is :func:`attestpolicy.cli.run` (main, then exit
    without the final collection): its exit codes and complete output are main's."""
    from importlib import metadata

    (script,) = (
        entry
        for entry in metadata.distribution("attestpolicy").entry_points
        if entry.group == "console_scripts"
    )
    assert (script.name, script.value) == ("attestpolicy", "attestpolicy.cli:run")
    decide = [sys.executable, "-m", "attestpolicy", "decide", "--config", CONFIG, "--claims"]
    for claims, code, allow in ((ALLOW, 0, True), (DENY, 1, False)):
        result = subprocess.run(
            [*decide, claims],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == code, result.stderr
        assert json.loads(result.stdout)["allow"] is allow
        assert result.stderr == ""
    usage = subprocess.run(
        [sys.executable, "-m", "attestpolicy", "decide", "--claims", ALLOW],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert usage.returncode == 2
    assert usage.stderr.startswith("attestpolicy: error: decide needs --config FILE")


EVIDENCE = EXAMPLES / "evidence"
TRUST = str(EXAMPLES / "trust.json")
EVIDENCE_CONFIG = str(EXAMPLES / "evidence-config.json")
PINNED = ("--now", "2025-11-24T07:45:00Z", "--nonce", "9009")


def test_verify_prints_the_claim_set(capsys: pytest.CaptureFixture[str]) -> None:
    document = str(EVIDENCE / "allow-eks-workload.json")
    code, out, err = _run(capsys, "verify", "--evidence", document, "--trust", TRUST, *PINNED)
    assert code == 0, err
    claims = json.loads(out)
    assert claims["subject"]["spiffe_id"] == (
        "spiffe://example.org/ns/hakawai/sa/hakawai-litellm-proxy"
    )
    assert claims["node"]["verified"] is True
    assert claims["node"]["nonce_verified"] is True


def test_verify_reports_problems_and_wrong_nonce(capsys: pytest.CaptureFixture[str]) -> None:
    document = str(EVIDENCE / "allow-eks-workload.json")
    code, out, err = _run(
        capsys,
        "verify",
        "--evidence",
        document,
        "--trust",
        TRUST,
        "--now",
        "2025-11-24T07:45:00Z",
        "--nonce",
        "9008",
    )
    assert code == 1
    assert json.loads(out)["node"]["verified"] is False
    assert "evidence.nonce_mismatch" in err


def test_verify_expired_at_real_time(capsys: pytest.CaptureFixture[str]) -> None:
    document = str(EVIDENCE / "allow-eks-workload.json")
    code, _, err = _run(capsys, "verify", "--evidence", document, "--trust", TRUST)
    assert code == 1
    assert "evidence.expired" in err


@pytest.mark.parametrize(
    ("scenario", "allow", "codes"),
    [
        ("allow-eks-workload", True, []),
        ("deny-tag-only", False, ["image.digest_required"]),
        ("deny-wrong-signer", False, ["evidence.signature_invalid", "image.unsigned"]),
        ("deny-unbound-runtime", False, ["runtime.unverified"]),
    ],
)
def test_evaluate_real_evidence(
    capsys: pytest.CaptureFixture[str], scenario: str, allow: bool, codes: list[str]
) -> None:
    document = str(EVIDENCE / f"{scenario}.json")
    code, out, _ = _run(
        capsys,
        "evaluate",
        "--evidence",
        document,
        "--trust",
        TRUST,
        "--config",
        EVIDENCE_CONFIG,
        *PINNED,
    )
    decision = json.loads(out)
    assert code == (0 if allow else 1)
    assert decision["allow"] is allow
    reason_codes = {reason["code"] for reason in decision["reasons"]}
    assert set(codes) <= reason_codes
    if allow:
        assert decision["ttl_seconds"] == 900
        assert decision["valid_until"] == "2025-11-24T07:49:00Z"


def test_evaluate_usage_and_malformed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(capsys, "evaluate", "--evidence", "/nope.json", "--trust", TRUST)
    assert code == 2
    assert "evidence document not found" in err
    bad_trust = tmp_path / "trust.yaml"
    bad_trust.write_text("version: 2\n")
    document = str(EVIDENCE / "allow-eks-workload.json")
    code, _, err = _run(capsys, "evaluate", "--evidence", document, "--trust", str(bad_trust))
    assert code == 2
    assert "version" in err
    garbage = tmp_path / "doc.json"
    garbage.write_text('{"version": 1, "request": 5}')
    code, out, _ = _run(
        capsys,
        "evaluate",
        "--evidence",
        str(garbage),
        "--trust",
        TRUST,
        "--config",
        EVIDENCE_CONFIG,
    )
    assert code == 1
    assert json.loads(out)["reasons"][0]["code"] == "evidence.malformed"


@pytest.mark.parametrize("command", ["decide", "serve"])
def test_a_deeply_nested_config_is_a_one_line_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    """50,000 nested arrays: exit 2 with one line, not a RecursionError traceback."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 50_000 + "]" * 50_000)
    argv = (
        ["decide", "--claims", ALLOW] if command == "decide" else ["serve", "--addr", "127.0.0.1:0"]
    )
    code, out, err = _run(capsys, *argv, "--config", str(deep))
    assert code == 2
    assert out == ""
    assert err.strip().count("\n") == 0
    assert "nested too deeply" in err


def test_output_into_a_closed_pipe_ends_quietly() -> None:
    # The reader is gone before the command writes (``attestpolicy schema | head -c0``).
    process = subprocess.Popen(
        [sys.executable, "-m", "attestpolicy", "schema", "trust"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert process.stdout is not None
    process.stdout.close()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert err == b""
