"""cosign simple-signing signatures (containers/image "sigstore-json" files)."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from evidence.helpers import (
    CA_USAGE,
    SIGNING_USAGE,
    TEST_ASSETS,
    assert_valid_until,
    cert_pem,
    ec_key,
    expect,
    issue,
    key_usage,
    public_key_pem,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from attestpolicy.claims import Image, ImageSignature
from attestpolicy.errors import EvidenceError
from attestpolicy.evidence._validity import collect_validity
from attestpolicy.evidence.image._reference import InvalidReference, parse_reference
from attestpolicy.evidence.image.cosign import (
    CERTIFICATE_ANNOTATION,
    CHAIN_ANNOTATION,
    SET_ANNOTATION,
    SIGNATURE_ANNOTATION,
    CosignEvidence,
    CosignFulcioTrust,
    CosignPkiTrust,
    CosignTrust,
    parse_signature_file,
    verify_cosign_signature,
)
from attestpolicy.evidence.image.sigstore_bundle import SigstoreIdentity

ASSETS = TEST_ASSETS / "cosign"
NOW = datetime(2026, 11, 22, tzinfo=UTC)

SINGLE_SAMPLE = "192.168.64.2:5000/cosign-signed-single-sample"
DIGEST_VALID = "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00"
DIGEST_REKOR = "sha256:0489474da8ea22426ece86ace6c1c0026ab2fd3cdfbbd62b7e94650266c37d9a"
GITHUB_OAUTH = "https://github.com/login/oauth"
OIDC_ISSUER_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")


def pem(name: str) -> str:
    return (ASSETS / name).read_text()


def fixture_evidence(directory: str, reference: str) -> CosignEvidence:
    return CosignEvidence.from_files(
        reference=reference,
        manifest=(ASSETS / directory / "manifest.json").read_bytes(),
        signature_file=(ASSETS / directory / "signature-1").read_bytes(),
    )


def with_annotations(ev: CosignEvidence, **changes: str | None) -> CosignEvidence:
    """Replace (or, with None, remove) annotations; keys use '_' for '/', '.' and '-'."""
    names = {
        "signature": SIGNATURE_ANNOTATION,
        "certificate": CERTIFICATE_ANNOTATION,
        "chain": CHAIN_ANNOTATION,
        "set": SET_ANNOTATION,
    }
    annotations = dict(ev.signature.annotations)
    for key, value in changes.items():
        if value is None:
            annotations.pop(names[key], None)
        else:
            annotations[names[key]] = value
    data = ev.model_dump(by_alias=True)
    data["signature"]["annotations"] = annotations
    return CosignEvidence.parse(data)


@functools.cache
def key_trust(*keys: str, rekor: tuple[str, ...] = ()) -> CosignTrust:
    return CosignTrust(public_keys=tuple(pem(k) for k in keys), rekor_public_keys=rekor)


@functools.cache
def fulcio_trust(email: str = "mitr@redhat.com", issuer: str = GITHUB_OAUTH) -> CosignTrust:
    return CosignTrust(
        fulcio=CosignFulcioTrust(
            ca_certificates=pem("fulcio_v1.crt.pem"),
            identities=(SigstoreIdentity(subject=email, issuer=issuer),),
        ),
        rekor_public_keys=(pem("rekor.pub"),),
    )


SIG_FIELD = f"signature.annotations.{SIGNATURE_ANNOTATION}"
CERT_FIELD = f"signature.annotations.{CERTIFICATE_ANNOTATION}"
SET_FIELD = f"signature.annotations.{SET_ANNOTATION}"
DIGEST_FIELD = "signature.payload.critical.image.docker-manifest-digest"
REF_FIELD = "signature.payload.critical.identity.docker-reference"


# --- EXPECTED.md: Image signatures, cosign rows -----------------------------------


def test_cosign_signed_image_verifies_with_cosign_pub() -> None:
    manifest = (ASSETS / "dir-img-cosign-valid" / "manifest.json").read_bytes()
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == DIGEST_VALID
    ref = f"{SINGLE_SAMPLE}@{DIGEST_VALID}"
    result = verify_cosign_signature(
        fixture_evidence("dir-img-cosign-valid", ref), key_trust("cosign.pub"), now=NOW
    )
    assert result.digest == DIGEST_VALID
    assert result.signed_digest == DIGEST_VALID
    assert result.signed_reference == SINGLE_SAMPLE
    assert result.signed_time is None
    cosign_key = serialization.load_pem_public_key(pem("cosign.pub").encode())
    spki = cosign_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert result.signature.verified
    assert result.signature.key_id == "sha256:" + hashlib.sha256(spki).hexdigest()
    assert (result.signature.issuer, result.signature.subject) == (None, None)
    assert result.image() == Image(
        reference=ref, digest=DIGEST_VALID, signatures=(result.signature,)
    )


def test_skopeo_signed_image_with_tag_verifies() -> None:
    trust = key_trust("cosign.pub")
    tagged = verify_cosign_signature(
        fixture_evidence("dir-img-cosign-valid-with-tag", "192.168.64.2:5000/skopeo-signed:tag"),
        trust,
        now=NOW,
    )
    assert tagged.signed_reference == "192.168.64.2:5000/skopeo-signed:tag"
    assert tagged.signed_digest == DIGEST_VALID
    assert tagged.digest is None  # tag-only reference: digest-less claim
    pinned = verify_cosign_signature(
        fixture_evidence(
            "dir-img-cosign-valid-with-tag", f"192.168.64.2:5000/skopeo-signed:tag@{DIGEST_VALID}"
        ),
        trust,
        now=NOW,
    )
    assert pinned.digest == DIGEST_VALID


def test_wrong_key_is_rejected() -> None:
    with expect("evidence.signature_invalid", SIG_FIELD):
        verify_cosign_signature(
            fixture_evidence("dir-img-cosign-valid", f"{SINGLE_SAMPLE}@{DIGEST_VALID}"),
            key_trust("cosign2.pub"),
            now=NOW,
        )


def test_modified_manifest_is_a_digest_mismatch() -> None:
    with expect("evidence.digest_mismatch", DIGEST_FIELD) as error:
        verify_cosign_signature(
            fixture_evidence("dir-img-cosign-modified-manifest", SINGLE_SAMPLE),
            key_trust("cosign.pub"),
            now=NOW,
        )
    assert "sha256:d9dcafdb480aa7c475e91737b96925e45844213dcb0290b4a90017459121f71f" in str(
        error.value
    )


def test_key_and_rekor_signature_verifies_with_its_set_time() -> None:
    # The signature and its Rekor entry name cosign2.pub (see tests/assets/cosign/SOURCES.md).
    result = verify_cosign_signature(
        fixture_evidence(
            "dir-img-cosign-key-rekor-valid",
            f"192.168.64.2:5000/cosign-signed/key-1@{DIGEST_REKOR}",
        ),
        key_trust("cosign.pub", "cosign2.pub", rekor=(pem("rekor.pub"),)),
        now=NOW,
    )
    assert result.digest == DIGEST_REKOR
    assert result.signed_time == datetime(2023, 1, 20, 21, 57, 39, tzinfo=UTC)
    assert result.signed_reference == "192.168.64.2:5000/cosign-signed/key-1"


def test_key_and_rekor_signature_is_not_signed_by_cosign_pub() -> None:
    with expect("evidence.signature_invalid", SIG_FIELD):
        verify_cosign_signature(
            fixture_evidence(
                "dir-img-cosign-key-rekor-valid",
                f"192.168.64.2:5000/cosign-signed/key-1@{DIGEST_REKOR}",
            ),
            key_trust("cosign.pub", rekor=(pem("rekor.pub"),)),
            now=NOW,
        )


FULCIO_REF = f"192.168.64.2:5000/cosign-signed/fulcio-rekor-1@{DIGEST_REKOR}"


def test_fulcio_signature_verifies_at_the_rekor_time() -> None:
    result = verify_cosign_signature(
        fixture_evidence("dir-img-cosign-fulcio-rekor-valid", FULCIO_REF), fulcio_trust(), now=NOW
    )
    assert result.signed_time == datetime(2023, 1, 20, 20, 51, 33, tzinfo=UTC)
    assert result.signature.subject == "mitr@redhat.com"
    assert result.signature.issuer == GITHUB_OAUTH
    assert result.signature.key_id is None
    assert result.digest == DIGEST_REKOR


def test_key_and_fulcio_signatures_hold_at_any_later_now() -> None:
    """Checked at the fixed signing time (Fulcio) or not against time at all (a key): no
    upper bound depends on now."""
    for evidence, trust in (
        (fixture_evidence("dir-img-cosign-fulcio-rekor-valid", FULCIO_REF), fulcio_trust()),
        (
            fixture_evidence("dir-img-cosign-valid", f"{SINGLE_SAMPLE}@{DIGEST_VALID}"),
            key_trust("cosign.pub"),
        ),
    ):
        with collect_validity() as validity:
            verify_cosign_signature(evidence, trust, now=NOW)
        assert validity.until is None


@pytest.mark.parametrize(
    ("email", "issuer"),
    [("this-does-not-match@example.com", GITHUB_OAUTH), ("mitr@redhat.com", "https://example.com")],
)
def test_fulcio_signature_with_another_identity_is_rejected(email: str, issuer: str) -> None:
    with expect("evidence.identity_mismatch", CERT_FIELD):
        verify_cosign_signature(
            fixture_evidence("dir-img-cosign-fulcio-rekor-valid", FULCIO_REF),
            fulcio_trust(email, issuer),
            now=NOW,
        )


# --- reference rules ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "digest"),
    [
        (f"{SINGLE_SAMPLE}@{DIGEST_VALID}", DIGEST_VALID),
        (f"{SINGLE_SAMPLE}:anytag@{DIGEST_VALID}", DIGEST_VALID),  # cosign signs no tag
        (f"{SINGLE_SAMPLE}:latest", None),
        (SINGLE_SAMPLE, None),
        (DIGEST_VALID, DIGEST_VALID),  # a bare digest names no repository
    ],
)
def test_reference_forms(reference: str, digest: str | None) -> None:
    result = verify_cosign_signature(
        fixture_evidence("dir-img-cosign-valid", reference), key_trust("cosign.pub"), now=NOW
    )
    assert result.digest == digest
    assert result.reference == reference


@pytest.mark.parametrize(
    "reference",
    [
        f"192.168.64.2:5000/other@{DIGEST_VALID}",
        f"192.168.64.2:5001/cosign-signed-single-sample@{DIGEST_VALID}",
        f"docker.io/library/cosign-signed-single-sample@{DIGEST_VALID}",
    ],
)
def test_signature_for_another_repository_is_rejected(reference: str) -> None:
    with expect("evidence.identity_mismatch", REF_FIELD):
        verify_cosign_signature(
            fixture_evidence("dir-img-cosign-valid", reference), key_trust("cosign.pub"), now=NOW
        )


def test_signature_for_another_tag_is_rejected() -> None:
    with expect("evidence.identity_mismatch", REF_FIELD):
        verify_cosign_signature(
            fixture_evidence("dir-img-cosign-valid-with-tag", "192.168.64.2:5000/skopeo-signed:v2"),
            key_trust("cosign.pub"),
            now=NOW,
        )


def test_reference_digest_must_be_the_manifest_digest() -> None:
    with expect("evidence.digest_mismatch", "manifest"):
        verify_cosign_signature(
            fixture_evidence("dir-img-cosign-valid", f"{SINGLE_SAMPLE}@{DIGEST_REKOR}"),
            key_trust("cosign.pub"),
            now=NOW,
        )


@pytest.mark.parametrize(
    ("reference", "code"),
    [
        ("", "evidence.malformed"),
        ("registry.example.com/UPPER@" + DIGEST_VALID, "evidence.malformed"),
        ("repo@sha256:abc", "evidence.malformed"),
        ("repo:bad tag", "evidence.malformed"),
        ("a" * 64, "evidence.malformed"),
        (f"repo@sha512:{'a' * 128}", "evidence.unsupported"),
    ],
)
def test_bad_references(reference: str, code: str) -> None:
    ev = fixture_evidence("dir-img-cosign-valid", SINGLE_SAMPLE).model_copy(
        update={"reference": reference}
    )
    with expect(code, "reference"):
        verify_cosign_signature(ev, key_trust("cosign.pub"), now=NOW)


# --- synthetic signatures (keys made here) -----------------------------------------


def make_payload(digest: str, reference: str, **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    body.update(extra)
    return json.dumps(body).encode()


def sign(key: Any, payload: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(payload, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
    signature: bytes = key.sign(payload)
    return signature


def synthetic(
    key: Any,
    *,
    manifest: bytes = b'{"schemaVersion":2}',
    reference: str | None = None,
    signed_reference: str = "registry.example.com/team/app",
    payload: bytes | None = None,
    annotations: dict[str, str] | None = None,
    signature: bytes | None = None,
) -> CosignEvidence:
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    payload = payload if payload is not None else make_payload(digest, signed_reference)
    signature = signature if signature is not None else sign(key, payload)
    return CosignEvidence.parse(
        {
            "reference": reference or f"registry.example.com/team/app@{digest}",
            "manifest": base64.b64encode(manifest).decode(),
            "signature": {
                "mimeType": "application/vnd.dev.cosign.simplesigning.v1+json",
                "payload": base64.b64encode(payload).decode(),
                "annotations": {
                    SIGNATURE_ANNOTATION: base64.b64encode(signature).decode(),
                    **(annotations or {}),
                },
            },
        }
    )


@pytest.mark.parametrize(
    "key",
    [
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP384R1()),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ed25519.Ed25519PrivateKey.generate(),
    ],
    ids=["p256", "p384", "rsa2048", "ed25519"],
)
def test_generated_keys_verify_and_tampering_fails(key: Any) -> None:
    trust = CosignTrust(public_keys=(public_key_pem(key),))
    ev = synthetic(key)
    assert verify_cosign_signature(ev, trust, now=NOW).signature.verified
    data = ev.model_dump(by_alias=True)
    payload = base64.b64decode(data["signature"]["payload"]).replace(b"team/app", b"team/ap2")
    data["signature"]["payload"] = base64.b64encode(payload).decode()
    with expect("evidence.signature_invalid", SIG_FIELD):
        verify_cosign_signature(CosignEvidence.parse(data), trust, now=NOW)


def test_docker_hub_names_are_normalized() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    trust = CosignTrust(public_keys=(public_key_pem(key),))
    manifest = b'{"schemaVersion":2,"x":1}'
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    for signed, reference in [
        ("busybox", f"docker.io/library/busybox@{digest}"),
        ("docker.io/library/busybox:1.36", f"busybox:1.36@{digest}"),
        ("index.docker.io/org/app", f"org/app@{digest}"),
    ]:
        ev = synthetic(key, manifest=manifest, reference=reference, signed_reference=signed)
        assert verify_cosign_signature(ev, trust, now=NOW).digest == digest
    ev = synthetic(key, manifest=manifest, reference=f"busybox@{digest}", signed_reference="org/x")
    with expect("evidence.identity_mismatch", REF_FIELD):
        verify_cosign_signature(ev, trust, now=NOW)


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        (b"not json", "evidence.malformed", "signature.payload"),
        (b"[]", "evidence.malformed", "signature.payload"),
        (
            make_payload(DIGEST_VALID, "r/app", extra=1),
            "evidence.malformed",
            "signature.payload",
        ),
        (
            json.dumps(
                {
                    "critical": {
                        "identity": {"docker-reference": "r/app"},
                        "image": {"docker-manifest-digest": DIGEST_VALID},
                        "type": "atomic container signature",
                    },
                    "optional": None,
                }
            ).encode(),
            "evidence.unsupported",
            "signature.payload.critical.type",
        ),
        (
            make_payload("sha256:abc", "r/app"),
            "evidence.malformed",
            DIGEST_FIELD,
        ),
        (
            make_payload(DIGEST_VALID, "r/app", optional={"timestamp": 1.5}),
            "evidence.malformed",
            "signature.payload.optional",
        ),
        (
            b'{"critical": {}, "critical": {}, "optional": null}',
            "evidence.malformed",
            "signature.payload",
        ),
    ],
)
def test_signed_but_malformed_payloads(payload: bytes, code: str, field: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with expect(code, field):
        verify_cosign_signature(
            synthetic(key, payload=payload),
            CosignTrust(public_keys=(public_key_pem(key),)),
            now=NOW,
        )


def test_signed_reference_that_does_not_parse_is_an_identity_mismatch() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with expect("evidence.identity_mismatch", REF_FIELD):
        verify_cosign_signature(
            synthetic(key, signed_reference="Not A Reference"),
            CosignTrust(public_keys=(public_key_pem(key),)),
            now=NOW,
        )


def test_missing_signature_annotation_and_bad_base64() -> None:
    ev = fixture_evidence("dir-img-cosign-valid", SINGLE_SAMPLE)
    with expect("evidence.malformed", SIG_FIELD):
        verify_cosign_signature(
            with_annotations(ev, signature=None), key_trust("cosign.pub"), now=NOW
        )
    with expect("evidence.malformed", SIG_FIELD):
        verify_cosign_signature(
            with_annotations(ev, signature="!!not base64!!"), key_trust("cosign.pub"), now=NOW
        )
    data = ev.model_dump(by_alias=True)
    data["manifest"] = data["manifest"].rstrip("=")
    with expect("evidence.malformed", "manifest"):
        verify_cosign_signature(CosignEvidence.parse(data), key_trust("cosign.pub"), now=NOW)


def test_wrong_mime_type_is_unsupported() -> None:
    data = fixture_evidence("dir-img-cosign-valid", SINGLE_SAMPLE).model_dump(by_alias=True)
    data["signature"]["mimeType"] = "application/vnd.in-toto+json"
    with expect("evidence.unsupported", "signature.mimeType"):
        verify_cosign_signature(CosignEvidence.parse(data), key_trust("cosign.pub"), now=NOW)


# --- Rekor SETs -------------------------------------------------------------------


KEY_REKOR_REF = f"192.168.64.2:5000/cosign-signed/key-1@{DIGEST_REKOR}"


def test_missing_set_is_rejected_when_rekor_is_required() -> None:
    ev = with_annotations(
        fixture_evidence("dir-img-cosign-key-rekor-valid", KEY_REKOR_REF), set=None
    )
    with expect("evidence.malformed", SET_FIELD):
        verify_cosign_signature(ev, key_trust("cosign2.pub", rekor=(pem("rekor.pub"),)), now=NOW)


def test_set_from_an_unknown_log_is_untrusted() -> None:
    with expect("evidence.untrusted", f"{SET_FIELD}.Payload.logID"):
        verify_cosign_signature(
            fixture_evidence("dir-img-cosign-key-rekor-valid", KEY_REKOR_REF),
            key_trust("cosign2.pub", rekor=(pem("cosign.pub"),)),
            now=NOW,
        )


def test_tampered_set_is_rejected() -> None:
    ev = fixture_evidence("dir-img-cosign-key-rekor-valid", KEY_REKOR_REF)
    bundle = json.loads(ev.signature.annotations[SET_ANNOTATION])
    bundle["Payload"]["integratedTime"] += 1
    with expect("evidence.signature_invalid", f"{SET_FIELD}.SignedEntryTimestamp"):
        verify_cosign_signature(
            with_annotations(ev, set=json.dumps(bundle)),
            key_trust("cosign2.pub", rekor=(pem("rekor.pub"),)),
            now=NOW,
        )
    with expect("evidence.malformed", SET_FIELD):
        verify_cosign_signature(
            with_annotations(ev, set="this is not a valid SET"),
            key_trust("cosign2.pub", rekor=(pem("rekor.pub"),)),
            now=NOW,
        )


def test_set_for_another_key_is_rejected() -> None:
    # A valid SET (naming cosign2.pub) moved onto a signature made with cosign.pub.
    rekor_set = fixture_evidence("dir-img-cosign-key-rekor-valid", KEY_REKOR_REF)
    ev = with_annotations(
        fixture_evidence("dir-img-cosign-valid", f"{SINGLE_SAMPLE}@{DIGEST_VALID}"),
        set=rekor_set.signature.annotations[SET_ANNOTATION],
    )
    with expect("evidence.signature_invalid", f"{SET_FIELD}.Payload.body.spec.signature.publicKey"):
        verify_cosign_signature(
            ev, key_trust("cosign.pub", "cosign2.pub", rekor=(pem("rekor.pub"),)), now=NOW
        )


def test_set_time_after_now_is_not_yet_valid() -> None:
    with expect("evidence.expired", f"{SET_FIELD}.Payload.integratedTime"):
        verify_cosign_signature(
            fixture_evidence("dir-img-cosign-key-rekor-valid", KEY_REKOR_REF),
            key_trust("cosign2.pub", rekor=(pem("rekor.pub"),)),
            now=datetime(2023, 1, 20, 21, 0, tzinfo=UTC),
        )


# --- Fulcio certificates ------------------------------------------------------------


def test_fulcio_without_chain_annotation_does_not_build() -> None:
    ev = with_annotations(
        fixture_evidence("dir-img-cosign-fulcio-rekor-valid", FULCIO_REF), chain=None
    )
    with expect("evidence.untrusted", CERT_FIELD):
        verify_cosign_signature(ev, fulcio_trust(), now=NOW)


def test_fulcio_intermediate_trusted_directly_needs_no_chain() -> None:
    ev = fixture_evidence("dir-img-cosign-fulcio-rekor-valid", FULCIO_REF)
    trust = CosignTrust(
        fulcio=CosignFulcioTrust(
            ca_certificates=ev.signature.annotations[CHAIN_ANNOTATION],
            identities=(SigstoreIdentity(subject="mitr@redhat.com", issuer=GITHUB_OAUTH),),
        ),
        rekor_public_keys=(pem("rekor.pub"),),
    )
    result = verify_cosign_signature(with_annotations(ev, chain=None), trust, now=NOW)
    assert result.signature.subject == "mitr@redhat.com"


def test_fulcio_certificate_problems() -> None:
    ev = fixture_evidence("dir-img-cosign-fulcio-rekor-valid", FULCIO_REF)
    with expect("evidence.malformed", CERT_FIELD):
        verify_cosign_signature(with_annotations(ev, certificate=None), fulcio_trust(), now=NOW)
    with expect("evidence.malformed", CERT_FIELD):
        verify_cosign_signature(
            with_annotations(ev, certificate="this is not a valid certificate"),
            fulcio_trust(),
            now=NOW,
        )
    with expect("evidence.malformed", SET_FIELD):
        verify_cosign_signature(with_annotations(ev, set=None), fulcio_trust(), now=NOW)


@dataclass
class Pki:
    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    inter_key: ec.EllipticCurvePrivateKey
    inter: x509.Certificate


def make_ca(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    *,
    usage: x509.KeyUsage | None = CA_USAGE,
    eku: Sequence[x509.ObjectIdentifier] | None = None,
) -> x509.Certificate:
    """A CA certificate (self-signed without ``issuer``), with key usage ``usage`` (or none)
    and, when given, a non-critical extended key usage ``eku``."""
    start = datetime(2020, 1, 1, tzinfo=UTC)
    extensions = [] if eku is None else [(x509.ExtendedKeyUsage(eku), False)]
    return issue(
        cn,
        key.public_key(),
        issuer[1] if issuer else key,
        issuer=issuer[0].subject if issuer else None,
        start=start,
        end=start + timedelta(days=3650),
        ca=True,
        usage=usage,
        ski=True,
        aki=True,
        extensions=extensions,
    )


def make_leaf(
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    *,
    start: datetime,
    lifetime: timedelta,
    sans: list[x509.GeneralName],
    eku: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.CODE_SIGNING,),
    usage: x509.KeyUsage | None = SIGNING_USAGE,
    oidc_issuer: str | None = None,
) -> x509.Certificate:
    """A signing certificate: key usage ``usage`` and EKU ``eku`` (``None``: without it)."""
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.SubjectAlternativeName(sans), True),
    ]
    if eku is not None:
        extensions.insert(0, (x509.ExtendedKeyUsage(eku), False))
    if oidc_issuer is not None:
        oidc = x509.UnrecognizedExtension(OIDC_ISSUER_OID, oidc_issuer.encode())
        extensions.append((oidc, False))
    return issue(
        x509.Name([]),
        key.public_key(),
        issuer_key,
        issuer=issuer.subject,
        start=start,
        end=start + lifetime,
        usage=usage,
        aki=True,
        extensions=extensions,
    )


@functools.cache
def pki() -> Pki:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = make_ca("Test Root", root_key)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = make_ca("Test Intermediate", inter_key, (root, root_key))
    return Pki(root_key, root, inter_key, inter)


def make_set(
    rekor_key: ec.EllipticCurvePrivateKey,
    *,
    cert: x509.Certificate,
    payload: bytes,
    sig: bytes,
    when: int,
) -> str:
    entry = {
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
            "signature": {
                "content": base64.b64encode(sig).decode(),
                "publicKey": {"content": base64.b64encode(cert_pem(cert).encode()).decode()},
            },
        },
    }
    spki = rekor_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    body = {
        "body": base64.b64encode(json.dumps(entry).encode()).decode(),
        "integratedTime": when,
        "logID": hashlib.sha256(spki).hexdigest(),
        "logIndex": 1,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    stamp = rekor_key.sign(canonical, ec.ECDSA(hashes.SHA256()))
    return json.dumps({"SignedEntryTimestamp": base64.b64encode(stamp).decode(), "Payload": body})


FULCIO_START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
FULCIO_ISSUER = "https://issuer.example.com"


def fulcio_signature(
    root: x509.Certificate,
    inter: x509.Certificate,
    inter_key: ec.EllipticCurvePrivateKey,
    leaf_key: ec.EllipticCurvePrivateKey,
    *,
    signed_at: datetime = FULCIO_START + timedelta(minutes=5),
    **leaf_changes: Any,
) -> tuple[CosignEvidence, CosignTrust]:
    """A keyless signature: a 10-minute Fulcio-like certificate (dev@example.com, valid from
    FULCIO_START) issued by ``inter``, a Rekor SET at ``signed_at``, and the trust in ``root``.
    ``leaf_changes`` go to :func:`make_leaf` (``eku``, ``usage``)."""
    rekor_key = ec_key("rekor")
    leaf = make_leaf(
        inter,
        inter_key,
        leaf_key,
        start=FULCIO_START,
        lifetime=timedelta(minutes=10),
        sans=[x509.RFC822Name("dev@example.com")],
        oidc_issuer=FULCIO_ISSUER,
        **leaf_changes,
    )
    manifest = b'{"schemaVersion":2,"fulcio":true}'
    payload = make_payload(
        "sha256:" + hashlib.sha256(manifest).hexdigest(), "registry.example.com/team/app"
    )
    sig = sign(leaf_key, payload)
    rekor_set = make_set(
        rekor_key, cert=leaf, payload=payload, sig=sig, when=int(signed_at.timestamp())
    )
    evidence = synthetic(
        leaf_key,
        manifest=manifest,
        payload=payload,
        signature=sig,
        annotations={
            CERTIFICATE_ANNOTATION: cert_pem(leaf),
            CHAIN_ANNOTATION: cert_pem(inter, root),
            SET_ANNOTATION: rekor_set,
        },
    )
    trust = CosignTrust(
        fulcio=CosignFulcioTrust(
            ca_certificates=cert_pem(root),
            identities=(SigstoreIdentity(subject="dev@example.com", issuer=FULCIO_ISSUER),),
        ),
        rekor_public_keys=(public_key_pem(rekor_key),),
    )
    return evidence, trust


def test_synthetic_fulcio_certificate_outside_validity_at_set_time_is_expired() -> None:
    ca = pki()
    key = ec_key("fulcio leaf")
    signed_at = FULCIO_START + timedelta(minutes=5)
    ev, trust = fulcio_signature(ca.root, ca.inter, ca.inter_key, key, signed_at=signed_at)
    ok = verify_cosign_signature(ev, trust, now=NOW)
    assert ok.signature.subject == "dev@example.com"
    assert ok.signed_time == signed_at
    late = FULCIO_START + timedelta(minutes=11)
    ev, trust = fulcio_signature(ca.root, ca.inter, ca.inter_key, key, signed_at=late)
    with expect("evidence.expired", CERT_FIELD):
        verify_cosign_signature(ev, trust, now=NOW)


# --- private PKI ------------------------------------------------------------------


def pki_evidence(leaf_key: ec.EllipticCurvePrivateKey, leaf: x509.Certificate) -> CosignEvidence:
    ca = pki()
    return synthetic(
        leaf_key,
        annotations={
            CERTIFICATE_ANNOTATION: cert_pem(leaf),
            CHAIN_ANNOTATION: cert_pem(ca.inter),
        },
    )


def pki_trust(email: str | None = "signer@example.com", host: str | None = None) -> CosignTrust:
    return CosignTrust(
        pki=CosignPkiTrust(
            ca_roots=cert_pem(pki().root), subject_email=email, subject_hostname=host
        )
    )


def pki_leaf(**kwargs: Any) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    ca = pki()
    key = ec.generate_private_key(ec.SECP256R1())
    options: dict[str, Any] = {
        "start": datetime(2026, 1, 1, tzinfo=UTC),
        "lifetime": timedelta(days=365),
        "sans": [x509.RFC822Name("signer@example.com"), x509.DNSName("build.example.com")],
    }
    options.update(kwargs)
    return key, make_leaf(ca.inter, ca.inter_key, key, **options)


def test_pki_signature_verifies_at_now() -> None:
    key, leaf = pki_leaf()
    result = verify_cosign_signature(pki_evidence(key, leaf), pki_trust(), now=NOW)
    assert result.signature.subject == "signer@example.com"
    assert result.signature.issuer == "CN=Test Intermediate"
    both = pki_trust("signer@example.com", "BUILD.example.com")
    assert verify_cosign_signature(pki_evidence(key, leaf), both, now=NOW).signature.verified


def test_pki_signature_holds_until_the_leaf_expires() -> None:
    key, leaf = pki_leaf()
    assert_valid_until(
        lambda now: verify_cosign_signature(pki_evidence(key, leaf), pki_trust(), now=now),
        NOW,
        leaf.not_valid_after_utc,
    )


def test_pki_certificate_expired_at_now() -> None:
    key, leaf = pki_leaf()
    with expect("evidence.expired", CERT_FIELD):
        verify_cosign_signature(
            pki_evidence(key, leaf), pki_trust(), now=datetime(2027, 6, 1, tzinfo=UTC)
        )


def test_pki_identity_mismatch() -> None:
    key, leaf = pki_leaf()
    with expect("evidence.identity_mismatch", CERT_FIELD):
        verify_cosign_signature(pki_evidence(key, leaf), pki_trust("other@example.com"), now=NOW)
    with expect("evidence.identity_mismatch", CERT_FIELD):
        verify_cosign_signature(
            pki_evidence(key, leaf), pki_trust(None, "other.example.com"), now=NOW
        )


def test_pki_untrusted_root_and_missing_code_signing() -> None:
    key, leaf = pki_leaf()
    other_root_key = ec.generate_private_key(ec.SECP256R1())
    other = CosignTrust(
        pki=CosignPkiTrust(
            ca_roots=cert_pem(make_ca("Other Root", other_root_key)),
            subject_email="signer@example.com",
        )
    )
    with expect("evidence.untrusted", CERT_FIELD):
        verify_cosign_signature(pki_evidence(key, leaf), other, now=NOW)
    key, server_leaf = pki_leaf(eku=(ExtendedKeyUsageOID.SERVER_AUTH,))
    with expect("evidence.untrusted", CERT_FIELD):
        verify_cosign_signature(pki_evidence(key, server_leaf), pki_trust(), now=NOW)


def test_pki_signature_by_another_key_is_rejected() -> None:
    _, leaf = pki_leaf()
    other_key = ec.generate_private_key(ec.SECP256R1())
    with expect("evidence.signature_invalid", SIG_FIELD):
        verify_cosign_signature(pki_evidence(other_key, leaf), pki_trust(), now=NOW)


# --- containers/image's private PKI (issue 9 finding 11) ----------------------------------
# containers/image's own PKI signature fails three format rules of the WebPKI/Sigstore profile
# that are no security property of the signature: its signature annotation is base64 wrapped
# at 76 columns, its root has no key usage, its leaf no EKU. The vectors generated below have
# the same shape; only the private-PKI mode accepts it, never the Fulcio mode.

PKI_DIGEST = "sha256:253c890b744fe3efa923b68e3a1be07bd007eb44ba29da1e7deb1d4c53b3e212"
PKI_REF = f"localhost:5000/test@{PKI_DIGEST}"
LINUXERA_INTERMEDIATE = (
    "CN=Linuxera Intermediate Certificate Authority,OU=Security,O=IT,L=Valencia,C=ES"
)
CODE_SIGNING, SERVER_AUTH, ANY_EKU = (
    ExtendedKeyUsageOID.CODE_SIGNING,
    ExtendedKeyUsageOID.SERVER_AUTH,
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
)


@functools.cache
def containers_image_pki_trust(*, intermediates: bool = True) -> CosignTrust:
    return CosignTrust(
        pki=CosignPkiTrust(
            ca_roots=pem("pki_root_crts.pem"),
            ca_intermediates=pem("pki_intermediate_crts.pem") if intermediates else None,
            subject_email="qiwan@redhat.com",
            subject_hostname="myhost.example.com",
        )
    )


def go_wrapped(data: bytes, eol: str = "\n") -> str:
    """Base64 wrapped at 76 columns, each line ended by ``eol`` (as in the fixture)."""
    text = base64.b64encode(data).decode()
    return "".join(text[i : i + 76] + eol for i in range(0, len(text), 76))


@pytest.mark.parametrize("intermediates", [True, False], ids=["configured", "from-chain"])
def test_containers_image_pki_signature_verifies(intermediates: bool) -> None:
    ev = fixture_evidence("dir-img-cosign-pki-valid", PKI_REF)
    assert "\n" in ev.signature.annotations[SIGNATURE_ANNOTATION]  # wrapped base64
    root = x509.load_pem_x509_certificate(pem("pki_root_crts.pem").encode())
    leaf = x509.load_pem_x509_certificate(ev.signature.annotations[CERTIFICATE_ANNOTATION].encode())
    with pytest.raises(x509.ExtensionNotFound):
        root.extensions.get_extension_for_class(x509.KeyUsage)
    with pytest.raises(x509.ExtensionNotFound):
        leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    result = verify_cosign_signature(
        ev, containers_image_pki_trust(intermediates=intermediates), now=NOW
    )
    assert result.digest == result.signed_digest == PKI_DIGEST
    assert result.signed_reference == "localhost:5000/test"
    assert result.signature == ImageSignature(
        verified=True, issuer=LINUXERA_INTERMEDIATE, subject="qiwan@redhat.com"
    )


def _tampered_payload(data: dict[str, Any]) -> None:
    payload = base64.b64decode(data["signature"]["payload"])
    data["signature"]["payload"] = base64.b64encode(payload.replace(b"/test", b"/evil")).decode()


def _tampered_signature(data: dict[str, Any]) -> None:
    annotations = data["signature"]["annotations"]
    text = annotations[SIGNATURE_ANNOTATION]
    middle = len(text) // 2
    swapped = "A" if text[middle] != "A" else "B"
    annotations[SIGNATURE_ANNOTATION] = text[:middle] + swapped + text[middle + 1 :]


@pytest.mark.parametrize("tamper", [_tampered_payload, _tampered_signature])
def test_tampered_containers_image_pki_signature_fails_the_signature_check(
    tamper: Callable[[dict[str, Any]], None],
) -> None:
    data = fixture_evidence("dir-img-cosign-pki-valid", PKI_REF).model_dump(by_alias=True)
    tamper(data)
    with expect("evidence.signature_invalid", SIG_FIELD):
        verify_cosign_signature(CosignEvidence.parse(data), containers_image_pki_trust(), now=NOW)


CERT_SIGN_USAGE = key_usage(key_cert_sign=True)
"""The key usage of containers/image's intermediate: keyCertSign alone."""


