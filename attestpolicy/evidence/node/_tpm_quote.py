"""The checks on one TPM 2.0 quote, shared by the TPM and Azure SNP-vTPM verifiers.

Parse TPMS_ATTEST and TPMT_SIGNATURE, verify the signature with the AK, compare the nonce
(extraData) in constant time and recompute pcrDigest from the supplied PCR values. Quirk:
pcrDigest is computed with the hash of the *signature scheme*, not of the PCR bank.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from attestpolicy.evidence._common import Code, fail
from attestpolicy.evidence.node._tpm_structs import (
    ALG_ECDSA,
    ALG_NULL,
    ALG_RSAPSS,
    ALG_RSASSA,
    Attest,
    PublicArea,
    Signature,
    parse_attest,
    parse_signature,
)

__all__ = ["QuoteInput", "verify_quote"]


@dataclass(frozen=True, slots=True)
class QuoteInput:
    """One quote to check: raw TPMS_ATTEST, raw TPMT_SIGNATURE, PCR values by bank/index."""

    attest: bytes
    signature: bytes
    pcrs: dict[str, dict[int, bytes]]
    field: str


def verify_quote(
    quote: QuoteInput,
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    *,
    public_area: PublicArea | None,
    allow_sha1: bool,
    nonce: bytes | None,
    measurements: dict[str, str],
) -> None:
    """Check one quote's signature, nonce and PCR digest; add its PCRs to ``measurements``.

    ``nonce`` None skips the nonce check (the caller reports ``nonce_verified=False``).
    """
    attest = parse_attest(quote.attest, f"{quote.field}.attest")
    signature = parse_signature(quote.signature, f"{quote.field}.signature")
    _check_signature(quote, signature, public_area, key, allow_sha1)
    if nonce is not None and not hmac.compare_digest(attest.extra_data, nonce):
        fail(
            Code.NONCE_MISMATCH,
            f"{quote.field}.nonce",
            "the quote does not carry the expected nonce",
        )
    _check_pcrs(quote, attest, signature, measurements)


def _check_signature(
    quote: QuoteInput,
    signature: Signature,
    public_area: PublicArea | None,
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    allow_sha1: bool,
) -> None:
    field = f"{quote.field}.signature"
    if signature.hash.name == "sha1" and not allow_sha1:
        fail(Code.UNSUPPORTED, field, "SHA-1 quote signatures are not allowed (trust.allow_sha1)")
    if public_area is not None and public_area.scheme != ALG_NULL:
        fixed = (public_area.scheme, public_area.scheme_hash)
        if fixed != (signature.sig_alg, signature.hash):
            fail(
                Code.SIGNATURE_INVALID, field, "signature scheme differs from the AK's fixed scheme"
            )
    digest = signature.hash.new()
    try:
        if isinstance(key, rsa.RSAPublicKey) and signature.sig_alg == ALG_RSASSA:
            key.verify(signature.value, quote.attest, padding.PKCS1v15(), digest)
        elif isinstance(key, rsa.RSAPublicKey) and signature.sig_alg == ALG_RSAPSS:
            pss = padding.PSS(mgf=padding.MGF1(signature.hash.new()), salt_length=padding.PSS.AUTO)
            key.verify(signature.value, quote.attest, pss, digest)
        elif isinstance(key, ec.EllipticCurvePublicKey) and signature.sig_alg == ALG_ECDSA:
            key.verify(signature.value, quote.attest, ec.ECDSA(digest))
        else:
            fail(Code.SIGNATURE_INVALID, field, "signature scheme does not match the AK's key type")
    except (InvalidSignature, ValueError):
        fail(Code.SIGNATURE_INVALID, field, "the quote signature does not verify with the AK")


def _check_pcrs(
    quote: QuoteInput, attest: Attest, signature: Signature, measurements: dict[str, str]
) -> None:
    """Recompute pcrDigest over the supplied values; it uses the *signing* hash."""
    field = f"{quote.field}.pcrs"
    selected = {(bank.hash.name, index) for bank in attest.pcr_select for index in bank.indices}
    supplied = {(bank, index) for bank, values in quote.pcrs.items() for index in values}
    for bank, index in sorted(supplied - selected):
        fail(Code.MALFORMED, field, f"PCR {bank}.{index} is not covered by the quote")
    for bank, index in sorted(selected - supplied):
        fail(Code.MALFORMED, field, f"PCR {bank}.{index} is quoted but its value is missing")
    digest = hashes.Hash(signature.hash.new())
    for selection in attest.pcr_select:
        for index in selection.indices:
            value = quote.pcrs[selection.hash.name][index]
            if len(value) != selection.hash.size:
                fail(Code.MALFORMED, field, f"PCR {selection.hash.name}.{index} has the wrong size")
            digest.update(value)
    if not hmac.compare_digest(digest.finalize(), attest.pcr_digest):
        fail(Code.DIGEST_MISMATCH, field, "the PCR values do not match the quote's pcrDigest")
    for bank, values in quote.pcrs.items():
        for index, value in values.items():
            name = f"pcr.{bank}.{index}"
            if measurements.setdefault(name, value.hex()) != value.hex():
                fail(Code.MALFORMED, field, f"quotes disagree on {name}")
