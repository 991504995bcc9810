"""Strict, bounded parsers for the TPM 2.0 structures a quote is made of.

TPMS_ATTEST (quote), TPMT_SIGNATURE (RSASSA, RSAPSS, ECDSA) and TPMT_PUBLIC (RSA and ECC
signing keys), as marshalled by the TPM (TPM 2.0 Library, Part 2: big-endian, ``TPM2B``
= 16-bit size + bytes). Every size is checked against the structure's limit before it is
read and trailing bytes are rejected, so a parser touches at most its input once.
Every failure raises :class:`~attestpolicy.errors.EvidenceError` naming ``field``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from attestpolicy.evidence._common import Code, fail
from attestpolicy.evidence.node._byte_reader import ByteReader

__all__ = [
    "ALG_ECDSA",
    "ALG_NULL",
    "ALG_RSAPSS",
    "ALG_RSASSA",
    "HASHES",
    "Attest",
    "HashAlg",
    "PcrSelection",
    "PublicArea",
    "Signature",
    "parse_attest",
    "parse_public",
    "parse_signature",
]

TPM_GENERATED_VALUE: Final = 0xFF544347
TPM_ST_ATTEST_QUOTE: Final = 0x8018

ALG_RSA: Final = 0x0001
ALG_NULL: Final = 0x0010
ALG_RSASSA: Final = 0x0014
ALG_RSAPSS: Final = 0x0016
ALG_ECDSA: Final = 0x0018
ALG_ECC: Final = 0x0023

_ATTR_FIXED_TPM: Final = 1 << 1
_ATTR_FIXED_PARENT: Final = 1 << 4
_ATTR_RESTRICTED: Final = 1 << 16
_ATTR_DECRYPT: Final = 1 << 17
_ATTR_SIGN: Final = 1 << 18
_ATTR_X509_SIGN: Final = 1 << 19
_ATTR_RESERVED: Final = 0xFFF0F309  # bits 0, 3, 8-9, 12-15 and 20-31

_MAX_NAME: Final = 2 + 64  # TPMU_NAME: a TPMT_HA (alg + largest digest)
_MAX_DATA: Final = 2 + 64  # TPM2B_DATA: sizeof(TPMT_HA)
_MAX_DIGEST: Final = 64
_MAX_RSA_BYTES: Final = 512
_MAX_ECC_BYTES: Final = 66
_MAX_BANKS: Final = 16  # HASH_COUNT upper bound
_MAX_SELECT_BYTES: Final = 4  # 32 PCRs


@dataclass(frozen=True, slots=True)
class HashAlg:
    """A TPM hash algorithm: its TPM_ALG_ID, PCR bank name and ``cryptography`` twin."""

    alg_id: int
    name: str
    size: int

    def new(self) -> hashes.HashAlgorithm:
        """A fresh ``cryptography`` hash object for this algorithm."""
        return _HASH_FACTORIES[self.name]()


_HASH_FACTORIES: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

HASHES: Final[dict[int, HashAlg]] = {
    0x0004: HashAlg(0x0004, "sha1", 20),
    0x000B: HashAlg(0x000B, "sha256", 32),
    0x000C: HashAlg(0x000C, "sha384", 48),
    0x000D: HashAlg(0x000D, "sha512", 64),
}
"""Supported TPM_ALG_ID hash values (SM3 and SHA-3 banks are not supported)."""

_CURVES: Final[dict[int, ec.EllipticCurve]] = {
    0x0003: ec.SECP256R1(),
    0x0004: ec.SECP384R1(),
    0x0005: ec.SECP521R1(),
}


@dataclass(frozen=True, slots=True)
class PcrSelection:
    """One bank of a TPML_PCR_SELECTION: its hash and the selected PCR indices, ascending."""

    hash: HashAlg
    indices: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Attest:
    """A parsed TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE."""

    qualified_signer: bytes
    extra_data: bytes
    clock: int
    reset_count: int
    restart_count: int
    safe: bool
    firmware_version: int
    pcr_select: tuple[PcrSelection, ...]
    pcr_digest: bytes


@dataclass(frozen=True, slots=True)
class Signature:
    """A parsed TPMT_SIGNATURE; ``value`` is the raw RSA signature or DER ECDSA (r, s)."""

    sig_alg: int
    hash: HashAlg
    value: bytes


@dataclass(frozen=True, slots=True)
class PublicArea:
    """A parsed TPMT_PUBLIC of a restricted signing key (an attestation key)."""

    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    object_attributes: int
    scheme: int
    scheme_hash: HashAlg | None


class _Reader(ByteReader):
    """Big-endian TPM marshalling, plus ``TPM2B`` and hash algorithm fields."""

    __slots__ = ()

    def __init__(self, data: bytes, field: str) -> None:
        super().__init__(data, field, byteorder="big")

    def tpm2b(self, limit: int, what: str) -> bytes:
        size = self.u16(f"{what} size")
        if size > limit:
            fail(
                Code.MALFORMED, self._field, f"{what} is {size} bytes, over its {limit} byte limit"
            )
        return self.take(size, what)

    def hash_alg(self, what: str) -> HashAlg:
        alg_id = self.u16(what)
        alg = HASHES.get(alg_id)
        if alg is None:
            fail(Code.UNSUPPORTED, self._field, f"{what} 0x{alg_id:04x} is not a supported hash")
        return alg


def parse_attest(data: bytes, field: str) -> Attest:
    """Parse a quote's TPMS_ATTEST; reject other magic values, types and trailing bytes."""
    reader = _Reader(data, field)
    magic = reader.u32("magic")
    if magic != TPM_GENERATED_VALUE:
        fail(Code.MALFORMED, field, f"magic 0x{magic:08x} is not TPM_GENERATED_VALUE")
    attest_type = reader.u16("type")
    if attest_type != TPM_ST_ATTEST_QUOTE:
        fail(Code.MALFORMED, field, f"type 0x{attest_type:04x} is not TPM_ST_ATTEST_QUOTE")
    qualified_signer = reader.tpm2b(_MAX_NAME, "qualifiedSigner")
    extra_data = reader.tpm2b(_MAX_DATA, "extraData")
    clock = reader.u64("clockInfo.clock")
    reset_count = reader.u32("clockInfo.resetCount")
    restart_count = reader.u32("clockInfo.restartCount")
    safe = reader.u8("clockInfo.safe")
    if safe not in (0, 1):
        fail(Code.MALFORMED, field, f"clockInfo.safe is {safe}, not a TPMI_YES_NO")
    firmware_version = reader.u64("firmwareVersion")
    pcr_select = _pcr_selection(reader, field)
    pcr_digest = reader.tpm2b(_MAX_DIGEST, "pcrDigest")
    reader.end()
    return Attest(
        qualified_signer=qualified_signer,
        extra_data=extra_data,
        clock=clock,
        reset_count=reset_count,
        restart_count=restart_count,
        safe=bool(safe),
        firmware_version=firmware_version,
        pcr_select=pcr_select,
        pcr_digest=pcr_digest,
    )


