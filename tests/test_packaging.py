"""The built wheel ships the policy from rego/, the repository's one copy of it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _tracked_copy(destination: Path) -> Path:
    """The files git tracks (what a fresh clone has), copied to destination."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60
    )
    for name in listed.stdout.decode().split("\0"):
        if name and (REPO / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, destination / name)
    return destination


def test_wheel_ships_the_policy_from_rego(tmp_path: Path) -> None:
    source = _tracked_copy(tmp_path / "src")
    assert not (source / "attestpolicy" / "rego").exists()  # one copy: rego/
    build = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps"]
    subprocess.run(
        [*build, "--no-build-isolation", "--quiet", "--wheel-dir", str(tmp_path / "dist")],
        check=True,
        timeout=600,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("attestpolicy-*.whl")
    prefix = "attestpolicy/rego/"
    with zipfile.ZipFile(wheel) as archive:
        shipped = {
            name.removeprefix(prefix): archive.read(name)
            for name in archive.namelist()
            if name.startswith(prefix)
        }
    policy = REPO / "rego"
    expected = {
        path.relative_to(policy).as_posix(): path.read_bytes() for path in policy.rglob("*.rego")
    }
    assert shipped == expected
    assert "attestpolicy/v1/decision.rego" in shipped
