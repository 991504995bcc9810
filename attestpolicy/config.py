"""The policy configuration document placed at ``data.attestpolicy.config``.

The Rego policy guards every field's type itself (so OPA fed by a bundle stays fail
closed), but the Python side validates the document up front so that a typo in a
configuration file is a clear :class:`~attestpolicy.errors.ConfigError` at load time
rather than a deny on every request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from attestpolicy.claims import Digest, HexValue, SpiffeId, Text
from attestpolicy.errors import ConfigError

__all__ = ["MAX_CONFIG_BYTES", "PolicyConfig", "load_config", "validate_config"]

MAX_CONFIG_BYTES = 8 * 1024 * 1024

_GLOB_SYNTAX = re.compile(r"[?\[\]{}\\]")
"""Glob syntax the policy refuses in signer subjects (only ``*`` is special there)."""

EvidenceClass = Literal["image", "provenance", "node", "runtime"]
_Seconds = Annotated[StrictInt, Field(ge=0, le=2**31 - 1)]
_PositiveSeconds = Annotated[StrictInt, Field(gt=0, le=2**31 - 1)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TrustedSigner(_Model):
    """A keyless identity (OIDC issuer + subject glob, ``*`` matches any characters),
    or a signing key (``key_id``, the verifier's ``sha256:`` key fingerprint).
    """

    issuer: Text | None = None
    subject: Text | None = None
    key_id: Text | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> TrustedSigner:
        keyless = self.issuer is not None or self.subject is not None
        if keyless and (self.issuer is None or self.subject is None):
            raise ValueError("a keyless trusted signer needs both issuer and subject")
        if keyless == (self.key_id is not None):
            raise ValueError("a trusted signer is either {issuer, subject} or {key_id}")
        if self.subject is not None and _GLOB_SYNTAX.search(self.subject):
            raise ValueError("subject patterns may use no glob syntax but * (no ?, [, ], {, }, \\)")
        return self


class Workload(_Model):
    """What a registered SPIFFE ID must prove, and its TTL cap."""

    namespace: Text
    service_account: Text
    source_repo: Text | None = None
    image_digests: tuple[Digest, ...] | None = None
    require: tuple[EvidenceClass, ...] = ()
    max_ttl_seconds: _PositiveSeconds | None = None


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
    """Revocation lists: anything listed here never counts as trusted."""

    signer_subjects: tuple[StrictStr, ...] = ()
    node_ids: tuple[StrictStr, ...] = ()
    image_digests: tuple[StrictStr, ...] = ()
    spiffe_ids: tuple[StrictStr, ...] = ()


class PolicyConfig(_Model):
    """The whole configuration document."""

    trusted_signers: tuple[TrustedSigner, ...] = ()
    trusted_builders: tuple[Text, ...] = ()
    workloads: dict[SpiffeId, Workload] = Field(default_factory=dict)
    node_baselines: dict[Text, dict[Text, HexValue]] = Field(default_factory=dict)
    audiences: dict[Text, Audience] = Field(default_factory=dict)
    limits: Limits
    revoked: Revoked = Revoked()


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


def load_config(path: Path | str) -> dict[str, Any]:
    """Read and validate a JSON configuration file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"configuration {path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"configuration {path} is not valid JSON: {exc}") from None
    return validate_config(document)
