"""Plumbing shared by every evidence verifier.

The stable error codes and :func:`fail`; the frozen base models and the one way a
section is validated (:func:`parse_section`, with pydantic's error turned into
``evidence.malformed``); strict JSON; canonical base64 and the field types built on it.
Helpers that read evidence raise :class:`~attestpolicy.errors.EvidenceError`; the
pydantic field types raise ``ValueError`` (which pydantic reports).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Final, Literal, NoReturn, Self, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    PlainSerializer,
    ValidationError,
)

from attestpolicy._json import loads_strict
from attestpolicy._model import FrozenModel, error_message
from attestpolicy.errors import EvidenceError

__all__ = [
    "CLOCK_SKEW",
    "LARGE_SECTION_CHARS",
    "MAX_BASE64_CHARS",
    "MAX_CLOCK_SKEW_SECONDS",
    "MAX_SECTION_CHARS",
    "Base64Bytes",
    "ClockSkewSeconds",
    "Code",
    "EvidenceSection",
    "PemText",
    "check_not_future",
    "decode_base64",
    "exact_object",
    "fail",
    "fail_no_trust",
    "json_string",
    "json_uint64",
    "load_json",
    "load_json_object",
    "malformed_on_error",
    "parse_section",
    "require_utc",
    "sha256_digest",
    "validate_mapping",
    "validation_error",
]


class Code:
    """The stable codes of :class:`~attestpolicy.errors.EvidenceError` (``error.code``)."""

    MALFORMED: Final = "evidence.malformed"
    SIGNATURE_INVALID: Final = "evidence.signature_invalid"
    UNTRUSTED: Final = "evidence.untrusted"
    IDENTITY_MISMATCH: Final = "evidence.identity_mismatch"
    DIGEST_MISMATCH: Final = "evidence.digest_mismatch"
    EXPIRED: Final = "evidence.expired"
    NONCE_MISMATCH: Final = "evidence.nonce_mismatch"
    AUDIENCE_MISMATCH: Final = "evidence.audience_mismatch"
    UNSUPPORTED: Final = "evidence.unsupported"


MAX_SECTION_CHARS: Final = 1024 * 1024
"""Largest evidence section accepted as JSON text, unless a section says otherwise (1 MiB)."""

LARGE_SECTION_CHARS: Final = 8 * 1024 * 1024
"""The JSON text limit of sections that carry whole attestations or envelopes (8 MiB)."""

MAX_BASE64_CHARS: Final = 4 * 1024 * 1024
"""Longest base64 text a :data:`Base64Bytes` field decodes at all (then bounded in bytes)."""

_MAX_INT64: Final = 2**63 - 1

MAX_CLOCK_SKEW_SECONDS: Final = 300
"""Largest clock skew (leeway) a trust section may configure."""

ClockSkewSeconds = Annotated[int, Field(ge=0, le=MAX_CLOCK_SKEW_SECONDS)]
"""A trust section's ``clock_skew_seconds``: 0 to :data:`MAX_CLOCK_SKEW_SECONDS`."""


def fail(code: str, field: str, message: str) -> NoReturn:
    """Raise an :class:`EvidenceError` with a stable ``code`` for the failing ``field``."""
    raise EvidenceError(message, field=field, code=code) from None


def fail_no_trust(field: str) -> NoReturn:
    """Raise ``evidence.untrusted``: the trust configuration has no anchors for ``field``."""
    fail(Code.UNTRUSTED, field, "no trust anchors configured for this evidence")


@contextmanager
def malformed_on_error(field: str) -> Iterator[None]:
    """Let :class:`EvidenceError` through; turn any other exception into ``evidence.malformed``.

    The last line of defence: parsers below us (cryptography, pydantic, sigstore) raise
    many exception types for hostile input, and none of them may escape a verifier.
    """
    try:
        yield
    except EvidenceError:
        raise
    except Exception as exc:
        fail(Code.MALFORMED, field, f"evidence could not be processed: {type(exc).__name__}: {exc}")


# --- time --------------------------------------------------------------------------


CLOCK_SKEW: Final = timedelta(minutes=5)
"""How far a signed time (Rekor, TSA) may lie after ``now`` before it is refused."""


