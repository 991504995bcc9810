"""Hand verification of Sigstore bundles whose Rekor entry is ``intoto`` 0.0.2.

sigstore-python 4.x refuses these (it only takes a log integrated time from ``dsse`` and
``hashedrekord`` 0.0.1 entries), yet slsa-github-generator's delegator builders still
produce them. Everything is checked here, offline, against a parsed trusted root:

1. the Rekor entry's signed entry timestamp, with the trusted Rekor key named by its log
   id and valid at the integrated time; that time is the signing time from then on;
2. the inclusion proof up to the signed checkpoint (required unless the bundle is v0.1);
3. the Fulcio chain at the integrated time, the embedded SCT, and the signing profile;
4. the DSSE signature (over the pre-authentication encoding) with the certificate's key;
5. the entry's consistency with the bundle: payload type, payload hash, signature and
   certificate all equal the bundle's.

The certificate must also carry one of the expected identities (after step 3).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from attestpolicy._keys import CERTIFICATE_ERRORS
from attestpolicy.errors import EvidenceError
from attestpolicy.evidence._common import Code, decode_base64, fail
from attestpolicy.evidence._crypto import rekor
from attestpolicy.evidence._crypto.fulcio import certificate_identity, find_identity, verify_sct
from attestpolicy.evidence._crypto.trusted_root import LogKey, SigstoreRoot
from attestpolicy.evidence._crypto.x509 import certificate_from_der, verify_code_signing_chain
from attestpolicy.evidence.provenance.dsse import pae

__all__ = ["BUNDLE_MEDIA_TYPES", "SigstoreDsse", "is_intoto_v002", "verify_intoto_bundle"]

BUNDLE_MEDIA_TYPES: Final = {
    "application/vnd.dev.sigstore.bundle+json;version=0.1": "0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2": "0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3": "0.3",
    "application/vnd.dev.sigstore.bundle.v0.3+json": "0.3",
}
_FIELD = "sigstore_bundle"
_ENTRY = f"{_FIELD}.verificationMaterial.tlogEntries[0]"
_MAX_INT = 2**63 - 1
_CERTIFICATE_ERRORS: Final = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


@dataclass(frozen=True, slots=True)
class SigstoreDsse:
    """A DSSE payload from a verified Sigstore bundle, with its signer and time."""

    payload_type: str
    payload: bytes
    subject: str
    issuer: str
    extensions: dict[str, str]
    signed_at: datetime


def _get(mapping: object, key: str, field: str) -> Any:
    if not isinstance(mapping, Mapping) or key not in mapping:
        fail(Code.MALFORMED, f"{field}.{key}", "missing")
    return mapping[key]


def _text(mapping: object, key: str, field: str) -> str:
    value = _get(mapping, key, field)
    if not isinstance(value, str):
        fail(Code.MALFORMED, f"{field}.{key}", "must be a string")
    return value


def _int(mapping: object, key: str, field: str) -> int:
    value = _get(mapping, key, field)
    if isinstance(value, bool) or not isinstance(value, int | str):
        fail(Code.MALFORMED, f"{field}.{key}", "must be an integer")
    if isinstance(value, str) and not (value.isascii() and value.isdigit() and len(value) < 20):
        fail(Code.MALFORMED, f"{field}.{key}", "must be a decimal integer")
    number = int(value)
    if not 0 <= number <= _MAX_INT:
        fail(Code.MALFORMED, f"{field}.{key}", "out of range")
    return number


def _b64(mapping: object, key: str, field: str) -> bytes:
    return decode_base64(_text(mapping, key, field), field=f"{field}.{key}")


def _entry(bundle: Mapping[str, Any]) -> Mapping[str, Any]:
    material = _get(bundle, "verificationMaterial", _FIELD)
    entries = _get(material, "tlogEntries", f"{_FIELD}.verificationMaterial")
    if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], Mapping):
        fail(
            Code.MALFORMED,
            _ENTRY.removesuffix("[0]"),
            "exactly one transparency log entry is required",
        )
    entry: Mapping[str, Any] = entries[0]
    return entry


def is_intoto_v002(bundle: Mapping[str, Any]) -> bool:
    """Whether the bundle's single log entry is of kind ``intoto`` version 0.0.2."""
    try:
        kind_version = _get(_entry(bundle), "kindVersion", _ENTRY)
    except EvidenceError:
        return False
    return isinstance(kind_version, Mapping) and (
        kind_version.get("kind"),
        kind_version.get("version"),
    ) == ("intoto", "0.0.2")


