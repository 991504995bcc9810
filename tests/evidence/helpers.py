"""Helpers shared by the evidence tests: expected errors, encodings, keys and certificates.

Imported as ``from evidence.helpers import ...`` (``tests/`` is on the import path, as for
``policy_model``). Certificates and keys are made at test time with ``cryptography``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import NameOID
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from attestpolicy.errors import EvidenceError
from attestpolicy.evidence._validity import collect_validity

TEST_ASSETS = Path(__file__).resolve().parents[1] / "assets"
"""tests/assets: the real vectors (see its SOURCES file)."""

# --- expected errors -------------------------------------------------------------------


def raised(call: Callable[[], object]) -> EvidenceError:
    """The EvidenceError ``call`` raises (the test fails when it raises none)."""
    with pytest.raises(EvidenceError) as info:
        call()
    return info.value


def expect_error(
    code: str, call: Callable[[], object], field_part: str | None = None
) -> EvidenceError:
    """``call`` raises an EvidenceError with ``code`` and a field containing ``field_part``."""
    error = raised(call)
    assert error.code == code, error
    if field_part is not None:
        assert error.field is not None
        assert field_part in error.field, error.field
    return error


@contextmanager
def expect(code: str, field: str | None = None) -> Iterator[pytest.ExceptionInfo[EvidenceError]]:
    """Assert the block raises an EvidenceError with ``code`` (and exactly ``field``)."""
    with pytest.raises(EvidenceError) as info:
        yield info
    assert info.value.code == code, (info.value.code, info.value.message)
    if field is not None:
        assert info.value.field == field, (info.value.field, info.value.message)


def assert_valid_until(
    verify_at: Callable[[datetime], object],
    now: datetime,
    expected: datetime,
    code: str = "evidence.expired",
) -> None:
    """``verify_at(now)`` reports ``expected`` as the instant its result stops holding, and
    that bound is exact: the verification still passes, unchanged, a microsecond before it
    and fails with ``code`` a second after it (certificates are valid *at* ``notAfter``)."""
    with collect_validity() as validity:
        result = verify_at(now)
    assert validity.until == expected
    assert verify_at(expected - timedelta(microseconds=1)) == result
    expect_error(code, lambda: verify_at(expected + timedelta(seconds=1)))


# --- encodings -------------------------------------------------------------------------


def b64(data: bytes) -> str:
    """Standard, padded base64."""
    return base64.b64encode(data).decode()


def b64url(data: bytes) -> str:
    """Unpadded base64url (JOSE)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: Any) -> str:
    """One JWS segment: base64url of the JSON of ``value``."""
    return b64url(json.dumps(value).encode())


def with_payload(token: str, change: dict[str, Any]) -> str:
    """The same header and signature over a changed payload (a tampered token)."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(change)
    return f"{header}.{segment(claims)}.{signature}"


JWS_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
"""The characters of a compact JWS, for mutations."""


def mutate_text(text: str, position: int, char: str, *, cut: bool) -> str:
    """``text`` cut at ``position``, or with the character there replaced by ``char``."""
    index = position % len(text)
    return text[:index] if cut else text[:index] + char + text[index + 1 :]


def text_mutations(text: str, alphabet: str = JWS_ALPHABET) -> st.SearchStrategy[str]:
    """Every ``text`` other than ``text`` one cut or one replaced character away from it."""
    return st.builds(
        lambda position, char, cut: mutate_text(text, position, char, cut=cut),
        st.integers(min_value=0),
        st.sampled_from(alphabet),
        st.booleans(),
    ).filter(lambda mutated: mutated != text)


def cert_pem(*certs: x509.Certificate) -> str:
    """The PEM text of ``certs``, one after the other."""
    return "".join(cert.public_bytes(serialization.Encoding.PEM).decode() for cert in certs)


_VERSION_3 = bytes([0xA0, 0x03, 0x02, 0x01, 0x02])
"""[0] EXPLICIT INTEGER 2: a v3 certificate's version field, as DER encodes it."""


