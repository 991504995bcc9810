"""CredentialBroker: real evidence verified and decided by both engines, tokens verified
with pyjwt against the broker's JWKS, a real SQLite registry, and every way to fail closed."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from evidence.helpers import cert_pem, dn, ec_key, issue, key_usage, with_x509_version

from attestpolicy import PolicyDecisionPoint
from attestpolicy._demo import EVIDENCE_NONCE, EVIDENCE_TIME
from attestpolicy.broker import (
    BrokerError,
    Credential,
    CredentialBroker,
    CredentialRegistry,
    KeySet,
    SigningKey,
)
from attestpolicy.claims import ClaimSet
from attestpolicy.evidence.verify import verify_evidence_report

EXAMPLES = Path(__file__).resolve().parents[2] / "attestpolicy" / "examples"
ISSUER = "https://broker.test"
SPIFFE_ID = "spiffe://example.org/ns/hakawai/sa/hakawai-litellm-proxy"
CLAIMS_NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)  # the example claim sets' now
KEY_ID = "sha256:c87a79018f346cc02482448b77296b0bea143ef2ccab99b04776fb0f638f301f"
DENY_DOCUMENTS = (
    "deny-modified-manifest",
    "deny-provenance-mismatch",
    "deny-tag-only",
    "deny-unbound-runtime",
    "deny-wrong-signer",
)


def load_json(relative: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / relative).read_text())
    return data


def document(name: str) -> dict[str, Any]:
    return load_json(f"evidence/{name}.json")


def example_claims(name: str = "allow-fully-attested") -> dict[str, Any]:
    return load_json(f"claims/{name}.json")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def verify(
    token: str, jwks: dict[str, Any], *, audience: str = "vault", verify_exp: bool = True
) -> dict[str, Any]:
    """A relying party's check: the key chosen by kid from the JWKS, the audience, the
    issuer, every time claim present (and ``exp`` checked unless told otherwise)."""
    header = jwt.get_unverified_header(token)
    keys = {key.key_id: key for key in jwt.PyJWKSet.from_dict(jwks).keys}
    found = keys[header["kid"]]
    assert header["alg"] == found.algorithm_name
    claims: dict[str, Any] = jwt.decode(
        token,
        found.key,
        algorithms=[found.algorithm_name],
        issuer=ISSUER,
        audience=audience,
        options={"require": ["exp", "iat", "nbf", "jti", "sub", "aud"], "verify_exp": verify_exp},
    )
    return claims


def at_issue_time(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """Verify a token minted at a pinned past time (its exp is long gone)."""
    return verify(token, jwks, verify_exp=False)


@pytest.fixture(scope="module")
def trust() -> dict[str, Any]:
    return load_json("trust.json")


@pytest.fixture
def evidence_pdp(engine: str) -> Iterator[PolicyDecisionPoint]:
    with PolicyDecisionPoint.local(config=load_json("evidence-config.json"), engine=engine) as pdp:
        yield pdp


@pytest.fixture
def claims_pdp(engine: str) -> Iterator[PolicyDecisionPoint]:
    with PolicyDecisionPoint.local(config=load_json("config.json"), engine=engine) as pdp:
        yield pdp


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


def expected_attestation(claims: ClaimSet, revision: str, bound_by: str) -> dict[str, Any]:
    """The attestation claim written out from the verified claims, field by field."""
    assert claims.image is not None
    assert claims.node is not None
    return {
        "policy_revision": revision,
        "ttl_bound_by": bound_by,
        "evidence": {
            "image_digest": claims.image.digest,
            "signers": [
                {"issuer": s.issuer, "subject": s.subject, "key_id": s.key_id}
                for s in claims.image.signatures
                if s.verified
            ],
            "builder_id": claims.provenance.builder_id if claims.provenance else None,
            "source_repo": claims.provenance.source_repo if claims.provenance else None,
            "node": {"kind": claims.node.kind, "id": claims.node.id},
        },
    }


# --- allow: the token and every claim ----------------------------------------------------------


def test_allow_from_real_evidence_mints_a_token_with_every_claim(
    evidence_pdp: PolicyDecisionPoint, trust: dict[str, Any], key: SigningKey
) -> None:
    broker = CredentialBroker(evidence_pdp, key, ISSUER)
    credential = broker.issue(
        document("allow-eks-workload"), trust, nonce=EVIDENCE_NONCE, now=EVIDENCE_TIME
    )
    assert credential.issued
    assert credential.token is not None
    decision = credential.decision
    assert decision.allow
    assert decision.valid_until is not None
    claims = verify_evidence_report(
        document("allow-eks-workload"), trust, EVIDENCE_TIME, nonce=EVIDENCE_NONCE
    ).claims
    iat = int(EVIDENCE_TIME.timestamp())
    exp = int(decision.valid_until.timestamp())  # 07:49: before iat + ttl (08:00)
    assert iat + decision.ttl_seconds > exp
    assert jwt.get_unverified_header(credential.token) == {
        "alg": "ES256",
        "kid": key.kid,
        "typ": "JWT",
    }
    assert at_issue_time(credential.token, broker.jwks()) == {
        "iss": ISSUER,
        "sub": SPIFFE_ID,
        "aud": "vault",
        "iat": iat,
        "nbf": iat,
        "exp": exp,
        "jti": decision.decision_id,
        "attestation": expected_attestation(claims, decision.policy_revision, "default"),
    }
    assert (credential.jti, credential.subject, credential.audience) == (
        decision.decision_id,
        SPIFFE_ID,
        "vault",
    )
    assert credential.issued_at == EVIDENCE_TIME
    assert credential.expires_at == decision.valid_until


def test_the_attestation_names_keyless_signers_and_provenance(
    claims_pdp: PolicyDecisionPoint, key: SigningKey
) -> None:
    broker = CredentialBroker(claims_pdp, key, ISSUER)
    credential = broker.issue_for_claims(example_claims(), now=CLAIMS_NOW)
    assert credential.token is not None
    claims = at_issue_time(credential.token, broker.jwks())
    assert claims["attestation"] == expected_attestation(
        ClaimSet.parse(example_claims()),
        credential.decision.policy_revision,
        credential.decision.ttl_bound_by or "",
    )
    assert claims["attestation"]["evidence"]["signers"] == [
        {
            "issuer": "https://token.actions.githubusercontent.com",
            "subject": "https://github.com/example-org/payments-api/.github/workflows/"
            "release.yml@refs/tags/v1.4.2",
            "key_id": None,
        }
    ]
    assert claims["sub"] == "spiffe://prod.example.com/ns/payments/sa/api"


def test_a_token_minted_now_passes_every_check_of_a_relying_party(
    claims_pdp: PolicyDecisionPoint, key: SigningKey
) -> None:
    claims = example_claims()
    del claims["now"]
    now = datetime.now(UTC)
    claims["node"]["issued_at"] = (now - timedelta(seconds=30)).isoformat()
    claims["runtime"]["expires_at"] = (now + timedelta(hours=1)).isoformat()
    broker = CredentialBroker(claims_pdp, key, ISSUER)
    credential = broker.issue_for_claims(claims)
    assert credential.token is not None
    verified = verify(credential.token, broker.jwks())
    assert verified["exp"] - verified["iat"] <= credential.decision.ttl_seconds
    with pytest.raises(jwt.InvalidAudienceError):
        verify(credential.token, broker.jwks(), audience="aws-sts")


def test_exp_is_iat_plus_ttl_when_valid_until_is_later(
    claims_pdp: PolicyDecisionPoint, key: SigningKey
) -> None:
    claims = example_claims()
    claims["request"]["requested_ttl_seconds"] = 120
    credential = CredentialBroker(claims_pdp, key, ISSUER).issue_for_claims(claims, now=CLAIMS_NOW)
    assert credential.token is not None
    assert credential.decision.ttl_seconds == 120
    issued = at_issue_time(credential.token, {"keys": [key.public_jwk()]})
    assert issued["exp"] == issued["iat"] + 120
    assert credential.decision.valid_until is not None
    assert issued["exp"] < credential.decision.valid_until.timestamp()


def test_max_ttl_caps_the_lifetime(claims_pdp: PolicyDecisionPoint, key: SigningKey) -> None:
    broker = CredentialBroker(claims_pdp, key, ISSUER, max_ttl_seconds=45)
    credential = broker.issue_for_claims(example_claims(), now=CLAIMS_NOW)
    assert credential.token is not None
    issued = at_issue_time(credential.token, broker.jwks())
    assert issued["exp"] - issued["iat"] == 45


def test_fractional_now_never_extends_the_lifetime(
    claims_pdp: PolicyDecisionPoint, key: SigningKey
) -> None:
    now = CLAIMS_NOW + timedelta(microseconds=999_999)
    credential = CredentialBroker(claims_pdp, key, ISSUER).issue_for_claims(
        example_claims(), now=now
    )
    assert credential.issued_at == CLAIMS_NOW
    assert credential.expires_at is not None
    assert credential.decision.valid_until is not None
    assert credential.expires_at <= credential.decision.valid_until


def test_each_issuance_has_its_own_jti_on_a_cache_hit(
    claims_pdp: PolicyDecisionPoint, key: SigningKey
) -> None:
    broker = CredentialBroker(claims_pdp, key, ISSUER)
    first = broker.issue_for_claims(example_claims(), now=CLAIMS_NOW)
    second = broker.issue_for_claims(example_claims(), now=CLAIMS_NOW)
    stats = claims_pdp.cache_stats()
    assert stats is not None
    assert stats.hits >= 1
    assert first.jti != second.jti
    assert first.token != second.token


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_eddsa_and_es256_tokens_verify(claims_pdp: PolicyDecisionPoint, algorithm: str) -> None:
    key = SigningKey.generate(algorithm)
    broker = CredentialBroker(claims_pdp, key, ISSUER)
    credential = broker.issue_for_claims(example_claims(), now=CLAIMS_NOW)
    assert credential.token is not None
    assert jwt.get_unverified_header(credential.token)["alg"] == algorithm
    assert at_issue_time(credential.token, broker.jwks())["jti"] == credential.jti


def test_a_token_does_not_verify_with_another_key_or_when_altered(
    claims_pdp: PolicyDecisionPoint, key: SigningKey
) -> None:
    credential = CredentialBroker(claims_pdp, key, ISSUER).issue_for_claims(
        example_claims(), now=CLAIMS_NOW
    )
    assert credential.token is not None
    other = SigningKey.generate()
    impostor = {"keys": [{**other.public_jwk(), "kid": key.kid}]}
    with pytest.raises(jwt.InvalidSignatureError):
        at_issue_time(credential.token, impostor)
    head, payload, signature = credential.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["aud"] = "aws-sts"
    altered = ".".join((head, b64url(json.dumps(claims).encode()), signature))
    with pytest.raises(jwt.InvalidSignatureError):
        at_issue_time(altered, {"keys": [key.public_jwk()]})


def test_rotation_old_tokens_verify_new_ones_use_the_new_kid(
    claims_pdp: PolicyDecisionPoint,
) -> None:
    first = SigningKey.generate()
    broker = CredentialBroker(claims_pdp, KeySet(first), ISSUER)
    old = broker.issue_for_claims(example_claims(), now=CLAIMS_NOW)
    second = SigningKey.generate("EdDSA")
    broker.keys.rotate(second)
    new = broker.issue_for_claims(example_claims(), now=CLAIMS_NOW)
    assert old.token is not None
    assert new.token is not None
    assert jwt.get_unverified_header(old.token)["kid"] == first.kid
    assert jwt.get_unverified_header(new.token)["kid"] == second.kid
    assert [jwk["kid"] for jwk in broker.jwks()["keys"]] == [second.kid, first.kid]
    assert at_issue_time(old.token, broker.jwks())["jti"] == old.jti
    assert at_issue_time(new.token, broker.jwks())["jti"] == new.jti
    broker.keys.retire(first.kid)
    with pytest.raises(KeyError):  # its kid is no longer published
        at_issue_time(old.token, broker.jwks())


# --- deny: nothing minted, every reason kept -------------------------------------------------


@pytest.mark.parametrize("name", DENY_DOCUMENTS)
def test_a_deny_mints_nothing_and_keeps_the_reasons_decide_evidence_gives(
    evidence_pdp: PolicyDecisionPoint, trust: dict[str, Any], key: SigningKey, name: str
) -> None:
    broker = CredentialBroker(evidence_pdp, key, ISSUER)
    credential = broker.issue(document(name), trust, nonce=EVIDENCE_NONCE, now=EVIDENCE_TIME)
    expected = evidence_pdp.decide_evidence(
        document(name), trust, now=EVIDENCE_TIME, nonce=EVIDENCE_NONCE
    )
    assert not credential.issued
    assert (credential.token, credential.jti, credential.expires_at) == (None, None, None)
    assert not credential.decision.allow
    assert credential.decision.ttl_seconds == 0
    assert credential.decision.reasons == expected.reasons
    assert credential.decision.reasons
    assert "token" not in repr(credential)


def test_the_nonce_is_passed_through(
    evidence_pdp: PolicyDecisionPoint, trust: dict[str, Any], key: SigningKey
) -> None:
    broker = CredentialBroker(evidence_pdp, key, ISSUER)
    for nonce in (None, bytes(32)):
        credential = broker.issue(
            document("allow-eks-workload"), trust, nonce=nonce, now=EVIDENCE_TIME
        )
        assert not credential.issued
        assert "node.nonce" in credential.decision.reason_codes


def test_expired_evidence_at_the_current_time_is_denied(
    evidence_pdp: PolicyDecisionPoint, trust: dict[str, Any], key: SigningKey
) -> None:
    credential = CredentialBroker(evidence_pdp, key, ISSUER).issue(
        document("allow-eks-workload"), trust, nonce=EVIDENCE_NONCE
    )
    assert not credential.issued
    assert credential.decision.reason_codes == ("evidence.expired",)


def test_the_broker_decides_at_its_own_clock_not_the_claims_now(
    claims_pdp: PolicyDecisionPoint, key: SigningKey
) -> None:
    claims = example_claims()  # now 2026-11-22T10:00, node quote a minute older
    credential = CredentialBroker(claims_pdp, key, ISSUER).issue_for_claims(
        claims, now=CLAIMS_NOW + timedelta(hours=1)
    )
    assert not credential.issued
    assert "node.stale" in credential.decision.reason_codes


# --- decisions whose validity is over, or that do not say what they rest on -------------------

POLICY = """package attestpolicy.v1