def _leaf(bundle: Mapping[str, Any], version: str) -> x509.Certificate:
    material = _get(bundle, "verificationMaterial", _FIELD)
    field = f"{_FIELD}.verificationMaterial"
    if isinstance(material, Mapping) and "certificate" in material and version == "0.3":
        raw = _b64(_get(material, "certificate", field), "rawBytes", f"{field}.certificate")
    elif isinstance(material, Mapping) and "x509CertificateChain" in material:
        chain = _get(material, "x509CertificateChain", field)
        certificates = _get(chain, "certificates", f"{field}.x509CertificateChain")
        if not isinstance(certificates, list) or not 0 < len(certificates) <= 8:
            fail(Code.MALFORMED, f"{field}.x509CertificateChain", "must hold 1 to 8 certificates")
        raw = _b64(certificates[0], "rawBytes", f"{field}.x509CertificateChain.certificates[0]")
    else:
        fail(Code.UNSUPPORTED, field, "only Fulcio-certificate bundles are supported here")
    return certificate_from_der(raw, f"{field}.certificate")


def verify_intoto_bundle(
    bundle: Mapping[str, Any],
    root: SigstoreRoot,
    identities: Sequence[tuple[str, str]],
    *,
    now: datetime,
) -> SigstoreDsse:
    """Verify a DSSE Sigstore bundle logged as Rekor ``intoto`` 0.0.2 (see module doc).

    ``identities`` are the accepted ``(subject, issuer)`` pairs, matched exactly as
    ``sigstore.verify.policy.Identity`` does (SAN e-mail, URI or other-name; issuer
    extension).
    """
    version = BUNDLE_MEDIA_TYPES.get(str(bundle.get("mediaType")))
    if version is None:
        fail(Code.UNSUPPORTED, f"{_FIELD}.mediaType", "unknown bundle media type")
    if not is_intoto_v002(bundle):
        fail(
            Code.UNSUPPORTED, f"{_ENTRY}.kindVersion", "only intoto 0.0.2 entries are checked here"
        )
    entry = _entry(bundle)
    envelope = _get(bundle, "dsseEnvelope", _FIELD)
    env_field = f"{_FIELD}.dsseEnvelope"
    payload_type = _text(envelope, "payloadType", env_field)
    payload = _b64(envelope, "payload", env_field)
    signatures = _get(envelope, "signatures", env_field)
    if not isinstance(signatures, list) or len(signatures) != 1:
        fail(Code.MALFORMED, f"{env_field}.signatures", "exactly one signature is required")
    signature_text = _text(signatures[0], "sig", f"{env_field}.signatures[0]")
    signature = decode_base64(signature_text, field=f"{env_field}.signatures[0].sig")
    leaf = _leaf(bundle, version)

    # 1. signed entry timestamp -> a verified integrated time
    body_text = _text(entry, "canonicalizedBody", _ENTRY)
    body = decode_base64(body_text, field=f"{_ENTRY}.canonicalizedBody")
    log_id = _b64(_get(entry, "logId", _ENTRY), "keyId", f"{_ENTRY}.logId")
    integrated = _int(entry, "integratedTime", _ENTRY)
    log_index = _int(entry, "logIndex", _ENTRY)
    try:
        signed_at = datetime.fromtimestamp(integrated, tz=UTC)
    except (OverflowError, ValueError, OSError):
        fail(Code.MALFORMED, f"{_ENTRY}.integratedTime", "integrated time out of range")
    logs = [log for log in root.tlogs if log.log_id == log_id and log.valid_at(signed_at)]
    if not logs:
        fail(
            Code.UNTRUSTED,
            f"{_ENTRY}.logId",
            "no trusted transparency log with this id was valid at the integrated time",
        )
    log = logs[0]
    promise = _get(entry, "inclusionPromise", _ENTRY)
    set_signature = _b64(promise, "signedEntryTimestamp", f"{_ENTRY}.inclusionPromise")
    try:
        rekor.verify_set(
            log.key,
            set_signature,
            body=body_text,
            integrated_time=integrated,
            log_id=log_id,
            log_index=log_index,
        )
    except ValueError as exc:
        fail(Code.SIGNATURE_INVALID, f"{_ENTRY}.inclusionPromise", str(exc))
    if signed_at > now:
        fail(Code.EXPIRED, f"{_ENTRY}.integratedTime", "the log integrated time is after now")

    # 2. inclusion proof and checkpoint
    if "inclusionProof" in entry or version != "0.1":
        _check_inclusion(entry, body, log, log_id)

    # 3. certificate chain at the signing time, SCT, profile
    try:
        chain = verify_code_signing_chain(leaf, [], root.fulcio_anchors(signed_at), at=signed_at)
        verify_sct(leaf, chain[1:], root)
        identity = certificate_identity(leaf)
    except _CERTIFICATE_ERRORS as exc:
        fail(Code.UNTRUSTED, f"{_FIELD}.verificationMaterial", str(exc))
    if find_identity(leaf, identities) is None:
        fail(
            Code.IDENTITY_MISMATCH,
            f"{_FIELD}.verificationMaterial.certificate",
            f"signer {identity.subject[:200]!r} (issuer {identity.issuer[:100]!r}) "
            "is not an expected identity",
        )

    # 4. the DSSE signature
    try:
        key = leaf.public_key()
    except _CERTIFICATE_ERRORS:
        key = None
    curve_hash = {256: hashes.SHA256(), 384: hashes.SHA384()}
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.key_size not in curve_hash:
        fail(
            Code.UNSUPPORTED,
            f"{_FIELD}.verificationMaterial",
            "signing key must be ECDSA P-256 or P-384",
        )
    try:
        key.verify(signature, pae(payload_type, payload), ec.ECDSA(curve_hash[key.curve.key_size]))
    except (InvalidSignature, ValueError):
        fail(
            Code.SIGNATURE_INVALID,
            f"{env_field}.signatures[0].sig",
            "DSSE signature does not verify",
        )
    # 5. the log entry describes this very envelope, signature and certificate
    _check_body(body, payload_type, payload, signature, leaf)

    return SigstoreDsse(
        payload_type=payload_type,
        payload=payload,
        subject=identity.subject,
        issuer=identity.issuer,
        extensions=identity.extensions,
        signed_at=signed_at,
    )


