"""OPA's bundle format: canonical JSON, file digests, the manifest, roots and package paths."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from bundle.helpers import ASSETS, expect_error, manifest, pack
from hypothesis import given, settings
from hypothesis import strategies as st

from attestpolicy.bundle import canonical_json, file_digest, load_bundle

# --- OPA's own vectors -------------------------------------------------------------------

_OPA_HASHES = json.loads((ASSETS / "opa_hash_vectors.json").read_text())["vectors"]
_HASHLIB = {"MD5": "md5", "SHA-256": "sha256", "SHA-512": "sha512"}


@pytest.mark.parametrize("vector", _OPA_HASHES, ids=lambda v: f"{v['name']}-{v['algorithm']}")
def test_digests_match_opa(vector: dict[str, str]) -> None:
    content = vector["content"].encode()
    name = vector["name"]
    structured = name == ".manifest" or name.rsplit("/", 1)[-1] == "data.json"
    hashed = canonical_json(content) if structured else content
    assert hashlib.new(_HASHLIB[vector["algorithm"]], hashed).hexdigest() == vector["hash"]
    if vector["algorithm"] != "MD5":
        assert file_digest(name, content, vector["algorithm"]) == vector["hash"]


def test_canonical_json_follows_opa_hash_go() -> None:
    """hash.go: keys sorted, no whitespace, numbers as written, Go string escaping (no HTML)."""
    raw = (
        b'{ "b" : [1, 2.50, -0, 1E3, "x<y&z>"],\n  "a": {"z": null, "y": true},'
        b' "\\u00e9\\u2028": "tab\\t\\u0001\\u007f/" }'
    )
    expected = (
        '{"a":{"y":true,"z":null},"b":[1,2.50,-0,1E3,"x<y&z>"],'
        '"\u00e9\\u2028":"tab\\t\\u0001\x7f/"}'
    ).encode()
    assert canonical_json(raw) == expected
    assert file_digest("data.json", raw) == hashlib.sha256(expected).hexdigest()
    # the same bytes are hashed raw when the file is not structured
    assert file_digest("notes.txt", raw) == hashlib.sha256(raw).hexdigest()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(value=_JSON, indent=st.sampled_from([None, 0, 3]), ascii_only=st.booleans())
def test_canonical_hash_ignores_formatting(
    value: Any, indent: int | None, ascii_only: bool
) -> None:
    raw = json.dumps(value, indent=indent, ensure_ascii=ascii_only).encode()
    reference = (
        json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
        .encode()
    )
    assert canonical_json(raw) == reference


_MANIFEST = manifest(["attestpolicy/v1"])


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            [("/attestpolicy/v2/x.rego", b"package attestpolicy.v2\n")],
            "attestpolicy/v2/x.rego: package attestpolicy.v2 is outside the manifest roots",
        ),
        (
            [("/x.rego", b'# comment\npackage attestpolicy["v2"]\n')],
            "x.rego: package attestpolicy.v2 is outside the manifest roots",
        ),
        (
            [("/attestpolicy/data.json", b'{"config": {"a": 1}}')],
            "attestpolicy/data.json: data at /attestpolicy/config is outside the manifest roots",
        ),
        (
            [("/other/data.json", b"{}")],
            "other/data.json: data at /other is outside the manifest roots",
        ),
        (
            [("/x.rego", b"allow := true\n")],
            "x.rego:1:1: invalid Rego: expecting `package` Missing package declaration",
        ),
    ],
)
def test_files_outside_roots_are_rejected(files: list[tuple[str, bytes]], message: str) -> None:
    with expect_error(message):
        load_bundle(pack([_MANIFEST, *files]))


def test_files_inside_roots_are_accepted() -> None:
    files = [
        _MANIFEST,
        ("/x.rego", b'package attestpolicy["v1"].extra\n'),
        ("/attestpolicy/data.json", b'{"v1": {"a": 1}}'),
        ("/attestpolicy/v1/b/data.json", b"[true]"),
    ]
    assert load_bundle(pack(files)).data == {"attestpolicy": {"v1": {"a": 1, "b": [True]}}}


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (b'package attestpolicy["v1/x"]\n', "x.rego: package segment 'v1/x' is empty or holds '/'"),
        (b'package attestpolicy[""]\n', "x.rego: package segment '' is empty or holds '/'"),
        (
            b"package attestpolicy.v1\n\nallow := \n",
            "x.rego:4:1: invalid Rego: expecting expression",
        ),
        (b"package attestpolicy.v1\n\nallow { true }\n", "x.rego:3:7: invalid Rego: `if` keyword"),
    ],
)
def test_package_paths_and_modules_are_read_by_regorus(module: bytes, message: str) -> None:
    """The package path is the one regorus parses; a module regorus cannot parse is refused."""
    with expect_error(message):
        load_bundle(pack([_MANIFEST, ("/x.rego", module)]))


@pytest.mark.parametrize(
    ("manifest_doc", "message"),
    [
        ({"rego_version": 2}, ".manifest: unknown rego_version 2"),
        ({"rego_version": 0}, "rego_version 0 (Rego v0) is not supported"),
        ({"rego_version": "1"}, "rego_version must be an integer"),
        ({"rego_version": 1.0}, "rego_version must be an integer"),
        ({"file_rego_versions": {"*.rego": 0}}, "file_rego_versions['*.rego'] 0 (Rego v0)"),
        ({"roots": ["a", "a/b"]}, "roots 'a' and 'a/b' overlap"),
        ({"roots": "attestpolicy"}, "roots must be a list of strings"),
        ({"roots": [1]}, "roots must be a list of strings"),
        ({"revision": 7}, ".manifest: revision must be a string"),
        ({"Roots": [""]}, "field 'Roots' differs from 'roots' only in case"),
        ({"wasm": [{"entrypoint": "a", "module": "/p.wasm"}]}, "wasm modules are not supported"),
    ],
)
def test_bad_manifests_are_rejected(manifest_doc: dict[str, Any], message: str) -> None:
    with expect_error(message):
        load_bundle(pack([("/.manifest", json.dumps(manifest_doc).encode())]))


def test_bundle_without_manifest_owns_all_data() -> None:
    loaded = load_bundle(pack([("/x/data.json", b"1"), ("/a.rego", b"package anything\n")]))
    assert loaded.manifest.roots == ("",)
    assert loaded.data == {"x": 1}
