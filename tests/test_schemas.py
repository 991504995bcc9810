"""The published JSON Schemas (docs/schemas/) match the models, and the examples validate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from attestpolicy.cli import main

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "docs" / "schemas"
EXAMPLES = ROOT / "attestpolicy" / "examples"


@pytest.mark.parametrize("kind", ["claims", "evidence", "trust", "config"])
def test_published_schema_is_current(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", kind]) == 0
    generated = capsys.readouterr().out
    published = (SCHEMAS / f"{kind}.schema.json").read_text()
    assert json.loads(published) == json.loads(generated), (
        f"docs/schemas/{kind}.schema.json is stale: "
        f"run `attestpolicy schema {kind} > docs/schemas/{kind}.schema.json`"
    )


def _schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / f"{kind}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def test_example_claim_sets_validate_against_the_schema() -> None:
    validator = jsonschema.Draft202012Validator(_schema("claims"))
    paths = sorted((EXAMPLES / "claims").glob("*.json"))
    assert paths
    for path in paths:
        validator.validate(json.loads(path.read_text()))
    bad = json.loads(paths[0].read_text()) | {"unexpected": 1}
    assert not validator.is_valid(bad)


def test_example_evidence_and_trust_validate_against_the_schemas() -> None:
    evidence = jsonschema.Draft202012Validator(_schema("evidence"))
    documents = sorted((EXAMPLES / "evidence").glob("*.json"))
    assert documents
    for path in documents:
        evidence.validate(json.loads(path.read_text()))
    jsonschema.Draft202012Validator(_schema("trust")).validate(
        json.loads((EXAMPLES / "trust.json").read_text())
    )