def check_not_future(signed: datetime, now: datetime, *, field: str) -> None:
    """Refuse a signed time more than :data:`CLOCK_SKEW` after ``now`` (``evidence.expired``)."""
    if signed > now + CLOCK_SKEW:
        fail(
            Code.EXPIRED,
            field,
            f"signed time {signed.isoformat()} is after now ({now.isoformat()}): not yet valid",
        )


def require_utc(now: datetime, *, error: type[Exception] = ValueError) -> datetime:
    """Return ``now`` in UTC; a naive datetime is a programming error, raised as ``error``.

    The image-signature verifiers document ``TypeError`` (their tests pin it); every
    other verifier raises ``ValueError``.
    """
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise error("now must be a timezone-aware datetime (with a UTC offset)")
    return now.astimezone(UTC)


# --- strict JSON -------------------------------------------------------------------


def load_json(text: str | bytes, *, field: str) -> Any:
    """Strict JSON (:mod:`attestpolicy._json`): signed JSON is parsed so that two parsers
    cannot disagree about it.
    """
    try:
        return loads_strict(text)
    except ValueError as exc:
        fail(Code.MALFORMED, field, f"not valid JSON: {str(exc)[:200]}")


def load_json_object(text: str | bytes, *, field: str) -> dict[str, Any]:
    """:func:`load_json`, and the value must be a JSON object."""
    value = load_json(text, field=field)
    if not isinstance(value, dict):
        fail(Code.MALFORMED, field, "must be a JSON object")
    return value


def exact_object(value: object, keys: set[str], *, field: str) -> dict[str, Any]:
    """``value`` must be a JSON object with exactly the members ``keys``."""
    if not isinstance(value, dict) or set(value) != keys:
        fail(
            Code.MALFORMED, field, f"expected a JSON object with exactly the fields {sorted(keys)}"
        )
    return value


def json_string(value: object, *, field: str, pattern: re.Pattern[str] | None = None) -> str:
    """``value`` must be a string (matching ``pattern``, when given)."""
    if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
        fail(Code.MALFORMED, field, "expected a well-formed string")
    return value


