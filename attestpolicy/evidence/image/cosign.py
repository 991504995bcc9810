"""cosign simple-signing image signatures, in containers/image's "sigstore-json" form.

A signature file (``signature-1`` in a ``dir:`` image, or what skopeo/podman store) is
the byte ``0x00``, the format name ``sigstore-json``, a newline and a JSON object::

    {"mimeType": "application/vnd.dev.cosign.simplesigning.v1+json",
     "payload": "<base64 simple-signing JSON>",
     "annotations": {"dev.cosignproject.cosign/signature": "<base64 signature>", ...}}

The payload names the image: ``critical.image.docker-manifest-digest`` and
``critical.identity.docker-reference``. Verification follows containers/image's
``sigstoreSigned`` policy requirement, with one of three trust modes:

* ``public_keys``: the signature verifies with one of the keys;
* ``fulcio``: the certificate annotation chains to a Fulcio CA at the Rekor SET's
  integrated time (a Rekor SET is required) and carries an accepted identity
  (e-mail or URI SAN plus the OIDC issuer extension);
* ``pki``: the certificate chains to a private root at ``now`` and carries the
  expected e-mail and/or DNS host name. The chain profile is containers/image's (Go's
  ``crypto/x509``): CAs may lack key usage, the leaf key usage and EKU, see
  :func:`~attestpolicy.evidence._crypto.x509.verify_code_signing_chain`.

Every base64 value of the signature file (the payload, the signature annotation and the
Rekor SET's fields) is decoded as Go's ``base64.StdEncoding`` decodes it, which is how
containers/image reads them: CR and LF anywhere are skipped (containers/image's own
private-PKI fixture carries its signature wrapped at 76 columns), padding is required,
nothing else is skipped. One difference: the unused low bits of the last character must be zero
(canonical), where Go's non-strict decoder ignores them.

When ``rekor_public_keys`` are configured, a Rekor SET (annotation
``dev.sigstore.cosign/bundle``) is required and must bind this signature, payload and
key or certificate.

Public API::

    verify_cosign_signature(evidence: CosignEvidence, trust: CosignTrust, *,
                            now: datetime) -> ImageSignatureResult
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final, Self

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import (
    Field,
    PrivateAttr,
    StrictStr,
    model_validator,
)

from attestpolicy._keys import PublicKey, accepted_public_key, load_public_key
from attestpolicy._model import FrozenModel
from attestpolicy.claims import ImageSignature
from attestpolicy.evidence._common import (
    Code,
    decode_base64,
    fail,
    load_json,
    malformed_on_error,
    require_utc,
    sha256_digest,
    validate_mapping,
)
from attestpolicy.evidence._crypto.fulcio import match_identity
from attestpolicy.evidence._crypto.x509 import (
    SigningProfile,
    certificates_from_pem_bundle,
    chain_valid_until,
    fingerprint,
    load_pem_certificates,
    signature_ok,
    spki_der,
    verify_code_signing_chain,
)
from attestpolicy.evidence.image._cosign_payload import check_docker_reference, parse_payload
from attestpolicy.evidence.image._cosign_rekor import verify_set_annotation
from attestpolicy.evidence.image._reference import image_reference
from attestpolicy.evidence.image._signature import ImageSignatureResult, SignatureSection
from attestpolicy.evidence.image.sigstore_bundle import SigstoreIdentity

__all__ = [
    "CERTIFICATE_ANNOTATION",
    "CHAIN_ANNOTATION",
    "SET_ANNOTATION",
    "SIGNATURE_ANNOTATION",
    "SIMPLE_SIGNING_MIME_TYPE",
    "CosignEvidence",
    "CosignFulcioTrust",
    "CosignPkiTrust",
    "CosignSignature",
    "CosignTrust",
    "ImageSignatureResult",
    "parse_signature_file",
    "verify_cosign_signature",
]

SIMPLE_SIGNING_MIME_TYPE: Final = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION: Final = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION: Final = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION: Final = "dev.sigstore.cosign/chain"
SET_ANNOTATION: Final = "dev.sigstore.cosign/bundle"

_FORMAT_PREFIX: Final = b"\x00sigstore-json\n"
_MAX_SIGNATURE_FILE = 1024 * 1024
_MAX_MANIFEST_CHARS = 6 * 1024 * 1024  # base64 of the 4 MiB OCI manifest limit
_MAX_PAYLOAD_CHARS = 256 * 1024
_MAX_ANNOTATION_CHARS = 256 * 1024
_MAX_ANNOTATIONS = 64
_MAX_KEYS = 32
_MAX_PEM_CHARS = 64 * 1024


# --- public API ---------------------------------------------------------------


def verify_cosign_signature(
    evidence: CosignEvidence, trust: CosignTrust, *, now: datetime
) -> ImageSignatureResult:
    """Verify a cosign simple-signing signature over the manifest in ``evidence``.

    Checks, in order: the reference's digest (if any) is the manifest's sha256; the
    signature, key or certificate (per the trust mode) and the Rekor SET when required;
    the signed manifest digest is the manifest's; the signed docker-reference names the
    reference's repository (see docs/evidence/image-signatures.md for the exact rule).
    The claim's ``digest`` is set only for a reference pinned by digest.
    """
    require_utc(now, error=TypeError)
    with malformed_on_error("signature"):
        return _verify(evidence, trust, now=now)


def parse_signature_file(blob: bytes) -> CosignSignature:
    """Parse a containers/image signature file in the ``sigstore-json`` format.

    Raises ``evidence.unsupported`` for other formats (e.g. GPG simple signing) and
    ``evidence.malformed`` for anything that is not such a file.
    """
    with malformed_on_error("signature"):
        return _parse_signature_file(blob)


# --- verification -------------------------------------------------------------


def _verify(evidence: CosignEvidence, trust: CosignTrust, *, now: datetime) -> ImageSignatureResult:
    ref = image_reference(evidence.reference, field="reference")
    manifest = decode_base64(evidence.manifest, field="manifest")
    manifest_digest = sha256_digest(manifest)
    if ref.digest is not None and ref.digest != manifest_digest:
        fail(
            Code.DIGEST_MISMATCH,
            "manifest",
            f"manifest digest {manifest_digest} does not match the reference digest {ref.digest}",
        )
    signature = evidence.signature
    if signature.mime_type != SIMPLE_SIGNING_MIME_TYPE:
        fail(
            Code.UNSUPPORTED,
            "signature.mimeType",
            f"unsupported signature MIME type {signature.mime_type[:100]!r}",
        )
    payload = decode_base64(signature.payload, field="signature.payload", wrapped=True)
    raw_signature = decode_base64(
        _annotation(signature, SIGNATURE_ANNOTATION, required=True) or "",
        field=f"signature.annotations.{SIGNATURE_ANNOTATION}",
        wrapped=True,
    )
    signer = _verify_signer(signature, payload, raw_signature, trust, now=now)
    signed = parse_payload(payload)
    if signed.manifest_digest != manifest_digest:
        fail(
            Code.DIGEST_MISMATCH,
            "signature.payload.critical.image.docker-manifest-digest",
            f"manifest digest {manifest_digest} does not match the signed digest "
            f"{signed.manifest_digest}",
        )
    check_docker_reference(ref, signed)
    return ImageSignatureResult(
        reference=evidence.reference,
        digest=ref.digest,
        signed_digest=manifest_digest,
        signature=signer.claim,
        signed_time=signer.signed_time,
        signed_reference=signed.docker_reference,
    )


def _parse_signature_file(blob: bytes) -> CosignSignature:
    if len(blob) > _MAX_SIGNATURE_FILE:
        fail(Code.MALFORMED, "signature", "signature file is too large")
    if not blob.startswith(b"\x00"):
        fail(
            Code.UNSUPPORTED,
            "signature",
            "not a sigstore-json signature file (no 0x00 format marker)",
        )
    if not blob.startswith(_FORMAT_PREFIX):
        name = blob[1:].partition(b"\n")[0][:40]
        fail(Code.UNSUPPORTED, "signature", f"unsupported signature format {name!r}")
    data = load_json(blob[len(_FORMAT_PREFIX) :], field="signature")
    return validate_mapping(CosignSignature, data, prefix="signature")


# --- evidence and trust -------------------------------------------------------


_Base64 = Annotated[StrictStr, Field(max_length=_MAX_PAYLOAD_CHARS)]
_Pem = Annotated[StrictStr, Field(min_length=1, max_length=_MAX_PEM_CHARS)]


class CosignSignature(FrozenModel):
    """The JSON body of a ``sigstore-json`` signature file (field names as on disk).

    ``payload`` is standard base64 (RFC 4648, ``=`` padded), as containers/image writes it;
    line breaks (CR, LF) in it and in the signature annotation are skipped, as Go's
    decoder does.
    """

    mime_type: Annotated[StrictStr, Field(alias="mimeType", max_length=256)]
    payload: _Base64
    annotations: Annotated[
        dict[
            Annotated[StrictStr, Field(max_length=256)],
            Annotated[StrictStr, Field(max_length=_MAX_ANNOTATION_CHARS)],
        ],
        Field(max_length=_MAX_ANNOTATIONS),
    ] = Field(default_factory=dict)


class CosignEvidence(SignatureSection):
    """The evidence section: image reference, manifest bytes and one signature.

    ``manifest`` is standard base64 (RFC 4648, ``=`` padded) of the exact manifest bytes.
    """

    reference: Annotated[StrictStr, Field(min_length=1, max_length=1024)]
    manifest: Annotated[StrictStr, Field(min_length=1, max_length=_MAX_MANIFEST_CHARS)]
    signature: CosignSignature

    @classmethod
    def from_files(cls, *, reference: str, manifest: bytes, signature_file: bytes) -> Self:
        """Build evidence from a manifest and a ``signature-N`` file as skopeo stores them."""
        signature = parse_signature_file(signature_file)
        if not isinstance(reference, str):
            fail(Code.MALFORMED, "reference", "reference must be a string")
        return validate_mapping(
            cls,
            {
                "reference": reference,
                "manifest": base64.b64encode(manifest).decode("ascii"),
                "signature": signature.model_dump(by_alias=True),
            },
            whole="(evidence)",
        )


class CosignFulcioTrust(FrozenModel):
    """Fulcio CA certificates (PEM, all trusted as anchors) and the accepted identities."""

    ca_certificates: _Pem
    identities: Annotated[tuple[SigstoreIdentity, ...], Field(min_length=1, max_length=64)]


class CosignPkiTrust(FrozenModel):
    """A private PKI: root and optional intermediate certificates (PEM), and the signer.

    At least one of ``subject_email`` (an e-mail SAN) and ``subject_hostname`` (a DNS
    SAN, compared case-insensitively, no wildcards) is required; all given must match.
    """

    ca_roots: _Pem
    ca_intermediates: _Pem | None = None
    subject_email: Annotated[StrictStr, Field(min_length=1, max_length=1024)] | None = None
    subject_hostname: Annotated[StrictStr, Field(min_length=1, max_length=1024)] | None = None


class CosignTrust(FrozenModel):
    """The trust section: exactly one of ``public_keys``, ``fulcio`` or ``pki``.

    ``rekor_public_keys`` (PEM, ECDSA) make a Rekor SET mandatory; ``fulcio`` needs them.
    Keys and certificates are parsed when the model is built.
    """

    public_keys: Annotated[tuple[_Pem, ...], Field(max_length=_MAX_KEYS)] = ()
    fulcio: CosignFulcioTrust | None = None
    pki: CosignPkiTrust | None = None
    rekor_public_keys: Annotated[tuple[_Pem, ...], Field(max_length=_MAX_KEYS)] = ()

    _keys: tuple[PublicKey, ...] = PrivateAttr(default=())
    _rekor: dict[str, ec.EllipticCurvePublicKey] = PrivateAttr(default_factory=dict)
    _roots: tuple[x509.Certificate, ...] = PrivateAttr(default=())
    _intermediates: tuple[x509.Certificate, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _load(self) -> Self:
        modes = sum((bool(self.public_keys), self.fulcio is not None, self.pki is not None))
        if modes != 1:
            raise ValueError("exactly one of public_keys, fulcio or pki is required")
        if self.fulcio is not None and not self.rekor_public_keys:
            raise ValueError("fulcio needs rekor_public_keys (the SET dates the certificate)")
        if self.pki is not None and not (self.pki.subject_email or self.pki.subject_hostname):
            raise ValueError("pki needs subject_email and/or subject_hostname")
        self._keys = tuple(load_public_key(pem) for pem in self.public_keys)
        for pem in self.rekor_public_keys:
            key = load_public_key(pem)
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise ValueError("Rekor public keys must be ECDSA keys")
            self._rekor[fingerprint(key).removeprefix("sha256:")] = key
        if self.fulcio is not None:
            self._roots = tuple(load_pem_certificates(self.fulcio.ca_certificates))
        if self.pki is not None:
            self._roots = tuple(load_pem_certificates(self.pki.ca_roots))
            if self.pki.ca_intermediates is not None:
                self._intermediates = tuple(load_pem_certificates(self.pki.ca_intermediates))
        return self


# --- signers ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Signer:
    claim: ImageSignature
    signed_time: datetime | None


def _annotation(signature: CosignSignature, name: str, *, required: bool) -> str | None:
    value = signature.annotations.get(name)
    if value is None and required:
        fail(Code.MALFORMED, f"signature.annotations.{name}", f"missing the {name} annotation")
    return value


def _verify_signer(
    signature: CosignSignature,
    payload: bytes,
    raw_signature: bytes,
    trust: CosignTrust,
    *,
    now: datetime,
) -> _Signer:
    """Establish the signing key per the trust mode and verify the payload signature."""
    if trust.public_keys:
        key = _verifying_key(trust._keys, payload, raw_signature)
        signed_time = None
        if trust._rekor:
            signed_time = _verify_set(signature, trust, spki_der(key), raw_signature, payload, now)
        return _Signer(ImageSignature(verified=True, key_id=fingerprint(key)), signed_time)

    leaf, chain = _certificates(signature)
    cert_field = f"signature.annotations.{CERTIFICATE_ANNOTATION}"
    leaf_der = leaf.public_bytes(serialization.Encoding.DER)
    if trust.fulcio is not None:
        signed_time = _verify_set(signature, trust, leaf_der, raw_signature, payload, now)
        _verify_chain(leaf, chain, trust._roots, at=signed_time, field=cert_field, pki=False)
        identities = [(i.subject, i.issuer) for i in trust.fulcio.identities]
        subject, issuer = match_identity(leaf, identities, field=cert_field)
        claim = ImageSignature(verified=True, issuer=issuer, subject=subject)
    elif trust.pki is not None:
        intermediates = [*trust._intermediates, *chain]
        _verify_chain(leaf, intermediates, trust._roots, at=now, field=cert_field, pki=True)
        subject = _match_pki_subject(leaf, trust.pki, field=cert_field)
        claim = ImageSignature(verified=True, issuer=leaf.issuer.rfc4514_string(), subject=subject)
        signed_time = None
        if trust._rekor:
            signed_time = _verify_set(signature, trust, leaf_der, raw_signature, payload, now)
    else:  # unreachable: CosignTrust requires exactly one mode
        fail(Code.UNTRUSTED, "signature", "no trust mode configured")
    try:
        key = accepted_public_key(leaf.public_key())
    except ValueError as exc:
        fail(Code.UNSUPPORTED, cert_field, str(exc))
    if not signature_ok(key, raw_signature, payload):
        fail(
            Code.SIGNATURE_INVALID,
            f"signature.annotations.{SIGNATURE_ANNOTATION}",
            "signature does not verify with the certificate's key",
        )
    return _Signer(claim, signed_time)


def _verifying_key(keys: tuple[PublicKey, ...], payload: bytes, signature: bytes) -> PublicKey:
    for key in keys:
        if signature_ok(key, signature, payload):
            return key
    fail(
        Code.SIGNATURE_INVALID,
        f"signature.annotations.{SIGNATURE_ANNOTATION}",
        "signature does not verify with any trusted public key",
    )


def _verify_chain(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    roots: tuple[x509.Certificate, ...],
    *,
    at: datetime,
    field: str,
    pki: bool,
) -> None:
    """``evidence.expired`` when the leaf is outside its validity at ``at`` (the SET's
    integrated time, or ``now``); ``evidence.untrusted`` when no valid chain to a root
    exists or the leaf is not a code-signing certificate: Sigstore's profile for Fulcio
    certificates, containers/image's for a private PKI (``pki``)."""
    if not leaf.not_valid_before_utc <= at <= leaf.not_valid_after_utc:
        fail(
            Code.EXPIRED,
            field,
            f"signing certificate is valid from {leaf.not_valid_before_utc.isoformat()} to "
            f"{leaf.not_valid_after_utc.isoformat()}, not at {at.isoformat()}",
        )
    try:
        profile: SigningProfile = "private_pki" if pki else "sigstore"
        chain = verify_code_signing_chain(leaf, intermediates, roots, at=at, profile=profile)
    except ValueError as exc:
        fail(Code.UNTRUSTED, field, str(exc))
    if pki:  # checked at now (a Fulcio chain is checked at the fixed signing time)
        chain_valid_until(chain)


