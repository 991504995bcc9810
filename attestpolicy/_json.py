"""Strict JSON, the one parser of every document the library reads.

Claim sets, configurations, evidence and trust documents, bundles and Data API requests
are parsed so that two parsers cannot disagree about them: UTF-8 without a byte order
mark, no duplicate members (one parser keeping the first, another the last, is how a
document says two things), no NaN or Infinity, no lone surrogates (not UTF-8), and a
bounded nesting depth (Python's recursion limit, turned into an error). Each loader turns
the ``ValueError`` raised here into its own typed error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

__all__ = ["loads_strict"]

_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members: dict[str, Any] = {}
    for key, value in pairs:
        if key in members:
            raise ValueError(f"duplicate member {key[:64]!r}")
        members[key] = value
    return members


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads_strict(text: str | bytes, *, parse_number: Callable[[str], Any] | None = None) -> Any:
    """Parse strict JSON (see the module docstring); raise ``ValueError`` naming the problem.

    ``parse_number``, when given, receives every number's source text (to keep it as
    written, as OPA's bundle hashing needs).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    else:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("the text holds a lone surrogate (not UTF-8)") from None
    try:
        value = json.loads(
            text,
            parse_int=parse_number,
            parse_float=parse_number,
            parse_constant=_reject_constant,
            object_pairs_hook=_unique_members,
        )
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if _ESCAPED_SURROGATE.search(text):  # a pair is fine, a lone one is not UTF-8
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a string holds a lone surrogate (not UTF-8)") from None
    return value
