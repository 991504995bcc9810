"""Signing keys: kid thumbprints, PEM files and their permissions, rotation through the JWKS,
and private key material kept out of every repr, error and pickle."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from attestpolicy.broker import BrokerError, KeySet, SigningKey

# RFC 8037, appendix A.1 and A.3: an Ed25519 key and its RFC 7638 thumbprint.
RFC8037_PRIVATE = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_PUBLIC_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def independent_thumbprint(private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> str:
    """RFC 7638 computed from pyjwt's JWK of the public key (not the broker's code)."""
    public = private.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
        required = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    else:
        jwk = jwt.algorithms.OKPAlgorithm.to_jwk(public, as_dict=True)
        required = {name: jwk[name] for name in ("crv", "kty", "x")}
    text = json.dumps(required, sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(text.encode()).digest())


def private_pem(key: SigningKey) -> bytes:
    pem: bytes = key._key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem


def secrets_of(key: SigningKey) -> list[str]:
    """Texts that would reveal the private key: the PEM body and the raw private value."""
    pem = private_pem(key).decode()
    body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    private = key._key
    if isinstance(private, ec.EllipticCurvePrivateKey):
        raw = private.private_numbers().private_value.to_bytes(32, "big")
    else:
        raw = private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    return [body, body[:40], b64url(raw), base64.b64encode(raw).decode(), raw.hex()]


def assert_no_secret(text: str, key: SigningKey) -> None:
    for secret in secrets_of(key):
        assert secret not in text


def verify(token: str, jwks: dict[str, Any], **options: Any) -> dict[str, Any]:
    """Verify ``token`` the way a relying party does: the key chosen by kid from the JWKS."""
    kid = jwt.get_unverified_header(token)["kid"]
    keys = {key.key_id: key for key in jwt.PyJWKSet.from_dict(jwks).keys}
    found = keys[kid]
    claims: dict[str, Any] = jwt.decode(
        token, found.key, algorithms=[found.algorithm_name], **options
    )
    return claims


@pytest.fixture
def private_umask() -> Iterator[None]:
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


# --- kid and JWK ---------------------------------------------------------------------------


def test_kid_is_the_rfc8037_thumbprint_of_its_published_key() -> None:
    private = ed25519.Ed25519PrivateKey.from_private_bytes(b64url_decode(RFC8037_PRIVATE))
    key = SigningKey(private)
    assert key.kid == RFC8037_THUMBPRINT
    assert key.algorithm == "EdDSA"
    assert key.public_jwk() == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": RFC8037_PUBLIC_X,
        "kid": RFC8037_THUMBPRINT,
        "alg": "EdDSA",
        "use": "sig",
    }


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_generated_key_kid_is_its_jwk_thumbprint(algorithm: str) -> None:
    key = SigningKey.generate(algorithm)
    assert key.algorithm == algorithm
    assert key.kid == independent_thumbprint(key._key)
    jwk = key.public_jwk()
    assert jwk["kid"] == key.kid
    assert jwk["alg"] == algorithm
    assert jwk["use"] == "sig"
    assert "d" not in jwk
    assert SigningKey.generate(algorithm).kid != key.kid


def test_es256_jwk_coordinates_are_32_bytes() -> None:
    for _ in range(20):  # some coordinates have leading zero bytes: they stay 32 bytes
        jwk = SigningKey.generate("ES256").public_jwk()
        assert (jwk["kty"], jwk["crv"]) == ("EC", "P-256")
        assert len(b64url_decode(jwk["x"])) == len(b64url_decode(jwk["y"])) == 32


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_signed_token_verifies_with_the_published_key_only(algorithm: str) -> None:
    key = SigningKey.generate(algorithm)
    token = key.sign({"sub": "spiffe://example.org/a", "n": 1})
    header = jwt.get_unverified_header(token)
    assert header == {"alg": algorithm, "kid": key.kid, "typ": "JWT"}
    assert verify(token, {"keys": [key.public_jwk()]}) == {"sub": "spiffe://example.org/a", "n": 1}
    other = SigningKey.generate(algorithm)
    forged = other.sign({"sub": "spiffe://example.org/a"})
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            forged,
            jwt.PyJWK(key.public_jwk()).key,
            algorithms=[algorithm],
        )


def test_unsupported_algorithms_and_key_types_are_refused() -> None:
    with pytest.raises(BrokerError, match="unsupported signing algorithm"):
        SigningKey.generate("RS256")
    with pytest.raises(BrokerError, match="ES256"):
        SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=2048))  # type: ignore[arg-type]
    with pytest.raises(BrokerError, match="ES256"):
        SigningKey(ec.generate_private_key(ec.SECP384R1()))


# --- files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_save_and_load_round_trip_with_mode_0600(
    tmp_path: Path, algorithm: str, private_umask: None
) -> None:
    os.umask(0)  # a permissive umask must not widen the file
    key = SigningKey.generate(algorithm)
    path = tmp_path / "broker.pem"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["broker.pem"]
    loaded = SigningKey.load(path)
    assert (loaded.kid, loaded.algorithm) == (key.kid, key.algorithm)
    assert verify(loaded.sign({"a": 1}), {"keys": [key.public_jwk()]}) == {"a": 1}


def test_save_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "broker.pem"
    first = SigningKey.generate()
    first.save(path)
    with pytest.raises(BrokerError, match="already exists"):
        SigningKey.generate().save(path)
    assert SigningKey.load(path).kid == first.kid
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["broker.pem"]


def test_save_into_a_missing_directory_is_a_broker_error(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="cannot write signing key"):
        SigningKey.generate().save(tmp_path / "missing" / "broker.pem")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o610, 0o601, 0o644, 0o666, 0o660])
def test_load_refuses_group_or_other_permissions(tmp_path: Path, mode: int) -> None:
    key = SigningKey.generate()
    path = tmp_path / "broker.pem"
    key.save(path)
    path.chmod(mode)
    with pytest.raises(BrokerError) as info:
        SigningKey.load(path)
    message = str(info.value)
    assert str(path) in message
    assert f"{mode:04o}" in message
    assert "chmod 600" in message
    assert info.value.code == "broker.error"
    assert_no_secret(message, key)


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_load_accepts_owner_only_modes(tmp_path: Path, mode: int) -> None:
    key = SigningKey.generate()
    path = tmp_path / "broker.pem"
    key.save(path)
    path.chmod(mode)
    assert SigningKey.load(path).kid == key.kid


def test_load_checks_the_file_a_symlink_points_to(tmp_path: Path) -> None:
    key = SigningKey.generate()
    target = tmp_path / "real.pem"
    key.save(target)
    link = tmp_path / "link.pem"
    link.symlink_to(target)
    assert SigningKey.load(link).kid == key.kid
    target.chmod(0o644)
    with pytest.raises(BrokerError, match="0644"):
        SigningKey.load(link)


def write_private(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def test_load_refuses_what_is_not_an_accepted_key(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="cannot read signing key"):
        SigningKey.load(tmp_path / "absent.pem")
    with pytest.raises(BrokerError, match="not a regular file"):
        SigningKey.load(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(BrokerError, match="not a regular file"):
        SigningKey.load(fifo)
    with pytest.raises(BrokerError, match="not a PEM private key"):
        SigningKey.load(write_private(tmp_path / "text.pem", b"hello"))
    with pytest.raises(BrokerError, match="over"):
        SigningKey.load(write_private(tmp_path / "big.pem", b"x" * (64 * 1024 + 1)))
    p384 = ec.generate_private_key(ec.SECP384R1())
    pem = p384.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(BrokerError, match="ES256"):
        SigningKey.load(write_private(tmp_path / "p384.pem", pem))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(BrokerError, match="RSAPrivateKey"):
        SigningKey.load(write_private(tmp_path / "rsa.pem", pem))


def test_load_refuses_an_encrypted_key_without_echoing_it(tmp_path: Path) -> None:
    key = SigningKey.generate()
    encrypted = key._key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    path = write_private(tmp_path / "encrypted.pem", encrypted)
    with pytest.raises(BrokerError, match="encrypted") as info:
        SigningKey.load(path)
    assert str(path) in str(info.value)
    assert encrypted.decode().splitlines()[1] not in str(info.value)


def test_load_reads_traditional_ec_pem(tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert SigningKey.load(write_private(tmp_path / "ec.pem", pem)).kid == (
        independent_thumbprint(private)
    )


# --- no key material anywhere ----------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_private_key_never_appears_in_repr_str_or_pickle(algorithm: str) -> None:
    key = SigningKey.generate(algorithm)
    keys = KeySet(key, retired=[SigningKey.generate(algorithm)])
    for text in (repr(key), str(key), f"{key}", repr(keys), str(keys), json.dumps(keys.jwks())):
        assert_no_secret(text, key)
    assert key.kid in repr(key)
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(key)
    with pytest.raises(TypeError):
        pickle.dumps(keys)


# --- rotation ----------------------------------------------------------------------------------


def test_rotation_publishes_old_keys_and_signs_with_the_new_one() -> None:
    first = SigningKey.generate()
    keys = KeySet(first)
    old_token = keys.active.sign({"n": 1})
    second = SigningKey.generate("EdDSA")
    keys.rotate(second)
    assert keys.active is second
    assert [jwk["kid"] for jwk in keys.jwks()["keys"]] == [second.kid, first.kid]
    new_token = keys.active.sign({"n": 2})
    assert jwt.get_unverified_header(new_token)["kid"] == second.kid
    assert verify(old_token, keys.jwks()) == {"n": 1}
    assert verify(new_token, keys.jwks()) == {"n": 2}
    keys.retire(first.kid)
    assert [jwk["kid"] for jwk in keys.jwks()["keys"]] == [second.kid]
    with pytest.raises(KeyError):
        verify(old_token, keys.jwks())


def test_rotation_edge_cases() -> None:
    first, second = SigningKey.generate(), SigningKey.generate()
    keys = KeySet(first, retired=[second, second, first])
    assert keys.retired == (second,)
    keys.rotate(first)  # already active: nothing changes
    assert [jwk["kid"] for jwk in keys.jwks()["keys"]] == [first.kid, second.kid]
    keys.rotate(second)  # a published key comes back: no duplicate
    assert [jwk["kid"] for jwk in keys.jwks()["keys"]] == [second.kid, first.kid]
    with pytest.raises(BrokerError, match="active key"):
        keys.retire(second.kid)
    with pytest.raises(BrokerError, match="no published key"):
        keys.retire("unknown")
    jwks = keys.jwks()
    jwks["keys"][0]["kid"] = "changed"  # the caller's copy
    assert keys.jwks()["keys"][0]["kid"] == second.kid