import rego.v1

decision := {
	"allow": true,
	"ttl_seconds": 300,
	"reasons": [],
	"ttl_bound_by": "default",
	"valid_until": "2026-11-22T10:00:00.5Z",
}
"""


@pytest.fixture
def fixed_pdp(tmp_path: Path, engine: str) -> Iterator[PolicyDecisionPoint]:
    """A policy that allows until 2026-11-22T10:00:00.5Z and lists no revocable values."""
    folder = tmp_path / "policy"
    folder.mkdir()
    (folder / "policy.rego").write_text(POLICY)
    with PolicyDecisionPoint.local(folder, engine=engine) as pdp:
        yield pdp


def test_an_allow_whose_validity_ends_within_the_second_mints_nothing(
    fixed_pdp: PolicyDecisionPoint, key: SigningKey
) -> None:
    broker = CredentialBroker(fixed_pdp, key, ISSUER)
    before = broker.issue_for_claims(example_claims(), now=CLAIMS_NOW - timedelta(minutes=1))
    assert before.token is not None
    issued = at_issue_time(before.token, broker.jwks())
    assert issued["exp"] == int(CLAIMS_NOW.timestamp())  # floored: never past valid_until
    late = broker.issue_for_claims(example_claims(), now=CLAIMS_NOW)
    assert not late.issued
    assert not late.decision.allow
    assert late.decision.reason_codes == ("broker.expired",)
    assert late.decision.ttl_seconds == 0
    assert late.decision.valid_until is None


def test_with_a_registry_an_allow_without_revocable_values_mints_nothing(
    fixed_pdp: PolicyDecisionPoint, key: SigningKey, tmp_path: Path
) -> None:
    with CredentialRegistry(tmp_path / "credentials.db") as registry:
        broker = CredentialBroker(fixed_pdp, key, ISSUER, registry)
        credential = broker.issue_for_claims(
            example_claims(), now=CLAIMS_NOW - timedelta(minutes=1)
        )
        assert not credential.issued
        assert credential.decision.reason_codes == ("broker.error",)
        assert "revocable" in credential.decision.reasons[0].message


# --- binding to an X.509-SVID (RFC 8705 cnf) --------------------------------------------------


def svid(spiffe_id: str = SPIFFE_ID, name: str = "svid") -> tuple[x509.Certificate, str]:
    """A CA and an X.509-SVID leaf valid around EVIDENCE_TIME: (leaf, CA PEM)."""
    start, end = EVIDENCE_TIME - timedelta(hours=1), EVIDENCE_TIME + timedelta(hours=1)
    ca_key, leaf_key = ec_key(f"{name}-ca"), ec_key(f"{name}-leaf")
    ca = issue(
        dn(organization=f"{name} ca"),
        ca_key.public_key(),
        ca_key,
        start=start,
        end=end,
        ca=True,
        usage=key_usage(key_cert_sign=True, crl_sign=True),
        ski=True,
        aki=True,
    )
    leaf = issue(
        dn(organization=f"{name} leaf"),
        leaf_key.public_key(),
        ca_key,
        issuer=ca.subject,
        start=start,
        end=end,
        ca=False,
        usage=key_usage(digital_signature=True),
        ski=True,
        aki=True,
        extensions=[
            (x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), False)
        ],
    )
    return leaf, cert_pem(ca)


def with_x509_svid(
    trust: dict[str, Any], leaf: x509.Certificate, ca_pem: str, *, der: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The allowed example evidence presenting ``leaf`` instead of its JWT-SVID."""
    evidence = document("allow-eks-workload")
    del evidence["runtime"]["jwt_svid"]
    evidence["runtime"]["x509_svid"] = (
        {"chain_der": base64.b64encode(leaf.public_bytes(serialization.Encoding.DER)).decode()}
        if der
        else {"chain": cert_pem(leaf)}
    )
    anchors = copy.deepcopy(trust)
    anchors["runtime"]["x509_svid"] = {"bundles": {"example.org": ca_pem}}
    return evidence, anchors