def with_x509_version(der: bytes, version: int) -> bytes:
    """A DER certificate with its version field set to ``version`` (0-255): cryptography
    raises ``InvalidVersion`` (not a ``ValueError``) on loading one it does not know."""
    at = der.index(_VERSION_3) + len(_VERSION_3) - 1
    return der[:at] + bytes([version]) + der[at + 1 :]


def der_to_pem(der: bytes) -> str:
    """A DER certificate as PEM, wrapped at 64 characters (without parsing it)."""
    body = "\n".join(re.findall(".{1,64}", b64(der)))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def public_key_pem(key: Any) -> str:
    """A public key (or a private key's public half) as PEM SubjectPublicKeyInfo."""
    public = key.public_key() if hasattr(key, "public_key") else key
    pem: bytes = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode()


# --- keys --------------------------------------------------------------------------------


@cache
def rsa_key(name: str = "a") -> rsa.RSAPrivateKey:
    """An RSA-2048 key, one per ``name`` for the test session."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def ec_key(
    name: str = "a", curve: type[ec.EllipticCurve] = ec.SECP256R1
) -> ec.EllipticCurvePrivateKey:
    """An ECDSA key on ``curve``, one per ``name`` for the test session."""
    return ec.generate_private_key(curve())


def jwk_of(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str, use: str = "sig"
) -> dict[str, Any]:
    """The public JWK of ``key`` with ``kid`` and ``use``."""
    if isinstance(key, rsa.RSAPrivateKey):
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": use}


# --- certificates ------------------------------------------------------------------------

START = datetime(2020, 1, 1, tzinfo=UTC)
END = datetime(2040, 1, 1, tzinfo=UTC)

KeyUsageBits = dict[str, bool]
"""``x509.KeyUsage`` keyword arguments; the ones left out are False."""


def dn(common_name: str | None = None, *, organization: str | None = None) -> x509.Name:
    """A distinguished name with a CN and/or an O."""
    attributes = []
    if organization is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if common_name is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def key_usage(**bits: bool) -> x509.KeyUsage:
    """A KeyUsage extension with ``bits`` set (every other bit clear)."""
    names = (
        "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
        "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only",
    )  # fmt: skip
    unknown = set(bits) - set(names)
    assert not unknown, unknown
    return x509.KeyUsage(**{name: bits.get(name, False) for name in names})


CA_USAGE = key_usage(key_cert_sign=True, crl_sign=True)
"""The key usage of a certificate authority."""
SIGNING_USAGE = key_usage(digital_signature=True)
"""The key usage of a signing (end-entity) certificate."""


def issue(
    subject: x509.Name | str,
    public_key: CertificatePublicKeyTypes,
    signer: CertificateIssuerPrivateKeyTypes,
    *,
    issuer: x509.Name | str | None = None,
    start: datetime = START,
    end: datetime = END,
    serial: int | None = None,
    ca: bool | None = None,
    path_length: int | None = None,
    usage: x509.KeyUsage | None = None,
    ski: bool = False,
    aki: bool = False,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    algorithm: hashes.SHA256 | hashes.SHA384 | None = None,
) -> x509.Certificate:
    """A certificate for ``public_key`` signed by ``signer``, with exactly the extensions asked for.

    ``subject`` and ``issuer`` are names (a string is a CN; ``issuer`` defaults to
    ``subject``: self-issued). ``ca`` adds a critical BasicConstraints (with
    ``path_length``), ``usage`` a critical
    KeyUsage, ``ski``/``aki`` the key identifiers; ``extensions`` are ``(value, critical)``.
    """
    subject_name = dn(subject) if isinstance(subject, str) else subject
    if issuer is None:
        issuer_name = subject_name
    else:
        issuer_name = dn(issuer) if isinstance(issuer, str) else issuer
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject_name)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number() if serial is None else serial)
        .not_valid_before(start)
        .not_valid_after(end)
    )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca, path_length), critical=True)
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    if ski:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
    if aki:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signer, algorithm or hashes.SHA256())
