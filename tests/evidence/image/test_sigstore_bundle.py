"""Sigstore bundle verification against real bundles and trusted roots (offline)."""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from evidence.helpers import TEST_ASSETS, expect, issue
from evidence.sigstore_bundles import Deployment, statement
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from attestpolicy.claims import Image, ImageSignature
from attestpolicy.errors import EvidenceError
from attestpolicy.evidence._crypto.fulcio import fulcio_extensions
from attestpolicy.evidence._validity import collect_validity
from attestpolicy.evidence.image.sigstore_bundle import (
    COSIGN_SIGN_PREDICATE_TYPE,
    SigstoreBundleEvidence,
    SigstoreIdentity,
    SigstoreTrust,
    verify_sigstore_bundle,
    verify_sigstore_image,
)

ASSETS = TEST_ASSETS / "sigstore"
NOW = datetime(2026, 11, 22, tzinfo=UTC)

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITHUB_OAUTH = "https://github.com/login/oauth"
RFC8785_WORKFLOW = (
    "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2"
)
BEACON_WORKFLOW = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
WILLIAM = ("william@yossarian.net", GITHUB_OAUTH)
OCI_ATTESTATION_DIGEST = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"


def load_bundle(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ASSETS / name).read_text())
    return data


@functools.cache
def trust(root: str, *identities: tuple[str, str]) -> SigstoreTrust:
    return SigstoreTrust(
        trusted_root=json.loads((ASSETS / f"trusted_root.{root}.json").read_text()),
        identities=tuple(SigstoreIdentity(subject=s, issuer=i) for s, i in identities),
    )


def evidence(name: str, **extra: Any) -> SigstoreBundleEvidence:
    return SigstoreBundleEvidence(bundle=load_bundle(name), **extra)


def artifact(name: str) -> bytes:
    return (ASSETS / name).read_bytes()


@pytest.fixture(scope="module")
def staging_william() -> SigstoreTrust:
    return trust("staging", WILLIAM)


# --- EXPECTED.md: Image signatures, Sigstore rows ------------------------------


def test_github_actions_wheel_verifies_with_production_root() -> None:
    whl = artifact("bundle_v3_github.whl")
    result = verify_sigstore_bundle(
        evidence("bundle_v3_github.whl.sigstore"),
        trust("production", (RFC8785_WORKFLOW, GITHUB_ISSUER)),
        now=NOW,
        artifact=whl,
    )
    assert result.kind == "message_signature"
    assert result.subject == RFC8785_WORKFLOW
    assert result.issuer == GITHUB_ISSUER
    assert result.extensions.issuer == GITHUB_ISSUER
    assert result.extensions.source_repository_uri == "https://github.com/trailofbits/rfc8785.py"
    assert result.extensions.source_repository_ref == "refs/tags/v0.1.2"
    assert result.extensions.build_signer_uri == RFC8785_WORKFLOW
    assert result.extensions.runner_environment == "github-hosted"
    assert result.integrated_time == datetime(2024, 3, 19, 22, 41, 16, tzinfo=UTC)
    assert result.signed_time == result.integrated_time
    assert result.artifact_digest == "sha256:" + hashlib.sha256(whl).hexdigest()
    assert result.payload is None
    assert result.payload_type is None
    claim = result.image_signature()
    assert claim.verified
    assert (claim.issuer, claim.subject, claim.key_id) == (GITHUB_ISSUER, RFC8785_WORKFLOW, None)


def test_a_bundle_is_checked_at_its_signing_time_with_no_bound_on_now() -> None:
    with collect_validity() as validity:
        verify_sigstore_bundle(
            evidence("bundle_v3_github.whl.sigstore"),
            trust("production", (RFC8785_WORKFLOW, GITHUB_ISSUER)),
            now=NOW,
            artifact=artifact("bundle_v3_github.whl"),
        )
    assert validity.until is None


def test_github_actions_wheel_verifies_by_digest_alone() -> None:
    digest = "sha256:" + hashlib.sha256(artifact("bundle_v3_github.whl")).hexdigest()
    result = verify_sigstore_bundle(
        evidence("bundle_v3_github.whl.sigstore", artifact_digest=digest),
        trust("production", (RFC8785_WORKFLOW, GITHUB_ISSUER)),
        now=NOW,
    )
    assert result.artifact_digest == digest


