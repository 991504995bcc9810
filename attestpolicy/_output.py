"""How the commands print what they produce: ``--format json|pretty|table``.

``json`` is for machines (and the default wherever the command printed JSON before),
``pretty`` for people, ``table`` a compact view with one row per item. Rendering never
changes an exit code.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from attestpolicy.decision import Decision

__all__ = [
    "FORMATS",
    "Format",
    "add_format_argument",
    "render_claims",
    "render_decision",
    "table",
]

Format = Literal["json", "pretty", "table"]
FORMATS: Final[tuple[Format, ...]] = ("json", "pretty", "table")


def add_format_argument(parser: argparse.ArgumentParser, default: Format) -> None:
    """Add ``--format json|pretty|table`` with ``default``."""
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=default,
        help=f"output: json (machines), pretty (people) or table (compact); default {default}",
    )


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: padded columns, a rule under the header, the last column free."""
    lines = [list(header), *[list(row) for row in rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for index, line in enumerate(lines):
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        out.append("  ".join([*cells, line[-1]]).rstrip())
        if index == 0:
            out.append("  ".join("-" * width for width in [*widths, len(header[-1])]))
    return "\n".join(out)


DECISION_HEADER: Final = ("decision", "ttl", "bound by", "valid until", "reasons")


def decision_row(decision: Decision) -> list[str]:
    """A decision as the cells of :data:`DECISION_HEADER`."""
    return [
        "ALLOW" if decision.allow else "DENY",
        str(decision.ttl_seconds),
        decision.ttl_bound_by or "-",
        decision.to_json_dict()["valid_until"] or "-",
        ", ".join(decision.reason_codes) or "-",
    ]


def render_decision(decision: Decision, fmt: Format) -> str:
    """A decision as JSON (its JSON form), pretty text or a one-row table."""
    if fmt == "json":
        return json.dumps(decision.to_json_dict(), indent=2)
    if fmt == "table":
        return table(DECISION_HEADER, [decision_row(decision)])
    data = decision.to_json_dict()
    if decision.allow:
        lines = [
            f"ALLOW for {decision.ttl_seconds} s (bound by {decision.ttl_bound_by}), "
            f"valid until {data['valid_until'] or 'never (nothing expires)'}"
        ]
        terms = data.get("ttl_terms") or []
        if terms:
            lines.append("  ttl terms: " + ", ".join(_term(term) for term in terms))
        for member, value in data.get("revocable") or []:
            lines.append(f"  revocable: {member} {value}")
    else:
        count = len(decision.reasons)
        lines = [f"DENY ({count} reason{'s' if count != 1 else ''})"]
        lines.extend(f"  {reason.code}: {reason.message}" for reason in decision.reasons)
    lines.append(
        f"decision {decision.decision_id} at {data['evaluated_at']}, "
        f"policy {decision.policy_revision or '-'}"
    )
    return "\n".join(lines)


def _term(term: Mapping[str, Any]) -> str:
    if term.get("until") is not None:
        return f"{term['name']} until {term['until']}"
    return f"{term['name']} {term['seconds']} s"


def render_claims(claims: Mapping[str, Any], fmt: Format) -> str:
    """A claim set (its policy input form) as JSON, YAML-like indented text (pretty), or
    a table of its fields by path."""
    if fmt == "json":
        return json.dumps(claims, indent=2)
    if fmt == "table":
        return table(
            ("field", "value"), [(path, _scalar(value)) for path, value in _leaves("", claims)]
        )
    import yaml

    return yaml.safe_dump(dict(claims), sort_keys=False, allow_unicode=True, width=100).rstrip()


def _leaves(path: str, value: Any) -> list[tuple[str, Any]]:
    """``(path, value)`` for every field that holds no other, depth first."""
    if isinstance(value, Mapping) and value:
        out: list[tuple[str, Any]] = []
        for key, child in value.items():
            out.extend(_leaves(f"{path}.{key}" if path else str(key), child))
        return out
    if isinstance(value, list) and value:
        return [
            leaf for index, child in enumerate(value) for leaf in _leaves(f"{path}[{index}]", child)
        ]
    return [(path, value)]


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
