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
  expected e-mail and/or DNS host name.

When ``rekor_public_keys`` are configured, a Rekor SET (annotation
``dev.sigstore.cosign/bundle``) is required and must bind this signature, payload and
key or certificate.

Public API::

    verify_cosign_signature(evidence: CosignEvidence, trust: CosignTrust, *,
                            now: datetime) -> ImageSignatureResult
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Self

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
from attestpolicy.errors import EvidenceError
from attestpolicy.evidence._common import (
    Code,
    check_not_future,
    decode_base64,
    fail,
    load_json,
    malformed_on_error,
    require_utc,
    sha256_digest,
    validate_mapping,
)
from attestpolicy.evidence._crypto.fulcio import match_identity
from attestpolicy.evidence._crypto.rekor import verify_set
from attestpolicy.evidence._crypto.x509 import (
    certificates_from_pem_bundle,
    fingerprint,
    load_pem_certificates,
    signature_ok,
    spki_der,
    verify_code_signing_chain,
)
from attestpolicy.evidence.image._reference import ImageReference, InvalidReference, parse_reference
from attestpolicy.evidence.image.sigstore_bundle import ImageSignatureResult, SigstoreIdentity

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

_SIGNATURE_TYPE: Final = "cosign container image signature"
_FORMAT_PREFIX: Final = b"\x00sigstore-json\n"
_MAX_SIGNATURE_FILE = 1024 * 1024
_MAX_MANIFEST_CHARS = 6 * 1024 * 1024  # base64 of the 4 MiB OCI manifest limit
_MAX_PAYLOAD_CHARS = 256 * 1024
_MAX_ANNOTATION_CHARS = 256 * 1024
_MAX_ANNOTATIONS = 64
_MAX_KEYS = 32
_MAX_PEM_CHARS = 64 * 1024
_MAX_INT64 = 2**63 - 1
_HEX = re.compile(r"^[0-9a-f]+$")
_B64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_PEM_BLOCK = re.compile(
    r"^-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END \1-----\r?\n?$"
)


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
    ref = _parse_reference(evidence.reference, field="reference")
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
    payload = decode_base64(signature.payload, field="signature.payload")
    raw_signature = decode_base64(
        _annotation(signature, SIGNATURE_ANNOTATION, required=True) or "",
        field=f"signature.annotations.{SIGNATURE_ANNOTATION}",
    )
    signer = _verify_signer(signature, payload, raw_signature, trust, now=now)
    signed = _parse_payload(payload)
    if signed.manifest_digest != manifest_digest:
        fail(
            Code.DIGEST_MISMATCH,
            "signature.payload.critical.image.docker-manifest-digest",
            f"manifest digest {manifest_digest} does not match the signed digest "
            f"{signed.manifest_digest}",
        )
    _check_docker_reference(ref, signed)
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

    ``payload`` is standard base64 (RFC 4648, ``=`` padded), as containers/image writes it.
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


class CosignEvidence(FrozenModel):
    """The evidence section: image reference, manifest bytes and one signature.

    ``manifest`` is standard base64 (RFC 4648, ``=`` padded) of the exact manifest bytes.
    """

    reference: Annotated[StrictStr, Field(min_length=1, max_length=1024)]
    manifest: Annotated[StrictStr, Field(min_length=1, max_length=_MAX_MANIFEST_CHARS)]
    signature: CosignSignature

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        """Validate the evidence section; raise ``evidence.malformed`` (never pydantic's error)."""
        return validate_mapping(cls, data, whole="(evidence)")

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


@dataclass(frozen=True, slots=True)
class _SignedPayload:
    manifest_digest: str
    docker_reference: str


def _annotation(signature: CosignSignature, name: str, *, required: bool) -> str | None:
    value = signature.annotations.get(name)
    if value is None and required:
        fail(Code.MALFORMED, f"signature.annotations.{name}", f"missing the {name} annotation")
    return value


def _parse_reference(text: str, *, field: str) -> ImageReference:
    try:
        return parse_reference(text)
    except InvalidReference as exc:
        code = Code.UNSUPPORTED if exc.unsupported else Code.MALFORMED
        fail(code, field, str(exc))


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
        _verify_chain(leaf, chain, trust._roots, at=signed_time, field=cert_field)
        identities = [(i.subject, i.issuer) for i in trust.fulcio.identities]
        subject, issuer = match_identity(leaf, identities, field=cert_field)
        claim = ImageSignature(verified=True, issuer=issuer, subject=subject)
    elif trust.pki is not None:
        _verify_chain(leaf, [*trust._intermediates, *chain], trust._roots, at=now, field=cert_field)
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
) -> None:
    """``evidence.expired`` when the leaf is outside its validity at ``at`` (the SET's
    integrated time, or ``now``); ``evidence.untrusted`` when no valid chain to a root
    exists or the leaf is not a code-signing certificate."""
    if not leaf.not_valid_before_utc <= at <= leaf.not_valid_after_utc:
        fail(
            Code.EXPIRED,
            field,
            f"signing certificate is valid from {leaf.not_valid_before_utc.isoformat()} to "
            f"{leaf.not_valid_after_utc.isoformat()}, not at {at.isoformat()}",
        )
    try:
        verify_code_signing_chain(leaf, intermediates, roots, at=at)
    except ValueError as exc:
        fail(Code.UNTRUSTED, field, str(exc))


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


