"""Which verifier checks which kind of node evidence: one typed table.

:data:`NODE_VERIFIERS` maps each node evidence kind of the evidence document
(:data:`attestpolicy.evidence.document.NODE_KINDS`) to a :class:`NodeVerifier`: it picks
that kind's section and trust anchors and runs the kind's verifier with the caller's
freshness inputs (:class:`Challenge`). A new kind is one entry here, one field in
``NodeSection`` and one in ``NodeTrust``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Generic, Protocol, TypeVar

from attestpolicy.claims import Node
from attestpolicy.evidence._common import Code, fail, fail_no_trust
from attestpolicy.evidence.node.aws_iid import verify_aws_iid
from attestpolicy.evidence.node.gce_iit import verify_gce_iit
from attestpolicy.evidence.node.sev_snp import verify_az_snp_vtpm, verify_sev_snp
from attestpolicy.evidence.node.tdx import verify_tdx
from attestpolicy.evidence.node.tpm import verify_tpm
from attestpolicy.evidence.workload.psat import PsatEvidence, PsatTrust, verify_psat

if TYPE_CHECKING:  # the document imports every verifier; this table only reads its sections
    from attestpolicy.evidence.document import NodeSection, NodeTrust

__all__ = ["NODE_VERIFIERS", "Challenge", "NodeVerifier"]

_E = TypeVar("_E")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Challenge:
    """The inputs of one verification run that come from the caller, never the document:
    the time, the nonce it issued (TPM, SEV-SNP, TDX) and its per-request token audience."""

    now: datetime
    nonce: bytes | None
    nonce_audience: str | None


class NodeVerifier(Protocol):
    """Verify the node section's one kind of evidence against its trust anchors."""

    def __call__(
        self, section: NodeSection, trust: NodeTrust, challenge: Challenge, *, field: str
    ) -> Node:
        """The verified node claim; raise ``EvidenceError`` (``evidence.untrusted`` when
        the trust configuration has no anchors for this kind)."""
        ...


@dataclass(frozen=True, slots=True)
class _Kind(Generic[_E, _T]):
    """One kind: where its evidence and its anchors are, and how it is verified."""

    evidence: Callable[[NodeSection], _E | None]
    trust: Callable[[NodeTrust], _T | None]
    verify: Callable[[_E, _T, Challenge], Node]

    def __call__(
        self, section: NodeSection, trust: NodeTrust, challenge: Challenge, *, field: str
    ) -> Node:
        anchors = self.trust(trust)
        if anchors is None:
            fail_no_trust(field)
        evidence = self.evidence(section)
        if evidence is None:
            fail(Code.MALFORMED, field, "the node section holds no evidence of this kind")
        return self.verify(evidence, anchors, challenge)


def _psat_node(evidence: PsatEvidence, trust: PsatTrust, challenge: Challenge) -> Node:
    psat = verify_psat(evidence, trust, now=challenge.now, nonce_audience=challenge.nonce_audience)
    if psat.node is None:
        fail(Code.MALFORMED, "(section)", "the service account token names no node")
    return psat.node


NODE_VERIFIERS: Final[Mapping[str, NodeVerifier]] = MappingProxyType(
    {
        "tpm": _Kind(
            lambda section: section.tpm,
            lambda trust: trust.tpm,
            lambda evidence, trust, c: verify_tpm(evidence, trust, now=c.now, nonce=c.nonce),
        ),
        "aws_iid": _Kind(
            lambda section: section.aws_iid,
            lambda trust: trust.aws_iid,
            lambda evidence, trust, c: verify_aws_iid(evidence, trust, now=c.now).node,
        ),
        "gcp_iit": _Kind(
            lambda section: section.gcp_iit,
            lambda trust: trust.gcp_iit,
            lambda evidence, trust, c: (
                verify_gce_iit(evidence, trust, now=c.now, nonce_audience=c.nonce_audience).node
            ),
        ),
        "k8s_psat": _Kind(
            lambda section: section.k8s_psat, lambda trust: trust.k8s_psat, _psat_node
        ),
        "sev_snp": _Kind(
            lambda section: section.sev_snp,
            lambda trust: trust.sev_snp,
            lambda evidence, trust, c: verify_sev_snp(evidence, trust, now=c.now, nonce=c.nonce),
        ),
        "az_snp_vtpm": _Kind(
            lambda section: section.az_snp_vtpm,
            lambda trust: trust.sev_snp,  # Azure SNP vTPM reports chain to AMD's roots
            lambda evidence, trust, c: verify_az_snp_vtpm(
                evidence, trust, now=c.now, nonce=c.nonce
            ),
        ),
        "tdx": _Kind(
            lambda section: section.tdx,
            lambda trust: trust.tdx,
            lambda evidence, trust, c: verify_tdx(evidence, trust, now=c.now, nonce=c.nonce),
        ),
    }
)
"""Every node evidence kind of the evidence document, and its verifier."""