def thumbprint(certificate: x509.Certificate) -> str:
    return b64url(hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest())


@pytest.mark.parametrize("der", [False, True])
def test_a_token_is_bound_to_the_x509_svid_the_evidence_presented(
    evidence_pdp: PolicyDecisionPoint, trust: dict[str, Any], key: SigningKey, der: bool
) -> None:
    leaf, ca_pem = svid()
    evidence, anchors = with_x509_svid(trust, leaf, ca_pem, der=der)
    broker = CredentialBroker(evidence_pdp, key, ISSUER)
    credential = broker.issue(evidence, anchors, nonce=EVIDENCE_NONCE, now=EVIDENCE_TIME)
    assert credential.token is not None, credential.decision.reasons
    claims = at_issue_time(credential.token, broker.jwks())
    assert claims["cnf"] == {"x5t#S256": thumbprint(leaf)}
    assert claims["sub"] == SPIFFE_ID
    pem = leaf.public_bytes(serialization.Encoding.PEM)
    same = broker.issue(
        evidence, anchors, nonce=EVIDENCE_NONCE, now=EVIDENCE_TIME, client_certificate=pem
    )
    assert same.token is not None
    assert at_issue_time(same.token, broker.jwks())["cnf"] == {"x5t#S256": thumbprint(leaf)}


