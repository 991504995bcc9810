"""fresh_evidence: generated evidence that the real verifiers and the policy accept now."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from attestpolicy._demo_evidence import FreshEvidence, fresh_evidence
from attestpolicy.config import validate_config
from attestpolicy.decision import Decision
from attestpolicy.evidence.document import load_evidence_document, load_trust_config
from attestpolicy.pdp import PolicyDecisionPoint

SIGNATURE = "dev.cosignproject.cosign/signature"


@pytest.fixture(scope="module")
def fresh() -> FreshEvidence:
    return fresh_evidence()


@pytest.fixture
def pdp(fresh: FreshEvidence, engine: str) -> Iterator[PolicyDecisionPoint]:
    with PolicyDecisionPoint.local(config=fresh.config, engine=engine) as point:
        yield point


def _cosign(document: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = document["image"]["cosign"][0]
    return entry


def _denied(decision: Decision, *codes: str) -> None:
    assert not decision.allow
    assert decision.ttl_seconds == 0
    assert set(codes) <= set(decision.reason_codes), decision.reasons


def test_allowed_now_with_what_it_rests_on(fresh: FreshEvidence, pdp: PolicyDecisionPoint) -> None:
    decision = pdp.decide_evidence(fresh.document, fresh.trust)  # the real current time
    assert decision.allow, decision.reasons
    assert decision.reasons == ()
    assert decision.ttl_seconds == 600
    assert decision.ttl_bound_by == "audience"
    assert decision.valid_until is not None
    assert decision.valid_until <= fresh.expires_at
    assert decision.revocable is not None
    assert {
        ("signer_subjects", fresh.signer_key_id),
        ("image_digests", fresh.image_digest),
        ("spiffe_ids", fresh.spiffe_id),
    } <= set(decision.revocable)


def test_revoking_the_signer_denies(fresh: FreshEvidence, pdp: PolicyDecisionPoint) -> None:
    assert pdp.decide_evidence(fresh.document, fresh.trust).allow
    pdp.revoke(signer_subject=fresh.signer_key_id)
    _denied(pdp.decide_evidence(fresh.document, fresh.trust), "image.untrusted_signer")


def test_a_flipped_signature_byte_is_denied(fresh: FreshEvidence, pdp: PolicyDecisionPoint) -> None:
    document = copy.deepcopy(fresh.document)
    annotations = _cosign(document)["signature"]["annotations"]
    signature = bytearray(base64.b64decode(annotations[SIGNATURE]))
    signature[-1] ^= 0x01
    annotations[SIGNATURE] = base64.b64encode(signature).decode()
    decision = pdp.decide_evidence(document, fresh.trust)
    _denied(decision, "evidence.signature_invalid", "image.unsigned")


def test_another_digest_is_denied(fresh: FreshEvidence, pdp: PolicyDecisionPoint) -> None:
    document = copy.deepcopy(fresh.document)
    other = "sha256:" + hashlib.sha256(b"another image").hexdigest()
    document["image"]["reference"] = fresh.image_reference.replace(fresh.image_digest, other)
    decision = pdp.decide_evidence(document, fresh.trust)
    _denied(decision, "evidence.digest_mismatch", "image.not_allowed")


def test_expired_evidence_is_denied(fresh: FreshEvidence, pdp: PolicyDecisionPoint) -> None:
    later = fresh.expires_at + timedelta(minutes=5)
    _denied(pdp.decide_evidence(fresh.document, fresh.trust, now=later), "evidence.expired")


def test_two_calls_use_different_keys(fresh: FreshEvidence) -> None:
    other = fresh_evidence()
    assert other.signer_key_id != fresh.signer_key_id
    assert other.image_digest != fresh.image_digest
    assert other.svid_certificate != fresh.svid_certificate
    for section in ("image", "provenance", "runtime"):
        assert other.trust[section] != fresh.trust[section]
    with PolicyDecisionPoint.local(config=fresh.config) as pdp:
        # one call's evidence is not trusted under the other's keys
        _denied(pdp.decide_evidence(fresh.document, other.trust), "evidence.untrusted")


def test_the_x509_svid_is_the_reported_certificate(fresh: FreshEvidence) -> None:
    assert fresh.svid_certificate is not None
    chain = fresh.document["runtime"]["x509_svid"]["chain"]
    leaf = x509.load_pem_x509_certificate(chain.encode())
    assert leaf.public_bytes(Encoding.DER) == fresh.svid_certificate
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [fresh.spiffe_id]
    assert leaf.not_valid_after_utc == fresh.expires_at


def test_jwt_svid_and_custom_identity(engine: str) -> None:
    spiffe_id = "spiffe://other.example.org/ns/billing/sa/invoicer"
    fresh = fresh_evidence(
        spiffe_id=spiffe_id,
        audience="vault",
        namespace="billing",
        service_account="invoicer",
        lifetime=timedelta(minutes=5),
        svid="jwt",
    )
    assert fresh.svid_certificate is None
    assert set(fresh.document["runtime"]) == {"jwt_svid", "psat"}
    with PolicyDecisionPoint.local(config=fresh.config, engine=engine) as pdp:
        decision = pdp.decide_evidence(fresh.document, fresh.trust)
    assert decision.allow, decision.reasons
    assert decision.ttl_bound_by == "evidence_expiry"
    assert ("spiffe_ids", spiffe_id) in (decision.revocable or ())


def test_documents_are_in_the_file_formats() -> None:
    now = datetime(2030, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
    fresh = fresh_evidence(now)
    assert fresh.issued_at == now.replace(microsecond=0)
    assert "node" not in fresh.document
    assert "node" not in fresh.config["workloads"][fresh.spiffe_id]["require"]
    load_evidence_document(json.dumps(fresh.document).encode())
    load_trust_config(json.dumps(fresh.trust).encode())
    validate_config(json.loads(json.dumps(fresh.config)))
    with PolicyDecisionPoint.local(config=fresh.config) as pdp:
        assert pdp.decide_evidence(fresh.document, fresh.trust, now=now).allow


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"now": datetime(2030, 1, 1)}, "timezone-aware"),
        ({"lifetime": timedelta(0)}, "lifetime must be positive"),
        ({"namespace": "Not_A_Name"}, "namespace must be a Kubernetes object name"),
        ({"spiffe_id": "https://example.org/x"}, "spiffe_id"),
        ({"svid": "x5c"}, "svid must be"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fresh_evidence(**kwargs)
