"""verify_evidence: run every verifier over an evidence document, build the ClaimSet.

Each section is verified by the module that owns its format. A section that fails
verification is recorded honestly as ``verified: false`` (so the policy denies with
the matching reason code) and its error is kept as a *problem*; only a failure to
establish the subject's SPIFFE ID (no verified SVID) stops verification, since
without it there is no claim set at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from attestpolicy.claims import (
    ClaimSet,
    Image,
    ImageSignature,
    Node,
    Provenance,
    Runtime,
    Subject,
    parse_timestamp,
)
from attestpolicy.errors import EvidenceError
from attestpolicy.evidence.document import (
    EvidenceDocument,
    ImageSection,
    ImageTrust,
    NodeSection,
    NodeTrust,
    RuntimeSection,
    RuntimeTrust,
    TrustConfig,
    parse_evidence_document,
    parse_trust_config,
)
from attestpolicy.evidence.image.cosign import verify_cosign_signature
from attestpolicy.evidence.image.sigstore_bundle import verify_sigstore_image
from attestpolicy.evidence.node.aws_iid import verify_aws_iid
from attestpolicy.evidence.node.gce_iit import verify_gce_iit
from attestpolicy.evidence.node.sev_snp import verify_az_snp_vtpm, verify_sev_snp
from attestpolicy.evidence.node.tdx import verify_tdx
from attestpolicy.evidence.node.tpm import verify_tpm
from attestpolicy.evidence.provenance.in_toto import verify_provenance
from attestpolicy.evidence.workload.psat import verify_psat
from attestpolicy.evidence.workload.spiffe import SvidResult, verify_jwt_svid, verify_x509_svid
from attestpolicy.evidence.workload.workload_attestor import verify_workload_attestor

__all__ = ["EvidenceReport", "verify_evidence", "verify_evidence_report"]

_PINNED: Final = re.compile(r"@(sha256:[0-9a-f]{64})$")
_UNTRUSTED: Final = "evidence.untrusted"


@dataclass(frozen=True)
class EvidenceReport:
    """The verified claim set and the problems found on the way (empty when all verified)."""

    claims: ClaimSet
    problems: tuple[EvidenceError, ...]


def _no_trust(section: str) -> EvidenceError:
    return EvidenceError(
        "no trust anchors configured for this evidence", field=section, code=_UNTRUSTED
    )


def _unbound_facts() -> EvidenceError:
    return EvidenceError(
        "runtime facts are only asserted by the attestor: no PSAT binds them",
        field="runtime.attestor",
        code=_UNTRUSTED,
    )


class _Verification:
    """One verification run: a fixed ``now``, the freshness inputs, collected problems."""

    def __init__(self, now: datetime, nonce: bytes | None, nonce_audience: str | None) -> None:
        self.now = now
        self.nonce = nonce
        self.nonce_audience = nonce_audience
        self.problems: list[EvidenceError] = []

    def problem(self, error: EvidenceError, section: str) -> None:
        self.problems.append(error.within(section) if error.field != section else error)

    # --- subject and runtime ---------------------------------------------------

    def identity(self, section: RuntimeSection, trust: RuntimeTrust) -> SvidResult:
        if (section.x509_svid is None) == (section.jwt_svid is None):
            raise EvidenceError(
                "exactly one of x509_svid or jwt_svid is required: the subject's SPIFFE ID "
                "is only ever taken from a verified SVID",
                field="runtime",
                code="evidence.malformed",
            )
        try:
            if section.x509_svid is not None:
                if trust.x509_svid is None:
                    raise _no_trust("runtime.x509_svid")
                return verify_x509_svid(section.x509_svid, trust.x509_svid, now=self.now)
            assert section.jwt_svid is not None
            if trust.jwt_svid is None:
                raise _no_trust("runtime.jwt_svid")
            return verify_jwt_svid(section.jwt_svid, trust.jwt_svid, now=self.now)
        except EvidenceError as exc:
            kind = "x509_svid" if section.x509_svid is not None else "jwt_svid"
            raise (
                exc
                if exc.field and exc.field.startswith("runtime.")
                else exc.within(f"runtime.{kind}")
            ) from None

    def runtime(self, section: RuntimeSection, trust: RuntimeTrust, svid: SvidResult) -> Runtime:
        psat = None
        verified = True
        if section.psat is not None:
            try:
                if trust.psat is None:
                    raise _no_trust("runtime.psat")
                psat = verify_psat(
                    section.psat, trust.psat, now=self.now, nonce_audience=self.nonce_audience
                )
            except EvidenceError as exc:
                self.problem(exc, "runtime.psat")
                verified = False
        base = svid.runtime
        if section.attestor is not None:
            try:
                base = verify_workload_attestor(
                    section.attestor, trust.attestor, now=self.now, psat=psat
                ).runtime
            except EvidenceError as exc:
                self.problem(exc, "runtime.attestor")
                verified = False
            else:
                if not base.verified and section.psat is None:
                    # asserted facts are accepted as claims, but never silently unverified
                    self.problem(_unbound_facts(), "runtime.attestor")
        elif psat is not None:
            base = psat.runtime
        expiries = [
            moment
            for moment in (
                svid.runtime.expires_at,
                psat.runtime.expires_at if psat else None,
                base.expires_at,
            )
            if moment is not None
        ]
        return base.model_copy(
            update={
                "verified": verified and base.verified and svid.runtime.verified,
                "expires_at": min(expiries) if expiries else None,
            }
        )

    # --- image -------------------------------------------------------------------

    def image(self, section: ImageSection, trust: ImageTrust) -> Image:
        pinned = _PINNED.search(section.reference)
        digest = pinned.group(1) if pinned else None
        signatures: list[ImageSignature] = []
        for kind, entries in (("cosign", section.cosign), ("sigstore", section.sigstore)):
            for index, entry in enumerate(entries):
                where = f"image.{kind}.{index}"
                try:
                    if kind == "cosign":
                        if trust.cosign is None:
                            raise _no_trust(where)
                        result = verify_cosign_signature(entry, trust.cosign, now=self.now)  # type: ignore[arg-type]
                    else:
                        if trust.sigstore is None:
                            raise _no_trust(where)
                        result = verify_sigstore_image(entry, trust.sigstore, now=self.now)  # type: ignore[arg-type]
                    if digest is None or result.signed_digest != digest:
                        raise EvidenceError(
                            f"signed digest {result.signed_digest} is not the digest the "
                            f"reference is pinned to ({digest or 'not pinned'})",
                            field=where,
                            code="evidence.digest_mismatch",
                        )
                    signatures.append(result.signature)
                except EvidenceError as exc:
                    self.problem(exc, where)
                    signatures.append(ImageSignature(verified=False))
        return Image(reference=section.reference, digest=digest, signatures=tuple(signatures))

    # --- provenance -----------------------------------------------------------------

    def provenance(self, section: Any, trust: TrustConfig, image_digest: str | None) -> Provenance:
        try:
            if trust.provenance is None:
                raise _no_trust("provenance")
            return verify_provenance(
                section, trust.provenance, now=self.now, expected_digest=image_digest
            ).provenance
        except EvidenceError as exc:
            self.problem(exc, "provenance")
            return Provenance(verified=False)

    # --- node -------------------------------------------------------------------------

    def node(self, section: NodeSection, trust: NodeTrust) -> Node:
        kind = section.kind
        where = f"node.{kind}"
        try:
            return self._node(kind, section, trust, where)
        except EvidenceError as exc:
            self.problem(exc, where)
            return Node(
                kind=kind,
                id="unverified",
                verified=False,
                nonce_verified=False,
                issued_at=self.now,
            )

    def _node(self, kind: str, section: NodeSection, trust: NodeTrust, where: str) -> Node:
        now, nonce = self.now, self.nonce
        trust_kind = "sev_snp" if kind == "az_snp_vtpm" else kind
        anchors = getattr(trust, trust_kind)
        if anchors is None:
            raise _no_trust(where)
        evidence = getattr(section, kind)
        if kind == "tpm":
            return verify_tpm(evidence, anchors, now=now, nonce=nonce)
        if kind == "sev_snp":
            return verify_sev_snp(evidence, anchors, now=now, nonce=nonce)
        if kind == "az_snp_vtpm":
            return verify_az_snp_vtpm(evidence, anchors, now=now, nonce=nonce)
        if kind == "tdx":
            return verify_tdx(evidence, anchors, now=now, nonce=nonce)
        if kind == "aws_iid":
            return verify_aws_iid(evidence, anchors, now=now).node
        if kind == "gcp_iit":
            return verify_gce_iit(
                evidence, anchors, now=now, nonce_audience=self.nonce_audience
            ).node
        psat = verify_psat(evidence, anchors, now=now, nonce_audience=self.nonce_audience)
        if psat.node is None:
            raise EvidenceError(
                "the service account token names no node", field=where, code="evidence.malformed"
            )
        return psat.node


def verify_evidence_report(
    document: EvidenceDocument | Mapping[str, Any],
    trust: TrustConfig | Mapping[str, Any],
    now: datetime | str | None = None,
    *,
    nonce: bytes | None = None,
    nonce_audience: str | None = None,
) -> EvidenceReport:
    """Verify every section of ``document`` against ``trust`` at ``now``.

    ``nonce`` is the freshness challenge the caller issued (TPM, SEV-SNP, TDX);
    ``nonce_audience`` the per-request audience for identity tokens. Both come from
    the caller, never from the document. Raises EvidenceError only when the document
    is malformed or the subject's SVID does not verify, and ConfigError when ``trust``
    is invalid; every other failure is a ``verified: false`` claim plus a problem in
    the report (as are runtime facts that no PSAT binds).
    """
    parsed = parse_evidence_document(document)
    anchors = parse_trust_config(trust)
    moment = datetime.now(UTC) if now is None else parse_timestamp(now)
    run = _Verification(moment, nonce, nonce_audience)
    svid = run.identity(parsed.runtime, anchors.runtime)
    image = run.image(parsed.image, anchors.image) if parsed.image else None
    provenance = (
        run.provenance(parsed.provenance, anchors, image.digest if image else None)
        if parsed.provenance
        else None
    )
    node = run.node(parsed.node, anchors.node) if parsed.node else None
    runtime = run.runtime(parsed.runtime, anchors.runtime, svid)
    claims = ClaimSet(
        now=moment,
        subject=Subject(spiffe_id=svid.subject.spiffe_id),
        request=parsed.request,
        image=image,
        provenance=provenance,
        node=node,
        runtime=runtime,
    )
    return EvidenceReport(claims=ClaimSet.parse(claims.to_input()), problems=tuple(run.problems))


def verify_evidence(
    document: EvidenceDocument | Mapping[str, Any],
    trust: TrustConfig | Mapping[str, Any],
    now: datetime | str | None = None,
    *,
    nonce: bytes | None = None,
    nonce_audience: str | None = None,
) -> ClaimSet:
    """Verify an evidence document and return its ClaimSet (see verify_evidence_report)."""
    return verify_evidence_report(
        document, trust, now, nonce=nonce, nonce_audience=nonce_audience
    ).claims
