"""One full, successful verification per evidence verifier, on the real vectors of tests/assets.

``verifier_cases()`` builds every evidence and trust model once (parsing trust anchors is
configuration, not per-request work) and returns zero-argument callables that each run one
verification at a ``now`` inside the vector's validity window and assert, cheaply, that it
succeeded, so the benchmark never times a failure path.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from attestpolicy.evidence.image.cosign import (
    CosignEvidence,
    CosignFulcioTrust,
    CosignTrust,
    verify_cosign_signature,
)
from attestpolicy.evidence.image.sigstore_bundle import (
    SigstoreBundleEvidence,
    SigstoreIdentity,
    SigstoreTrust,
    verify_sigstore_bundle,
)
from attestpolicy.evidence.node.aws_iid import AwsIidEvidence, AwsIidTrust, verify_aws_iid
from attestpolicy.evidence.node.gce_iit import GceIitEvidence, GceIitTrust, verify_gce_iit
from attestpolicy.evidence.node.sev_snp import SevSnpEvidence, SevSnpTrust, verify_sev_snp
from attestpolicy.evidence.node.tdx import TdxEvidence, TdxTrust, verify_tdx
from attestpolicy.evidence.node.tpm import TpmEvidence, TpmTrust, verify_tpm
from attestpolicy.evidence.provenance.dsse import DsseTrust, TrustedKey
from attestpolicy.evidence.provenance.in_toto import (
    ProvenanceEvidence,
    ProvenanceTrust,
    verify_provenance,
)
from attestpolicy.evidence.workload.psat import PsatEvidence, PsatTrust, verify_psat
from attestpolicy.evidence.workload.spiffe import (
    JwtSvidEvidence,
    JwtSvidTrust,
    X509SvidEvidence,
    X509SvidTrust,
    verify_jwt_svid,
    verify_x509_svid,
)
from attestpolicy.evidence.workload.workload_attestor import (
    WorkloadAttestorEvidence,
    WorkloadAttestorTrust,
    verify_workload_attestor,
)

Operation = Callable[[], object]

ASSETS = Path(__file__).resolve().parent.parent / "tests" / "assets"

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITHUB_OAUTH = "https://github.com/login/oauth"
RFC8785_WORKFLOW = (
    "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2"
)
ATTEST_WORKFLOW = (
    "https://github.com/github/artifact-attestations-workflows/.github/workflows/"
    "attest.yml@09b495c3f12c7881b3cc17209a327792065c1a1d"
)
EKS_ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/B88E7287E54DB073AC9CDC2FD1BE0969"

# A ``now`` inside each vector's validity window (certificates, tokens, signed times).
LATE_NOW = datetime(2026, 11, 22, tzinfo=UTC)
NODE_NOW = datetime(2025, 6, 1, tzinfo=UTC)
GCE_NOW = datetime.fromtimestamp(1739324791, UTC) + timedelta(minutes=10)  # iat + 10 min
EKS_NOW = datetime.fromtimestamp(1763969878, UTC) + timedelta(minutes=10)  # iat + 10 min
COLLECTED = "2025-06-01T00:00:00Z"
JWT_SVID_NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

# tests/assets has no JWT-SVID vector: the signing key is made at import time.
_JWT_SVID_KEY = ec.generate_private_key(ec.SECP256R1())

_PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?", re.S)


def _text(*parts: str) -> str:
    return ASSETS.joinpath(*parts).read_text()


def _bytes(*parts: str) -> bytes:
    return ASSETS.joinpath(*parts).read_bytes()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _der_to_pem(der: bytes) -> str:
    """PEM-armour DER bytes as they are (no re-encoding by a parser)."""
    body = "\n".join(textwrap.wrap(_b64(der), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def _split_der(data: bytes) -> list[bytes]:
    """Split concatenated DER certificates (each a long-form SEQUENCE)."""
    parts, offset = [], 0
    while offset < len(data):
        size = data[offset + 1] & 0x7F
        length = int.from_bytes(data[offset + 2 : offset + 2 + size], "big")
        end = offset + 2 + size + length
        parts.append(data[offset:end])
        offset = end
    return parts


# --- image signatures -------------------------------------------------------------


def _sigstore_bundle() -> Operation:
    evidence = SigstoreBundleEvidence(
        bundle=json.loads(_text("sigstore", "bundle_v3_github.whl.sigstore"))
    )
    trust = SigstoreTrust(
        trusted_root=json.loads(_text("sigstore", "trusted_root.production.json")),
        identities=(SigstoreIdentity(subject=RFC8785_WORKFLOW, issuer=GITHUB_ISSUER),),
    )
    artifact = _bytes("sigstore", "bundle_v3_github.whl")

    def operation() -> object:
        result = verify_sigstore_bundle(evidence, trust, now=LATE_NOW, artifact=artifact)
        assert result.kind == "message_signature"
        assert result.subject == RFC8785_WORKFLOW
        return result

    return operation


def _cosign(directory: str, reference: str, trust: CosignTrust) -> Operation:
    evidence = CosignEvidence.from_files(
        reference=reference,
        manifest=_bytes("cosign", directory, "manifest.json"),
        signature_file=_bytes("cosign", directory, "signature-1"),
    )

    def operation() -> object:
        result = verify_cosign_signature(evidence, trust, now=LATE_NOW)
        assert result.signature.verified
        assert result.digest is not None
        return result

    return operation


def _cosign_fulcio() -> Operation:
    trust = CosignTrust(
        fulcio=CosignFulcioTrust(
            ca_certificates=_text("cosign", "fulcio_v1.crt.pem"),
            identities=(SigstoreIdentity(subject="mitr@redhat.com", issuer=GITHUB_OAUTH),),
        ),
        rekor_public_keys=(_text("cosign", "rekor.pub"),),
    )
    digest = "sha256:0489474da8ea22426ece86ace6c1c0026ab2fd3cdfbbd62b7e94650266c37d9a"
    reference = f"192.168.64.2:5000/cosign-signed/fulcio-rekor-1@{digest}"
    return _cosign("dir-img-cosign-fulcio-rekor-valid", reference, trust)


def _cosign_key() -> Operation:
    trust = CosignTrust(public_keys=(_text("cosign", "cosign.pub"),))
    digest = "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00"
    reference = f"192.168.64.2:5000/cosign-signed-single-sample@{digest}"
    return _cosign("dir-img-cosign-valid", reference, trust)


# --- provenance -------------------------------------------------------------------


def _provenance(evidence: ProvenanceEvidence, trust: ProvenanceTrust, digest: str) -> Operation:
    def operation() -> object:
        result = verify_provenance(evidence, trust, now=NODE_NOW, expected_digest=digest)
        assert result.provenance.verified
        return result

    return operation


def _provenance_gcb() -> Operation:
    document = json.loads(_text("slsa", "gcb-v0.3-github.json"))
    envelope = document["provenance_summary"]["provenance"][0]["envelope"]
    evidence = ProvenanceEvidence.parse(
        {"dsse": {"envelope": envelope, "base64_alphabet": "urlsafe"}}
    )
    key = TrustedKey(
        public_key=_text("slsa", "gcb_keys", "us-west2.key"),
        algorithm="ecdsa-p256-sha256",
        signing_mode="raw_payload",
    )
    trust = ProvenanceTrust(dsse=DsseTrust(keys=(key,)))
    return _provenance(evidence, trust, _text("slsa", "gcb-v0.3-github.digest").strip())


def _provenance_sigstore() -> Operation:
    bundle = json.loads(_text("slsa", "reusable-workflow-attestation.sigstore.json"))
    evidence = ProvenanceEvidence.parse({"sigstore_bundle": bundle})
    trust = ProvenanceTrust(
        sigstore=SigstoreTrust(
            trusted_root=json.loads(_text("slsa", "trusted_root.production.json")),
            identities=(SigstoreIdentity(subject=ATTEST_WORKFLOW, issuer=GITHUB_ISSUER),),
        )
    )
    digest = "sha256:" + hashlib.sha256(_bytes("slsa", "reusable-workflow-artifact")).hexdigest()
    return _provenance(evidence, trust, digest)


# --- node evidence ----------------------------------------------------------------


def _tpm_gce() -> Operation:
    evidence = TpmEvidence.parse(
        {
            "collected_at": COLLECTED,
            "go_tpm_tools_attestation": _b64(_bytes("tpm", "gce-cos-85-nonce9009.pb")),
        }
    )
    roots = ("tpm_ek_root_1.cer", "gcp_ek_ak_ca_root.crt")
    intermediates = (
        "tpm_ek_intermediate_2.crt",
        "tpm_ek_intermediate_3.crt",
        "gcp_ek_ak_ca_intermediate_v3.crt",
    )
    trust = TpmTrust(
        ca_certificates=tuple(_der_to_pem(_bytes("tpm", "gce_ca", n)) for n in roots),
        intermediate_certificates=tuple(
            _der_to_pem(_bytes("tpm", "gce_ca", n)) for n in intermediates
        ),
    )
    nonce = b"\x90\x09"

    def operation() -> object:
        node = verify_tpm(evidence, trust, now=NODE_NOW, nonce=nonce)
        assert node.verified
        assert node.nonce_verified
        return node

    return operation


def _sev_snp() -> Operation:
    ask, ark = _PEM_CERTIFICATE.findall(_text("cc", "go-sev-guest_ask_ark_milan.pem"))
    evidence = SevSnpEvidence.parse(
        {
            "collected_at": COLLECTED,
            "report": _b64(_bytes("cc", "go-sev-guest_attestation.bin")),
            "vcek": _der_to_pem(_bytes("cc", "go-sev-guest_vcek.testcer")),
        }
    )
    # The go-sev-guest vector is a debug guest; the tests accept it the same way.
    trust = SevSnpTrust(ark_certificates=(ark,), ask_certificates=(ask,), allow_debug=True)
    nonce = bytes([1, 2, 3, 4, 5])  # the vector's REPORT_DATA, zero-padded

    def operation() -> object:
        node = verify_sev_snp(evidence, trust, now=NODE_NOW, nonce=nonce)
        assert node.verified
        assert node.nonce_verified
        return node

    return operation


def _tdx() -> Operation:
    evidence = TdxEvidence.parse(
        {
            "collected_at": COLLECTED,
            "quote": _b64(_bytes("cc", "go-tdx-guest_cos-113-tdx-quote.dat")),
        }
    )
    trust = TdxTrust(root_certificates=(_text("cc", "go-tdx-guest_trusted_root.pem"),))
    nonce = _bytes("cc", "go-tdx-guest_cos-113-nonce.dat")

    def operation() -> object:
        node = verify_tdx(evidence, trust, now=NODE_NOW, nonce=nonce)
        assert node.verified
        assert node.nonce_verified
        return node

    return operation


# --- cloud identity, Kubernetes, SPIFFE -------------------------------------------


def _aws_iid() -> Operation:
    evidence = AwsIidEvidence.parse(
        {"pkcs7": _text("cloud", "aws", "metaphor_ap-southeast-2.rsa2048.b64").strip()}
    )
    certificate = _text("cloud", "aws", "aws-rsa2048-ap-southeast-2.pem")
    trust = AwsIidTrust.model_validate({"regions": {"ap-southeast-2": {"rsa2048": [certificate]}}})

    def operation() -> object:
        result = verify_aws_iid(evidence, trust, now=LATE_NOW)
        assert result.node.verified
        assert result.form == "pkcs7-rsa2048"
        return result

    return operation


def _gce_iit() -> Operation:
    token = _text("cloud", "gcp", "gce_identity_token_agentcommunication.jwt").strip()
    keys = json.loads(_text("cloud", "gcp", "google_oauth2_v3_certs_snapshot.json"))["keys"]
    evidence = GceIitEvidence(token=token)
    trust = GceIitTrust.model_validate(
        {"jwks": {"keys": keys}, "audiences": ["agentcommunication.googleapis.com"]}
    )

    def operation() -> object:
        result = verify_gce_iit(evidence, trust, now=GCE_NOW)
        assert result.node.verified
        return result

    return operation


def _psat_inputs() -> tuple[PsatEvidence, PsatTrust]:
    evidence = PsatEvidence(token=_text("k8s_spiffe", "eks_psat_token.jwt").strip())
    trust = PsatTrust.model_validate(
        {
            "issuer": EKS_ISSUER,
            "jwks": json.loads(_text("k8s_spiffe", "eks_jwks.json")),
            "audiences": ["sts.amazonaws.com"],
        }
    )
    return evidence, trust


def _psat() -> Operation:
    evidence, trust = _psat_inputs()

    def operation() -> object:
        result = verify_psat(evidence, trust, now=EKS_NOW)
        assert result.runtime.verified
        return result

    return operation


def _workload_attestor() -> Operation:
    """The attestor's own cost: facts bound to a PSAT verified beforehand (its own case)."""
    psat = verify_psat(*_psat_inputs(), now=EKS_NOW)
    evidence = WorkloadAttestorEvidence.parse(
        {
            "namespace": "hakawai",
            "service_account": "hakawai-litellm-proxy",
            "pod": "hakawai-litellm-proxy-57456bb9cb-bwzxh",
            "pod_uid": "989f1a6e-8af7-4740-93d8-206f8daf9a84",
            "image_digest": "sha256:" + "ab" * 32,
        }
    )
    trust = WorkloadAttestorTrust(require_binding=True)

    def operation() -> object:
        result = verify_workload_attestor(evidence, trust, now=EKS_NOW, psat=psat)
        assert result.runtime.verified
        return result

    return operation


