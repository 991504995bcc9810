"""No command prints a traceback for a usage error: one clear message and exit code 2.

Each case of issue 13's list is driven here: ``serve`` with a bad address, a port out of
range, ``--workers 0`` or a busy port; output into a closed pipe; a bad
``ATTESTPOLICY_CACHE_IMPL``; ``decide`` without ``--config``; ``--policy`` at a file; an
invalid configuration with several problems; a YAML configuration; ``verify`` without
``--nonce``; ``serve --ready-file``. Then a sweep of every command with bad files and
values. Start-up is checked by what it imports, never by a timer (benchmarks/bench_startup.py
times it).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from attestpolicy.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "attestpolicy" / "examples"
CONFIG = str(EXAMPLES / "config.json")
ALLOW = str(EXAMPLES / "claims" / "allow-fully-attested.json")
EVIDENCE = str(EXAMPLES / "evidence" / "allow-eks-workload.json")
TRUST = str(EXAMPLES / "trust.json")
EVIDENCE_CONFIG = str(EXAMPLES / "evidence-config.json")
PINNED_NOW = ("--now", "2025-11-24T07:45:00Z")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _command(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``attestpolicy ARGV`` in a new interpreter (as from a shell)."""
    return subprocess.run(
        [sys.executable, "-m", "attestpolicy", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def _one_line_usage_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("attestpolicy: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


# --- serve ---------------------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other socket listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--addr", "nope"], "address must be host:port, got 'nope'"),
        (["--addr", "127.0.0.1"], "address must be host:port"),
        (["--addr", "127.0.0.1:http"], "address must be host:port"),
        (["--addr", "127.0.0.1:-1"], "address must be host:port"),
        (["--addr", "127.0.0.1:65536"], "port 65536 is out of range (0-65535)"),
        (["--addr", "[::1]:99999"], "port 99999 is out of range (0-65535)"),
        (["--addr", ":8181"], "has no host"),
        (["--addr", "host.invalid:8181"], "cannot listen on host.invalid:8181"),
        (["--workers", "0"], "workers must be between 1 and 256"),
        (["--workers", "-3"], "workers must be between 1 and 256"),
        (["--workers", "100000"], "workers must be between 1 and 256"),
        (["--addr", "127.0.0.1:0", "--ready-file", "/nonexistent-dir/ready"], "no such directory"),
        (["--addr", "127.0.0.1:0", "--policy", CONFIG], "is a file"),
        (["--addr", "127.0.0.1:0", "--max-connections", "0"], "max_connections"),
        (["--addr", "127.0.0.1:0", "--issuer", "https://x"], "--issuer needs --signing-key"),
    ],
)
def test_serve_usage_errors(argv: list[str], fragment: str) -> None:
    _one_line_usage_error(_command("serve", "--config", CONFIG, *argv), fragment)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_a_busy_port(busy_port: int, workers: str) -> None:
    result = _command(
        "serve", "--addr", f"127.0.0.1:{busy_port}", "--config", CONFIG, "--workers", workers
    )
    _one_line_usage_error(result, f"cannot listen on 127.0.0.1:{busy_port}", "in use")


def test_serve_ready_file(tmp_path: Path) -> None:
    """The file appears once /health answers, holds the URL, and goes when serve stops."""
    ready = tmp_path / "ready"
    ready.write_text("stale")  # from an earlier run: removed before the server listens
    argv = ["serve", "--addr", "127.0.0.1:0", "--config", CONFIG, "--workers", "1"]
    process = subprocess.Popen(
        [sys.executable, "-m", "attestpolicy", *argv, "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (ready.is_file() and ready.read_text() != "stale"):
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "no ready file"
            time.sleep(0.05)
        url = ready.read_text().strip()
        assert url.startswith("http://127.0.0.1:")
        assert not url.endswith(":0")
        result = _command("decide", "--claims", ALLOW, "--remote", url)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["allow"] is True
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert "Traceback" not in err
    assert not ready.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temporary file left behind


# --- output into a closed pipe ---------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["decide", "--help"],
        ["schema"],
        ["schema", "config"],
        ["schema", "evidence"],
        ["decide", "--claims", ALLOW, "--config", CONFIG],
        ["verify", "--evidence", EVIDENCE, "--trust", TRUST, *PINNED_NOW, "--nonce", "9009"],
        ["demo"],
    ],
)
@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
def test_output_into_a_closed_pipe_ends_quietly(argv: list[str], buffered: bool) -> None:
    """``attestpolicy ... | head -c0``: the reader is gone before anything is written.

    A shell's Python buffers stdout (PYTHONUNBUFFERED unset): then the failing write is
    the final flush, which Python itself would report as "Exception ignored ... BrokenPipeError".
    """
    env = dict(os.environ)
    if buffered:
        env.pop("PYTHONUNBUFFERED", None)
    else:
        env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        [sys.executable, "-m", "attestpolicy", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    process.stdout.close()
    _, err = process.communicate(timeout=120)
    assert err == b""
    assert process.returncode in (0, 1)


# --- the decision cache's implementation ----------------------------------------------


@pytest.mark.parametrize("value", ["cpython", "Python3", "yes"])
def test_a_bad_cache_impl_is_one_clear_line(value: str) -> None:
    env = dict(os.environ, ATTESTPOLICY_CACHE_IMPL=value)
    result = _command("decide", "--claims", ALLOW, "--config", CONFIG, env=env)
    _one_line_usage_error(result, "ATTESTPOLICY_CACHE_IMPL must be cython or python", repr(value))
    assert _command("--help", env=env).returncode == 0  # --help loads no cache at all


def test_cache_impl_cython_without_the_extension() -> None:
    code = (
        "import sys; sys.modules['attestpolicy.engine._cache_ext'] = None\n"
        "from attestpolicy.cli import main\n"
        f"sys.exit(main(['decide', '--claims', {ALLOW!r}, '--config', {CONFIG!r}]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, ATTESTPOLICY_CACHE_IMPL="cython"),
        check=False,
    )
    _one_line_usage_error(result, "ATTESTPOLICY_CACHE_IMPL=cython", "=python")


def test_cache_impl_error_type() -> None:
    code = "import attestpolicy.engine.cache"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, ATTESTPOLICY_CACHE_IMPL="bogus"),
        check=False,
    )
    assert result.returncode == 1
    assert "CacheImplementationError: ATTESTPOLICY_CACHE_IMPL must be" in result.stderr


