"""Typed claim sets: the policy input.

A :class:`ClaimSet` is exactly what the Rego policy receives as ``input`` (its JSON
form, with ``now`` filled in). Every model is frozen and rejects unknown fields, so a
typo in a claim is an ``input.invalid`` deny, never a silently ignored fact.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)

from attestpolicy._json import loads_strict
from attestpolicy._model import FrozenModel, error_message
from attestpolicy.errors import ClaimsError

__all__ = [
    "MAX_CLAIMS_BYTES",
    "ClaimSet",
    "Image",
    "ImageSignature",
    "Node",
    "Provenance",
    "Request",
    "Runtime",
    "Subject",
    "format_timestamp",
    "parse_timestamp",
]

MAX_CLAIMS_BYTES: Final = 1024 * 1024
"""Largest accepted claim set, in bytes of JSON (1 MiB)."""

_MAX_TEXT = 4096
_MAX_ITEMS = 256
_MAX_SECONDS = 2**31 - 1

# RFC 3339 with an explicit offset, at most nanosecond precision, on a real calendar day
# of the years 1900-2099: the pattern the policy checks (lib.rego: _rfc3339), so that a
# timestamp the ClaimSet accepts is one the policy accepts, in both engines.
RFC3339_PATTERN: Final = (
    r"^(?:(?:19|20)[0-9][0-9]-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
    r"|(?:19|20)(?:0[48]|[2468][048]|[13579][26])-02-29|2000-02-29)"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
_RFC3339 = re.compile(RFC3339_PATTERN)
_TIMESTAMP_PARTS = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})T([0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{1,9}))?(Z|[+-].*)"
)
_DIGEST = re.compile(r"([a-z0-9]+(?:[.+_-][a-z0-9]+)*):(.*)", re.DOTALL)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_HEX = re.compile(r"^(?:[0-9a-f]{2})+$")
_NODE_KIND = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SPIFFE_ID = re.compile(r"spiffe://[a-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")
_SPIFFE_DOT_SEGMENT = re.compile(r"/\.\.?(?:/|$)")


# --- scalar types ------------------------------------------------------------


def parse_timestamp(value: object) -> datetime:
    """Parse an RFC 3339 timestamp with an explicit offset into an aware UTC datetime.

    Fractions beyond microseconds are truncated. Raises ``ValueError`` otherwise.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("timestamp must carry a UTC offset")
        return value.astimezone(UTC)
    if not isinstance(value, str):
        raise ValueError(f"timestamp must be an RFC 3339 string, got {type(value).__name__}")
    # fullmatch: "$" alone would accept a trailing newline.
    match = _TIMESTAMP_PARTS.fullmatch(value) if _RFC3339.fullmatch(value) else None
    if match is None:
        raise ValueError(
            f"not an RFC 3339 timestamp with an offset in the years 1900-2099: {value[:64]!r}"
        )
    date, clock, fraction, offset = match.groups()
    micro = (fraction or "").ljust(6, "0")[:6]
    text = f"{date}T{clock}.{micro}{'+00:00' if offset == 'Z' else offset}"
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"invalid RFC 3339 timestamp {value[:64]!r}: {exc}") from None


