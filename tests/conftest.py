"""Shared fixtures: the realistic example claim set and the example configuration."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "attestpolicy" / "examples"


def realistic_claims() -> dict[str, Any]:
    """Image + provenance + TPM node with 24 PCRs + runtime (an allow under the example config)."""
    data: dict[str, Any] = json.loads(
        (EXAMPLES / "claims" / "allow-fully-attested.json").read_text()
    )
    return data


@pytest.fixture
def claims() -> dict[str, Any]:
    """A fresh, mutable realistic claim set."""
    return copy.deepcopy(realistic_claims())


@pytest.fixture(scope="session")
def example_config() -> dict[str, Any]:
    """The shipped example configuration."""
    data: dict[str, Any] = json.loads((EXAMPLES / "config.json").read_text())
    return data