# --- decide, evaluate and verify usage ------------------------------------------------


def test_decide_without_config_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "decide", "--claims", ALLOW)
    assert (code, out) == (2, "")
    assert "decide needs --config FILE" in err
    assert "config.invalid" not in err


def test_evaluate_without_config_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "evaluate", "--evidence", EVIDENCE, "--trust", TRUST)
    assert (code, out) == (2, "")
    assert "evaluate needs --config FILE" in err


def test_config_with_remote_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(
        capsys, "decide", "--claims", ALLOW, "--config", CONFIG, "--remote", "http://127.0.0.1:9"
    )
    assert code == 2
    assert "the server at --remote has its own" in err


@pytest.mark.parametrize("command", ["decide", "evaluate"])
def test_policy_pointing_at_a_file_says_so(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    argv = (
        ["decide", "--claims", ALLOW, "--config", CONFIG]
        if command == "decide"
        else ["evaluate", "--evidence", EVIDENCE, "--trust", TRUST, "--config", EVIDENCE_CONFIG]
    )
    policy_file = str(EXAMPLES.parent.parent / "rego" / "attestpolicy" / "v1" / "decision.rego")
    code, _, err = _run(capsys, *argv, "--policy", policy_file)
    assert code == 2
    assert f"policy path {policy_file} is a file" in err
    assert "name the directory" in err


def test_verify_without_nonce_warns(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "verify", "--evidence", EVIDENCE, "--trust", TRUST, *PINNED_NOW)
    assert json.loads(out)["node"]["nonce_verified"] is False
    assert "warning: no --nonce: the node evidence's freshness is unproven" in err
    assert code in (0, 1)
    code, out, err = _run(
        capsys, "verify", "--evidence", EVIDENCE, "--trust", TRUST, *PINNED_NOW, "--nonce", "9009"
    )
    assert code == 0
    assert "--nonce" not in err


# --- configuration: every problem, YAML -----------------------------------------------


def _broken_config() -> dict[str, Any]:
    config: dict[str, Any] = json.loads(Path(CONFIG).read_text())
    config["limits"]["min_ttl_seconds"] = 0
    config["trusted_signers"]["issuers"]["https://issuer.example"] = ["a?b"]
    config["audiences"]["vault"]["ttl"] = 60
    config["limts"] = {}
    return config


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_every_configuration_problem_at_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"config{suffix}"
    config = _broken_config()
    path.write_text(json.dumps(config) if suffix == ".json" else yaml.safe_dump(config))
    code, out, err = _run(capsys, "decide", "--claims", ALLOW, "--config", str(path))
    assert (code, out) == (2, "")
    lines = err.strip().splitlines()
    assert lines[0] == "attestpolicy: error: invalid configuration, 4 problems:"
    problems = sorted(line.strip() for line in lines[1:])
    assert problems == [
        "at audiences.vault.ttl: unknown key 'ttl' (allowed: max_ttl_seconds)",
        "at limits.min_ttl_seconds: Input should be greater than 0",
        "at limts: unknown key 'limts' (did you mean 'limits'?)",
        "at trusted_signers.issuers.https://issuer.example.0: subject patterns may use no "
        "glob syntax but * (no ?, [, ], {, }, \\)",
    ]
    assert "Value error" not in err


def test_yaml_configuration_decides(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(json.loads(Path(CONFIG).read_text())))
    code, out, _ = _run(capsys, "decide", "--claims", ALLOW, "--config", str(path))
    assert code == 0
    assert json.loads(out)["allow"] is True


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("limits: {}\nlimits: {}\n", "not valid YAML: duplicate key 'limits' at line 2, column 1"),
        ("limits: [\n", "not valid YAML: "),
        ("", "got nothing (an empty document)"),
        ("\x80\x81", "not valid YAML: not UTF-8 text"),
    ],
)
def test_unreadable_yaml_configuration_is_one_line(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(text.encode("latin-1"))
    result = _command("decide", "--claims", ALLOW, "--config", str(path))
    _one_line_usage_error(result, fragment)


def test_schema_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "schema", "config")
    assert code == 0
    schema = json.loads(out)
    assert schema["required"] == ["limits"]
    assert schema["additionalProperties"] is False


