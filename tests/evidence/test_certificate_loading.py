"""Loading certificates from evidence (evidence/_crypto/x509.py): whatever cryptography
raises for bytes that are not a certificate is ``evidence.malformed`` naming the field,
and a serial number that is not positive (AMD's VCEK/ASK/ARK have 0) loads without a
warning."""

from __future__ import annotations

import base64
import warnings
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from attestpolicy.errors import EvidenceError
from attestpolicy.evidence._crypto.x509 import certificate_from_der, certificate_from_pem
from attestpolicy.evidence.workload.spiffe import X509SvidEvidence, svid_chain

_VERSION_3 = bytes([0xA0, 0x03, 0x02, 0x01, 0x02])
"""[0] EXPLICIT INTEGER 2: a v3 certificate's version field."""


def _certificate_der() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loading")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x0102)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def _with_version(der: bytes, version: int) -> bytes:
    at = der.index(_VERSION_3) + len(_VERSION_3) - 1
    return der[:at] + bytes([version]) + der[at + 1 :]


def _with_negative_serial(der: bytes) -> bytes:
    """The same bytes with serial number -0x7EFE (0x8102): non-positive, as AMD's zero is,
    and of the same length, so no enclosing length changes."""
    serial = bytes([0x02, 0x02, 0x01, 0x02])  # INTEGER 0x0102, right after the version
    at = der.index(_VERSION_3 + serial) + len(_VERSION_3)
    return der[:at] + bytes([0x02, 0x02, 0x81, 0x02]) + der[at + len(serial) :]


def _pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n"


def test_a_bad_version_is_malformed_naming_the_field_in_der_and_pem() -> None:
    bad = _with_version(_certificate_der(), 5)
    with pytest.raises(EvidenceError) as from_der:
        certificate_from_der(bad, "ak_cert")
    assert from_der.value.code == "evidence.malformed"
    assert str(from_der.value) == "ak_cert: not a DER certificate: 5 is not a valid X509 version"
    with pytest.raises(EvidenceError) as from_pem:
        certificate_from_pem(_pem(bad), "trust.ca_certificates")
    assert from_pem.value.code == "evidence.malformed"
    assert str(from_pem.value) == (
        "trust.ca_certificates: not a PEM certificate: 5 is not a valid X509 version"
    )


def test_an_svid_chain_with_a_bad_version_is_malformed_at_chain() -> None:
    bad = _with_version(_certificate_der(), 5)
    section = X509SvidEvidence(chain_der=base64.b64encode(bad).decode())
    with pytest.raises(EvidenceError) as caught:
        svid_chain(section)
    assert (caught.value.code, caught.value.field) == ("evidence.malformed", "chain")
    assert "5 is not a valid X509 version" in str(caught.value)


def test_a_non_positive_serial_loads_without_a_warning_in_der_pem_and_an_svid_chain() -> None:
    odd = _with_negative_serial(_certificate_der())
    section = X509SvidEvidence(chain_der=base64.b64encode(odd).decode())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning while loading fails the test
        loaded = [
            certificate_from_der(odd, "ak_cert"),
            certificate_from_pem(_pem(odd), "root"),
            *svid_chain(section),
        ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reading the serial is cryptography's warning
        assert [certificate.serial_number for certificate in loaded] == [-0x7EFE] * 3


def test_bytes_that_are_not_a_certificate_are_malformed() -> None:
    for junk in (b"", b"\x30\x03\x02\x01\x01", _certificate_der()[:-1]):
        with pytest.raises(EvidenceError) as caught:
            certificate_from_der(junk, "ak_cert")
        assert caught.value.code == "evidence.malformed"
        assert str(caught.value).startswith("ak_cert: not a DER certificate: ")
