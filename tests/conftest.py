"""Shared fixtures: a realistic claim set and the example configuration."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "attestpolicy" / "examples"

DIGEST = "sha256:" + "ab" * 32


def realistic_claims() -> dict[str, Any]:
    """Image + provenance + TPM node with 24 PCRs + runtime, as a verifier would emit."""
    return {
        "now": "2026-11-22T10:00:00Z",
        "subject": {"spiffe_id": "spiffe://prod.example.com/ns/payments/sa/api"},
        "request": {"audience": "vault", "requested_ttl_seconds": 900},
        "image": {
            "reference": f"registry.example.com/payments/api@{DIGEST}",
            "digest": DIGEST,
            "signatures": [
                {
                    "verified": True,
                    "issuer": "https://token.actions.githubusercontent.com",
                    "subject": "https://github.com/example/payments/.github/workflows/release.yml@refs/heads/main",
                    "key_id": None,
                }
            ],
        },
        "provenance": {
            "verified": True,
            "builder_id": "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v2.1.0",
            "source_repo": "https://github.com/example/payments",
            "subject_digests": [DIGEST],
            "predicate_type": "https://slsa.dev/provenance/v1",
        },
        "node": {
            "kind": "tpm",
            "id": "node-7f3a",
            "verified": True,
            "nonce_verified": True,
            "issued_at": "2026-11-22T09:58:00Z",
            "expires_at": None,
            "measurements": {f"pcr.sha256.{i}": f"{i:02x}" * 32 for i in range(24)},
        },
        "runtime": {
            "verified": True,
            "namespace": "payments",
            "service_account": "api",
            "pod": "api-7d9f8b6c5-x2x7q",
            "image_digest": DIGEST,
            "expires_at": "2026-11-22T11:00:00Z",
        },
    }


@pytest.fixture
def claims() -> dict[str, Any]:
    """A fresh, mutable realistic claim set."""
    return copy.deepcopy(realistic_claims())


@pytest.fixture(scope="session")
def example_config() -> dict[str, Any]:
    """The shipped example configuration."""
    data: dict[str, Any] = json.loads((EXAMPLES / "config.json").read_text())
    return data
