"""verify_evidence: run every verifier over an evidence document, build the ClaimSet.

Each section is verified by the module that owns its format. A section that fails
verification is recorded honestly as ``verified: false`` (so the policy denies with
the matching reason code) and its error is kept as a *problem*; only a failure to
establish the subject's SPIFFE ID (no verified SVID) stops verification, since
without it there is no claim set at all.

A fully verified document is remembered in a :class:`VerifiedEvidenceCache` (see
:mod:`attestpolicy.evidence._verified_cache`): verifying it again under the same trust
revision, nonce and nonce audience, at a ``now`` inside its validity window, is a lookup.
A trust configuration given as a mapping is parsed once per revision.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol, TypeVar

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
from attestpolicy.evidence._common import Code, fail, fail_no_trust
from attestpolicy.evidence._fingerprint import document_digest, resolve_trust, trust_revision
from attestpolicy.evidence._validity import collect_validity
from attestpolicy.evidence._verified_cache import CacheStats, VerifiedEvidenceCache
from attestpolicy.evidence.document import (
    EvidenceDocument,
    ImageSection,
    ImageTrust,
    NodeSection,
    NodeTrust,
    RuntimeSection,
    RuntimeTrust,
    TrustConfig,
    load_evidence_document,
    parse_evidence_document,
)
from attestpolicy.evidence.image.cosign import verify_cosign_signature
from attestpolicy.evidence.image.sigstore_bundle import ImageSignatureResult, verify_sigstore_image
from attestpolicy.evidence.node.registry import NODE_VERIFIERS, Challenge
from attestpolicy.evidence.provenance.in_toto import verify_provenance
from attestpolicy.evidence.workload.psat import verify_psat
from attestpolicy.evidence.workload.spiffe import SvidResult, verify_jwt_svid, verify_x509_svid
from attestpolicy.evidence.workload.workload_attestor import verify_workload_attestor

__all__ = [
    "CacheStats",
    "EvidenceReport",
    "VerifiedEvidenceCache",
    "set_verified_evidence_cache",
    "verified_evidence_cache",
    "verify_evidence",
    "verify_evidence_report",
]

_PINNED: Final = re.compile(r"@(sha256:[0-9a-f]{64})$")

_E = TypeVar("_E")
_T = TypeVar("_T")
_E_contra = TypeVar("_E_contra", contravariant=True)
_T_contra = TypeVar("_T_contra", contravariant=True)


class _SignatureVerifier(Protocol[_E_contra, _T_contra]):
    """``verify_cosign_signature`` and ``verify_sigstore_image``."""

    def __call__(
        self, evidence: _E_contra, trust: _T_contra, *, now: datetime
    ) -> ImageSignatureResult: ...


@dataclass(frozen=True)
class EvidenceReport:
    """The verified claim set and the problems found on the way (empty when all verified)."""

    claims: ClaimSet
    problems: tuple[EvidenceError, ...]


def _unbound_facts() -> EvidenceError:
    return EvidenceError(
        "runtime facts are only asserted by the attestor: no PSAT binds them",
        field="runtime.attestor",
        code=Code.UNTRUSTED,
    )


class _Verification:
    """One verification run: a fixed ``now``, the freshness inputs, collected problems."""

    def __init__(self, challenge: Challenge) -> None:
        self.challenge = challenge
        self.now = challenge.now
        self.problems: list[EvidenceError] = []

    def problem(self, error: EvidenceError, section: str) -> None:
        self.problems.append(error.within(section) if error.field != section else error)

    # --- subject and runtime ---------------------------------------------------

    def identity(self, section: RuntimeSection, trust: RuntimeTrust) -> SvidResult:
        if (section.x509_svid is None) == (section.jwt_svid is None):
            fail(
                Code.MALFORMED,
                "runtime",
                "exactly one of x509_svid or jwt_svid is required: the subject's SPIFFE ID "
                "is only ever taken from a verified SVID",
            )
        try:
            if section.x509_svid is not None:
                if trust.x509_svid is None:
                    fail_no_trust("runtime.x509_svid")
                return verify_x509_svid(section.x509_svid, trust.x509_svid, now=self.now)
            assert section.jwt_svid is not None
            if trust.jwt_svid is None:
                fail_no_trust("runtime.jwt_svid")
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
                    fail_no_trust("runtime.psat")
                psat = verify_psat(
                    section.psat,
                    trust.psat,
                    now=self.now,
                    nonce_audience=self.challenge.nonce_audience,
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
        signatures = [
            *(
                self._signature(
                    f"image.cosign.{index}", digest, entry, trust.cosign, verify_cosign_signature
                )
                for index, entry in enumerate(section.cosign)
            ),
            *(
                self._signature(
                    f"image.sigstore.{index}", digest, entry, trust.sigstore, verify_sigstore_image
                )
                for index, entry in enumerate(section.sigstore)
            ),
        ]
        return Image(reference=section.reference, digest=digest, signatures=tuple(signatures))

    def _signature(
        self,
        where: str,
        digest: str | None,
        evidence: _E,
        trust: _T | None,
        verify: _SignatureVerifier[_E, _T],
    ) -> ImageSignature:
        """One image signature's claim: verified, and over the digest the reference pins."""
        try:
            if trust is None:
                fail_no_trust(where)
            result = verify(evidence, trust, now=self.now)
            if digest is None or result.signed_digest != digest:
                fail(
                    Code.DIGEST_MISMATCH,
                    where,
                    f"signed digest {result.signed_digest} is not the digest the "
                    f"reference is pinned to ({digest or 'not pinned'})",
                )
        except EvidenceError as exc:
            self.problem(exc, where)
            return ImageSignature(verified=False)
        return result.signature

    # --- provenance -----------------------------------------------------------------

    def provenance(self, section: Any, trust: TrustConfig, image_digest: str | None) -> Provenance:
        try:
            if trust.provenance is None:
                fail_no_trust("provenance")
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
            return NODE_VERIFIERS[kind](section, trust, self.challenge, field=where)
        except EvidenceError as exc:
            self.problem(exc, where)
            return Node(
                kind=kind,
                id="unverified",
                verified=False,
                nonce_verified=False,
                issued_at=self.now,
            )


