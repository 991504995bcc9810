"""The example claim sets under the example configuration give the documented decisions."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from attestpolicy.claims import ClaimSet
from attestpolicy.decision import decision_from_policy_result

EXAMPLES = Path(str(resources.files("attestpolicy") / "examples"))

Decide = Callable[[Mapping[str, Any], Mapping[str, Any]], Any]


def _claims(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        (EXAMPLES / "claims" / f"{name}.json").read_text(encoding="utf-8")
    )
    return document


def _input(name: str) -> dict[str, Any]:
    return ClaimSet.parse((EXAMPLES / "claims" / f"{name}.json").read_text()).to_input()


def _deny(*reasons: tuple[str, str]) -> dict[str, Any]:
    return {
        "allow": False,
        "ttl_seconds": 0,
        "reasons": [{"code": code, "message": message} for code, message in reasons],
        "ttl_bound_by": None,
        "valid_until": None,
        "ttl_terms": [],
        "revocable": [],
    }


def _revocable(claims: dict[str, Any]) -> list[list[str]]:
    """What an allow of these examples rests on (each has one keyless signature)."""
    return [
        ["image_digests", claims["image"]["digest"]],
        ["node_ids", claims["node"]["id"]],
        ["signer_subjects", claims["image"]["signatures"][0]["subject"]],
        ["spiffe_ids", claims["subject"]["spiffe_id"]],
    ]


def _expected(name: str) -> dict[str, Any]:
    claims = _claims(name)
    if name == "allow-fully-attested":
        return {
            "allow": True,
            "ttl_seconds": 900,
            "reasons": [],
            "ttl_bound_by": "default",
            "valid_until": "2026-11-22T10:04:00Z",
            "ttl_terms": [
                {"name": "default", "seconds": 900},
                {"name": "audience", "seconds": 1800},
                {"name": "workload", "seconds": 3600},
                {"name": "evidence_expiry", "until": "2026-11-22T11:00:00Z"},
            ],
            "revocable": _revocable(claims),
        }
    if name == "allow-ttl-bound-by-evidence":
        # runtime.expires_at is 10:05:00.5: 300.5 s floors to 300; valid_until is
        # 10:05:00.5 - min_ttl 60 s (before node.issued_at 09:59:50 + 300 s), exactly.
        return {
            "allow": True,
            "ttl_seconds": 300,
            "reasons": [],
            "ttl_bound_by": "evidence_expiry",
            "valid_until": "2026-11-22T10:04:00.5Z",
            "ttl_terms": [
                {"name": "request", "seconds": 600},
                {"name": "audience", "seconds": 900},
                {"name": "workload", "seconds": 1800},
                {"name": "evidence_expiry", "until": "2026-11-22T10:05:00.5Z"},
            ],
            "revocable": _revocable(claims),
        }
    messages = {
        "deny-tag-only": [
            ("image.digest_required", "image digest is missing or not a sha256 digest"),
            (
                "image.not_allowed",
                "image (none) is not allowed for workload"
                " spiffe://prod.example.com/ns/payments/sa/api",
            ),
            ("provenance.subject_mismatch", "provenance does not name image (none)"),
        ],
        "deny-untrusted-signer": [
            (
                "image.untrusted_signer",
                "no verified image signature is from a trusted, unrevoked signer",
            )
        ],
        "deny-stale-node": [
            (
                "node.stale",
                "node evidence issued at 2026-11-22T09:54:59Z is older than"
                " limits.max_evidence_age_seconds",
            )
        ],
        "deny-image-drift": [
            (
                "runtime.image_drift",
                f"runtime runs {claims['runtime']['image_digest']}, not the attested image"
                f" {claims['image']['digest']}",
            )
        ],
        "deny-unregistered": [
            (
                "subject.unregistered",
                "workload spiffe://prod.example.com/ns/payments/sa/debug-shell is not registered",
            )
        ],
        "deny-measurement-mismatch": [
            ("node.measurement_mismatch", "measurement pcr.sha256.7 differs from the baseline")
        ],
    }
    return _deny(*messages[name])


EXAMPLE_NAMES = sorted(path.stem for path in (EXAMPLES / "claims").glob("*.json"))


def test_every_example_has_an_expected_decision() -> None:
    assert len(EXAMPLE_NAMES) >= 8
    for name in EXAMPLE_NAMES:
        assert name.startswith(("allow-", "deny-")), name
        assert _expected(name)["allow"] is name.startswith("allow-")


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_claim_set_validates(name: str) -> None:
    claims = ClaimSet.parse((EXAMPLES / "claims" / f"{name}.json").read_bytes())
    assert claims.now is not None
    assert claims.to_input()["now"] == _claims(name)["now"]


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_decision(
    name: str, decide: Decide, example_config_document: dict[str, Any]
) -> None:
    result = decide(_input(name), example_config_document)
    assert result == _expected(name)


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_decision_parses_into_a_decision(
    name: str, decide: Decide, example_config_document: dict[str, Any]
) -> None:
    result = decide(_input(name), example_config_document)
    claims = ClaimSet.parse(_claims(name))
    assert claims.now is not None
    decision = decision_from_policy_result(result, policy_revision="test", evaluated_at=claims.now)
    expected = _expected(name)
    assert decision.allow is expected["allow"]
    assert decision.ttl_seconds == expected["ttl_seconds"]
    assert decision.ttl_bound_by == expected["ttl_bound_by"]
    assert [(r.code, r.message) for r in decision.reasons] == [
        (r["code"], r["message"]) for r in expected["reasons"]
    ]


def test_fully_attested_example_has_24_pcrs() -> None:
    node = _claims("allow-fully-attested")["node"]
    assert sorted(node["measurements"]) == sorted(f"pcr.sha256.{i}" for i in range(24))


def test_example_config_baselines_are_in_the_fully_attested_node(
    example_config_document: dict[str, Any],
) -> None:
    measurements = _claims("allow-fully-attested")["node"]["measurements"]
    for name, value in example_config_document["node_baselines"]["tpm"].items():
        assert measurements[name] == value


def test_example_config_without_limits_is_a_config_deny(
    decide: Decide, example_config_document: dict[str, Any]
) -> None:
    config = {k: v for k, v in example_config_document.items() if k != "limits"}
    result = decide(_input("allow-fully-attested"), config)
    assert result["allow"] is False
    assert {reason["code"] for reason in result["reasons"]} == {"config.invalid"}
