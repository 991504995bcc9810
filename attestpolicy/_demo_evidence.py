"""Fresh evidence for the broker demo and its tests: valid now, signed with keys made per call.

The bundled example evidence (``examples/evidence/``) is real but only valid at a pinned
past time, so a credential minted from it would already be expired. :func:`fresh_evidence`
instead builds, at run time and with newly generated keys, an evidence document that the
project's own verifiers accept at ``now``, together with the trust configuration that
publishes those keys and a policy configuration that registers the workload:

* ``image.cosign``: a cosign key-based simple-signing signature (ECDSA P-256) over a
  freshly made image manifest, referenced by digest;
* ``provenance.dsse``: a SLSA v1 provenance statement for that digest in a DSSE envelope
  (ECDSA P-256, PAE signing);
* ``runtime.x509_svid`` (default) or ``runtime.jwt_svid``: the workload's SPIFFE identity,
  an X.509-SVID issued by a generated SPIFFE CA (so a broker can bind a token to the leaf
  with ``cnf`` / ``x5t#S256``) or a JWT-SVID signed by a generated bundle key;
* ``runtime.psat``: a Kubernetes projected service account token (ES256) naming the
  workload's namespace, service account and pod.

There is no ``node`` section: a TPM quote (or any other node evidence) cannot be made
fresh without the hardware, so the registered workload requires ``image``,
``provenance`` and ``runtime`` but not ``node``. Everything here is for demonstrations
and tests: the private keys are discarded when the call returns.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from jwt.algorithms import ECAlgorithm

from attestpolicy.claims import Subject
from attestpolicy.evidence._crypto.x509 import fingerprint
from attestpolicy.evidence.provenance.dsse import IN_TOTO_PAYLOAD_TYPE, pae

__all__ = [
    "DEMO_AUDIENCE",
    "DEMO_BUILDER_ID",
    "DEMO_REPOSITORY",
    "DEMO_SOURCE_REPO",
    "DEMO_SPIFFE_ID",
    "FreshEvidence",
    "fresh_evidence",
]

DEMO_SPIFFE_ID: Final = "spiffe://demo.example.org/ns/shop/sa/checkout"
DEMO_AUDIENCE: Final = "payments-api"
DEMO_REPOSITORY: Final = "registry.example.org/shop/checkout"
DEMO_BUILDER_ID: Final = "https://builder.example.org/demo-builder@v1"
DEMO_SOURCE_REPO: Final = "https://git.example.org/shop/checkout"

_PSAT_ISSUER: Final = "https://oidc.demo.example.org"
_VERIFIER_AUDIENCE: Final = "attestpolicy"  # what the PSAT and JWT-SVID are minted for
_BACKDATE: Final = timedelta(minutes=1)  # certificates start a little before now
_K8S_NAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@dataclass(frozen=True)
class FreshEvidence:
    """An evidence document valid at ``issued_at``, its trust and policy configurations.

    ``document``, ``trust`` and ``config`` are plain JSON dicts (treat them as read-only;
    deep-copy to tamper). ``signer_key_id`` is the image signing key's fingerprint as the
    policy's ``trusted_signers.key_ids`` and ``revocable`` (``signer_subjects``) name it;
    ``svid_certificate`` is the X.509-SVID leaf (DER), None for a JWT-SVID.
    """

    document: dict[str, Any]
    trust: dict[str, Any]
    config: dict[str, Any]
    spiffe_id: str
    audience: str
    namespace: str
    service_account: str
    image_reference: str
    image_digest: str
    signer_key_id: str
    builder_id: str
    source_repo: str
    svid_certificate: bytes | None
    issued_at: datetime
    expires_at: datetime


def fresh_evidence(
    now: datetime | None = None,
    *,
    spiffe_id: str = DEMO_SPIFFE_ID,
    audience: str = DEMO_AUDIENCE,
    namespace: str = "shop",
    service_account: str = "checkout",
    lifetime: timedelta = timedelta(hours=1),
    svid: Literal["x509", "jwt"] = "x509",
) -> FreshEvidence:
    """Make evidence valid from ``now`` (default: the current time) for ``lifetime``.

    ``now`` is truncated to whole seconds (``issued_at``). Every call generates new keys
    and a new image (so a new digest). The SVID and the PSAT expire at ``expires_at`` =
    ``issued_at + lifetime``; the policy configuration caps the workload's TTL at one hour
    and the audience's at 10 minutes, and needs ``lifetime`` above its 60 s minimum TTL.
    """
    issued_at = (datetime.now(UTC) if now is None else _aware(now)).replace(microsecond=0)
    if lifetime <= timedelta(0):
        raise ValueError("lifetime must be positive")
    for name, value in (("namespace", namespace), ("service_account", service_account)):
        if not _K8S_NAME.match(value):
            raise ValueError(f"{name} must be a Kubernetes object name")
    trust_domain = _trust_domain(spiffe_id)
    expires_at = issued_at + lifetime
    image, image_trust, digest, signer_key_id = _image(issued_at)
    provenance, provenance_trust = _provenance(digest, issued_at)
    if svid == "x509":
        runtime, runtime_trust, certificate = _x509_svid(
            spiffe_id, trust_domain, issued_at, expires_at
        )
    elif svid == "jwt":
        runtime, runtime_trust = _jwt_svid(spiffe_id, trust_domain, issued_at, expires_at)
        certificate = None
    else:
        raise ValueError("svid must be 'x509' or 'jwt'")
    runtime["psat"], runtime_trust["psat"] = _psat(
        namespace, service_account, issued_at, expires_at
    )
    document = {
        "version": 1,
        "request": {"audience": audience},
        "image": image,
        "provenance": provenance,
        "runtime": runtime,
    }
    trust = {
        "version": 1,
        "image": image_trust,
        "provenance": provenance_trust,
        "runtime": runtime_trust,
    }
    config = {
        "trusted_signers": {"key_ids": {signer_key_id: "demo image signing key"}},
        "trusted_builders": {DEMO_BUILDER_ID: "demo builder"},
        "workloads": {
            spiffe_id: {
                "namespace": namespace,
                "service_account": service_account,
                "source_repo": DEMO_SOURCE_REPO,
                "image_digests": [digest],
                "require": ["image", "provenance", "runtime"],
                "max_ttl_seconds": 3600,
            }
        },
        "audiences": {audience: {"max_ttl_seconds": 600}},
        "limits": {
            "max_evidence_age_seconds": 300,
            "clock_skew_seconds": 30,
            "min_ttl_seconds": 60,
            "default_ttl_seconds": 900,
        },
        "revoked": {"signer_subjects": {}, "node_ids": {}, "image_digests": {}, "spiffe_ids": {}},
    }
    return FreshEvidence(
        document=document,
        trust=trust,
        config=config,
        spiffe_id=spiffe_id,
        audience=audience,
        namespace=namespace,
        service_account=service_account,
        image_reference=image["reference"],
        image_digest=digest,
        signer_key_id=signer_key_id,
        builder_id=DEMO_BUILDER_ID,
        source_repo=DEMO_SOURCE_REPO,
        svid_certificate=certificate,
        issued_at=issued_at,
        expires_at=expires_at,
    )


# --- pieces ----------------------------------------------------------------------


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now.astimezone(UTC)


def _trust_domain(spiffe_id: str) -> str:
    """The SPIFFE ID's trust domain, validated as the verifiers validate it."""
    checked = Subject(spiffe_id=spiffe_id).spiffe_id
    return checked.removeprefix("spiffe://").partition("/")[0]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def _manifest() -> bytes:
    """An OCI image manifest whose config and layer digests are random (a fresh build)."""

    def blob(media_type: str, size: int) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": "sha256:" + os.urandom(32).hex(), "size": size}

    return _json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": blob("application/vnd.oci.image.config.v1+json", 1024),
            "layers": [blob("application/vnd.oci.image.layer.v1.tar+gzip", 3_145_728)],
        }
    )


