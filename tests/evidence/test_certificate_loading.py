"""Loading X.509 certificates wherever they come from (evidence, trust configurations,
bundle verification keys): what cryptography raises for bytes that are not a certificate,
``InvalidVersion`` included (it is not a ``ValueError``), is the caller's typed error
naming the field, never an escaped exception; and a serial number that is not positive
(AMD's VCEK/ASK/ARK have 0) loads without a warning."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from evidence.helpers import TEST_ASSETS, der_to_pem, ec_key, issue, with_x509_version

from attestpolicy._keys import load_public_key
from attestpolicy.cli import main
from attestpolicy.errors import ConfigError, EvidenceError
from attestpolicy.evidence._crypto.x509 import certificate_from_der, certificate_from_pem
from attestpolicy.evidence.document import load_trust_config
from attestpolicy.evidence.workload.spiffe import X509SvidEvidence, svid_chain

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "attestpolicy" / "examples"
BAD_VERSION = "5 is not a valid X509 version"


def _certificate_der() -> bytes:
    key = ec_key()
    certificate = issue("loading", key.public_key(), key, serial=0x0102)
    return certificate.public_bytes(serialization.Encoding.DER)


def _with_negative_serial(der: bytes) -> bytes:
    """The same bytes with serial number -0x7EFE (0x8102): not positive, as AMD's zero is,
    and of the same length, so no enclosing length changes."""
    serial = bytes([0x02, 0x02, 0x01, 0x02])  # INTEGER 0x0102, right after the version
    at = der.index(serial)
    return der[:at] + bytes([0x02, 0x02, 0x81, 0x02]) + der[at + len(serial) :]


def _bad_version_der() -> bytes:
    return with_x509_version(_certificate_der(), 5)


# --- evidence -------------------------------------------------------------------------------


def test_a_bad_version_is_malformed_naming_the_field_in_der_and_pem() -> None:
    bad = _bad_version_der()
    with pytest.raises(EvidenceError) as from_der:
        certificate_from_der(bad, "ak_cert")
    assert from_der.value.code == "evidence.malformed"
    assert str(from_der.value) == f"ak_cert: not a DER certificate: {BAD_VERSION}"
    with pytest.raises(EvidenceError) as from_pem:
        certificate_from_pem(der_to_pem(bad), "trust.ca_certificates")
    assert from_pem.value.code == "evidence.malformed"
    assert str(from_pem.value) == f"trust.ca_certificates: not a PEM certificate: {BAD_VERSION}"


def test_an_svid_chain_with_a_bad_version_is_malformed_at_chain() -> None:
    section = X509SvidEvidence(chain_der=base64.b64encode(_bad_version_der()).decode())
    with pytest.raises(EvidenceError) as caught:
        svid_chain(section)
    assert (caught.value.code, caught.value.field) == ("evidence.malformed", "chain")
    assert BAD_VERSION in str(caught.value)


def test_a_non_positive_serial_loads_without_a_warning_in_der_pem_and_an_svid_chain() -> None:
    odd = _with_negative_serial(_certificate_der())
    section = X509SvidEvidence(chain_der=base64.b64encode(odd).decode())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning while loading fails the test
        loaded = [
            certificate_from_der(odd, "ak_cert"),
            certificate_from_pem(der_to_pem(odd), "root"),
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


# --- trust configurations and keys ----------------------------------------------------------


def _trust_with_a_bad_sigstore_root(section: str) -> dict[str, Any]:
    root = json.loads((TEST_ASSETS / "slsa" / "trusted_root.production.json").read_text())
    authority = root["certificateAuthorities"][0]["certChain"]["certificates"][0]
    der = base64.b64decode(authority["rawBytes"])
    authority["rawBytes"] = base64.b64encode(with_x509_version(der, 5)).decode()
    trust: dict[str, Any] = json.loads((EXAMPLES / "trust.json").read_text())
    identity = {"subject": "x", "issuer": "https://token.actions.githubusercontent.com"}
    trust[section]["sigstore"] = {"trusted_root": root, "identities": [identity]}
    return trust


@pytest.mark.parametrize("section", ["image", "provenance"])
def test_a_trusted_root_with_a_bad_version_certificate_is_a_config_error(section: str) -> None:
    trust = _trust_with_a_bad_sigstore_root(section)
    with pytest.raises(ConfigError) as caught:
        load_trust_config(json.dumps(trust).encode())
    message = str(caught.value)
    assert f"at {section}.sigstore" in message
    assert f"trusted_root is not a usable Sigstore trusted root: {BAD_VERSION}" in message


def test_the_cli_reports_such_a_trust_file_in_one_line(tmp_path: Path) -> None:
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps(_trust_with_a_bad_sigstore_root("provenance")))
    evidence = EXAMPLES / "evidence" / "allow-eks-workload.json"
    verify = [sys.executable, "-m", "attestpolicy", "verify", "--evidence", str(evidence)]
    result = subprocess.run(
        [*verify, "--trust", str(trust)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("attestpolicy: error: invalid trust configuration at ")
    assert BAD_VERSION in result.stderr


def test_a_key_given_as_a_bad_version_certificate_is_refused_as_not_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pem = der_to_pem(_bad_version_der())
    with pytest.raises(ValueError, match=r"^signer is not a PEM public key or certificate$"):
        load_public_key(pem, what="signer", certificate_ok=True)
    signing, key, bundle = tmp_path / "sign.pem", tmp_path / "verify.pem", tmp_path / "b.tar.gz"
    signing.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key.write_text(pem)
    build = ["bundle", "build", "--out", str(bundle), "--signing-key", str(signing)]
    assert main([*build, "--signing-alg", "ES256"]) == 0
    capsys.readouterr()
    # bundle verify: exit 1 and the reason, as for any key that does not verify the bundle
    assert main(["bundle", "verify", str(bundle), "--verification-key", str(key)]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == (
        "",
        "attestpolicy: bundle rejected [bundle.signature]: verification key is not a PEM "
        "public key or certificate\n",
    )
