"""TPM 2.0 quote verification: evidence section, trust anchors and ``verify_tpm``.

A quote (TPMS_ATTEST signed by an attestation key, AK) proves the values of the selected
PCRs at the time the TPM signed it. ``verify_tpm`` checks the AK (pinned key, or an AK
certificate that chains to a configured root), the signature, the nonce and the PCR
digest, and returns a :class:`~attestpolicy.claims.Node` of kind ``tpm`` whose
measurements are the quoted PCR values, named ``pcr.<bank>.<index>``.

A quote proves nothing unless its AK is a restricted signing key held by the TPM (an
unrestricted key signs any TPMS_ATTEST its host makes up). An AK trusted through its
certificate must therefore come with its public area (TPMT_PUBLIC), whose key must be the
certificate's and whose attributes must be an AK's (fixedTPM, fixedParent, restricted,
sign; no decrypt, no x509sign). A pinned AK is vouched for by the pin itself.

The TPM has no wall clock: ``issued_at`` is the evidence document's ``collected_at``
(asserted by whoever collected the quote, not by the TPM); freshness comes from the
nonce. See docs/evidence/node-tpm-cc.md for the formats and every error code.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, ClassVar, Final, Literal, Self

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from pydantic import (
    AfterValidator,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)

from attestpolicy._model import FrozenModel
from attestpolicy.claims import Node
from attestpolicy.evidence._common import Base64Bytes, Code, PemText, fail, require_utc
from attestpolicy.evidence._crypto.x509 import (
    certificate_from_der,
    certificate_from_pem,
    checked_certificate_pem,
    checked_public_key_pem,
    fingerprint,
    public_key_from_pem,
    spki_der,
    verify_chain,
)
from attestpolicy.evidence.node._collected import CollectedSection
from attestpolicy.evidence.node._tpm_protobuf import parse_go_tpm_attestation
from attestpolicy.evidence.node._tpm_quote import QuoteInput, verify_quote
from attestpolicy.evidence.node._tpm_structs import HASHES, PublicArea, parse_public

__all__ = ["TpmEvidence", "TpmQuote", "TpmTrust", "verify_tpm"]

MAX_ATTESTATION_BYTES: Final = 1024 * 1024
"""Largest go-tpm-tools attestation accepted (event logs make up most of it)."""

_MAX_STRUCT = 1024

PcrBank = Literal["sha1", "sha256", "sha384", "sha512"]
PcrIndex = Annotated[str, StringConstraints(pattern=r"^(?:[0-9]|[12][0-9]|3[01])$")]
PcrValue = Annotated[Base64Bytes, Field(min_length=20, max_length=64)]
TpmStruct = Annotated[Base64Bytes, Field(min_length=1, max_length=_MAX_STRUCT)]


class TpmQuote(FrozenModel):
    """One quote: the TPMS_ATTEST, its TPMT_SIGNATURE and the PCR values it covers."""

    attest: TpmStruct
    """TPMS_ATTEST exactly as signed (the contents of TPM2B_ATTEST), base64."""
    signature: TpmStruct
    """TPMT_SIGNATURE (RSASSA, RSAPSS or ECDSA), base64."""
    pcrs: Annotated[
        dict[PcrBank, Annotated[dict[PcrIndex, PcrValue], Field(max_length=32)]],
        Field(min_length=1, max_length=4),
    ]
    """PCR values by bank then index ("0".."31"), base64; exactly the quoted selection."""


class TpmEvidence(CollectedSection):
    """The ``tpm`` section of an evidence document.

    Either ``quotes`` with at least one of ``ak_public``, ``ak_public_pem`` and
    ``ak_certificate``, or a whole go-tpm-tools ``go_tpm_tools_attestation`` alone.
    An AK certificate checked against trusted CAs needs ``ak_public`` too.
    Binary values are standard base64 (RFC 4648 section 4, with padding).
    """

    _field_prefix: ClassVar[str] = "tpm"

    ak_public: TpmStruct | None = None
    """The AK's TPMT_PUBLIC area, base64: an attestation key's attributes (fixedTPM,
    fixedParent, restricted, sign). Required with an ``ak_certificate`` trusted via CAs."""
    ak_public_pem: PemText | None = None
    ak_certificate: PemText | None = None
    ak_intermediates: Annotated[tuple[PemText, ...], Field(max_length=8)] = ()
    quotes: Annotated[tuple[TpmQuote, ...], Field(max_length=8)] = ()
    go_tpm_tools_attestation: (
        Annotated[Base64Bytes, Field(min_length=1, max_length=MAX_ATTESTATION_BYTES)] | None
    ) = None
    """A serialized go-tpm-tools ``attest.Attestation`` protobuf message, base64."""

    @model_validator(mode="after")
    def _one_shape(self) -> Self:
        direct = (
            self.ak_public,
            self.ak_public_pem,
            self.ak_certificate,
            self.ak_intermediates or None,
            self.quotes or None,
        )
        if self.go_tpm_tools_attestation is not None:
            if any(part is not None for part in direct):
                raise ValueError("go_tpm_tools_attestation cannot be combined with quotes or AKs")
        else:
            if not self.quotes:
                raise ValueError("give quotes or a go_tpm_tools_attestation")
            if self.ak_public is None and self.ak_public_pem is None and not self.ak_certificate:
                raise ValueError("give the AK as ak_public, ak_public_pem or ak_certificate")
        return self


class TpmTrust(FrozenModel):
    """Trust anchors for TPM quotes: pinned AK public keys and/or AK certificate roots."""

    ak_public_keys: Annotated[
        tuple[Annotated[PemText, AfterValidator(checked_public_key_pem)], ...],
        Field(max_length=256),
    ] = ()
    """Pinned AKs, PEM SubjectPublicKeyInfo."""
    ca_certificates: Annotated[
        tuple[Annotated[PemText, AfterValidator(checked_certificate_pem)], ...],
        Field(max_length=64),
    ] = ()
    """Roots an AK certificate must chain to (the evidence then gives the AK's TPMT_PUBLIC
    too). Trust only CAs that certify attestation keys: restricted TPM signing keys."""
    intermediate_certificates: Annotated[
        tuple[Annotated[PemText, AfterValidator(checked_certificate_pem)], ...],
        Field(max_length=64),
    ] = ()
    """Untrusted intermediates offered to the chain builder (the evidence may add more)."""
    allow_sha1: StrictBool = False
    """Accept quotes signed with a SHA-1 scheme (legacy AKs, e.g. Windows Shielded VMs)."""

    @model_validator(mode="after")
    def _has_anchor(self) -> Self:
        if not self.ak_public_keys and not self.ca_certificates:
            raise ValueError("give ak_public_keys or ca_certificates")
        return self


@dataclass(frozen=True, slots=True)
class _Material:
    ak_public: bytes | None
    ak_public_pem: str | None
    ak_certificate: x509.Certificate | None
    intermediates: tuple[x509.Certificate, ...]
    quotes: tuple[QuoteInput, ...]
    prefix: str


def verify_tpm(
    evidence: TpmEvidence, trust: TpmTrust, *, now: datetime, nonce: bytes | None = None
) -> Node:
    """Verify TPM 2.0 quotes and return the node claim (kind ``tpm``).

    ``nonce`` is the expected qualifying data (extraData) the verifier handed out for this
    request; without it the quote is verified but ``nonce_verified`` is false. ``now``
    (aware) is only used for AK certificate validity. Raises :class:`EvidenceError`.
    """
    now = require_utc(now)
    if nonce is not None and not nonce:
        fail(Code.NONCE_MISMATCH, "quotes.nonce", "the expected nonce is empty")
    material = _material(evidence)
    public_area, key, key_field = _attestation_key(material)
    _trust_key(material, public_area, key, key_field, trust, now)
    measurements: dict[str, str] = {}
    for quote in material.quotes:
        verify_quote(
            quote,
            key,
            public_area=public_area,
            allow_sha1=trust.allow_sha1,
            nonce=nonce,
            measurements=measurements,
        )
    measurements = dict(sorted(measurements.items(), key=_pcr_order))
    return evidence.verified_node("tpm", fingerprint(key), nonce, measurements)


def _pcr_order(item: tuple[str, str]) -> tuple[str, int]:
    _, bank, index = item[0].split(".")
    return bank, int(index)


def _by_index(values: Mapping[str, bytes]) -> dict[int, bytes]:
    return {int(index): value for index, value in values.items()}


def _material(evidence: TpmEvidence) -> _Material:
    raw = evidence.go_tpm_tools_attestation
    if raw is None:
        return _Material(
            ak_public=evidence.ak_public,
            ak_public_pem=evidence.ak_public_pem,
            ak_certificate=(
                certificate_from_pem(evidence.ak_certificate, "ak_certificate")
                if evidence.ak_certificate
                else None
            ),
            intermediates=tuple(
                certificate_from_pem(pem, f"ak_intermediates[{index}]")
                for index, pem in enumerate(evidence.ak_intermediates)
            ),
            quotes=tuple(
                QuoteInput(
                    quote.attest,
                    quote.signature,
                    {bank: _by_index(values) for bank, values in quote.pcrs.items()},
                    f"quotes[{index}]",
                )
                for index, quote in enumerate(evidence.quotes)
            ),
            prefix="",
        )
    prefix = "go_tpm_tools_attestation"
    parsed = parse_go_tpm_attestation(raw, prefix)
    quotes = []
    for index, quote in enumerate(parsed.quotes):
        field = f"{prefix}.quotes[{index}]"
        bank = HASHES.get(quote.hash_alg)
        if bank is None:
            fail(
                Code.UNSUPPORTED,
                f"{field}.pcrs",
                f"PCR bank 0x{quote.hash_alg:04x} is not supported",
            )
        quotes.append(QuoteInput(quote.quote, quote.raw_sig, {bank.name: quote.pcrs}, field))
    return _Material(
        ak_public=parsed.ak_pub,
        ak_public_pem=None,
        ak_certificate=(
            certificate_from_der(parsed.ak_cert, f"{prefix}.ak_cert") if parsed.ak_cert else None
        ),
        intermediates=tuple(
            certificate_from_der(der, f"{prefix}.intermediate_certs[{index}]")
            for index, der in enumerate(parsed.intermediate_certs)
        ),
        quotes=tuple(quotes),
        prefix=f"{prefix}.",
    )


def _attestation_key(
    material: _Material,
) -> tuple[PublicArea | None, rsa.RSAPublicKey | ec.EllipticCurvePublicKey, str]:
    """The AK from every form the evidence gives (all must be the same key), and the field
    it was first found in."""
    prefix = material.prefix
    candidates: list[tuple[str, PublicKeyTypes]] = []
    public_area = None
    if material.ak_public is not None:
        public_area = parse_public(material.ak_public, f"{prefix}ak_public")
        candidates.append((f"{prefix}ak_public", public_area.key))
    if material.ak_public_pem is not None:
        field = f"{prefix}ak_public_pem"
        candidates.append((field, public_key_from_pem(material.ak_public_pem, field)))
    if material.ak_certificate is not None:
        field = f"{prefix}ak_certificate" if not prefix else f"{prefix}ak_cert"
        try:
            candidates.append((field, material.ak_certificate.public_key()))
        except (ValueError, UnsupportedAlgorithm) as exc:
            fail(Code.UNSUPPORTED, field, f"certificate key cannot be used: {exc}")
    if not candidates:
        fail(Code.MALFORMED, f"{prefix}ak_public", "the evidence gives no AK")
    first_field, first_key = candidates[0]
    for field, key in candidates[1:]:
        if not hmac.compare_digest(spki_der(key), spki_der(first_key)):
            fail(Code.IDENTITY_MISMATCH, field, f"this AK is not the same key as {first_field}")
    if not isinstance(first_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        fail(Code.UNSUPPORTED, first_field, "the AK is neither an RSA nor an ECC key")
    return public_area, first_key, first_field


def _trust_key(
    material: _Material,
    public_area: PublicArea | None,
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    key_field: str,
    trust: TpmTrust,
    now: datetime,
) -> None:
    """The AK must chain to a configured root (when certified) or be pinned.

    A certified AK also needs its TPMT_PUBLIC (already checked to be an AK's, and to hold
    the certificate's key, by :func:`_attestation_key`): the certificate names a key, the
    public area says how the TPM holds it.
    """
    prefix = material.prefix
    if material.ak_certificate is not None and trust.ca_certificates:
        if public_area is None:
            fail(
                Code.MALFORMED,
                f"{prefix}ak_public",
                "an AK trusted through its certificate needs its TPMT_PUBLIC (ak_public): the "
                "certificate vouches for the key, the public area shows it is a restricted "
                "signing key held by the TPM",
            )
        field = f"{prefix}ak_certificate.chain" if not prefix else f"{prefix}ak_cert.chain"
        intermediates = list(material.intermediates) + [
            certificate_from_pem(pem, "trust.intermediate_certificates")
            for pem in trust.intermediate_certificates
        ]
        roots = [
            certificate_from_pem(pem, "trust.ca_certificates") for pem in trust.ca_certificates
        ]
        verify_chain(material.ak_certificate, intermediates, roots, now=now, field=field)
        return
    spki = spki_der(key)
    for pem in trust.ak_public_keys:
        pinned = public_key_from_pem(pem, "trust.ak_public_keys")
        if hmac.compare_digest(spki_der(pinned), spki):
            return
    fail(
        Code.UNTRUSTED,
        key_field,
        "the AK is neither pinned in the trust configuration nor certified by a trusted CA",
    )