def json_uint64(value: object, *, field: str) -> int:
    """``value`` must be a JSON integer from 0 to 2**63 - 1."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_INT64:
        fail(Code.MALFORMED, field, "expected a non-negative 64-bit integer")
    return value


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- base64 ------------------------------------------------------------------------

_BASE64_SHAPES: Final = {
    ("standard", True): re.compile(
        r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
    ),
    ("urlsafe", True): re.compile(
        r"^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2}==|[A-Za-z0-9_-]{3}=)?$"
    ),
    ("standard", False): re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2,3})?$"),
    ("urlsafe", False): re.compile(r"^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$"),
}
_FROM_URLSAFE: Final = str.maketrans("-_", "+/")


def decode_base64(
    text: object,
    *,
    field: str,
    alphabet: Literal["standard", "urlsafe"] = "standard",
    padded: bool = True,
    max_bytes: int | None = None,
    wrapped: bool = False,
    allow_empty: bool = True,
) -> bytes:
    """Decode canonical RFC 4648 base64; raise ``evidence.malformed`` otherwise.

    ``alphabet`` is section 4 (``+/``) or section 5 (``-_``); ``padded`` says whether the
    ``=`` padding is required or forbidden. Canonical: the unused bits of the last
    character are zero, so one byte string has exactly one accepted encoding.
    ``wrapped`` ignores line breaks (AWS wraps its base64 output).
    """
    if not isinstance(text, str):
        fail(Code.MALFORMED, field, f"expected a base64 string, got {type(text).__name__}")
    if wrapped:
        text = text.replace("\r", "").replace("\n", "")
    if max_bytes is not None and len(text) > (max_bytes + 2) // 3 * 4:
        fail(Code.MALFORMED, field, f"over the {max_bytes} byte limit")
    if not _BASE64_SHAPES[alphabet, padded].match(text):
        fail(Code.MALFORMED, field, f"not {'padded' if padded else 'unpadded'} {alphabet} base64")
    standard = text if alphabet == "standard" else text.translate(_FROM_URLSAFE)
    try:
        data = binascii.a2b_base64(standard + "=" * (-len(text) % 4), strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        fail(Code.MALFORMED, field, f"not valid base64: {exc}")
    encoded = base64.b64encode(data).decode("ascii")
    if not padded:
        encoded = encoded.rstrip("=")
    if encoded != standard:
        fail(Code.MALFORMED, field, "non-canonical base64")
    if not data and not allow_empty:
        fail(Code.MALFORMED, field, "empty base64")
    return data


def _base64_field(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str) and len(value) > MAX_BASE64_CHARS:
        raise ValueError(f"base64 text longer than {MAX_BASE64_CHARS} characters")
    try:
        return decode_base64(value, field="")
    except EvidenceError as exc:
        raise ValueError(exc.detail) from None


def _encode_base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


_PEM_BLOCK = re.compile(
    r"^-----BEGIN ([A-Z0-9 ]{1,40})-----\r?\n[A-Za-z0-9+/=\r\n]+-----END \1-----\s*$"
)


def _check_pem(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected PEM text, got {type(value).__name__}")
    if not _PEM_BLOCK.match(value.strip() + "\n"):
        raise ValueError("expected exactly one PEM block")
    return value


Base64Bytes = Annotated[
    bytes,
    BeforeValidator(_base64_field),
    PlainSerializer(_encode_base64, return_type=str, when_used="json"),
    Field(json_schema_extra={"type": "string", "format": "base64"}),
]
"""Bytes as canonical standard base64 text; bound each use with ``Field(max_length=...)``."""

PemText = Annotated[str, BeforeValidator(_check_pem), Field(max_length=16384)]
"""One PEM block (certificate or public key), at most 16 KiB of text."""


# --- models and sections -------------------------------------------------------------


_M = TypeVar("_M", bound=BaseModel)


def validation_error(
    exc: ValidationError, *, prefix: str = "", whole: str = "(section)"
) -> EvidenceError:
    """Turn pydantic's error into ``evidence.malformed`` at its first location.

    The location is put under ``prefix``; an error about the whole section is reported
    at ``prefix``, or at ``whole`` without one.
    """
    first = exc.errors(include_url=False)[0]
    loc = ".".join(str(part) for part in first["loc"])
    field = ".".join(part for part in (prefix, loc) if part) or whole
    return EvidenceError(error_message(first), field=field, code=Code.MALFORMED)


def validate_mapping(
    model: type[_M], data: object, *, prefix: str = "", whole: str = "(section)"
) -> _M:
    """Validate ``model`` from a mapping; raise ``evidence.malformed`` (see validation_error)."""
    if not isinstance(data, Mapping):
        fail(Code.MALFORMED, prefix or whole, f"must be a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise validation_error(exc, prefix=prefix, whole=whole) from None
    except (ValueError, TypeError, RecursionError) as exc:
        fail(Code.MALFORMED, prefix or whole, f"section cannot be validated: {type(exc).__name__}")


def parse_section(
    model: type[_M],
    data: Mapping[str, Any] | str | bytes,
    *,
    prefix: str = "",
    max_chars: int = MAX_SECTION_CHARS,
) -> _M:
    """Validate ``model`` from a mapping or strict JSON text of at most ``max_chars``."""
    if isinstance(data, str | bytes):
        where = prefix or "(section)"
        if len(data) > max_chars:
            fail(Code.MALFORMED, where, f"section is over the {max_chars} character limit")
        data = load_json(data, field=where)
    return validate_mapping(model, data, prefix=prefix)


class EvidenceSection(FrozenModel):
    """Base of the evidence sections, with :meth:`parse`.

    Subclasses may set ``_field_prefix`` (put before every failing field) and
    ``_max_chars`` (the JSON text limit).
    """

    _field_prefix: ClassVar[str] = ""
    _max_chars: ClassVar[int] = MAX_SECTION_CHARS

    @classmethod
    def parse(cls, data: Mapping[str, Any] | str | bytes) -> Self:
        """Validate a section from a mapping or JSON text; raise ``evidence.malformed``."""
        return parse_section(cls, data, prefix=cls._field_prefix, max_chars=cls._max_chars)
