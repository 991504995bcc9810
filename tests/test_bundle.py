"""OPA bundles: build, sign, verify and load (attestpolicy.bundle)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import io
import json
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from attestpolicy._cli_bundle import build_repo_bundles
from attestpolicy.bundle import (
    BUNDLE_ROOTS,
    CONFIG_ROOTS,
    SIGNATURE_CODE,
    BundleLimits,
    PrivateKey,
    build_bundle,
    canonical_json,
    file_digest,
    load_bundle,
    verify_signature_token,
    write_config_bundle,
)
from attestpolicy.errors import BundleError, ConfigError
from attestpolicy.policy import PolicySource, config_revision, content_revision

REPO = Path(__file__).resolve().parent.parent
ASSETS = Path(__file__).parent / "assets" / "bundle"

DECISION = """# METADATA
# title: decision
package attestpolicy.v1

default allow := false

allow if input.ok == true
"""
HELPERS = """package attestpolicy["v1"].helpers

is_ok(x) if x == true
"""
MODULE_TEST = """package attestpolicy.v1_test

test_allow if data.attestpolicy.v1.allow with input as {"ok": true}
"""
DATA = {"attestpolicy": {"v1": {"levels": [1, 2.5, "three"], "enabled": True}}}

# --- helpers ----------------------------------------------------------------------


def write_policy(directory: Path, modules: dict[str, str]) -> Path:
    for name, text in modules.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return directory


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    return write_policy(
        tmp_path / "rego",
        {
            "attestpolicy/v1/decision.rego": DECISION,
            "attestpolicy/v1/helpers.rego": HELPERS,
            "attestpolicy/v1/decision_test.rego": MODULE_TEST,
        },
    )


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def members(bundle: bytes) -> list[tuple[str, bytes]]:
    """The (name, content) of every regular file, names exactly as stored."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(bundle))) as archive:
        for member in archive:
            reader = archive.extractfile(member)
            assert reader is not None
            out.append((member.name, reader.read()))
    return out


