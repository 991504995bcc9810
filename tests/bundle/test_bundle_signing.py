"""Bundle signatures: signing, verifying, tampering, key and algorithm checks, OPA's tokens."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from bundle.helpers import (
    ASSETS,
    DATA,
    DECISION,
    expect_error,
    members,
    pack,
    pem,
    replace,
    sign_payload,
    write_policy,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from attestpolicy.bundle import (
    SIGNATURE_CODE,
    PrivateKey,
    build_bundle,
    file_digest,
    load_bundle,
    verify_signature_token,
)

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


def test_signing_keys_are_loaded_by_the_one_key_loader(
    policy_dir: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    encrypted = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with expect_error("signing key is encrypted; pass an unencrypted PEM key", SIGNATURE_CODE):
        build_bundle(policy_dir, signing_key=encrypted)
    with expect_error("signing key is not a PEM private key", SIGNATURE_CODE):
        build_bundle(policy_dir, signing_key="not a key")
    with expect_error("signing key must be PEM or a key object, not int", SIGNATURE_CODE):
        build_bundle(policy_dir, signing_key=7)  # type: ignore[arg-type]
    with expect_error("unsupported elliptic curve secp256k1", SIGNATURE_CODE):
        build_bundle(policy_dir, signing_key=ec.generate_private_key(ec.SECP256K1()))


def test_a_certificate_may_carry_the_verification_key(
    policy_dir: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "bundle signer")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(rsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(rsa_key, hashes.SHA256())
    )
    bundle = build_bundle(policy_dir, signing_key=rsa_key)
    loaded = load_bundle(
        bundle, verification_key=certificate.public_bytes(serialization.Encoding.PEM)
    )
    assert loaded.signed


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
