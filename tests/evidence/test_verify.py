"""verify_evidence over the example evidence documents (real vectors) and their variants.

Every example is evaluated at the one pinned time the examples are built for, with the
TPM nonce 0x9009 the GCE vector was quoted with. Expected values are computed here from
the real vectors in tests/assets, independently of the verifiers.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from evidence.helpers import raised
from evidence.sigstore_bundles import Deployment, statement
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm

from attestpolicy.claims import ClaimSet, ImageSignature
from attestpolicy.errors import ConfigError, EvidenceError
from attestpolicy.evidence.document import (
    EvidenceDocument,
    TrustConfig,
    load_evidence_document,
    load_trust_config,
)
from attestpolicy.evidence.image.sigstore_bundle import COSIGN_SIGN_PREDICATE_TYPE
from attestpolicy.evidence.verify import EvidenceReport, verify_evidence, verify_evidence_report

EXAMPLES = Path(__file__).resolve().parents[2] / "attestpolicy" / "examples"
ASSETS = Path(__file__).resolve().parent.parent / "assets"

NOW = "2025-11-24T07:45:00Z"
NONCE = bytes.fromhex("9009")
SPIFFE_ID = "spiffe://example.org/ns/hakawai/sa/hakawai-litellm-proxy"
REPOSITORY = "192.168.64.2:5000/cosign-signed-single-sample"


def _manifest_digest(directory: str) -> str:
    data = (ASSETS / "cosign" / directory / "manifest.json").read_bytes()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _key_id(pem_file: str) -> str:
    key = serialization.load_pem_public_key((ASSETS / "cosign" / pem_file).read_bytes())
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


DIGEST = _manifest_digest("dir-img-cosign-valid")
MODIFIED_DIGEST = _manifest_digest("dir-img-cosign-modified-manifest")
KEY_REKOR_DIGEST = _manifest_digest("dir-img-cosign-key-rekor-valid")
COSIGN_KEY_ID = _key_id("cosign.pub")
PSAT = (ASSETS / "k8s_spiffe" / "eks_psat_token.jwt").read_text().strip()
PSAT_EXPIRY = _utc(_jwt_claims(PSAT)["exp"])
# the GCE AK's fingerprint (derived by hand from the vector in tests/evidence/test_tpm.py)
NODE_ID = "sha256:6a114d75ad6e7b75f7da33dead50f2e29bf509108646ced2e588bebc35f0d5b6"
GCB_DIGEST = (ASSETS / "slsa" / "gcb-v0.3-github.digest").read_text().strip()


@cache
def _example_text(name: str) -> str:
    return (EXAMPLES / "evidence" / f"{name}.json").read_text()


def example(name: str) -> dict[str, Any]:
    """A fresh, mutable copy of one example evidence document."""
    data: dict[str, Any] = json.loads(_example_text(name))
    return data


@cache
def trust() -> TrustConfig:
    return load_trust_config(EXAMPLES / "trust.json")


SVID = example("allow-eks-workload")["runtime"]["jwt_svid"]["token"]
SVID_EXPIRY = _utc(_jwt_claims(SVID)["exp"])


def report(
    document: EvidenceDocument | dict[str, Any],
    anchors: TrustConfig | dict[str, Any] | None = None,
    now: datetime | str | None = NOW,
    **kwargs: Any,
) -> EvidenceReport:
    kwargs.setdefault("nonce", NONCE)
    return verify_evidence_report(document, anchors or trust(), now, **kwargs)


def problems(result: EvidenceReport) -> list[tuple[str, str | None]]:
    return [(problem.code, problem.field) for problem in result.problems]


def expect_error(code: str, field: str, *args: Any, **kwargs: Any) -> EvidenceError:
    error = raised(lambda: report(*args, **kwargs))
    assert (error.code, error.field) == (code, field), error
    return error


def trust_mapping() -> dict[str, Any]:
    """A fresh, mutable copy of the example trust configuration."""
    data: dict[str, Any] = json.loads((EXAMPLES / "trust.json").read_text())
    return data


# --- what the scenarios share -------------------------------------------------------


def assert_fresh_tpm_node(claims: ClaimSet) -> None:
    node = claims.node
    assert node is not None
    assert (node.kind, node.id, node.verified, node.nonce_verified) == ("tpm", NODE_ID, True, True)
    assert node.issued_at == datetime(2025, 11, 24, 7, 44, tzinfo=UTC)  # collected_at
    assert node.expires_at is None
    assert len(node.measurements) == 72
    assert node.measurements["pcr.sha1.0"] == "c032c3b51dbb6f96b047421512fd4b4dfde496f3"
    assert node.measurements["pcr.sha256.0"] == (
        "0f35c214608d93c7a6e68ae7359b4a8be5a0e99eea9107ece427c4dea4e439cf"
    )
    assert node.measurements["pcr.sha256.7"] == (
        "3365d7fa2b024c852913c06e04ffbfa6ea5289f743bbf1a76f7ffdf21ed84793"
    )


def assert_bound_runtime(claims: ClaimSet) -> None:
    runtime = claims.runtime
    assert runtime is not None
    assert runtime.verified is True
    assert (runtime.namespace, runtime.service_account, runtime.pod) == (
        "hakawai",
        "hakawai-litellm-proxy",
        "hakawai-litellm-proxy-57456bb9cb-bwzxh",
    )
    assert runtime.image_digest is None  # a PSAT does not bind the image
    assert runtime.expires_at == min(SVID_EXPIRY, PSAT_EXPIRY)


def assert_common(claims: ClaimSet) -> None:
    assert claims.now == datetime(2025, 11, 24, 7, 45, tzinfo=UTC)
    assert claims.subject.spiffe_id == SPIFFE_ID
    assert claims.request.audience == "vault"
    assert claims.request.requested_ttl_seconds is None


def test_the_svid_and_psat_times_are_what_the_examples_rely_on() -> None:
    assert datetime(2025, 11, 24, 9, tzinfo=UTC) == SVID_EXPIRY
    assert datetime(2025, 11, 25, 7, 37, 58, tzinfo=UTC) == PSAT_EXPIRY
    assert _utc(_jwt_claims(PSAT)["iat"]) < datetime(2025, 11, 24, 7, 45, tzinfo=UTC)
    assert DIGEST == "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00"


# --- the scenarios ------------------------------------------------------------------------


def test_allow_eks_workload_verifies_every_section() -> None:
    result = report(example("allow-eks-workload"))
    assert result.problems == ()
    claims = result.claims
    assert_common(claims)
    assert claims.image is not None
    assert claims.image.reference == f"{REPOSITORY}@{DIGEST}"
    assert claims.image.digest == DIGEST
    assert claims.image.signatures == (ImageSignature(verified=True, key_id=COSIGN_KEY_ID),)
    assert claims.provenance is None
    assert_fresh_tpm_node(claims)
    assert_bound_runtime(claims)


def test_verify_evidence_returns_the_reports_claims() -> None:
    document = example("allow-eks-workload")
    assert verify_evidence(document, trust(), NOW, nonce=NONCE) == report(document).claims


def test_deny_tag_only_has_no_digest_and_no_verified_signature() -> None:
    result = report(example("deny-tag-only"))
    assert problems(result) == [("evidence.digest_mismatch", "image.cosign.0")]
    claims = result.claims
    assert_common(claims)
    assert claims.image is not None
    assert claims.image.reference == "192.168.64.2:5000/skopeo-signed:tag"
    assert claims.image.digest is None
    assert claims.image.signatures == (ImageSignature(verified=False),)
    assert_fresh_tpm_node(claims)
    assert_bound_runtime(claims)


def test_deny_modified_manifest_signature_does_not_cover_the_image() -> None:
    result = report(example("deny-modified-manifest"))
    assert problems(result) == [
        (
            "evidence.digest_mismatch",
            "image.cosign.0.signature.payload.critical.image.docker-manifest-digest",
        )
    ]
    claims = result.claims
    assert claims.image is not None
    assert claims.image.reference == f"{REPOSITORY}@{MODIFIED_DIGEST}"
    assert claims.image.digest == MODIFIED_DIGEST
    assert claims.image.signatures == (ImageSignature(verified=False),)
    assert_fresh_tpm_node(claims)
    assert_bound_runtime(claims)


def test_deny_unbound_runtime_facts_are_asserted_not_verified() -> None:
    result = report(example("deny-unbound-runtime"))
    assert problems(result) == [("evidence.untrusted", "runtime.attestor")]
    claims = result.claims
    assert_common(claims)
    assert claims.image is not None
    assert claims.image.signatures == (ImageSignature(verified=True, key_id=COSIGN_KEY_ID),)
    assert_fresh_tpm_node(claims)
    runtime = claims.runtime
    assert runtime is not None
    assert runtime.verified is False
    assert (runtime.namespace, runtime.service_account, runtime.pod) == (
        "hakawai",
        "hakawai-litellm-proxy",
        "hakawai-litellm-proxy-57456bb9cb-bwzxh",
    )
    assert runtime.image_digest == DIGEST  # asserted by the attestor, passed through
    assert runtime.expires_at == SVID_EXPIRY


def test_deny_provenance_mismatch_names_another_image() -> None:
    result = report(example("deny-provenance-mismatch"))
    assert problems(result) == [("evidence.digest_mismatch", "provenance.statement.subject")]
    claims = result.claims
    assert claims.provenance is not None
    assert claims.provenance.model_dump() == {
        "verified": False,
        "builder_id": None,
        "source_repo": None,
        "subject_digests": (),
        "predicate_type": None,
    }
    assert claims.image is not None
    assert claims.image.signatures == (ImageSignature(verified=True, key_id=COSIGN_KEY_ID),)
    assert_fresh_tpm_node(claims)
    assert_bound_runtime(claims)


def test_the_provenance_itself_verifies_when_no_image_is_claimed() -> None:
    document = example("deny-provenance-mismatch")
    del document["image"]
    result = report(document)
    assert result.problems == ()
    provenance = result.claims.provenance
    assert provenance is not None
    assert provenance.verified is True
    assert provenance.subject_digests == (GCB_DIGEST,)
    assert provenance.builder_id == "https://cloudbuild.googleapis.com/GoogleHostedWorker@v0.3"
    assert provenance.predicate_type == "https://slsa.dev/provenance/v0.1"
    assert GCB_DIGEST != DIGEST


def test_deny_wrong_signer_is_not_verified_by_the_trusted_key() -> None:
    result = report(example("deny-wrong-signer"))
    assert problems(result) == [
        (
            "evidence.signature_invalid",
            "image.cosign.0.signature.annotations.dev.cosignproject.cosign/signature",
        )
    ]
    claims = result.claims
    assert claims.image is not None
    assert claims.image.reference == f"192.168.64.2:5000/cosign-signed/key-1@{KEY_REKOR_DIGEST}"
    assert claims.image.digest == KEY_REKOR_DIGEST
    assert claims.image.signatures == (ImageSignature(verified=False),)
    assert_fresh_tpm_node(claims)
    assert_bound_runtime(claims)


def test_the_wrong_signer_is_cosign2() -> None:
    anchors = trust_mapping()
    anchors["image"]["cosign"]["public_keys"] = [(ASSETS / "cosign" / "cosign2.pub").read_text()]
    result = report(example("deny-wrong-signer"), anchors)
    assert result.problems == ()
    assert result.claims.image is not None
    assert result.claims.image.signatures == (
        ImageSignature(verified=True, key_id=_key_id("cosign2.pub")),
    )


def test_an_attestation_is_not_counted_as_an_image_signature() -> None:
    deployment = Deployment()
    document = example("allow-eks-workload")
    document["image"]["sigstore"] = [
        {"bundle": deployment.dsse_bundle(statement(DIGEST, "https://slsa.dev/provenance/v1"))},
        {"bundle": deployment.dsse_bundle(statement(DIGEST, COSIGN_SIGN_PREDICATE_TYPE))},
    ]
    anchors = trust_mapping()
    signer = {"subject": "signer@example.com", "issuer": "https://issuer.example.com"}
    anchors["image"]["sigstore"] = {
        "trusted_root": deployment.trusted_root(),
        "identities": [signer],
    }
    result = report(document, anchors)
    assert problems(result) == [
        ("evidence.unsupported", "image.sigstore.0.dsse_envelope.payload.predicateType")
    ]
    assert result.claims.image is not None
    assert result.claims.image.signatures == (
        ImageSignature(verified=True, key_id=COSIGN_KEY_ID),
        ImageSignature(verified=False),
        ImageSignature(verified=True, issuer=signer["issuer"], subject=signer["subject"]),
    )


# --- time and freshness -----------------------------------------------------------------


@pytest.mark.parametrize("now", [datetime(2026, 11, 22, tzinfo=UTC), None])
def test_at_the_real_current_time_the_svid_has_expired(now: datetime | None) -> None:
    # None is the wall clock: any time after 2025-11-24T09:00Z
    for name in ("allow-eks-workload", "deny-unbound-runtime"):
        error = expect_error(
            "evidence.expired", "runtime.jwt_svid.token.exp", example(name), now=now
        )
        assert "2025-11-24T09:00:00" in error.detail
    with pytest.raises(EvidenceError) as info:
        verify_evidence(example("allow-eks-workload"), trust(), now, nonce=NONCE)
    assert info.value.code == "evidence.expired"


def test_the_svid_is_valid_up_to_its_expiry() -> None:
    last = report(example("allow-eks-workload"), now=SVID_EXPIRY - timedelta(seconds=1))
    assert last.problems == ()
    expect_error(
        "evidence.expired",
        "runtime.jwt_svid.token.exp",
        example("allow-eks-workload"),
        now=SVID_EXPIRY,
    )


def test_a_wrong_nonce_leaves_the_node_unverified() -> None:
    result = report(example("allow-eks-workload"), nonce=bytes.fromhex("9008"))
    assert problems(result) == [
        ("evidence.nonce_mismatch", "node.tpm.go_tpm_tools_attestation.quotes[0].nonce")
    ]
    node = result.claims.node
    assert node is not None
    assert (node.kind, node.verified, node.nonce_verified) == ("tpm", False, False)
    assert node.measurements == {}
    assert_bound_runtime(result.claims)


def test_without_a_nonce_the_node_verifies_but_is_not_fresh() -> None:
    result = report(example("allow-eks-workload"), nonce=None)
    assert result.problems == ()
    node = result.claims.node
    assert node is not None
    assert (node.verified, node.nonce_verified, node.id) == (True, False, NODE_ID)


def test_a_nonce_audience_is_checked_against_the_psat() -> None:
    # the real PSAT's audience is the fixed sts.amazonaws.com, so no per-request value matches
    result = report(example("allow-eks-workload"), nonce_audience="request-7f3a")
    assert problems(result) == [("evidence.nonce_mismatch", "runtime.psat.token.aud")]
    assert result.claims.runtime is not None
    assert result.claims.runtime.verified is False
    result = report(example("allow-eks-workload"), nonce_audience="sts.amazonaws.com")
    assert result.problems == ()


# --- trust sections -----------------------------------------------------------------------


def test_missing_trust_sections_are_untrusted_problems() -> None:
    anchors = {"version": 1, "runtime": {"jwt_svid": trust_mapping()["runtime"]["jwt_svid"]}}
    result = report(example("deny-provenance-mismatch"), anchors)
    assert problems(result) == [
        ("evidence.untrusted", "image.cosign.0"),
        ("evidence.untrusted", "provenance"),
        ("evidence.untrusted", "node.tpm"),
        ("evidence.untrusted", "runtime.psat"),
    ]
    claims = result.claims
    assert claims.subject.spiffe_id == SPIFFE_ID
    assert claims.image is not None
    assert claims.image.signatures == (ImageSignature(verified=False),)
    assert claims.provenance is not None
    assert claims.provenance.verified is False
    assert claims.node is not None
    assert (claims.node.verified, claims.node.nonce_verified) == (False, False)
    assert claims.runtime is not None
    assert claims.runtime.verified is False


def test_without_jwt_svid_trust_there_is_no_subject() -> None:
    anchors = trust_mapping()
    del anchors["runtime"]["jwt_svid"]
    expect_error("evidence.untrusted", "runtime.jwt_svid", example("allow-eks-workload"), anchors)


def test_trust_as_a_mapping_and_invalid_trust() -> None:
    mapping = trust_mapping()
    assert report(example("allow-eks-workload"), mapping).problems == ()
    mapping["runtime"]["psat"]["audiences"] = "sts.amazonaws.com"
    with pytest.raises(ConfigError) as info:
        report(example("allow-eks-workload"), mapping)
    assert "runtime.psat.audiences" in str(info.value)


# --- the subject comes from exactly one verified SVID --------------------------------------


def test_no_svid_is_malformed() -> None:
    document = example("allow-eks-workload")
    del document["runtime"]["jwt_svid"]
    expect_error("evidence.malformed", "runtime", document)


def test_two_svids_are_malformed() -> None:
    document = example("allow-eks-workload")
    chain = (ASSETS / "k8s_spiffe" / "rust-spiffe_1-svid-chain.der").read_bytes()
    document["runtime"]["x509_svid"] = {"chain_der": base64.b64encode(chain).decode()}
    expect_error("evidence.malformed", "runtime", document)


def _fresh_key() -> tuple[ec.EllipticCurvePrivateKey, dict[str, Any]]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    return key, jwk


def mint_svid(
    key: ec.EllipticCurvePrivateKey,
    kid: str,
    *,
    sub: str = SPIFFE_ID,
    iat: datetime = datetime(2025, 11, 24, 7, tzinfo=UTC),
    exp: datetime = datetime(2025, 11, 24, 9, tzinfo=UTC),
) -> str:
    claims = {"sub": sub, "aud": "attestpolicy", "iat": int(iat.timestamp())}
    claims["exp"] = int(exp.timestamp())
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid, "typ": "JWT"})


def _example_kid() -> str:
    kid: str = jwt.get_unverified_header(SVID)["kid"]
    return kid


def test_an_svid_signed_by_another_key_with_the_trusted_kid_is_rejected() -> None:
    key, _ = _fresh_key()
    document = example("allow-eks-workload")
    document["runtime"]["jwt_svid"]["token"] = mint_svid(key, _example_kid())
    expect_error("evidence.signature_invalid", "runtime.jwt_svid.token.signature", document)


def test_an_svid_with_an_unknown_kid_is_untrusted() -> None:
    key, _ = _fresh_key()
    document = example("allow-eks-workload")
    document["runtime"]["jwt_svid"]["token"] = mint_svid(key, "unknown-kid")
    expect_error("evidence.untrusted", "runtime.jwt_svid.token.header.kid", document)


def test_an_svid_of_another_trust_domain_is_untrusted() -> None:
    key, _ = _fresh_key()
    document = example("allow-eks-workload")
    document["runtime"]["jwt_svid"]["token"] = mint_svid(
        key, _example_kid(), sub="spiffe://attacker.example/ns/hakawai/sa/hakawai-litellm-proxy"
    )
    expect_error("evidence.untrusted", "runtime.jwt_svid.token.sub", document)


def _trust_with_svid_key(jwk: dict[str, Any], kid: str) -> dict[str, Any]:
    anchors = trust_mapping()
    anchors["runtime"]["jwt_svid"]["bundles"] = {"example.org": {"keys": [{**jwk, "kid": kid}]}}
    return anchors


def test_an_expired_psat_leaves_the_runtime_unverified() -> None:
    # an SVID (made here) that outlives the real PSAT
    key, jwk = _fresh_key()
    later = PSAT_EXPIRY + timedelta(hours=1)
    document = example("allow-eks-workload")
    document["runtime"]["jwt_svid"]["token"] = mint_svid(
        key, "test", iat=PSAT_EXPIRY, exp=later + timedelta(hours=1)
    )
    result = report(document, _trust_with_svid_key(jwk, "test"), now=later)
    assert problems(result) == [("evidence.expired", "runtime.psat.token.exp")]
    runtime = result.claims.runtime
    assert runtime is not None
    assert runtime.verified is False
    assert runtime.expires_at == later + timedelta(hours=1)
    assert_fresh_tpm_node(result.claims)


def test_the_runtime_expires_with_the_psat_when_the_svid_outlives_it() -> None:
    key, jwk = _fresh_key()
    document = example("allow-eks-workload")
    document["runtime"]["jwt_svid"]["token"] = mint_svid(
        key, "test", exp=PSAT_EXPIRY + timedelta(days=1)
    )
    result = report(document, _trust_with_svid_key(jwk, "test"))
    assert result.problems == ()
    assert result.claims.runtime is not None
    assert result.claims.runtime.expires_at == PSAT_EXPIRY


# --- runtime binding ------------------------------------------------------------------------


def _retoken(token: str, change: dict[str, Any]) -> str:
    header, _, signature = token.split(".")
    claims = _jwt_claims(token)
    claims.update(change)
    encoded = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{encoded}.{signature}"


def test_a_tampered_psat_does_not_bind_the_facts() -> None:
    document = example("allow-eks-workload")
    document["runtime"]["psat"]["token"] = _retoken(PSAT, {"sub": "system:serviceaccount:a:b"})
    result = report(document)
    assert problems(result) == [("evidence.signature_invalid", "runtime.psat.token.signature")]
    runtime = result.claims.runtime
    assert runtime is not None
    assert runtime.verified is False
    assert runtime.namespace == "hakawai"  # the attestor's unbound facts
    assert runtime.expires_at == SVID_EXPIRY


@pytest.mark.parametrize(
    ("fact", "value"),
    [
        ("namespace", "kube-system"),
        ("service_account", "default"),
        ("pod", "hakawai-litellm-proxy-57456bb9cb-zzzzz"),
        ("pod_uid", "00000000-0000-0000-0000-000000000000"),
    ],
)
def test_facts_that_differ_from_the_psat_are_an_identity_mismatch(fact: str, value: str) -> None:
    document = example("allow-eks-workload")
    document["runtime"]["attestor"][fact] = value
    result = report(document)
    assert problems(result) == [("evidence.identity_mismatch", f"runtime.attestor.{fact}")]
    assert result.claims.runtime is not None
    assert result.claims.runtime.verified is False


def test_the_psat_alone_gives_a_verified_runtime() -> None:
    document = example("allow-eks-workload")
    del document["runtime"]["attestor"]
    result = report(document)
    assert result.problems == ()
    assert_bound_runtime(result.claims)


def test_binding_required_without_a_psat_is_untrusted() -> None:
    anchors = trust_mapping()
    anchors["runtime"]["attestor"]["require_binding"] = True
    result = report(example("deny-unbound-runtime"), anchors)
    assert problems(result) == [("evidence.untrusted", "runtime.attestor")]
    runtime_claim = result.claims.runtime
    assert runtime_claim is not None
    assert runtime_claim.verified is False
    assert runtime_claim.namespace is None  # nothing asserted is kept
    assert runtime_claim.expires_at == SVID_EXPIRY


def test_the_svid_alone_gives_a_runtime_with_only_its_expiry() -> None:
    document = example("allow-eks-workload")
    document["runtime"] = {"jwt_svid": document["runtime"]["jwt_svid"]}
    result = report(document)
    assert result.problems == ()
    runtime = result.claims.runtime
    assert runtime is not None
    assert runtime.model_dump() == {
        "verified": True,
        "namespace": None,
        "service_account": None,
        "pod": None,
        "image_digest": None,
        "expires_at": SVID_EXPIRY,
    }


# --- images with several signatures ---------------------------------------------------------


def test_each_signature_is_verified_on_its_own() -> None:
    document = example("allow-eks-workload")
    good = document["image"]["cosign"][0]
    forged = copy.deepcopy(good)
    forged["signature"]["annotations"]["dev.cosignproject.cosign/signature"] = example(
        "deny-wrong-signer"
    )["image"]["cosign"][0]["signature"]["annotations"]["dev.cosignproject.cosign/signature"]
    document["image"]["cosign"] = [forged, good]
    result = report(document)
    assert problems(result) == [
        (
            "evidence.signature_invalid",
            "image.cosign.0.signature.annotations.dev.cosignproject.cosign/signature",
        )
    ]
    assert result.claims.image is not None
    assert result.claims.image.signatures == (
        ImageSignature(verified=False),
        ImageSignature(verified=True, key_id=COSIGN_KEY_ID),
    )


def test_an_image_without_signatures_has_none() -> None:
    document = example("allow-eks-workload")
    document["image"]["cosign"] = []
    result = report(document)
    assert result.problems == ()
    assert result.claims.image is not None
    assert result.claims.image.signatures == ()
    assert result.claims.image.digest == DIGEST


def test_the_loaded_and_the_mapping_document_verify_alike() -> None:
    loaded = load_evidence_document(EXAMPLES / "evidence" / "allow-eks-workload.json")
    assert report(loaded) == report(example("allow-eks-workload"))


# --- property: mutated documents ------------------------------------------------------------

# signed values: (path, whether every byte is covered by a signature or a signed digest)
SIGNED_VALUES: list[tuple[tuple[str | int, ...], bool]] = [
    (("image", "cosign", 0, "manifest"), True),
    (("image", "cosign", 0, "signature", "payload"), True),
    (
        ("image", "cosign", 0, "signature", "annotations", "dev.cosignproject.cosign/signature"),
        True,
    ),
    (("provenance", "dsse", "envelope", "payload"), True),
    (("provenance", "dsse", "envelope", "signatures", 0, "sig"), True),
    # the protobuf also carries event logs nobody signs: only the quoted parts must hold
    (("node", "tpm", "go_tpm_tools_attestation"), False),
    (("runtime", "psat", "token"), True),
    (("runtime", "jwt_svid", "token"), True),
]
SECTION_OF = {"image": "image", "provenance": "provenance", "node": "node", "runtime": "runtime"}
NAMES = [
    "allow-eks-workload",
    "deny-tag-only",
    "deny-modified-manifest",
    "deny-unbound-runtime",
    "deny-provenance-mismatch",
    "deny-wrong-signer",
    "provenance-only",
]


def pool_document(name: str) -> dict[str, Any]:
    if name == "provenance-only":  # the provenance verifies when no image is claimed
        document = example("deny-provenance-mismatch")
        del document["image"]
        return document
    return example(name)


@cache
def baseline(name: str) -> EvidenceReport:
    return report(pool_document(name))


def _paths(value: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from _paths(item, (*prefix, index))


def _get(document: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        document = document[part]
    return document


def _has(document: Any, path: tuple[str | int, ...]) -> bool:
    try:
        _get(document, path)
    except (KeyError, IndexError):
        return False
    return True


def _set(document: Any, path: tuple[str | int, ...], value: Any) -> None:
    _get(document, path[:-1])[path[-1]] = value


def _drop(document: Any, path: tuple[str | int, ...]) -> None:
    del _get(document, path[:-1])[path[-1]]


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)
BASE64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=."


def _section_claim(claims: ClaimSet, section: str) -> Any:
    return getattr(claims, section)


def _assert_failures_are_reported(result: EvidenceReport) -> None:
    """Every unverified claim has a problem in its section; nothing else is unverified."""
    claims = result.claims
    fields = [problem.field or "" for problem in result.problems]
    unverified = set()
    if claims.image is not None and any(not s.verified for s in claims.image.signatures):
        unverified.add("image")
    for section in ("provenance", "node", "runtime"):
        claim = getattr(claims, section)
        if claim is not None and not claim.verified:
            unverified.add(section)
    for section in unverified:
        assert any(field.startswith(section) for field in fields), (section, fields)
    assert all(field.split(".")[0] in SECTION_OF for field in fields), fields


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_mutated_documents_fail_closed(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(NAMES), label="document")
    document = pool_document(name)
    kind = data.draw(st.sampled_from(["drop", "replace", "flip"]), label="mutation")
    signed: tuple[tuple[str | int, ...], bool] | None = None
    if kind == "flip":
        candidates = [(path, full) for path, full in SIGNED_VALUES if _has(document, path)]
        signed = data.draw(st.sampled_from(candidates), label="signed value")
        path = signed[0]
        text = _get(document, path)
        assert isinstance(text, str)
        index = data.draw(st.integers(0, len(text) - 1), label="index")
        char = data.draw(
            st.sampled_from(BASE64_CHARS).filter(lambda c: c != text[index]), label="char"
        )
        _set(document, path, text[:index] + char + text[index + 1 :])
    else:
        path = data.draw(st.sampled_from(list(_paths(document))), label="path")
        if kind == "drop":
            _drop(document, path)
        else:
            _set(document, path, data.draw(JSON_VALUES, label="value"))
    try:
        result = report(document)
    except (EvidenceError, ConfigError) as exc:
        event(f"{kind}: {exc.code}")
        return
    event(f"{kind}: report")
    # the subject is never anything but the one the (unmutated) SVID names
    assert result.claims.subject.spiffe_id == SPIFFE_ID
    _assert_failures_are_reported(result)
    if signed is None:
        return
    section = str(signed[0][0])
    claim = _section_claim(result.claims, section)
    original = _section_claim(baseline(name).claims, section)
    if section == "image":
        verified = [s for s in claim.signatures if s.verified]
        assert verified == [], "a mutated signed image value verified"
    elif signed[1]:
        assert claim.verified is False, f"a mutated signed {section} value verified"
    elif claim.verified:
        assert claim == original, "a mutation changed what a verified node claims"
