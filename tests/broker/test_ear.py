"""EAR attestation results: the claims of the profile, the status and trust vector of real
allows and denies from both engines, the one reason table (complete, and the one docs/ear.md
shows), the nonce echo, and signing with the broker's keys."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest

from attestpolicy import ClaimSet, Decision, PolicyDecisionPoint, __version__, errors
from attestpolicy._demo import EVIDENCE_NONCE, EVIDENCE_TIME
from attestpolicy.broker import (
    EAR_MEDIA_TYPE,
    EAT_PROFILE,
    BrokerError,
    CredentialBroker,
    KeySet,
    SigningKey,
)
from attestpolicy.broker._ear import (
    ALL_CLAIMS,
    REASON_EFFECTS,
    TRUST_CLAIMS,
    appraise,
    ear_claims,
    tier,
)
from attestpolicy.decision import Reason
from attestpolicy.evidence._common import Code
from attestpolicy.revocations import RevocationError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "attestpolicy" / "examples"
ISSUER = "https://broker.test"
SPIFFE_ID = "spiffe://example.org/ns/hakawai/sa/hakawai-litellm-proxy"
KEY_ID = "sha256:c87a79018f346cc02482448b77296b0bea143ef2ccab99b04776fb0f638f301f"
CLAIMS_NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
RANK = {"affirming": 0, "none": 1, "warning": 2, "contraindicated": 3}


def load_json(relative: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / relative).read_text())
    return data


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """Verify an EAR with the JWKS as a relying party does (its exp may be long gone)."""
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "JWT"
    found = {k.key_id: k for k in jwt.PyJWKSet.from_dict(jwks).keys}[header["kid"]]
    claims: dict[str, Any] = jwt.decode(
        token,
        found.key,
        algorithms=[found.algorithm_name],
        options={"require": ["iat"], "verify_exp": False},
    )
    return claims


def appraisal(claims: dict[str, Any]) -> tuple[str, dict[str, int]]:
    workload = claims["submods"]["workload"]
    return workload["ear.status"], workload["ear.trustworthiness-vector"]


@pytest.fixture(scope="module")
def trust() -> dict[str, Any]:
    return load_json("trust.json")


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def evidence_broker(engine: str, key: SigningKey) -> Iterator[CredentialBroker]:
    config = load_json("evidence-config.json")
    with PolicyDecisionPoint.local(config=config, engine=engine) as pdp:
        yield CredentialBroker(pdp, key, ISSUER)


@pytest.fixture
def claims_broker(engine: str, key: SigningKey) -> Iterator[CredentialBroker]:
    with PolicyDecisionPoint.local(config=load_json("config.json"), engine=engine) as pdp:
        yield CredentialBroker(pdp, key, ISSUER)


# --- real evidence, both engines -----------------------------------------------------------------


def test_an_allow_is_an_affirming_ear_with_every_claim(
    evidence_broker: CredentialBroker, trust: dict[str, Any], key: SigningKey
) -> None:
    result = evidence_broker.ear(
        load_json("evidence/allow-eks-workload.json"),
        trust,
        nonce=EVIDENCE_NONCE,
        now=EVIDENCE_TIME,
    )
    decision = result.decision
    assert decision.allow
    assert decision.valid_until is not None
    assert jwt.get_unverified_header(result.token) == {"alg": "ES256", "kid": key.kid, "typ": "JWT"}
    claims = decode(result.token, evidence_broker.jwks())
    assert claims == result.claims
    assert claims == {
        "eat_profile": "tag:github.com,2023:veraison/ear",
        "iss": ISSUER,
        "iat": int(EVIDENCE_TIME.timestamp()),
        "exp": int(decision.valid_until.timestamp()),
        "sub": SPIFFE_ID,
        "ear.verifier-id": {"developer": "attestpolicy", "build": f"attestpolicy {__version__}"},
        "submods": {
            "workload": {
                "ear.status": "affirming",
                "ear.trustworthiness-vector": {
                    "instance-identity": 2,
                    "configuration": 2,
                    "executables": 2,
                    "hardware": 2,
                },
                "ear.appraisal-policy-id": decision.policy_revision,
            }
        },
    }  # no eat_nonce: the example quote answers a 2-byte nonce, below EAT's 8


@pytest.mark.parametrize(
    ("name", "vector"),
    [
        ("deny-modified-manifest", {"executables": 96}),
        ("deny-provenance-mismatch", {"executables": 99}),
        ("deny-tag-only", {"executables": 96}),
        ("deny-unbound-runtime", {"configuration": 99}),
        ("deny-wrong-signer", {"executables": 96}),
    ],
)
def test_real_denies_are_contraindicated_on_the_claim_they_concern(
    evidence_broker: CredentialBroker, trust: dict[str, Any], name: str, vector: dict[str, int]
) -> None:
    result = evidence_broker.ear(
        load_json(f"evidence/{name}.json"), trust, nonce=EVIDENCE_NONCE, now=EVIDENCE_TIME
    )
    assert not result.decision.allow
    claims = decode(result.token, evidence_broker.jwks())
    assert appraisal(claims) == ("contraindicated", vector)
    assert "exp" not in claims
    assert claims["sub"] == SPIFFE_ID
    assert claims["submods"]["workload"]["ear.appraisal-policy-id"] == (
        result.decision.policy_revision
    )


def test_expired_evidence_names_no_claim_and_is_contraindicated(
    evidence_broker: CredentialBroker, trust: dict[str, Any]
) -> None:
    result = evidence_broker.ear(
        load_json("evidence/allow-eks-workload.json"), trust, nonce=EVIDENCE_NONCE
    )
    assert result.decision.reason_codes == ("evidence.expired",)
    claims = decode(result.token, evidence_broker.jwks())
    assert appraisal(claims) == ("contraindicated", {})
    assert "sub" not in claims  # the SVID did not verify: there are no claims


def test_a_revoked_signer_contraindicates_the_executables(
    evidence_broker: CredentialBroker, trust: dict[str, Any]
) -> None:
    allowed = load_json("evidence/allow-eks-workload.json")
    before = evidence_broker.ear(allowed, trust, nonce=EVIDENCE_NONCE, now=EVIDENCE_TIME)
    assert before.claims["submods"]["workload"]["ear.status"] == "affirming"
    evidence_broker.revoke(key_id=KEY_ID, reason="signing key leaked")
    after = evidence_broker.ear(allowed, trust, nonce=EVIDENCE_NONCE, now=EVIDENCE_TIME)
    assert after.decision.reason_codes == ("image.untrusted_signer",)
    assert appraisal(after.claims) == ("contraindicated", {"executables": 96})


def test_a_nonce_of_eat_size_is_echoed_even_on_a_deny(
    evidence_broker: CredentialBroker, trust: dict[str, Any]
) -> None:
    nonce = bytes(range(32))
    result = evidence_broker.ear(
        load_json("evidence/allow-eks-workload.json"), trust, nonce=nonce, now=EVIDENCE_TIME
    )
    assert "node.nonce" in result.decision.reason_codes  # the quote answers another nonce
    claims = decode(result.token, evidence_broker.jwks())
    assert claims["eat_nonce"] == b64url(nonce)
    # the quote did not verify: no measurement reached the policy either
    assert "node.measurement_mismatch" in result.decision.reason_codes
    assert appraisal(claims) == ("contraindicated", {"configuration": 96, "hardware": 99})


# --- claim sets, both engines ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "vector"),
    [
        ("deny-unregistered", "contraindicated", {"instance-identity": 97}),
        ("deny-image-drift", "contraindicated", {"executables": 96}),
        ("deny-measurement-mismatch", "contraindicated", {"configuration": 96}),
        ("deny-stale-node", "contraindicated", {}),
        ("deny-untrusted-signer", "contraindicated", {"executables": 96}),
    ],
)
def test_example_claim_denies(
    claims_broker: CredentialBroker, name: str, status: str, vector: dict[str, int]
) -> None:
    result = claims_broker.ear_for_claims(load_json(f"claims/{name}.json"), now=CLAIMS_NOW)
    assert not result.decision.allow
    assert appraisal(decode(result.token, claims_broker.jwks())) == (status, vector)


def test_an_unsigned_image_alone_is_a_warning(claims_broker: CredentialBroker) -> None:
    claims = load_json("claims/allow-fully-attested.json")
    claims["image"]["signatures"][0]["verified"] = False
    result = claims_broker.ear_for_claims(claims, now=CLAIMS_NOW)
    assert result.decision.reason_codes == ("image.unsigned",)
    assert appraisal(result.claims) == ("warning", {"executables": 33})


def test_unreadable_claims_say_so_on_every_claim(claims_broker: CredentialBroker) -> None:
    result = claims_broker.ear_for_claims({"subject": {"spiffe_id": "not-spiffe"}})
    assert result.decision.reason_codes == ("input.invalid",)
    assert appraisal(result.claims) == ("contraindicated", dict.fromkeys(TRUST_CLAIMS, 1))
    assert "sub" not in result.claims


def test_a_verifier_that_is_down_is_a_malfunction_on_every_claim(key: SigningKey) -> None:
    with PolicyDecisionPoint.remote("http://127.0.0.1:9", connect_timeout=0.5) as pdp:
        result = CredentialBroker(pdp, key, ISSUER).ear_for_claims(
            load_json("claims/allow-fully-attested.json"), now=CLAIMS_NOW
        )
    assert result.decision.reason_codes == ("remote.error",)
    assert appraisal(result.claims) == ("contraindicated", dict.fromkeys(TRUST_CLAIMS, -1))
    assert "ear.appraisal-policy-id" in result.claims["submods"]["workload"]


def test_an_ear_never_raises_for_bad_input(
    evidence_broker: CredentialBroker, trust: dict[str, Any]
) -> None:
    malformed = evidence_broker.ear(b"{", trust)
    assert malformed.decision.reason_codes == ("evidence.malformed",)
    assert appraisal(malformed.claims) == ("contraindicated", {})
    naive = evidence_broker.ear(b"{}", trust, now=datetime(2025, 1, 1))
    assert naive.decision.reason_codes == ("broker.error",)
    assert appraisal(naive.claims) == ("contraindicated", dict.fromkeys(TRUST_CLAIMS, -1))


def test_an_allow_whose_validity_is_over_is_not_affirmed(
    tmp_path: Path, engine: str, key: SigningKey
) -> None:
    folder = tmp_path / "policy"
    folder.mkdir()
    (folder / "policy.rego").write_text(
        "package attestpolicy.v1\n\nimport rego.v1\n\n"
        'decision := {"allow": true, "ttl_seconds": 300, "reasons": [], '
        '"ttl_bound_by": "default", "valid_until": "2026-11-22T10:00:00Z"}\n'
    )
    with PolicyDecisionPoint.local(folder, engine=engine) as pdp:
        broker = CredentialBroker(pdp, key, ISSUER)
        claims = load_json("claims/allow-fully-attested.json")
        early = broker.ear_for_claims(claims, now=CLAIMS_NOW - timedelta(seconds=100))
        late = broker.ear_for_claims(claims, now=CLAIMS_NOW)
    assert early.claims["exp"] == int(CLAIMS_NOW.timestamp())
    assert early.claims["submods"]["workload"]["ear.status"] == "affirming"
    assert late.decision.reason_codes == ("broker.expired",)
    assert appraisal(late.claims) == ("contraindicated", {})
    assert "exp" not in late.claims


# --- signing ----------------------------------------------------------------------------------


def test_ears_are_signed_by_the_active_key_and_verify_after_rotation(
    claims_broker: CredentialBroker,
) -> None:
    claims = load_json("claims/allow-fully-attested.json")
    old = claims_broker.ear_for_claims(claims, now=CLAIMS_NOW)
    new_key = SigningKey.generate("EdDSA")
    claims_broker.keys.rotate(new_key)
    new = claims_broker.ear_for_claims(claims, now=CLAIMS_NOW)
    assert jwt.get_unverified_header(new.token) == {
        "alg": "EdDSA",
        "kid": new_key.kid,
        "typ": "JWT",
    }
    assert decode(old.token, claims_broker.jwks()) == old.claims
    assert decode(new.token, claims_broker.jwks()) == new.claims
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(new.token, SigningKey.generate("EdDSA")._key.public_key(), algorithms=["EdDSA"])


def test_a_key_that_cannot_sign_raises_a_broker_error() -> None:
    broken = SigningKey.generate()
    broken.algorithm = "HS256"  # an algorithm its key cannot make
    with PolicyDecisionPoint.local(config=load_json("config.json")) as pdp:
        broker = CredentialBroker(pdp, KeySet(broken), ISSUER)
        with pytest.raises(BrokerError, match="could not be signed") as info:
            broker.ear_for_claims(load_json("claims/allow-fully-attested.json"), now=CLAIMS_NOW)
    assert "BEGIN" not in str(info.value)


def test_the_media_type_names_the_profile() -> None:
    assert EAT_PROFILE == "tag:github.com,2023:veraison/ear"
    assert EAR_MEDIA_TYPE == 'application/eat+jwt; eat_profile="tag:github.com,2023:veraison/ear"'


# --- the rules, without an engine -------------------------------------------------------------


def allow_decision() -> Decision:
    return Decision(allow=True, ttl_seconds=60, ttl_bound_by="default", policy_revision="r1")


def claim_set(**parts: Any) -> ClaimSet:
    return ClaimSet.parse(
        {
            "subject": {"spiffe_id": "spiffe://example.org/a"},
            "request": {"audience": "vault"},
            **parts,
        }
    )


def node(kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "id": "n1",
        "verified": True,
        "nonce_verified": True,
        "issued_at": "2026-01-01T00:00:00Z",
    }


@pytest.mark.parametrize(
    ("parts", "vector"),
    [
        ({}, {"instance-identity": 2}),
        ({"runtime": {"verified": True}}, {"instance-identity": 2, "configuration": 2}),
        (
            {"node": node("aws_iid")},
            {"instance-identity": 2, "configuration": 2},
        ),
        (
            {"node": node("tpm")},
            {"instance-identity": 2, "configuration": 2, "hardware": 2},
        ),
        (
            {"node": node("tdx"), "image": {"reference": "r@sha256:" + "a" * 64}},
            {
                "instance-identity": 2,
                "configuration": 2,
                "executables": 2,
                "hardware": 2,
                "runtime-opaque": 2,
            },
        ),
        (
            {"node": node("az_snp_vtpm")},
            {"instance-identity": 2, "configuration": 2, "hardware": 2, "runtime-opaque": 2},
        ),
    ],
)
def test_an_allow_affirms_what_its_claims_show(
    parts: dict[str, Any], vector: dict[str, int]
) -> None:
    status, found = appraise(allow_decision(), claim_set(**parts))
    assert (status, found) == ("affirming", vector)
    assert list(found) == [name for name in TRUST_CLAIMS if name in found]  # the draft's order


def test_several_reasons_on_one_claim_keep_the_worst() -> None:
    reasons = ("image.unsigned", "provenance.unverified", "image.not_allowed", "engine.error")
    decision = Decision(
        allow=False,
        ttl_seconds=0,
        reasons=tuple(Reason(code=code, message=code) for code in reasons),
    )
    status, vector = appraise(decision, None)
    assert status == "contraindicated"
    assert vector == {
        **dict.fromkeys(TRUST_CLAIMS, -1),
        "executables": 99,  # crypto_failed beats contraindicated_rt, both contraindicated
    }
    warnings = Decision(
        allow=False,
        ttl_seconds=0,
        reasons=(
            Reason(code="image.unsigned", message="m"),
            Reason(code="image.digest_required", message="m"),
        ),
    )
    assert appraise(warnings, None) == ("warning", {"executables": 33})


def test_each_code_alone_gives_a_status_no_better_than_its_claims() -> None:
    for code in [*REASON_EFFECTS, "unknown.code", "engine.timeout", "evidence.expired"]:
        code = code + "x" if code.endswith(".") else code
        status, vector = appraise(Decision.deny(code, "m"), None)
        assert status in ("warning", "contraindicated"), code
        assert all(RANK[status] >= RANK[tier(value)] for value in vector.values()), code
        effect = REASON_EFFECTS.get(code, REASON_EFFECTS.get(code.partition(".")[0] + "."))
        assert (status == "warning") == (effect is not None and tier(effect[1]) == "warning")


def test_a_deny_without_reasons_is_contraindicated() -> None:
    decision = Decision(allow=False, ttl_seconds=0)
    assert appraise(decision, claim_set()) == ("contraindicated", {})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-1, "none"),
        (0, "none"),
        (1, "none"),
        (2, "affirming"),
        (31, "affirming"),
        (32, "warning"),
        (95, "warning"),
        (96, "contraindicated"),
        (99, "contraindicated"),
        (127, "contraindicated"),
    ],
)
def test_ar4si_tiers(value: int, expected: str) -> None:
    assert tier(value) == expected


@pytest.mark.parametrize(("size", "echoed"), [(7, False), (8, True), (64, True), (65, False)])
def test_eat_nonce_bounds(size: int, echoed: bool) -> None:
    nonce = bytes([7]) * size
    claims = ear_claims(
        issuer=ISSUER,
        decision=Decision.deny("node.nonce", "m"),
        claims=None,
        issued_at=1,
        expires_at=None,
        nonce=nonce,
    )
    assert ("eat_nonce" in claims) == echoed
    if echoed:
        text = claims["eat_nonce"]
        assert base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)) == nonce
        assert 8 <= len(claims["eat_nonce"]) <= 88  # EAT's JSON text bounds


def test_an_empty_policy_revision_leaves_out_the_policy_id() -> None:
    claims = ear_claims(
        issuer=ISSUER,
        decision=Decision.deny("broker.error", "m"),
        claims=None,
        issued_at=1,
        expires_at=None,
        nonce=None,
    )
    assert "ear.appraisal-policy-id" not in claims["submods"]["workload"]


# --- the table: complete, and the one the documentation shows ---------------------------------


def known_codes() -> set[str]:
    """Every reason code a decision can carry: the policy's, the verifiers', the errors'."""
    policy = set()
    for path in (ROOT / "rego" / "attestpolicy" / "v1").glob("*.rego"):
        if not path.name.endswith("_test.rego"):
            policy |= set(re.findall(r'"code": "([a-z_.]+)"', path.read_text()))
    assert {"image.unsigned", "node.stale", "subject.revoked"} <= policy
    verifier = {value for name, value in vars(Code).items() if name.isupper()}
    raised = {
        cls.code
        for cls in (
            *(getattr(errors, name) for name in errors.__all__),
            RevocationError,
            BrokerError,
        )
    }
    made_elsewhere = {
        "policy.deny",  # decision.py: a deny without a reason
        "engine.timeout",  # the async API's deadline
        "remote.error",
        "remote.invalid_config",
        "nonce.invalid",  # the registry's nonces
        "broker.expired",
        "broker.binding_mismatch",
    }
    return policy | verifier | raised | made_elsewhere


def test_every_reason_code_is_mapped_deliberately() -> None:
    unmapped = sorted(
        code
        for code in known_codes()
        if code not in REASON_EFFECTS and code.partition(".")[0] + "." not in REASON_EFFECTS
    )
    assert unmapped == []
    for effect in REASON_EFFECTS.values():
        if effect is not None:
            claim, value = effect
            assert claim == ALL_CLAIMS or claim in TRUST_CLAIMS
            assert -128 <= value <= 127


def documented_table() -> dict[str, tuple[str, int] | None]:
    text = (ROOT / "docs" / "ear.md").read_text()
    rows = re.findall(r"^\| `([a-z_.*]+)` \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", text, re.M)
    table: dict[str, tuple[str, int] | None] = {}
    for code, claim, value, tier_name in rows:
        key = code[:-1] if code.endswith("*") else code
        if claim.strip() == "—":
            assert value.strip() == tier_name.strip() == "—", code
            table[key] = None
            continue
        number = int(value.split()[0])
        assert tier_name.strip() == tier(number), code
        table[key] = (ALL_CLAIMS if claim.strip() == "every claim" else claim.strip(), number)
    return table


def test_the_documented_table_is_the_table() -> None:
    assert documented_table() == dict(REASON_EFFECTS)
