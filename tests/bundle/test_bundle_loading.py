"""Loading bundles: archive and directory reading within limits, data assembly, OPA layouts."""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

import pytest
from bundle.helpers import CONFIG, expect_error, manifest, pack, pack_special

from attestpolicy.bundle import BundleLimits, build_bundle, load_bundle, write_config_bundle
from attestpolicy.errors import BundleError
from attestpolicy.policy import content_revision


def test_loads_bundles_laid_out_like_opa_tooling() -> None:
    """``opa build`` writes '/'-prefixed names and one root /data.json; ``tar -C dir .`` './'."""
    rego = b"package attestpolicy.v1\n\nallow := true\n"
    for prefix in ("/", "./"):
        files = [
            (f"{prefix}.manifest", b'{"revision":"","roots":["attestpolicy/v1"],"rego_version":1}'),
            (f"{prefix}data.json", b'{"attestpolicy":{"v1":{"x":1}}}'),
            (f"{prefix}attestpolicy/v1/policy.rego", rego),
            (f"{prefix}README.md", b"ignored by OPA"),
        ]
        loaded = load_bundle(pack(files))
        assert loaded.data == {"attestpolicy": {"v1": {"x": 1}}}
        assert dict(loaded.modules) == {"attestpolicy/v1/policy.rego": rego.decode()}
        assert loaded.revision == ""
        assert loaded.to_policy_source().revision == content_revision(loaded.modules)


# --- unsafe or malformed archives ---------------------------------------------------------

_REGO = b"package attestpolicy.v1\n"
_MANIFEST = manifest(["attestpolicy/v1"])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../evil.rego", "path traversal ('..') in member name"),
        ("attestpolicy/v1/../../evil.rego", "path traversal"),
        ("//etc/evil.rego", "absolute member path"),
        ("attestpolicy//v1/x.rego", "empty or '.' segment"),
        ("attestpolicy/./x.rego", "empty or '.' segment"),
        ("attestpolicy\\v1\\x.rego", "control character or backslash"),
        ("attestpolicy/v1/x\n.rego", "control character or backslash"),
    ],
)
def test_unsafe_member_names_are_rejected(name: str, message: str) -> None:
    with expect_error(message):
        load_bundle(pack([_MANIFEST, (name, _REGO)]))


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (tarfile.SYMTYPE, "symlink members are not allowed"),
        (tarfile.LNKTYPE, "hard link members are not allowed"),
        (tarfile.CHRTYPE, "character device members are not allowed"),
        (tarfile.BLKTYPE, "block device members are not allowed"),
        (tarfile.FIFOTYPE, "FIFO members are not allowed"),
    ],
)
def test_links_and_devices_are_rejected(kind: bytes, message: str) -> None:
    with expect_error(message):
        load_bundle(pack_special("attestpolicy/v1/x.rego", kind, linkname="/etc/passwd"))


@pytest.mark.parametrize(
    "names", [("a.rego", "a.rego"), ("/a.rego", "a.rego"), ("./a.rego", "/a.rego")]
)
def test_duplicate_members_are_rejected(names: tuple[str, str]) -> None:
    files = [(names[0], b"package a\n"), (names[1], b"package a\n\nallow := true\n")]
    with expect_error("a.rego: duplicate member"):
        load_bundle(pack(files))


def test_oversized_member_is_rejected_at_the_default_limit() -> None:
    big = b" " * (16 * 1024 * 1024 + 1)
    with expect_error("attestpolicy/v1/data.json: member of 16777217 bytes exceeds 16777216 bytes"):
        load_bundle(pack([_MANIFEST, ("/attestpolicy/v1/data.json", big)]))


def test_total_size_and_file_count_limits() -> None:
    limits = BundleLimits(max_file_bytes=100, max_total_bytes=150, max_files=3)
    two = [("/a/data.json", b"1" * 80), ("/b/data.json", b"2" * 80)]
    with expect_error("b/data.json: bundle contents exceed 150 bytes"):
        load_bundle(pack(two), limits=limits)
    many = [(f"/{i}.txt", b"") for i in range(4)]
    with expect_error("bundle has more than 3 entries"):
        load_bundle(pack(many), limits=limits)
    with expect_error("bundle is larger than 10 bytes"):
        load_bundle(pack(many), limits=BundleLimits(max_bundle_bytes=10))