@dataclass(frozen=True)
class PkiShape:
    """The extensions of a generated root -> intermediate -> leaf private PKI; the defaults
    are those of containers/image's fixture (no root key usage, no leaf EKU)."""

    root_usage: x509.KeyUsage | None = None
    root_eku: tuple[x509.ObjectIdentifier, ...] | None = None
    inter_usage: x509.KeyUsage | None = CERT_SIGN_USAGE
    inter_eku: tuple[x509.ObjectIdentifier, ...] | None = None
    leaf_usage: x509.KeyUsage | None = SIGNING_USAGE
    leaf_eku: tuple[x509.ObjectIdentifier, ...] | None = None


def shaped_pki(shape: PkiShape, *, tamper: bool = False) -> tuple[CosignEvidence, CosignTrust]:
    """A signature made under a private PKI of ``shape``, its signature annotation wrapped at
    76 columns, with the chain annotation (intermediate, root) as cosign writes it."""
    root_key, inter_key, leaf_key = ec_key("pki root"), ec_key("pki inter"), ec_key("pki leaf")
    root = make_ca("Shaped Root", root_key, usage=shape.root_usage, eku=shape.root_eku)
    inter = make_ca(
        "Shaped Intermediate",
        inter_key,
        (root, root_key),
        usage=shape.inter_usage,
        eku=shape.inter_eku,
    )
    leaf = make_leaf(
        inter,
        inter_key,
        leaf_key,
        start=datetime(2026, 1, 1, tzinfo=UTC),
        lifetime=timedelta(days=365),
        sans=[x509.RFC822Name("signer@example.com"), x509.DNSName("build.example.com")],
        eku=shape.leaf_eku,
        usage=shape.leaf_usage,
    )
    manifest = b'{"schemaVersion":2,"shaped":true}'
    payload = make_payload(
        "sha256:" + hashlib.sha256(manifest).hexdigest(), "registry.example.com/team/app"
    )
    signature = sign(leaf_key, payload)
    if tamper:
        payload = payload.replace(b"team/app", b"team/ap2")
    ev = synthetic(
        leaf_key,
        manifest=manifest,
        payload=payload,
        annotations={
            SIGNATURE_ANNOTATION: go_wrapped(signature),
            CERTIFICATE_ANNOTATION: cert_pem(leaf),
            CHAIN_ANNOTATION: cert_pem(inter, root),
        },
    )
    trust = CosignTrust(
        pki=CosignPkiTrust(
            ca_roots=cert_pem(root),
            subject_email="signer@example.com",
            subject_hostname="build.example.com",
        )
    )
    return ev, trust


