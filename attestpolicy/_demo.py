"""The quick-start demo: verify the bundled evidence, decide, print readable tables.

Part one starts from real evidence (signed images, a TPM quote, a Kubernetes service
account token and a SPIFFE SVID, see ``examples/evidence/SOURCES.md``), verified at a
pinned time inside the vectors' validity windows and then again at the real current
time. Part two decides hand-written claim sets that exercise the policy's rules.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from typing import Final, TextIO

from attestpolicy._output import DECISION_HEADER, Format, decision_row, table
from attestpolicy.decision import Decision
from attestpolicy.pdp import PolicyDecisionPoint

__all__ = ["EVIDENCE_NONCE", "EVIDENCE_TIME", "run_demo"]

EVIDENCE_TIME: Final = datetime(2025, 11, 24, 7, 45, tzinfo=UTC)
"""When the example evidence is verified: inside every vector's validity window."""

EVIDENCE_NONCE: Final = bytes.fromhex("9009")
"""The freshness nonce the example TPM quote answers."""


def _examples() -> resources.abc.Traversable:
    return resources.files("attestpolicy") / "examples"


def format_table(rows: list[tuple[str, Decision]]) -> str:
    """Render (scenario, decision) rows as a plain-text table."""
    return table(("scenario", *DECISION_HEADER), [[name, *decision_row(d)] for name, d in rows])


def _evidence_rows() -> list[tuple[str, Decision]]:
    from attestpolicy.evidence.document import load_evidence_document, load_trust_config

    folder = _examples() / "evidence"
    config = json.loads((_examples() / "evidence-config.json").read_text(encoding="utf-8"))
    trust = load_trust_config((_examples() / "trust.json").read_bytes())
    documents = {
        entry.name.removesuffix(".json"): load_evidence_document(entry.read_bytes())
        for entry in sorted(folder.iterdir(), key=lambda entry: entry.name)
        if entry.name.endswith(".json")
    }
    rows: list[tuple[str, Decision]] = []
    with PolicyDecisionPoint.local(config=config) as pdp:
        for name, document in documents.items():
            decision = pdp.decide_evidence(document, trust, now=EVIDENCE_TIME, nonce=EVIDENCE_NONCE)
            rows.append((name, decision))
        allow = next((name for name in documents if name.startswith("allow")), None)
        if allow is not None:
            decision = pdp.decide_evidence(documents[allow], trust, nonce=EVIDENCE_NONCE)
            rows.append((f"{allow} (now)", decision))
    return rows


Section = tuple[str, list[tuple[str, Decision]]]
"""A titled list of (scenario, decision) rows."""


def _sections() -> tuple[list[Section], str]:
    """The demo's sections and the policy revision they were decided with."""
    evidence = (
        "1. From real evidence, verified at "
        f"{EVIDENCE_TIME.isoformat().replace('+00:00', 'Z')} with nonce "
        f"{EVIDENCE_NONCE.hex()} (last row: the same evidence at the current time)",
        _evidence_rows(),
    )
    examples = _examples()
    config = json.loads((examples / "config.json").read_text(encoding="utf-8"))
    claim_files = sorted(
        (entry for entry in (examples / "claims").iterdir() if entry.name.endswith(".json")),
        key=lambda entry: entry.name,
    )
    rows: list[tuple[str, Decision]] = []
    with PolicyDecisionPoint.local(config=config) as pdp:
        for entry in claim_files:
            decision = pdp.decide(entry.read_text(encoding="utf-8"))
            rows.append((entry.name.removesuffix(".json"), decision))
        revision = pdp.revision
    claims = ("2. From example claim sets (the policy's rules one by one)", rows)
    return [evidence, claims], revision


def run_demo(stream: TextIO, fmt: Format = "pretty") -> int:
    """Verify and decide the example evidence, then the example claim sets, and write
    them in ``fmt`` (pretty: tables and reason messages; table: the tables; json: every
    decision); return 0."""
    sections, revision = _sections()
    if fmt == "json":
        document = {
            "sections": [
                {
                    "title": title,
                    "rows": [
                        {"scenario": name, "decision": decision.to_json_dict()}
                        for name, decision in rows
                    ],
                }
                for title, rows in sections
            ],
            "policy_revision": revision,
        }
        stream.write(json.dumps(document, indent=2) + "\n")
        return 0
    for title, rows in sections:
        stream.write(f"{title}\n\n{format_table(rows)}\n\n")
        if fmt == "pretty":
            stream.write("reasons:\n")
            for name, decision in rows:
                for reason in decision.reasons:
                    stream.write(f"  {name}: [{reason.code}] {reason.message}\n")
            stream.write("\n")
    stream.write(f"policy revision {revision}\n")
    return 0
