"""DSSE envelopes signed with trusted public keys.

A DSSE envelope (https://github.com/secure-systems-lab/dsse) carries a payload, its
type and one or more signatures. :func:`verify_dsse` checks the signatures against the
keys of a :class:`DsseTrust` and returns the verified payload bytes; what the payload
means (an in-toto statement, a link...) is for the caller to parse.

Signing modes, decided per trusted key:

* ``pae`` (the default, the DSSE specification): the signature covers the
  pre-authentication encoding ``"DSSEv1" SP len(type) SP type SP len(payload) SP payload``,
  so the payload type is signed too.
* ``raw_payload``: the signature covers the payload bytes alone. Google Cloud Build's
  ``builtByGCB`` keys sign this way; only a trust entry that opts in accepts it.

The envelope's base64 text must use exactly one alphabet, declared by the evidence
(``standard`` or ``urlsafe``, both with ``=`` padding).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, ClassVar, Final, Literal, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from pydantic import (
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from attestpolicy._keys import PublicKey, load_public_key
from attestpolicy._model import FrozenModel
from attestpolicy.claims import parse_timestamp
from attestpolicy.evidence._common import (
    LARGE_SECTION_CHARS,
    Code,
    EvidenceSection,
    decode_base64,
    fail,
    require_utc,
)
from attestpolicy.evidence._crypto.x509 import fingerprint
from attestpolicy.evidence._validity import valid_until

__all__ = [
    "IN_TOTO_PAYLOAD_TYPE",
    "MAX_PAYLOAD_CHARS",
    "Base64Alphabet",
    "DsseEnvelope",
    "DsseEvidence",
    "DsseSignature",
    "DsseTrust",
    "SignatureAlgorithm",
    "SigningMode",
    "TrustedKey",
    "VerifiedDsse",
    "b64decode_strict",
    "pae",
    "require_aware",
    "verify_dsse",
]

IN_TOTO_PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
"""The payload type of in-toto statements and links."""

MAX_PAYLOAD_CHARS: Final = 4 * 1024 * 1024
"""Largest accepted base64 payload, in characters (4 MiB, about 3 MiB of JSON)."""

_MAX_SIGNATURES = 16
_MAX_KEYS = 64
_MAX_SIG_CHARS = 8192
_MAX_KEYID_CHARS = 1024
_MAX_PEM_CHARS = 16384
_MAX_PAYLOAD_TYPE_CHARS = 256

Base64Alphabet = Literal["standard", "urlsafe"]
"""``standard`` is RFC 4648 section 4 (``+/``), ``urlsafe`` section 5 (``-_``); both padded."""

SigningMode = Literal["pae", "raw_payload"]
"""What a key's signatures cover: the DSSE pre-authentication encoding, or the payload only."""

SignatureAlgorithm = Literal[
    "ecdsa-p256-sha256",
    "ecdsa-p384-sha384",
    "rsa-pkcs1v15-sha256",
    "rsa-pss-sha256",
    "ed25519",
]
"""Accepted signature algorithms; the key type and curve must match the algorithm."""

_CURVES: Final[dict[str, tuple[type[ec.EllipticCurve], hashes.HashAlgorithm]]] = {
    "ecdsa-p256-sha256": (ec.SECP256R1, hashes.SHA256()),
    "ecdsa-p384-sha384": (ec.SECP384R1, hashes.SHA384()),
}


def require_aware(now: datetime) -> datetime:
    """Return ``now`` as UTC; a naive datetime is a programming error (``ValueError``)."""
    return require_utc(now)