@pytest.mark.parametrize(
    ("bundle", "artifact_name", "identity", "rekor_time", "tsa"),
    [
        ("bundle.txt.sigstore", "bundle.txt", ("a@tny.town", GITHUB_OAUTH), True, False),
        ("bundle_v3.txt.sigstore", "bundle_v3.txt", WILLIAM, True, False),
        (
            "staging-rekor-v2.txt.sigstore.json",
            "staging-rekor-v2.txt",
            ("jku@goto.fi", GITHUB_OAUTH),
            False,
            True,
        ),
        # Its RFC 3161 timestamp is from a TSA the staging root does not list: sigstore
        # drops it and the bundle verifies on its Rekor inclusion promise alone.
        (
            "tsa_bundle.txt.sigstore",
            "tsa_bundle.txt",
            ("alexis.challande@trailofbits.com", "https://accounts.google.com"),
            True,
            False,
        ),
    ],
)
def test_staging_message_bundles_verify(
    bundle: str, artifact_name: str, identity: tuple[str, str], rekor_time: bool, tsa: bool
) -> None:
    result = verify_sigstore_bundle(
        evidence(bundle), trust("staging", identity), now=NOW, artifact=artifact(artifact_name)
    )
    assert (result.subject, result.issuer) == identity
    assert result.kind == "message_signature"
    assert (result.integrated_time is not None) is rekor_time
    assert bool(result.timestamp_authority_times) is tsa
    assert result.signed_time <= NOW


def test_bundle_v3_identity_is_william() -> None:
    result = verify_sigstore_bundle(
        evidence("bundle_v3.txt.sigstore"),
        trust("staging", ("mallory@example.com", GITHUB_OAUTH), WILLIAM),
        now=NOW,
        artifact=artifact("bundle_v3.txt"),
    )
    assert result.subject == "william@yossarian.net"
    assert result.integrated_time == datetime(2024, 4, 2, 19, 19, 9, tzinfo=UTC)


