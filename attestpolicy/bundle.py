"""OPA bundles: build, sign, verify and load them in OPA's own file format.

A bundle is a gzipped tar holding ``/.manifest`` (``revision``, ``roots``,
``rego_version``), ``.rego`` modules, ``data.json`` files whose directory is their
path in ``data``, and optionally ``/.signatures.json``: ``{"signatures": [JWT]}``
whose payload lists every other file with its digest. JSON files are hashed over
OPA's canonical form (keys sorted, no whitespace, numbers as written, strings as
Go's ``encoding/json`` writes them with HTML escaping off), other files over their
raw bytes. This mirrors ``bundle/hash.go`` and ``bundle/verify.go`` in OPA, so OPA
loads what :func:`build_bundle` writes and :func:`load_bundle` loads what
``opa build`` writes.

Loading treats the bundle as untrusted input: it is read into memory, never
extracted, and anything unsafe or ambiguous (links, devices, ``..``, duplicates,
oversized members, files outside the manifest roots, a manifest or signature file
OPA would read but this loader would not) raises :class:`~attestpolicy.errors.BundleError`
naming the member or field.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import io
import json
import math
import os
import re
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeAlias

import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from attestpolicy._json import loads_strict
from attestpolicy.config import validate_config
from attestpolicy.errors import BundleError, PolicyError
from attestpolicy.policy import PolicySource, config_revision, content_revision

__all__ = [
    "BUNDLE_ROOTS",
    "CONFIG_ROOTS",
    "DEFAULT_LIMITS",
    "SIGNATURE_CODE",
    "BundleLimits",
    "BundleManifest",
    "LoadedBundle",
    "PrivateKey",
    "PublicKey",
    "SignedFile",
    "build_bundle",
    "canonical_json",
    "file_digest",
    "load_bundle",
    "verify_signature_token",
    "write_config_bundle",
]

BUNDLE_ROOTS: Final = ("attestpolicy/v1",)
"""Roots of the policy bundle: it owns ``data.attestpolicy.v1``."""

CONFIG_ROOTS: Final = ("attestpolicy/config",)
"""Roots of a configuration bundle: it owns ``data.attestpolicy.config``."""

SIGNATURE_CODE: Final = "bundle.signature"
"""``code`` of a :class:`BundleError` about a missing, invalid or mismatching signature."""

PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
"""Verification keys: RSA (2048 bits or more), EC P-256/P-384/P-521, Ed25519."""
PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
"""Signing keys, the private halves of :data:`PublicKey`."""


@dataclass(frozen=True)
class BundleLimits:
    """Size limits applied while reading a bundle (all in bytes except ``max_files``)."""

    max_bundle_bytes: int = 32 * 1024 * 1024
    """Largest compressed bundle (``.tar.gz``) accepted."""
    max_file_bytes: int = 16 * 1024 * 1024
    """Largest single member."""
    max_total_bytes: int = 32 * 1024 * 1024
    """Largest sum of all member sizes."""
    max_files: int = 1024
    """Most archive entries (files and directories)."""

    @property
    def max_tar_bytes(self) -> int:
        """Cap on the decompressed tar stream: contents plus headers and padding."""
        return self.max_total_bytes + self.max_files * 3 * 512 + 1024 * 1024


DEFAULT_LIMITS: Final = BundleLimits()

_MAX_JSON_DEPTH: Final = 128
_RSA_MIN_BITS: Final = 2048
_MANIFEST: Final = ".manifest"
_SIGNATURES: Final = ".signatures.json"
_DATA: Final = "data.json"
_HASHES: Final[Mapping[str, Callable[[], Any]]] = {
    "SHA-256": hashlib.sha256,
    "SHA-384": hashlib.sha384,
    "SHA-512": hashlib.sha512,
}
_EC_ALGORITHMS: Final[Mapping[str, str]] = {
    "secp256r1": "ES256",
    "secp384r1": "ES384",
    "secp521r1": "ES512",
}
_RSA_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_MANIFEST_FIELDS: Final = frozenset(
    {"revision", "roots", "rego_version", "file_rego_versions", "metadata", "wasm"}
)
_PAYLOAD_FIELDS: Final = frozenset({"files", "keyid", "scope", "iss", "iat"})
_FILE_FIELDS: Final = frozenset({"name", "hash", "algorithm"})
_SIGNATURES_FIELDS: Final = frozenset({"signatures", "plugin"})
_HEX: Final = re.compile(r"(?:[0-9a-fA-F]{2})*")


# --- public data model --------------------------------------------------------


@dataclass(frozen=True)
class BundleManifest:
    """The parts of ``/.manifest`` attestpolicy acts on."""

    revision: str
    roots: tuple[str, ...]
    rego_version: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SignedFile:
    """One ``files`` entry of a bundle signature: name, hex digest, hashing algorithm."""

    name: str
    hash: str
    algorithm: str


@dataclass(frozen=True)
class LoadedBundle:
    """A bundle read into memory and checked: manifest, modules, merged data."""

    manifest: BundleManifest
    modules: Mapping[str, str]
    data: Mapping[str, Any]
    files: tuple[str, ...]
    signed: bool
    """True when a signature was present and verified with the verification key."""

    @property
    def revision(self) -> str:
        """The manifest revision."""
        return self.manifest.revision

    def to_policy_source(self) -> PolicySource:
        """The bundle as an evaluator input; its revision is the manifest revision.

        A manifest without a revision falls back to the modules' content revision.
        """
        if not self.modules:
            raise BundleError("bundle has no Rego modules")
        revision = self.manifest.revision or content_revision(self.modules)
        return PolicySource(modules=self.modules, revision=revision, data=self.data)


# --- OPA's canonical JSON hashing --------------------------------------------


class _Num(str):
    """A JSON number kept as written: OPA hashes ``json.Number`` by its source text."""

    __slots__ = ()


def _parse_json(raw: bytes, what: str) -> Any:
    """Strict JSON (:mod:`attestpolicy._json`), numbers kept as written."""
    try:
        return loads_strict(raw, parse_number=_Num)
    except ValueError as exc:
        raise BundleError(f"{what}: invalid JSON: {exc}") from None


def _go_string(text: str) -> str:
    # Go's encoder (SetEscapeHTML(false), Go >= 1.22) escapes like Python's with
    # ensure_ascii=False, plus U+2028 and U+2029.
    return (
        json.dumps(text, ensure_ascii=False)
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _canonical(value: Any, out: list[str], depth: int, what: str) -> None:
    if depth > _MAX_JSON_DEPTH:
        raise BundleError(f"{what}: JSON nested deeper than {_MAX_JSON_DEPTH} levels")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, _Num):
        out.append(str.__str__(value))
    elif isinstance(value, str):
        out.append(_go_string(value))
    elif isinstance(value, list):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _canonical(item, out, depth + 1, what)
        out.append("]")
    elif isinstance(value, dict):
        out.append("{")
        for index, key in enumerate(sorted(value)):
            if index:
                out.append(",")
            out.append(_go_string(key))
            out.append(":")
            _canonical(value[key], out, depth + 1, what)
        out.append("}")
    else:  # pragma: no cover - _parse_json yields only the types above
        raise BundleError(f"{what}: unexpected JSON value {type(value).__name__}")


def _canonical_bytes(value: Any, what: str) -> bytes:
    out: list[str] = []
    _canonical(value, out, 0, what)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError:
        raise BundleError(f"{what}: JSON string holds an unpaired surrogate escape") from None


def canonical_json(raw: bytes, *, what: str = "JSON document") -> bytes:
    """The bytes OPA hashes for a JSON file: sorted keys, no whitespace, numbers as written."""
    return _canonical_bytes(_parse_json(raw, what), what)


def _is_structured(name: str) -> bool:
    return name == _MANIFEST or name.rsplit("/", 1)[-1] == _DATA


def _digest(name: str, content: bytes, algorithm: str) -> bytes:
    factory = _HASHES.get(algorithm)
    if factory is None:
        raise BundleError(
            f"{name}: unsupported hashing algorithm {algorithm!r} "
            f"(accepted: {', '.join(sorted(_HASHES))})",
            code=SIGNATURE_CODE,
        )
    hasher = factory()
    hasher.update(canonical_json(content, what=name) if _is_structured(name) else content)
    digest: bytes = hasher.digest()
    return digest


def file_digest(name: str, content: bytes, algorithm: str = "SHA-256") -> str:
    """Hex digest of a bundle file as OPA computes it for ``.signatures.json``.

    ``data.json`` files and ``.manifest`` are hashed over :func:`canonical_json`,
    everything else over its raw bytes.
    """
    return _digest(name, content, algorithm).hex()


# --- plain JSON values ------------------------------------------------------------


def _to_python(value: Any, what: str, depth: int = 0) -> Any:
    """Parsed JSON (numbers as text) -> plain Python values (int/float)."""
    if depth > _MAX_JSON_DEPTH:
        raise BundleError(f"{what}: JSON nested deeper than {_MAX_JSON_DEPTH} levels")
    if isinstance(value, _Num):
        text = str.__str__(value)
        try:
            if any(c in text for c in ".eE"):
                number = float(text)
                if not math.isfinite(number):
                    raise ValueError("out of range")
                return number
            return int(text)
        except ValueError:
            raise BundleError(f"{what}: number {text[:40]} is out of range") from None
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BundleError(f"{what}: JSON string holds an unpaired surrogate escape") from None
        return value
    if isinstance(value, list):
        return [_to_python(item, what, depth + 1) for item in value]
    if isinstance(value, dict):
        return {
            _to_python(key, what, depth + 1): _to_python(item, what, depth + 1)
            for key, item in value.items()
        }
    return value


def _plain_json(value: Any, what: str, depth: int = 0) -> Any:
    """Caller data -> JSON-ready dicts/lists; rejects what JSON cannot carry exactly."""
    if depth > _MAX_JSON_DEPTH:
        raise BundleError(f"{what}: nested deeper than {_MAX_JSON_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BundleError(f"{what}: string holds an unpaired surrogate") from None
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BundleError(f"{what}: {value} is not a JSON number")
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise BundleError(f"{what}: object key {key!r} is not a string")
            out[_plain_json(key, what, depth + 1)] = _plain_json(item, f"{what}.{key}", depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_plain_json(item, what, depth + 1) for item in value]
    raise BundleError(f"{what}: {type(value).__name__} is not JSON")


def _dump_json(value: Any) -> bytes:
    text = json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def _reject_case_variants(obj: Mapping[str, Any], known: frozenset[str], what: str) -> None:
    # Go's encoding/json matches struct fields case-insensitively: OPA would honour
    # "Roots" or "Scope"; refuse them rather than read the document differently.
    for key in obj:
        if key not in known and key.lower() in known:
            raise BundleError(f"{what}: field {key!r} differs from {key.lower()!r} only in case")


# --- roots ------------------------------------------------------------------------


def _root_contains(root: str, path: Sequence[str]) -> bool:
    if root == "":
        return True
    segments = root.split("/")
    return len(segments) <= len(path) and list(path[: len(segments)]) == segments


def _roots_contain(roots: Iterable[str], path: Sequence[str]) -> bool:
    return any(_root_contains(root, path) for root in roots)


def _is_root_prefix(path: Sequence[str], roots: Iterable[str]) -> bool:
    return any(
        root != ""
        and list(path) == root.split("/")[: len(path)]
        and len(path) < len(root.split("/"))
        for root in roots
    )


def _normalize_roots(raw: Any, what: str) -> tuple[str, ...]:
    if not isinstance(raw, list | tuple) or not all(
        isinstance(r, str) and not isinstance(r, _Num) for r in raw
    ):
        raise BundleError(f"{what}: roots must be a list of strings")
    roots = tuple(r.strip("/") for r in raw)
    for root in roots:
        if root and any(seg in ("", ".", "..") for seg in root.split("/")):
            raise BundleError(f"{what}: root {root!r} has an empty, '.' or '..' segment")
    for i, first in enumerate(roots):
        for second in roots[i + 1 :]:
            if _root_contains(first, _split(second)) or _root_contains(second, _split(first)):
                raise BundleError(f"{what}: roots {first!r} and {second!r} overlap")
    return roots


def _split(path: str) -> list[str]:
    return path.split("/") if path else []


def _check_data_roots(value: Any, path: list[str], roots: tuple[str, ...], what: str) -> None:
    if _roots_contain(roots, path):
        return
    if isinstance(value, dict) and (not path or _is_root_prefix(path, roots)):
        for key, item in value.items():
            _check_data_roots(item, [*path, key], roots, what)
        return
    raise BundleError(
        f"{what}: data at /{'/'.join(path)} is outside the manifest roots {list(roots)}"
    )


# --- Rego package declarations ---------------------------------------------------

_SKIP = re.compile(r"(?:\s+|#[^\n]*)*")
_PACKAGE = re.compile(r"package[ \t]+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOT_IDENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)")
_BRACKET = re.compile(r'\[[ \t]*("(?:[^"\\\n]|\\.)*"|`[^`]*`)[ \t]*\]')


def _package_path(name: str, text: str) -> list[str]:
    """The ``package`` path of a module (``a.b["c"]`` -> ``["a", "b", "c"]``)."""
    skipped = _SKIP.match(text)
    pos = skipped.end() if skipped else 0
    keyword = _PACKAGE.match(text, pos)
    first = _IDENT.match(text, keyword.end()) if keyword else None
    if first is None:
        raise BundleError(f"{name}: no package declaration at the start of the module")
    segments = [first.group()]
    pos = first.end()
    while True:
        dot = _DOT_IDENT.match(text, pos)
        if dot:
            segments.append(dot.group(1))
            pos = dot.end()
            continue
        bracket = _BRACKET.match(text, pos)
        if bracket is None:
            break
        literal = bracket.group(1)
        try:
            segment = literal[1:-1] if literal.startswith("`") else json.loads(literal)
        except ValueError:
            raise BundleError(f"{name}: invalid string {literal} in package path") from None
        if not isinstance(segment, str) or not segment or "/" in segment:
            raise BundleError(f"{name}: package segment {literal} is empty or holds '/'")
        segments.append(segment)
        pos = bracket.end()
    return segments


def _check_module_roots(name: str, text: str, roots: tuple[str, ...]) -> None:
    path = _package_path(name, text)
    if not _roots_contain(roots, path):
        raise BundleError(
            f"{name}: package {'.'.join(path)} is outside the manifest roots {list(roots)}"
        )


# --- keys and signatures ------------------------------------------------------------


def _algorithms_for(key: PublicKey) -> tuple[str, ...]:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _RSA_MIN_BITS:
            raise BundleError(
                f"RSA key of {key.key_size} bits is too small (minimum 2048)", code=SIGNATURE_CODE
            )
        return _RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = _EC_ALGORITHMS.get(key.curve.name)
        if alg is None:
            raise BundleError(f"unsupported elliptic curve {key.curve.name}", code=SIGNATURE_CODE)
        return (alg,)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return ("EdDSA",)
    raise BundleError(f"unsupported key type {type(key).__name__}")  # pragma: no cover


def _load_public_key(key: PublicKey | bytes | str) -> PublicKey:
    if isinstance(key, PublicKey):
        return key
    if not isinstance(key, bytes | str):
        raise BundleError(
            f"verification key must be PEM or a public key, not {type(key).__name__}",
            code=SIGNATURE_CODE,
        )
    pem = key.encode() if isinstance(key, str) else key
    loaded: Any
    try:
        loaded = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        try:
            loaded = x509.load_pem_x509_certificate(pem).public_key()
        except (ValueError, UnsupportedAlgorithm):
            raise BundleError(
                "verification key is not a PEM public key or certificate", code=SIGNATURE_CODE
            ) from None
    if not isinstance(loaded, PublicKey):
        raise BundleError(
            f"unsupported verification key type {type(loaded).__name__}", code=SIGNATURE_CODE
        )
    return loaded


def _load_private_key(key: PrivateKey | bytes | str) -> PrivateKey:
    if isinstance(key, PrivateKey):
        return key
    if not isinstance(key, bytes | str):
        raise BundleError(
            f"signing key must be PEM or a private key, not {type(key).__name__}",
            code=SIGNATURE_CODE,
        )
    pem = key.encode() if isinstance(key, str) else key
    try:
        loaded = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise BundleError(
            "signing key is encrypted; pass an unencrypted PEM key", code=SIGNATURE_CODE
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise BundleError("signing key is not a PEM private key", code=SIGNATURE_CODE) from None
    if not isinstance(loaded, PrivateKey):
        raise BundleError(
            f"unsupported signing key type {type(loaded).__name__}", code=SIGNATURE_CODE
        )
    return loaded


def _str_field(obj: Mapping[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or isinstance(value, _Num):
        raise BundleError(f"{what}: {key} must be a string", code=SIGNATURE_CODE)
    return value


def verify_signature_token(
    token: str, verification_key: PublicKey | bytes | str, *, scope: str | None = None
) -> tuple[SignedFile, ...]:
    """Verify one ``.signatures.json`` JWT as OPA does and return the files it lists.

    The JWT algorithm must fit the key (RSA: RS*/PS*, EC: the curve's ES*, Ed25519:
    EdDSA); the payload ``scope`` (default empty) must equal ``scope``.
    """
    what = f"{_SIGNATURES}: JWT"
    key = _load_public_key(verification_key)
    try:
        decoded = jwt.PyJWS().decode_complete(token, key=key, algorithms=list(_algorithms_for(key)))
    except jwt.InvalidSignatureError:
        raise BundleError(
            f"{what}: signature does not verify with the verification key", code=SIGNATURE_CODE
        ) from None
    except jwt.InvalidAlgorithmError as exc:
        raise BundleError(
            f"{what}: algorithm not accepted for this key: {exc}", code=SIGNATURE_CODE
        ) from None
    except jwt.PyJWTError as exc:
        raise BundleError(f"{what}: malformed JWT: {exc}", code=SIGNATURE_CODE) from None
    payload = _parse_json(decoded["payload"], f"{what} payload")
    if not isinstance(payload, dict):
        raise BundleError(f"{what}: payload is not a JSON object", code=SIGNATURE_CODE)
    _reject_case_variants(payload, _PAYLOAD_FIELDS, f"{what} payload")
    entries = payload.get("files")
    if not isinstance(entries, list):
        raise BundleError(f"{what}: payload has no files list", code=SIGNATURE_CODE)
    files: dict[str, SignedFile] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise BundleError(f"{what}: files entry is not an object", code=SIGNATURE_CODE)
        _reject_case_variants(entry, _FILE_FIELDS, f"{what} files entry")
        name = _str_field(entry, "name", f"{what} files entry")
        if not name:
            raise BundleError(f"{what}: files entry without a name", code=SIGNATURE_CODE)
        if name in files:
            raise BundleError(f"{what}: {name} is listed twice", code=SIGNATURE_CODE)
        files[name] = SignedFile(
            name=name,
            hash=_str_field(entry, "hash", name),
            algorithm=_str_field(entry, "algorithm", name),
        )
    signed_scope = _str_field(payload, "scope", f"{what} payload")
    if signed_scope != (scope or ""):
        raise BundleError(
            f"{what}: scope mismatch (signed {signed_scope!r}, expected {scope or ''!r})",
            code=SIGNATURE_CODE,
        )
    return tuple(files.values())


def _signature_token(raw: bytes) -> str:
    doc = _parse_json(raw, _SIGNATURES)
    if not isinstance(doc, dict):
        raise BundleError(f"{_SIGNATURES}: not a JSON object", code=SIGNATURE_CODE)
    _reject_case_variants(doc, _SIGNATURES_FIELDS, _SIGNATURES)
    if _str_field(doc, "plugin", _SIGNATURES):
        raise BundleError(
            f"{_SIGNATURES}: signature plugins are not supported", code=SIGNATURE_CODE
        )
    tokens = doc.get("signatures")
    if not isinstance(tokens, list) or len(tokens) != 1:
        raise BundleError(
            f"{_SIGNATURES}: expected exactly one JWT in signatures", code=SIGNATURE_CODE
        )
    token = tokens[0]
    if not isinstance(token, str) or isinstance(token, _Num):
        raise BundleError(f"{_SIGNATURES}: the signature is not a string", code=SIGNATURE_CODE)
    return token


def _verify_files(files: Sequence[tuple[str, bytes]], signed: Sequence[SignedFile]) -> None:
    listed = {entry.name: entry for entry in signed}
    for name, content in files:
        entry = listed.pop(name, None)
        if entry is None:
            raise BundleError(
                f"{name}: file is not listed in the bundle signature", code=SIGNATURE_CODE
            )
        if not entry.algorithm:
            raise BundleError(
                f"{name}: the bundle signature gives no hashing algorithm", code=SIGNATURE_CODE
            )
        if not _HEX.fullmatch(entry.hash):
            raise BundleError(f"{name}: signed hash is not hex", code=SIGNATURE_CODE)
        expected = bytes.fromhex(entry.hash)
        actual = _digest(name, content, entry.algorithm)
        if not hmac.compare_digest(expected, actual):
            raise BundleError(
                f"{name}: digest mismatch (signed {entry.hash}, file has {actual.hex()})",
                code=SIGNATURE_CODE,
            )
    if listed:
        raise BundleError(
            f"file(s) {sorted(listed)} listed in the bundle signature are missing from the bundle",
            code=SIGNATURE_CODE,
        )


# --- reading archives and directories ----------------------------------------------


def _member_name(raw: str) -> str:
    """A safe, normalized member name; OPA writes a leading '/' (``/data.json``)."""
    name = raw[2:] if raw.startswith("./") else raw[1:] if raw.startswith("/") else raw
    if any(ord(c) < 0x20 or c in "\\\x7f" for c in name):
        raise BundleError(f"{raw!r}: member name holds a control character or backslash")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise BundleError(f"{raw!r}: member name is not UTF-8") from None
    segments = name.split("/")
    if segments[0] == "" and len(segments) > 1:
        raise BundleError(f"{raw!r}: absolute member path")
    if ".." in segments:
        raise BundleError(f"{raw!r}: path traversal ('..') in member name")
    if any(seg in ("", ".") for seg in segments):
        raise BundleError(f"{raw!r}: empty or '.' segment in member name")
    return name


def _gunzip(blob: bytes, limit: int) -> bytes:
    if blob[:2] != b"\x1f\x8b":
        raise BundleError("bundle is not a gzip-compressed tar archive (no gzip magic)")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(blob, limit + 1)
    except zlib.error as exc:
        raise BundleError(f"bundle gzip stream is corrupt: {exc}") from None
    if len(out) > limit:
        raise BundleError(f"bundle expands beyond {limit} bytes")
    if not inflater.eof:
        raise BundleError("bundle gzip stream is truncated")
    if inflater.unused_data:
        raise BundleError("bundle has trailing data after the gzip stream")
    return out


_TYPE_NAMES: Final[Mapping[bytes, str]] = {
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hard link",
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "FIFO",
    tarfile.CONTTYPE: "contiguous file",
    tarfile.GNUTYPE_SPARSE: "sparse file",
}


class _Budget:
    """Counts members and bytes against the limits."""

    def __init__(self, limits: BundleLimits) -> None:
        self.limits = limits
        self.entries = 0
        self.total = 0
        self.names: set[str] = set()

    def entry(self) -> None:
        self.entries += 1
        if self.entries > self.limits.max_files:
            raise BundleError(f"bundle has more than {self.limits.max_files} entries")

    def file(self, name: str, size: int) -> None:
        if name in self.names:
            raise BundleError(f"{name}: duplicate member")
        self.names.add(name)
        if size > self.limits.max_file_bytes:
            raise BundleError(
                f"{name}: member of {size} bytes exceeds {self.limits.max_file_bytes} bytes"
            )
        self.total += size
        if self.total > self.limits.max_total_bytes:
            raise BundleError(f"{name}: bundle contents exceed {self.limits.max_total_bytes} bytes")


def _read_tar(blob: bytes, limits: BundleLimits) -> list[tuple[str, bytes]]:
    tar_bytes = _gunzip(blob, limits.max_tar_bytes)
    budget = _Budget(limits)
    files: list[tuple[str, bytes]] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as archive:
            while (member := archive.next()) is not None:
                budget.entry()
                if member.isdir():
                    if member.name not in ("", ".", "./", "/"):
                        _member_name(member.name)
                    continue
                if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or member.sparse:
                    kind = _TYPE_NAMES.get(member.type, f"type {member.type!r}")
                    raise BundleError(f"{member.name!r}: {kind} members are not allowed")
                name = _member_name(member.name)
                budget.file(name, member.size)
                reader = archive.extractfile(member)
                if reader is None:  # pragma: no cover - regular files always have a reader
                    raise BundleError(f"{name}: member has no content")
                content = reader.read()
                if len(content) != member.size:
                    raise BundleError(f"{name}: member is truncated")
                files.append((name, content))
            end = archive.offset
    except (tarfile.TarError, EOFError) as exc:
        raise BundleError(f"bundle tar archive is corrupt or truncated: {exc}") from None
    if any(tar_bytes[end:]):
        raise BundleError("bundle tar archive has data after its last valid member")
    return files


def _read_limited(path: Path, limit: int, what: str, *, follow: bool = False) -> bytes:
    flags = os.O_RDONLY | (0 if follow else getattr(os, "O_NOFOLLOW", 0))
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise BundleError(f"{what}: cannot open: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        content = handle.read(limit + 1)
    if len(content) > limit:
        raise BundleError(f"{what}: larger than {limit} bytes")
    return content


def _raise(exc: OSError) -> None:
    raise exc


def _read_directory(root: Path, limits: BundleLimits) -> list[tuple[str, bytes]]:
    budget = _Budget(limits)
    files: list[tuple[str, bytes]] = []
    try:
        for dirpath, dirnames, filenames in os.walk(root, onerror=_raise):
            dirnames.sort()
            for entry in [*dirnames, *sorted(filenames)]:
                path = Path(dirpath, entry)
                rel = path.relative_to(root).as_posix()
                mode = path.lstat().st_mode
                budget.entry()
                if stat.S_ISLNK(mode):
                    raise BundleError(f"{rel}: symlinks are not allowed in a bundle")
                if stat.S_ISDIR(mode):
                    continue
                if not stat.S_ISREG(mode):
                    raise BundleError(f"{rel}: only regular files are allowed in a bundle")
                name = _member_name(rel)
                content = _read_limited(path, limits.max_file_bytes, name)
                budget.file(name, len(content))
                files.append((name, content))
    except OSError as exc:
        raise BundleError(f"cannot read bundle directory {root}: {exc.strerror}") from None
    return files


# --- assembling a loaded bundle ----------------------------------------------------


def _parse_manifest(raw: bytes | None) -> BundleManifest:
    if raw is None:
        return BundleManifest(revision="", roots=("",))
    doc = _parse_json(raw, _MANIFEST)
    if not isinstance(doc, dict):
        raise BundleError(f"{_MANIFEST}: not a JSON object")
    _reject_case_variants(doc, _MANIFEST_FIELDS, _MANIFEST)
    revision = doc.get("revision")
    if revision is not None and (not isinstance(revision, str) or isinstance(revision, _Num)):
        raise BundleError(f"{_MANIFEST}: revision must be a string")
    roots_raw = doc.get("roots")
    roots = ("",) if roots_raw is None else _normalize_roots(roots_raw, f"{_MANIFEST}: roots")
    rego_version = _rego_version(doc.get("rego_version"), "rego_version")
    file_versions = doc.get("file_rego_versions")
    if file_versions is not None:
        if not isinstance(file_versions, dict):
            raise BundleError(f"{_MANIFEST}: file_rego_versions must be an object")
        for pattern, version in file_versions.items():
            _rego_version(version, f"file_rego_versions[{pattern!r}]")
    if doc.get("wasm"):
        raise BundleError(f"{_MANIFEST}: wasm modules are not supported")
    metadata = doc.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise BundleError(f"{_MANIFEST}: metadata must be an object")
    return BundleManifest(
        revision=revision or "",
        roots=roots,
        rego_version=rego_version,
        metadata=MappingProxyType(_to_python(metadata or {}, _MANIFEST)),
    )


def _rego_version(value: Any, field_name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, _Num) or not re.fullmatch(r"-?[0-9]+", value):
        raise BundleError(f"{_MANIFEST}: {field_name} must be an integer")
    version = int(value)
    if version == 0:
        raise BundleError(f"{_MANIFEST}: {field_name} 0 (Rego v0) is not supported; use Rego v1")
    if version != 1:
        raise BundleError(f"{_MANIFEST}: unknown {field_name} {version}")
    return version


def _merge(target: dict[str, Any], value: dict[str, Any], path: list[str], what: str) -> None:
    for key, item in value.items():
        if key not in target:
            target[key] = item
        elif isinstance(target[key], dict) and isinstance(item, dict):
            _merge(target[key], item, [*path, key], what)
        else:
            raise BundleError(
                f"{what}: data at /{'/'.join([*path, key])} conflicts with another data file"
            )


def _insert_data(data: dict[str, Any], path: list[str], value: Any, what: str) -> None:
    if not path:
        if not isinstance(value, dict):
            raise BundleError(f"{what}: a data.json at the bundle root must hold a JSON object")
        _merge(data, value, [], what)
        return
    tree: Any = value
    for segment in reversed(path):
        tree = {segment: tree}
    _merge(data, tree, [], what)


def _classify(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    if name == _SIGNATURES:
        return "signatures"
    if name.endswith("signatures.json"):
        raise BundleError(f"{name}: only /{_SIGNATURES} may hold signatures")
    if name == _MANIFEST:
        return "manifest"
    if name.endswith(".rego"):
        return "module"
    if base == _DATA:
        if any(seg.startswith(".") for seg in name.split("/")[:-1]):
            raise BundleError(f"{name}: data directories must not start with '.'")
        return "data"
    if name.endswith(_MANIFEST):
        raise BundleError(f"{name}: a manifest must be /{_MANIFEST}")
    if base in ("data.yaml", "data.yml"):
        raise BundleError(f"{name}: YAML data files are not supported; use data.json")
    if base in ("policy.wasm", "plan.json"):
        raise BundleError(f"{name}: wasm and plan bundles are not supported")
    if base == "patch.json":
        raise BundleError(f"{name}: delta bundles are not supported")
    return "other"


def _assemble(
    files: list[tuple[str, bytes]],
    verification_key: PublicKey | bytes | str | None,
    scope: str | None,
) -> LoadedBundle:
    kinds = {name: _classify(name) for name, _ in files}
    contents = dict(files)
    signatures = contents.get(_SIGNATURES)
    signed_files = [(n, c) for n, c in files if n != _SIGNATURES]
    if signatures is not None and verification_key is None:
        raise BundleError(
            f"bundle is signed ({_SIGNATURES}) but no verification key was given",
            code=SIGNATURE_CODE,
        )
    if verification_key is not None:
        if signatures is None:
            raise BundleError(
                f"bundle has no {_SIGNATURES} but a signature is required", code=SIGNATURE_CODE
            )
        token = _signature_token(signatures)
        _verify_files(signed_files, verify_signature_token(token, verification_key, scope=scope))

    manifest = _parse_manifest(contents.get(_MANIFEST))
    modules: dict[str, str] = {}
    data: dict[str, Any] = {}
    for name, content in signed_files:
        kind = kinds[name]
        if kind == "module":
            try:
                text = content.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BundleError(f"{name}: Rego module is not UTF-8 (byte {exc.start})") from None
            _check_module_roots(name, text, manifest.roots)
            modules[name] = text
        elif kind == "data":
            path = name.split("/")[:-1]
            value = _to_python(_parse_json(content, name), name)
            _check_data_roots(value, path, manifest.roots, name)
            _insert_data(data, path, value, name)
    return LoadedBundle(
        manifest=manifest,
        modules=MappingProxyType(modules),
        data=MappingProxyType(data),
        files=tuple(sorted(contents)),
        signed=verification_key is not None,
    )


def load_bundle(
    source: bytes | str | os.PathLike[str],
    *,
    verification_key: PublicKey | bytes | str | None = None,
    require_signature: bool = False,
    scope: str | None = None,
    limits: BundleLimits = DEFAULT_LIMITS,
) -> LoadedBundle:
    """Read and check a bundle: tar.gz bytes, a ``.tar.gz`` path or a bundle directory.

    With ``verification_key`` (PEM or key object) the bundle must carry a
    ``.signatures.json`` whose JWT verifies with that key and lists every file
    with a matching digest, as ``opa run --verification-key`` requires. A signed
    bundle without a key, or ``require_signature`` without a key, is refused.
    """
    if require_signature and verification_key is None:
        raise BundleError(
            "a signature is required but no verification key was given", code=SIGNATURE_CODE
        )
    if isinstance(source, bytes | bytearray | memoryview):
        blob = bytes(source)
        if len(blob) > limits.max_bundle_bytes:
            raise BundleError(f"bundle is larger than {limits.max_bundle_bytes} bytes")
        files = _read_tar(blob, limits)
    else:
        path = Path(source)
        if path.is_dir():
            files = _read_directory(path, limits)
        elif path.is_file():
            blob = _read_limited(path, limits.max_bundle_bytes, str(path), follow=True)
            files = _read_tar(blob, limits)
        else:
            raise BundleError(f"bundle not found: {path}")
    return _assemble(files, verification_key, scope)


# --- building -------------------------------------------------------------------------


def _write_targz(files: Mapping[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in sorted(files):
            info = tarfile.TarInfo("/" + name)
            info.size = len(files[name])
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(files[name]))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _sign(
    files: Mapping[str, bytes],
    signing_key: PrivateKey,
    alg: str,
    key_id: str | None,
    scope: str | None,
) -> str:
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
        return jwt.PyJWS().encode(body, signing_key, algorithm=alg, headers=headers)
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise BundleError(f"cannot sign bundle with {alg}: {exc}", code=SIGNATURE_CODE) from None


def build_bundle(
    policy_dir: str | os.PathLike[str],
    *,
    revision: str | None = None,
    roots: Sequence[str] = BUNDLE_ROOTS,
    data: Mapping[str, Any] | None = None,
    signing_key: PrivateKey | bytes | str | None = None,
    signing_alg: str = "RS256",
    key_id: str | None = None,
    scope: str | None = None,
) -> bytes:
    """Build a deterministic OPA bundle (tar.gz bytes) from the ``.rego`` files in ``policy_dir``.

    ``*_test.rego`` files are left out. ``data`` is the data document to ship; it
    must lie inside ``roots`` and is written as one ``data.json`` per root. The
    revision defaults to the content revision of the modules (and data files).
    With ``signing_key`` (PEM or key object) a ``.signatures.json`` is added whose
    JWT, signed with ``signing_alg``, lists every file; ``key_id`` goes into the
    ``kid`` header and ``keyid`` claim, ``scope`` into the ``scope`` claim.
    """
    if revision is not None and not isinstance(revision, str):
        raise BundleError("revision must be a string")
    if signing_key is None and (key_id or scope):
        raise BundleError("key_id and scope only apply to a signed bundle (pass signing_key)")
    root_tuple = _normalize_roots(list(roots), "roots")
    try:
        source = PolicySource.from_directory(Path(policy_dir))
    except BundleError:
        raise
    except PolicyError as exc:
        raise BundleError(exc.message) from None
    files: dict[str, bytes] = {}
    for name, text in source.modules.items():
        _check_module_roots(_member_name(name), text, root_tuple)
        files[name] = text.encode("utf-8")
    data_texts: dict[str, str] = {}
    if data is not None:
        plain = _plain_json(data, "data")
        if not isinstance(plain, dict):
            raise BundleError("data must be a JSON object")
        _check_data_roots(plain, [], root_tuple, "data")
        for root in root_tuple:
            subtree: Any = plain
            for segment in _split(root):
                subtree = subtree.get(segment) if isinstance(subtree, dict) else None
            if subtree is not None:
                name = f"{root}/{_DATA}" if root else _DATA
                files[name] = _dump_json(subtree)
                data_texts[name] = files[name].decode("utf-8")
    if revision is None:
        revision = content_revision({**source.modules, **data_texts})
    manifest = {"revision": revision, "roots": list(root_tuple), "rego_version": 1}
    files[_MANIFEST] = _dump_json(manifest)
    verification_key: PublicKey | None = None
    if signing_key is not None:
        private = _load_private_key(signing_key)
        verification_key = private.public_key()
        if signing_alg not in _algorithms_for(verification_key):
            raise BundleError(
                f"signing algorithm {signing_alg!r} does not fit this key "
                f"(use one of {', '.join(_algorithms_for(verification_key))})",
                code=SIGNATURE_CODE,
            )
        token = _sign(files, private, signing_alg, key_id, scope)
        files[_SIGNATURES] = (json.dumps({"signatures": [token]}, indent=1) + "\n").encode()
    bundle = _write_targz(files)
    # Never emit a bundle this module (and so OPA's rules) would refuse.
    load_bundle(bundle, verification_key=verification_key, scope=scope)
    return bundle


def _write_atomic(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)


def write_config_bundle(
    config: Mapping[str, Any], out_dir: str | os.PathLike[str], *, revision: str | None = None
) -> Path:
    """Write a directory bundle serving ``config`` at ``data.attestpolicy.config``.

    ``out_dir`` gets ``.manifest`` (roots ``["attestpolicy/config"]``) and
    ``attestpolicy/config/data.json``; other files there are left alone, so keep
    nothing else loadable in it. The revision defaults to ``config_revision(config)``.
    The whole configuration is validated first (the policy checks, per decision, only
    what that decision reads): an invalid one raises
    :class:`~attestpolicy.errors.ConfigError` and nothing is written.
    """
    plain = _plain_json(config, "config")
    if not isinstance(plain, dict):
        raise BundleError("config must be a JSON object")
    validate_config(plain)
    out = Path(out_dir)
    manifest = {
        "revision": revision if revision is not None else config_revision(plain),
        "roots": list(CONFIG_ROOTS),
        "rego_version": 1,
    }
    _write_atomic(out / _MANIFEST, _dump_json(manifest))
    _write_atomic(out.joinpath(*CONFIG_ROOTS[0].split("/"), _DATA), _dump_json(plain))
    return out
