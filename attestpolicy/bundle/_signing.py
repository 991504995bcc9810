"""Bundle signatures: ``/.signatures.json``, one JWT whose payload lists every file's digest.

This mirrors ``bundle/sign.go`` and ``bundle/verify.go`` in OPA: the JWT algorithm must fit
the key, the payload ``scope`` must match, and every file (and nothing else) must be listed
with a matching digest. Keys are loaded and checked by :mod:`attestpolicy._keys`.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import jwt

from attestpolicy._keys import (
    PrivateKey,
    PublicKey,
    jws_algorithms,
    load_private_key,
    load_public_key,
)
from attestpolicy.bundle._format import (
    SIGNATURE_CODE,
    SIGNATURES,
    digest,
    file_digest,
    is_string,
    parse_json,
    reject_case_variants,
)
from attestpolicy.errors import BundleError

__all__ = [
    "SignedFile",
    "check_signing_alg",
    "private_key",
    "public_key",
    "signature_token",
    "signatures_file",
    "verify_files",
    "verify_signature_token",
]

_PAYLOAD_FIELDS: Final = frozenset({"files", "keyid", "scope", "iss", "iat"})
_FILE_FIELDS: Final = frozenset({"name", "hash", "algorithm"})
_SIGNATURES_FIELDS: Final = frozenset({"signatures", "plugin"})
_HEX: Final = re.compile(r"(?:[0-9a-fA-F]{2})*")


@dataclass(frozen=True)
class SignedFile:
    """One ``files`` entry of a bundle signature: name, hex digest, hashing algorithm."""

    name: str
    hash: str
    algorithm: str


def _signature_error(message: str) -> BundleError:
    return BundleError(message, code=SIGNATURE_CODE)


def public_key(key: PublicKey | bytes | str) -> PublicKey:
    """A verification key (key object, PEM public key or certificate) that is accepted."""
    try:
        return load_public_key(key, what="verification key", certificate_ok=True)
    except ValueError as exc:
        raise _signature_error(str(exc)) from None


def private_key(key: PrivateKey | bytes | str) -> PrivateKey:
    """A signing key (key object or unencrypted PEM) that is accepted."""
    try:
        return load_private_key(key, what="signing key")
    except ValueError as exc:
        raise _signature_error(str(exc)) from None


def check_signing_alg(key: PublicKey, alg: str) -> None:
    """Refuse a JWS algorithm that does not fit ``key``."""
    accepted = jws_algorithms(key)
    if alg not in accepted:
        raise _signature_error(
            f"signing algorithm {alg!r} does not fit this key (use one of {', '.join(accepted)})"
        )


def signatures_file(
    files: Mapping[str, bytes],
    signing_key: PrivateKey,
    alg: str,
    key_id: str | None,
    scope: str | None,
) -> bytes:
    """The ``.signatures.json`` for ``files``: one JWT listing each file's SHA-256 digest."""
    entries = [
        {"name": name, "hash": file_digest(name, files[name]), "algorithm": "SHA-256"}
        for name in sorted(files)
    ]
    payload: dict[str, Any] = {"files": entries}
    headers: dict[str, Any] = {"typ": None}
    if key_id:
        payload["keyid"] = key_id
        headers["kid"] = key_id
    if scope:
        payload["scope"] = scope
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    try:
        token = jwt.PyJWS().encode(body, signing_key, algorithm=alg, headers=headers)
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise _signature_error(f"cannot sign bundle with {alg}: {exc}") from None
    return (json.dumps({"signatures": [token]}, indent=1) + "\n").encode()


