"""ClaimSet validation: every bad input is a ClaimsError naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from attestpolicy.claims import (
    MAX_CLAIMS_BYTES,
    ClaimSet,
    format_timestamp,
    parse_timestamp,
)
from attestpolicy.errors import ClaimsError


def _expect_invalid(data: Any, field: str) -> ClaimsError:
    with pytest.raises(ClaimsError) as info:
        ClaimSet.parse(data)
    assert info.value.code == "input.invalid"
    assert info.value.field == field, str(info.value)
    assert str(info.value).startswith(f"{field}: ")
    return info.value


def test_realistic_claims_round_trip(claims: dict[str, Any]) -> None:
    parsed = ClaimSet.parse(claims)
    expected = claims | {"request": claims["request"] | {"requested_ttl_seconds": None}}
    assert parsed.to_input() == expected
    assert ClaimSet.parse(parsed.to_input()) == parsed
    assert ClaimSet.parse(json.dumps(claims)) == parsed
    assert ClaimSet.parse(json.dumps(claims).encode()) == parsed


def test_absent_classes_are_left_out_of_the_input(claims: dict[str, Any]) -> None:
    for part in ("image", "provenance", "node", "runtime", "now"):
        del claims[part]
    assert set(ClaimSet.parse(claims).to_input()) == {"subject", "request"}


def test_models_are_frozen(claims: dict[str, Any]) -> None:
    parsed = ClaimSet.parse(claims)
    with pytest.raises(ValueError, match="frozen"):
        parsed.request.audience = "other"  # type: ignore[misc]


def test_timestamps_are_normalised_to_utc_z(claims: dict[str, Any]) -> None:
    claims["node"]["issued_at"] = "2026-11-22T10:58:00.250000001+01:00"
    node = ClaimSet.parse(claims).to_input()["node"]
    assert node["issued_at"] == "2026-11-22T09:58:00.25Z"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda c: c["request"].update(requested_ttl_seconds=0), "request.requested_ttl_seconds"),
        (lambda c: c["request"].update(requested_ttl_seconds=-5), "request.requested_ttl_seconds"),
        (lambda c: c["request"].update(requested_ttl_seconds=1.5), "request.requested_ttl_seconds"),
        (
            lambda c: c["request"].update(requested_ttl_seconds="60"),
            "request.requested_ttl_seconds",
        ),
        (
            lambda c: c["request"].update(requested_ttl_seconds=True),
            "request.requested_ttl_seconds",
        ),
        (lambda c: c["request"].pop("audience"), "request.audience"),
        (lambda c: c["request"].update(audience=""), "request.audience"),
        (lambda c: c["request"].update(audience=7), "request.audience"),
        (lambda c: c.update(now="2026-11-22 10:00:00"), "now"),
        (lambda c: c.update(now="2026-11-22T10:00:00"), "now"),
        (lambda c: c.update(now="2026-13-22T10:00:00Z"), "now"),
        (lambda c: c.update(now=1795341600), "now"),
        (lambda c: c["node"].update(issued_at="yesterday"), "node.issued_at"),
        (lambda c: c["runtime"].update(expires_at="2026-11-22"), "runtime.expires_at"),
        (lambda c: c["image"].update(digest="sha512:" + "a" * 128), "image.digest"),
        (lambda c: c["image"].update(digest="md5:" + "a" * 32), "image.digest"),
        (lambda c: c["image"].update(digest="sha256:" + "A" * 64), "image.digest"),
        (lambda c: c["image"].update(digest="sha256:abc"), "image.digest"),
        (lambda c: c["runtime"].update(image_digest="sha1:" + "a" * 40), "runtime.image_digest"),
        (
            lambda c: c["provenance"].update(subject_digests=["sha384:" + "a" * 96]),
            "provenance.subject_digests.0",
        ),
        (
            lambda c: c["image"]["signatures"][0].update(verified="true"),
            "image.signatures.0.verified",
        ),
        (lambda c: c["image"].update(signatures={"verified": True}), "image.signatures"),
        (lambda c: c["node"].update(verified=1), "node.verified"),
        (lambda c: c["node"].update(kind="TPM!"), "node.kind"),
        (
            lambda c: c["node"]["measurements"].update({"pcr.sha256.0": "ZZ"}),
            "node.measurements.pcr.sha256.0",
        ),
        (
            lambda c: c["node"]["measurements"].update({"pcr.sha256.0": "ABCD"}),
            "node.measurements.pcr.sha256.0",
        ),
        (lambda c: c["subject"].update(spiffe_id="https://example.org/x"), "subject.spiffe_id"),
        (lambda c: c["subject"].update(spiffe_id="spiffe://Example.org/x"), "subject.spiffe_id"),
        (lambda c: c["subject"].update(spiffe_id="spiffe://example.org//x"), "subject.spiffe_id"),
        (lambda c: c["subject"].update(spiffe_id="spiffe://example.org/../x"), "subject.spiffe_id"),
        (lambda c: c.pop("subject"), "subject"),
        (lambda c: c.update(unexpected=True), "unexpected"),
        (lambda c: c["image"].update(tag="latest"), "image.tag"),
    ],
)
def test_invalid_fields_are_named(claims: dict[str, Any], mutate: Any, field: str) -> None:
    mutate(claims)
    _expect_invalid(claims, field)


def test_unknown_digest_algorithm_message(claims: dict[str, Any]) -> None:
    claims["image"]["digest"] = "sha512:" + "a" * 128
    assert "unsupported digest algorithm 'sha512'" in str(_expect_invalid(claims, "image.digest"))


@pytest.mark.parametrize("document", [[1, 2], "text", 3, None])
def test_non_object_documents(document: Any) -> None:
    _expect_invalid(json.dumps(document), "(document)")


@pytest.mark.parametrize("text", ["{", "", "{'a': 1}", "\xff"])
def test_malformed_json(text: str) -> None:
    _expect_invalid(text, "(document)")


def test_oversized_text_rejected_before_parsing() -> None:
    error = _expect_invalid(b" " * (MAX_CLAIMS_BYTES + 1), "(document)")
    assert "over the 1048576 byte limit" in str(error)


def test_oversized_mapping_rejected(claims: dict[str, Any]) -> None:
    # every field within its own bound, the whole document over 1 MiB
    claims["node"]["measurements"] = {f"m{i}": "ab" * 1000 for i in range(600)}
    error = _expect_invalid(claims, "(document)")
    assert "byte limit" in str(error)


def test_deeply_nested_json_is_an_error_not_a_crash() -> None:
    _expect_invalid("[" * 100_000 + "]" * 100_000, "(document)")


def test_with_now_and_schema() -> None:
    claims = ClaimSet.parse(
        {"subject": {"spiffe_id": "spiffe://a.example/x"}, "request": {"audience": "vault"}}
    )
    assert claims.now is None
    moment = datetime(2026, 11, 22, 11, 0, tzinfo=timezone(timedelta(hours=1)))
    assert claims.with_now(moment).to_input()["now"] == "2026-11-22T10:00:00Z"
    schema = ClaimSet.json_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    assert set(schema["required"]) == {"subject", "request"}
    assert schema["additionalProperties"] is False


def test_timestamp_helpers() -> None:
    assert (
        format_timestamp(parse_timestamp("2026-01-02T03:04:05.120Z")) == "2026-01-02T03:04:05.12Z"
    )
    assert parse_timestamp(datetime(2026, 1, 1, tzinfo=UTC)).tzinfo is UTC
    with pytest.raises(ValueError, match="offset"):
        parse_timestamp(datetime(2026, 1, 1))


# --- the same contract as the policy (inputs.rego, lib.rego) ---------------------------


def test_timestamp_pattern_is_the_policys() -> None:
    from attestpolicy.claims import RFC3339_PATTERN
    from attestpolicy.policy import default_policy_dir

    policy = default_policy_dir() / "attestpolicy" / "v1"
    assert f"_rfc3339 := `{RFC3339_PATTERN}`" in (policy / "lib.rego").read_text()
    # inputs.rego checks all the timestamps of a claim set at once, as a JSON array.
    inner = RFC3339_PATTERN.removeprefix("^").removesuffix("$")
    assert f'`^\\[(?:"{inner}"[,\\]])+$`' in (policy / "inputs.rego").read_text()


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-22T10:00:00Z\n",
        "2100-01-01T00:00:00Z",
        "1899-12-31T23:59:59Z",
        "2026-02-29T00:00:00Z",
        "٢٠٢٦-11-22T10:00:00Z",
        "2026-11-22T10:00:00+24:00",
    ],
)
def test_timestamps_outside_the_policys_pattern_are_invalid(
    claims: dict[str, Any], value: str
) -> None:
    _expect_invalid(claims | {"now": value}, "now")


@pytest.mark.parametrize(
    "spiffe_id",
    ["spiffe://acme.test/", "spiffe://acme.test/ns\n", "spiffe://acme.test/a//b", "spiffe://ACME"],
)
def test_spiffe_ids_outside_the_policys_pattern_are_invalid(
    claims: dict[str, Any], spiffe_id: str
) -> None:
    _expect_invalid(claims | {"subject": {"spiffe_id": spiffe_id}}, "subject.spiffe_id")


def test_null_collections_are_empty(claims: dict[str, Any]) -> None:
    claims["image"]["signatures"] = None
    claims["provenance"]["subject_digests"] = None
    claims["node"]["measurements"] = None
    parsed = ClaimSet.parse(claims)
    assert parsed.image is not None
    assert parsed.image.signatures == ()
    assert parsed.provenance is not None
    assert parsed.provenance.subject_digests == ()
    assert parsed.node is not None
    assert parsed.node.measurements == {}


def test_requested_ttl_integral_float_is_an_integer(claims: dict[str, Any]) -> None:
    claims["request"]["requested_ttl_seconds"] = 600.0
    parsed = ClaimSet.parse(claims)
    assert parsed.request.requested_ttl_seconds == 600
    assert isinstance(parsed.request.requested_ttl_seconds, int)
    for bad in (600.5, 2147483646.9, True, "600"):
        claims["request"]["requested_ttl_seconds"] = bad
        _expect_invalid(claims, "request.requested_ttl_seconds")