# --- Rekor signed entry timestamp ----------------------------------------------


def _exact_object(value: object, keys: set[str], *, field: str) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != keys:
        fail(
            Code.MALFORMED, field, f"expected a JSON object with exactly the fields {sorted(keys)}"
        )
    return value


def _string(value: object, *, field: str, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
        fail(Code.MALFORMED, field, "expected a well-formed string")
    return value


def _int64(value: object, *, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_INT64:
        fail(Code.MALFORMED, field, "expected a non-negative 64-bit integer")
    return value


def _verify_set(
    signature: CosignSignature,
    trust: CosignTrust,
    expected_der: bytes,
    raw_signature: bytes,
    payload: bytes,
    now: datetime,
) -> datetime:
    """Verify the Rekor SET and that it logs exactly this signature, payload and key.

    Returns the verified integrated time.
    """
    field = f"signature.annotations.{SET_ANNOTATION}"
    text = _annotation(signature, SET_ANNOTATION, required=True) or ""
    outer = _exact_object(
        load_json(text, field=field), {"SignedEntryTimestamp", "Payload"}, field=field
    )
    set_signature = decode_base64(
        _string(outer["SignedEntryTimestamp"], field=f"{field}.SignedEntryTimestamp"),
        field=f"{field}.SignedEntryTimestamp",
    )
    inner = _exact_object(
        outer["Payload"], {"body", "integratedTime", "logIndex", "logID"}, field=f"{field}.Payload"
    )
    body_text = _string(inner["body"], field=f"{field}.Payload.body", pattern=_B64)
    log_id = _string(inner["logID"], field=f"{field}.Payload.logID", pattern=_HEX)
    integrated = _int64(inner["integratedTime"], field=f"{field}.Payload.integratedTime")
    log_index = _int64(inner["logIndex"], field=f"{field}.Payload.logIndex")
    rekor_key = trust._rekor.get(log_id)
    if rekor_key is None:
        fail(
            Code.UNTRUSTED,
            f"{field}.Payload.logID",
            f"Rekor log ID {log_id[:64]} is not a trusted Rekor key",
        )
    try:
        verify_set(
            rekor_key,
            set_signature,
            body=body_text,
            integrated_time=integrated,
            log_id=bytes.fromhex(log_id),
            log_index=log_index,
        )
    except ValueError:
        fail(
            Code.SIGNATURE_INVALID,
            f"{field}.SignedEntryTimestamp",
            "Rekor signed entry timestamp does not verify",
        )
    _check_logged_entry(
        decode_base64(body_text, field=f"{field}.Payload.body"),
        expected_der,
        raw_signature,
        payload,
        field=f"{field}.Payload.body",
    )
    try:
        when = datetime.fromtimestamp(integrated, tz=UTC)
    except (OverflowError, OSError, ValueError):
        fail(Code.MALFORMED, f"{field}.Payload.integratedTime", "integrated time out of range")
    check_not_future(when, now, field=f"{field}.Payload.integratedTime")
    return when


def _check_logged_entry(
    body: bytes, expected_der: bytes, raw_signature: bytes, payload: bytes, *, field: str
) -> None:
    """The logged hashedrekord 0.0.1 entry must name this key, signature and payload."""
    entry = _exact_object(load_json(body, field=field), {"apiVersion", "kind", "spec"}, field=field)
    if entry["kind"] != "hashedrekord" or entry["apiVersion"] != "0.0.1":
        fail(
            Code.UNSUPPORTED,
            field,
            f"unsupported Rekor entry {str(entry['kind'])[:40]} {str(entry['apiVersion'])[:20]}",
        )
    spec = _exact_object(entry["spec"], {"data", "signature"}, field=f"{field}.spec")
    data = _exact_object(spec["data"], {"hash"}, field=f"{field}.spec.data")
    digest = _exact_object(data["hash"], {"algorithm", "value"}, field=f"{field}.spec.data.hash")
    logged_sig = _exact_object(
        spec["signature"], {"content", "publicKey"}, field=f"{field}.spec.signature"
    )
    key_obj = _exact_object(
        logged_sig["publicKey"], {"content"}, field=f"{field}.spec.signature.publicKey"
    )
    content = _string(logged_sig["content"], field=f"{field}.spec.signature.content")
    logged_key = decode_base64(
        _string(key_obj["content"], field=f"{field}.spec.signature.publicKey.content"),
        field=f"{field}.spec.signature.publicKey.content",
    )
    if _pem_der(logged_key) != expected_der:
        fail(
            Code.SIGNATURE_INVALID,
            f"{field}.spec.signature.publicKey",
            "the logged public key or certificate is not the one that signed",
        )
    if decode_base64(content, field=f"{field}.spec.signature.content") != raw_signature:
        fail(
            Code.SIGNATURE_INVALID,
            f"{field}.spec.signature.content",
            "the logged signature is not this signature",
        )
    if digest["algorithm"] != "sha256":
        fail(
            Code.UNSUPPORTED,
            f"{field}.spec.data.hash.algorithm",
            "only sha256 hashedrekord entries are supported",
        )
    if digest["value"] != hashlib.sha256(payload).hexdigest():
        fail(
            Code.SIGNATURE_INVALID,
            f"{field}.spec.data.hash.value",
            "the logged payload hash is not this payload's",
        )


def _pem_der(pem: bytes) -> bytes | None:
    """The DER bytes of a single PEM block with nothing after it, else ``None``."""
    try:
        match = _PEM_BLOCK.match(pem.decode("ascii"))
    except UnicodeDecodeError:
        return None
    if match is None:
        return None
    body = "".join(match.group(2).split())
    try:
        return decode_base64(body, field="pem")
    except EvidenceError:
        return None


# --- the signed payload --------------------------------------------------------


def _parse_payload(payload: bytes) -> _SignedPayload:
    """Parse cosign's simple-signing JSON strictly, as containers/image does."""
    field = "signature.payload"
    top = _exact_object(load_json(payload, field=field), {"critical", "optional"}, field=field)
    optional = top["optional"]
    if optional is not None:
        if not isinstance(optional, dict):
            fail(Code.MALFORMED, f"{field}.optional", "optional must be an object or null")
        if "creator" in optional and not isinstance(optional["creator"], str):
            fail(Code.MALFORMED, f"{field}.optional", "optional.creator must be a string")
        stamp = optional.get("timestamp")
        if "timestamp" in optional and (
            isinstance(stamp, bool)
            or not isinstance(stamp, int | float)
            or (isinstance(stamp, float) and not stamp.is_integer())
        ):
            fail(Code.MALFORMED, f"{field}.optional", "optional.timestamp must be an integer")
    critical = _exact_object(
        top["critical"], {"type", "image", "identity"}, field=f"{field}.critical"
    )
    if critical["type"] != _SIGNATURE_TYPE:
        fail(
            Code.UNSUPPORTED,
            f"{field}.critical.type",
            f"unrecognized signature type {str(critical['type'])[:80]!r}",
        )
    image = _exact_object(
        critical["image"], {"docker-manifest-digest"}, field=f"{field}.critical.image"
    )
    identity = _exact_object(
        critical["identity"], {"docker-reference"}, field=f"{field}.critical.identity"
    )
    digest_field = f"{field}.critical.image.docker-manifest-digest"
    digest_text = _string(image["docker-manifest-digest"], field=digest_field)
    digest_ref = _parse_reference(digest_text, field=digest_field)
    if digest_ref.name is not None or digest_ref.digest is None:
        fail(Code.MALFORMED, digest_field, "not a sha256 digest")
    reference = _string(
        identity["docker-reference"], field=f"{field}.critical.identity.docker-reference"
    )
    return _SignedPayload(manifest_digest=digest_ref.digest, docker_reference=reference)


def _check_docker_reference(ref: ImageReference, signed: _SignedPayload) -> None:
    """Match the signed docker-reference against the evidence reference.

    The rule (containers/image ``matchRepoDigestOrExact``, relaxed like its
    ``matchRepository`` for cosign's name-only references): the normalized repositories
    must be equal (skipped for a bare-digest reference that names none); when both
    carry a tag the tags must be equal; a digest in the signed reference must be the
    signed manifest digest.
    """
    field = "signature.payload.critical.identity.docker-reference"
    try:
        signed_ref = parse_reference(signed.docker_reference)
    except InvalidReference as exc:
        fail(
            Code.IDENTITY_MISMATCH,
            field,
            f"signed docker-reference is not a valid reference: {exc}",
        )
    if signed_ref.name is None:
        fail(Code.IDENTITY_MISMATCH, field, "signed docker-reference names no repository")
    if ref.name is not None and signed_ref.name != ref.name:
        fail(
            Code.IDENTITY_MISMATCH,
            field,
            f"signed for repository {signed_ref.name}, not {ref.name}",
        )
    if ref.tag is not None and signed_ref.tag is not None and signed_ref.tag != ref.tag:
        fail(Code.IDENTITY_MISMATCH, field, f"signed for tag {signed_ref.tag}, not {ref.tag}")
    if signed_ref.digest is not None and signed_ref.digest != signed.manifest_digest:
        fail(Code.IDENTITY_MISMATCH, field, "signed docker-reference pins another digest")
