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


_PYDANTIC_ONLY = frozenset({"gt", "ge", "lt", "le", "max_length", "min_length"})
"""Constraint names pydantic publishes when it cannot state a bound in JSON Schema terms:
JSON Schema validators ignore them, so a bound written so is not published at all."""


def _keys(node: object) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {key for value in node.values() for key in _keys(value)}
    if isinstance(node, list):
        return {key for value in node for key in _keys(value)}
    return set()


@pytest.mark.parametrize("kind", ["claims", "evidence", "trust", "config"])
def test_every_bound_is_stated_in_json_schema_terms(kind: str) -> None:
    assert not _keys(_schema(kind)) & _PYDANTIC_ONLY


@pytest.mark.parametrize("ttl", [0, -1, 2**31, 1.5])
def test_requested_ttl_bounds_hold_in_the_schema_and_the_model(ttl: object) -> None:
    from attestpolicy.claims import ClaimSet
    from attestpolicy.errors import ClaimsError

    claims = json.loads((EXAMPLES / "claims" / "allow-fully-attested.json").read_text())
    claims["request"]["requested_ttl_seconds"] = ttl
    assert not jsonschema.Draft202012Validator(_schema("claims")).is_valid(claims)
    with pytest.raises(ClaimsError, match="requested_ttl_seconds"):
        ClaimSet.parse(claims)
    claims["request"]["requested_ttl_seconds"] = 2.0  # an integral float is the integer, in both
    assert jsonschema.Draft202012Validator(_schema("claims")).is_valid(claims)
    assert ClaimSet.parse(claims).request.requested_ttl_seconds == 2