def format_timestamp(value: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with a ``Z`` suffix (no trailing zeros)."""
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def _check_digest(value: str) -> str:
    match = _DIGEST.fullmatch(value)
    if match is None:
        raise ValueError(f"not a digest of the form '<algorithm>:<hex>': {value[:80]!r}")
    algorithm, hexpart = match.groups()
    if algorithm != "sha256":
        raise ValueError(f"unsupported digest algorithm {algorithm!r}; only sha256 is accepted")
    if not _SHA256_HEX.fullmatch(hexpart):
        raise ValueError("sha256 digest must be 64 lowercase hex characters")
    return value


def _check_spiffe_id(value: str) -> str:
    if len(value) > 2048:
        raise ValueError("SPIFFE ID longer than 2048 characters")
    if not value.startswith("spiffe://"):
        raise ValueError("SPIFFE ID must start with 'spiffe://'")
    if not _SPIFFE_ID.fullmatch(value):
        raise ValueError(
            "SPIFFE ID must be spiffe://<trust domain [a-z0-9._-]>[/<segment [A-Za-z0-9._-]>]..."
            " (no empty segment, no trailing slash)"
        )
    if _SPIFFE_DOT_SEGMENT.search(value):
        raise ValueError("SPIFFE ID path has a dot segment")
    return value


def _integral_seconds(value: object) -> object:
    """JSON has no integer type: accept an integral float (2.0) as the integer it is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _null_is_empty(value: object) -> object:
    """An optional collection that is null is empty (absent and null mean the same)."""
    return () if value is None else value


def _null_is_empty_mapping(value: object) -> object:
    """An optional mapping that is null is empty (absent and null mean the same)."""
    return {} if value is None else value


Timestamp = Annotated[
    datetime,
    BeforeValidator(parse_timestamp),
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
    Field(json_schema_extra={"type": "string", "format": "date-time"}),
]
Text = Annotated[StrictStr, Field(min_length=1, max_length=_MAX_TEXT)]
Digest = Annotated[
    StrictStr,
    AfterValidator(_check_digest),
    Field(pattern=r"^sha256:[0-9a-f]{64}$", examples=["sha256:" + "0" * 64]),
]
# Measurements and node kinds use pydantic-core's native pattern check (no Python call
# per value): a node quote carries dozens of measurements on every decision.
HexValue = Annotated[StrictStr, Field(max_length=_MAX_TEXT, pattern=_HEX.pattern)]
SpiffeId = Annotated[
    StrictStr, AfterValidator(_check_spiffe_id), Field(examples=["spiffe://example.org/payments"])
]
NodeKind = Annotated[
    StrictStr, Field(pattern=_NODE_KIND.pattern, examples=["tpm", "aws_iid", "k8s_psat"])
]


# The bounds sit before the float-to-integer step so that the JSON Schema states them
# (minimum, exclusiveMinimum, maximum); after it, pydantic would publish "gt"/"le", which
# JSON Schema validators ignore.
Seconds = Annotated[StrictInt, Field(ge=0, le=_MAX_SECONDS), BeforeValidator(_integral_seconds)]
"""A number of seconds, 0 to 2**31 - 1: an integer, or a float with no fractional part
(2.0 is 2)."""
PositiveSeconds = Annotated[
    StrictInt, Field(gt=0, le=_MAX_SECONDS), BeforeValidator(_integral_seconds)
]
"""A number of seconds, as :data:`Seconds`, greater than 0."""


# --- claim parts -------------------------------------------------------------


class Subject(FrozenModel):
    """Who asks for a credential."""

    spiffe_id: SpiffeId


class Request(FrozenModel):
    """What is asked for."""

    audience: Text
    requested_ttl_seconds: PositiveSeconds | None = None


class ImageSignature(FrozenModel):
    """One signature over the image digest, as a verifier found it."""

    verified: StrictBool
    issuer: Text | None = None
    subject: Text | None = None
    key_id: Text | None = None


class Image(FrozenModel):
    """The container image the workload runs, and its signatures."""

    reference: Text
    digest: Digest | None = None
    signatures: Annotated[
        tuple[ImageSignature, ...], BeforeValidator(_null_is_empty), Field(max_length=_MAX_ITEMS)
    ] = ()


class Provenance(FrozenModel):
    """Build provenance (SLSA / in-toto) for the image."""

    verified: StrictBool
    builder_id: Text | None = None
    source_repo: Text | None = None
    subject_digests: Annotated[
        tuple[Digest, ...], BeforeValidator(_null_is_empty), Field(max_length=4096)
    ] = ()
    predicate_type: Text | None = None


class Node(FrozenModel):
    """Evidence about the node (TPM quote, cloud identity document, token...)."""

    kind: NodeKind
    id: Text
    verified: StrictBool
    nonce_verified: StrictBool
    issued_at: Timestamp
    expires_at: Timestamp | None = None
    measurements: Annotated[
        dict[Text, HexValue],
        BeforeValidator(_null_is_empty_mapping),
        Field(max_length=1024),
    ] = Field(default_factory=dict)


class Runtime(FrozenModel):
    """What is actually running: namespace, service account and image digest."""

    verified: StrictBool
    namespace: Text | None = None
    service_account: Text | None = None
    pod: Text | None = None
    image_digest: Digest | None = None
    expires_at: Timestamp | None = None


class ClaimSet(FrozenModel):
    """The policy input: verified (or honestly unverified) claims about one request.

    Build one with :meth:`parse` from a mapping or JSON text; ``now`` may be left out
    and is then filled with the current UTC time at decision time.
    """

    now: Timestamp | None = None
    subject: Subject
    request: Request
    image: Image | None = None
    provenance: Provenance | None = None
    node: Node | None = None
    runtime: Runtime | None = None

    @classmethod
    def parse(cls, data: ClaimSet | Mapping[str, Any] | str | bytes) -> ClaimSet:
        """Validate a claim set from a mapping or JSON text; raise :class:`ClaimsError`."""
        if isinstance(data, ClaimSet):
            return data
        try:
            if isinstance(data, str | bytes):
                if len(data) > MAX_CLAIMS_BYTES:
                    raise ClaimsError(
                        f"claim set is {len(data)} bytes, over the {MAX_CLAIMS_BYTES} byte limit",
                        field="(document)",
                    )
                data = loads_strict(data)
            if not isinstance(data, Mapping):
                raise ClaimsError(
                    f"claim set must be a JSON object, got {type(data).__name__}",
                    field="(document)",
                )
            claims = cls.model_validate(dict(data))
        except ValidationError as exc:
            raise _claims_error(exc) from None
        except (ValueError, RecursionError) as exc:
            raise ClaimsError(f"not valid JSON: {exc}", field="(document)") from None
        size = len(claims.model_dump_json(exclude_none=True))
        if size > MAX_CLAIMS_BYTES:
            raise ClaimsError(
                f"claim set is {size} bytes, over the {MAX_CLAIMS_BYTES} byte limit",
                field="(document)",
            )
        return claims

    def with_now(self, now: datetime) -> ClaimSet:
        """Return a copy whose ``now`` is ``now`` (an aware datetime)."""
        return self.model_copy(update={"now": parse_timestamp(now)})

    def to_input(self) -> dict[str, Any]:
        """The JSON-ready policy input (absent evidence classes are left out)."""
        data = self.model_dump(mode="json")
        for part in ("image", "provenance", "node", "runtime", "now"):
            if data.get(part) is None:
                data.pop(part, None)
        return data

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON Schema (draft 2020-12) of a claim set document."""
        schema = cls.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = "https://attestpolicy.dev/schemas/claimset.json"
        return schema


def _claims_error(exc: ValidationError) -> ClaimsError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"]) or "(document)"
    message = error_message(first)
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem(s))"
    return ClaimsError(message, field=field)