def _x509_svid() -> Operation:
    chain = _bytes("k8s_spiffe", "rust-spiffe_1-svid-chain.der")
    authority = x509.load_der_x509_certificate(_split_der(chain)[1])
    trust = X509SvidTrust(
        bundles={"example.org": authority.public_bytes(serialization.Encoding.PEM).decode()}
    )
    evidence = X509SvidEvidence.parse({"chain_der": _b64(chain)})

    def operation() -> object:
        result = verify_x509_svid(evidence, trust, now=LATE_NOW)
        assert result.runtime.verified
        return result

    return operation


def _jwt_svid() -> Operation:
    now = JWT_SVID_NOW
    jwk: dict[str, Any] = ECAlgorithm.to_jwk(_JWT_SVID_KEY.public_key(), as_dict=True)
    jwk |= {"kid": "a1", "use": "jwt-svid"}
    audience = "spiffe://example.org/pdp"
    trust = JwtSvidTrust.model_validate(
        {"bundles": {"example.org": {"keys": [jwk]}}, "audiences": [audience]}
    )
    claims = {
        "sub": "spiffe://example.org/ns/payments/sa/api",
        "aud": [audience],
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "iat": int((now - timedelta(seconds=10)).timestamp()),
    }
    token = jwt.encode(
        claims, _JWT_SVID_KEY, algorithm="ES256", headers={"kid": "a1", "typ": "JWT"}
    )
    evidence = JwtSvidEvidence(token=token)

    def operation() -> object:
        result = verify_jwt_svid(evidence, trust, now=now)
        assert result.runtime.verified
        return result

    return operation


def verifier_cases() -> list[tuple[str, Callable[[], object]]]:
    """(name, operation) per verifier; each operation is one successful verification."""
    return [
        ("sigstore bundle (keyless, Rekor)", _sigstore_bundle()),
        ("cosign (keyless, Fulcio + Rekor SET)", _cosign_fulcio()),
        ("cosign (key)", _cosign_key()),
        ("provenance (key-signed DSSE, Cloud Build)", _provenance_gcb()),
        ("provenance (keyless, Sigstore bundle)", _provenance_sigstore()),
        ("tpm quote (gce protobuf, 3 banks)", _tpm_gce()),
        ("sev-snp report (VCEK -> ASK -> ARK)", _sev_snp()),
        ("tdx quote v4 (PCK chain)", _tdx()),
        ("aws iid (rsa2048 pkcs7)", _aws_iid()),
        ("gce iit (RS256)", _gce_iit()),
        ("k8s psat (RS256)", _psat()),
        ("x509-svid (rust-spiffe chain)", _x509_svid()),
        ("jwt-svid (ES256)", _jwt_svid()),
        ("workload attestor (bound to psat)", _workload_attestor()),
    ]
