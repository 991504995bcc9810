"""Sigstore bundles (keyless signing), verified fully offline against a trusted root.

A Sigstore bundle carries a signature (over an artifact digest, or a DSSE envelope),
the short-lived Fulcio signing certificate, the Rekor transparency-log entry (inclusion
proof, and an inclusion promise or RFC 3161 signed timestamps) for it. The bundle is
verified with ``sigstore.verify.Verifier`` built from the ``trusted_root.json`` object
given in :class:`SigstoreTrust`: no TUF refresh, no Rekor lookup, no network.

Public API (other verifiers build on :func:`verify_sigstore_bundle`)::

    verify_sigstore_bundle(evidence: SigstoreBundleEvidence, trust: SigstoreTrust, *,
                           now: datetime, artifact: bytes | None = None
                           ) -> SigstoreBundleResult
    verify_sigstore_image(evidence: SigstoreBundleEvidence, trust: SigstoreTrust, *,
                          now: datetime) -> ImageSignatureResult
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, Literal, Self

from cryptography import x509
from pydantic import (
    Field,
    PrivateAttr,
    StrictStr,
    field_validator,
    model_validator,
)
from sigstore.hashes import Hashed
from sigstore.models import Bundle, TrustedRoot
from sigstore_models.common.v1 import HashAlgorithm

from attestpolicy._model import FrozenModel
from attestpolicy.claims import ImageSignature
from attestpolicy.evidence._common import (
    Code,
    check_not_future,
    fail,
    load_json,
    malformed_on_error,
    require_utc,
    sha256_digest,
)
from attestpolicy.evidence._crypto.fulcio import FulcioExtensions, fulcio_extensions, match_identity
from attestpolicy.evidence._crypto.trusted_root import load_trusted_root
from attestpolicy.evidence.image._reference import image_reference
from attestpolicy.evidence.image._signature import ImageSignatureResult, SignatureSection
from attestpolicy.evidence.image._sigstore_adapter import RecordingVerifier, carries_dsse
from attestpolicy.evidence.image._sigstore_errors import parse_error, verification_error

__all__ = [
    "COSIGN_SIGN_PREDICATE_TYPE",
    "IN_TOTO_PAYLOAD_TYPE",
    "MAX_BUNDLE_CHARS",
    "FulcioExtensions",
    "ImageSignatureResult",
    "SigstoreBundleEvidence",
    "SigstoreBundleResult",
    "SigstoreIdentity",
    "SigstoreTrust",
    "verify_sigstore_bundle",
    "verify_sigstore_image",
]

MAX_BUNDLE_CHARS: Final = 4 * 1024 * 1024
"""Largest accepted bundle, in characters of compact JSON (4 MiB)."""

IN_TOTO_PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"

COSIGN_SIGN_PREDICATE_TYPE: Final = "https://sigstore.dev/cosign/sign/v1"
"""The predicate of cosign's image signatures in the bundle format (``cosign sign
--new-bundle-format``: ``signDigestBundle`` in cosign's ``cmd/cosign/cli/sign/sign.go``, the
type ``types.CosignSignPredicateType``). Any other in-toto predicate is an attestation."""

_MAX_TRUSTED_ROOT_CHARS = 1024 * 1024
_MAX_IDENTITIES = 64
_MAX_TEXT = 4096
_MAX_REFERENCE = 1024
_MAX_SUBJECTS = 4096

Sha256Digest = Annotated[StrictStr, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
_Text = Annotated[StrictStr, Field(min_length=1, max_length=_MAX_TEXT)]


# --- public API ---------------------------------------------------------------


def verify_sigstore_bundle(
    evidence: SigstoreBundleEvidence,
    trust: SigstoreTrust,
    *,
    now: datetime,
    artifact: bytes | None = None,
) -> SigstoreBundleResult:
    """Verify a Sigstore bundle offline; return who signed what, and when.

    Message-signature bundles need the signed artifact: ``artifact`` (its bytes) or
    ``evidence.artifact_digest`` (both: they must agree). DSSE bundles need neither
    (giving one is ``evidence.malformed``): the verified payload type and bytes are
    returned for the caller to parse and bind. The signing certificate must carry one of
    ``trust.identities``. ``now`` only refuses signed times from the future.

    Raises :class:`~attestpolicy.errors.EvidenceError`; see docs/evidence/image-signatures.md
    for the codes.
    """
    require_utc(now, error=TypeError)
    with malformed_on_error("bundle"):
        return _verify_bundle(evidence, trust, now=now, artifact=artifact)


def verify_sigstore_image(
    evidence: SigstoreBundleEvidence, trust: SigstoreTrust, *, now: datetime
) -> ImageSignatureResult:
    """Verify a Sigstore bundle as a signature over the image ``evidence.reference`` names.

    The signed digest is the reference's digest, or ``evidence.artifact_digest`` for a
    tag-only reference (both given: they must agree). Only what cosign counts as an image
    signature counts: a message-signature bundle over that digest, or a DSSE bundle whose
    in-toto statement has cosign's signature predicate (:data:`COSIGN_SIGN_PREDICATE_TYPE`)
    and lists that digest among its subjects. An attestation (any other predicate, e.g.
    SLSA provenance) is ``evidence.unsupported``: verify it as provenance instead. The
    claim's ``digest`` is set only for a reference pinned by digest.
    """
    require_utc(now, error=TypeError)
    with malformed_on_error("bundle"):
        return _verify_image(evidence, trust, now=now)


# --- verification -------------------------------------------------------------


def _verify_bundle(
    evidence: SigstoreBundleEvidence,
    trust: SigstoreTrust,
    *,
    now: datetime,
    artifact: bytes | None,
) -> SigstoreBundleResult:
    bundle = _parse_bundle(evidence)
    if carries_dsse(bundle):
        if artifact is not None or evidence.artifact_digest is not None:
            fail(
                Code.MALFORMED,
                "artifact_digest",
                "an artifact or artifact_digest was given for a DSSE bundle; its payload "
                "names its subjects",
            )
        return _verify(bundle, trust, now=now, hashed=None)
    digest = evidence.artifact_digest
    if artifact is not None:
        actual = sha256_digest(artifact)
        if digest is not None and actual != digest:
            fail(
                Code.DIGEST_MISMATCH,
                "artifact_digest",
                f"artifact digest {actual} does not match artifact_digest {digest}",
            )
        digest = actual
    if digest is None:
        fail(
            Code.MALFORMED,
            "artifact_digest",
            "a message-signature bundle needs the artifact or its artifact_digest",
        )
    return _verify(bundle, trust, now=now, hashed=_hashed(digest))


def _verify_image(
    evidence: SigstoreBundleEvidence, trust: SigstoreTrust, *, now: datetime
) -> ImageSignatureResult:
    if evidence.reference is None:
        fail(Code.MALFORMED, "reference", "an image signature needs the image reference")
    ref = image_reference(evidence.reference, field="reference")
    signed = ref.digest
    if evidence.artifact_digest is not None:
        if signed is not None and signed != evidence.artifact_digest:
            fail(
                Code.DIGEST_MISMATCH,
                "artifact_digest",
                f"artifact_digest {evidence.artifact_digest} differs from the reference "
                f"digest {signed}",
            )
        signed = evidence.artifact_digest
    if signed is None:
        fail(
            Code.MALFORMED,
            "reference",
            "the reference is not pinned by digest and no artifact_digest is given",
        )
    bundle = _parse_bundle(evidence)
    if not carries_dsse(bundle):
        result = _verify(bundle, trust, now=now, hashed=_hashed(signed))
    else:
        result = _verify(bundle, trust, now=now, hashed=None)
        _require_cosign_signature(result, signed)
    return ImageSignatureResult(
        reference=evidence.reference,
        digest=ref.digest,
        signed_digest=signed,
        signature=result.image_signature(),
        signed_time=result.signed_time,
    )


# --- evidence, trust and result -------------------------------------------------


def _compact_json(value: dict[str, Any], limit: int, what: str) -> str:
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{what} is not a JSON object: {exc}") from None
    if len(text) > limit:
        raise ValueError(f"{what} is {len(text)} characters, over the {limit} limit")
    return text


class SigstoreBundleEvidence(SignatureSection):
    """The evidence section: a Sigstore bundle, embedded as its JSON object.

    ``artifact_digest`` (``sha256:<hex>``) is the digest a message-signature bundle
    signs; ``reference`` the image reference, for :func:`verify_sigstore_image`.
    """

    bundle: dict[str, Any]
    artifact_digest: Sha256Digest | None = None
    reference: Annotated[StrictStr, Field(min_length=1, max_length=_MAX_REFERENCE)] | None = None

    _json: str = PrivateAttr(default="")

    @field_validator("bundle")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        _compact_json(value, MAX_BUNDLE_CHARS, "bundle")
        return value

    @model_validator(mode="after")
    def _serialize(self) -> Self:
        self._json = _compact_json(self.bundle, MAX_BUNDLE_CHARS, "bundle")
        return self


class SigstoreIdentity(FrozenModel):
    """One accepted signer: the certificate SAN (e-mail, URI) and the OIDC issuer, exact."""

    subject: _Text
    issuer: _Text


class SigstoreTrust(FrozenModel):
    """The trust section: Sigstore's ``trusted_root.json`` (embedded) and accepted signers.

    The trusted root is parsed when the model is built, so a broken one fails at
    configuration time, never during verification.
    """

    trusted_root: dict[str, Any]
    identities: Annotated[
        tuple[SigstoreIdentity, ...], Field(min_length=1, max_length=_MAX_IDENTITIES)
    ]

    _root: TrustedRoot | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _load_root(self) -> Self:
        text = _compact_json(self.trusted_root, _MAX_TRUSTED_ROOT_CHARS, "trusted_root")
        self._root = load_trusted_root(text)
        return self

    def _verifier(self) -> RecordingVerifier:
        """A fresh offline verifier over this trusted root."""
        assert self._root is not None  # set by the validator
        return RecordingVerifier(trusted_root=self._root)


@dataclass(frozen=True, slots=True)
class SigstoreBundleResult:
    """What a verified Sigstore bundle proves.

    ``subject`` and ``issuer`` are the accepted identity the certificate carries;
    ``signed_time`` the earliest verified time (Rekor integrated time or RFC 3161);
    ``artifact_digest`` is set for message signatures, ``payload_type`` and ``payload``
    for DSSE envelopes.
    """

    kind: Literal["message_signature", "dsse"]
    subject: str
    issuer: str
    extensions: FulcioExtensions
    signed_time: datetime
    integrated_time: datetime | None
    timestamp_authority_times: tuple[datetime, ...]
    artifact_digest: str | None
    payload_type: str | None
    payload: bytes | None

    def image_signature(self) -> ImageSignature:
        """The :class:`~attestpolicy.claims.ImageSignature` claim (keyless: no key id)."""
        return ImageSignature(verified=True, issuer=self.issuer, subject=self.subject)


# --- sigstore plumbing ---------------------------------------------------------


class _IdentityPolicy:
    """A sigstore ``VerificationPolicy`` accepting any of the trusted identities."""

    def __init__(self, identities: tuple[SigstoreIdentity, ...]) -> None:
        self._identities = [(i.subject, i.issuer) for i in identities]
        self.matched: tuple[str, str] | None = None

    def verify(self, cert: x509.Certificate) -> None:
        # Raises EvidenceError(identity_mismatch), which passes through sigstore untouched.
        self.matched = match_identity(cert, self._identities, field="certificate.identity")


def _hashed(digest: str) -> Hashed:
    return Hashed(algorithm=HashAlgorithm.SHA2_256, digest=bytes.fromhex(digest[len("sha256:") :]))


_MEDIA_TYPES: Final = frozenset(str(kind) for kind in Bundle.BundleType)


def _parse_bundle(evidence: SigstoreBundleEvidence) -> Bundle:
    media_type = evidence.bundle.get("mediaType")
    if isinstance(media_type, str) and media_type not in _MEDIA_TYPES:
        fail(
            Code.UNSUPPORTED,
            "bundle.mediaType",
            f"unsupported bundle media type {media_type[:100]!r}",
        )
    try:
        bundle = Bundle.from_json(evidence._json)
        carries_dsse(bundle)  # builds the envelope now, inside the guard
    except Exception as exc:  # sigstore's, and those of the parsers below it
        raise parse_error(exc) from None
    return bundle


def _verify(
    bundle: Bundle, trust: SigstoreTrust, *, now: datetime, hashed: Hashed | None
) -> SigstoreBundleResult:
    verifier = trust._verifier()
    policy = _IdentityPolicy(trust.identities)
    payload_type: str | None = None
    payload: bytes | None = None
    try:
        if hashed is None:
            payload_type, payload = verifier.verify_dsse(bundle, policy)
        else:
            verifier.verify_artifact(hashed, bundle, policy)
    except Exception as exc:  # sigstore's, ours (the identity policy), and those below
        raise verification_error(exc) from None
    if policy.matched is None or not verifier.signed_times:
        # sigstore always checks identity and time; refuse to report anything otherwise.
        fail(Code.UNTRUSTED, "bundle", "bundle verification was incomplete")
    times = [signed.time for signed in verifier.signed_times]
    check_not_future(max(times), now, field="timestamp")
    try:
        extensions = fulcio_extensions(bundle.signing_certificate)
    except ValueError as exc:
        fail(Code.MALFORMED, "certificate.extensions", str(exc))
    integrated = [t.time for t in verifier.signed_times if t.source == "transparency_log"]
    return SigstoreBundleResult(
        kind="dsse" if hashed is None else "message_signature",
        subject=policy.matched[0],
        issuer=policy.matched[1],
        extensions=extensions,
        signed_time=min(times),
        integrated_time=min(integrated) if integrated else None,
        timestamp_authority_times=tuple(
            t.time for t in verifier.signed_times if t.source == "timestamp_authority"
        ),
        artifact_digest=None if hashed is None else "sha256:" + hashed.digest.hex(),
        payload_type=payload_type,
        payload=payload,
    )


def _require_cosign_signature(result: SigstoreBundleResult, digest: str) -> None:
    """A verified DSSE bundle counts as an image signature only as cosign's: an in-toto
    statement with cosign's signature predicate, naming ``digest`` among its subjects."""
    if result.payload_type != IN_TOTO_PAYLOAD_TYPE or result.payload is None:
        fail(
            Code.UNSUPPORTED,
            "dsse_envelope.payloadType",
            f"DSSE payload type {str(result.payload_type)[:80]!r} is not an in-toto statement",
        )
    statement = load_json(result.payload, field="dsse_envelope.payload")
    if not isinstance(statement, dict):
        fail(Code.MALFORMED, "dsse_envelope.payload", "the in-toto statement is not an object")
    predicate_type = statement.get("predicateType")
    if predicate_type != COSIGN_SIGN_PREDICATE_TYPE:
        shown = (
            repr(predicate_type[:200])
            if isinstance(predicate_type, str)
            else f"of JSON type {type(predicate_type).__name__}"
        )
        fail(
            Code.UNSUPPORTED,
            "dsse_envelope.payload.predicateType",
            f"an attestation with predicate {shown} is not an image signature (cosign "
            f"signs images with the predicate {COSIGN_SIGN_PREDICATE_TYPE}); verify "
            "attestations as provenance",
        )
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or len(subjects) > _MAX_SUBJECTS:
        fail(
            Code.MALFORMED,
            "dsse_envelope.payload.subject",
            "in-toto statement has no valid subject list",
        )
    wanted = digest[len("sha256:") :]
    for subject in subjects:
        digests = subject.get("digest") if isinstance(subject, dict) else None
        found = digests.get("sha256") if isinstance(digests, dict) else None
        if found == wanted:
            return
    fail(
        Code.DIGEST_MISMATCH,
        "dsse_envelope.payload.subject",
        f"the in-toto statement does not name {digest} among its subjects",
    )
