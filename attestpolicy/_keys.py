"""Public and private keys: the one loader, and the one rule for which keys are accepted.

Accepted are ECDSA on P-256/P-384/P-521, RSA of 2048 bits or more, and Ed25519, for every
use: evidence signatures, bundle signatures and (later) issued credentials. Loaders raise
``ValueError`` with a message that names the problem (:class:`UnsupportedKeyError`, a
``ValueError``, when the key is well formed but not an accepted one); callers turn it into
their own typed error (``EvidenceError``, ``BundleError``).
"""

from __future__ import annotations

from typing import Final, TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

__all__ = [
    "CERTIFICATE_ERRORS",
    "MIN_RSA_BITS",
    "PrivateKey",
    "PublicKey",
    "UnsupportedKeyError",
    "accepted_public_key",
    "jws_algorithms",
    "load_private_key",
    "load_public_key",
]

PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
"""A key accepted for signatures: ECDSA P-256/P-384/P-521, RSA >= 2048 bits, Ed25519."""
PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
"""The private halves of :data:`PublicKey`."""

MIN_RSA_BITS: Final = 2048
CERTIFICATE_ERRORS: Final = (ValueError, x509.InvalidVersion)
"""What cryptography raises for bytes that are not an X.509 certificate: a bad version
field is :class:`~cryptography.x509.InvalidVersion`, which is not a ``ValueError``."""
_EC_JWS_ALGORITHM: Final = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_RSA_JWS_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")


class UnsupportedKeyError(ValueError):
    """A well-formed key that is not accepted: its type, curve or size."""


def accepted_public_key(key: object) -> PublicKey:
    """Return ``key`` if it is an accepted :data:`PublicKey`; raise
    :class:`UnsupportedKeyError` otherwise."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _EC_JWS_ALGORITHM:
            raise UnsupportedKeyError(f"unsupported elliptic curve {key.curve.name}")
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise UnsupportedKeyError(
                f"RSA key of {key.key_size} bits is too small (minimum {MIN_RSA_BITS})"
            )
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise UnsupportedKeyError(f"unsupported public key type {type(key).__name__}")


def _pem_bytes(key: object, what: str, kind: str) -> bytes:
    if isinstance(key, str):
        try:
            return key.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"{what} is not {kind}") from None
    if isinstance(key, bytes):
        return key
    raise ValueError(f"{what} must be PEM or a key object, not {type(key).__name__}")


def load_public_key(
    key: object, *, what: str = "public key", certificate_ok: bool = False
) -> PublicKey:
    """Load an accepted public key from a key object or PEM (``SubjectPublicKeyInfo``, or a
    certificate when ``certificate_ok``); raise ``ValueError`` naming ``what``."""
    if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        return accepted_public_key(key)
    kind = "a PEM public key or certificate" if certificate_ok else "a PEM public key"
    pem = _pem_bytes(key, what, kind)
    loaded: object
    try:
        loaded = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        if not certificate_ok:
            raise ValueError(f"{what} is not {kind}") from None
        try:
            loaded = x509.load_pem_x509_certificate(pem).public_key()
        except (*CERTIFICATE_ERRORS, UnsupportedAlgorithm):
            raise ValueError(f"{what} is not {kind}") from None
    return accepted_public_key(loaded)


def load_private_key(key: object, *, what: str = "signing key") -> PrivateKey:
    """Load an accepted, unencrypted private key from a key object or PEM; raise
    ``ValueError`` naming ``what``."""
    loaded: object = key
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        pem = _pem_bytes(key, what, "a PEM private key")
        try:
            loaded = serialization.load_pem_private_key(pem, password=None)
        except TypeError:
            raise ValueError(f"{what} is encrypted; pass an unencrypted PEM key") from None
        except (ValueError, UnsupportedAlgorithm):
            raise ValueError(f"{what} is not a PEM private key") from None
    if not isinstance(
        loaded, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise UnsupportedKeyError(f"unsupported {what} type {type(loaded).__name__}")
    accepted_public_key(loaded.public_key())
    return loaded


def jws_algorithms(key: PublicKey) -> tuple[str, ...]:
    """The JWS ``alg`` values that fit ``key`` (RFC 7518, RFC 8037)."""
    if isinstance(key, rsa.RSAPublicKey):
        return _RSA_JWS_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        return (_EC_JWS_ALGORITHM[key.curve.name],)
    return ("EdDSA",)
