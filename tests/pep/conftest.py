"""Fixtures of the PEP tests."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["regorus", "opa"])
def engine(request: pytest.FixtureRequest) -> str:
    """Each in-process engine (OPA's needs its optional wheel)."""
    if request.param == "opa":
        request.getfixturevalue("requires_opa")
    name: str = request.param
    return name
