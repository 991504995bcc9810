"""Strict JSON for signed payloads and evidence sections (provenance verifiers).

Signed JSON is parsed so that two parsers cannot disagree about it: duplicate object
keys, ``NaN``/``Infinity`` and over-deep nesting are refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError

from attestpolicy.errors import EvidenceError

__all__ = ["MAX_SECTION_CHARS", "loads_strict", "parse_section", "validation_error"]

MAX_SECTION_CHARS: Final = 8 * 1024 * 1024
"""Largest evidence section accepted as JSON text (8 MiB)."""

_MALFORMED = "evidence.malformed"

ModelT = TypeVar("ModelT", bound=BaseModel)


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key[:80]!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def loads_strict(data: str | bytes, *, field: str) -> Any:
    """Parse JSON text; raise ``evidence.malformed`` naming ``field`` when it is not strict JSON."""
    try:
        return json.loads(data, object_pairs_hook=_unique, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise EvidenceError(
            f"not a JSON document: {str(exc)[:200]}", field=field, code=_MALFORMED
        ) from None


def validation_error(exc: ValidationError) -> EvidenceError:
    """Turn a pydantic ``ValidationError`` into ``evidence.malformed`` at its first location."""
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or "(section)"
    return EvidenceError(first["msg"], field=field, code=_MALFORMED)


def parse_section(model: type[ModelT], data: Mapping[str, Any] | str | bytes) -> ModelT:
    """Validate an evidence section from a mapping or JSON text; raise ``EvidenceError``."""
    if isinstance(data, str | bytes):
        if len(data) > MAX_SECTION_CHARS:
            raise EvidenceError(
                f"section is over {MAX_SECTION_CHARS} characters",
                field="(section)",
                code=_MALFORMED,
            )
        data = loads_strict(data, field="(section)")
    if not isinstance(data, Mapping):
        raise EvidenceError("section must be a JSON object", field="(section)", code=_MALFORMED)
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise validation_error(exc) from None
    except RecursionError:
        raise EvidenceError(
            "section nests too deeply", field="(section)", code=_MALFORMED
        ) from None