PKI_ACCEPTED = {
    "containers/image's shape": PkiShape(),
    "leaf without key usage": PkiShape(leaf_usage=None),
    "leaf EKU codeSigning": PkiShape(leaf_eku=(CODE_SIGNING,)),
    "leaf EKU anyExtendedKeyUsage": PkiShape(leaf_eku=(ANY_EKU,)),
    "intermediate without key usage": PkiShape(inter_usage=None),
    "root with CA key usage": PkiShape(root_usage=CA_USAGE),
    "intermediate EKU serverAuth and codeSigning": PkiShape(inter_eku=(SERVER_AUTH, CODE_SIGNING)),
}


@pytest.mark.parametrize("shape", PKI_ACCEPTED.values(), ids=PKI_ACCEPTED.keys())
def test_private_pki_accepts_what_containers_image_accepts(shape: PkiShape) -> None:
    ev, trust = shaped_pki(shape)
    result = verify_cosign_signature(ev, trust, now=NOW)
    assert result.signature.subject == "signer@example.com"
    assert result.signature.issuer == "CN=Shaped Intermediate"


def test_tampered_shaped_pki_signature_fails_the_signature_check() -> None:
    ev, trust = shaped_pki(PkiShape(), tamper=True)
    with expect("evidence.signature_invalid", SIG_FIELD):
        verify_cosign_signature(ev, trust, now=NOW)