def test_a_client_certificate_other_than_the_svid_is_refused(
    evidence_pdp: PolicyDecisionPoint, trust: dict[str, Any], key: SigningKey
) -> None:
    leaf, ca_pem = svid()
    other, _ = svid(name="other")
    evidence, anchors = with_x509_svid(trust, leaf, ca_pem)
    credential = CredentialBroker(evidence_pdp, key, ISSUER).issue(
        evidence,
        anchors,
        nonce=EVIDENCE_NONCE,
        now=EVIDENCE_TIME,
        client_certificate=other.public_bytes(serialization.Encoding.DER),
    )
    assert not credential.issued
    assert credential.decision.reason_codes == ("broker.binding_mismatch",)


@pytest.mark.parametrize("encoding", [serialization.Encoding.PEM, serialization.Encoding.DER])
def test_verified_claims_bind_to_the_given_client_certificate(
    claims_pdp: PolicyDecisionPoint, key: SigningKey, encoding: serialization.Encoding
) -> None:
    leaf, _ = svid("spiffe://prod.example.com/ns/payments/sa/api", name="payments")
    broker = CredentialBroker(claims_pdp, key, ISSUER)
    credential = broker.issue_for_claims(
        example_claims(), now=CLAIMS_NOW, client_certificate=leaf.public_bytes(encoding)
    )
    assert credential.token is not None
    assert at_issue_time(credential.token, broker.jwks())["cnf"] == {"x5t#S256": thumbprint(leaf)}
    unbound = broker.issue_for_claims(example_claims(), now=CLAIMS_NOW)
    assert unbound.token is not None
    assert "cnf" not in at_issue_time(unbound.token, broker.jwks())


