"""Shared pieces of the node-evidence verifiers (TPM, SEV-SNP, TDX).

Field types for the evidence and trust models (strict base64, PEM text), the stable
error codes, and a helper that raises :class:`~attestpolicy.errors.EvidenceError`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, NoReturn, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError

from attestpolicy.errors import EvidenceError

__all__ = [
    "DIGEST_MISMATCH",
    "EXPIRED",
    "IDENTITY_MISMATCH",
    "MALFORMED",
    "MAX_BASE64_CHARS",
    "NONCE_MISMATCH",
    "SIGNATURE_INVALID",
    "UNSUPPORTED",
    "UNTRUSTED",
    "Base64Bytes",
    "FrozenModel",
    "PemText",
    "fail",
    "parse_section",
]

MALFORMED: Final = "evidence.malformed"
SIGNATURE_INVALID: Final = "evidence.signature_invalid"
UNTRUSTED: Final = "evidence.untrusted"
IDENTITY_MISMATCH: Final = "evidence.identity_mismatch"
DIGEST_MISMATCH: Final = "evidence.digest_mismatch"
EXPIRED: Final = "evidence.expired"
NONCE_MISMATCH: Final = "evidence.nonce_mismatch"
UNSUPPORTED: Final = "evidence.unsupported"

MAX_BASE64_CHARS: Final = 4 * 1024 * 1024
"""Longest base64 text decoded at all (each field is then bounded in bytes)."""

_PEM_BLOCK = re.compile(
    r"^-----BEGIN ([A-Z0-9 ]{1,40})-----\r?\n[A-Za-z0-9+/=\r\n]+-----END \1-----\s*$"
)


def fail(code: str, field: str, message: str) -> NoReturn:
    """Raise an :class:`EvidenceError` with a stable ``code`` for the failing ``field``."""
    raise EvidenceError(message, field=field, code=code)


def _decode_base64(value: object) -> bytes:
    """Strict, canonical standard base64 (RFC 4648 section 4, with padding)."""
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a base64 string, got {type(value).__name__}")
    if len(value) > MAX_BASE64_CHARS:
        raise ValueError(f"base64 text longer than {MAX_BASE64_CHARS} characters")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not standard base64 (alphabet A-Z a-z 0-9 + /, with padding)") from None
    if base64.b64encode(raw).decode("ascii") != value:
        raise ValueError("base64 is not in canonical form")
    return raw


def _encode_base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _check_pem(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected PEM text, got {type(value).__name__}")
    if not _PEM_BLOCK.match(value.strip() + "\n"):
        raise ValueError("expected exactly one PEM block")
    return value


Base64Bytes = Annotated[
    bytes,
    BeforeValidator(_decode_base64),
    PlainSerializer(_encode_base64, return_type=str, when_used="json"),
    Field(json_schema_extra={"type": "string", "format": "base64"}),
]
"""Bytes carried as standard base64 text; bound each use with ``Field(max_length=...)``."""

PemText = Annotated[str, BeforeValidator(_check_pem), Field(max_length=16384)]
"""One PEM block (certificate or public key), at most 16 KiB of text."""


class FrozenModel(BaseModel):
    """Base of the evidence and trust models: frozen, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


_M = TypeVar("_M", bound=FrozenModel)


def parse_section(model: type[_M], data: Mapping[str, Any] | str | bytes, name: str) -> _M:
    """Validate ``model`` from a mapping or JSON text; raise ``evidence.malformed``."""
    try:
        if isinstance(data, str | bytes):
            return model.model_validate_json(data)
        return model.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, name) from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise EvidenceError(str(exc), field=name, code=MALFORMED) from None


def _validation_error(exc: ValidationError, prefix: str) -> EvidenceError:
    """Turn a pydantic ``ValidationError`` into an ``evidence.malformed`` error."""
    first = exc.errors(include_url=False)[0]
    loc = ".".join(str(part) for part in first["loc"])
    field = f"{prefix}.{loc}" if loc else prefix
    return EvidenceError(first["msg"], field=field, code=MALFORMED)
