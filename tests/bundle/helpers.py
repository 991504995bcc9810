"""Shared helpers of the bundle tests: policies, archives packed by hand, error checks."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from attestpolicy.bundle import PrivateKey
from attestpolicy.errors import BundleError

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "tests" / "assets" / "bundle"

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


def write_policy(directory: Path, modules: dict[str, str]) -> Path:
    for name, text in modules.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return directory


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


CONFIG = {
    "limits": {
        "max_evidence_age_seconds": 300,
        "clock_skew_seconds": 30,
        "min_ttl_seconds": 60,
        "default_ttl_seconds": 600,
    },
    "trusted_builders": {"https://b.example": "the build service"},
}