def pack(files: Iterable[tuple[str, bytes]], *, tar_tail: bytes = b"") -> bytes:
    """A tar.gz with the given members, names verbatim (no normalization)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, content in files:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue() + tar_tail)


def pack_special(name: str, kind: bytes, linkname: str = "") -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = linkname
        archive.addfile(info)
    return gzip.compress(raw.getvalue())


def replace(files: list[tuple[str, bytes]], name: str, content: bytes) -> list[tuple[str, bytes]]:
    assert any(n == name for n, _ in files), name
    return [(n, content if n == name else c) for n, c in files]


def manifest(roots: list[str] | None = None, **extra: Any) -> tuple[str, bytes]:
    doc: dict[str, Any] = {"revision": "r1", **extra}
    if roots is not None:
        doc["roots"] = roots
    return ("/.manifest", json.dumps(doc).encode())


def expect_error(match: str, code: str = "bundle.invalid") -> Any:
    """Context manager asserting a BundleError with ``code`` whose message has ``match``."""
    return _ErrorExpectation(match, code)


class _ErrorExpectation:
    def __init__(self, match: str, code: str) -> None:
        self.match = match
        self.code = code
        self._raises = pytest.raises(BundleError)

    def __enter__(self) -> None:
        self._info = self._raises.__enter__()

    def __exit__(self, *exc: Any) -> bool:
        suppressed = bool(self._raises.__exit__(*exc))
        assert self.match in str(self._info.value), str(self._info.value)
        assert self._info.value.code == self.code
        return suppressed


def sign_payload(payload: dict[str, Any], key: PrivateKey, alg: str = "RS256") -> bytes:
    """A .signatures.json carrying a JWT over an arbitrary payload."""
    token = jwt.PyJWS().encode(json.dumps(payload).encode(), key, algorithm=alg)
    return json.dumps({"signatures": [token]}).encode()


def pem(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


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


# --- signatures ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_key", "alg"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=3072), "PS384"),
        (lambda: ec.generate_private_key(ec.SECP256R1()), "ES256"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "ES384"),
        (ed25519.Ed25519PrivateKey.generate, "EdDSA"),
    ],
)
def test_signed_round_trip(policy_dir: Path, make_key: Callable[[], PrivateKey], alg: str) -> None:
    key = make_key()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    bundle = build_bundle(policy_dir, data=DATA, signing_key=private_pem, signing_alg=alg)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    loaded = load_bundle(bundle, verification_key=public_pem)
    assert loaded.signed is True
    assert loaded.data == DATA
    assert set(loaded.modules) == {"attestpolicy/v1/decision.rego", "attestpolicy/v1/helpers.rego"}
    assert ".signatures.json" in loaded.files


def test_signature_lists_every_file_with_opa_digests(
    policy_dir: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    bundle = build_bundle(policy_dir, data=DATA, signing_key=rsa_key, key_id="release-2026")
    files = dict(members(bundle))
    token = json.loads(files.pop("/.signatures.json"))["signatures"][0]
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": "release-2026"}
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert payload["keyid"] == "release-2026"
    assert "scope" not in payload
    listed = {entry["name"]: entry for entry in payload["files"]}
    assert set(listed) == {name.lstrip("/") for name in files}
    for name, content in files.items():
        entry = listed[name.lstrip("/")]
        assert entry["algorithm"] == "SHA-256"
        assert entry["hash"] == file_digest(name.lstrip("/"), content)
    rsa_signed = verify_signature_token(token, rsa_key.public_key())
    assert {f.name for f in rsa_signed} == set(listed)


def test_signed_json_may_be_reformatted(policy_dir: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    """JSON files are hashed canonically: whitespace and key order do not matter."""
    files = members(build_bundle(policy_dir, data=DATA, signing_key=rsa_key))
    reformatted = json.dumps(
        dict(reversed(list(DATA["attestpolicy"]["v1"].items()))), indent=7
    ).encode()
    files = replace(files, "/attestpolicy/v1/data.json", reformatted)
    assert load_bundle(pack(files), verification_key=rsa_key.public_key()).data == DATA


def test_scope_must_match(policy_dir: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    bundle = build_bundle(policy_dir, signing_key=rsa_key, scope="prod")
    assert load_bundle(bundle, verification_key=rsa_key.public_key(), scope="prod").signed
    with expect_error("scope mismatch (signed 'prod', expected '')", SIGNATURE_CODE):
        load_bundle(bundle, verification_key=rsa_key.public_key())


def test_wrong_key_is_rejected(
    policy_dir: Path, rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    bundle = build_bundle(policy_dir, signing_key=rsa_key)
    with expect_error("signature does not verify with the verification key", SIGNATURE_CODE):
        load_bundle(bundle, verification_key=pem(other_rsa_key.public_key()))


def test_key_of_another_type_is_rejected(
    policy_dir: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    bundle = build_bundle(policy_dir, signing_key=rsa_key)
    with expect_error("algorithm not accepted for this key", SIGNATURE_CODE):
        load_bundle(bundle, verification_key=ec_key.public_key())


def test_tampered_module_is_rejected(policy_dir: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    files = members(build_bundle(policy_dir, signing_key=rsa_key))
    evil = DECISION.replace("default allow := false", "default allow := true").encode()
    files = replace(files, "/attestpolicy/v1/decision.rego", evil)
    with expect_error("attestpolicy/v1/decision.rego: digest mismatch", SIGNATURE_CODE):
        load_bundle(pack(files), verification_key=rsa_key.public_key())


def test_tampered_data_is_rejected(policy_dir: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    files = members(build_bundle(policy_dir, data=DATA, signing_key=rsa_key))
    files = replace(files, "/attestpolicy/v1/data.json", b'{"enabled": false}')
    with expect_error("attestpolicy/v1/data.json: digest mismatch", SIGNATURE_CODE):
        load_bundle(pack(files), verification_key=rsa_key.public_key())


def test_tampered_manifest_is_rejected(policy_dir: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    files = members(build_bundle(policy_dir, signing_key=rsa_key))
    forged = json.dumps({"revision": "forged", "roots": [""], "rego_version": 1}).encode()
    files = replace(files, "/.manifest", forged)
    with expect_error(".manifest: digest mismatch", SIGNATURE_CODE):
        load_bundle(pack(files), verification_key=rsa_key.public_key())


def test_file_added_after_signing_is_rejected(policy_dir: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    files = members(build_bundle(policy_dir, signing_key=rsa_key))
    files.append(("/attestpolicy/v1/backdoor.rego", b"package attestpolicy.v1\n\nallow := true\n"))
    with expect_error(
        "attestpolicy/v1/backdoor.rego: file is not listed in the bundle signature", SIGNATURE_CODE
    ):
        load_bundle(pack(files), verification_key=rsa_key.public_key())


def test_ignored_file_added_after_signing_is_rejected(
    policy_dir: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    files = [*members(build_bundle(policy_dir, signing_key=rsa_key)), ("/README.md", b"hi")]
    with expect_error("README.md: file is not listed", SIGNATURE_CODE):
        load_bundle(pack(files), verification_key=rsa_key.public_key())


def test_file_removed_after_signing_is_rejected(
    policy_dir: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    files = members(build_bundle(policy_dir, signing_key=rsa_key))
    files = [(n, c) for n, c in files if n != "/attestpolicy/v1/helpers.rego"]
    with expect_error(
        "['attestpolicy/v1/helpers.rego'] listed in the bundle signature are missing",
        SIGNATURE_CODE,
    ):
        load_bundle(pack(files), verification_key=rsa_key.public_key())


def test_signature_of_another_bundle_is_rejected(
    policy_dir: Path, tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    other_dir = write_policy(
        tmp_path / "other", {"attestpolicy/v1/decision.rego": "package attestpolicy.v1\n"}
    )
    other_signature = dict(members(build_bundle(other_dir, signing_key=rsa_key)))[
        "/.signatures.json"
    ]
    files = replace(
        members(build_bundle(policy_dir, signing_key=rsa_key)), "/.signatures.json", other_signature
    )
    with expect_error("digest mismatch", SIGNATURE_CODE):
        load_bundle(pack(files), verification_key=rsa_key.public_key())


def test_unsigned_bundle_is_rejected_when_a_key_is_given(
    policy_dir: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    bundle = build_bundle(policy_dir)
    with expect_error("bundle has no .signatures.json but a signature is required", SIGNATURE_CODE):
        load_bundle(bundle, verification_key=rsa_key.public_key())


def test_signature_stripped_from_signed_bundle_is_rejected(
    policy_dir: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    files = [
        (n, c)
        for n, c in members(build_bundle(policy_dir, signing_key=rsa_key))
        if n != "/.signatures.json"
    ]
    with expect_error("bundle has no .signatures.json", SIGNATURE_CODE):
        load_bundle(pack(files), verification_key=rsa_key.public_key())


def test_require_signature_needs_a_key(policy_dir: Path) -> None:
    with expect_error("a signature is required but no verification key was given", SIGNATURE_CODE):
        load_bundle(build_bundle(policy_dir), require_signature=True)


def test_signed_bundle_without_a_key_is_refused(
    policy_dir: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    with expect_error(
        "bundle is signed (.signatures.json) but no verification key", SIGNATURE_CODE
    ):
        load_bundle(build_bundle(policy_dir, signing_key=rsa_key))


def test_unsigned_token_and_hmac_confusion_are_rejected(
    policy_dir: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    """alg "none" and HS256 keyed with the public PEM (the classic JWT confusion)."""
    files = members(build_bundle(policy_dir, signing_key=rsa_key))
    token = json.loads(dict(files)["/.signatures.json"])["signatures"][0]
    _, payload, _ = token.split(".")
    public_pem = pem(rsa_key.public_key())

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    none_header = b64(b'{"alg":"none"}')
    hs_header = b64(b'{"alg":"HS256"}')
    none_token = f"{none_header}.{payload}."
    hs_input = f"{hs_header}.{payload}"
    hs_token = f"{hs_input}.{b64(hmac.new(public_pem, hs_input.encode(), 'sha256').digest())}"
    for forged in (none_token, hs_token):
        forged_files = replace(
            files, "/.signatures.json", json.dumps({"signatures": [forged]}).encode()
        )
        with expect_error("algorithm not accepted for this key", SIGNATURE_CODE):
            load_bundle(pack(forged_files), verification_key=public_pem)


def test_weak_hash_algorithm_is_rejected(policy_dir: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    files = [(n, c) for n, c in members(build_bundle(policy_dir)) if n != "/.signatures.json"]
    entries = [
        {"name": n.lstrip("/"), "hash": hashlib.md5(c).hexdigest(), "algorithm": "MD5"}  # noqa: S324
        for n, c in files
    ]
    files.append(("/.signatures.json", sign_payload({"files": entries}, rsa_key)))
    with expect_error("unsupported hashing algorithm 'MD5'", SIGNATURE_CODE):
        load_bundle(pack(files), verification_key=rsa_key.public_key())


@pytest.mark.parametrize(
    ("signatures", "message"),
    [
        ({"signatures": []}, "expected exactly one JWT"),
        ({"signatures": ["a.b.c", "d.e.f"]}, "expected exactly one JWT"),
        ({"signatures": ["x.y.z"], "plugin": "custom"}, "signature plugins are not supported"),
        ({"signatures": ["not a jwt"]}, "malformed JWT"),
    ],
)
def test_malformed_signatures_file_is_rejected(
    policy_dir: Path, rsa_key: rsa.RSAPrivateKey, signatures: dict[str, Any], message: str
) -> None:
    files = [
        *members(build_bundle(policy_dir)),
        ("/.signatures.json", json.dumps(signatures).encode()),
    ]
    with expect_error(message, SIGNATURE_CODE):
        load_bundle(pack(files), verification_key=rsa_key.public_key())


def test_signing_algorithm_must_fit_the_key(policy_dir: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    with expect_error("signing algorithm 'ES256' does not fit this key", SIGNATURE_CODE):
        build_bundle(policy_dir, signing_key=rsa_key, signing_alg="ES256")
    with expect_error("signing algorithm 'HS256' does not fit this key", SIGNATURE_CODE):
        build_bundle(policy_dir, signing_key=rsa_key, signing_alg="HS256")


def test_small_rsa_keys_are_refused(policy_dir: Path) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    with expect_error("RSA key of 1024 bits is too small", SIGNATURE_CODE):
        build_bundle(policy_dir, signing_key=small)


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


def test_opa_signed_token_verifies() -> None:
    token = (ASSETS / "opa_verify_test_rs256.jwt").read_text().strip()
    key = (ASSETS / "opa_verify_test_public_key.pem").read_bytes()
    files = verify_signature_token(token, key, scope="write")
    assert [(f.name, f.hash, f.algorithm) for f in files] == [
        (
            "db/uam2/entitlements/data.json",
            "c2131544c716a25a5e31f504300f5240e8235cadb9a57f0bd1b6f4bd74b26612",
            "sha256",
        ),
        (
            "db/uam2/policy/opa-policy.rego",
            "42cfe6768b57bb5f7503c165c28dd07ac5b813554ebc850f2cc35843e7137b1d",
            "",
        ),
    ]


def test_opa_signed_token_negative_cases(other_rsa_key: rsa.RSAPrivateKey) -> None:
    token = (ASSETS / "opa_verify_test_rs256.jwt").read_text().strip()
    key = (ASSETS / "opa_verify_test_public_key.pem").read_bytes()
    with expect_error("scope mismatch (signed 'write', expected '')", SIGNATURE_CODE):
        verify_signature_token(token, key)
    with expect_error("signature does not verify", SIGNATURE_CODE):
        verify_signature_token(token, other_rsa_key.public_key(), scope="write")
    with expect_error("RSA key of 1024 bits is too small", SIGNATURE_CODE):
        verify_signature_token(
            token, (ASSETS / "opa_verify_test_other_key_1024.pem").read_bytes(), scope="write"
        )
    with expect_error("not a PEM public key or certificate", SIGNATURE_CODE):
        verify_signature_token(
            token, b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
        )


def test_opa_missing_hash_algorithm_is_rejected(rsa_key: rsa.RSAPrivateKey) -> None:
    """OPA: 'no hashing algorithm provided for file' (TestReadWithSignatures, no_hashing_alg)."""
    entries = [
        {
            "name": "a/b/c/data.json",
            "hash": "f9cac0714705d20d1a20880185cded6e0f6d040662d2ebb0961d3d9f317d8acb",
        }
    ]
    files = [
        ("/a/b/c/data.json", b"[1,2,3]"),
        ("/.signatures.json", sign_payload({"files": entries}, rsa_key)),
    ]
    with expect_error(
        "a/b/c/data.json: the bundle signature gives no hashing algorithm", SIGNATURE_CODE
    ):
        load_bundle(pack(files), verification_key=rsa_key.public_key())


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


def test_bundle_without_manifest_owns_all_data() -> None:
    loaded = load_bundle(pack([("/x/data.json", b"1"), ("/a.rego", b"package anything\n")]))
    assert loaded.manifest.roots == ("",)
    assert loaded.data == {"x": 1}


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
        ([("/x.rego", b"allow := true\n")], "x.rego: no package declaration"),
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


# --- directory bundles --------------------------------------------------------------------

CONFIG = {
    "limits": {
        "max_evidence_age_seconds": 300,
        "clock_skew_seconds": 30,
        "min_ttl_seconds": 60,
        "default_ttl_seconds": 600,
    },
    "trusted_builders": {"https://b.example": "the build service"},
}


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
