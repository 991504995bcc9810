"""Building bundles: deterministic policy bundles and configuration bundles."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from bundle.helpers import CONFIG, DATA, DECISION, HELPERS, expect_error, members, write_policy

from attestpolicy.bundle import (
    BUNDLE_ROOTS,
    CONFIG_ROOTS,
    build_bundle,
    load_bundle,
    write_config_bundle,
)
from attestpolicy.errors import ConfigError
from attestpolicy.policy import PolicySource, config_revision, content_revision

# --- round trip ----------------------------------------------------------------------


def test_round_trip_modules_data_manifest_revision(policy_dir: Path) -> None:
    bundle = build_bundle(policy_dir, data=DATA)
    loaded = load_bundle(bundle)

    assert dict(loaded.modules) == {
        "attestpolicy/v1/decision.rego": DECISION,
        "attestpolicy/v1/helpers.rego": HELPERS,
    }
    assert loaded.data == DATA
    assert loaded.manifest.roots == BUNDLE_ROOTS
    assert loaded.manifest.rego_version == 1
    assert loaded.signed is False
    data_text = json.dumps(DATA["attestpolicy"]["v1"], sort_keys=True, indent=2) + "\n"
    assert loaded.revision == content_revision(
        {**loaded.modules, "attestpolicy/v1/data.json": data_text}
    )
    source = loaded.to_policy_source()
    assert isinstance(source, PolicySource)
    assert source.revision == loaded.revision
    assert source.modules == loaded.modules
    assert source.data == DATA


def test_revision_defaults_to_policy_content_revision(policy_dir: Path) -> None:
    loaded = load_bundle(build_bundle(policy_dir))
    assert loaded.revision == PolicySource.from_directory(policy_dir).revision
    assert loaded.data == {}


def test_explicit_revision_is_the_policy_source_revision(policy_dir: Path) -> None:
    loaded = load_bundle(build_bundle(policy_dir, revision="2026.11.22-1"))
    assert loaded.revision == "2026.11.22-1"
    assert loaded.to_policy_source().revision == "2026.11.22-1"


def test_layout_is_what_opa_build_writes(policy_dir: Path) -> None:
    files = dict(members(build_bundle(policy_dir, data=DATA)))
    assert sorted(files) == [
        "/.manifest",
        "/attestpolicy/v1/data.json",
        "/attestpolicy/v1/decision.rego",
        "/attestpolicy/v1/helpers.rego",
    ]
    doc = json.loads(files["/.manifest"])
    assert doc == {"revision": doc["revision"], "roots": ["attestpolicy/v1"], "rego_version": 1}
    assert json.loads(files["/attestpolicy/v1/data.json"]) == DATA["attestpolicy"]["v1"]


def test_builds_are_byte_identical(policy_dir: Path) -> None:
    first = build_bundle(policy_dir, data=DATA)
    assert build_bundle(policy_dir, data=DATA) == first
    # gzip header: no FNAME flag, mtime 0
    assert first[3] == 0
    assert first[4:8] == b"\0\0\0\0"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(first))) as archive:
        infos = archive.getmembers()
    assert [i.name for i in infos] == sorted(i.name for i in infos)
    assert {(i.mtime, i.uid, i.gid, i.uname, i.gname, i.mode) for i in infos} == {
        (0, 0, 0, "", "", 0o644)
    }


def test_build_rejects_module_outside_roots(policy_dir: Path) -> None:
    write_policy(policy_dir, {"other/x.rego": "package other\n"})
    with expect_error("other/x.rego: package other is outside the manifest roots"):
        build_bundle(policy_dir)


def test_build_rejects_data_outside_roots(policy_dir: Path) -> None:
    with expect_error("data: data at /attestpolicy/config is outside the manifest roots"):
        build_bundle(policy_dir, data={"attestpolicy": {"config": {"a": 1}}})


def test_build_rejects_data_json_cannot_carry(policy_dir: Path) -> None:
    with expect_error("is not a JSON number"):
        build_bundle(policy_dir, data={"attestpolicy": {"v1": {"x": float("nan")}}})
    with expect_error("object key 1 is not a string"):
        build_bundle(policy_dir, data={"attestpolicy": {"v1": {1: "x"}}})


def test_build_rejects_overlapping_roots(policy_dir: Path) -> None:
    with expect_error("roots 'attestpolicy' and 'attestpolicy/v1' overlap"):
        build_bundle(policy_dir, roots=("attestpolicy", "attestpolicy/v1"))


def test_build_needs_rego_files(tmp_path: Path) -> None:
    with expect_error("no .rego files"):
        build_bundle(tmp_path)


# --- configuration bundles ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        ({"trusted_signers": {"issuers": {"https://i.example": ["a?b"]}}}, "issuers"),
        ({"trusted_builders": ["https://b.example"]}, "trusted_builders"),
        ({"revoked": {"node_ids": ["node-1"]}}, "revoked.node_ids"),
        ({"limits": None}, "limits"),
    ],
)
def test_config_bundle_refuses_an_invalid_configuration(
    tmp_path: Path, edit: dict[str, Any], where: str
) -> None:
    with pytest.raises(ConfigError, match=where):
        write_config_bundle({**CONFIG, **edit}, tmp_path / "config")
    assert not (tmp_path / "config").exists()


def test_config_bundle_round_trip(tmp_path: Path) -> None:
    out = write_config_bundle(CONFIG, tmp_path / "config")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        ".manifest",
        "attestpolicy/config/data.json",
    ]
    (out / "README.md").write_text("documentation, ignored by OPA")
    loaded = load_bundle(out)
    assert loaded.data == {"attestpolicy": {"config": CONFIG}}
    assert loaded.manifest.roots == CONFIG_ROOTS
    assert loaded.revision == config_revision(CONFIG)
    assert loaded.modules == {}
