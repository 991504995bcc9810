"""Shared plumbing for the identity verifiers (AWS IID, identity JWTs, SPIFFE, attestor).

Section base models, strict JSON and base64, PEM certificate loading and the ``now`` guard.
Every helper raises :class:`~attestpolicy.errors.EvidenceError` with a stable code for bad
input (trust-section helpers raise ``ValueError``, which pydantic reports).
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Self

from cryptography import x509
from pydantic import BaseModel, ConfigDict, ValidationError

from attestpolicy.errors import EvidenceError

MALFORMED: Final = "evidence.malformed"
SIGNATURE_INVALID: Final = "evidence.signature_invalid"
UNTRUSTED: Final = "evidence.untrusted"
IDENTITY_MISMATCH: Final = "evidence.identity_mismatch"
DIGEST_MISMATCH: Final = "evidence.digest_mismatch"
EXPIRED: Final = "evidence.expired"
NONCE_MISMATCH: Final = "evidence.nonce_mismatch"
AUDIENCE_MISMATCH: Final = "evidence.audience_mismatch"
UNSUPPORTED: Final = "evidence.unsupported"

MAX_SECTION_BYTES: Final = 1024 * 1024
"""Largest evidence section accepted as JSON text (1 MiB)."""

MAX_CLOCK_SKEW_SECONDS: Final = 300
"""Largest clock skew (leeway) a trust section may configure."""

_PEM_CERT = re.compile(
    r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----", re.ASCII
)


class EvidenceSection(BaseModel):
    """Base of every evidence section: frozen, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def parse(cls, data: Mapping[str, Any] | str | bytes) -> Self:
        """Validate a section from a mapping or JSON text; raise ``evidence.malformed``."""
        try:
            if isinstance(data, str | bytes):
                if len(data) > MAX_SECTION_BYTES:
                    raise EvidenceError(
                        f"section is over the {MAX_SECTION_BYTES} byte limit",
                        field="(section)",
                        code=MALFORMED,
                    )
                data = load_json(data, field="(section)")
            if not isinstance(data, Mapping):
                raise EvidenceError(
                    f"evidence section must be a JSON object, got {type(data).__name__}",
                    field="(section)",
                    code=MALFORMED,
                )
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "(section)"
            raise EvidenceError(first["msg"], field=where, code=MALFORMED) from None


class TrustSection(BaseModel):
    """Base of every trust section: frozen, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate member {key[:64]!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def load_json(text: str | bytes, *, field: str) -> Any:
    """Strict JSON: UTF-8, no duplicate members, no NaN/Infinity, no lone surrogates."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        value = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_object)
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # lone surrogates fail here
    except (ValueError, RecursionError) as exc:
        raise EvidenceError(f"not valid JSON: {exc}", field=field, code=MALFORMED) from None
    return value


def require_utc(now: datetime) -> datetime:
    """Return ``now`` in UTC; reject a naive datetime (it is a programming error)."""
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now.astimezone(UTC)


def decode_base64(text: str, *, field: str, max_bytes: int) -> bytes:
    """Decode standard-alphabet base64 (RFC 4648 section 4) with padding.

    Line breaks (``\\n``, ``\\r``) are ignored, as AWS wraps its base64 output; any
    other character outside the alphabet, missing padding or a non-canonical
    encoding (non-zero unused bits) is ``evidence.malformed``.
    """
    compact = text.replace("\r", "").replace("\n", "")
    if len(compact) > (max_bytes + 2) // 3 * 4:
        raise EvidenceError(f"over the {max_bytes} byte limit", field=field, code=MALFORMED)
    try:
        data = binascii.a2b_base64(compact, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise EvidenceError(f"not valid base64: {exc}", field=field, code=MALFORMED) from None
    if not data or binascii.b2a_base64(data, newline=False).decode("ascii") != compact:
        raise EvidenceError("empty or non-canonical base64", field=field, code=MALFORMED)
    return data


def load_pem_certificates(text: str, *, max_count: int) -> list[x509.Certificate]:
    """Parse one or more PEM ``CERTIFICATE`` blocks (for trust sections; raises ValueError)."""
    blocks = _PEM_CERT.findall(text)
    if not blocks:
        raise ValueError("no PEM CERTIFICATE block found")
    if len(blocks) > max_count:
        raise ValueError(f"more than {max_count} certificates")
    return [x509.load_pem_x509_certificate(block.encode("ascii")) for block in blocks]


def check_validity(cert: x509.Certificate, now: datetime, *, field: str) -> None:
    """Raise ``evidence.expired`` unless ``now`` is inside the certificate's validity."""
    if now < cert.not_valid_before_utc:
        raise EvidenceError(
            f"certificate not valid before {cert.not_valid_before_utc.isoformat()}",
            field=field,
            code=EXPIRED,
        )
    if now > cert.not_valid_after_utc:
        raise EvidenceError(
            f"certificate expired at {cert.not_valid_after_utc.isoformat()}",
            field=field,
            code=EXPIRED,
        )
