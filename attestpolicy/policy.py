"""Policy sources: a set of Rego modules plus data, with a content revision.

A :class:`PolicySource` is what an evaluator loads. It comes from a directory of
``.rego`` files (the shipped policy by default) or from an OPA bundle
(:mod:`attestpolicy.bundle`). Its ``revision`` is a content hash unless a bundle
manifest names one, so two processes that load the same files agree on it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

from attestpolicy.errors import PolicyError

__all__ = [
    "DECISION_PATH",
    "MAX_POLICY_BYTES",
    "POLICY_REASON_CODES",
    "PolicySource",
    "config_revision",
    "content_revision",
    "default_policy_dir",
]

DECISION_PATH: Final = "attestpolicy/v1/decision"
"""Data API path of the decision rule (``data.attestpolicy.v1.decision``)."""

MAX_POLICY_BYTES: Final = 16 * 1024 * 1024

POLICY_REASON_CODES: Final = frozenset(
    {
        "subject.unregistered",
        "subject.revoked",
        "request.unknown_audience",
        "evidence.missing",
        "image.digest_required",
        "image.unsigned",
        "image.untrusted_signer",
        "image.revoked",
        "image.not_allowed",
        "provenance.unverified",
        "provenance.untrusted_builder",
        "provenance.source_mismatch",
        "provenance.subject_mismatch",
        "node.unverified",
        "node.nonce",
        "node.stale",
        "node.future",
        "node.expired",
        "node.measurement_mismatch",
        "node.revoked",
        "node.kind_not_allowed",
        "runtime.unverified",
        "runtime.namespace_mismatch",
        "runtime.service_account_mismatch",
        "runtime.image_drift",
        "runtime.expired",
        "ttl.too_short",
    }
)
"""Every violation code of the default policy's contract (for alerting and log parsing).

The policy may also deny with ``input.invalid`` or ``config.invalid`` (ill-typed input or
configuration reached it) and, as a safety net, ``policy.incomplete``; evaluators add
``engine.error``, ``engine.undefined`` and ``remote.error``.
"""


def default_policy_dir() -> Path:
    """The directory holding the shipped policy (``attestpolicy/v1/*.rego`` below it).

    Its source is ``rego/`` at the top of the repository. A built wheel carries a copy as
    package data (``attestpolicy/rego``); a source checkout (an editable install) reads
    ``rego/`` itself.
    """
    packaged = Path(str(resources.files("attestpolicy") / "rego"))
    if packaged.is_dir():
        return packaged
    source = Path(__file__).resolve().parent.parent / "rego"
    if source.is_dir():
        return source
    raise PolicyError(f"the shipped policy is missing: neither {packaged} nor {source} exists")


def content_revision(modules: Mapping[str, str]) -> str:
    """A stable revision string for a set of modules: ``sha256:<first 16 hex>``."""
    digest = hashlib.sha256()
    for name in sorted(modules):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(modules[name].encode())
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()[:16]


@dataclass(frozen=True)
class PolicySource:
    """Rego modules (name -> text) and base data, identified by ``revision``."""

    modules: Mapping[str, str]
    revision: str
    data: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_directory(cls, directory: Path | str | None = None) -> PolicySource:
        """Load every ``.rego`` file under ``directory`` (default: the shipped policy).

        Test files (``*_test.rego``) are left out: they are for ``attestpolicy test``.
        """
        root = Path(directory) if directory is not None else default_policy_dir()
        if root.is_file():
            raise PolicyError(
                f"policy path {root} is a file: name the directory that holds the .rego files"
            )
        if not root.is_dir():
            raise PolicyError(f"policy directory not found: {root}")
        modules: dict[str, str] = {}
        total = 0
        for path in sorted(root.rglob("*.rego")):
            if path.name.endswith("_test.rego"):
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise PolicyError(f"cannot read policy file {path}: {exc}") from None
            total += len(text)
            if total > MAX_POLICY_BYTES:
                raise PolicyError(f"policy under {root} is larger than {MAX_POLICY_BYTES} bytes")
            modules[path.relative_to(root).as_posix()] = text
        if not modules:
            raise PolicyError(f"no .rego files under {root}")
        return cls(modules=modules, revision=content_revision(modules))


def config_revision(config: Mapping[str, Any] | None) -> str:
    """A stable revision string for a configuration document."""
    canonical = json.dumps(config or {}, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:16]
