"""The shipped example evidence documents and trust configuration.

Each parses, conforms to the JSON Schema its model generates, stays small, and embeds the
real vectors of tests/assets byte for byte (as its SOURCES.md says); the one synthetic
value, the JWT-SVID, is checked here with PyJWT alone.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import jsonschema
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import ECAlgorithm

from attestpolicy.evidence.document import (
    EvidenceDocument,
    TrustConfig,
    load_evidence_document,
    load_trust_config,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "attestpolicy" / "examples"
EVIDENCE = EXAMPLES / "evidence"
ASSETS = Path(__file__).resolve().parent / "assets"
SPIFFE_ID = "spiffe://example.org/ns/hakawai/sa/hakawai-litellm-proxy"

# document -> the cosign fixture directory its image section embeds
IMAGES = {
    "allow-eks-workload": "dir-img-cosign-valid",
    "deny-tag-only": "dir-img-cosign-valid-with-tag",
    "deny-modified-manifest": "dir-img-cosign-modified-manifest",
    "deny-unbound-runtime": "dir-img-cosign-valid",
    "deny-provenance-mismatch": "dir-img-cosign-valid",
    "deny-wrong-signer": "dir-img-cosign-key-rekor-valid",
}
NAMES = sorted(IMAGES)


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVIDENCE / f"{name}.json").read_text())
    return data


def trust() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / "trust.json").read_text())
    return data


def test_the_examples_are_exactly_the_documented_scenarios() -> None:
    assert sorted(path.stem for path in EVIDENCE.glob("*.json")) == NAMES


@pytest.mark.parametrize("path", [*sorted(EVIDENCE.iterdir()), EXAMPLES / "trust.json"])
def test_every_file_is_small_and_holds_no_private_key(path: Path) -> None:
    assert path.stat().st_size < 1024 * 1024
    text = path.read_text()
    assert "PRIVATE KEY" not in text


@pytest.mark.parametrize("name", NAMES)
def test_every_example_parses(name: str) -> None:
    document = load_evidence_document(EVIDENCE / f"{name}.json")
    assert document.version == 1
    assert document.request.audience == "vault"
    assert document.runtime.jwt_svid is not None
    assert document.runtime.x509_svid is None
    assert document.node is not None
    assert document.node.kind == "tpm"
    assert document.image is not None
    assert len(document.image.cosign) == 1
    assert document.image.sigstore == ()


def test_the_trust_configuration_parses() -> None:
    loaded = load_trust_config(EXAMPLES / "trust.json")
    assert isinstance(loaded, TrustConfig)
    assert loaded.image.cosign is not None
    assert loaded.image.sigstore is None
    assert loaded.provenance is not None
    assert loaded.node.tpm is not None
    assert loaded.runtime.jwt_svid is not None
    assert loaded.runtime.psat is not None
    assert loaded.runtime.x509_svid is None


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("mode", ["validation", "serialization"])
def test_the_json_schemas_are_generated(mode: Literal["validation", "serialization"]) -> None:
    for model in (EvidenceDocument, TrustConfig):
        schema = model.model_json_schema(mode=mode)
        _validator(schema)
        assert schema["properties"]["version"] == {
            "const": 1,
            "title": "Version",
            "type": "integer",
        }
        assert schema["additionalProperties"] is False


@pytest.mark.parametrize("name", NAMES)
def test_every_example_conforms_to_the_evidence_document_schema(name: str) -> None:
    validator = _validator(EvidenceDocument.model_json_schema())
    errors = [
        (list(error.absolute_path), error.message) for error in validator.iter_errors(load(name))
    ]
    assert errors == []


def test_the_trust_configuration_conforms_to_its_schema() -> None:
    validator = _validator(TrustConfig.model_json_schema())
    assert list(validator.iter_errors(trust())) == []


def test_the_schema_rejects_what_the_parser_rejects() -> None:
    validator = _validator(EvidenceDocument.model_json_schema())
    changes: list[dict[str, Any]] = [
        {"version": 2},
        {"extra": 1},
        {"runtime": []},
        {"request": {"audience": ""}},
    ]
    for change in changes:
        assert not validator.is_valid({**load("allow-eks-workload"), **change}), change


# --- the embedded real vectors ----------------------------------------------------------------


def _signature_file_body(directory: str) -> Any:
    blob = (ASSETS / "cosign" / directory / "signature-1").read_bytes()
    prefix = b"\x00sigstore-json\n"
    assert blob.startswith(prefix)
    return json.loads(blob[len(prefix) :])


@pytest.mark.parametrize("name", NAMES)
def test_the_image_section_is_the_real_cosign_fixture(name: str) -> None:
    directory = IMAGES[name]
    entry = load(name)["image"]["cosign"][0]
    manifest = (ASSETS / "cosign" / directory / "manifest.json").read_bytes()
    assert base64.b64decode(entry["manifest"], validate=True) == manifest
    assert entry["signature"] == _signature_file_body(directory)


@pytest.mark.parametrize("name", NAMES)
def test_the_node_and_runtime_sections_are_the_real_vectors(name: str) -> None:
    document = load(name)
    quote = base64.b64decode(document["node"]["tpm"]["go_tpm_tools_attestation"], validate=True)
    assert quote == (ASSETS / "tpm" / "gce-cos-85-nonce9009.pb").read_bytes()
    assert document["node"]["tpm"]["collected_at"] == "2025-11-24T07:44:00Z"
    psat = (ASSETS / "k8s_spiffe" / "eks_psat_token.jwt").read_text().strip()
    if name == "deny-unbound-runtime":
        assert "psat" not in document["runtime"]
    else:
        assert document["runtime"]["psat"]["token"] == psat
    assert (
        document["runtime"]["jwt_svid"]["token"]
        == load("allow-eks-workload")["runtime"]["jwt_svid"]["token"]
    )


def test_the_provenance_section_is_the_real_cloud_build_envelope() -> None:
    vector = json.loads((ASSETS / "slsa" / "gcb-v0.3-github.json").read_text())
    envelope = vector["provenance_summary"]["provenance"][0]["envelope"]
    section = load("deny-provenance-mismatch")["provenance"]
    assert section == {"dsse": {"base64_alphabet": "urlsafe", "envelope": envelope}}
    for name in NAMES:
        assert ("provenance" in load(name)) == (name == "deny-provenance-mismatch")


def _pem(der_file: Path) -> str:
    certificate = x509.load_der_x509_certificate(der_file.read_bytes())
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def test_the_trust_anchors_are_the_real_ones() -> None:
    anchors = trust()
    assert anchors["image"]["cosign"] == {
        "public_keys": [(ASSETS / "cosign" / "cosign.pub").read_text()]
    }
    tpm = anchors["node"]["tpm"]
    assert tpm["ca_certificates"] == [_pem(ASSETS / "tpm" / "gce_ca" / "tpm_ek_root_1.cer")]
    assert tpm["intermediate_certificates"] == [
        _pem(ASSETS / "tpm" / "gce_ca" / "tpm_ek_intermediate_2.crt")
    ]
    psat = anchors["runtime"]["psat"]
    assert psat["jwks"] == json.loads((ASSETS / "k8s_spiffe" / "eks_jwks.json").read_text())
    assert psat["audiences"] == ["sts.amazonaws.com"]
    key = anchors["provenance"]["dsse"]["keys"][0]
    assert key["public_key"] == (ASSETS / "slsa" / "gcb_keys" / "us-west2.key").read_text()
    assert key["signing_mode"] == "raw_payload"


def test_sources_lists_every_embedded_vector_and_the_synthetic_svid() -> None:
    sources = (EVIDENCE / "SOURCES.md").read_text()
    for needle in (
        "dir-img-cosign-{valid,valid-with-tag,key-rekor-valid,modified-manifest}",
        "cosign/cosign.pub",
        "tpm/gce-cos-85-nonce9009.pb",
        "tpm_ek_root_1.cer",
        "tpm_ek_intermediate_2.crt",
        "k8s_spiffe/eks_psat_token.jwt, k8s_spiffe/eks_jwks.json",
        "slsa/gcb-v0.3-github.json",
        "slsa/gcb_keys/us-west2.key",
        "containers/image @ df7e80d2d19872b61f352a8a182ec934dc0c2346",
        "google/go-tpm-tools @ 67670e5c021a24f2366eb1808db2659211af5eb2",
        "portswigger-tim/nats-k8s-oidc-callout @ a3fc41100152f682ae23741006444a7985f7dd58",
        "slsa-framework/slsa-verifier @ aaf98fd77ddc1963c0f34f34c46bd84d7a08c260",
        "**synthetic**",
    ):
        assert needle in sources, needle


# --- the synthetic JWT-SVID, checked with PyJWT only ------------------------------------------


def test_the_synthetic_svid_is_what_sources_md_says() -> None:
    token = load("allow-eks-workload")["runtime"]["jwt_svid"]["token"]
    keys = trust()["runtime"]["jwt_svid"]["bundles"]["example.org"]["keys"]
    assert len(keys) == 1
    jwk = keys[0]
    assert "d" not in jwk  # public only
    assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == ("EC", "P-256", "jwt-svid", "ES256")
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "kid": jwk["kid"], "typ": "JWT"}
    assert jwk["kid"] in (EVIDENCE / "SOURCES.md").read_text()
    public_key = ECAlgorithm.from_jwk(json.dumps(jwk))
    claims = jwt.decode(
        token,
        public_key,  # type: ignore[arg-type]
        algorithms=["ES256"],
        audience="attestpolicy",
        options={"verify_exp": False},
    )
    assert claims == {
        "sub": SPIFFE_ID,
        "aud": "attestpolicy",
        "iat": int(datetime(2025, 11, 24, 7, tzinfo=UTC).timestamp()),
        "exp": int(datetime(2025, 11, 24, 9, tzinfo=UTC).timestamp()),
    }
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(token, public_key, algorithms=["ES256"], audience="attestpolicy")  # type: ignore[arg-type]
