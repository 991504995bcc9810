"""The README works as written: its shell blocks in a fresh shell, its Python blocks as is.

Every ```sh block carries a marker on the line above it: ``<!-- runnable -->`` (run here)
or ``<!-- not run by tests/test_readme.py: why -->``. A runnable block runs in a new
``bash`` with ``set -euo pipefail``, in a fresh copy of the repository (the README's
commands run from its root and write files there), with the repository's virtual
environment at ``.venv`` but not activated: no ``VIRTUAL_ENV``, and no ``bin`` of a
virtual environment on ``PATH``, so a bare ``attestpolicy`` fails as it would for a
reader who has not activated one. Every ```python block runs on its own, the same way,
with ``.venv/bin/python``. The reason-code table lists every code a decision can carry.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RUNNABLE = "<!-- runnable -->"
NOT_RUN = re.compile(r"<!-- not run by tests/test_readme\.py: (?P<why>\S.*\S) -->")
_COPY_IGNORED = shutil.ignore_patterns(
    ".venv",
    ".git",
    "__pycache__",
    "*.egg-info",
    "build",
    "dist",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
)


@dataclass(frozen=True)
class Block:
    """A fenced code block of the README."""

    language: str
    marker: str
    code: str
    line: int

    @property
    def name(self) -> str:
        """``README.md:LINE`` and its first line, for test ids."""
        first = self.code.strip().splitlines()[0][:60] if self.code.strip() else ""
        return f"README.md:{self.line} {first}"


def readme_blocks() -> list[Block]:
    """Every fenced block, with the line above its fence."""
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("```"):
            end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
            marker = lines[index - 1].strip() if index else ""
            code = "\n".join(lines[index + 1 : end]) + "\n"
            blocks.append(Block(line[3:].strip(), marker, code, index + 1))
            index = end + 1
        else:
            index += 1
    return blocks


SHELL_BLOCKS = [block for block in readme_blocks() if block.language in ("sh", "bash", "shell")]
RUNNABLE_SHELL = [block for block in SHELL_BLOCKS if block.marker == RUNNABLE]
PYTHON_BLOCKS = [block for block in readme_blocks() if block.language in ("python", "py")]


def _fresh_environment(home: Path) -> dict[str, str]:
    """A new shell's environment: no virtual environment active, none on PATH."""
    venv_bins = {str(Path(sys.prefix) / "bin"), str(ROOT / ".venv" / "bin")}
    path = [
        entry
        for entry in os.environ.get("PATH", os.defpath).split(os.pathsep)
        if entry
        and entry not in venv_bins
        and not (Path(entry) / "activate").is_file()  # any virtual environment's bin
    ]
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONUNBUFFERED")
    }
    env.update(PATH=os.pathsep.join(path), HOME=str(home))
    return env


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A fresh copy of the repository, with the test run's virtual environment at .venv."""
    root = tmp_path / "attestpolicy"
    shutil.copytree(ROOT, root, ignore=_COPY_IGNORED, symlinks=True)
    (root / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    (tmp_path / "home").mkdir()
    return root


def test_every_shell_block_is_marked() -> None:
    """A shell block either runs here or says why not: none escapes by being forgotten."""
    assert RUNNABLE_SHELL, "no runnable shell block found"
    for block in SHELL_BLOCKS:
        assert block.marker == RUNNABLE or NOT_RUN.fullmatch(block.marker), (
            f"{block.name}: put {RUNNABLE} or '<!-- not run by tests/test_readme.py: why -->' "
            "on the line above the fence"
        )


def test_commands_use_the_virtual_environment_explicitly() -> None:
    """``.venv/bin/attestpolicy`` everywhere, so a block works without activating the venv."""
    for block in SHELL_BLOCKS:
        for line in block.code.splitlines():
            command = line.strip()
            assert not re.match(r"(attestpolicy|python|pytest)\b", command), (
                f"{block.name}: {command!r} needs the virtual environment: .venv/bin/..."
            )


@pytest.mark.parametrize("block", RUNNABLE_SHELL, ids=[block.name for block in RUNNABLE_SHELL])
def test_shell_block_runs_in_a_fresh_shell(
    block: Block, checkout: Path, request: pytest.FixtureRequest
) -> None:
    if "--engine opa" in block.code:
        request.getfixturevalue("requires_opa")  # fails, or skips when regorus-only
    result = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + block.code],
        cwd=checkout,
        env=_fresh_environment(checkout.parent / "home"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{block.name} exited {result.returncode}:\n{output[-4000:]}"
    assert "Traceback" not in output, output[-4000:]


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[block.name for block in PYTHON_BLOCKS])
def test_python_block_runs_as_written(block: Block, checkout: Path) -> None:
    result = subprocess.run(
        [str(checkout / ".venv" / "bin" / "python"), "-c", block.code],
        cwd=checkout,
        env=_fresh_environment(checkout.parent / "home"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"{block.name}:\n{(result.stdout + result.stderr)[-4000:]}"


def test_reason_code_table_lists_every_code() -> None:
    """The policy's codes, the verifiers' and the fail-closed ones are all in the table."""
    from attestpolicy.evidence._common import Code
    from attestpolicy.policy import POLICY_REASON_CODES

    text = README.read_text(encoding="utf-8")
    table = text[text.index("| code | when |") :]
    table = table[: table.index("\n\n")]
    listed: set[str] = set()
    for row in table.splitlines()[2:]:
        cell = row.split("|")[1]
        names = re.findall(r"`([a-z_.]+)`", cell)
        family = names[0].partition(".")[0]
        listed.update(name if not name.startswith(".") else family + name for name in names)
    evidence = {value for name, value in vars(Code).items() if name.isupper()}
    fail_closed = {"engine.error", "engine.undefined", "remote.error", "engine.timeout"}
    expected = set(POLICY_REASON_CODES) | evidence | fail_closed | {"evidence.invalid"}
    assert expected <= listed, sorted(expected - listed)