def _certificates(signature: CosignSignature) -> tuple[x509.Certificate, list[x509.Certificate]]:
    cert_field = f"signature.annotations.{CERTIFICATE_ANNOTATION}"
    cert_pem = _annotation(signature, CERTIFICATE_ANNOTATION, required=True) or ""
    leaves = certificates_from_pem_bundle(cert_pem, cert_field)
    if len(leaves) != 1:
        fail(Code.MALFORMED, cert_field, f"expected one certificate, found {len(leaves)}")
    chain_pem = _annotation(signature, CHAIN_ANNOTATION, required=False)
    chain: list[x509.Certificate] = []
    if chain_pem is not None:
        chain = certificates_from_pem_bundle(chain_pem, f"signature.annotations.{CHAIN_ANNOTATION}")
    return leaves[0], chain


def _match_pki_subject(leaf: x509.Certificate, pki: CosignPkiTrust, *, field: str) -> str:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        emails = san.get_values_for_type(x509.RFC822Name)
        hosts = [host.lower() for host in san.get_values_for_type(x509.DNSName)]
    except (x509.ExtensionNotFound, ValueError):
        emails, hosts = [], []
    if pki.subject_email is not None and pki.subject_email not in emails:
        fail(Code.IDENTITY_MISMATCH, field, f"certificate has no e-mail SAN {pki.subject_email!r}")
    if pki.subject_hostname is not None and pki.subject_hostname.lower() not in hosts:
        fail(Code.IDENTITY_MISMATCH, field, f"certificate has no DNS SAN {pki.subject_hostname!r}")
    return pki.subject_email or pki.subject_hostname or ""


def _verify_set(
    signature: CosignSignature,
    trust: CosignTrust,
    expected_der: bytes,
    raw_signature: bytes,
    payload: bytes,
    now: datetime,
) -> datetime:
    """The Rekor SET annotation's verified integrated time (see ``_cosign_rekor``)."""
    return verify_set_annotation(
        _annotation(signature, SET_ANNOTATION, required=True) or "",
        trust._rekor,
        expected_der=expected_der,
        signature=raw_signature,
        payload=payload,
        now=now,
        field=f"signature.annotations.{SET_ANNOTATION}",
    )
