"""The tree stays ruff-clean (lint and format) and mypy-clean in strict mode."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} is not installed in this environment: pip install -e '.[test]'")
    return path


def test_ruff_lint_and_format() -> None:
    lint = _run(_tool("ruff"), "check", "--output-format", "concise", ".")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    formatting = _run(_tool("ruff"), "format", "--check", ".")
    assert formatting.returncode == 0, formatting.stdout + formatting.stderr


def test_mypy_strict() -> None:
    result = _run(_tool("mypy"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("# 2. set everything up and run the whole test suite", 1)[1]
    block = block.split("\n", 1)[1].split("```", 1)[0]
    command = " ".join(block.replace("\\\n", " ").split())
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert " ".join(ci_lines[-1].split()) == command
    assert "opa-golib-python-bindings==0.4.4" in command