def _pcr_selection(reader: _Reader, field: str) -> tuple[PcrSelection, ...]:
    count = reader.u32("pcrSelect.count")
    if count > _MAX_BANKS:
        fail(Code.MALFORMED, field, f"pcrSelect has {count} banks, over the limit of {_MAX_BANKS}")
    banks: list[PcrSelection] = []
    for _ in range(count):
        alg = reader.hash_alg("pcrSelect.hash")
        size = reader.u8("pcrSelect.sizeofSelect")
        if not 1 <= size <= _MAX_SELECT_BYTES:
            fail(Code.MALFORMED, field, f"pcrSelect.sizeofSelect {size} is outside 1..4")
        bitmap = reader.take(size, "pcrSelect.pcrSelect")
        if any(bank.hash.alg_id == alg.alg_id for bank in banks):
            fail(Code.MALFORMED, field, f"pcrSelect lists the {alg.name} bank twice")
        indices = tuple(
            octet * 8 + bit for octet in range(size) for bit in range(8) if bitmap[octet] >> bit & 1
        )
        banks.append(PcrSelection(alg, indices))
    return tuple(banks)


def parse_signature(data: bytes, field: str) -> Signature:
    """Parse a TPMT_SIGNATURE of scheme RSASSA, RSAPSS or ECDSA."""
    reader = _Reader(data, field)
    sig_alg = reader.u16("sigAlg")
    if sig_alg not in (ALG_RSASSA, ALG_RSAPSS, ALG_ECDSA):
        fail(
            Code.UNSUPPORTED,
            field,
            f"signature scheme 0x{sig_alg:04x} is not RSASSA, RSAPSS or ECDSA",
        )
    alg = reader.hash_alg("hash")
    if sig_alg == ALG_ECDSA:
        r = reader.tpm2b(_MAX_ECC_BYTES, "signatureR")
        s = reader.tpm2b(_MAX_ECC_BYTES, "signatureS")
        reader.end()
        if not r or not s:
            fail(Code.MALFORMED, field, "ECDSA signature has an empty r or s")
        value = encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
        return Signature(sig_alg, alg, value)
    value = reader.tpm2b(_MAX_RSA_BYTES, "sig")
    reader.end()
    if not value:
        fail(Code.MALFORMED, field, "RSA signature is empty")
    return Signature(sig_alg, alg, value)