def _str_field(obj: Mapping[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not is_string(value):
        raise _signature_error(f"{what}: {key} must be a string")
    return value


def verify_signature_token(
    token: str, verification_key: PublicKey | bytes | str, *, scope: str | None = None
) -> tuple[SignedFile, ...]:
    """Verify one ``.signatures.json`` JWT as OPA does and return the files it lists.

    The JWT algorithm must fit the key (RSA: RS*/PS*, EC: the curve's ES*, Ed25519:
    EdDSA); the payload ``scope`` (default empty) must equal ``scope``.
    """
    what = f"{SIGNATURES}: JWT"
    key = public_key(verification_key)
    try:
        decoded = jwt.PyJWS().decode_complete(token, key=key, algorithms=list(jws_algorithms(key)))
    except jwt.InvalidSignatureError:
        raise _signature_error(
            f"{what}: signature does not verify with the verification key"
        ) from None
    except jwt.InvalidAlgorithmError as exc:
        raise _signature_error(f"{what}: algorithm not accepted for this key: {exc}") from None
    except jwt.PyJWTError as exc:
        raise _signature_error(f"{what}: malformed JWT: {exc}") from None
    payload = parse_json(decoded["payload"], f"{what} payload")
    if not isinstance(payload, dict):
        raise _signature_error(f"{what}: payload is not a JSON object")
    reject_case_variants(payload, _PAYLOAD_FIELDS, f"{what} payload")
    entries = payload.get("files")
    if not isinstance(entries, list):
        raise _signature_error(f"{what}: payload has no files list")
    files: dict[str, SignedFile] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise _signature_error(f"{what}: files entry is not an object")
        reject_case_variants(entry, _FILE_FIELDS, f"{what} files entry")
        name = _str_field(entry, "name", f"{what} files entry")
        if not name:
            raise _signature_error(f"{what}: files entry without a name")
        if name in files:
            raise _signature_error(f"{what}: {name} is listed twice")
        files[name] = SignedFile(
            name=name,
            hash=_str_field(entry, "hash", name),
            algorithm=_str_field(entry, "algorithm", name),
        )
    signed_scope = _str_field(payload, "scope", f"{what} payload")
    if signed_scope != (scope or ""):
        raise _signature_error(
            f"{what}: scope mismatch (signed {signed_scope!r}, expected {scope or ''!r})"
        )
    return tuple(files.values())


def signature_token(raw: bytes) -> str:
    """The one JWT of a ``.signatures.json``."""
    doc = parse_json(raw, SIGNATURES)
    if not isinstance(doc, dict):
        raise _signature_error(f"{SIGNATURES}: not a JSON object")
    reject_case_variants(doc, _SIGNATURES_FIELDS, SIGNATURES)
    if _str_field(doc, "plugin", SIGNATURES):
        raise _signature_error(f"{SIGNATURES}: signature plugins are not supported")
    tokens = doc.get("signatures")
    if not isinstance(tokens, list) or len(tokens) != 1:
        raise _signature_error(f"{SIGNATURES}: expected exactly one JWT in signatures")
    token = tokens[0]
    if not is_string(token):
        raise _signature_error(f"{SIGNATURES}: the signature is not a string")
    return token


def verify_files(files: Sequence[tuple[str, bytes]], signed: Sequence[SignedFile]) -> None:
    """Every file must be listed in the signature with a matching digest, and no other."""
    listed = {entry.name: entry for entry in signed}
    for name, content in files:
        entry = listed.pop(name, None)
        if entry is None:
            raise _signature_error(f"{name}: file is not listed in the bundle signature")
        if not entry.algorithm:
            raise _signature_error(f"{name}: the bundle signature gives no hashing algorithm")
        if not _HEX.fullmatch(entry.hash):
            raise _signature_error(f"{name}: signed hash is not hex")
        actual = digest(name, content, entry.algorithm)
        if not hmac.compare_digest(bytes.fromhex(entry.hash), actual):
            raise _signature_error(
                f"{name}: digest mismatch (signed {entry.hash}, file has {actual.hex()})"
            )
    if listed:
        raise _signature_error(
            f"file(s) {sorted(listed)} listed in the bundle signature are missing from the bundle"
        )