def _bad_version_certificate() -> bytes:
    """A DER certificate with version 5: cryptography raises InvalidVersion, not ValueError."""
    signer = ec_key()
    good = issue("client", signer.public_key(), signer).public_bytes(serialization.Encoding.DER)
    return with_x509_version(good, 5)


@pytest.mark.parametrize(
    "garbage",
    [b"", b"not a certificate", b"-----BEGIN CERTIFICATE-----\n", _bad_version_certificate()],
)
def test_an_unreadable_client_certificate_mints_nothing(
    claims_pdp: PolicyDecisionPoint, key: SigningKey, garbage: bytes
) -> None:
    credential = CredentialBroker(claims_pdp, key, ISSUER).issue_for_claims(
        example_claims(), now=CLAIMS_NOW, client_certificate=garbage
    )
    assert not credential.issued
    assert credential.decision.reason_codes == ("broker.error",)
    (reason,) = credential.decision.reasons
    assert reason.message == "the client certificate is not one PEM or DER X.509 certificate"


# --- the registry and revocation --------------------------------------------------------------


def test_revoking_the_signing_key_denies_the_evidence_from_then_on(
    evidence_pdp: PolicyDecisionPoint, trust: dict[str, Any], key: SigningKey
) -> None:
    broker = CredentialBroker(evidence_pdp, key, ISSUER)
    allowed = document("allow-eks-workload")
    assert broker.issue(allowed, trust, nonce=EVIDENCE_NONCE, now=EVIDENCE_TIME).issued
    outcome = broker.revoke(key_id=KEY_ID, reason="key leaked")
    assert outcome.cache_entries_dropped >= 1
    assert outcome.credentials == ()  # no registry: nothing to chase
    again = broker.issue(allowed, trust, nonce=EVIDENCE_NONCE, now=EVIDENCE_TIME)
    assert not again.issued
    assert again.decision.reason_codes == ("image.untrusted_signer",)


