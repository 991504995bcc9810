"""``attestpolicy revoke --credentials FILE``: the revoked values also mark the live
credentials resting on them in the registry, and the command lists them."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from attestpolicy.broker import CredentialRegistry
from attestpolicy.cli import main
from attestpolicy.revocations import RevocationStore

KEY_ID = "sha256:4f0c7b9d1e2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4"
DIGEST = "sha256:" + "d9" * 32


@pytest.fixture
def registry_path(tmp_path: Path) -> Path:
    """A registry with two live credentials on KEY_ID (one also on DIGEST), one expired on
    KEY_ID and one live on another key."""
    path = tmp_path / "credentials.db"
    now = datetime.now(UTC).replace(microsecond=0)
    with CredentialRegistry(path) as registry:
        for jti, ttl, pairs in (
            ("live-1", 900, [("signer_subjects", KEY_ID), ("image_digests", DIGEST)]),
            ("live-2", 600, [("signer_subjects", KEY_ID)]),
            ("expired", -60, [("signer_subjects", KEY_ID)]),
            ("other", 900, [("signer_subjects", "sha256:other")]),
        ):
            registry.record(
                jti=jti,
                subject=f"spiffe://acme.example/{jti}",
                audience="payments",
                issued_at=now - timedelta(seconds=120),
                expires_at=now + timedelta(seconds=ttl),
                revocable=pairs,
            )
    return path


def _revoked_exp(path: Path) -> dict[str, int]:
    """``{jti: exp}`` of the revoked credentials, from the registry's revocation list."""
    with CredentialRegistry(path) as registry:
        return {
            entry["jti"]: entry["exp"] for entry in registry.revoked().to_json_dict()["revoked"]
        }


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any] | str]:
    code = main(["revoke", *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else err)


def test_revoke_with_a_store_and_a_registry_lists_the_dependent_credentials(
    tmp_path: Path, registry_path: Path
) -> None:
    """Run as a separate process, as an operator would."""
    store = tmp_path / "revocations.db"
    result = subprocess.run(
        [sys.executable, "-m", "attestpolicy", "revoke", "--store", str(store),
         "--credentials", str(registry_path), "--key-id", KEY_ID, "--reason", "key leaked"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    exp = _revoked_exp(registry_path)
    assert list(exp) == ["live-1", "live-2"]
    assert output == {
        "revoked": 1,
        "revocations": 1,
        "store": str(store),
        "credentials": [
            {"jti": jti, "subject": f"spiffe://acme.example/{jti}", "audience": "payments",
             "exp": exp[jti]}
            for jti in ("live-1", "live-2")
        ],
        "registry": str(registry_path),
    }  # fmt: skip
    with RevocationStore(store) as revocations:
        assert revocations.snapshot() == {"signer_subjects": {KEY_ID: "key leaked"}}


def test_revoke_with_only_a_registry(
    capsys: pytest.CaptureFixture[str], registry_path: Path
) -> None:
    code, output = _run(capsys, "--credentials", str(registry_path), "--image-digest", DIGEST)
    assert code == 0
    assert output == {
        "credentials": [
            {
                "jti": "live-1",
                "subject": "spiffe://acme.example/live-1",
                "audience": "payments",
                "exp": _revoked_exp(registry_path)["live-1"],
            }
        ],
        "registry": str(registry_path),
    }
    code, output = _run(capsys, "--credentials", str(registry_path), "--image-digest", DIGEST)
    assert output == {"credentials": [], "registry": str(registry_path)}


def test_revoke_needs_a_store_or_a_registry(capsys: pytest.CaptureFixture[str]) -> None:
    code, error = _run(capsys, "--node-id", "n1")
    assert code == 2
    assert "name a revocation store (--store), a credential registry (--credentials)" in error


def test_lifting_never_un_revokes_credentials(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, registry_path: Path
) -> None:
    store = str(tmp_path / "revocations.db")
    registry = str(registry_path)
    assert _run(capsys, "--store", store, "--credentials", registry, "--key-id", KEY_ID)[0] == 0
    code, error = _run(
        capsys, "--store", store, "--credentials", registry, "--key-id", KEY_ID, "--lift"
    )
    assert code == 2
    assert "--lift applies to the revocation store: revoked credentials stay revoked" in error
    assert _run(capsys, "--store", store, "--key-id", KEY_ID, "--lift")[1] == {
        "lifted": 1,
        "revocations": 0,
        "store": store,
    }
    with CredentialRegistry(registry_path) as opened:
        assert opened.is_revoked("live-1")
    with pytest.raises(SystemExit):
        main(["revoke", "--help"])
    assert "Lifting a value never un-revokes a credential" in capsys.readouterr().out


def test_an_unusable_registry_changes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = tmp_path / "revocations.db"
    corrupt = tmp_path / "credentials.db"
    corrupt.write_bytes(b"not a database" * 100)
    code, error = _run(
        capsys, "--store", str(store), "--credentials", str(corrupt), "--node-id", "n1"
    )
    assert code == 2
    assert "unusable: file is not a database" in error
    assert "already done" not in error
    with RevocationStore(store) as revocations:
        assert revocations.snapshot() == {}


def test_a_value_the_registry_refuses_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], registry_path: Path
) -> None:
    code, error = _run(capsys, "--credentials", str(registry_path), "--node-id", "n\x00")
    assert code == 2
    assert "no NUL" in error
