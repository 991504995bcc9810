"""Building bundles: a deterministic (optionally signed) policy bundle, a configuration bundle.

What is built is loaded back before it is returned, so this module never emits a bundle
that :func:`~attestpolicy.bundle.load_bundle` (and so OPA's rules) would refuse.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from attestpolicy._keys import PrivateKey, PublicKey
from attestpolicy.bundle._format import (
    BUNDLE_ROOTS,
    CONFIG_ROOTS,
    DATA,
    MANIFEST,
    MAX_JSON_DEPTH,
    SIGNATURES,
    check_data_roots,
    check_module_roots,
    normalize_roots,
    split_root,
)
from attestpolicy.bundle._loading import load_bundle, member_name
from attestpolicy.bundle._signing import (
    check_signing_alg,
    private_key,
    signatures_file,
)
from attestpolicy.config import validate_config
from attestpolicy.errors import BundleError, PolicyError
from attestpolicy.policy import PolicySource, config_revision, content_revision

__all__ = ["build_bundle", "write_atomic", "write_config_bundle"]


def _plain_json(value: Any, what: str, depth: int = 0) -> Any:
    """Caller data -> JSON-ready dicts/lists; rejects what JSON cannot carry exactly."""
    if depth > MAX_JSON_DEPTH:
        raise BundleError(f"{what}: nested deeper than {MAX_JSON_DEPTH} levels")
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


def _manifest(revision: str, roots: Sequence[str]) -> bytes:
    return _dump_json({"revision": revision, "roots": list(roots), "rego_version": 1})


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


def _data_files(data: Mapping[str, Any], roots: tuple[str, ...]) -> dict[str, bytes]:
    """One ``data.json`` per root holding the part of ``data`` below it."""
    plain = _plain_json(data, "data")
    if not isinstance(plain, dict):
        raise BundleError("data must be a JSON object")
    check_data_roots(plain, [], roots, "data")
    files: dict[str, bytes] = {}
    for root in roots:
        subtree: Any = plain
        for segment in split_root(root):
            subtree = subtree.get(segment) if isinstance(subtree, dict) else None
        if subtree is not None:
            files[f"{root}/{DATA}" if root else DATA] = _dump_json(subtree)
    return files


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
    root_tuple = normalize_roots(list(roots), "roots")
    try:
        source = PolicySource.from_directory(Path(policy_dir))
    except BundleError:
        raise
    except PolicyError as exc:
        raise BundleError(exc.message) from None
    files: dict[str, bytes] = {}
    for name, text in source.modules.items():
        check_module_roots(member_name(name), text, root_tuple)
        files[name] = text.encode("utf-8")
    data_files = _data_files(data, root_tuple) if data is not None else {}
    files.update(data_files)
    if revision is None:
        data_texts = {name: content.decode("utf-8") for name, content in data_files.items()}
        revision = content_revision({**source.modules, **data_texts})
    files[MANIFEST] = _manifest(revision, root_tuple)
    verification_key: PublicKey | None = None
    if signing_key is not None:
        private = private_key(signing_key)
        verification_key = private.public_key()
        check_signing_alg(verification_key, signing_alg)
        files[SIGNATURES] = signatures_file(files, private, signing_alg, key_id, scope)
    bundle = _write_targz(files)
    # Never emit a bundle this module (and so OPA's rules) would refuse.
    load_bundle(bundle, verification_key=verification_key, scope=scope)
    return bundle


def write_atomic(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` through a temporary file beside it."""
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
    manifest = _manifest(revision if revision is not None else config_revision(plain), CONFIG_ROOTS)
    write_atomic(out / MANIFEST, manifest)
    write_atomic(out.joinpath(*CONFIG_ROOTS[0].split("/"), DATA), _dump_json(plain))
    return out