def b64decode_strict(text: str, alphabet: Base64Alphabet, *, field: str) -> bytes:
    """Decode canonical padded base64 of exactly one alphabet; else ``evidence.malformed``."""
    return decode_base64(text, field=field, alphabet=alphabet)


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding of ``payload_type`` and ``payload``."""
    type_bytes = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


# --- evidence ------------------------------------------------------------------


class DsseSignature(FrozenModel):
    """One envelope signature; ``keyid`` is an unauthenticated hint."""

    keyid: Annotated[StrictStr, Field(max_length=_MAX_KEYID_CHARS)] = ""
    sig: Annotated[StrictStr, Field(min_length=1, max_length=_MAX_SIG_CHARS)]


class DsseEnvelope(FrozenModel):
    """A DSSE envelope exactly as the signing tool wrote it (JSON field names)."""

    model_config = ConfigDict(
        validate_by_alias=True, validate_by_name=True, serialize_by_alias=True
    )

    payload_type: Annotated[
        StrictStr, Field(alias="payloadType", min_length=1, max_length=_MAX_PAYLOAD_TYPE_CHARS)
    ]
    payload: Annotated[StrictStr, Field(max_length=MAX_PAYLOAD_CHARS)]
    signatures: Annotated[
        tuple[DsseSignature, ...], Field(min_length=1, max_length=_MAX_SIGNATURES)
    ]


class DsseEvidence(EvidenceSection):
    """The evidence section for a key-signed DSSE envelope.

    ``base64_alphabet`` says how the envelope's ``payload`` and ``sig`` values are
    encoded (Cloud Build writes ``urlsafe``; most tools write ``standard``).
    """

    _max_chars: ClassVar[int] = LARGE_SECTION_CHARS

    envelope: DsseEnvelope
    base64_alphabet: Base64Alphabet = "standard"


# --- trust ---------------------------------------------------------------------


class TrustedKey(FrozenModel):
    """A public key trusted to sign DSSE envelopes.

    ``key_id``, when set, must equal a signature's ``keyid`` hint (when the signature
    carries one) for the key to be tried. ``signature_format`` applies to ECDSA only:
    ``der`` (ASN.1 SEQUENCE of r, s) or ``raw`` (fixed-width big-endian r || s).
    ``not_before`` / ``not_after`` bound when the key is accepted (checked at ``now``).
    """

    key_id: Annotated[StrictStr, Field(min_length=1, max_length=_MAX_KEYID_CHARS)] | None = None
    public_key: Annotated[StrictStr, Field(min_length=1, max_length=_MAX_PEM_CHARS)]
    algorithm: SignatureAlgorithm
    signature_format: Literal["der", "raw"] = "der"
    signing_mode: SigningMode = "pae"
    not_before: datetime | None = None
    not_after: datetime | None = None

    _key: PublicKey = PrivateAttr()
    _fingerprint: str = PrivateAttr()

    @field_validator("not_before", "not_after", mode="before")
    @classmethod
    def _aware(cls, value: object) -> object:
        return None if value is None else parse_timestamp(value)

    @model_validator(mode="after")
    def _load_key(self) -> Self:
        key = load_public_key(self.public_key, what="public_key")
        if self.algorithm in _CURVES:
            curve, _ = _CURVES[self.algorithm]
            if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, curve):
                raise ValueError(f"public_key does not fit algorithm {self.algorithm}")
        elif self.algorithm.startswith("rsa-"):
            if not isinstance(key, rsa.RSAPublicKey):
                raise ValueError(f"public_key does not fit algorithm {self.algorithm}")
        elif not isinstance(key, ed25519.Ed25519PublicKey):
            raise ValueError("public_key does not fit algorithm ed25519")
        if self.signature_format == "raw" and self.algorithm not in _CURVES:
            raise ValueError("signature_format 'raw' applies to ECDSA keys only")
        if self.not_before and self.not_after and self.not_before > self.not_after:
            raise ValueError("not_before is after not_after")
        self._key = key
        self._fingerprint = fingerprint(key)
        return self

    @property
    def fingerprint(self) -> str:
        """``sha256:<hex>`` of the key's DER SubjectPublicKeyInfo."""
        return self._fingerprint

    @property
    def name(self) -> str:
        """The key's ``key_id``, or its fingerprint when it has none."""
        return self.key_id or self._fingerprint

    def verifies(self, signature: bytes, payload_type: str, payload: bytes) -> bool:
        """Whether ``signature`` is this key's signature over the envelope contents."""
        message = payload if self.signing_mode == "raw_payload" else pae(payload_type, payload)
        key = self._key
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                _, digest = _CURVES[self.algorithm]
                if self.signature_format == "raw":
                    signature = _raw_to_der(signature, key.curve.key_size)
                key.verify(signature, message, ec.ECDSA(digest))
            elif isinstance(key, rsa.RSAPublicKey):
                pad: padding.AsymmetricPadding = (
                    padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO)
                    if self.algorithm == "rsa-pss-sha256"
                    else padding.PKCS1v15()
                )
                key.verify(signature, message, pad, hashes.SHA256())
            else:
                key.verify(signature, message)
        except (InvalidSignature, ValueError, TypeError, OverflowError):
            return False
        return True


def _raw_to_der(signature: bytes, curve_bits: int) -> bytes:
    width = (curve_bits + 7) // 8
    if len(signature) != 2 * width:
        raise ValueError("raw ECDSA signature has the wrong length")
    r = int.from_bytes(signature[:width], "big")
    s = int.from_bytes(signature[width:], "big")
    return utils.encode_dss_signature(r, s)


class DsseTrust(FrozenModel):
    """Keys trusted for DSSE envelopes, and how many distinct keys must have signed.

    Keys with the same public key material count once towards ``threshold``.
    """

    keys: Annotated[tuple[TrustedKey, ...], Field(min_length=1, max_length=_MAX_KEYS)]
    threshold: Annotated[StrictInt, Field(ge=1, le=_MAX_SIGNATURES)] = 1
    payload_types: Annotated[
        tuple[Annotated[StrictStr, Field(min_length=1, max_length=256)], ...],
        Field(min_length=1, max_length=16),
    ] = (IN_TOTO_PAYLOAD_TYPE,)

    @model_validator(mode="after")
    def _reachable(self) -> Self:
        if len({key.fingerprint for key in self.keys}) < self.threshold:
            raise ValueError("threshold is larger than the number of distinct keys")
        return self


# --- verification --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedDsse:
    """A DSSE envelope whose signatures met the trust threshold."""

    payload_type: str
    payload: bytes
    key_ids: tuple[str, ...]
    """Names (``key_id`` or fingerprint) of the distinct trusted keys that signed."""


def verify_dsse(evidence: DsseEvidence, trust: DsseTrust, *, now: datetime) -> VerifiedDsse:
    """Verify a DSSE envelope's signatures against trusted keys.

    Raises :class:`~attestpolicy.errors.EvidenceError` with code ``evidence.unsupported``
    (payload type not accepted), ``evidence.malformed`` (bad base64),
    ``evidence.untrusted`` (no signature names a trusted key), ``evidence.expired``
    (only keys outside their validity at ``now`` signed) or ``evidence.signature_invalid``.
    """
    now = require_aware(now)
    envelope = evidence.envelope
    alphabet = evidence.base64_alphabet
    if envelope.payload_type not in trust.payload_types:
        fail(
            Code.UNSUPPORTED,
            "envelope.payloadType",
            f"payload type {envelope.payload_type[:80]!r} is not accepted",
        )
    payload = b64decode_strict(envelope.payload, alphabet, field="envelope.payload")
    signatures = [
        (sig.keyid, b64decode_strict(sig.sig, alphabet, field=f"envelope.signatures[{i}].sig"))
        for i, sig in enumerate(envelope.signatures)
    ]
    verified: dict[str, str] = {}
    expired = False
    tried = False
    for keyid, signature in signatures:
        for key in trust.keys:
            if key.fingerprint in verified:
                continue
            if key.key_id is not None and keyid and keyid != key.key_id:
                continue
            tried = True
            if not key.verifies(signature, envelope.payload_type, payload):
                continue
            if (key.not_before and now < key.not_before) or (key.not_after and now > key.not_after):
                expired = True
                continue
            if key.not_after:
                valid_until(key.not_after)
            verified[key.fingerprint] = key.name
    if len(verified) >= trust.threshold:
        return VerifiedDsse(envelope.payload_type, payload, tuple(verified.values()))
    if expired:
        fail(Code.EXPIRED, "envelope.signatures", "the signing key is outside its validity window")
    if not tried:
        fail(Code.UNTRUSTED, "envelope.signatures", "no signature names a trusted key id")
    fail(
        Code.SIGNATURE_INVALID,
        "envelope.signatures",
        f"{len(verified)} of the required {trust.threshold} trusted key(s) signed the envelope",
    )