def test_gzip_bomb_is_stopped() -> None:
    bomb = gzip.compress(b"\0" * (40 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 100_000
    with expect_error("bundle expands beyond"):
        load_bundle(bomb)


def test_non_gzip_input_is_rejected(policy_dir: Path) -> None:
    with expect_error("not a gzip-compressed tar archive"):
        load_bundle(b"PK\x03\x04 this is a zip")
    with expect_error("not a gzip-compressed tar archive"):
        load_bundle(b"")
    raw_tar = gzip.decompress(build_bundle(policy_dir))
    with expect_error("not a gzip-compressed tar archive"):
        load_bundle(raw_tar)


def test_truncated_archive_is_rejected(policy_dir: Path) -> None:
    bundle = build_bundle(policy_dir)
    for cut in (len(bundle) - 4, len(bundle) // 2, 12):
        with pytest.raises(BundleError) as info:
            load_bundle(bundle[:cut])
        assert "truncated" in str(info.value) or "corrupt" in str(info.value)


def test_truncated_tar_inside_valid_gzip_is_rejected(policy_dir: Path) -> None:
    raw_tar = gzip.decompress(build_bundle(policy_dir))
    with expect_error("corrupt or truncated"):
        load_bundle(gzip.compress(raw_tar[:700]))


def test_corrupt_gzip_and_trailing_data_are_rejected(policy_dir: Path) -> None:
    bundle = build_bundle(policy_dir)
    flipped = bytearray(bundle)
    flipped[len(flipped) // 2] ^= 0xFF
    with expect_error("gzip stream is corrupt"):
        load_bundle(bytes(flipped))
    with expect_error("trailing data after the gzip stream"):
        load_bundle(bundle + b"junk")
    with expect_error("data after its last valid member"):
        load_bundle(pack([_MANIFEST, ("/x.rego", _REGO)], tar_tail=b"hidden" * 100))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"a": 1,}', "attestpolicy/v1/data.json: invalid JSON"),
        (b'{"a": 1, "a": 2}', "duplicate member 'a'"),
        (b'{"a": NaN}', "NaN is not valid JSON"),
        (b'{"a": 1e999}', "number 1e999 is out of range"),
        (b'\xef\xbb\xbf{"a": 1}', "invalid JSON"),
        (b'{"a": "\xff"}', "attestpolicy/v1/data.json: invalid JSON: not UTF-8"),
        (b'{"a": "\\ud800"}', "lone surrogate"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    ],
)
def test_invalid_json_data_is_rejected(content: bytes, message: str) -> None:
    with expect_error(message):
        load_bundle(pack([_MANIFEST, ("/attestpolicy/v1/data.json", content)]))


def test_non_utf8_rego_is_rejected() -> None:
    with expect_error("attestpolicy/v1/x.rego: Rego module is not UTF-8"):
        load_bundle(
            pack([_MANIFEST, ("/attestpolicy/v1/x.rego", b"package attestpolicy.v1\n\xff")])
        )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("/attestpolicy/v1/data.yaml", "YAML data files are not supported"),
        ("/policy.wasm", "wasm and plan bundles are not supported"),
        ("/patch.json", "delta bundles are not supported"),
        ("/attestpolicy/.manifest", "attestpolicy/.manifest: a manifest must be /.manifest"),
        ("/attestpolicy/.signatures.json", "only /.signatures.json may hold signatures"),
        ("/.hidden/data.json", "data directories must not start with '.'"),
    ],
)
def test_files_opa_would_read_differently_are_rejected(name: str, message: str) -> None:
    with expect_error(message):
        load_bundle(pack([(name, b"{}")]))


def test_conflicting_data_files_are_rejected() -> None:
    files = [("/a/data.json", b'{"b": 1}'), ("/a/b/data.json", b'{"c": 2}')]
    with expect_error("data at /a/b conflicts with another data file"):
        load_bundle(pack(files))
    with expect_error("data.json at the bundle root must hold a JSON object"):
        load_bundle(pack([("/data.json", b"[1]")]))


def test_to_policy_source_needs_modules() -> None:
    loaded = load_bundle(pack([_MANIFEST]))
    with expect_error("bundle has no Rego modules"):
        loaded.to_policy_source()


# --- directory bundles and paths ---------------------------------------------------------


def test_directory_bundle_rejects_symlinks(tmp_path: Path) -> None:
    out = write_config_bundle(CONFIG, tmp_path / "config")
    (out / "attestpolicy" / "link.rego").symlink_to("/etc/hostname")
    with expect_error("attestpolicy/link.rego: symlinks are not allowed"):
        load_bundle(out)


def test_missing_bundle_path(tmp_path: Path) -> None:
    with expect_error("bundle not found"):
        load_bundle(tmp_path / "nope.tar.gz")


def test_bundle_file_path_loads(policy_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "b.tar.gz"
    path.write_bytes(build_bundle(policy_dir))
    assert load_bundle(path).revision == load_bundle(str(path)).revision