_default_cache: VerifiedEvidenceCache | None = VerifiedEvidenceCache()


def verified_evidence_cache() -> VerifiedEvidenceCache | None:
    """The cache ``verify_evidence_report`` uses by default (None: caching is off)."""
    return _default_cache


def set_verified_evidence_cache(
    cache: VerifiedEvidenceCache | None,
) -> VerifiedEvidenceCache | None:
    """Replace the default cache (None turns default caching off); return the previous one."""
    global _default_cache
    if cache is not None and not isinstance(cache, VerifiedEvidenceCache):
        raise TypeError("cache must be a VerifiedEvidenceCache or None")
    previous, _default_cache = _default_cache, cache
    return previous


def _cache_key(
    document: object, revision: bytes | None, nonce: object, nonce_audience: object
) -> tuple[bytes, bytes, bytes | None, str | None] | None:
    """Everything the result depends on besides ``now``; None when some part has no digest."""
    if revision is None or not (nonce is None or type(nonce) is bytes):
        return None
    if not (nonce_audience is None or type(nonce_audience) is str):
        return None
    digest = document_digest(document)
    return None if digest is None else (digest, revision, nonce, nonce_audience)


def verify_evidence_report(
    document: EvidenceDocument | Mapping[str, Any] | bytes,
    trust: TrustConfig | Mapping[str, Any],
    now: datetime | str | None = None,
    *,
    nonce: bytes | None = None,
    nonce_audience: str | None = None,
    cache: VerifiedEvidenceCache | bool = True,
) -> EvidenceReport:
    """Verify every section of ``document`` against ``trust`` at ``now``.

    ``document`` is a parsed document, a mapping or JSON bytes. ``nonce`` is the
    freshness challenge the caller issued (TPM, SEV-SNP, TDX); ``nonce_audience`` the
    per-request audience for identity tokens. Both come from the caller, never from the
    document. Raises EvidenceError only when the document is malformed or the subject's
    SVID does not verify, and ConfigError when ``trust`` is invalid; every other failure
    is a ``verified: false`` claim plus a problem in the report (as are runtime facts that
    no PSAT binds).

    ``cache``: True uses the default cache (:func:`verified_evidence_cache`), False none,
    or give a :class:`VerifiedEvidenceCache`. Only fully verified reports (no problem) are
    cached, and served only at a ``now`` inside the window their material is valid for.
    """
    moment = datetime.now(UTC) if now is None else parse_timestamp(now)
    revision = trust_revision(trust)
    store = (_default_cache if cache else None) if isinstance(cache, bool) else cache
    key = _cache_key(document, revision, nonce, nonce_audience) if store is not None else None
    if key is not None and store is not None:
        cached = store.get(key, moment)
        if cached is not None:
            return EvidenceReport(claims=cached, problems=())
    parsed = (
        load_evidence_document(document)
        if isinstance(document, bytes)
        else parse_evidence_document(document)
    )
    anchors = resolve_trust(trust, revision)
    with collect_validity() as validity:
        report = _verify(parsed, anchors, Challenge(moment, nonce, nonce_audience))
    if key is not None and store is not None and not report.problems:
        store.put(key, report.claims, verified_at=moment, valid_until=validity.until)
    return report


def _verify(parsed: EvidenceDocument, anchors: TrustConfig, challenge: Challenge) -> EvidenceReport:
    run = _Verification(challenge)
    moment = challenge.now
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
    document: EvidenceDocument | Mapping[str, Any] | bytes,
    trust: TrustConfig | Mapping[str, Any],
    now: datetime | str | None = None,
    *,
    nonce: bytes | None = None,
    nonce_audience: str | None = None,
    cache: VerifiedEvidenceCache | bool = True,
) -> ClaimSet:
    """Verify an evidence document and return its ClaimSet (see verify_evidence_report)."""
    return verify_evidence_report(
        document, trust, now, nonce=nonce, nonce_audience=nonce_audience, cache=cache
    ).claims
