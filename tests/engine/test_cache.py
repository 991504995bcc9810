"""The decision cache: every test runs against the compiled cache and its pure-Python twin.

A small model of the policy's time rules (``oracle``) says what a fresh evaluation would
return at any instant, with the TTL terms and revocable values the policy attaches to an
allow; the cache must either miss or return exactly that, must never serve an allow the
oracle would deny, and must drop an allow when one of its revocable values is revoked.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import sysconfig
import textwrap
import threading
import time
import types
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from attestpolicy.claims import format_timestamp, parse_timestamp
from attestpolicy.decision import Decision, TtlTerm, decision_from_policy_result
from attestpolicy.engine import cache as cache_module
from attestpolicy.engine._cache_key import MAX_DEPTH
from attestpolicy.engine.cache import (
    IMPL_ENV_VAR,
    CacheImplementation,
    PythonDecisionCache,
    load_implementation,
)

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
REV = "policy=sha256:0011223344556677;config=sha256:8899aabbccddeeff;engine=0.1.0"
SECOND = timedelta(seconds=1)
US = timedelta(microseconds=1)

# The policy limits the oracle uses (as in the shipped configuration's shape).
MAX_EVIDENCE_AGE = 600
MIN_TTL = 60
DEFAULT_TTL = 3600
AUDIENCE_CAPS = {"vault.example.org": 900, "db.example.org": 1200}
WORKLOAD_CAP = 1800

IMPLEMENTATIONS = ("python", "cython")


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest) -> CacheImplementation:
    """Each implementation in turn; the compiled one must be built unless opted out."""
    name: str = request.param
    if name == "cython" and os.environ.get(IMPL_ENV_VAR) == "python":
        pytest.skip(f"{IMPL_ENV_VAR}=python: the compiled cache is deliberately not used")
    return load_implementation(name)


def both() -> list[CacheImplementation]:
    """Both implementations, for tests that compare them."""
    if os.environ.get(IMPL_ENV_VAR) == "python":
        pytest.skip(f"{IMPL_ENV_VAR}=python: the compiled cache is deliberately not used")
    return [load_implementation(name) for name in IMPLEMENTATIONS]


def digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def keyless(subject: str, *, verified: bool = True) -> dict[str, Any]:
    """A keyless (Fulcio) image signature: an issuer and a subject, no key id."""
    return {
        "verified": verified,
        "issuer": "https://token.actions.githubusercontent.com",
        "subject": subject,
        "key_id": None,
    }


def key_signed(key_id: str, *, verified: bool = True) -> dict[str, Any]:
    """An image signature made with a configured key: a key id, no issuer or subject."""
    return {"verified": verified, "issuer": None, "subject": None, "key_id": key_id}


SIGNER = "https://github.com/example/payments/.github/workflows/release.yml@refs/tags/v1.4.2"


def realistic(
    *,
    spiffe_id: str = "spiffe://prod.example.org/ns/payments/sa/api",
    audience: str = "vault.example.org",
    requested_ttl: int | None = None,
    image_seed: str = "payments-api:1.4.2",
    signatures: list[dict[str, Any]] | None = None,
    node_id: str = "node-7f3a9c",
    issued_at: datetime = NOW - timedelta(minutes=2),
    node_expires_at: datetime | None = NOW + timedelta(minutes=30),
    runtime_expires_at: datetime | None = NOW + timedelta(hours=1),
) -> dict[str, Any]:
    """Image + provenance + TPM node with 24 PCRs + runtime: about 50 leaves."""
    image_digest = digest(image_seed)
    return {
        "now": format_timestamp(NOW),
        "subject": {"spiffe_id": spiffe_id},
        "request": {"audience": audience, "requested_ttl_seconds": requested_ttl},
        "image": {
            "reference": f"registry.example.org/payments/api@{image_digest}",
            "digest": image_digest,
            "signatures": [keyless(SIGNER)] if signatures is None else signatures,
        },
        "provenance": {
            "verified": True,
            "builder_id": "https://github.com/slsa-framework/slsa-github-generator/.github/"
            "workflows/generator_container_slsa3.yml@refs/tags/v2.1.0",
            "source_repo": "https://github.com/example/payments",
            "subject_digests": [image_digest, digest(image_seed + "-debug")],
            "predicate_type": "https://slsa.dev/provenance/v1",
        },
        "node": {
            "kind": "tpm",
            "id": node_id,
            "verified": True,
            "nonce_verified": True,
            "issued_at": format_timestamp(issued_at),
            "expires_at": None if node_expires_at is None else format_timestamp(node_expires_at),
            "measurements": {
                f"pcr{i}": hashlib.sha256(f"{node_id}/pcr{i}".encode()).hexdigest()
                for i in range(24)
            },
        },
        "runtime": {
            "verified": True,
            "namespace": "payments",
            "service_account": "api",
            "pod": "api-6d9f7b8c4d-x2x7q",
            "image_digest": image_digest,
            "expires_at": None
            if runtime_expires_at is None
            else format_timestamp(runtime_expires_at),
        },
    }


def evidence_expiry(claims: dict[str, Any]) -> datetime | None:
    """The earliest of node.expires_at and runtime.expires_at (the evidence_expiry term)."""
    stamps = [
        parse_timestamp(part["expires_at"])
        for part in (claims.get("node"), claims.get("runtime"))
        if part and part.get("expires_at")
    ]
    return min(stamps, default=None)


def fixed(name: str, seconds: int) -> TtlTerm:
    return TtlTerm(name=name, seconds=seconds)


def shrinking(name: str, until: datetime) -> TtlTerm:
    return TtlTerm(name=name, until=until)


def terms_at(terms: Sequence[TtlTerm], now: datetime) -> tuple[int, str]:
    """The policy's TTL rule (ttl.rego): the shortest term at ``now``, the first on a tie;
    a shrinking term is worth the whole seconds left until its ``until``."""
    best: tuple[int, str] | None = None
    for term in terms:
        value = term.seconds if term.until is None else (term.until - now) // SECOND
        assert value is not None
        if best is None or value < best[0]:
            best = (value, term.name)
    assert best is not None
    return best


def revocable_of(claims: dict[str, Any]) -> list[list[str]]:
    """The values an allow rests on, as the _revocable rules of subject/image/node.rego
    name them: the SPIFFE ID, the image digest, the subject and key id of every verified
    signature, the node id (each only when it is a string). Not the runtime's image digest,
    not the provenance's subject digests, not unverified signatures."""
    found: set[tuple[str, str]] = set()

    def add(member: str, value: object) -> None:
        if isinstance(value, str):
            found.add((member, value))

    add("spiffe_ids", claims["subject"]["spiffe_id"])
    image = claims.get("image") or {}
    add("image_digests", image.get("digest"))
    for signature in image.get("signatures") or []:
        if signature.get("verified") is True:
            add("signer_subjects", signature.get("subject"))
            add("signer_subjects", signature.get("key_id"))
    add("node_ids", (claims.get("node") or {}).get("id"))
    return [[member, value] for member, value in sorted(found)]


def oracle(claims: dict[str, Any], now: datetime) -> Decision:
    """What the policy gives at ``now`` (a small model of ttl.rego, node.rego and the
    _revocable rules), parsed the way every evaluator parses it."""
    expiry = evidence_expiry(claims)
    issued_at = parse_timestamp(claims["node"]["issued_at"])
    requested = claims["request"].get("requested_ttl_seconds")
    terms = [
        fixed("request", requested) if requested is not None else fixed("default", DEFAULT_TTL),
        fixed("audience", AUDIENCE_CAPS[claims["request"]["audience"]]),
        fixed("workload", WORKLOAD_CAP),
    ]
    if expiry is not None:
        terms.append(shrinking("evidence_expiry", expiry))
    ttl, bound_by = terms_at(terms, now)
    reasons = []
    if now - issued_at > timedelta(seconds=MAX_EVIDENCE_AGE):
        reasons.append({"code": "node.stale", "message": "node evidence is too old"})
    if expiry is not None and expiry <= now:
        reasons.append({"code": "node.expired", "message": "evidence expired"})
    elif ttl < MIN_TTL:
        reasons.append({"code": "ttl.too_short", "message": f"ttl {ttl} < {MIN_TTL}"})
    limits = [issued_at + timedelta(seconds=MAX_EVIDENCE_AGE)]
    if expiry is not None:
        limits.append(expiry - timedelta(seconds=MIN_TTL))
    result: dict[str, Any]
    if reasons:
        result = {
            "allow": False,
            "ttl_seconds": 0,
            "reasons": reasons,
            "ttl_bound_by": None,
            "valid_until": None,
            "ttl_terms": [],
            "revocable": [],
        }
    else:
        result = {
            "allow": True,
            "ttl_seconds": ttl,
            "reasons": [],
            "ttl_bound_by": bound_by,
            "valid_until": format_timestamp(min(limits)),
            "ttl_terms": [term.model_dump(mode="json", exclude_none=True) for term in terms],
            "revocable": revocable_of(claims),
        }
    return decision_from_policy_result(result, policy_revision=REV, evaluated_at=now)


def evaluate_and_store(
    cache: PythonDecisionCache, claims: dict[str, Any], now: datetime, revision: str = REV
) -> Decision:
    """What the PDP does on a miss: evaluate (here: the oracle) and store."""
    ticket, cached = cache.lookup(claims, revision, now)
    assert cached is None
    decision = oracle(claims, now)
    cache.store(ticket, decision, now=now)
    return decision


