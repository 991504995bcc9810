"""Workload attestor facts: asserted unless bound to a verified PSAT (the real EKS token)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from evidence.helpers import TEST_ASSETS, assert_valid_until
from hypothesis import given, settings
from hypothesis import strategies as st

from attestpolicy.errors import EvidenceError
from attestpolicy.evidence.workload.psat import PsatEvidence, PsatResult, PsatTrust, verify_psat
from attestpolicy.evidence.workload.workload_attestor import (
    WorkloadAttestorEvidence,
    WorkloadAttestorResult,
    WorkloadAttestorTrust,
    verify_workload_attestor,
)

ASSETS = TEST_ASSETS / "k8s_spiffe"
EKS_NOW = datetime.fromtimestamp(1763969878, UTC) + timedelta(minutes=10)
DIGEST = "sha256:" + "ab" * 32
FACTS = {
    "namespace": "hakawai",
    "service_account": "hakawai-litellm-proxy",
    "pod": "hakawai-litellm-proxy-57456bb9cb-bwzxh",
    "image_digest": DIGEST,
}


def real_psat() -> PsatResult:
    trust = PsatTrust.model_validate(
        {
            "issuer": "https://oidc.eks.eu-west-1.amazonaws.com/id/B88E7287E54DB073AC9CDC2FD1BE0969",
            "jwks": json.loads((ASSETS / "eks_jwks.json").read_text()),
            "audiences": ["sts.amazonaws.com"],
        }
    )
    token = (ASSETS / "eks_psat_token.jwt").read_text().strip()
    return verify_psat(PsatEvidence(token=token), trust, now=EKS_NOW)


PSAT = real_psat()


def attest(
    facts: dict[str, Any],
    psat: PsatResult | None = None,
    *,
    now: datetime = EKS_NOW,
    require_binding: bool = False,
) -> WorkloadAttestorResult:
    return verify_workload_attestor(
        WorkloadAttestorEvidence.parse(facts),
        WorkloadAttestorTrust(require_binding=require_binding),
        now=now,
        psat=psat,
    )


def test_unbound_facts_are_recorded_as_asserted() -> None:
    result = attest(FACTS)
    runtime = result.runtime
    assert runtime.verified is False
    assert (runtime.namespace, runtime.service_account, runtime.pod) == (
        "hakawai",
        "hakawai-litellm-proxy",
        "hakawai-litellm-proxy-57456bb9cb-bwzxh",
    )
    assert runtime.image_digest == DIGEST
    assert runtime.expires_at is None
    assert result.unbound_image_digest is None


def test_require_binding_refuses_asserted_facts() -> None:
    with pytest.raises(EvidenceError) as info:
        attest(FACTS, require_binding=True)
    assert info.value.code == "evidence.untrusted"


def test_facts_bound_to_the_real_psat_are_verified() -> None:
    result = attest(FACTS, PSAT, require_binding=True)
    runtime = result.runtime
    assert runtime.verified is True
    assert runtime.namespace == "hakawai"
    assert runtime.pod == "hakawai-litellm-proxy-57456bb9cb-bwzxh"
    assert runtime.expires_at == datetime.fromtimestamp(1764056278, UTC)
    # the token does not bind the image: it stays out of the verified runtime
    assert runtime.image_digest is None
    assert result.unbound_image_digest == DIGEST
    with_uid = FACTS | {"pod_uid": "989f1a6e-8af7-4740-93d8-206f8daf9a84"}
    assert attest(with_uid, PSAT).runtime.verified is True


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"namespace": "kube-system"}, "namespace"),
        ({"service_account": "default"}, "service_account"),
        ({"pod": "hakawai-litellm-proxy-57456bb9cb-zzzzz"}, "pod"),
        ({"pod": None}, "pod"),
        ({"namespace": None}, "namespace"),
        ({"pod_uid": "00000000-0000-0000-0000-000000000000"}, "pod_uid"),
    ],
)
def test_mismatched_facts_are_not_bound(change: dict[str, Any], field: str) -> None:
    facts = {k: v for k, v in (FACTS | change).items() if v is not None}
    with pytest.raises(EvidenceError) as info:
        attest(facts, PSAT)
    assert (info.value.code, info.value.field) == ("evidence.identity_mismatch", field)


def test_the_binding_holds_until_the_psat_expires() -> None:
    assert PSAT.runtime.expires_at is not None
    assert_valid_until(lambda now: attest(FACTS, PSAT, now=now), EKS_NOW, PSAT.runtime.expires_at)


def test_expired_psat_does_not_bind() -> None:
    with pytest.raises(EvidenceError) as info:
        attest(FACTS, PSAT, now=datetime(2026, 11, 22, tzinfo=UTC))
    assert (info.value.code, info.value.field) == ("evidence.expired", "psat")


@pytest.mark.parametrize(
    "facts",
    [
        {"namespace": 5},
        {"namespace": "Not A Name"},
        {"image_digest": "sha256:1234"},
        {"image_digest": "md5:" + "ab" * 16},
        {"pod": ""},
        {"container": "x"},
    ],
)
def test_malformed_facts(facts: dict[str, Any]) -> None:
    with pytest.raises(EvidenceError) as info:
        attest(facts)
    assert info.value.code == "evidence.malformed"


_names = st.sampled_from(
    [None, "hakawai", "hakawai-litellm-proxy", "hakawai-litellm-proxy-57456bb9cb-bwzxh", "x"]
)


@settings(max_examples=150, deadline=None)
@given(
    namespace=_names,
    service_account=_names,
    pod=_names,
    junk=st.none() | st.integers() | st.text(max_size=8),
)
def test_binding_holds_only_for_exact_matches(
    namespace: str | None, service_account: str | None, pod: str | None, junk: object
) -> None:
    facts = {
        "namespace": namespace,
        "service_account": service_account,
        "pod": pod,
        "pod_uid": junk,
    }
    facts = {k: v for k, v in facts.items() if v is not None}
    matches = (namespace, service_account, pod) == (
        "hakawai",
        "hakawai-litellm-proxy",
        "hakawai-litellm-proxy-57456bb9cb-bwzxh",
    ) and junk in (None, "989f1a6e-8af7-4740-93d8-206f8daf9a84")
    if matches:
        assert attest(facts, PSAT).runtime.verified is True
        return
    with pytest.raises(EvidenceError) as info:
        attest(facts, PSAT)
    assert info.value.code in ("evidence.identity_mismatch", "evidence.malformed")
