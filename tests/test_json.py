"""Strict JSON: the one parser of every document the library reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from attestpolicy._json import loads_strict
from attestpolicy.claims import ClaimSet
from attestpolicy.config import load_config
from attestpolicy.errors import ClaimsError, ConfigError


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"a": 1, "a": 2}', "duplicate member 'a'"),
        ('{"a": {"b": true, "b": false}}', "duplicate member 'b'"),
        ("[NaN]", "NaN is not valid JSON"),
        ("[Infinity]", "Infinity is not valid JSON"),
        ('"\\ud800"', "lone surrogate"),
        ("\ud800", "lone surrogate"),
        (b"\xef\xbb\xbf{}", "BOM"),
        (b"{\xff}", "not UTF-8"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("{", "Expecting property name"),
    ],
)
def test_strict_json_rejects(text: str | bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        loads_strict(text)


def test_strict_json_accepts_json() -> None:
    assert loads_strict('{"a": [1, 2.5, "\\ud83d\\ude00", null, true]}') == {
        "a": [1, 2.5, "\U0001f600", None, True]
    }
    assert loads_strict(b"[1.0]", parse_number=str) == ["1.0"]


def test_claim_set_with_a_duplicate_member_is_invalid(claims: dict[str, Any]) -> None:
    text = json.dumps(claims)
    forged = text.replace('"verified": true', '"verified": false, "verified": true', 1)
    with pytest.raises(ClaimsError, match="duplicate member 'verified'") as info:
        ClaimSet.parse(forged)
    assert info.value.code == "input.invalid"


def test_configuration_with_a_duplicate_member_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"limits": {}, "limits": {}}')
    with pytest.raises(ConfigError, match="duplicate member 'limits'"):
        load_config(path)