PKI_REJECTED = {
    "leaf EKU without codeSigning": PkiShape(leaf_eku=(SERVER_AUTH,)),
    "intermediate EKU without codeSigning": PkiShape(inter_eku=(SERVER_AUTH,)),
    "root EKU without codeSigning": PkiShape(root_eku=(SERVER_AUTH,)),
    "leaf key usage without digitalSignature": PkiShape(
        leaf_usage=key_usage(key_encipherment=True)
    ),
    "intermediate key usage without keyCertSign": PkiShape(inter_usage=key_usage(crl_sign=True)),
    "root key usage without keyCertSign": PkiShape(root_usage=SIGNING_USAGE),
}


@pytest.mark.parametrize("shape", PKI_REJECTED.values(), ids=PKI_REJECTED.keys())
def test_private_pki_rejects_a_usage_that_excludes_code_signing(shape: PkiShape) -> None:
    ev, trust = shaped_pki(shape)
    with expect("evidence.untrusted", CERT_FIELD):
        verify_cosign_signature(ev, trust, now=NOW)


FULCIO_NOT_RELAXED = {
    "root without key usage": ({"usage": None}, {}),
    "leaf without EKU": ({}, {"eku": None}),
    "leaf without key usage": ({}, {"usage": None}),
}


@pytest.mark.parametrize(
    ("root_changes", "leaf_changes"), FULCIO_NOT_RELAXED.values(), ids=FULCIO_NOT_RELAXED.keys()
)
def test_fulcio_mode_keeps_the_sigstore_profile(
    root_changes: dict[str, Any], leaf_changes: dict[str, Any]
) -> None:
    # The private-PKI relaxations never reach keyless signatures (the same material with the
    # profile's extensions verifies: test_synthetic_fulcio_certificate_outside_validity_...).
    root_key, inter_key = ec_key("fulcio root"), ec_key("fulcio inter")
    root = make_ca("Fulcio Root", root_key, **root_changes)
    inter = make_ca("Fulcio Intermediate", inter_key, (root, root_key))
    ev, trust = fulcio_signature(root, inter, inter_key, ec_key("fulcio leaf"), **leaf_changes)
    with expect("evidence.untrusted", CERT_FIELD):
        verify_cosign_signature(ev, trust, now=NOW)