def _check_inclusion(entry: Mapping[str, Any], body: bytes, log: LogKey, log_id: bytes) -> None:
    field = f"{_ENTRY}.inclusionProof"
    proof = _get(entry, "inclusionProof", _ENTRY)
    index = _int(proof, "logIndex", field)
    tree_size = _int(proof, "treeSize", field)
    root_hash = _b64(proof, "rootHash", field)
    hashes_ = _get(proof, "hashes", field)
    if not isinstance(hashes_, list) or len(hashes_) > rekor.MAX_PROOF_HASHES:
        fail(Code.MALFORMED, f"{field}.hashes", "must be a list of at most 64 hashes")
    path = [
        decode_base64(h, field=f"{field}.hashes[{i}]") if isinstance(h, str) else b""
        for i, h in enumerate(hashes_)
    ]
    checkpoint = _text(_get(proof, "checkpoint", field), "envelope", f"{field}.checkpoint")
    try:
        rekor.verify_inclusion(rekor.leaf_hash(body), index, tree_size, path, root_hash)
    except ValueError as exc:
        fail(Code.SIGNATURE_INVALID, field, str(exc))
    try:
        rekor.verify_checkpoint(log.key, log_id, checkpoint, tree_size=tree_size, root=root_hash)
    except ValueError as exc:
        fail(Code.SIGNATURE_INVALID, f"{field}.checkpoint", str(exc))


def _check_body(
    body: bytes, payload_type: str, payload: bytes, signature: bytes, leaf: x509.Certificate
) -> None:
    field = f"{_ENTRY}.canonicalizedBody"
    try:
        document = json.loads(body)
        content = document["spec"]["content"]
        logged_envelope = content["envelope"]
        logged_type = logged_envelope["payloadType"]
        logged_signatures = logged_envelope["signatures"]
        payload_hash = content["payloadHash"]
        ok_header = (document["kind"], document["apiVersion"]) == ("intoto", "0.0.2")
    except (ValueError, KeyError, TypeError, IndexError, RecursionError):
        fail(Code.MALFORMED, field, "not an intoto 0.0.2 entry body")
    if not ok_header:
        fail(Code.UNSUPPORTED, field, "not an intoto 0.0.2 entry body")
    if logged_type != payload_type:
        fail(Code.UNTRUSTED, field, "logged payload type differs")
    if not isinstance(payload_hash, Mapping) or (
        payload_hash.get("algorithm"),
        payload_hash.get("value"),
    ) != ("sha256", hashlib.sha256(payload).hexdigest()):
        fail(Code.UNTRUSTED, field, "logged payload hash differs")
    if not isinstance(logged_signatures, list) or len(logged_signatures) != 1:
        fail(Code.UNTRUSTED, field, "the log entry must record exactly one signature")
    logged = logged_signatures[0]
    try:
        logged_sig = base64.b64decode(base64.b64decode(logged["sig"], validate=True), validate=True)
        logged_cert = x509.load_pem_x509_certificate(
            base64.b64decode(logged["publicKey"], validate=True)
        )
    except (KeyError, TypeError, *CERTIFICATE_ERRORS, binascii.Error):
        fail(Code.MALFORMED, field, "logged signature is malformed")
    if logged_sig != signature:
        fail(Code.UNTRUSTED, field, "logged signature differs")
    if logged_cert != leaf:
        fail(Code.UNTRUSTED, field, "logged certificate differs")
