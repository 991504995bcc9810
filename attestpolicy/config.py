"""The policy configuration document placed at ``data.attestpolicy.config``.

The whole document is validated here, once, where it is loaded (and by ``attestpolicy
bundle build``), so that a typo is a clear :class:`~attestpolicy.errors.ConfigError`
rather than a deny on every request. The Rego policy validates, on every decision, only
the parts that decision reads (so its cost does not grow with the configuration) and
denies with ``config.invalid`` when they are malformed. Optional sections and fields
that are null are absent, as in the policy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    StrictStr,
    ValidationError,
    model_validator,
)

from attestpolicy._json import loads_strict
from attestpolicy._model import FrozenModel
from attestpolicy.claims import Digest, HexValue, NodeKind, Seconds, SpiffeId, Text
from attestpolicy.errors import ConfigError

__all__ = [
    "MAX_CONFIG_BYTES",
    "PolicyConfig",
    "TrustedSigners",
    "load_config",
    "validate_config",
]

MAX_CONFIG_BYTES = 256 * 1024 * 1024
"""Largest configuration file accepted by :func:`load_config` (a fleet of 100k workloads
is about 42 MB of JSON)."""

_GLOB_SYNTAX = re.compile(r"[?\[\]{}\\]")
"""Glob syntax the policy refuses in signer subjects (only ``*`` is special there)."""

EvidenceClass = Literal["image", "provenance", "node", "runtime"]
_Seconds = Annotated[Seconds, Field(ge=0, le=2**31 - 1)]
_PositiveSeconds = Annotated[Seconds, Field(gt=0, le=2**31 - 1)]


def _check_pattern(value: str) -> str:
    if _GLOB_SYNTAX.search(value):
        raise ValueError("subject patterns may use no glob syntax but * (no ?, [, ], {, }, \\)")
    return value


SubjectPattern = Annotated[Text, AfterValidator(_check_pattern)]
"""A signer subject glob in which only ``*`` is special (any characters, "/" and "." too)."""


class _Model(FrozenModel):
    """A configuration model: an optional field that is null is absent, as in the policy."""

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        """An optional field that is null is absent (as in the policy)."""
        if isinstance(data, Mapping) and None in data.values():
            return {key: value for key, value in data.items() if value is not None}
        return data


class TrustedSigners(_Model):
    """Who may sign images: keyless identities by OIDC issuer (each with its subject
    patterns), and signing keys by ``key_id`` (the verifier's ``sha256:`` key fingerprint;
    the value is a free-form note).
    """

    issuers: dict[Text, tuple[SubjectPattern, ...]] = Field(default_factory=dict)
    key_ids: dict[Text, StrictStr] = Field(default_factory=dict)


class Workload(_Model):
    """What a registered SPIFFE ID must prove, and its TTL cap."""

    namespace: Text
    service_account: Text
    source_repo: Text | None = None
    image_digests: Annotated[tuple[Digest, ...], Field(max_length=4096)] | None = None
    require: tuple[EvidenceClass, ...] = ()
    max_ttl_seconds: _PositiveSeconds | None = None
    node_kinds: Annotated[tuple[NodeKind, ...], Field(max_length=64)] | None = None
    """The node kinds accepted (each needs a ``node_baselines`` entry); None: any kind."""


class Audience(_Model):
    """A credential audience and its TTL cap."""

    max_ttl_seconds: _PositiveSeconds


class Limits(_Model):
    """Time limits, in seconds."""

    max_evidence_age_seconds: _Seconds
    clock_skew_seconds: _Seconds
    min_ttl_seconds: _PositiveSeconds
    default_ttl_seconds: _PositiveSeconds


class Revoked(_Model):
    """Revocation maps, value -> reason: anything listed here never counts as trusted."""

    signer_subjects: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    node_ids: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    image_digests: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    spiffe_ids: dict[StrictStr, StrictStr] = Field(default_factory=dict)


class PolicyConfig(_Model):
    """The whole configuration document (``data.attestpolicy.config``)."""

    trusted_signers: TrustedSigners = TrustedSigners()
    trusted_builders: dict[Text, StrictStr] = Field(default_factory=dict)
    workloads: dict[SpiffeId, Workload] = Field(default_factory=dict)
    node_baselines: dict[Text, dict[Text, HexValue]] = Field(default_factory=dict)
    audiences: dict[Text, Audience] = Field(default_factory=dict)
    limits: Limits
    revoked: Revoked = Revoked()

    @model_validator(mode="after")
    def _accepted_node_kinds_have_baselines(self) -> PolicyConfig:
        for spiffe_id, workload in self.workloads.items():
            for kind in workload.node_kinds or ():
                if kind not in self.node_baselines:
                    raise ValueError(
                        f"workloads[{spiffe_id}].node_kinds: {kind} has no entry in "
                        "node_baselines (an empty one states it has no measurements)"
                    )
        return self


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a configuration mapping; return it unchanged or raise ConfigError."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"configuration must be a JSON object, got {type(config).__name__}")
    try:
        PolicyConfig.model_validate(dict(config))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "(document)"
        raise ConfigError(f"invalid configuration at {where}: {first['msg']}") from None
    return dict(config)


def load_config(path: Path | str, *, max_bytes: int = MAX_CONFIG_BYTES) -> dict[str, Any]:
    """Read and validate a JSON configuration file of at most ``max_bytes`` bytes."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise ConfigError(f"configuration {path} is larger than {max_bytes} bytes")
    try:
        document = loads_strict(raw)
    except ValueError as exc:
        raise ConfigError(f"configuration {path} is not valid JSON: {exc}") from None
    return validate_config(document)