# --- consistent wording ---------------------------------------------------------------


def test_no_pydantic_prefix_in_deny_reasons(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    claims = json.loads(Path(ALLOW).read_text())
    claims["now"] = "2026-13-01T00:00:00Z"  # a validator's ValueError
    path = tmp_path / "claims.json"
    path.write_text(json.dumps(claims))
    code, out, _ = _run(capsys, "decide", "--claims", str(path), "--config", CONFIG)
    assert code == 1
    message = json.loads(out)["reasons"][0]["message"]
    assert message.startswith("now: not an RFC 3339 timestamp")


def test_no_pydantic_prefix_in_evidence_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    document = json.loads(Path(EVIDENCE).read_text())
    document["request"]["spiffe_id"] = "spiffe://x/../y"
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(document))
    code, out, err = _run(
        capsys, "evaluate", "--evidence", str(path), "--trust", TRUST, "--config", EVIDENCE_CONFIG
    )
    assert code == 1
    text = out + err
    assert "Value error" not in text
    assert "evidence.malformed" in text or "input.invalid" in text


# --- start-up: what --help and import load (timed in benchmarks/bench_startup.py) ----


def test_help_loads_no_pydantic_and_no_engine() -> None:
    code = (
        "import sys\n"
        "from attestpolicy.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('pydantic', 'regorus', 'opa_bindings', 'attestpolicy.pdp',\n"
        "         'attestpolicy.claims', 'cryptography') if m in sys.modules]\n"
        "print(heavy, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stderr.strip() == "[]"


def test_import_attestpolicy_loads_nothing_until_a_name_is_used() -> None:
    code = (
        "import sys, attestpolicy\n"
        "print('pydantic' in sys.modules, 'attestpolicy.pdp' in sys.modules)\n"
        "attestpolicy.PolicyDecisionPoint\n"
        "print('pydantic' in sys.modules, 'attestpolicy.pdp' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.split() == ["False", "False", "True", "True"]


# --- a sweep of every command with bad input --------------------------------------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Files no command accepts: empty, not JSON, binary, a list, a directory, missing."""
    root = tmp_path_factory.mktemp("bad")
    files = {
        "empty": b"",
        "garbage.json": b"{not json",
        "binary": bytes(range(256)) * 4,
        "list.json": b"[1, 2]",
        "utf16.json": '{"a": 1}'.encode("utf-16"),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / "dir").mkdir()
    paths = {name: str(root / name) for name in [*files, "dir"]}
    paths["missing"] = str(root / "missing")
    return paths


def _sweep_cases(bad: str, tmp: Path) -> list[list[str]]:
    key = tmp / "key.pem"
    return [
        ["decide", "--claims", bad, "--config", CONFIG],
        ["decide", "--claims", ALLOW, "--config", bad],
        ["decide", "--claims", ALLOW, "--config", CONFIG, "--policy", bad],
        ["verify", "--evidence", bad, "--trust", TRUST],
        ["verify", "--evidence", EVIDENCE, "--trust", bad],
        ["evaluate", "--evidence", bad, "--trust", TRUST, "--config", EVIDENCE_CONFIG],
        ["evaluate", "--evidence", EVIDENCE, "--trust", TRUST, "--config", bad],
        ["bundle", "verify", bad, "--verification-key", TRUST],
        ["bundle", "build", "--out", str(tmp / "b.tar.gz"), "--policy", bad],
        ["bundle", "build", "--out", str(tmp / "config-bundle"), "--config", bad],
        ["bundle", "build", "--out", str(tmp / "s.tar.gz"), "--signing-key", bad],
        ["revoke", "--store", bad, "--key-id", "sha256:00"],
        ["revoke", "--credentials", bad, "--key-id", "sha256:00"],
        ["credential", "jwks", "--signing-key", bad],
        ["credential", "keygen", "--out", str(Path(bad) / "key.pem")],
        [
            "credential",
            "issue",
            "--evidence",
            EVIDENCE,
            "--trust",
            TRUST,
            "--config",
            bad,
            "--signing-key",
            str(key),
            "--issuer",
            "https://issuer.example",
        ],
        ["demo", "--write-evidence", str(Path(bad) / "sub")],
    ]


@pytest.mark.parametrize(
    "name", ["empty", "garbage.json", "binary", "list.json", "utf16.json", "dir", "missing"]
)
def test_no_traceback_for_bad_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bad_files: dict[str, str], name: str
) -> None:
    """Every command, every bad file: an exit code (1 a deny or a rejected bundle, 2 a usage
    error with the error on stderr); never an exception out of main()."""
    for argv in _sweep_cases(bad_files[name], tmp_path):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: usage error
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        assert code in (0, 1, 2), (argv, code, out, err)  # 0: an empty file is a new store
        if code == 2:
            assert err.startswith("attestpolicy: ") or err.startswith("usage: "), (argv, err)
            assert "Value error" not in err


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["decide", "--claims", ALLOW, "--config", CONFIG, "--now", "yesterday"], "--now"),
        (["decide", "--claims", ALLOW, "--remote", "not a url"], "http or https"),
        (["decide", "--claims", ALLOW, "--remote", "http://[::1"], "invalid OPA URL"),
        (["decide", "--claims", ALLOW, "--remote", "http://127.0.0.1:9", "--timeout", "-1"], ""),
        (["verify", "--evidence", EVIDENCE, "--trust", TRUST, "--nonce", "xyz"], "hex"),
        (["verify", "--evidence", EVIDENCE, "--trust", TRUST, "--now", "x"], "--now"),
        (["revoke", "--store", "/proc/nonexistent/r.db", "--key-id", "sha256:00"], "unusable"),
        (["credential", "keygen", "--out", "/proc/nonexistent/key.pem"], "cannot write"),
        (["bundle", "build", "--config", CONFIG], "--config needs --out"),
        (["test", "/nonexistent-dir"], "no such file or directory"),
    ],
)
def test_no_traceback_for_bad_values(
    capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    code, out, err = _run(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.startswith("attestpolicy: error: ")
    assert err.count("\n") == 1
    assert fragment in err