def allow(
    *terms: TtlTerm,
    valid_until: datetime | None = None,
    revocable: tuple[tuple[str, str], ...] | None = (("node_ids", "node-7f3a9c"),),
    now: datetime = NOW,
) -> Decision:
    """An allow made at ``now`` whose TTL and bounding term are what ``terms`` give then."""
    ttl, bound_by = terms_at(terms, now)
    return Decision(
        allow=True,
        ttl_seconds=ttl,
        ttl_bound_by=bound_by,
        valid_until=valid_until,
        policy_revision=REV,
        evaluated_at=now,
        ttl_terms=terms,
        revocable=revocable,
    )


def same_answer(served: Decision, fresh: Decision) -> bool:
    """Equal in everything but the per-call decision_id."""
    ignore = {"decision_id"}
    return served.model_dump(exclude=ignore) == fresh.model_dump(exclude=ignore)


def reorder(value: Any, rng: random.Random) -> Any:
    """The same JSON value with every object's members in a shuffled insertion order."""
    if type(value) is dict:
        items = list(value.items())
        rng.shuffle(items)
        return {name: reorder(item, rng) for name, item in items}
    if type(value) is list:
        return [reorder(item, rng) for item in value]
    return value


def strictly_equal(a: Any, b: Any) -> bool:
    """JSON equality that keeps types (1 != 1.0 != True) and float bits (0.0 != -0.0)."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(strictly_equal(a[k], b[k]) for k in a)
    if type(a) is list:
        return len(a) == len(b) and all(strictly_equal(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is float:
        return struct.pack(">d", a) == struct.pack(">d", b)
    return bool(a == b)


json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)
claim_sets = st.dictionaries(st.text(max_size=8), json_values, max_size=6)


# --- the canonical key -------------------------------------------------------


def test_encoding_is_the_documented_bytes(impl: CacheImplementation) -> None:
    claims = {"now": "2026-11-22T10:00:00Z", "b": [True, None, 1.5], "a": -1, "é": "x"}
    expected = (
        b"attestpolicy.cache.key.v1\x00"
        + b"s\x03rev"
        + b"d\x03"
        + b"s\x01a"
        + b"i"
        + b"\xff" * 8
        + b"s\x01b"
        + b"l\x03TNf"
        + struct.pack(">d", 1.5)
        + b"s\x02\xc3\xa9"
        + b"s\x01x"
    )
    assert impl.canonical_encoding(claims, "rev") == expected
    assert impl.compute_key(claims, "rev") == hashlib.sha256(expected).digest()


def test_long_lengths_and_big_integers_are_encoded_canonically(
    impl: CacheImplementation,
) -> None:
    text = "y" * 300  # LEB128 length 0xAC 0x02
    encoding = impl.canonical_encoding({"k": [text, 2**64, -(2**63) - 1, 2**63 - 1]}, "")
    assert encoding == (
        b"attestpolicy.cache.key.v1\x00s\x00d\x01s\x01kl\x04"
        + b"s\xac\x02"
        + text.encode()
        + b"I\x09"
        + (2**64).to_bytes(9, "big", signed=True)
        + b"I\x09"
        + (-(2**63) - 1).to_bytes(9, "big", signed=True)
        + b"i"
        + (2**63 - 1).to_bytes(8, "big", signed=True)
    )


def test_key_ignores_member_order_and_top_level_now(impl: CacheImplementation) -> None:
    claims = realistic()
    shuffled = reorder(claims, random.Random(7))
    assert list(shuffled) != list(claims)
    shuffled["now"] = "2030-01-01T00:00:00Z"
    assert impl.compute_key(shuffled, REV) == impl.compute_key(claims, REV)
    del shuffled["now"]
    assert impl.compute_key(shuffled, REV) == impl.compute_key(claims, REV)


def test_now_is_only_excluded_at_the_top_level(impl: CacheImplementation) -> None:
    first = {"node": {"now": "a"}}
    second = {"node": {"now": "b"}}
    assert impl.compute_key(first, REV) != impl.compute_key(second, REV)


def test_json_types_never_collide(impl: CacheImplementation) -> None:
    values: list[Any] = [1, 1.0, True, "1", 0, 0.0, -0.0, False, "", None, [], {}, [None], "T"]
    keys = {impl.compute_key({"v": value}, REV) for value in values}
    assert len(keys) == len(values)


def test_nesting_and_array_order_are_part_of_the_key(impl: CacheImplementation) -> None:
    variants: list[dict[str, Any]] = [
        {"a": [1, 2]},
        {"a": [2, 1]},
        {"a": [[1], 2]},
        {"a": [[1, 2]]},
        {"a": "b"},
        {"a": ["b"]},
        {"a": {"b": None}},
        {"ab": None},
        {"a": None, "b": None},
    ]
    keys = {impl.compute_key(variant, REV) for variant in variants}
    assert len(keys) == len(variants)


def test_revision_is_part_of_the_key(impl: CacheImplementation) -> None:
    claims = realistic()
    assert impl.compute_key(claims, REV) != impl.compute_key(claims, REV + "x")
    # the revision is length-prefixed: moving bytes between it and the claims changes the key
    assert impl.compute_key({"a": 1}, "r") != impl.compute_key({"a": 1}, "r\x00")


def test_any_mapping_is_accepted_at_the_top_level(impl: CacheImplementation) -> None:
    claims = realistic()
    view = types.MappingProxyType(claims)
    assert impl.compute_key(view, REV) == impl.compute_key(claims, REV)


@pytest.mark.parametrize(
    "bad",
    [(1, 2), {1, 2}, b"bytes", bytearray(b"x"), object(), 1j, Decision.deny("x", "y")],
    ids=["tuple", "set", "bytes", "bytearray", "object", "complex", "model"],
)
def test_non_json_types_are_type_errors(impl: CacheImplementation, bad: object) -> None:
    with pytest.raises(TypeError, match="JSON-like"):
        impl.compute_key({"a": {"b": [bad]}}, REV)


def test_subclasses_of_json_types_are_type_errors(impl: CacheImplementation) -> None:
    class Text(str):
        pass

    class Items(list[int]):
        pass

    for bad in (Text("x"), Items([1])):
        with pytest.raises(TypeError):
            impl.compute_key({"a": bad}, REV)


def test_non_string_object_keys_are_type_errors(impl: CacheImplementation) -> None:
    with pytest.raises(TypeError, match="keys must be str"):
        impl.compute_key({"a": {1: "x"}}, REV)
    with pytest.raises(TypeError, match="keys must be str"):
        impl.compute_key({None: "x"}, REV)  # type: ignore[dict-item]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_floats_are_value_errors(impl: CacheImplementation, bad: float) -> None:
    with pytest.raises(ValueError, match="not a JSON number"):
        impl.compute_key({"a": [bad]}, REV)


def test_lone_surrogates_are_value_errors(impl: CacheImplementation) -> None:
    with pytest.raises(UnicodeEncodeError):
        impl.compute_key({"a": "\ud800"}, REV)
    with pytest.raises(UnicodeEncodeError):
        impl.compute_key({"\udfff": 1}, REV)


def test_wrong_claims_or_revision_types(impl: CacheImplementation) -> None:
    with pytest.raises(TypeError, match="mapping"):
        impl.compute_key([("a", 1)], REV)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="revision"):
        impl.compute_key({"a": 1}, b"rev")  # type: ignore[arg-type]


def test_nesting_limit_is_the_same_in_both() -> None:
    def nested(depth: int) -> dict[str, Any]:
        value: Any = "leaf"
        for _ in range(depth):
            value = [value]
        return {"a": value}

    limit = MAX_DEPTH
    for implementation in both():
        implementation.compute_key(nested(limit - 1), REV)
        with pytest.raises(ValueError, match="deeper"):
            implementation.compute_key(nested(limit), REV)
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    for implementation in both():
        with pytest.raises(ValueError, match="deeper"):
            implementation.compute_key(cyclic, REV)


@settings(max_examples=1000, deadline=None)
@given(claims=claim_sets, revision=st.text(max_size=10))
def test_compiled_and_twin_encodings_are_identical(claims: dict[str, Any], revision: str) -> None:
    python, cython = both()
    encoding = python.canonical_encoding(claims, revision)
    assert cython.canonical_encoding(claims, revision) == encoding
    assert cython.compute_key(claims, revision) == python.compute_key(claims, revision)
    assert python.compute_key(claims, revision) == hashlib.sha256(encoding).digest()


@settings(max_examples=300, deadline=None)
@given(first=json_values, second=json_values)
def test_encoding_is_injective(first: Any, second: Any) -> None:
    for implementation in both():
        same_key = implementation.compute_key({"v": first}, REV) == implementation.compute_key(
            {"v": second}, REV
        )
        assert same_key == strictly_equal(first, second)


@settings(max_examples=200, deadline=None)
@given(claims=claim_sets, seed=st.integers(0, 2**32))
def test_member_order_never_matters(claims: dict[str, Any], seed: int) -> None:
    shuffled = reorder(claims, random.Random(seed))
    for implementation in both():
        assert implementation.compute_key(shuffled, REV) == implementation.compute_key(claims, REV)


def _leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if type(value) is dict:
        for name, item in value.items():
            yield from _leaf_paths(item, (*path, name))
    elif type(value) is list:
        for index, item in enumerate(value):
            yield from _leaf_paths(item, (*path, index))
    elif path and path != ("now",):
        yield path


REALISTIC_LEAVES = list(_leaf_paths(realistic()))


def test_realistic_claim_set_size() -> None:
    assert 40 <= len(REALISTIC_LEAVES) <= 60


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(REALISTIC_LEAVES), replacement=json_leaves)
def test_any_changed_claim_misses(path: tuple[Any, ...], replacement: Any) -> None:
    claims = realistic()
    changed = copy.deepcopy(claims)
    parent = changed
    for step in path[:-1]:
        parent = parent[step]
    if strictly_equal(parent[path[-1]], replacement):
        replacement = [replacement]
    parent[path[-1]] = replacement
    for implementation in both():
        cache = implementation.cache_class()
        evaluate_and_store(cache, claims, NOW)
        assert cache.get(claims, REV, NOW) is not None
        assert cache.get(changed, REV, NOW) is None


# --- serving: hits, TTL recomputation, expiry -----------------------------------


def test_same_claims_in_another_order_hit(impl: CacheImplementation) -> None:
    cache = impl.cache_class()
    claims = realistic()
    stored = evaluate_and_store(cache, claims, NOW)
    assert stored.allow
    served = cache.get(reorder(claims, random.Random(3)), REV, NOW + SECOND)
    assert served is not None
    assert same_answer(served, oracle(claims, NOW + SECOND))


def test_a_hit_is_a_fresh_decision(impl: CacheImplementation) -> None:
    cache = impl.cache_class()
    claims = realistic()
    stored = evaluate_and_store(cache, claims, NOW)
    later = NOW + timedelta(seconds=30)
    first = cache.get(claims, REV, later)
    second = cache.get(claims, REV, later)
    assert first is not None
    assert second is not None
    assert isinstance(first, Decision)
    assert first.evaluated_at == later
    assert first.policy_revision == stored.policy_revision == REV
    assert first.reasons == ()
    assert first.valid_until == stored.valid_until
    # what the allow rests on travels with every hit, so a broker can record it
    assert first.ttl_terms == stored.ttl_terms
    assert [term.name for term in first.ttl_terms or ()] == [
        "default",
        "audience",
        "workload",
        "evidence_expiry",
    ]
    assert (
        first.revocable
        == stored.revocable
        == (
            ("image_digests", claims["image"]["digest"]),
            ("node_ids", claims["node"]["id"]),
            ("signer_subjects", SIGNER),
            ("spiffe_ids", claims["subject"]["spiffe_id"]),
        )
    )
    assert len({stored.decision_id, first.decision_id, second.decision_id}) == 3
    assert uuid.UUID(first.decision_id).version == 4
    assert str(uuid.UUID(first.decision_id)) == first.decision_id
    # indistinguishable from a validated Decision
    assert Decision.model_validate(first.model_dump()) == first
    assert Decision.model_validate_json(first.model_dump_json()) == first
    assert first.model_fields_set == set(Decision.model_fields)
    assert repr(Decision.model_validate(first.model_dump())) == repr(first)
    with pytest.raises(ValueError, match="frozen"):
        first.allow = False  # type: ignore[misc]


def test_the_fast_decision_path_assumptions_hold() -> None:
    # hits build Decisions without validation: that is only right for a plain frozen model
    assert Decision.__private_attributes__ == {}
    assert Decision.__pydantic_post_init__ is None
    assert Decision.model_config.get("frozen") is True
    assert Decision.model_config.get("extra") == "forbid"
    assert not Decision.__pydantic_decorators__.model_validators
    assert not Decision.__pydantic_decorators__.field_validators


def test_evidence_bound_ttl_shrinks_and_expires_at_valid_until(impl: CacheImplementation) -> None:
    cache = impl.cache_class()
    claims = realistic(node_expires_at=NOW + timedelta(seconds=500, microseconds=500_000))
    stored = evaluate_and_store(cache, claims, NOW)
    assert (stored.ttl_seconds, stored.ttl_bound_by) == (500, "evidence_expiry")
    assert stored.valid_until == NOW + timedelta(seconds=440, microseconds=500_000)
    for offset in (timedelta(seconds=1), timedelta(seconds=100, microseconds=500_001)):
        served = cache.get(claims, REV, NOW + offset)
        assert served is not None
        assert (served.ttl_seconds, served.ttl_bound_by) == (
            math.floor((timedelta(seconds=500, microseconds=500_000) - offset) / SECOND),
            "evidence_expiry",
        )
    assert stored.valid_until is not None
    assert cache.get(claims, REV, stored.valid_until - US) is not None
    assert cache.get(claims, REV, stored.valid_until) is None
    stats = cache.stats()
    assert (stats.entries, stats.expirations) == (0, 1)
    # the oracle agrees that the decision is no longer servable from the cache
    assert not oracle(claims, stored.valid_until + 10 * SECOND).allow


def test_cap_bound_ttl_hands_over_to_evidence_expiry_on_ties(impl: CacheImplementation) -> None:
    # audience cap 900; evidence expires 960.5 s after NOW
    claims = realistic(node_expires_at=NOW + timedelta(seconds=960, microseconds=500_000))
    cache = impl.cache_class()
    stored = evaluate_and_store(cache, claims, NOW)
    assert (stored.ttl_seconds, stored.ttl_bound_by) == (900, "audience")
    checks = {
        timedelta(seconds=60): (900, "audience"),  # floor(900.5) = 900: a tie, the cap wins
        timedelta(seconds=60, microseconds=500_001): (899, "evidence_expiry"),
        timedelta(seconds=61): (899, "evidence_expiry"),
        timedelta(seconds=30): (900, "audience"),
    }
    for offset, expected in checks.items():
        served = cache.get(claims, REV, NOW + offset)
        assert served is not None
        assert (served.ttl_seconds, served.ttl_bound_by) == expected
        assert same_answer(served, oracle(claims, NOW + offset))


def test_cap_without_evidence_expiry_is_constant(impl: CacheImplementation) -> None:
    claims = realistic(node_expires_at=None, runtime_expires_at=None, requested_ttl=300)
    cache = impl.cache_class()
    stored = evaluate_and_store(cache, claims, NOW)
    assert (stored.ttl_seconds, stored.ttl_bound_by) == (300, "request")
    assert stored.valid_until == parse_timestamp(claims["node"]["issued_at"]) + timedelta(
        seconds=MAX_EVIDENCE_AGE
    )
    served = cache.get(claims, REV, stored.valid_until - US)
    assert served is not None
    assert (served.ttl_seconds, served.ttl_bound_by) == (300, "request")


def test_no_valid_until_still_stops_when_the_ttl_reaches_zero(impl: CacheImplementation) -> None:
    cache = impl.cache_class()
    claims = realistic()
    expires = NOW + timedelta(seconds=100, microseconds=250)
    decision = allow(shrinking("evidence_expiry", expires), valid_until=None)
    assert (decision.ttl_seconds, decision.ttl_bound_by) == (100, "evidence_expiry")
    cache.put(claims, REV, decision, now=NOW)
    served = cache.get(claims, REV, expires - SECOND)
    assert served is not None
    assert (served.ttl_seconds, served.ttl_bound_by) == (1, "evidence_expiry")
    assert cache.get(claims, REV, expires - SECOND + US) is None
    assert cache.stats().expirations == 1


def test_a_tie_goes_to_the_earlier_term_whichever_kind(impl: CacheImplementation) -> None:
    # The shrinking term comes first here (the cache knows no term names or order of
    # its own): it takes over from the fixed one as soon as they tie, not one second later.
    terms = (shrinking("quote_expiry", NOW + timedelta(seconds=1000.5)), fixed("lease", 900))
    cache = impl.cache_class()
    cache.put(realistic(), REV, allow(*terms), now=NOW)
    checks = {
        timedelta(0): (900, "lease"),
        timedelta(seconds=99.5): (900, "lease"),  # floor(901.0) = 901: the lease is shorter
        timedelta(seconds=99.5) + US: (900, "quote_expiry"),  # floor(900.999999): a tie
        timedelta(seconds=100.5): (900, "quote_expiry"),
        timedelta(seconds=100.5) + US: (899, "quote_expiry"),
    }
    for offset, expected in checks.items():
        assert terms_at(terms, NOW + offset) == expected
        served = cache.get(realistic(), REV, NOW + offset)
        assert served is not None
        assert (served.ttl_seconds, served.ttl_bound_by) == expected
        assert served.ttl_terms == terms


def test_an_allow_with_several_shrinking_terms(impl: CacheImplementation) -> None:
    node, runtime = NOW + timedelta(seconds=400.9), NOW + timedelta(seconds=400.25)
    terms = (fixed("audience", 900), shrinking("node", node), shrinking("runtime", runtime))
    cache = impl.cache_class()
    claims = realistic()
    stored = allow(*terms, valid_until=NOW + timedelta(hours=1))
    assert (stored.ttl_seconds, stored.ttl_bound_by) == (400, "node")  # a tie: the first
    cache.put(claims, REV, stored, now=NOW)
    checks = {
        timedelta(seconds=0.25): (400, "node"),  # 400.65 and 400.0: a tie again
        timedelta(seconds=0.25) + US: (399, "runtime"),
        timedelta(seconds=399.25): (1, "node"),  # 1.65 and 1.0 both floor to 1
    }
    for offset, expected in checks.items():
        assert terms_at(terms, NOW + offset) == expected
        served = cache.get(claims, REV, NOW + offset)
        assert served is not None
        assert (served.ttl_seconds, served.ttl_bound_by) == expected
        assert served.ttl_terms == terms
    # the runtime term reaches 0 first: the entry goes, an hour before its valid_until
    assert terms_at(terms, runtime - SECOND + US) == (0, "runtime")
    assert cache.get(claims, REV, runtime - SECOND + US) is None
    stats = cache.stats()
    assert (stats.entries, stats.expirations) == (0, 1)


@settings(max_examples=150, deadline=None)
@given(
    kinds=st.lists(
        st.tuples(st.sampled_from("abc"), st.booleans(), st.integers(1, 3_000_000_000)),
        min_size=1,
        max_size=4,
    ),
    valid_until=st.none() | st.integers(-1_000_000, 3_000_000_000),
    later=st.integers(-1_000_000, 3_100_000_000),
)
def test_a_hit_recomputes_the_ttl_from_the_stored_terms(
    kinds: list[tuple[str, bool, int]], valid_until: int | None, later: int
) -> None:
    """Terms, valid_until and the lookup instant in microseconds from NOW: a hit has
    exactly the TTL and bounding term the terms give at that instant, or is a miss."""
    terms = tuple(
        shrinking(name, NOW + amount * US) if shrinks else fixed(name, amount // 1_000_000 + 1)
        for name, shrinks, amount in kinds
    )
    assume(terms_at(terms, NOW)[0] > 0)  # an allow has a positive TTL
    decision = allow(*terms, valid_until=None if valid_until is None else NOW + valid_until * US)
    then = NOW + later * US
    ttl, bound_by = terms_at(terms, then)
    stays = valid_until is None or valid_until > 0
    for implementation in both():
        cache = implementation.cache_class()
        ticket, _ = cache.lookup({"a": 1}, REV, NOW)
        assert cache.store(ticket, decision, now=NOW) is stays
        served = cache.get({"a": 1}, REV, then)
        if not stays or later < 0 or ttl <= 0 or (valid_until is not None and later >= valid_until):
            assert served is None
        else:
            assert served is not None
            assert (served.ttl_seconds, served.ttl_bound_by) == (ttl, bound_by)
            assert same_answer(
                served,
                decision.model_copy(
                    update={"ttl_seconds": ttl, "ttl_bound_by": bound_by, "evaluated_at": then}
                ),
            )


def test_a_clock_going_back_misses_without_dropping(impl: CacheImplementation) -> None:
    cache = impl.cache_class()
    claims = realistic()
    evaluate_and_store(cache, claims, NOW)
    assert cache.get(claims, REV, NOW - US) is None
    assert cache.get(claims, REV, NOW) is not None
    assert cache.stats().entries == 1


def test_offsets_and_utc_give_the_same_instant(impl: CacheImplementation) -> None:
    cache = impl.cache_class()
    claims = realistic()
    evaluate_and_store(cache, claims, NOW)
    elsewhere = (NOW + timedelta(seconds=10)).astimezone(timezone(timedelta(hours=-7, minutes=-30)))
    served = cache.get(claims, REV, elsewhere)
    assert served is not None
    assert served.evaluated_at == elsewhere
    assert same_answer(served, oracle(claims, elsewhere))


@settings(max_examples=150, deadline=None)
@given(
    node_expires=st.integers(-10_000_000, 2_000_000_000),
    runtime_expires=st.none() | st.integers(-10_000_000, 4_000_000_000),
    age=st.integers(0, 900_000_000),
    requested=st.none() | st.integers(1, 5000),
    audience=st.sampled_from(sorted(AUDIENCE_CAPS)),
    later=st.integers(-5_000_000, 2_500_000_000),
)
def test_hits_match_a_fresh_evaluation_and_never_outlive_it(
    node_expires: int,
    runtime_expires: int | None,
    age: int,
    requested: int | None,
    audience: str,
    later: int,
) -> None:
    """Times in microseconds from NOW. Either a miss, or exactly the oracle's answer."""
    claims = realistic(
        node_expires_at=NOW + node_expires * US,
        runtime_expires_at=None if runtime_expires is None else NOW + runtime_expires * US,
        issued_at=NOW - age * US,
        requested_ttl=requested,
        audience=audience,
    )
    then = NOW + later * US
    for implementation in both():
        cache = implementation.cache_class(negative_ttl_seconds=30)
        stored = evaluate_and_store(cache, claims, NOW)
        fresh = oracle(claims, then)
        served = cache.get(claims, REV, then)
        if stored.allow:
            assert stored.valid_until is not None
            if NOW <= then < stored.valid_until:
                assert served is not None
                assert same_answer(served, fresh)
            else:
                assert served is None
        else:
            expected = NOW <= then < NOW + timedelta(seconds=30)
            assert (served is not None) == expected
            if served is not None:
                assert served.reasons == stored.reasons
                assert not served.allow


# --- negative caching ----------------------------------------------------------


def stale_claims() -> dict[str, Any]:
    return realistic(issued_at=NOW - timedelta(hours=1))


def test_denies_are_not_cached_by_default(impl: CacheImplementation) -> None:
    cache = impl.cache_class()
    claims = stale_claims()
    ticket, _ = cache.lookup(claims, REV, NOW)
    deny = oracle(claims, NOW)
    assert not deny.allow
    assert cache.store(ticket, deny, now=NOW) is False
    assert cache.get(claims, REV, NOW) is None
    assert cache.stats().entries == 0


def test_negative_caching_serves_a_fresh_deny_for_a_bounded_time(
    impl: CacheImplementation,
) -> None:
    cache = impl.cache_class(negative_ttl_seconds=2.5)
    claims = stale_claims()
    deny = evaluate_and_store(cache, claims, NOW)
    served = cache.get(claims, REV, NOW + timedelta(seconds=2, microseconds=499_999))
    assert served is not None
    assert not served.allow
    assert served.reasons == deny.reasons
    assert served.reason_codes == ("node.stale",)
    assert served.decision_id != deny.decision_id
    assert (served.ttl_seconds, served.ttl_bound_by, served.valid_until) == (0, None, None)
    assert cache.get(claims, REV, NOW + timedelta(seconds=2.5)) is None
    assert cache.stats().expirations == 1


# --- invalidation ---------------------------------------------------------------


def test_a_new_revision_misses_at_once(impl: CacheImplementation) -> None:
    cache = impl.cache_class()
    claims = realistic()
    evaluate_and_store(cache, claims, NOW)
    assert cache.get(claims, REV, NOW) is not None
    for revision in (REV.replace("config=sha256:88", "config=sha256:89"), REV + ";engine=0.2"):
        assert cache.get(claims, revision, NOW) is None
    assert cache.get(claims, REV, NOW) is not None


PICKS: dict[str, Callable[[dict[str, Any]], str]] = {
    "signer_subjects": lambda c: (
        c["image"]["signatures"][0]["subject"] or c["image"]["signatures"][0]["key_id"]
    ),
    "node_ids": lambda c: c["node"]["id"],
    "image_digests": lambda c: c["image"]["digest"],
    "spiffe_ids": lambda c: c["subject"]["spiffe_id"],
}
"""config.revoked member -> where realistic() claims keep a value the allow lists."""


@pytest.mark.parametrize(
    ("member", "expected"),
    [("signer_subjects", 2), ("node_ids", 1), ("image_digests", 2), ("spiffe_ids", 1)],
)
def test_revoke_drops_every_allow_that_lists_the_value(
    impl: CacheImplementation, member: str, expected: int
) -> None:
    cache = impl.cache_class(negative_ttl_seconds=60)
    target = realistic()
    sharing = realistic(node_id="node-other", spiffe_id="spiffe://prod.example.org/other")
    unrelated = realistic(
        image_seed="other-image",
        signatures=[keyless("https://github.com/example/other/.github/workflows/r.yml@v2")],
        node_id="node-unrelated",
        spiffe_id="spiffe://prod.example.org/unrelated",
    )
    denied = stale_claims()  # the same values as target, cached as a deny
    for claims in (target, sharing, unrelated, denied):
        evaluate_and_store(cache, claims, NOW)
    value = PICKS[member](target)
    assert (member, value) in (oracle(target, NOW).revocable or ())
    assert cache.revoke([(member, value)]) == expected
    assert cache.get(target, REV, NOW) is None
    assert (cache.get(sharing, REV, NOW) is None) == (expected == 2)
    assert cache.get(unrelated, REV, NOW) is not None
    # a deny lists nothing: revoking only makes it more deny-worthy, so it stays
    served_deny = cache.get(denied, REV, NOW)
    assert served_deny is not None
    assert not served_deny.allow
    stats = cache.stats()
    assert (stats.entries, stats.revocations) == (4 - expected, expected)
    assert cache.revoke([(member, value)]) == 0


def test_a_deny_is_never_dropped_by_revoke(impl: CacheImplementation) -> None:
    # even one built in Python with pairs (the policy's denies list none): a revocation
    # can only make a deny more deserved, and a deny entry ages out on its own
    cache = impl.cache_class(negative_ttl_seconds=60)
    claims = stale_claims()
    deny = oracle(claims, NOW)
    assert not deny.allow
    pairs = [(member, value) for member, value in revocable_of(claims)]
    assert len(pairs) == 4
    listing = deny.model_copy(update={"revocable": tuple(pairs)})
    ticket, _ = cache.lookup(claims, REV, NOW)
    assert cache.store(ticket, listing, now=NOW) is True
    assert cache.revoke(pairs) == 0
    served = cache.get(claims, REV, NOW + SECOND)
    assert served is not None
    assert (served.allow, served.reasons) == (False, deny.reasons)
    assert cache.stats().revocations == 0


def test_revoking_a_key_id_drops_key_signed_allows(impl: CacheImplementation) -> None:
    cache = impl.cache_class()
    key_only = realistic(signatures=[key_signed("cosign-key-1")])
    mixed = realistic(
        node_id="node-mixed", signatures=[keyless(SIGNER), key_signed("cosign-key-2")]
    )
    unverified_key = realistic(
        node_id="node-unverified",
        signatures=[keyless(SIGNER), key_signed("cosign-key-1", verified=False)],
    )
    for claims in (key_only, mixed, unverified_key):
        evaluate_and_store(cache, claims, NOW)
    signers = {
        value
        for member, value in oracle(key_only, NOW).revocable or ()
        if member == "signer_subjects"
    }
    assert signers == {"cosign-key-1"}  # a key-signed signature has no subject
    # only the allow resting on the verified key: an unverified signature is not listed
    assert cache.revoke([("signer_subjects", "cosign-key-1")]) == 1
    assert cache.get(key_only, REV, NOW) is None
    assert cache.get(unverified_key, REV, NOW) is not None
    # an allow with a keyless and a key-signed signature goes with either of them
    assert cache.revoke([("signer_subjects", "cosign-key-2")]) == 1
    assert cache.get(mixed, REV, NOW) is None
    assert cache.revoke([("signer_subjects", SIGNER)]) == 1
    stats = cache.stats()
    assert (stats.entries, stats.approx_bytes, stats.revocations) == (0, 0, 3)


def test_values_the_decision_does_not_list_are_not_revoked(impl: CacheImplementation) -> None:
    cache = impl.cache_class()
    claims = realistic()
    claims["runtime"]["image_digest"] = digest("drifted")
    decision = evaluate_and_store(cache, claims, NOW)
    unlisted = [
        ("image_digests", digest("drifted")),  # the runtime's image digest
        ("image_digests", claims["provenance"]["subject_digests"][1]),
        ("signer_subjects", claims["image"]["signatures"][0]["issuer"]),
        ("spiffe_ids", claims["node"]["id"]),  # a listed value under another member
        ("node_id", claims["node"]["id"]),  # not a member name of config.revoked
    ]
    for pair in unlisted:
        assert pair not in (decision.revocable or ())
        assert cache.revoke([pair]) == 0
    assert cache.get(claims, REV, NOW) is not None
    # what counts is the decision: one that lists the runtime digest goes with it, and
    # one that lists a value its claims never mention goes with that value
    listed = {*(decision.revocable or ()), unlisted[0]}
    listing = decision.model_copy(update={"revocable": tuple(sorted(listed))})
    cache.put(claims, REV, listing, now=NOW)
    cache.put({"a": 1}, REV, allow(fixed("audience", 600), revocable=(("node_ids", "x"),)), now=NOW)
    assert cache.revoke([unlisted[0]]) == 1
    assert cache.get(claims, REV, NOW) is None
    assert cache.revoke([("node_ids", "x")]) == 1
    assert cache.stats().entries == 0


SPIFFE_IDS = ["spiffe://a.example/x", "spiffe://a.example/y"]
NODE_IDS = ["node-1", "node-2"]
DIGESTS = [digest("one"), digest("two"), digest("three")]
SIGNERS = ["https://ci.example/one", "https://ci.example/two", "cosign-key-1"]
PAIRS = (
    [("spiffe_ids", v) for v in SPIFFE_IDS]
    + [("node_ids", v) for v in NODE_IDS]
    + [("image_digests", v) for v in DIGESTS]
    + [("signer_subjects", v) for v in SIGNERS]
)


def _maybe(values: list[str]) -> st.SearchStrategy[Any]:
    return st.sampled_from(values) | json_leaves


# Claims that mention the revocable values everywhere the old claims-based index looked
# (and elsewhere): revocation must ignore them and follow the decisions alone.
shaped_claims = st.fixed_dictionaries(
    {"subject": st.fixed_dictionaries({"spiffe_id": _maybe(SPIFFE_IDS)}) | json_values},
    optional={
        "image": st.fixed_dictionaries(
            {
                "digest": _maybe(DIGESTS),
                "signatures": st.lists(
                    st.fixed_dictionaries({"subject": _maybe(SIGNERS), "key_id": _maybe(SIGNERS)})
                    | json_values,
                    max_size=3,
                ),
            }
        )
        | json_values,
        "provenance": st.fixed_dictionaries(
            {"subject_digests": st.lists(_maybe(DIGESTS), max_size=3)}
        ),
        "node": st.fixed_dictionaries({"id": _maybe(NODE_IDS)}) | json_values,
        "runtime": st.fixed_dictionaries({"image_digest": _maybe(DIGESTS)}),
    },
)


@settings(max_examples=300, deadline=None)
@given(
    entries=st.lists(
        st.tuples(shaped_claims, st.none() | st.sets(st.sampled_from(PAIRS), max_size=4)),
        min_size=1,
        max_size=5,
    ),
    targets=st.lists(
        st.sampled_from([*PAIRS, ("node_ids", "never-listed"), ("image_digest", DIGESTS[0])]),
        min_size=1,
        max_size=3,
    ),
)
def test_revoke_follows_the_decisions_revocable_in_both(
    entries: list[tuple[dict[str, Any], set[tuple[str, str]] | None]],
    targets: list[tuple[str, str]],
) -> None:
    """Each entry is an allow listing a set of pairs, or (None) a deny; the expected set
    is computed from the decisions alone, independently of the cache's index."""
    stored = [
        (
            claims,
            Decision.deny("node.stale", "stale", policy_revision=REV, evaluated_at=NOW)
            if pairs is None
            else allow(fixed("audience", 600), revocable=tuple(sorted(pairs))),
        )
        for claims, pairs in entries
    ]
    latest = {load_implementation("python").compute_key(c, REV): (c, d) for c, d in stored}

    def dropped(decision: Decision) -> bool:
        return decision.allow and not set(targets).isdisjoint(decision.revocable or ())

    expected = sum(dropped(decision) for _, decision in latest.values())
    for implementation in both():
        cache = implementation.cache_class(negative_ttl_seconds=60)
        for claims, decision in stored:
            cache.put(claims, REV, decision, now=NOW)
        assert cache.revoke(targets) == expected
        for claims, decision in latest.values():
            served = cache.get(claims, REV, NOW + SECOND)
            assert (served is None) == dropped(decision)
            if served is not None:
                assert same_answer(
                    served, decision.model_copy(update={"evaluated_at": NOW + SECOND})
                )
        stats = cache.stats()
        assert (stats.entries, stats.revocations) == (len(latest) - expected, expected)


def test_revoke_several_values_at_once_counts_entries_once(impl: CacheImplementation) -> None:
    cache = impl.cache_class()
    claims = realistic()
    other = realistic(
        image_seed="other-image",
        signatures=[key_signed("cosign-key-9")],
        node_id="node-other",
        spiffe_id="spiffe://prod.example.org/other",
    )
    evaluate_and_store(cache, claims, NOW)
    evaluate_and_store(cache, other, NOW)
    pairs = [
        ("node_ids", claims["node"]["id"]),
        ("spiffe_ids", claims["subject"]["spiffe_id"]),
        ("image_digests", claims["image"]["digest"]),
        ("node_ids", claims["node"]["id"]),
    ]
    assert cache.revoke(pair for pair in pairs) == 1  # any iterable, here a generator
    assert cache.get(other, REV, NOW) is not None
    assert cache.revoke([("node_ids", "node-other"), ("signer_subjects", "cosign-key-9")]) == 1
    stats = cache.stats()
    assert (stats.entries, stats.approx_bytes, stats.revocations) == (0, 0, 2)


BAD_REVOCATIONS: list[tuple[str, object, type[Exception], str]] = [
    ("str", "node_ids", TypeError, "iterable of"),
    ("bytes", b"node_ids", TypeError, "iterable of"),
    ("none", None, TypeError, "iterable of"),
    ("int", 5, TypeError, "iterable of"),
    ("one-item", [("node_ids",)], TypeError, "tuple of str"),
    ("three-items", [("node_ids", "a", "b")], TypeError, "tuple of str"),
    ("list-pair", [["node_ids", "a"]], TypeError, "tuple of str"),
    ("bytes-value", [("node_ids", b"a")], TypeError, "tuple of str"),
    ("bytes-member", [(b"node_ids", "a")], TypeError, "tuple of str"),
    ("none-value", [("node_ids", None)], TypeError, "tuple of str"),
    ("mapping", {"node_ids": "node-7f3a9c"}, TypeError, "tuple of str"),
    ("bad-after-good", [("node_ids", "node-7f3a9c"), ("node_ids", 7)], TypeError, "tuple of str"),
    ("empty-list", [], ValueError, "at least one"),
    ("empty-set", set(), ValueError, "at least one"),
]


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [case[1:] for case in BAD_REVOCATIONS],
    ids=[case[0] for case in BAD_REVOCATIONS],
)
def test_revoke_arguments_are_checked(
    impl: CacheImplementation, bad: object, error: type[Exception], message: str
) -> None:
    cache = impl.cache_class()
    claims = realistic()
    evaluate_and_store(cache, claims, NOW)
    ticket, _ = cache.lookup(claims, REV, NOW)
    with pytest.raises(error, match=message):
        cache.revoke(bad)  # type: ignore[arg-type]
    # a refused revoke changes nothing: no entry dropped, no store refused
    assert cache.get(claims, REV, NOW) is not None
    assert cache.stats().revocations == 0
    assert cache.store(ticket, oracle(claims, NOW), now=NOW) is True


def test_a_pair_listed_twice_is_revoked_once(impl: CacheImplementation) -> None:
    # decision_from_policy_result removes duplicates, but a Decision built in Python may
    # carry them: the cache must either refuse it or index it consistently.
    cache = impl.cache_class()
    twice = (("node_ids", "node-7f3a9c"), ("node_ids", "node-7f3a9c"))
    try:
        cache.put(realistic(), REV, allow(fixed("audience", 600), revocable=twice), now=NOW)
    except ValueError:
        assert cache.stats().entries == 0
        return
    assert cache.revoke([twice[0]]) == 1
    stats = cache.stats()
    assert (stats.entries, stats.approx_bytes, stats.revocations) == (0, 0, 1)


def test_a_store_racing_a_revoke_or_clear_is_refused(impl: CacheImplementation) -> None:
    cache = impl.cache_class()
    claims = realistic()
    decision = oracle(claims, NOW)

    def revoke_anything() -> None:
        assert cache.revoke([("node_ids", "not-in-any-entry")]) == 0

    for invalidate in (revoke_anything, cache.clear):
        ticket, _ = cache.lookup(claims, REV, NOW)
        invalidate()  # e.g. an operator revokes while the policy is being evaluated
        assert cache.store(ticket, decision, now=NOW) is False
        assert cache.get(claims, REV, NOW) is None
    ticket, _ = cache.lookup(claims, REV, NOW)
    assert cache.store(ticket, decision, now=NOW) is True
    assert ticket.key == impl.compute_key(claims, REV)


def test_clear_drops_everything_and_keeps_counters(impl: CacheImplementation) -> None:
    cache = impl.cache_class()
    claims = realistic()
    evaluate_and_store(cache, claims, NOW)
    cache.get(claims, REV, NOW)
    cache.clear()
    assert cache.get(claims, REV, NOW) is None
    stats = cache.stats()
    assert (stats.entries, stats.approx_bytes, stats.hits, stats.misses) == (0, 0, 1, 2)


# --- size bounds and stats -------------------------------------------------------


def test_lru_eviction_keeps_recently_used_entries(impl: CacheImplementation) -> None:
    cache = impl.cache_class(max_entries=3)
    sets = [realistic(node_id=f"node-{i}") for i in range(4)]
    for claims in sets[:3]:
        evaluate_and_store(cache, claims, NOW)
    assert cache.get(sets[0], REV, NOW) is not None  # now the most recently used
    evaluate_and_store(cache, sets[3], NOW)
    assert cache.get(sets[1], REV, NOW) is None
    assert all(cache.get(sets[i], REV, NOW) is not None for i in (0, 2, 3))
    stats = cache.stats()
    assert (stats.entries, stats.evictions) == (3, 1)


def test_byte_bound_evicts_and_refuses_oversized_entries(impl: CacheImplementation) -> None:
    sets = [realistic(node_id=f"node-{i}") for i in range(3)]  # same sizes: ids are 6 chars
    probe = impl.cache_class()
    evaluate_and_store(probe, realistic(node_id="node-x"), NOW)
    one = probe.stats().approx_bytes
    assert one > len(impl.canonical_encoding(sets[0], REV))
    cache = impl.cache_class(max_bytes=2 * one + one // 2)
    for claims in sets:
        evaluate_and_store(cache, claims, NOW)
    stats = cache.stats()
    assert (stats.entries, stats.evictions, stats.approx_bytes) == (2, 1, 2 * one)
    tiny = impl.cache_class(max_bytes=one - 1)
    ticket, _ = tiny.lookup(sets[0], REV, NOW)
    assert tiny.store(ticket, oracle(sets[0], NOW), now=NOW) is False


def test_stats_count_hits_misses_and_memory(impl: CacheImplementation) -> None:
    cache = impl.cache_class()
    assert cache.stats() == cache_module.CacheStats(0, 0, 0, 0, 0, 0, 0, impl.name)
    claims = realistic()
    evaluate_and_store(cache, claims, NOW)
    for _ in range(3):
        cache.get(claims, REV, NOW)
    cache.get(realistic(node_id="x"), REV, NOW)
    stats = cache.stats()
    assert (stats.entries, stats.hits, stats.misses, stats.implementation) == (1, 3, 2, impl.name)
    assert stats.approx_bytes > 3000  # the stored canonical encoding alone is ~3 KB
    assert cache.implementation == impl.name
    # replacing an entry does not leak bytes
    ticket, _ = cache.lookup(claims, REV, NOW)
    assert cache.store(ticket, oracle(claims, NOW), now=NOW) is True
    assert cache.stats().approx_bytes == stats.approx_bytes


# --- what gets stored is checked -------------------------------------------------


AUDIENCE = fixed("audience", 900)
EXPIRY = shrinking("evidence_expiry", NOW + timedelta(seconds=100.5))  # 100 s at NOW

INCONSISTENT: list[tuple[str, Decision, str]] = [
    ("other-ttl", allow(AUDIENCE).model_copy(update={"ttl_seconds": 899}), "do not give"),
    (
        "shrinking-other-ttl",
        allow(AUDIENCE, EXPIRY).model_copy(update={"ttl_seconds": 101}),
        "do not give",
    ),
    (
        "other-bound-term",
        allow(AUDIENCE, EXPIRY).model_copy(update={"ttl_bound_by": "audience"}),
        "do not give",
    ),
    (
        "tie-to-the-later-term",  # both 900 at NOW: the earlier one bounds it
        allow(fixed("default", 900), AUDIENCE).model_copy(update={"ttl_bound_by": "audience"}),
        "do not give",
    ),
    (
        "unknown-term",
        allow(AUDIENCE).model_copy(update={"ttl_bound_by": "evidence_expiry"}),
        "do not give",
    ),
    (
        "term-already-past",
        allow(AUDIENCE).model_copy(
            update={"ttl_terms": (AUDIENCE, shrinking("evidence_expiry", NOW - SECOND))}
        ),
        "do not give",
    ),
    ("zero-ttl", allow(fixed("audience", 0)), "positive ttl_seconds"),
    (
        "reasons",
        allow(AUDIENCE).model_copy(update={"reasons": Decision.deny("a", "b").reasons}),
        "no reasons",
    ),
]


@pytest.mark.parametrize(
    ("decision", "message"),
    [case[1:] for case in INCONSISTENT],
    ids=[case[0] for case in INCONSISTENT],
)
def test_inconsistent_decisions_are_refused(
    impl: CacheImplementation, decision: Decision, message: str
) -> None:
    cache = impl.cache_class()
    with pytest.raises(ValueError, match=message):
        cache.put(realistic(), REV, decision, now=NOW)
    ticket, _ = cache.lookup(realistic(), REV, NOW)
    with pytest.raises(ValueError, match=message):
        cache.store(ticket, decision, now=NOW)
    assert cache.stats().entries == 0


UNCACHEABLE: list[tuple[str, Decision]] = [
    ("terms-none", allow(AUDIENCE).model_copy(update={"ttl_terms": None})),
    ("terms-empty", allow(AUDIENCE).model_copy(update={"ttl_terms": ()})),
    ("revocable-none", allow(AUDIENCE, EXPIRY, revocable=None)),
    (
        "built-without-either",
        Decision(allow=True, ttl_seconds=900, ttl_bound_by="audience", evaluated_at=NOW),
    ),
]


@pytest.mark.parametrize(
    "decision", [case[1] for case in UNCACHEABLE], ids=[case[0] for case in UNCACHEABLE]
)
def test_an_allow_without_its_terms_or_revocable_values_is_not_cached(
    impl: CacheImplementation, decision: Decision
) -> None:
    # it may be right, but nothing could recompute its TTL or revoke it later
    cache = impl.cache_class()
    claims = realistic()
    ticket, _ = cache.lookup(claims, REV, NOW)
    assert cache.store(ticket, decision, now=NOW) is False
    assert cache.put(claims, REV, decision, now=NOW) is None  # type: ignore[func-returns-value]
    assert cache.get(claims, REV, NOW) is None
    assert cache.stats().entries == 0


def test_an_older_policy_without_terms_is_not_cached(impl: CacheImplementation) -> None:
    # e.g. a remote OPA server still running a policy from before ttl_terms and revocable
    cache = impl.cache_class()
    claims = realistic()
    current = oracle(claims, NOW)
    result = {**current.to_json_dict(), "reasons": []}
    for name in ("ttl_terms", "revocable", "decision_id", "evaluated_at", "policy_revision"):
        del result[name]
    older = decision_from_policy_result(result, policy_revision=REV, evaluated_at=NOW)
    assert older.allow
    assert (older.ttl_terms, older.revocable) == (None, None)
    ticket, _ = cache.lookup(claims, REV, NOW)
    assert cache.store(ticket, older, now=NOW) is False
    assert cache.store(ticket, current, now=NOW) is True


def test_an_allow_already_past_valid_until_is_not_stored(impl: CacheImplementation) -> None:
    cache = impl.cache_class()
    ticket, _ = cache.lookup(realistic(), REV, NOW)
    decision = allow(AUDIENCE, valid_until=NOW)
    assert cache.store(ticket, decision, now=NOW) is False
    assert cache.store(ticket, decision.model_copy(update={"valid_until": NOW + US}), now=NOW)


def test_times_must_be_aware_datetimes(impl: CacheImplementation) -> None:
    cache = impl.cache_class()
    claims = realistic()
    naive = datetime(2026, 11, 22, 10, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        cache.get(claims, REV, naive)
    with pytest.raises(TypeError, match="datetime"):
        cache.get(claims, REV, "2026-11-22T10:00:00Z")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        cache.put(claims, REV, allow(AUDIENCE), now=naive)
    naive_term = allow(AUDIENCE).model_copy(
        update={"ttl_terms": (AUDIENCE, shrinking("evidence_expiry", naive + timedelta(hours=1)))}
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        cache.put(claims, REV, naive_term, now=NOW)
    with pytest.raises(TypeError, match="Decision"):
        cache.put(claims, REV, {"allow": True}, now=NOW)  # type: ignore[arg-type]
    ticket, _ = cache.lookup(claims, REV, NOW)
    not_a_ticket: Any = (ticket.encoding, claims, 0)
    with pytest.raises(TypeError, match="CacheTicket"):
        cache.store(not_a_ticket, allow(AUDIENCE), now=NOW)
    assert cache.stats().entries == 0


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_entries": 0}, ValueError),
        ({"max_entries": 1.5}, ValueError),
        ({"max_bytes": 0}, ValueError),
        ({"negative_ttl_seconds": -1}, ValueError),
        ({"negative_ttl_seconds": math.nan}, ValueError),
        ({"negative_ttl_seconds": 86_401}, ValueError),
        ({"negative_ttl_seconds": True}, TypeError),
        ({"negative_ttl_seconds": "5"}, TypeError),
    ],
)
def test_constructor_arguments_are_checked(
    impl: CacheImplementation, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        impl.cache_class(**kwargs)


def test_epoch_conversion_agrees_on_odd_datetimes() -> None:
    python, cython = both()
    moments = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(1, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2000, 2, 29, 12, tzinfo=timezone(timedelta(hours=14))),
        datetime(2100, 3, 1, tzinfo=timezone(-timedelta(hours=23, minutes=59, microseconds=1))),
        datetime(9999, 12, 31, 23, 0, 0, 999_999, tzinfo=UTC),
    ]
    for moment in moments:
        caches = [implementation.cache_class() for implementation in (python, cython)]
        decision = allow(shrinking("evidence_expiry", moment + 100 * SECOND), now=moment)
        for cache in caches:
            cache.put({"a": 1}, REV, decision, now=moment)
            # the stored instant and the lookup's agree to the microsecond
            if moment.replace(tzinfo=None) > datetime.min:
                assert cache.get({"a": 1}, REV, moment - US) is None
            assert cache.get({"a": 1}, REV, moment) is not None
        served = [cache.get({"a": 1}, REV, moment + 10 * SECOND + US) for cache in caches]
        assert served[0] is not None
        assert served[1] is not None
        assert served[0].ttl_seconds == served[1].ttl_seconds == 89
        assert [cache.get({"a": 1}, REV, moment + 99 * SECOND + US) for cache in caches] == [
            None,
            None,
        ]


# --- both implementations agree on whole histories --------------------------------

POOL = [
    realistic(),
    realistic(node_id="node-b", node_expires_at=NOW + timedelta(seconds=200)),
    realistic(image_seed="img-c", spiffe_id="spiffe://prod.example.org/c", requested_ttl=120),
    realistic(issued_at=NOW - timedelta(seconds=590), audience="db.example.org"),
    realistic(node_id="node-k", signatures=[key_signed("cosign-key-1")]),
    stale_claims(),
]
OPERATIONS = st.one_of(
    st.tuples(st.just("decide"), st.integers(0, len(POOL) - 1)),
    st.tuples(st.just("advance"), st.integers(0, 400_000_000)),
    st.tuples(st.just("back"), st.integers(0, 5_000_000)),
    st.tuples(
        st.just("revoke"),
        st.lists(
            st.tuples(st.sampled_from(sorted(PICKS)), st.integers(0, len(POOL) - 1)),
            min_size=1,
            max_size=2,
        ),
    ),
    st.tuples(st.just("clear")),
)


@settings(max_examples=150, deadline=None)
@given(operations=st.lists(OPERATIONS, max_size=25), max_entries=st.integers(1, 4))
def test_compiled_and_twin_agree_on_every_operation(
    operations: list[tuple[Any, ...]], max_entries: int
) -> None:
    caches = [
        implementation.cache_class(max_entries=max_entries, negative_ttl_seconds=20)
        for implementation in both()
    ]
    now = NOW
    for operation in operations:
        results: list[Any] = []
        for cache in caches:
            if operation[0] == "decide":
                claims = POOL[operation[1]]
                ticket, served = cache.lookup(claims, REV, now)
                if served is None:
                    results.append(cache.store(ticket, oracle(claims, now), now=now))
                else:
                    fresh = oracle(claims, now)
                    assert fresh.allow == served.allow
                    assert same_answer(served, fresh) or not served.allow
                    results.append(served.model_dump(exclude={"decision_id"}))
            elif operation[0] == "revoke":
                pairs = [(member, PICKS[member](POOL[index])) for member, index in operation[1]]
                results.append(cache.revoke(pairs))
            elif operation[0] == "clear":
                cache.clear()
        if results:
            assert results[0] == results[1]
        if operation[0] == "advance":
            now += operation[1] * US
        elif operation[0] == "back":
            now -= operation[1] * US
    python_stats, cython_stats = (cache.stats() for cache in caches)
    assert (python_stats.implementation, cython_stats.implementation) == ("python", "cython")
    assert dataclasses.replace(cython_stats, implementation="python") == python_stats


@pytest.fixture
def colliding_slots() -> Iterator[CacheImplementation]:
    """The compiled cache with every claim set hashed to the same table slot."""
    cython = both()[1]
    extension = sys.modules["attestpolicy.engine._cache_ext"]
    extension._set_slot_mask(0)
    try:
        yield cython
    finally:
        extension._set_slot_mask(2**64 - 1)


def test_a_slot_collision_is_a_miss_never_another_decision(
    colliding_slots: CacheImplementation,
) -> None:
    cache = colliding_slots.cache_class(negative_ttl_seconds=60)
    allowed = realistic()
    denied = stale_claims()
    other = realistic(node_id="node-other")
    evaluate_and_store(cache, allowed, NOW)
    assert cache.get(allowed, REV, NOW) is not None
    assert cache.get(other, REV, NOW) is None  # same slot, different claims
    assert cache.get(allowed, REV + "x", NOW) is None  # same slot, other revision
    evaluate_and_store(cache, denied, NOW)  # takes the slot over
    served = cache.get(denied, REV, NOW)
    assert served is not None
    assert not served.allow
    assert cache.get(allowed, REV, NOW) is None
    stats = cache.stats()
    assert stats.entries == 1
    # the displaced allow left the revocation index with it; the deny never entered it
    node = [("node_ids", allowed["node"]["id"])]
    assert cache.revoke(node) == 0
    assert cache.get(denied, REV, NOW) is not None
    evaluate_and_store(cache, allowed, NOW)  # takes the slot back
    assert cache.get(denied, REV, NOW) is None
    assert cache.revoke(node) == 1
    assert (cache.stats().entries, cache.stats().approx_bytes) == (0, 0)


# --- concurrency -------------------------------------------------------------------


@pytest.fixture
def fast_switching() -> Iterator[None]:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


@pytest.mark.usefixtures("fast_switching")
def test_no_hit_after_revoke_returns_under_concurrency(impl: CacheImplementation) -> None:
    cache = impl.cache_class(max_entries=32)  # writers churn 40 claim sets: evictions too
    target = realistic()
    others = [realistic(node_id=f"node-{i}") for i in range(40)]
    evaluate_and_store(cache, target, NOW)
    revoked = threading.Event()
    stop = threading.Event()
    hits_before: list[Decision] = []
    violations: list[Decision] = []
    lookups = [0] * 6
    errors: list[BaseException] = []

    def reader(slot: int) -> None:
        try:
            while not stop.is_set():
                after = revoked.is_set()
                served = cache.get(target, REV, NOW)
                lookups[slot] += 1
                if served is not None:
                    (violations if after else hits_before).append(served)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def writer(slot: int) -> None:
        rng = random.Random(slot)
        try:
            while not stop.is_set():
                claims = rng.choice(others)
                ticket, served = cache.lookup(claims, REV, NOW)
                lookups[slot] += 1
                if served is None:
                    cache.store(ticket, oracle(claims, NOW), now=NOW)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(3)]
    threads += [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(3, 6)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(0.2)
        cache.revoke([("node_ids", target["node"]["id"])])
        revoked.set()
        time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not errors
    assert hits_before  # the readers were hitting the entry until the revocation
    assert not violations
    stats = cache.stats()
    assert stats.hits + stats.misses == sum(lookups) + 1
    assert stats.entries <= 32
    assert stats.evictions > 0
    # the index and byte accounting stayed consistent: revoking every node empties the cache
    cache.revoke(("node_ids", claims["node"]["id"]) for claims in others)
    assert (cache.stats().entries, cache.stats().approx_bytes) == (0, 0)


def test_forked_children_make_their_own_decision_ids(impl: CacheImplementation) -> None:
    cache = impl.cache_class()
    claims = realistic()
    evaluate_and_store(cache, claims, NOW)
    assert cache.get(claims, REV, NOW) is not None  # the id pool is now shared with a child
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            served = cache.get(claims, REV, NOW)
            os.write(write_end, served.decision_id.encode() if served else b"miss")
        finally:
            os._exit(0)
    os.close(write_end)
    parent = cache.get(claims, REV, NOW)
    with os.fdopen(read_end, "rb") as pipe:
        child_id = pipe.read().decode()
    os.waitpid(pid, 0)
    assert parent is not None
    assert uuid.UUID(child_id).version == 4
    assert child_id != parent.decision_id


# --- selection, fallback and the build ------------------------------------------------


def run_python(
    code: str, *, env_value: str | None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != IMPL_ENV_VAR}
    if env_value is not None:
        env[IMPL_ENV_VAR] = env_value
    return subprocess.run(
        [sys.executable, "-W", "default", "-c", textwrap.dedent(code)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


BLOCK_EXTENSION = "import sys; sys.modules['attestpolicy.engine._cache_ext'] = None\n"
REPORT = "from attestpolicy.engine import cache; print(cache.cache_implementation())\n"


def test_missing_extension_falls_back_to_the_twin_with_a_warning() -> None:
    result = run_python(BLOCK_EXTENSION + REPORT, env_value=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "python"
    assert "RuntimeWarning" in result.stderr
    assert "compiled decision cache unavailable" in result.stderr


def test_explicit_python_selection_is_silent() -> None:
    result = run_python(BLOCK_EXTENSION + REPORT, env_value="python")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "python"
    assert "decision cache" not in result.stderr


def test_explicit_cython_selection_fails_without_the_extension() -> None:
    result = run_python(BLOCK_EXTENSION + REPORT, env_value="cython")
    assert result.returncode != 0
    assert (
        f"CacheImplementationError: {IMPL_ENV_VAR}=cython but the compiled cache cannot"
        in result.stderr
    )
    assert f"set {IMPL_ENV_VAR}=python" in result.stderr


def test_unknown_selection_is_an_error() -> None:
    result = run_python(REPORT, env_value="rust")
    assert result.returncode != 0
    assert f"CacheImplementationError: {IMPL_ENV_VAR} must be cython or python" in result.stderr
    assert "got 'rust'" in result.stderr


def test_the_selection_error_is_an_import_error_and_an_attestpolicy_error() -> None:
    from attestpolicy.engine.cache import CacheImplementationError
    from attestpolicy.errors import AttestPolicyError

    assert issubclass(CacheImplementationError, ImportError)
    assert issubclass(CacheImplementationError, AttestPolicyError)


def test_the_extension_is_built_and_selected() -> None:
    if os.environ.get(IMPL_ENV_VAR) == "python":
        pytest.skip(f"{IMPL_ENV_VAR}=python: the compiled cache is deliberately not used")
    result = run_python(REPORT, env_value=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "cython"
    assert "decision cache" not in result.stderr


@pytest.mark.parametrize(
    "fake",
    [
        types.SimpleNamespace(ABI_VERSION=0),
        types.SimpleNamespace(
            ABI_VERSION=cache_module.ABI_VERSION,
            compute_key=lambda c, r: b"",
            canonical_encoding=lambda c, r: b"wrong",
            decode_encoding=lambda e: ("", {}),
            DecisionCache=PythonDecisionCache,
        ),
        types.SimpleNamespace(  # encodes right, reads back wrong
            ABI_VERSION=cache_module.ABI_VERSION,
            compute_key=cache_module.compute_key,
            canonical_encoding=cache_module.canonical_encoding,
            decode_encoding=lambda e: ("self-test", {}),
            DecisionCache=PythonDecisionCache,
        ),
    ],
    ids=["stale-abi", "disagreeing", "misreading"],
)
def test_a_stale_or_wrong_extension_is_refused(
    monkeypatch: pytest.MonkeyPatch, fake: types.SimpleNamespace
) -> None:
    monkeypatch.setitem(sys.modules, "attestpolicy.engine._cache_ext", fake)
    with pytest.raises(ImportError, match="rebuild"):
        load_implementation("cython")
    with pytest.raises(ValueError, match="cython"):
        load_implementation("c")


def _fresh_clone(destination: Path) -> Path:
    """The project's build inputs, without anything built in the work tree."""
    destination.mkdir(parents=True)
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE", "MANIFEST.in"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, destination / name)
    if not (destination / "README.md").exists():  # pyproject names it; the lead's README
        (destination / "README.md").write_text("attestpolicy\n")
    shutil.copytree(
        REPO / "attestpolicy",
        destination / "attestpolicy",
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "_cache_ext.c"),
    )
    shutil.copytree(REPO / "rego", destination / "rego")  # the policy, package data of a wheel
    return destination


def _build(
    tree: Path, hook: str, out: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    code = f"import setuptools.build_meta as b; print(b.{hook}({str(out)!r}))"
    return subprocess.run(
        [sys.executable, "-W", "default", "-c", code],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture
def build_env() -> dict[str, str]:
    """Build offline with the virtualenv's own setuptools and Cython (no isolation)."""
    setuptools = pytest.importorskip("setuptools")
    pytest.importorskip("Cython")
    if int(setuptools.__version__.split(".")[0]) < 75:
        pytest.skip("the project's build needs setuptools >= 75 in this environment")
    return {k: v for k, v in os.environ.items() if k != IMPL_ENV_VAR}


def _compiler_available() -> bool:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(compiler) is not None


def test_wheel_and_editable_builds_compile_the_extension(
    tmp_path: Path, build_env: dict[str, str]
) -> None:
    if not _compiler_available():
        pytest.skip("no C compiler here: covered by the no-compiler test")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    tree = _fresh_clone(tmp_path / "wheel-tree")
    result = _build(tree, "build_wheel", tmp_path / "dist", build_env)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert f"attestpolicy/engine/_cache_ext{suffix}" in archive.namelist()
    editable = _fresh_clone(tmp_path / "editable-tree")
    result = _build(editable, "build_editable", tmp_path / "editable-dist", build_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (editable / "attestpolicy" / "engine" / f"_cache_ext{suffix}").is_file()
    check = run_python(REPORT + "print(cache.__file__)\n", env_value=None, cwd=editable)
    assert check.returncode == 0, check.stderr
    implementation, module_file = check.stdout.split()
    assert implementation == "cython"
    assert Path(module_file).is_relative_to(editable)


def test_build_without_a_compiler_succeeds_with_a_warning(
    tmp_path: Path, build_env: dict[str, str]
) -> None:
    tree = _fresh_clone(tmp_path / "tree")
    env = {**build_env, "CC": str(tmp_path / "no-such-compiler")}
    result = _build(tree, "build_editable", tmp_path / "dist", env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "could not build the optional extension" in result.stderr
    assert not list((tree / "attestpolicy" / "engine").glob("_cache_ext*.so"))
    check = run_python(REPORT + "print(cache.__file__)\n", env_value=None, cwd=tree)
    assert check.returncode == 0, check.stderr
    implementation, module_file = check.stdout.split()
    assert implementation == "python"
    assert Path(module_file).is_relative_to(tree)
    assert "compiled decision cache unavailable" in check.stderr


def test_selected_names_are_consistent() -> None:
    chosen = cache_module.cache_implementation()
    assert chosen in IMPLEMENTATIONS
    selected = load_implementation(chosen)
    assert cache_module.DecisionCache is selected.cache_class
    assert cache_module.DecisionCache().stats().implementation == chosen
    assert cache_module.compute_key({"a": 1}, REV) == selected.compute_key({"a": 1}, REV)
    # the cache restates no policy rule: TTL terms and revocable values come with decisions
    assert not hasattr(cache_module, "TTL_TERMS")
    assert not hasattr(cache_module, "_mentions")


def test_max_age_bounds_the_wall_clock_life_of_an_entry(impl: CacheImplementation) -> None:
    """For a remote evaluator: a server-side change goes unseen for at most max_age."""
    cache = impl.cache_class(max_age_seconds=0.2)
    claims = realistic()
    evaluate_and_store(cache, claims, NOW)
    assert cache.get(claims, REV, NOW) is not None  # the claims' own time has not moved
    time.sleep(0.25)
    assert cache.get(claims, REV, NOW) is None
    assert cache.stats().expirations == 1
    forever = impl.cache_class()  # no max age: served on
    evaluate_and_store(forever, claims, NOW)
    time.sleep(0.05)
    assert forever.get(claims, REV, NOW) is not None


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (-1.0, ValueError),
        (86_401, ValueError),
        ("5", TypeError),
        (True, TypeError),
    ],
)
def test_max_age_is_checked(impl: CacheImplementation, value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_age_seconds"):
        impl.cache_class(max_age_seconds=value)


@settings(max_examples=300, deadline=None)
@given(claims=st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_the_encoding_reads_back_exactly_in_both(claims: dict[str, Any]) -> None:
    """decode_encoding gives back exactly what was encoded (types, -0.0, big integers),
    without the top-level "now": the PDP decides a miss on this copy."""
    implementations = both()
    encoding = implementations[0].canonical_encoding(claims, REV)
    expected = {name: value for name, value in claims.items() if name != "now"}
    for implementation in implementations:
        revision, decoded = implementation.decode_encoding(encoding)
        assert revision == REV
        assert strictly_equal(decoded, expected)


@pytest.mark.parametrize("cut", [1, 9, 40])
def test_a_damaged_encoding_is_refused_in_both(cut: int) -> None:
    implementations = both()
    encoding = implementations[0].canonical_encoding(realistic(), REV)
    for implementation in implementations:
        for damaged in (encoding[:-cut], encoding + b"\x00" * cut, b"x" + encoding[1:]):
            with pytest.raises(ValueError, match="not a canonical encoding"):
                implementation.decode_encoding(damaged)