def _image(now: datetime) -> tuple[dict[str, Any], dict[str, Any], str, str]:
    """A new image signed with a new cosign key: (section, trust, digest, key id)."""
    key = ec.generate_private_key(ec.SECP256R1())
    manifest = _manifest()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    payload = _json(
        {
            "critical": {
                "identity": {"docker-reference": DEMO_REPOSITORY},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": {"creator": "attestpolicy demo", "timestamp": int(now.timestamp())},
        }
    )
    signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    entry = {
        "manifest": _b64(manifest),
        "signature": {
            "mimeType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "payload": _b64(payload),
            "annotations": {"dev.cosignproject.cosign/signature": _b64(signature)},
        },
    }
    section = {"reference": f"{DEMO_REPOSITORY}@{digest}", "cosign": [entry]}
    trust = {"cosign": {"public_keys": [_public_pem(key)]}}
    return section, trust, digest, fingerprint(key.public_key())


def _provenance(digest: str, now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """SLSA v1 provenance for ``digest`` in a DSSE envelope signed by a new builder key."""
    key = ec.generate_private_key(ec.SECP256R1())
    statement = _json(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": DEMO_REPOSITORY, "digest": {"sha256": digest.split(":")[1]}}],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {
                "buildDefinition": {
                    "buildType": "https://builder.example.org/demo-build/v1",
                    "externalParameters": {"repository": DEMO_SOURCE_REPO, "ref": "main"},
                    "resolvedDependencies": [
                        {
                            "uri": f"git+{DEMO_SOURCE_REPO}@refs/heads/main",
                            "digest": {"gitCommit": os.urandom(20).hex()},
                        }
                    ],
                },
                "runDetails": {
                    "builder": {"id": DEMO_BUILDER_ID},
                    "metadata": {
                        "invocationId": str(uuid.uuid4()),
                        "startedOn": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    },
                },
            },
        }
    )
    signature = key.sign(pae(IN_TOTO_PAYLOAD_TYPE, statement), ec.ECDSA(hashes.SHA256()))
    envelope = {
        "payloadType": IN_TOTO_PAYLOAD_TYPE,
        "payload": _b64(statement),
        "signatures": [{"keyid": "demo-builder", "sig": _b64(signature)}],
    }
    trusted_key = {
        "key_id": "demo-builder",
        "algorithm": "ecdsa-p256-sha256",
        "public_key": _public_pem(key),
    }
    return {"dsse": {"envelope": envelope}}, {"dsse": {"keys": [trusted_key]}}


