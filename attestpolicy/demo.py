"""The quick-start demo: decide the bundled example claim sets and print a table."""

from __future__ import annotations

import json
from importlib import resources
from typing import TextIO

from attestpolicy.decision import Decision
from attestpolicy.pdp import PolicyDecisionPoint

__all__ = ["run_demo"]


def _examples() -> resources.abc.Traversable:
    return resources.files("attestpolicy") / "examples"


def format_table(rows: list[tuple[str, Decision]]) -> str:
    """Render (scenario, decision) rows as a plain-text table."""
    header = ("scenario", "decision", "ttl", "bound by", "valid until", "reasons")
    lines = [header]
    for name, decision in rows:
        lines.append(
            (
                name,
                "ALLOW" if decision.allow else "DENY",
                str(decision.ttl_seconds),
                decision.ttl_bound_by or "-",
                decision.to_json_dict()["valid_until"] or "-",
                ", ".join(decision.reason_codes) or "-",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for index, line in enumerate(lines):
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        out.append("  ".join([*cells, line[-1]]).rstrip())
        if index == 0:
            out.append("  ".join("-" * width for width in [*widths, len(header[-1])]))
    return "\n".join(out)


def run_demo(stream: TextIO) -> int:
    """Decide every example claim set with the example configuration; return 0."""
    examples = _examples()
    config = json.loads((examples / "config.json").read_text(encoding="utf-8"))
    claim_files = sorted(
        (entry for entry in (examples / "claims").iterdir() if entry.name.endswith(".json")),
        key=lambda entry: entry.name,
    )
    rows: list[tuple[str, Decision]] = []
    with PolicyDecisionPoint.local(config=config) as pdp:
        stream.write(f"policy revision {pdp.revision}\n\n")
        for entry in claim_files:
            decision = pdp.decide(entry.read_text(encoding="utf-8"))
            rows.append((entry.name.removesuffix(".json"), decision))
    stream.write(format_table(rows) + "\n\nreason details:\n")
    for name, decision in rows:
        for reason in decision.reasons:
            stream.write(f"  {name}: [{reason.code}] {reason.message}\n")
    return 0