def test_staging_dsse_bundle_returns_payload() -> None:
    result = verify_sigstore_bundle(
        evidence("a.dsse.staging-rekor-v2.txt.sigstore.json"),
        trust("staging", (BEACON_WORKFLOW, GITHUB_ISSUER)),
        now=NOW,
    )
    assert result.kind == "dsse"
    assert result.payload_type == "application/vnd.in-toto+json"
    assert result.payload is not None
    statement = json.loads(result.payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert result.artifact_digest is None
    assert result.integrated_time is None  # Rekor v2: the time comes from the TSA
    assert result.timestamp_authority_times == (datetime(2026, 5, 13, 19, 23, 33, tzinfo=UTC),)
    assert result.extensions.source_repository_uri == (
        "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon"
    )


def test_cosign_oci_attestation_verifies_with_production_root() -> None:
    result = verify_sigstore_bundle(
        evidence("cosign_oci-attestation.sigstore.json"),
        trust("production", ("cody@soyland.com", GITHUB_OAUTH)),
        now=NOW,
    )
    assert result.kind == "dsse"
    assert result.payload is not None
    statement = json.loads(result.payload)
    assert statement["predicateType"] == "https://cosign.sigstore.dev/attestation/v1"
    assert result.integrated_time == datetime(2025, 2, 28, 19, 18, 11, tzinfo=UTC)


def _with(bundle: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(bundle)
    node: Any = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return data


def _get(bundle: dict[str, Any], path: tuple[str | int, ...]) -> Any:
    node: Any = bundle
    for part in path:
        node = node[part]
    return node


def _flip_b64(text: str, bit: int) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[(bit // 8) % len(raw)] ^= 1 << (bit % 8)
    return base64.b64encode(bytes(raw)).decode()


MSG_SIG = ("messageSignature", "signature")
SET = ("verificationMaterial", "tlogEntries", 0, "inclusionPromise", "signedEntryTimestamp")


CODY = ("cody@soyland.com", GITHUB_OAUTH)
INTEGRATED_TIME = ("verificationMaterial", "tlogEntries", 0, "integratedTime")
DSSE_PAYLOAD = ("dsseEnvelope", "payload")


def _flipped(path: tuple[str | int, ...], bit: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda bundle: _with(bundle, path, _flip_b64(_get(bundle, path), bit))


def _later_integrated_time(bundle: dict[str, Any]) -> dict[str, Any]:
    return _with(bundle, INTEGRATED_TIME, str(int(_get(bundle, INTEGRATED_TIME)) + 1))


@dataclass(frozen=True)
class Rejected:
    """A bundle that must not verify, and the code and field it must fail with."""

    code: str
    field: str
    bundle: str = "bundle_v3.txt.sigstore"
    change: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    root: str = "staging"
    identity: tuple[str, str] = WILLIAM
    artifact: bytes | None = artifact("bundle_v3.txt")
    artifact_digest: str | None = None
    now: datetime = NOW


REJECTED = {
    # EXPECTED.md: Image signatures, Sigstore rows
    "cve-2022-36056 log entry inconsistent": Rejected(
        "evidence.signature_invalid",
        "tlog_entry.body",
        bundle="bundle_cve_2022_36056.txt.sigstore",
        artifact=artifact("bundle_cve_2022_36056.txt"),
    ),
    "no inclusion promise and no signed timestamp": Rejected(
        "evidence.untrusted",
        "bundle.verificationMaterial",
        bundle="bundle_v3_no_signed_time.txt.sigstore.json",
        artifact=artifact("bundle_v3_no_signed_time.txt"),
    ),
    "another identity": Rejected(
        "evidence.identity_mismatch",
        "certificate.identity",
        identity=("mallory@example.com", GITHUB_OAUTH),
    ),
    "right subject, wrong issuer": Rejected(
        "evidence.identity_mismatch",
        "certificate.identity",
        identity=("william@yossarian.net", "https://accounts.google.com"),
    ),
    "wrong trusted root: the chain does not build": Rejected(
        "evidence.untrusted", "certificate.chain", root="production"
    ),
    # generated negatives
    "tampered artifact": Rejected(
        "evidence.digest_mismatch",
        "message_signature.digest",
        artifact=artifact("bundle_v3.txt") + b"x",
    ),
    "artifact and artifact_digest disagree": Rejected(
        "evidence.digest_mismatch", "artifact_digest", artifact_digest="sha256:" + "0" * 64
    ),
    "message bundle without its artifact": Rejected(
        "evidence.malformed", "artifact_digest", artifact=None
    ),
    "dsse bundle given an artifact": Rejected(
        "evidence.malformed",
        "artifact_digest",
        bundle="cosign_oci-attestation.sigstore.json",
        root="production",
        identity=CODY,
        artifact=b"anything",
    ),
    "tampered signature": Rejected(
        "evidence.signature_invalid", "message_signature", change=_flipped(MSG_SIG, 100)
    ),
    "tampered inclusion promise": Rejected(
        "evidence.signature_invalid", "tlog_entry", change=_flipped(SET, 77)
    ),
    "tampered integrated time": Rejected(
        "evidence.signature_invalid", "tlog_entry", change=_later_integrated_time
    ),
    "tampered dsse payload": Rejected(
        "evidence.signature_invalid",
        "dsse_envelope",
        bundle="cosign_oci-attestation.sigstore.json",
        change=_flipped(DSSE_PAYLOAD, 300),
        root="production",
        identity=CODY,
        artifact=None,
    ),
    "signed time after now: not yet valid": Rejected(
        "evidence.expired", "timestamp", now=datetime(2024, 4, 2, 19, 0, tzinfo=UTC)
    ),
    "unknown media type": Rejected(
        "evidence.unsupported",
        "bundle.mediaType",
        change=lambda bundle: _with(bundle, ("mediaType",), "application/x-other"),
    ),
    "wrong JSON type in the certificate": Rejected(
        "evidence.malformed",
        "bundle",
        change=lambda bundle: _with(bundle, ("verificationMaterial", "certificate"), 7),
    ),
}


@pytest.mark.parametrize("case", REJECTED.values(), ids=REJECTED.keys())
def test_bundle_is_rejected(case: Rejected) -> None:
    bundle = load_bundle(case.bundle)
    if case.change is not None:
        bundle = case.change(bundle)
    with expect(case.code, case.field):
        verify_sigstore_bundle(
            SigstoreBundleEvidence(bundle=bundle, artifact_digest=case.artifact_digest),
            trust(case.root, case.identity),
            now=case.now,
            artifact=case.artifact,
        )


@pytest.mark.parametrize(
    "bundle",
    [
        {},
        {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"},
        {"mediaType": 3, "verificationMaterial": []},
    ],
)
def test_malformed_bundles(bundle: dict[str, Any], staging_william: SigstoreTrust) -> None:
    with expect("evidence.malformed"):
        verify_sigstore_bundle(
            SigstoreBundleEvidence(bundle=bundle),
            staging_william,
            now=NOW,
            artifact=b"x",
        )


def test_evidence_parse_reports_malformed_not_pydantic_errors() -> None:
    with expect("evidence.malformed", "artifact_digest"):
        SigstoreBundleEvidence.parse({"bundle": {}, "artifact_digest": "md5:abc"})
    with expect("evidence.malformed", "bundle"):
        SigstoreBundleEvidence.parse({"bundle": "a string"})
    with expect("evidence.malformed", "surprise"):
        SigstoreBundleEvidence.parse({"bundle": {}, "surprise": 1})
    with expect("evidence.malformed", "(evidence)"):
        SigstoreBundleEvidence.parse([])  # type: ignore[arg-type]


def test_oversized_bundle_is_malformed() -> None:
    with expect("evidence.malformed", "bundle"):
        SigstoreBundleEvidence.parse({"bundle": {"pad": "x" * (4 * 1024 * 1024 + 1)}})


def test_trust_configuration_is_validated_when_built() -> None:
    root = json.loads((ASSETS / "trusted_root.staging.json").read_text())
    identity = SigstoreIdentity(subject="a@b.c", issuer=GITHUB_OAUTH)
    with pytest.raises(ValidationError):
        SigstoreTrust(trusted_root=root, identities=())
    with pytest.raises(ValidationError):
        SigstoreTrust(trusted_root={"mediaType": "nope"}, identities=(identity,))
    with pytest.raises(ValidationError):
        SigstoreTrust(trusted_root={**root, "tlogs": []}, identities=(identity,))


def test_now_must_be_aware(staging_william: SigstoreTrust) -> None:
    with pytest.raises(TypeError):
        verify_sigstore_bundle(
            evidence("bundle_v3.txt.sigstore"),
            staging_william,
            now=datetime(2026, 1, 1),  # deliberately naive
            artifact=b"",
        )


# --- image claims ----------------------------------------------------------------


def test_image_claim_from_message_bundle(staging_william: SigstoreTrust) -> None:
    digest = "sha256:" + hashlib.sha256(artifact("bundle_v3.txt")).hexdigest()
    ref = f"registry.example.com/team/app@{digest}"
    result = verify_sigstore_image(
        evidence("bundle_v3.txt.sigstore", reference=ref), staging_william, now=NOW
    )
    assert result.digest == digest
    assert result.signed_digest == digest
    assert result.signature.verified
    assert result.signature.subject == "william@yossarian.net"
    assert result.signature.issuer == GITHUB_OAUTH
    assert result.signed_reference is None
    assert result.image() == Image(reference=ref, digest=digest, signatures=(result.signature,))


def test_image_claim_from_tag_only_reference_has_no_digest(
    staging_william: SigstoreTrust,
) -> None:
    digest = "sha256:" + hashlib.sha256(artifact("bundle_v3.txt")).hexdigest()
    result = verify_sigstore_image(
        evidence(
            "bundle_v3.txt.sigstore",
            reference="registry.example.com/team/app:v1",
            artifact_digest=digest,
        ),
        staging_william,
        now=NOW,
    )
    assert result.digest is None
    assert result.signed_digest == digest
    assert result.image().digest is None


IMAGE_REJECTED = {
    "tag-only reference without artifact_digest": (
        {"reference": "registry.example.com/app:v1"},
        "evidence.malformed",
        "reference",
    ),
    "no reference": ({}, "evidence.malformed", "reference"),
    "reference pinned to another digest": (
        {"reference": f"example.com/app@sha256:{'1' * 64}"},
        "evidence.digest_mismatch",
        "message_signature.digest",
    ),
    "artifact_digest differs from the reference's": (
        {
            "reference": f"example.com/app@sha256:{'1' * 64}",
            "artifact_digest": f"sha256:{'2' * 64}",
        },
        "evidence.digest_mismatch",
        "artifact_digest",
    ),
    "sha512 digest": (
        {"reference": f"example.com/app@sha512:{'1' * 128}"},
        "evidence.unsupported",
        "reference",
    ),
    "uppercase repository": (
        {"reference": "Example.com/UPPER@sha256:" + "1" * 64},
        "evidence.malformed",
        "reference",
    ),
}


@pytest.mark.parametrize(
    ("extra", "code", "field"), IMAGE_REJECTED.values(), ids=IMAGE_REJECTED.keys()
)
def test_image_claim_is_rejected(
    extra: dict[str, str], code: str, field: str, staging_william: SigstoreTrust
) -> None:
    with expect(code, field):
        verify_sigstore_image(evidence("bundle_v3.txt.sigstore", **extra), staging_william, now=NOW)


# --- only what cosign counts as an image signature (issue 9 finding 12) ------------------
# cosign signs an image in the bundle format with a DSSE in-toto statement whose predicate is
# https://sigstore.dev/cosign/sign/v1 (cosign's signDigestBundle); every other predicate is an
# attestation about the image (provenance, SBOM, ...), which is not a signature of it.

SLSA_V1 = "https://slsa.dev/provenance/v1"
A_TXT_DIGEST = "sha256:a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf"
SIGNER = ("signer@example.com", "https://issuer.example.com")
IMAGE_DIGEST = "sha256:" + hashlib.sha256(b'{"schemaVersion":2,"image":"signed"}').hexdigest()
IMAGE_REF = f"registry.example.com/team/app@{IMAGE_DIGEST}"
PREDICATE_FIELD = "dsse_envelope.payload.predicateType"


@functools.cache
def generated_trust() -> SigstoreTrust:
    deployment = Deployment()
    return SigstoreTrust(
        trusted_root=deployment.trusted_root(),
        identities=(SigstoreIdentity(subject=SIGNER[0], issuer=SIGNER[1]),),
    )


def generated(payload: bytes, **options: Any) -> SigstoreBundleEvidence:
    return SigstoreBundleEvidence(
        bundle=Deployment().dsse_bundle(payload, **options), reference=IMAGE_REF
    )


def test_cosign_signature_bundle_is_an_image_signature() -> None:
    ev = generated(statement(IMAGE_DIGEST, COSIGN_SIGN_PREDICATE_TYPE))
    result = verify_sigstore_image(ev, generated_trust(), now=NOW)
    assert result.digest == result.signed_digest == IMAGE_DIGEST
    assert result.signature == ImageSignature(verified=True, issuer=SIGNER[1], subject=SIGNER[0])
    assert result.image() == Image(
        reference=IMAGE_REF, digest=IMAGE_DIGEST, signatures=(result.signature,)
    )


def test_tampered_cosign_signature_bundle_fails_the_signature_check() -> None:
    ev = generated(statement(IMAGE_DIGEST, COSIGN_SIGN_PREDICATE_TYPE))
    other = statement("sha256:" + "e" * 64, COSIGN_SIGN_PREDICATE_TYPE)
    bundle = _with(ev.bundle, ("dsseEnvelope", "payload"), base64.b64encode(other).decode())
    tampered = SigstoreBundleEvidence(bundle=bundle, reference=f"r.example/a@sha256:{'e' * 64}")
    with expect("evidence.signature_invalid", "dsse_envelope"):
        verify_sigstore_image(tampered, generated_trust(), now=NOW)


NOT_A_SIGNATURE = {
    "SLSA provenance": (statement(IMAGE_DIGEST, SLSA_V1), "evidence.unsupported", PREDICATE_FIELD),
    "cosign custom attestation": (
        statement(IMAGE_DIGEST, "https://cosign.sigstore.dev/attestation/v1"),
        "evidence.unsupported",
        PREDICATE_FIELD,
    ),
    "no predicateType": (
        json.dumps({"_type": "https://in-toto.io/Statement/v1", "subject": []}).encode(),
        "evidence.unsupported",
        PREDICATE_FIELD,
    ),
    "predicateType not a string": (
        json.dumps({"predicateType": [COSIGN_SIGN_PREDICATE_TYPE], "subject": []}).encode(),
        "evidence.unsupported",
        PREDICATE_FIELD,
    ),
    "statement not an object": (b"[]", "evidence.malformed", "dsse_envelope.payload"),
    "signature for another image": (
        statement(f"sha256:{'e' * 64}", COSIGN_SIGN_PREDICATE_TYPE),
        "evidence.digest_mismatch",
        "dsse_envelope.payload.subject",
    ),
}


@pytest.mark.parametrize(
    ("payload", "code", "field"), NOT_A_SIGNATURE.values(), ids=NOT_A_SIGNATURE.keys()
)
def test_verified_dsse_bundle_that_is_not_cosigns_signature_is_rejected(
    payload: bytes, code: str, field: str
) -> None:
    ev = generated(payload)
    assert (
        verify_sigstore_bundle(
            SigstoreBundleEvidence(bundle=ev.bundle), generated_trust(), now=NOW
        ).payload
        == payload
    )  # a valid bundle: rejected for what it says, not for its signature
    with expect(code, field):
        verify_sigstore_image(ev, generated_trust(), now=NOW)


def test_dsse_bundle_with_another_payload_type_is_not_a_signature() -> None:
    ev = generated(statement(IMAGE_DIGEST, COSIGN_SIGN_PREDICATE_TYPE), payload_type="text/plain")
    with expect("evidence.unsupported", "dsse_envelope.payloadType"):
        verify_sigstore_image(ev, generated_trust(), now=NOW)


@pytest.mark.parametrize(
    ("bundle", "identity", "root", "digest"),
    [
        (
            "cosign_oci-attestation.sigstore.json",
            ("cody@soyland.com", GITHUB_OAUTH),
            "production",
            OCI_ATTESTATION_DIGEST,
        ),
        (
            "a.dsse.staging-rekor-v2.txt.sigstore.json",
            (BEACON_WORKFLOW, GITHUB_ISSUER),
            "staging",
            A_TXT_DIGEST,
        ),
    ],
    ids=["cosign attest (custom predicate)", "SLSA v1 provenance"],
)
def test_real_attestation_bundles_are_not_image_signatures(
    bundle: str, identity: tuple[str, str], root: str, digest: str
) -> None:
    # Each verifies as a bundle and names the digest among its subjects (see
    # test_cosign_oci_attestation_verifies_with_production_root and
    # test_staging_dsse_bundle_returns_payload); as an image signature it is refused.
    ev = evidence(bundle, reference=f"127.0.0.1:60943/repo@{digest}")
    with expect("evidence.unsupported", PREDICATE_FIELD):
        verify_sigstore_image(ev, trust(root, identity), now=NOW)


# --- property tests: mutated evidence only ever gives EvidenceError ---------------

SIGNED_FIELDS: list[tuple[str | int, ...]] = [
    MSG_SIG,
    ("messageSignature", "messageDigest", "digest"),
    ("verificationMaterial", "certificate", "rawBytes"),
    ("verificationMaterial", "tlogEntries", 0, "canonicalizedBody"),
    ("verificationMaterial", "tlogEntries", 0, "inclusionProof", "rootHash"),
    SET,
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(SIGNED_FIELDS),
    bit=st.integers(min_value=0, max_value=8 * 4096),
    truncate=st.booleans(),
)
def test_mutated_signed_bytes_never_verify(
    field: tuple[str | int, ...], bit: int, truncate: bool
) -> None:
    bundle = load_bundle("bundle_v3.txt.sigstore")
    original = base64.b64decode(_get(bundle, field))
    if truncate:
        mutated = original[: bit % len(original)]
    else:
        flipped = bytearray(original)
        flipped[(bit // 8) % len(original)] ^= 1 << (bit % 8)
        mutated = bytes(flipped)
    assume(mutated != original)
    tampered = _with(bundle, field, base64.b64encode(mutated).decode())
    with pytest.raises(EvidenceError):
        verify_sigstore_bundle(
            SigstoreBundleEvidence(bundle=tampered),
            trust("staging", WILLIAM),
            now=NOW,
            artifact=artifact("bundle_v3.txt"),
        )


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.text(max_size=20), st.floats(allow_nan=False)
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=8), children, max_size=3)
        ),
        max_leaves=6,
    )


def _paths(node: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    paths = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            paths += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            paths += _paths(value, (*prefix, index))
    return paths


DSSE_PATHS = _paths(load_bundle("cosign_oci-attestation.sigstore.json"))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(DSSE_PATHS), value=_json_values())
def test_wrong_json_types_only_give_evidence_errors(
    path: tuple[str | int, ...], value: Any
) -> None:
    bundle = load_bundle("cosign_oci-attestation.sigstore.json")
    assume(_get(bundle, path) != value)
    mutated = _with(bundle, path, value)
    try:
        ev = SigstoreBundleEvidence.parse({"bundle": mutated})
        verify_sigstore_bundle(ev, trust("production", ("cody@soyland.com", GITHUB_OAUTH)), now=NOW)
    except EvidenceError:
        return
    # A change the verifier may legitimately ignore (an unsigned hint); never a signed field.
    assert path[:1] != ("dsseEnvelope",)
    assert path[-1] not in ("rawBytes", "canonicalizedBody", "signedEntryTimestamp")


BUNDLE_V3_TEXT = (ASSETS / "bundle_v3.txt.sigstore").read_bytes().rstrip()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=2048), cut=st.integers(0, len(BUNDLE_V3_TEXT) - 1))
def test_random_and_truncated_bundle_text_only_gives_evidence_errors(data: bytes, cut: int) -> None:
    for candidate in (data, BUNDLE_V3_TEXT[:cut]):
        try:
            parsed = json.loads(candidate)
        except (ValueError, RecursionError):
            continue
        with pytest.raises(EvidenceError):
            _parse_and_verify(parsed)


def _parse_and_verify(bundle: object) -> None:
    ev = SigstoreBundleEvidence.parse({"bundle": bundle})
    verify_sigstore_bundle(
        ev, trust("staging", WILLIAM), now=NOW, artifact=artifact("bundle_v3.txt")
    )


# --- Fulcio extensions ----------------------------------------------------------------


def _cert_with(*extensions: tuple[str, bytes]) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return issue(
        "t",
        key.public_key(),
        key,
        start=datetime(2025, 1, 1, tzinfo=UTC),
        end=datetime(2025, 1, 2, tzinfo=UTC),
        serial=1,
        extensions=[
            (x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value), False)
            for oid, value in extensions
        ],
    )


def _utf8_der(text: str) -> bytes:
    raw = text.encode()
    return bytes([0x0C, len(raw)]) + raw


def test_fulcio_extensions_read_both_encodings() -> None:
    cert = _cert_with(
        ("1.3.6.1.4.1.57264.1.8", _utf8_der("https://issuer.example")),
        ("1.3.6.1.4.1.57264.1.5", b"org/repo"),
        ("1.3.6.1.4.1.57264.1.12", _utf8_der("https://github.com/org/repo")),
    )
    ext = fulcio_extensions(cert)
    assert ext.issuer == "https://issuer.example"
    assert ext.github_workflow_repository == "org/repo"
    assert ext.source_repository_uri == "https://github.com/org/repo"
    assert ext.build_signer_uri is None


@pytest.mark.parametrize(
    "extensions",
    [
        (
            ("1.3.6.1.4.1.57264.1.1", b"https://a.example"),
            ("1.3.6.1.4.1.57264.1.8", _utf8_der("https://b.example")),
        ),
        (("1.3.6.1.4.1.57264.1.12", b"not DER"),),
        (("1.3.6.1.4.1.57264.1.2", b"\xff\xfe"),),
    ],
)
def test_malformed_fulcio_extensions(extensions: tuple[tuple[str, bytes], ...]) -> None:
    with pytest.raises(ValueError, match="extension"):
        fulcio_extensions(_cert_with(*extensions))