def _times(issued_at: datetime, expires_at: datetime) -> dict[str, int]:
    iat = int(issued_at.timestamp())
    return {"iat": iat, "nbf": iat, "exp": int(expires_at.timestamp())}


def _signed_jwt(claims: dict[str, Any], use: str) -> tuple[str, dict[str, str]]:
    """``claims`` signed (ES256) with a new key, and its public JWK (``kid``: SPKI hash)."""
    key = ec.generate_private_key(ec.SECP256R1())
    kid = fingerprint(key.public_key()).removeprefix("sha256:")[:32]
    jwk: dict[str, str] = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid, "typ": "JWT"})
    return token, {**jwk, "kid": kid, "use": use, "alg": "ES256"}


def _jwt_svid(
    spiffe_id: str, trust_domain: str, issued_at: datetime, expires_at: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A JWT-SVID: (runtime section, runtime trust)."""
    claims = {"sub": spiffe_id, "aud": [_VERIFIER_AUDIENCE], **_times(issued_at, expires_at)}
    token, jwk = _signed_jwt(claims, "jwt-svid")
    trust = {"bundles": {trust_domain: {"keys": [jwk]}}, "audiences": [_VERIFIER_AUDIENCE]}
    return {"jwt_svid": {"token": token}}, {"jwt_svid": trust}


def _psat(
    namespace: str, service_account: str, issued_at: datetime, expires_at: datetime
) -> tuple[dict[str, str], dict[str, Any]]:
    """A projected service account token: (section, trust)."""
    pod = f"{service_account[:200]}-{os.urandom(4).hex()}"
    claims = {
        "iss": _PSAT_ISSUER,
        "sub": f"system:serviceaccount:{namespace}:{service_account}",
        "aud": [_VERIFIER_AUDIENCE],
        **_times(issued_at, expires_at),
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": {"name": service_account, "uid": str(uuid.uuid4())},
            "pod": {"name": pod, "uid": str(uuid.uuid4())},
        },
    }
    token, jwk = _signed_jwt(claims, "sig")
    trust = {
        "issuer": _PSAT_ISSUER,
        "jwks": {"keys": [jwk]},
        "audiences": [_VERIFIER_AUDIENCE],
        "clock_skew_seconds": 30,
    }
    return {"token": token}, trust


def _x509_svid(
    spiffe_id: str, trust_domain: str, issued_at: datetime, expires_at: datetime
) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """An X.509-SVID from a new SPIFFE CA: (runtime section, runtime trust, leaf DER)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "attestpolicy demo"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{trust_domain} SPIFFE CA"),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(issued_at - _BACKDATE)
        .not_valid_after(expires_at)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SPIRE")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(issued_at - _BACKDATE)
        .not_valid_after(expires_at)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    section = {"x509_svid": {"chain": leaf.public_bytes(pem).decode("ascii")}}
    trust = {"x509_svid": {"bundles": {trust_domain: ca.public_bytes(pem).decode("ascii")}}}
    return section, trust, leaf.public_bytes(serialization.Encoding.DER)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
