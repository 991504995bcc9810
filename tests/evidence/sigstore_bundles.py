"""A Sigstore deployment made at test time: Fulcio CA, CT log, Rekor log, and bundles.

For shapes no real bundle has (a DSSE bundle with cosign's signature predicate, made for a
digest the test chooses): :class:`Deployment` issues a Fulcio-like certificate (e-mail SAN,
OIDC issuer extension, an embedded SCT from its CT log), signs a DSSE envelope with it and
logs it in a one-entry Rekor tree (``dsse`` 0.0.1 entry, inclusion proof, signed checkpoint
and inclusion promise), all of which sigstore-python verifies offline against
:meth:`Deployment.trusted_root`. Keys are the shared session keys of
:func:`evidence.helpers.ec_key`.

Imported as ``from evidence.sigstore_bundles import ...``.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from evidence.helpers import CA_USAGE, SIGNING_USAGE, START, b64, ec_key, issue

__all__ = ["DSSE_MEDIA_TYPE", "IN_TOTO", "Deployment", "statement"]

DSSE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
IN_TOTO = "application/vnd.in-toto+json"
_SCT_LIST_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
_OIDC_ISSUER_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")


def statement(digest: str, predicate_type: str, predicate: Any = None) -> bytes:
    """An in-toto v1 statement about ``digest`` (``sha256:<hex>``), as cosign writes one."""
    algorithm, _, value = digest.partition(":")
    return json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"digest": {algorithm: value}}],
            "predicateType": predicate_type,
            "predicate": {} if predicate is None else predicate,
        }
    ).encode()


def _spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def _pae(payload_type: str, payload: bytes) -> bytes:
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class Deployment:
    """One Fulcio root, one CT log and one Rekor log (P-256 keys), and what they sign."""

    name: str = "test"

    @cached_property
    def fulcio_key(self) -> ec.EllipticCurvePrivateKey:
        return ec_key(f"{self.name} fulcio")

    @cached_property
    def ct_key(self) -> ec.EllipticCurvePrivateKey:
        return ec_key(f"{self.name} ct")

    @cached_property
    def rekor_key(self) -> ec.EllipticCurvePrivateKey:
        return ec_key(f"{self.name} rekor")

    @cached_property
    def fulcio_root(self) -> x509.Certificate:
        key = self.fulcio_key
        return issue(
            f"{self.name} fulcio", key.public_key(), key, ca=True, usage=CA_USAGE, ski=True
        )

    def trusted_root(self) -> dict[str, Any]:
        """The ``trusted_root.json`` object of this deployment."""
        valid = {"start": START.strftime("%Y-%m-%dT%H:%M:%SZ")}

        def log(url: str, key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
            return {
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": b64(_spki(key)),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": valid,
                },
                "logId": {"keyId": b64(hashlib.sha256(_spki(key)).digest())},
            }

        root_der = self.fulcio_root.public_bytes(serialization.Encoding.DER)
        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(f"https://rekor.{self.name}.example", self.rekor_key)],
            "certificateAuthorities": [
                {
                    "subject": {"organization": self.name, "commonName": f"{self.name} fulcio"},
                    "uri": f"https://fulcio.{self.name}.example",
                    "certChain": {"certificates": [{"rawBytes": b64(root_der)}]},
                    "validFor": valid,
                }
            ],
            "ctlogs": [log(f"https://ctfe.{self.name}.example", self.ct_key)],
            "timestampAuthorities": [],
        }

    def certificate(
        self, key: ec.EllipticCurvePrivateKey, *, email: str, issuer: str, start: datetime
    ) -> x509.Certificate:
        """A 10-minute Fulcio-like signing certificate for ``key`` with an embedded SCT."""
        extensions: list[tuple[x509.ExtensionType, bool]] = [
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False),
            (x509.SubjectAlternativeName([x509.RFC822Name(email)]), True),
            (x509.UnrecognizedExtension(_OIDC_ISSUER_OID, issuer.encode()), False),
        ]
        serial = x509.random_serial_number()

        def build(extra: list[tuple[x509.ExtensionType, bool]]) -> x509.Certificate:
            return issue(
                x509.Name([]),
                key.public_key(),
                self.fulcio_key,
                issuer=self.fulcio_root.subject,
                start=start,
                end=start + timedelta(minutes=10),
                serial=serial,
                usage=SIGNING_USAGE,
                aki=True,
                extensions=extensions + extra,
            )

        precertificate = build([]).tbs_certificate_bytes  # = tbs_precertificate_bytes
        sct = self._sct(precertificate, start)
        sct_list = struct.pack(">HH", len(sct) + 2, len(sct)) + sct
        octets = b"\x04" + _der_length(len(sct_list)) + sct_list
        return build([(x509.UnrecognizedExtension(_SCT_LIST_OID, octets), False)])

    def _sct(self, tbs: bytes, when: datetime) -> bytes:
        """An RFC 6962 precertificate SCT (v1) over ``tbs`` from this CT log."""
        log_id = hashlib.sha256(_spki(self.ct_key)).digest()
        millis = int(when.timestamp() * 1000)
        issuer_key_hash = hashlib.sha256(_spki(self.fulcio_key)).digest()
        signed = (
            struct.pack(">BBQH", 0, 0, millis, 1)
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + struct.pack(">H", 0)
        )
        signature = _sign(self.ct_key, signed)
        return (
            struct.pack(">B", 0)
            + log_id
            + struct.pack(">QH", millis, 0)
            + struct.pack(">BBH", 4, 3, len(signature))
            + signature
        )

    def dsse_bundle(
        self,
        payload: bytes,
        *,
        email: str = "signer@example.com",
        issuer: str = "https://issuer.example.com",
        signed_at: datetime = START + timedelta(days=365),
        payload_type: str = IN_TOTO,
    ) -> dict[str, Any]:
        """A v0.3 bundle: ``payload`` in a DSSE envelope signed under a fresh certificate
        and logged by Rekor at ``signed_at`` (a ``dsse`` 0.0.1 entry)."""
        key = ec_key(f"{self.name} signer")
        certificate = self.certificate(key, email=email, issuer=issuer, start=signed_at)
        signature = _sign(key, _pae(payload_type, payload))
        envelope = {
            "payload": b64(payload),
            "payloadType": payload_type,
            "signatures": [{"sig": b64(signature), "keyid": ""}],
        }
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        body = json.dumps(
            {
                "apiVersion": "0.0.1",
                "kind": "dsse",
                "spec": {
                    "envelopeHash": {
                        "algorithm": "sha256",
                        "value": hashlib.sha256(json.dumps(envelope).encode()).hexdigest(),
                    },
                    "payloadHash": {
                        "algorithm": "sha256",
                        "value": hashlib.sha256(payload).hexdigest(),
                    },
                    "signatures": [{"signature": b64(signature), "verifier": b64(pem)}],
                },
            },
            separators=(",", ":"),
        ).encode()
        certificate_der = certificate.public_bytes(serialization.Encoding.DER)
        return {
            "mediaType": DSSE_MEDIA_TYPE,
            "verificationMaterial": {
                "certificate": {"rawBytes": b64(certificate_der)},
                "tlogEntries": [self._log_entry(body, int(signed_at.timestamp()) + 1)],
            },
            "dsseEnvelope": envelope,
        }

    def _log_entry(self, body: bytes, integrated_time: int) -> dict[str, Any]:
        """The entry of ``body`` as the only leaf of a Rekor tree: inclusion proof, signed
        checkpoint and inclusion promise."""
        log_id = hashlib.sha256(_spki(self.rekor_key)).digest()
        root_hash = hashlib.sha256(b"\x00" + body).digest()  # a one-leaf tree: the leaf hash
        note = f"rekor.{self.name}.example - 1\n1\n{b64(root_hash)}\n"
        note_signature = b64(log_id[:4] + _sign(self.rekor_key, note.encode()))
        promise = {
            "body": b64(body),
            "integratedTime": integrated_time,
            "logID": log_id.hex(),
            "logIndex": 0,
        }
        return {
            "logIndex": "0",
            "logId": {"keyId": b64(log_id)},
            "kindVersion": {"kind": "dsse", "version": "0.0.1"},
            "integratedTime": str(integrated_time),
            "inclusionPromise": {
                "signedEntryTimestamp": b64(_sign(self.rekor_key, _canonical(promise)))
            },
            "inclusionProof": {
                "logIndex": "0",
                "rootHash": b64(root_hash),
                "treeSize": "1",
                "hashes": [],
                "checkpoint": {
                    "envelope": f"{note}\n\u2014 rekor.{self.name}.example {note_signature}\n"
                },
            },
            "canonicalizedBody": b64(body),
        }


def _canonical(value: dict[str, Any]) -> bytes:
    """RFC 8785 JSON of an object of ASCII strings and integers (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded
