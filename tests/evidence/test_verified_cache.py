"""The verified-evidence cache, over the example documents (real vectors).

No timing: each test reads the cache's counters. Every test passes its own
:class:`VerifiedEvidenceCache` (or installs one as the default and restores the old one).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm

from attestpolicy import PolicyDecisionPoint
from attestpolicy.claims import ClaimSet, parse_timestamp
from attestpolicy.errors import EvidenceError
from attestpolicy.evidence._fingerprint import document_digest, resolve_trust, trust_revision
from attestpolicy.evidence._verified_cache import fully_verified, revocable_pairs
from attestpolicy.evidence.document import TrustConfig, load_evidence_document, load_trust_config
from attestpolicy.evidence.verify import (
    EvidenceReport,
    VerifiedEvidenceCache,
    set_verified_evidence_cache,
    verified_evidence_cache,
    verify_evidence_report,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "attestpolicy" / "examples"
NOW = parse_timestamp("2025-11-24T07:45:00Z")
NONCE = bytes.fromhex("9009")


def _token_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "==="))
    return claims


def example(name: str = "allow-eks-workload") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / "evidence" / f"{name}.json").read_text())
    return data


def trust_mapping() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / "trust.json").read_text())
    return data


@cache
def trust() -> TrustConfig:
    return load_trust_config(EXAMPLES / "trust.json")


ALLOW = example()
SVID_EXPIRY = datetime.fromtimestamp(
    _token_claims(ALLOW["runtime"]["jwt_svid"]["token"])["exp"], UTC
)
PSAT_EXPIRY = datetime.fromtimestamp(_token_claims(ALLOW["runtime"]["psat"]["token"])["exp"], UTC)


def verify(
    document: Any = None,
    anchors: Any = None,
    now: datetime = NOW,
    store: VerifiedEvidenceCache | bool = False,
    **kwargs: Any,
) -> EvidenceReport:
    kwargs.setdefault("nonce", NONCE)
    return verify_evidence_report(
        ALLOW if document is None else document,
        trust() if anchors is None else anchors,
        now,
        cache=store,
        **kwargs,
    )


@cache
def svid_outliving_the_psat() -> tuple[dict[str, Any], dict[str, Any]]:
    """The example with a JWT-SVID (made here, with a key made here) valid for a day more
    than the real PSAT, and the trust configuration for that key."""
    key = ec.generate_private_key(ec.SECP256R1())
    claims = {
        "sub": "spiffe://example.org/ns/hakawai/sa/hakawai-litellm-proxy",
        "aud": "attestpolicy",
        "iat": int((NOW - timedelta(minutes=5)).timestamp()),
        "exp": int((PSAT_EXPIRY + timedelta(days=1)).timestamp()),
    }
    document = example()
    document["runtime"]["jwt_svid"]["token"] = jwt.encode(
        claims, key, algorithm="ES256", headers={"kid": "test", "typ": "JWT"}
    )
    anchors = trust_mapping()
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    anchors["runtime"]["jwt_svid"]["bundles"] = {"example.org": {"keys": [{**jwk, "kid": "test"}]}}
    return document, anchors


# --- repeat verification --------------------------------------------------------------


def test_the_second_verification_is_served_from_the_cache() -> None:
    store = VerifiedEvidenceCache()
    first = verify(store=store)
    assert first.problems == ()
    second = verify(store=store)
    assert second == first
    stats = store.stats()
    assert (stats.misses, stats.stores, stats.hits, stats.entries) == (1, 1, 1, 1)


@pytest.mark.parametrize("kind", ["mapping", "bytes", "model"])
def test_each_document_form_is_cached(kind: str) -> None:
    raw = json.dumps(ALLOW).encode()
    document: Any = {"mapping": ALLOW, "bytes": raw, "model": load_evidence_document(raw)}[kind]
    store = VerifiedEvidenceCache()
    assert verify(document, store=store) == verify(document, store=store) == verify(ALLOW)
    assert store.stats().hits == 1


def test_a_later_now_inside_the_window_is_served_with_that_now() -> None:
    store = VerifiedEvidenceCache(max_age_seconds=3600)
    verify(store=store)
    later = NOW + timedelta(minutes=30)
    served = verify(now=later, store=store)
    assert store.stats().hits == 1
    assert served.claims.now == later
    assert served == verify(now=later)


def test_a_now_before_the_verification_is_not_served() -> None:
    store = VerifiedEvidenceCache()
    verify(store=store)
    earlier = verify(now=NOW - timedelta(minutes=1), store=store)
    assert store.stats().hits == 0
    assert earlier.claims.now == NOW - timedelta(minutes=1)


def test_an_entry_ends_at_the_earliest_expiry_of_its_material() -> None:
    """The example's JWT-SVID expires first (09:00); the PSAT and certificates later."""
    assert SVID_EXPIRY < PSAT_EXPIRY
    store = VerifiedEvidenceCache(max_age_seconds=86400)
    verify(store=store)
    verify(now=SVID_EXPIRY - timedelta(microseconds=1), store=store)
    assert store.stats().hits == 1
    with pytest.raises(EvidenceError, match="expired"):
        verify(now=SVID_EXPIRY, store=store)
    stats = store.stats()
    assert (stats.hits, stats.expirations, stats.entries) == (1, 1, 0)


def test_an_entry_ends_with_the_psat_when_the_svid_outlives_it() -> None:
    document, anchors = svid_outliving_the_psat()
    store = VerifiedEvidenceCache(max_age_seconds=3 * 86400)
    verify(document, anchors, store=store)
    verify(document, anchors, now=PSAT_EXPIRY - timedelta(microseconds=1), store=store)
    assert store.stats().hits == 1
    late = verify(document, anchors, now=PSAT_EXPIRY, store=store)
    assert [p.code for p in late.problems] == ["evidence.expired"]  # not served: verified
    assert store.stats().expirations == 1


def test_an_entry_lives_at_most_max_age_seconds() -> None:
    store = VerifiedEvidenceCache(max_age_seconds=60)
    verify(store=store)
    verify(now=NOW + timedelta(seconds=59), store=store)
    verify(now=NOW + timedelta(seconds=60), store=store)
    stats = store.stats()
    assert (stats.hits, stats.expirations, stats.stores) == (1, 1, 2)


# --- what the key holds ----------------------------------------------------------------


def test_another_nonce_or_nonce_audience_is_a_miss() -> None:
    store = VerifiedEvidenceCache()
    verify(store=store)
    wrong = verify(nonce=b"\x90\x08", store=store)
    assert [p.code for p in wrong.problems] == ["evidence.nonce_mismatch"]
    no_nonce = verify(nonce=None, store=store)
    assert no_nonce.claims.node is not None
    assert no_nonce.claims.node.nonce_verified is False
    verify(nonce_audience="vault", store=store)
    assert store.stats().hits == 0


def test_another_trust_revision_is_a_miss() -> None:
    store = VerifiedEvidenceCache()
    verify(anchors=trust_mapping(), store=store)
    changed = trust_mapping()
    changed["runtime"]["psat"]["clock_skew_seconds"] = 31
    verify(anchors=changed, store=store)
    verify(anchors=trust(), store=store)  # the parsed form is a revision of its own
    assert store.stats().hits == 0
    verify(anchors=trust_mapping(), store=store)  # an equal mapping is the same revision
    assert store.stats().hits == 1


def test_a_changed_document_is_a_miss() -> None:
    store = VerifiedEvidenceCache()
    raw = json.dumps(ALLOW).encode()
    verify(raw, store=store)
    tampered = raw.replace(b'"audience": "vault"', b'"audience": "vaulu"')
    assert tampered != raw
    result = verify(tampered, store=store)
    assert result.claims.request.audience == "vaulu"
    changed = example()
    changed["request"]["audience"] = "vaulu"
    assert verify(changed, store=store).claims.request.audience == "vaulu"
    assert store.stats().hits == 0


def test_failures_are_not_cached() -> None:
    store = VerifiedEvidenceCache()
    for _ in range(2):
        assert verify(example("deny-modified-manifest"), store=store).problems
        assert verify(example("deny-unbound-runtime"), store=store).problems
        with pytest.raises(EvidenceError):
            verify(now=SVID_EXPIRY + timedelta(hours=1), store=store)
    stats = store.stats()
    assert (stats.stores, stats.hits, stats.entries) == (0, 0, 0)


# --- revocation ------------------------------------------------------------------------


def _pairs() -> dict[str, str]:
    claims = verify().claims
    assert claims.image is not None
    assert claims.image.digest is not None
    assert claims.node is not None
    key_id = claims.image.signatures[0].key_id
    assert key_id is not None
    return {
        "spiffe_ids": claims.subject.spiffe_id,
        "image_digests": claims.image.digest,
        "signer_subjects": key_id,
        "node_ids": claims.node.id,
    }


@pytest.mark.parametrize("member", ["spiffe_ids", "image_digests", "signer_subjects", "node_ids"])
def test_a_revocation_purges_the_entries_that_name_it(member: str) -> None:
    store = VerifiedEvidenceCache()
    verify(store=store)
    assert store.purge([(member, "something else")]) == 0
    assert store.purge([(member, _pairs()[member])]) == 1
    assert len(store) == 0
    verify(store=store)
    assert store.stats().hits == 0


def test_the_revocable_pairs_are_those_of_the_policy() -> None:
    claims = verify().claims
    assert revocable_pairs(claims) == frozenset(_pairs().items())


@pytest.fixture
def default_cache() -> Iterator[VerifiedEvidenceCache]:
    """A fresh default cache for the test, the previous one restored afterwards."""
    fresh = VerifiedEvidenceCache()
    previous = set_verified_evidence_cache(fresh)
    try:
        yield fresh
    finally:
        set_verified_evidence_cache(previous)


def test_a_revoked_value_is_denied_even_from_a_cached_claim_set(
    default_cache: VerifiedEvidenceCache,
) -> None:
    """The cache holds claims; the policy decides them against the current revocations."""
    config = json.loads((EXAMPLES / "evidence-config.json").read_text())
    with PolicyDecisionPoint.local(config=config, cache=False) as pdp:
        assert pdp.decide_evidence(ALLOW, trust(), now=NOW, nonce=NONCE).allow
        pdp.revoke(node_id=_pairs()["node_ids"])
        decision = pdp.decide_evidence(ALLOW, trust(), now=NOW, nonce=NONCE)
    assert not decision.allow
    assert "node.revoked" in {reason.code for reason in decision.reasons}
    stats = default_cache.stats()
    assert (stats.purged, stats.hits) == (1, 0)  # revoke() dropped the verified evidence


def test_a_revoked_value_is_denied_from_a_cached_claim_set_the_pdp_did_not_purge(
    default_cache: VerifiedEvidenceCache,
) -> None:
    """Revoked elsewhere (another PDP's revoke, the configuration): the cached claims are
    served, and the policy denies them against the current revocations."""
    config = json.loads((EXAMPLES / "evidence-config.json").read_text())
    with PolicyDecisionPoint.local(config=config, cache=False) as pdp:
        assert pdp.decide_evidence(ALLOW, trust(), now=NOW, nonce=NONCE).allow
    config["revoked"] = {"node_ids": {_pairs()["node_ids"]: "stolen"}}
    with PolicyDecisionPoint.local(config=config, cache=False) as other:
        decision = other.decide_evidence(ALLOW, trust(), now=NOW, nonce=NONCE)
    assert decision.reason_codes == ("node.revoked",)
    assert default_cache.stats().hits == 1  # the second verification was a lookup


def test_the_default_cache_can_be_replaced_and_turned_off(
    default_cache: VerifiedEvidenceCache,
) -> None:
    assert verified_evidence_cache() is default_cache
    verify(store=True)
    verify(store=True)
    assert default_cache.stats().hits == 1
    set_verified_evidence_cache(None)
    verify(store=True)
    assert default_cache.stats().hits == 1
    with pytest.raises(TypeError):
        set_verified_evidence_cache(object())  # type: ignore[arg-type]


# --- bounds ------------------------------------------------------------------------------


def _for_audience(audience: str) -> dict[str, Any]:
    document = example()
    document["request"]["audience"] = audience
    return document


def test_the_least_recently_used_entry_is_evicted_first() -> None:
    store = VerifiedEvidenceCache(max_entries=2)
    first, second, third = (_for_audience(name) for name in ("a", "b", "c"))
    verify(first, store=store)
    verify(second, store=store)
    verify(first, store=store)  # first is now the most recently used
    verify(third, store=store)
    assert store.stats().evictions == 1
    verify(first, store=store)
    verify(third, store=store)
    assert store.stats().hits == 3
    verify(second, store=store)
    assert store.stats().hits == 3


def test_the_byte_bound_evicts_and_refuses_what_cannot_fit() -> None:
    size = VerifiedEvidenceCache()
    verify(store=size)
    one = size.stats().bytes
    store = VerifiedEvidenceCache(max_bytes=one + one // 2)
    verify(_for_audience("a"), store=store)
    verify(_for_audience("b"), store=store)
    stats = store.stats()
    assert (stats.entries, stats.evictions) == (1, 1)
    assert stats.bytes <= store.max_bytes
    tiny = VerifiedEvidenceCache(max_bytes=one - 1)
    verify(store=tiny)
    assert tiny.stats().entries == 0


@pytest.mark.parametrize("value", [0, -1, True, "10", float("nan"), float("inf")])
def test_bounds_must_be_positive_numbers(value: Any) -> None:
    for name in ("max_entries", "max_bytes", "max_age_seconds"):
        with pytest.raises(ValueError, match=name):
            VerifiedEvidenceCache(**{name: value})


def test_concurrent_verifications_share_one_cache() -> None:
    store = VerifiedEvidenceCache()
    documents = [_for_audience(f"audience-{index % 4}") for index in range(24)]
    errors: list[BaseException] = []

    def work(document: dict[str, Any]) -> None:
        try:
            assert verify(document, store=store).problems == ()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(document,)) for document in documents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stats = store.stats()
    assert stats.hits + stats.misses == 24
    assert stats.entries == 4


