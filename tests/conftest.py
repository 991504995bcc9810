"""Shared fixtures: the realistic example claim set and the example configuration."""

from __future__ import annotations

import copy
import json
import os
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


REGORUS_ONLY_ENV = "ATTESTPOLICY_REGORUS_ONLY"
"""Set to 1 to skip (instead of fail) the tests that need OPA's engine."""


def opa_required() -> None:
    """Fail the calling test when OPA's engine is not installed.

    With ``ATTESTPOLICY_REGORUS_ONLY=1`` in the environment the test is skipped instead.
    """
    from attestpolicy.engine.opa import OPA_INSTALL_COMMAND, opa_available

    if opa_available():
        return
    if os.environ.get(REGORUS_ONLY_ENV) == "1":
        pytest.skip(f"OPA's engine is not installed and {REGORUS_ONLY_ENV}=1")
    pytest.fail(
        f"this test needs OPA's engine: {OPA_INSTALL_COMMAND} "
        f"(or set {REGORUS_ONLY_ENV}=1 to skip the tests that need it)"
    )


@pytest.fixture
def requires_opa() -> None:
    """Use with ``@pytest.mark.usefixtures("requires_opa")``: see :func:`opa_required`."""
    opa_required()


@pytest.fixture(params=["regorus", "opa"])
def engine(request: pytest.FixtureRequest) -> str:
    """Each in-process engine, by name (OPA's needs its optional wheel: see
    :func:`opa_required`)."""
    if request.param == "opa":
        opa_required()
    name: str = request.param
    return name
