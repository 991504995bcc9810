"""Policy sources: a set of Rego modules plus data, with a content revision.

A :class:`PolicySource` is what an evaluator loads. It comes from a directory of
``.rego`` files (the shipped policy by default) or from an OPA bundle
(:mod:`attestpolicy.bundle`). Its ``revision`` is a content hash unless a bundle
manifest names one, so two processes that load the same files agree on it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final, TypeAlias

from attestpolicy.errors import PolicyError

__all__ = [
    "DECISION_PATH",
    "MAX_POLICY_BYTES",
    "POLICY_REASON_CODES",
    "PolicyDirs",
    "PolicySource",
    "config_revision",
    "content_revision",
    "default_policy_dir",
]

DECISION_PATH: Final = "attestpolicy/v1/decision"
"""Data API path of the decision rule (``data.attestpolicy.v1.decision``)."""

MAX_POLICY_BYTES: Final = 16 * 1024 * 1024

PolicyDirs: TypeAlias = Path | str | Sequence[Path | str]
"""A policy directory, or several loaded as one policy (the shipped one and an
organisation's own rules, say: docs/custom-policies.md)."""

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
    def from_directory(cls, directory: PolicyDirs | None = None) -> PolicySource:
        """Load every ``.rego`` file under ``directory`` (default: the shipped policy).

        ``directory`` may be a sequence of directories: their files are loaded as one
        policy (as ``opa eval -d DIR -d DIR`` does), each named by its path below its
        directory. A file reached twice is loaded once; two different files with the
        same name are a PolicyError. Test files (``*_test.rego``) are left out: they
        are for ``attestpolicy test``.
        """
        if directory is None:
            roots = [default_policy_dir()]
        elif isinstance(directory, str | Path):
            roots = [Path(directory)]
        else:
            roots = [Path(item) for item in directory]
            if not roots:
                raise PolicyError("no policy directory given")
        modules: dict[str, str] = {}
        origins: dict[str, Path] = {}
        total = 0
        for root in roots:
            for name, path in _policy_files(root):
                if name in origins:
                    if origins[name].resolve() == path.resolve():
                        continue
                    raise PolicyError(
                        f"two policy files are named {name}: {origins[name]} and {path}"
                    )
                modules[name], origins[name] = _read_policy_file(path), path
                total += len(modules[name])
                if total > MAX_POLICY_BYTES:
                    raise PolicyError(f"the policy is larger than {MAX_POLICY_BYTES} bytes")
        return cls(modules=modules, revision=content_revision(modules))


def _policy_files(root: Path) -> list[tuple[str, Path]]:
    """The policy files under ``root`` (no ``*_test.rego``), each with its name (its path
    below ``root``), in name order; a PolicyError when there are none."""
    if root.is_file():
        raise PolicyError(
            f"policy path {root} is a file: name the directory that holds the .rego files"
        )
    if not root.is_dir():
        raise PolicyError(f"policy directory not found: {root}")
    files = [
        (path.relative_to(root).as_posix(), path)
        for path in sorted(root.rglob("*.rego"))
        if not path.name.endswith("_test.rego")
    ]
    if not files:
        raise PolicyError(f"no .rego files under {root}")
    return files


def _read_policy_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc}") from None


def config_revision(config: Mapping[str, Any] | None) -> str:
    """A stable revision string for a configuration document."""
    canonical = json.dumps(config or {}, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:16]