# --- keys --------------------------------------------------------------------------------


def test_a_trust_mapping_is_parsed_once_per_revision() -> None:
    first, second = trust_mapping(), trust_mapping()
    revision = trust_revision(first)
    assert revision is not None
    assert trust_revision(second) == revision
    assert resolve_trust(first, revision) is resolve_trust(second, revision)
    second["version"] = 2
    assert trust_revision(second) != revision


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ({"a": 1}, {"a": True}),
        ({"a": 1}, {"a": 1.0}),
        ({"a": "1"}, {"a": 1}),
        ({"a": "b"}, {"a": ["b"]}),
        ({"a": ["b", "c"]}, {"a": ["bc"]}),
        ({"ab": "c"}, {"a": "bc"}),
        ({"a": None}, {}),
        ({"a": {}}, {"a": []}),
        ({1: "a"}, {"1": "a"}),
    ],
)
def test_different_mappings_have_different_digests(left: Any, right: Any) -> None:
    assert document_digest(left) != document_digest(right)


@pytest.mark.parametrize(
    "value",
    [
        {"a": (1, 2)},
        {1: "a", "b": "c"},  # keys that do not sort
        {(1,): "a"},
        {"a": datetime(2025, 1, 1, tzinfo=UTC)},
        {"a": b"bytes"},
        {"a": type("Text", (str,), {})("subclass")},
    ],
)
def test_what_is_not_plain_json_has_no_digest(value: Any) -> None:
    assert document_digest(value) is None


def test_an_uncacheable_document_is_verified_every_time() -> None:
    store = VerifiedEvidenceCache()
    document = example()
    document["image"]["cosign"] = tuple(document["image"]["cosign"])
    verify(document, store=store)
    verify(document, store=store)
    stats = store.stats()
    assert (stats.hits, stats.misses, stats.stores) == (0, 0, 0)


def test_only_fully_verified_claims_are_cacheable() -> None:
    assert fully_verified(verify().claims)
    claims = verify(example("deny-modified-manifest")).claims
    assert not fully_verified(claims)
    store = VerifiedEvidenceCache()
    assert not store.put(("key",), claims, verified_at=NOW, valid_until=None)
    assert not store.put(("key",), verify().claims, verified_at=NOW, valid_until=NOW)


# --- the window is exact: cached and uncached agree at every now ------------------------------


OFFSETS = st.one_of(
    st.integers(-3600, 2 * 86400).map(lambda seconds: timedelta(seconds=seconds)),
    st.tuples(
        st.sampled_from([SVID_EXPIRY - NOW, PSAT_EXPIRY - NOW, PSAT_EXPIRY - NOW + timedelta(30)]),
        st.integers(-2, 2),
    ).map(lambda pair: pair[0] + timedelta(microseconds=pair[1])),
)


def _outcome(call: Any) -> tuple[object, ...]:
    """A report, or the error raised, as comparable values."""
    try:
        result: EvidenceReport = call()
    except EvidenceError as exc:
        return ("raised", exc.code, exc.field, str(exc))
    problems = tuple((p.code, p.field, str(p)) for p in result.problems)
    return ("report", result.claims, problems)


@given(outliving=st.booleans(), offset=OFFSETS)
@settings(max_examples=40, deadline=None)
def test_a_cached_result_is_the_result_a_verification_would_give(
    outliving: bool, offset: timedelta
) -> None:
    document, anchors = svid_outliving_the_psat() if outliving else (ALLOW, trust_mapping())
    store = VerifiedEvidenceCache(max_age_seconds=3 * 86400)
    verify(document, anchors, store=store)
    now = NOW + offset
    cached = _outcome(lambda: verify(document, anchors, now=now, store=store))
    assert cached == _outcome(lambda: verify(document, anchors, now=now))


def test_claims_served_from_the_cache_are_a_valid_claim_set() -> None:
    store = VerifiedEvidenceCache()
    verify(store=store)
    served = verify(now=NOW + timedelta(minutes=1), store=store).claims
    assert ClaimSet.parse(served.to_input()) == served
