"""The repository's bundles/: committed bundles match a fresh build (attestpolicy._cli_bundle)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from bundle.helpers import CONFIG, DECISION, REPO, expect_error, members, write_policy

from attestpolicy._cli_bundle import build_repo_bundles
from attestpolicy.bundle import build_bundle, load_bundle, write_config_bundle
from attestpolicy.policy import PolicySource

# --- the repository's bundles/ -------------------------------------------------------------


def test_committed_policy_bundle_matches_a_fresh_build() -> None:
    committed_path = REPO / "bundles" / "attestpolicy.tar.gz"
    assert committed_path.is_file(), (
        "bundles/attestpolicy.tar.gz is missing: run `attestpolicy bundle build`"
    )
    fresh = build_bundle(REPO / "rego")
    committed = committed_path.read_bytes()
    # Compare the tar streams: gzip bytes may differ between zlib builds.
    if gzip.decompress(committed) != gzip.decompress(fresh):
        old, new = dict(members(committed)), dict(members(fresh))
        changed = sorted(n for n in old.keys() | new.keys() if old.get(n) != new.get(n))
        pytest.fail(
            f"bundles/attestpolicy.tar.gz is stale or was edited by hand ({', '.join(changed)}"
            " differ from rego/): run `attestpolicy bundle build`"
        )
    loaded = load_bundle(committed)
    assert loaded.manifest.roots == ("attestpolicy/v1",)
    assert loaded.manifest.rego_version == 1
    assert loaded.revision == PolicySource.from_directory(REPO / "rego").revision


def test_committed_example_config_bundle_matches_a_fresh_build(tmp_path: Path) -> None:
    committed = REPO / "bundles" / "example-config"
    config = json.loads((REPO / "attestpolicy" / "examples" / "config.json").read_text())
    fresh = write_config_bundle(config, tmp_path / "fresh")
    for name in (".manifest", "attestpolicy/config/data.json"):
        assert (committed / name).is_file(), f"bundles/example-config/{name} is missing"
        assert (committed / name).read_bytes() == (fresh / name).read_bytes(), (
            f"bundles/example-config/{name} is stale: run `attestpolicy bundle build`"
        )
    loaded = load_bundle(committed)
    assert loaded.data == {"attestpolicy": {"config": config}}
    policy_roots = load_bundle(REPO / "bundles" / "attestpolicy.tar.gz").manifest.roots
    assert not set(policy_roots) & set(loaded.manifest.roots)


def test_build_repo_bundles_writes_both(tmp_path: Path) -> None:
    write_policy(tmp_path / "rego", {"attestpolicy/v1/d.rego": DECISION})
    examples = tmp_path / "attestpolicy" / "examples"
    examples.mkdir(parents=True)
    (examples / "config.json").write_text(json.dumps(CONFIG))
    policy_bundle, config_dir = build_repo_bundles(tmp_path)
    assert policy_bundle == tmp_path / "bundles" / "attestpolicy.tar.gz"
    assert load_bundle(policy_bundle).modules == {"attestpolicy/v1/d.rego": DECISION}
    assert load_bundle(config_dir).data == {"attestpolicy": {"config": CONFIG}}
    (examples / "config.json").unlink()
    with expect_error("example configuration not found"):
        build_repo_bundles(tmp_path)
