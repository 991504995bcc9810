"""The policy configuration document placed at ``data.attestpolicy.config``.

The whole document is validated here, once, where it is loaded (and by ``attestpolicy
bundle build``), so that a typo is a clear :class:`~attestpolicy.errors.ConfigError`
rather than a deny on every request. The Rego policy validates, on every decision, only
the parts that decision reads (so its cost does not grow with the configuration) and
denies with ``config.invalid`` when they are malformed. Optional sections and fields
that are null are absent, as in the policy.

A configuration file is JSON or YAML (``.yaml``/``.yml``, or any other file that does not
start like JSON), read strictly: no duplicate keys, no YAML aliases. Every problem is reported
at once, each at its location, and an unknown key is named with the keys allowed there.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    Field,
    StrictStr,
    ValidationError,
    model_validator,
)

from attestpolicy._json import loads_strict
from attestpolicy._model import FrozenModel, error_message
from attestpolicy.claims import (
    Digest,
    HexValue,
    NodeKind,
    PositiveSeconds,
    Seconds,
    SpiffeId,
    Text,
)
from attestpolicy.errors import ConfigError

__all__ = [
    "MAX_CONFIG_BYTES",
    "PolicyConfig",
    "TrustedSigners",
    "config_schema",
    "load_config",
    "validate_config",
]

MAX_CONFIG_BYTES = 256 * 1024 * 1024
"""Largest configuration file accepted by :func:`load_config` (a fleet of 100k workloads
is about 42 MB of JSON)."""

MAX_LISTED_PROBLEMS: Final = 50
"""The most problems a :class:`ConfigError` lists (then it counts the rest)."""

_GLOB_SYNTAX = re.compile(r"[?\[\]{}\\]")
"""Glob syntax the policy refuses in signer subjects (only ``*`` is special there)."""

EvidenceClass = Literal["image", "provenance", "node", "runtime"]


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
    max_ttl_seconds: PositiveSeconds | None = None
    node_kinds: Annotated[tuple[NodeKind, ...], Field(max_length=64)] | None = None
    """The node kinds accepted (each needs a ``node_baselines`` entry); None: any kind."""


class Audience(_Model):
    """A credential audience and its TTL cap."""

    max_ttl_seconds: PositiveSeconds


class Limits(_Model):
    """Time limits, in seconds."""

    max_evidence_age_seconds: Seconds
    clock_skew_seconds: Seconds
    min_ttl_seconds: PositiveSeconds
    default_ttl_seconds: PositiveSeconds


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
    """Validate a configuration mapping; return it unchanged or raise ConfigError.

    The error lists every problem found (up to :data:`MAX_LISTED_PROBLEMS`), one a line,
    each as ``at <location>: <message>``.
    """
    if not isinstance(config, Mapping):
        got = "nothing (an empty document)" if config is None else type(config).__name__
        raise ConfigError(f"configuration must be a JSON object, got {got}")
    try:
        PolicyConfig.model_validate(dict(config))
    except ValidationError as exc:
        raise ConfigError(_describe(exc.errors(include_url=False))) from None
    return dict(config)


def load_config(path: Path | str, *, max_bytes: int = MAX_CONFIG_BYTES) -> dict[str, Any]:
    """Read and validate a JSON or YAML configuration file of at most ``max_bytes`` bytes.

    A ``.yaml``/``.yml`` file is YAML, a ``.json`` file or one that starts with ``{`` or
    ``[`` JSON, any other YAML. JSON is parsed strictly (no duplicate members), YAML without
    aliases or duplicate keys.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise ConfigError(f"configuration {path} is larger than {max_bytes} bytes")
    if path.suffix.lower() in (".yaml", ".yml") or not (
        path.suffix.lower() == ".json" or raw.lstrip()[:1] in (b"{", b"[")
    ):
        from attestpolicy._yaml import loads_strict_yaml  # only YAML pays for the parser

        try:
            document = loads_strict_yaml(raw)
        except ValueError as exc:
            raise ConfigError(f"configuration {path} is not valid YAML: {exc}") from None
    else:
        try:
            document = loads_strict(raw)
        except ValueError as exc:
            raise ConfigError(f"configuration {path} is not valid JSON: {exc}") from None
    return validate_config(document)


def config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the configuration document."""
    schema = PolicyConfig.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


# --- error messages --------------------------------------------------------------------


def _describe(errors: Sequence[Any]) -> str:
    lines = [f"at {_location(error['loc'])}: {_message(error)}" for error in errors]
    if len(lines) == 1:
        return f"invalid configuration {lines[0]}"
    listed = lines[:MAX_LISTED_PROBLEMS]
    if len(lines) > len(listed):
        listed.append(f"... and {len(lines) - len(listed)} more")
    return f"invalid configuration, {len(lines)} problems:\n  " + "\n  ".join(listed)


def _location(loc: Sequence[int | str]) -> str:
    return ".".join(str(part)[:128] for part in loc) or "(document)"


def _message(error: Any) -> str:
    if error["type"] != "extra_forbidden":
        return error_message(error)
    import difflib  # only an invalid configuration pays for it

    key = str(error["loc"][-1])
    allowed = _keys_at(error["loc"][:-1])
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"unknown key {key[:128]!r} (did you mean {close[0]!r}?)"
    return f"unknown key {key[:128]!r} (allowed: {', '.join(allowed)})"


def _keys_at(loc: Sequence[int | str]) -> list[str]:
    """The keys the model at ``loc`` (inside :class:`PolicyConfig`) allows."""
    kind: Any = PolicyConfig
    for part in loc:
        kind = _unwrap(kind)
        origin = typing.get_origin(kind)
        if isinstance(kind, type) and issubclass(kind, FrozenModel):
            field = kind.model_fields.get(str(part))
            if field is None:
                return []
            kind = field.annotation
        elif origin in (dict, tuple):
            kind = typing.get_args(kind)[-1 if origin is dict else 0]
        else:
            return []
    kind = _unwrap(kind)
    if isinstance(kind, type) and issubclass(kind, FrozenModel):
        return sorted(kind.model_fields)
    return []


def _unwrap(kind: Any) -> Any:
    """``X`` from ``Annotated[X, ...]`` and ``X | None``."""
    while True:
        if typing.get_origin(kind) is Annotated:
            kind = typing.get_args(kind)[0]
        elif isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
            kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        else:
            return kind
