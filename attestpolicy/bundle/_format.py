"""OPA's bundle format: file names, the manifest, roots, canonical JSON and file digests.

JSON files are hashed over OPA's canonical form (keys sorted, no whitespace, numbers as
written, strings as Go's ``encoding/json`` writes them with HTML escaping off), other files
over their raw bytes, as ``bundle/hash.go`` in OPA does.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, TypeGuard

import regorus

from attestpolicy._json import loads_strict
from attestpolicy.engine.local import engine_error_message
from attestpolicy.errors import BundleError

__all__ = [
    "BUNDLE_ROOTS",
    "CONFIG_ROOTS",
    "DATA",
    "MANIFEST",
    "MAX_JSON_DEPTH",
    "SIGNATURES",
    "SIGNATURE_CODE",
    "BundleManifest",
    "Num",
    "canonical_json",
    "check_data_roots",
    "check_module_roots",
    "digest",
    "file_digest",
    "is_string",
    "normalize_roots",
    "parse_json",
    "parse_manifest",
    "reject_case_variants",
    "split_root",
    "to_python",
]

BUNDLE_ROOTS: Final = ("attestpolicy/v1",)
"""Roots of the policy bundle: it owns ``data.attestpolicy.v1``."""

CONFIG_ROOTS: Final = ("attestpolicy/config",)
"""Roots of a configuration bundle: it owns ``data.attestpolicy.config``."""

SIGNATURE_CODE: Final = "bundle.signature"
"""``code`` of a :class:`BundleError` about a missing, invalid or mismatching signature."""

MANIFEST: Final = ".manifest"
SIGNATURES: Final = ".signatures.json"
DATA: Final = "data.json"
MAX_JSON_DEPTH: Final = 128

_HASHES: Final[Mapping[str, Callable[[], Any]]] = {
    "SHA-256": hashlib.sha256,
    "SHA-384": hashlib.sha384,
    "SHA-512": hashlib.sha512,
}
_MANIFEST_FIELDS: Final = frozenset(
    {"revision", "roots", "rego_version", "file_rego_versions", "metadata", "wasm"}
)


@dataclass(frozen=True)
class BundleManifest:
    """The parts of ``/.manifest`` attestpolicy acts on."""

    revision: str
    roots: tuple[str, ...]
    rego_version: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


# --- JSON as OPA reads and hashes it --------------------------------------------------


class Num(str):
    """A JSON number kept as written: OPA hashes ``json.Number`` by its source text."""

    __slots__ = ()


def is_string(value: object) -> TypeGuard[str]:
    """A JSON string (not a number kept as text)."""
    return isinstance(value, str) and not isinstance(value, Num)


def parse_json(raw: bytes, what: str) -> Any:
    """Strict JSON (:mod:`attestpolicy._json`), numbers kept as written (:class:`Num`)."""
    try:
        return loads_strict(raw, parse_number=Num)
    except ValueError as exc:
        raise BundleError(f"{what}: invalid JSON: {exc}") from None


def _check_depth(depth: int, what: str) -> None:
    if depth > MAX_JSON_DEPTH:
        raise BundleError(f"{what}: JSON nested deeper than {MAX_JSON_DEPTH} levels")


def _go_string(text: str) -> str:
    # Go's encoder (SetEscapeHTML(false), Go >= 1.22) escapes like Python's with
    # ensure_ascii=False, plus U+2028 and U+2029.
    return (
        json.dumps(text, ensure_ascii=False)
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _canonical(value: Any, out: list[str], depth: int, what: str) -> None:
    _check_depth(depth, what)
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, Num):
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
    else:  # pragma: no cover - parse_json yields only the types above
        raise BundleError(f"{what}: unexpected JSON value {type(value).__name__}")


def canonical_json(raw: bytes, *, what: str = "JSON document") -> bytes:
    """The bytes OPA hashes for a JSON file: sorted keys, no whitespace, numbers as written."""
    out: list[str] = []
    _canonical(parse_json(raw, what), out, 0, what)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError:
        raise BundleError(f"{what}: JSON string holds an unpaired surrogate escape") from None


def to_python(value: Any, what: str, depth: int = 0) -> Any:
    """Parsed JSON (numbers as :class:`Num`) -> plain Python values (int/float)."""
    _check_depth(depth, what)
    if isinstance(value, Num):
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
    if isinstance(value, list):
        return [to_python(item, what, depth + 1) for item in value]
    if isinstance(value, dict):
        return {key: to_python(item, what, depth + 1) for key, item in value.items()}
    return value  # strings are UTF-8: parse_json rejects lone surrogates


def reject_case_variants(obj: Mapping[str, Any], known: frozenset[str], what: str) -> None:
    """Refuse a field that differs from a known one only in case.

    Go's encoding/json matches struct fields case-insensitively: OPA would honour
    "Roots" or "Scope"; refuse them rather than read the document differently.
    """
    for key in obj:
        if key not in known and key.lower() in known:
            raise BundleError(f"{what}: field {key!r} differs from {key.lower()!r} only in case")


# --- file digests ------------------------------------------------------------------------


def digest(name: str, content: bytes, algorithm: str) -> bytes:
    """The raw digest of a bundle file as OPA computes it (see :func:`file_digest`)."""
    factory = _HASHES.get(algorithm)
    if factory is None:
        raise BundleError(
            f"{name}: unsupported hashing algorithm {algorithm!r} "
            f"(accepted: {', '.join(sorted(_HASHES))})",
            code=SIGNATURE_CODE,
        )
    structured = name == MANIFEST or name.rsplit("/", 1)[-1] == DATA
    hasher = factory()
    hasher.update(canonical_json(content, what=name) if structured else content)
    value: bytes = hasher.digest()
    return value


def file_digest(name: str, content: bytes, algorithm: str = "SHA-256") -> str:
    """Hex digest of a bundle file as OPA computes it for ``.signatures.json``.

    ``data.json`` files and ``.manifest`` are hashed over :func:`canonical_json`,
    everything else over its raw bytes.
    """
    return digest(name, content, algorithm).hex()


# --- roots ---------------------------------------------------------------------------------


def split_root(path: str) -> list[str]:
    """The segments of a root or data path (``""`` -> ``[]``)."""
    return path.split("/") if path else []


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


def normalize_roots(raw: Any, what: str) -> tuple[str, ...]:
    """Manifest roots, without leading or trailing ``/``; overlapping roots are refused."""
    if not isinstance(raw, list | tuple) or not all(is_string(r) for r in raw):
        raise BundleError(f"{what}: roots must be a list of strings")
    roots = tuple(r.strip("/") for r in raw)
    for root in roots:
        if root and any(seg in ("", ".", "..") for seg in root.split("/")):
            raise BundleError(f"{what}: root {root!r} has an empty, '.' or '..' segment")
    for i, first in enumerate(roots):
        for second in roots[i + 1 :]:
            if _root_contains(first, split_root(second)) or _root_contains(
                second, split_root(first)
            ):
                raise BundleError(f"{what}: roots {first!r} and {second!r} overlap")
    return roots


def check_data_roots(value: Any, path: list[str], roots: tuple[str, ...], what: str) -> None:
    """Refuse data at ``path`` (``value``, walked down to the roots) outside ``roots``."""
    if _roots_contain(roots, path):
        return
    if isinstance(value, dict) and (not path or _is_root_prefix(path, roots)):
        for key, item in value.items():
            check_data_roots(item, [*path, key], roots, what)
        return
    raise BundleError(
        f"{what}: data at /{'/'.join(path)} is outside the manifest roots {list(roots)}"
    )


def _parse_error(name: str, exc: BaseException) -> BundleError:
    # regorus: "--> name:line:col", the source line with a caret, "error: what"
    text = engine_error_message(exc)
    lines = [line.strip() for line in text.splitlines()]
    where = next((line[4:] for line in lines if line.startswith("--> ")), name)
    what = next((line[7:] for line in lines if line.startswith("error: ")), text)
    return BundleError(f"{where}: invalid Rego: {what}")


def _package_path(name: str, text: str) -> list[str]:
    """The ``package`` path of a module as regorus parses it (``data.a.b`` -> ``[a, b]``)."""
    engine = regorus.Engine()
    try:
        path: object = engine.add_policy(name, text)
    except BaseException as exc:  # a parse error, or pyo3's PanicException
        if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
            raise
        raise _parse_error(name, exc) from None
    if not isinstance(path, str) or not path.startswith("data."):
        raise BundleError(f"{name}: unexpected package path {path!r}")  # pragma: no cover
    segments = path.removeprefix("data.").split(".")
    for segment in segments:
        if not segment or "/" in segment:
            raise BundleError(f"{name}: package segment {segment!r} is empty or holds '/'")
    return segments


def check_module_roots(name: str, text: str, roots: tuple[str, ...]) -> None:
    """Refuse a Rego module that does not parse or whose package is outside ``roots``."""
    path = _package_path(name, text)
    if not _roots_contain(roots, path):
        raise BundleError(
            f"{name}: package {'.'.join(path)} is outside the manifest roots {list(roots)}"
        )


# --- the manifest ----------------------------------------------------------------------------


def parse_manifest(raw: bytes | None) -> BundleManifest:
    """Read ``/.manifest``; without one the bundle owns all of ``data``."""
    if raw is None:
        return BundleManifest(revision="", roots=("",))
    doc = parse_json(raw, MANIFEST)
    if not isinstance(doc, dict):
        raise BundleError(f"{MANIFEST}: not a JSON object")
    reject_case_variants(doc, _MANIFEST_FIELDS, MANIFEST)
    revision = doc.get("revision")
    if revision is not None and not is_string(revision):
        raise BundleError(f"{MANIFEST}: revision must be a string")
    roots_raw = doc.get("roots")
    roots = ("",) if roots_raw is None else normalize_roots(roots_raw, f"{MANIFEST}: roots")
    rego_version = _rego_version(doc.get("rego_version"), "rego_version")
    file_versions = doc.get("file_rego_versions")
    if file_versions is not None:
        if not isinstance(file_versions, dict):
            raise BundleError(f"{MANIFEST}: file_rego_versions must be an object")
        for pattern, version in file_versions.items():
            _rego_version(version, f"file_rego_versions[{pattern!r}]")
    if doc.get("wasm"):
        raise BundleError(f"{MANIFEST}: wasm modules are not supported")
    metadata = doc.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise BundleError(f"{MANIFEST}: metadata must be an object")
    return BundleManifest(
        revision=revision or "",
        roots=roots,
        rego_version=rego_version,
        metadata=MappingProxyType(to_python(metadata or {}, MANIFEST)),
    )


def _rego_version(value: Any, field_name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, Num) or not re.fullmatch(r"-?[0-9]+", value):
        raise BundleError(f"{MANIFEST}: {field_name} must be an integer")
    version = int(value)
    if version == 0:
        raise BundleError(f"{MANIFEST}: {field_name} 0 (Rego v0) is not supported; use Rego v1")
    if version != 1:
        raise BundleError(f"{MANIFEST}: unknown {field_name} {version}")
    return version