# --- base64 as Go's StdEncoding reads it --------------------------------------------------


@pytest.mark.parametrize("eol", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_wrapped_base64_payload_and_signature_verify(eol: str) -> None:
    key = ec_key("wrapped")
    ev = synthetic(key)
    data = ev.model_dump(by_alias=True)
    payload = base64.b64decode(data["signature"]["payload"])
    signature = base64.b64decode(data["signature"]["annotations"][SIGNATURE_ANNOTATION])
    data["signature"]["payload"] = go_wrapped(payload, eol)
    data["signature"]["annotations"][SIGNATURE_ANNOTATION] = go_wrapped(signature, eol)
    trust = CosignTrust(public_keys=(public_key_pem(key),))
    assert verify_cosign_signature(CosignEvidence.parse(data), trust, now=NOW).signature.verified


@cache
def ed25519_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.mark.parametrize(
    "change",
    [
        lambda text: text[:20] + " " + text[20:],  # Go skips only \r and \n
        lambda text: text[:20] + "\t" + text[20:],
        lambda text: text.rstrip("="),  # padding stays required
        lambda text: text[:-3] + chr(ord(text[-3]) + 1) + "==",  # non-zero spare bits
    ],
    ids=["space", "tab", "unpadded", "non-canonical"],
)
def test_base64_beyond_line_breaks_is_malformed(change: Callable[[str], str]) -> None:
    key = ed25519_key()  # 64-byte signatures: base64 ending in "=="
    data = synthetic(key).model_dump(by_alias=True)
    annotations = data["signature"]["annotations"]
    assert annotations[SIGNATURE_ANNOTATION].endswith("==")
    annotations[SIGNATURE_ANNOTATION] = change(annotations[SIGNATURE_ANNOTATION])
    with expect("evidence.malformed", SIG_FIELD):
        verify_cosign_signature(
            CosignEvidence.parse(data), CosignTrust(public_keys=(public_key_pem(key),)), now=NOW
        )


def test_wrapped_rekor_set_verifies() -> None:
    ev = fixture_evidence("dir-img-cosign-key-rekor-valid", KEY_REKOR_REF)
    bundle = json.loads(ev.signature.annotations[SET_ANNOTATION])
    stamp = base64.b64decode(bundle["SignedEntryTimestamp"])
    bundle["SignedEntryTimestamp"] = go_wrapped(stamp)
    signature = base64.b64decode(ev.signature.annotations[SIGNATURE_ANNOTATION])
    wrapped = with_annotations(ev, set=json.dumps(bundle), signature=go_wrapped(signature))
    trust = key_trust("cosign2.pub", rekor=(pem("rekor.pub"),))
    assert verify_cosign_signature(wrapped, trust, now=NOW).signed_time is not None


# --- trust configuration and the signature file format -------------------------------


def test_trust_configuration_is_validated_when_built() -> None:
    fulcio = CosignFulcioTrust(
        ca_certificates=pem("fulcio_v1.crt.pem"),
        identities=(SigstoreIdentity(subject="a@b.c", issuer=GITHUB_OAUTH),),
    )
    small_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - too small on purpose
    configurations: list[dict[str, Any]] = [
        {},
        {
            "public_keys": (pem("cosign.pub"),),
            "fulcio": fulcio,
            "rekor_public_keys": (pem("rekor.pub"),),
        },
        {"fulcio": fulcio},
        {"public_keys": ("not a key",)},
        {"public_keys": (public_key_pem(small_rsa),)},
        {
            "public_keys": (pem("cosign.pub"),),
            "rekor_public_keys": (public_key_pem(ed25519.Ed25519PrivateKey.generate()),),
        },
        {"pki": CosignPkiTrust(ca_roots=pem("fulcio_v1.crt.pem"))},
        {"pki": CosignPkiTrust(ca_roots="garbage", subject_email="a@b.c")},
    ]
    for kwargs in configurations:
        with pytest.raises(ValidationError):
            CosignTrust(**kwargs)


def test_signature_file_formats() -> None:
    blob = (ASSETS / "dir-img-cosign-valid" / "signature-1").read_bytes()
    assert (
        parse_signature_file(blob).mime_type == "application/vnd.dev.cosign.simplesigning.v1+json"
    )
    with expect("evidence.unsupported", "signature"):
        parse_signature_file(b"\xa3\x01\x02 openpgp")
    with expect("evidence.unsupported", "signature"):
        parse_signature_file(b"\x00simple-signing\n" + blob)
    with expect("evidence.malformed", "signature"):
        parse_signature_file(blob[:40])
    with expect("evidence.malformed", "signature"):
        parse_signature_file(b"\x00sigstore-json\n[1, 2]")
    with expect("evidence.malformed", "signature.annotations"):
        parse_signature_file(b'\x00sigstore-json\n{"mimeType":"x","payload":"","annotations":[]}')
    with expect("evidence.malformed", "signature.extra"):
        parse_signature_file(b'\x00sigstore-json\n{"mimeType":"x","payload":"","extra":1}')


def test_evidence_parse_reports_malformed_not_pydantic_errors() -> None:
    data = fixture_evidence("dir-img-cosign-valid", SINGLE_SAMPLE).model_dump(by_alias=True)
    with expect("evidence.malformed", "manifest"):
        CosignEvidence.parse({**data, "manifest": 12})
    with expect("evidence.malformed", "signature.mimeType"):
        CosignEvidence.parse({**data, "signature": {**data["signature"], "mimeType": None}})
    with expect("evidence.malformed", "(evidence)"):
        CosignEvidence.parse("text")  # type: ignore[arg-type]
    with expect("evidence.malformed", "manifest"):
        CosignEvidence.parse({**data, "manifest": "A" * (6 * 1024 * 1024 + 4)})


def test_now_must_be_aware() -> None:
    with pytest.raises(TypeError):
        verify_cosign_signature(
            fixture_evidence("dir-img-cosign-valid", SINGLE_SAMPLE),
            key_trust("cosign.pub"),
            now=datetime(2026, 1, 1),  # deliberately naive
        )


# --- property tests ------------------------------------------------------------------

FIXTURES = {
    "dir-img-cosign-valid": (f"{SINGLE_SAMPLE}@{DIGEST_VALID}", ("cosign.pub",), False),
    "dir-img-cosign-key-rekor-valid": (KEY_REKOR_REF, ("cosign2.pub",), True),
    "dir-img-cosign-fulcio-rekor-valid": (FULCIO_REF, (), True),
    "dir-img-cosign-pki-valid": (PKI_REF, (), False),
}


def _trust_for(directory: str) -> CosignTrust:
    _, keys, rekor = FIXTURES[directory]
    if not keys:
        return fulcio_trust() if rekor else containers_image_pki_trust()
    return key_trust(*keys, rekor=(pem("rekor.pub"),) if rekor else ())


def _flip(data: bytes, bit: int, truncate: bool) -> bytes:
    if truncate:
        return data[: bit % len(data)]
    mutated = bytearray(data)
    mutated[(bit // 8) % len(data)] ^= 1 << (bit % 8)
    return bytes(mutated)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    directory=st.sampled_from(sorted(FIXTURES)),
    bit=st.integers(min_value=0, max_value=8 * 8192),
    truncate=st.booleans(),
    noise=st.binary(max_size=64),
)
def test_mutated_signature_files_only_give_evidence_errors(
    directory: str, bit: int, truncate: bool, noise: bytes
) -> None:
    blob = (ASSETS / directory / "signature-1").read_bytes()
    manifest = (ASSETS / directory / "manifest.json").read_bytes()
    reference = FIXTURES[directory][0]
    for candidate in (_flip(blob, bit, truncate), noise, b"\x00sigstore-json\n" + noise):
        try:
            ev = CosignEvidence.from_files(
                reference=reference, manifest=manifest, signature_file=candidate
            )
            verify_cosign_signature(ev, _trust_for(directory), now=NOW)
        except EvidenceError:
            continue
        # Only unsigned material (the chain annotation's root, annotation order) may change.
        original = json.loads(blob[blob.index(b"\n") + 1 :])
        mutated = json.loads(candidate[candidate.index(b"\n") + 1 :])
        assert mutated["payload"] == original["payload"]
        for name in (SIGNATURE_ANNOTATION, CERTIFICATE_ANNOTATION, SET_ANNOTATION):
            assert mutated["annotations"].get(name) == original["annotations"].get(name)


SIGNED_PARTS = ["payload", "signature", "manifest", "certificate", "set"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    directory=st.sampled_from(sorted(FIXTURES)),
    part=st.sampled_from(SIGNED_PARTS),
    bit=st.integers(min_value=0, max_value=8 * 4096),
    truncate=st.booleans(),
)
def test_mutated_signed_bytes_never_verify(
    directory: str, part: str, bit: int, truncate: bool
) -> None:
    ev = fixture_evidence(directory, FIXTURES[directory][0])
    data = ev.model_dump(by_alias=True)
    annotations = data["signature"]["annotations"]
    if part == "payload":
        raw = base64.b64decode(data["signature"]["payload"])
        mutated = _flip(raw, bit, truncate)
        data["signature"]["payload"] = base64.b64encode(mutated).decode()
    elif part == "signature":
        raw = base64.b64decode(annotations[SIGNATURE_ANNOTATION])
        mutated = _flip(raw, bit, truncate)
        annotations[SIGNATURE_ANNOTATION] = base64.b64encode(mutated).decode()
    elif part == "manifest":
        raw = base64.b64decode(data["manifest"])
        mutated = _flip(raw, bit, truncate)
        data["manifest"] = base64.b64encode(mutated).decode()
    elif part == "certificate":
        assume(CERTIFICATE_ANNOTATION in annotations)
        raw = x509.load_pem_x509_certificate(
            annotations[CERTIFICATE_ANNOTATION].encode()
        ).public_bytes(serialization.Encoding.DER)
        mutated = _flip(raw, bit, truncate)
        body = base64.encodebytes(mutated).decode()
        annotations[CERTIFICATE_ANNOTATION] = (
            f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n"
        )
    else:
        assume(SET_ANNOTATION in annotations)
        raw = annotations[SET_ANNOTATION].encode()
        mutated = _flip(raw, bit, truncate)
        try:
            annotations[SET_ANNOTATION] = mutated.decode()
        except UnicodeDecodeError:
            assume(False)
    assume(mutated != raw)
    with pytest.raises(EvidenceError):
        _parse_and_verify(data, directory)


def _parse_and_verify(data: dict[str, Any], directory: str) -> None:
    verify_cosign_signature(CosignEvidence.parse(data), _trust_for(directory), now=NOW)


# --- the reference parser ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "tag", "digest"),
    [
        ("busybox", "docker.io/library/busybox", None, None),
        ("index.docker.io/org/app:1.0", "docker.io/org/app", "1.0", None),
        ("localhost/app", "localhost/app", None, None),
        ("localhost:5000/team/app:v1", "localhost:5000/team/app", "v1", None),
        ("localhost:5000", "docker.io/library/localhost", "5000", None),
        ("[::1]:5000/app", "[::1]:5000/app", None, None),
        ("Registry.Example.com/a__b/c-d.e", "Registry.Example.com/a__b/c-d.e", None, None),
        (f"ghcr.io/o/r:t@{DIGEST_VALID}", "ghcr.io/o/r", "t", DIGEST_VALID),
        (DIGEST_VALID, None, None, DIGEST_VALID),
    ],
)
def test_reference_parsing(
    text: str, name: str | None, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert (ref.name, ref.tag, ref.digest) == (name, tag, digest)
    assert parse_reference(str(ref)) == ref


@pytest.mark.parametrize(
    "text",
    [
        "",
        "org/App",
        "app:",
        ":tag",
        "a//b",
        "-a/b",
        "a/b-",
        "ex ample/app",
        "a" * 64,
        "r@sha256:AB",
    ],
)
def test_invalid_references(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse_reference(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300) | st.from_regex(r"[a-z0-9.:/@_-]{1,80}", fullmatch=True))
def test_reference_parser_only_raises_invalid_reference(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReference:
        return
    assert parse_reference(str(ref)) == ref