def fresh_claims() -> dict[str, Any]:
    """The example claim set, fresh at the current time, signed by a keyless signer and by a
    trusted key (so the credential rests on both)."""
    claims = example_claims()
    del claims["now"]
    now = datetime.now(UTC)
    claims["node"]["issued_at"] = (now - timedelta(seconds=30)).isoformat()
    claims["runtime"]["expires_at"] = (now + timedelta(hours=1)).isoformat()
    claims["image"]["signatures"].append({"verified": True, "key_id": KEY_ID})
    return claims


@pytest.fixture
def live_pdp(engine: str) -> Iterator[PolicyDecisionPoint]:
    """The example configuration, also trusting the signing key KEY_ID."""
    config = load_json("config.json")
    config["trusted_signers"]["key_ids"] = {KEY_ID: "release key"}
    with PolicyDecisionPoint.local(config=config, engine=engine) as pdp:
        yield pdp


def test_revocation_returns_exactly_the_live_credentials_resting_on_the_value(
    live_pdp: PolicyDecisionPoint, key: SigningKey, tmp_path: Path
) -> None:
    with CredentialRegistry(tmp_path / "credentials.db") as registry:
        broker = CredentialBroker(live_pdp, key, ISSUER, registry)
        issued = [broker.issue_for_claims(fresh_claims()) for _ in range(2)]
        assert all(credential.issued for credential in issued)
        outcome = broker.revoke(key_id=KEY_ID, reason="key leaked")
        assert [c.jti for c in outcome.credentials] == sorted(c.jti or "" for c in issued)
        assert outcome.cache_entries_dropped >= 1
        revoked = outcome.credentials[0]
        assert ("signer_subjects", KEY_ID) in revoked.revocable
        assert ("spiffe_ids", "spiffe://prod.example.com/ns/payments/sa/api") in revoked.revocable
        assert (revoked.revocation_reason, revoked.audience) == ("key leaked", "vault")
        by_jti = {credential.jti: credential for credential in issued}
        assert revoked.expires_at == by_jti[revoked.jti].expires_at
        assert revoked.issued_at == by_jti[revoked.jti].issued_at
        assert all(registry.is_revoked(c.jti or "") for c in issued)
        assert broker.revoke(key_id=KEY_ID).credentials == ()  # nothing live rests on it now


