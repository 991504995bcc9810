"""Helpers of the bundle polling and server tests: two policy revisions, a bundle server
on 127.0.0.1 whose requests are recorded, and waiting for a condition."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundle.helpers import REPO
from serving import BackgroundServer

from attestpolicy.bundle import BundleServer, PrivateKey, build_bundle

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

FROZEN_CODE = "policy.frozen"
FREEZE = f"""package attestpolicy.v1

import rego.v1

violation contains {{"code": "{FROZEN_CODE}", "message": "rollouts are frozen"}} if true
"""
"""A module that turns the shipped policy into one denying everything with policy.frozen."""

CLAIMS = json.loads(
    (REPO / "attestpolicy" / "examples" / "claims" / "allow-fully-attested.json").read_text()
)
CONFIG = json.loads((REPO / "attestpolicy" / "examples" / "config.json").read_text())


def frozen_policy_dir(directory: Path) -> Path:
    """The shipped policy plus :data:`FREEZE`, copied under ``directory``."""
    target = directory / "frozen-rego"
    shutil.copytree(REPO / "rego", target)
    (target / "attestpolicy" / "v1" / "freeze.rego").write_text(FREEZE)
    return target


def build(revision: str, key: PrivateKey | None, *, frozen_dir: Path | None = None) -> bytes:
    """The shipped policy (or ``frozen_dir``'s) as a bundle with ``revision``, signed by ``key``."""
    return build_bundle(frozen_dir or REPO / "rego", revision=revision, signing_key=key)


def replace_file(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` atomically (write elsewhere, then rename)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(content)
    os.replace(partial, path)


def tamper(bundle: bytes, member_suffix: str = "decision.rego") -> bytes:
    """``bundle`` with one module changed after signing (its signature left as it was)."""
    raw = io.BytesIO(gzip.decompress(bundle))
    out = io.BytesIO()
    with tarfile.open(fileobj=raw) as source, tarfile.open(fileobj=out, mode="w") as target:
        for member in source:
            reader = source.extractfile(member)
            content = reader.read() if reader is not None else b""
            if member.name.endswith(member_suffix):
                content += b"\n# an edit after signing\n"
                member.size = len(content)
            target.addfile(member, io.BytesIO(content))
    return gzip.compress(out.getvalue())


@dataclass
class Hit:
    """One request the recorder saw: path, request headers (lower-case names), status."""

    path: str
    headers: dict[str, str]
    status: int
    at: float


@dataclass
class Recorder:
    """An ASGI app in front of another: records each request, or answers ``fail_with``
    (an HTTP status) instead while it is set."""

    app: Callable[..., Any]
    hits: list[Hit] = field(default_factory=list)
    fail_with: int | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {key.decode().lower(): value.decode() for key, value in scope["headers"]}
        status = [0]

        async def recording_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        if self.fail_with is not None:
            await recording_send(
                {"type": "http.response.start", "status": self.fail_with, "headers": []}
            )
            await send({"type": "http.response.body", "body": b""})
        else:
            await self.app(scope, receive, recording_send)
        self.hits.append(Hit(scope["path"], headers, status[0], time.monotonic()))

    def statuses(self) -> list[int]:
        return [hit.status for hit in self.hits]


@contextmanager
def bundle_server(directory: Path, **options: Any) -> Iterator[tuple[str, Recorder]]:
    """A :class:`BundleServer` for ``directory`` behind a :class:`Recorder`, on 127.0.0.1:
    yields its base URL and the recorder."""
    recorder = Recorder(BundleServer(directory, **options))
    with BackgroundServer(recorder) as server:
        yield server.url, recorder


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.02)
