"""Loading a bundle: read a tar.gz or a directory within limits, then check and assemble it.

The bundle is untrusted input: it is read into memory, never extracted, and anything unsafe
or ambiguous (links, devices, ``..``, duplicates, oversized members, files outside the
manifest roots, a manifest or signature file OPA would read but this loader would not)
raises :class:`~attestpolicy.errors.BundleError` naming the member or field.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from attestpolicy._keys import PublicKey
from attestpolicy.bundle._format import (
    DATA,
    MANIFEST,
    SIGNATURE_CODE,
    SIGNATURES,
    BundleManifest,
    check_data_roots,
    check_module_roots,
    parse_json,
    parse_manifest,
    to_python,
)
from attestpolicy.bundle._signing import signature_token, verify_files, verify_signature_token
from attestpolicy.errors import BundleError
from attestpolicy.policy import PolicySource, content_revision

__all__ = ["DEFAULT_LIMITS", "BundleLimits", "LoadedBundle", "load_bundle", "member_name"]


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


# --- reading archives and directories ----------------------------------------------------


def member_name(raw: str) -> str:
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
    if len(blob) > limits.max_bundle_bytes:
        raise BundleError(f"bundle is larger than {limits.max_bundle_bytes} bytes")
    tar_bytes = _gunzip(blob, limits.max_tar_bytes)
    budget = _Budget(limits)
    files: list[tuple[str, bytes]] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as archive:
            while (member := archive.next()) is not None:
                budget.entry()
                if member.isdir():
                    if member.name not in ("", ".", "./", "/"):
                        member_name(member.name)
                    continue
                if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or member.sparse:
                    kind = _TYPE_NAMES.get(member.type, f"type {member.type!r}")
                    raise BundleError(f"{member.name!r}: {kind} members are not allowed")
                name = member_name(member.name)
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
                name = member_name(rel)
                content = _read_limited(path, limits.max_file_bytes, name)
                budget.file(name, len(content))
                files.append((name, content))
    except OSError as exc:
        raise BundleError(f"cannot read bundle directory {root}: {exc.strerror}") from None
    return files


# --- assembling a loaded bundle --------------------------------------------------------------


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
    if not path and not isinstance(value, dict):
        raise BundleError(f"{what}: a data.json at the bundle root must hold a JSON object")
    tree: Any = value
    for segment in reversed(path):
        tree = {segment: tree}
    _merge(data, tree, [], what)


def _classify(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    if name == SIGNATURES:
        return "signatures"
    if name.endswith("signatures.json"):
        raise BundleError(f"{name}: only /{SIGNATURES} may hold signatures")
    if name == MANIFEST:
        return "manifest"
    if name.endswith(".rego"):
        return "module"
    if base == DATA:
        if any(seg.startswith(".") for seg in name.split("/")[:-1]):
            raise BundleError(f"{name}: data directories must not start with '.'")
        return "data"
    if name.endswith(MANIFEST):
        raise BundleError(f"{name}: a manifest must be /{MANIFEST}")
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
    signatures = contents.get(SIGNATURES)
    signed_files = [(n, c) for n, c in files if n != SIGNATURES]
    if signatures is not None and verification_key is None:
        raise BundleError(
            f"bundle is signed ({SIGNATURES}) but no verification key was given",
            code=SIGNATURE_CODE,
        )
    if verification_key is not None:
        if signatures is None:
            raise BundleError(
                f"bundle has no {SIGNATURES} but a signature is required", code=SIGNATURE_CODE
            )
        token = signature_token(signatures)
        verify_files(signed_files, verify_signature_token(token, verification_key, scope=scope))

    manifest = parse_manifest(contents.get(MANIFEST))
    modules: dict[str, str] = {}
    data: dict[str, Any] = {}
    for name, content in signed_files:
        kind = kinds[name]
        if kind == "module":
            try:
                text = content.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BundleError(f"{name}: Rego module is not UTF-8 (byte {exc.start})") from None
            check_module_roots(name, text, manifest.roots)
            modules[name] = text
        elif kind == "data":
            path = name.split("/")[:-1]
            value = to_python(parse_json(content, name), name)
            check_data_roots(value, path, manifest.roots, name)
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
        files = _read_tar(bytes(source), limits)
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
