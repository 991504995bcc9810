"""Fixtures of the bundle tests: a policy directory and signing keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from bundle.helpers import DECISION, HELPERS, MODULE_TEST, write_policy
from cryptography.hazmat.primitives.asymmetric import ec, rsa


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    return write_policy(
        tmp_path / "rego",
        {
            "attestpolicy/v1/decision.rego": DECISION,
            "attestpolicy/v1/helpers.rego": HELPERS,
            "attestpolicy/v1/decision_test.rego": MODULE_TEST,
        },
    )


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())