def parse_public(data: bytes, field: str) -> PublicArea:
    """Parse a TPMT_PUBLIC and require a TPM-resident restricted signing key (an AK)."""
    reader = _Reader(data, field)
    key_type = reader.u16("type")
    if key_type not in (ALG_RSA, ALG_ECC):
        fail(Code.UNSUPPORTED, field, f"key type 0x{key_type:04x} is not RSA or ECC")
    reader.hash_alg("nameAlg")
    attributes = reader.u32("objectAttributes")
    reader.tpm2b(_MAX_DIGEST, "authPolicy")
    symmetric = reader.u16("parameters.symmetric")
    if symmetric != ALG_NULL:
        fail(Code.UNTRUSTED, field, "key has a symmetric algorithm: a storage key, not an AK")
    scheme = reader.u16("parameters.scheme")
    scheme_hash: HashAlg | None = None
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    if key_type == ALG_RSA:
        if scheme not in (ALG_NULL, ALG_RSASSA, ALG_RSAPSS):
            fail(Code.UNSUPPORTED, field, f"RSA scheme 0x{scheme:04x} is not RSASSA or RSAPSS")
        if scheme != ALG_NULL:
            scheme_hash = reader.hash_alg("parameters.scheme.hashAlg")
        key = _rsa_key(reader, field)
    else:
        if scheme not in (ALG_NULL, ALG_ECDSA):
            fail(Code.UNSUPPORTED, field, f"ECC scheme 0x{scheme:04x} is not ECDSA")
        if scheme != ALG_NULL:
            scheme_hash = reader.hash_alg("parameters.scheme.hashAlg")
        key = _ecc_key(reader, field)
    reader.end()
    if attributes & _ATTR_RESERVED:
        fail(Code.MALFORMED, field, f"objectAttributes 0x{attributes:08x} set reserved bits")
    _check_ak_attributes(attributes, field)
    return PublicArea(key, attributes, scheme, scheme_hash)


_AK_REQUIRED: Final = (
    (_ATTR_FIXED_TPM, "fixedTPM"),
    (_ATTR_FIXED_PARENT, "fixedParent"),
    (_ATTR_RESTRICTED, "restricted"),
    (_ATTR_SIGN, "sign"),
)
_AK_FORBIDDEN: Final = ((_ATTR_DECRYPT, "decrypt"), (_ATTR_X509_SIGN, "x509sign"))


def _check_ak_attributes(attributes: int, field: str) -> None:
    """An attestation key is a restricted signing key that never leaves its TPM.

    ``restricted`` + ``sign``: the TPM signs only digests it computed itself, and refuses to
    sign outside data that starts with TPM_GENERATED_VALUE, so a TPMS_ATTEST it signed is its
    own. ``fixedTPM`` + ``fixedParent``: the key cannot be duplicated to another TPM or moved
    in its hierarchy. ``decrypt`` and ``x509sign`` would let it be used for other purposes.
    """
    missing = [name for bit, name in _AK_REQUIRED if not attributes & bit]
    present = [name for bit, name in _AK_FORBIDDEN if attributes & bit]
    if missing or present:
        problems = [f"{name} clear" for name in missing] + [f"{name} set" for name in present]
        fail(
            Code.UNTRUSTED,
            field,
            f"objectAttributes 0x{attributes:08x} are not those of an attestation key "
            f"({', '.join(problems)}): an AK has fixedTPM, fixedParent, restricted and sign set, "
            "decrypt and x509sign clear",
        )


def _rsa_key(reader: _Reader, field: str) -> rsa.RSAPublicKey:
    key_bits = reader.u16("parameters.keyBits")
    exponent = reader.u32("parameters.exponent") or 65537
    modulus = reader.tpm2b(_MAX_RSA_BYTES, "unique")
    if key_bits not in (2048, 3072, 4096):
        fail(Code.UNSUPPORTED, field, f"RSA key size {key_bits} is not 2048, 3072 or 4096")
    if len(modulus) * 8 != key_bits or not modulus[0] & 0x80:
        fail(Code.MALFORMED, field, f"RSA modulus is not {key_bits} bits")
    if exponent < 3 or exponent % 2 == 0:
        fail(Code.MALFORMED, field, f"RSA exponent {exponent} is invalid")
    try:
        return rsa.RSAPublicNumbers(exponent, int.from_bytes(modulus, "big")).public_key()
    except ValueError as exc:
        fail(Code.MALFORMED, field, f"RSA public key is invalid: {exc}")


def _ecc_key(reader: _Reader, field: str) -> ec.EllipticCurvePublicKey:
    curve_id = reader.u16("parameters.curveID")
    kdf = reader.u16("parameters.kdf")
    if kdf != ALG_NULL:
        reader.hash_alg("parameters.kdf.hashAlg")
    x = reader.tpm2b(_MAX_ECC_BYTES, "unique.x")
    y = reader.tpm2b(_MAX_ECC_BYTES, "unique.y")
    curve = _CURVES.get(curve_id)
    if curve is None:
        fail(
            Code.UNSUPPORTED, field, f"ECC curve 0x{curve_id:04x} is not NIST P-256, P-384 or P-521"
        )
    try:
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
        )
        return numbers.public_key()
    except ValueError as exc:
        fail(Code.MALFORMED, field, f"ECC public point is invalid: {exc}")