def test_revoke_names_every_kind_of_value(
    live_pdp: PolicyDecisionPoint, key: SigningKey, tmp_path: Path
) -> None:
    claims = ClaimSet.parse(fresh_claims())
    assert claims.image is not None
    assert claims.node is not None
    with CredentialRegistry(tmp_path / "credentials.db") as registry:
        broker = CredentialBroker(live_pdp, key, ISSUER, registry)
        revocations: list[dict[str, str]] = [
            {"signer_subject": claims.image.signatures[0].subject or ""},
            {"key_id": KEY_ID},
            {"image_digest": claims.image.digest or ""},
            {"node_id": claims.node.id},
            {"spiffe_id": claims.subject.spiffe_id},
            {"signer_subject": "unrelated", "key_id": "unrelated-key"},
        ]
        for values in revocations:
            credential = broker.issue_for_claims(claims)
            assert credential.issued, values
            outcome = broker.revoke(**values)
            lift = {"signer_subject" if k == "key_id" else k: v for k, v in values.items()}
            if "unrelated" in values.values():
                assert outcome.credentials == ()
                continue
            assert [c.jti for c in outcome.credentials] == [credential.jti]
            live_pdp.lift(**lift)
        with pytest.raises(ValueError, match="at least one value"):
            broker.revoke()


class RevokedMeanwhile(PolicyDecisionPoint):
    """A PDP whose first decision is followed at once by a revocation made by another
    process (another PDP on the same revocation store): the race between decide and record."""

    other: PolicyDecisionPoint | None = None

    def decide(self, claims: Any, *, now: datetime | None = None) -> Any:
        decision = super().decide(claims, now=now)
        if self.other is not None:
            self.other.revoke(spiffe_id="spiffe://prod.example.com/ns/payments/sa/api")
            self.other = None
        return decision


def test_a_revocation_between_decision_and_record_voids_the_credential(
    tmp_path: Path, key: SigningKey, engine: str
) -> None:
    config, store = load_json("config.json"), tmp_path / "revocations.db"
    with (
        RevokedMeanwhile.local(config=config, engine=engine, revocations=store) as pdp,
        PolicyDecisionPoint.local(config=config, engine=engine, revocations=store) as other,
        CredentialRegistry(tmp_path / "credentials.db") as registry,
    ):
        assert isinstance(pdp, RevokedMeanwhile)
        pdp.other = other
        broker = CredentialBroker(pdp, key, ISSUER, registry)
        credential = broker.issue_for_claims(example_claims(), now=CLAIMS_NOW)
        assert not credential.issued
        assert credential.decision.reason_codes == ("subject.revoked",)
        listed = registry.revoked(now=CLAIMS_NOW)
        assert len(listed.revoked) == 1  # recorded, then revoked at once


# --- failing closed ---------------------------------------------------------------------------


def test_nothing_in_the_request_path_raises(
    claims_pdp: PolicyDecisionPoint,
    evidence_pdp: PolicyDecisionPoint,
    trust: dict[str, Any],
    key: SigningKey,
) -> None:
    broker = CredentialBroker(evidence_pdp, key, ISSUER)
    cases: list[tuple[Credential, str]] = [
        (broker.issue(b"not json", trust), "evidence.malformed"),
        (broker.issue({"version": 2}, trust), "evidence.malformed"),
        (broker.issue(document("allow-eks-workload"), {"version": 7}), "config.invalid"),
        (broker.issue(42, trust), "evidence.malformed"),  # type: ignore[arg-type]
        (
            broker.issue(document("allow-eks-workload"), trust, now=datetime(2025, 11, 24)),
            "broker.error",
        ),
    ]
    claims_broker = CredentialBroker(claims_pdp, key, ISSUER)
    cases += [
        (claims_broker.issue_for_claims({"subject": {}}), "input.invalid"),
        (claims_broker.issue_for_claims("{"), "input.invalid"),
        (claims_broker.issue_for_claims(None), "input.invalid"),  # type: ignore[arg-type]
    ]
    for credential, code in cases:
        assert not credential.issued
        assert code in credential.decision.reason_codes, credential.decision.reasons


def test_a_failing_registry_is_a_deny_and_the_log_holds_no_key(
    claims_pdp: PolicyDecisionPoint,
    key: SigningKey,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CredentialRegistry(tmp_path / "credentials.db")
    broker = CredentialBroker(claims_pdp, key, ISSUER, registry)
    registry.close()
    with caplog.at_level(logging.WARNING, logger="attestpolicy.broker"):
        credential = broker.issue_for_claims(example_claims(), now=CLAIMS_NOW)
    assert not credential.issued
    assert credential.decision.reason_codes == ("broker.error",)
    assert "credentials.db" in credential.decision.reasons[0].message
    assert "no credential issued" in caplog.text
    pem = key._key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    for text in (caplog.text, credential.model_dump_json(), repr(credential), repr(broker.keys)):
        assert body[:32] not in text


def test_a_remote_pdp_that_is_down_is_a_deny(key: SigningKey) -> None:
    with PolicyDecisionPoint.remote("http://127.0.0.1:9", connect_timeout=0.5) as pdp:
        credential = CredentialBroker(pdp, key, ISSUER).issue_for_claims(
            example_claims(), now=CLAIMS_NOW
        )
    assert not credential.issued
    assert credential.decision.reason_codes == ("remote.error",)


def test_the_broker_refuses_a_bad_configuration(
    claims_pdp: PolicyDecisionPoint, key: SigningKey
) -> None:
    for issuer in ("", None):
        with pytest.raises(BrokerError, match="issuer"):
            CredentialBroker(claims_pdp, key, issuer)  # type: ignore[arg-type]
    for cap in (0, -5, True, 1.5):
        with pytest.raises(BrokerError, match="max_ttl_seconds"):
            CredentialBroker(claims_pdp, key, ISSUER, max_ttl_seconds=cap)  # type: ignore[arg-type]
    with pytest.raises(BrokerError, match="signing_key"):
        CredentialBroker(claims_pdp, "key.pem", ISSUER)  # type: ignore[arg-type]
    broker = CredentialBroker(claims_pdp, key, ISSUER)
    assert broker.jwks() == {"keys": [key.public_jwk()]}
    assert broker.keys.active is key
