"""``serve`` with the credential broker: nonces, credentials, EAR, JWKS, revocations.

Real HTTP on 127.0.0.1, real keys generated here, a real SQLite registry and revocation
store shared by two worker processes, and evidence made fresh for this run
(:mod:`attestpolicy._demo_evidence`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from serving import BackgroundServer, serve_cli

from attestpolicy._demo_evidence import FreshEvidence, fresh_evidence
from attestpolicy._server_broker import BrokerSettings
from attestpolicy.broker import SigningKey
from attestpolicy.cli import main as cli_main
from attestpolicy.errors import AttestPolicyError
from attestpolicy.server import create_app, load_evaluator

ISSUER = "https://broker.example.test"
ADMIN_TOKEN = "admin-token-for-tests-0123456789"


@dataclass(frozen=True)
class Broker:
    url: str
    fresh: FreshEvidence
    files: dict[str, Path]


def _write(path: Path, content: str, mode: int = 0o600) -> Path:
    path.write_text(content)
    path.chmod(mode)
    return path


def _files(tmp_path: Path, fresh: FreshEvidence) -> dict[str, Path]:
    key = tmp_path / "signing-key.pem"
    SigningKey.generate().save(key)
    return {
        "config": _write(tmp_path / "config.json", json.dumps(fresh.config), 0o644),
        "trust": _write(tmp_path / "trust.json", json.dumps(fresh.trust), 0o644),
        "key": key,
        "credentials": tmp_path / "credentials.db",
        "revocations": tmp_path / "revocations.db",
        "admin": _write(tmp_path / "admin-token", ADMIN_TOKEN + "\n"),
    }


def _serve_args(files: dict[str, Path], *extra: str) -> list[str]:
    return [
        "--config",
        str(files["config"]),
        "--signing-key",
        str(files["key"]),
        "--issuer",
        ISSUER,
        "--credentials",
        str(files["credentials"]),
        "--trust",
        str(files["trust"]),
        "--revocations",
        str(files["revocations"]),
        *extra,
    ]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    tmp_path = tmp_path_factory.mktemp("broker")
    fresh = fresh_evidence()
    files = _files(tmp_path, fresh)
    args = _serve_args(files, "--admin-token-file", str(files["admin"]), "--workers", "2")
    with serve_cli(tmp_path, *args) as (_, url):
        yield Broker(url, fresh, files)


def _nonce(url: str) -> str:
    answer = requests.get(f"{url}/v1/nonce", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    nonce: str = answer.json()["nonce"]
    return nonce


def _request_credential(url: str, evidence: Any, nonce: str | None) -> requests.Response:
    body: dict[str, Any] = {"evidence": evidence}
    if nonce is not None:
        body["nonce"] = nonce
    return requests.post(f"{url}/v1/credentials", json=body, timeout=30)


def _verified(url: str, token: str, audience: str) -> dict[str, Any]:
    jwks = requests.get(f"{url}/.well-known/jwks.json", timeout=10).json()
    kid = jwt.get_unverified_header(token)["kid"]
    (jwk,) = [key for key in jwks["keys"] if key["kid"] == kid]
    key = jwt.PyJWK(jwk).key
    claims: dict[str, Any] = jwt.decode(
        token, key, algorithms=["ES256"], audience=audience, issuer=ISSUER
    )
    return claims


def _error(answer: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    content: dict[str, Any] = answer.json()
    assert content["code"] == code
    return content


def test_credential_from_fresh_evidence_is_bound_and_verifiable(broker: Broker) -> None:
    fresh = broker.fresh
    answer = _request_credential(broker.url, fresh.document, _nonce(broker.url))
    assert answer.status_code == 200, answer.text
    content = answer.json()
    assert content["token_type"] == "Bearer"
    assert content["decision"]["allow"] is True
    claims = _verified(broker.url, content["token"], fresh.audience)
    assert claims["sub"] == fresh.spiffe_id
    assert claims["jti"] == content["jti"] == content["decision"]["decision_id"]
    assert claims["exp"] - claims["iat"] == content["decision"]["ttl_seconds"]
    assert claims["attestation"]["evidence"]["image_digest"] == fresh.image_digest
    assert fresh.svid_certificate is not None
    thumbprint = base64.urlsafe_b64encode(hashlib.sha256(fresh.svid_certificate).digest())
    assert claims["cnf"] == {"x5t#S256": thumbprint.rstrip(b"=").decode()}


def test_a_nonce_is_single_use(broker: Broker) -> None:
    nonce = _nonce(broker.url)
    assert _request_credential(broker.url, broker.fresh.document, nonce).status_code == 200
    again = _request_credential(broker.url, broker.fresh.document, nonce)
    content = _error(again, 403, "forbidden")
    assert [error["code"] for error in content["errors"]] == ["nonce.invalid"]
    assert content["decision"]["allow"] is False


@pytest.mark.parametrize("nonce", ["never-issued", ""])
def test_an_unknown_nonce_is_refused(broker: Broker, nonce: str) -> None:
    answer = _request_credential(broker.url, broker.fresh.document, nonce)
    content = _error(answer, 403, "forbidden")
    assert [error["code"] for error in content["errors"]] == ["nonce.invalid"]


def test_tampered_evidence_mints_nothing(broker: Broker) -> None:
    document = json.loads(json.dumps(broker.fresh.document))
    document["image"]["reference"] = document["image"]["reference"][:-4] + "0000"
    content = _error(_request_credential(broker.url, document, None), 403, "forbidden")
    assert content["decision"]["allow"] is False
    assert "token" not in content
    assert content["errors"], content


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "malformed"),
        (b"[]", "JSON object"),
        (b'{"nonce": "x"}', '"evidence"'),
        (b'{"evidence": [], "nonce": "x"}', '"evidence"'),
        (b'{"evidence": {}, "nonce": 7}', '"nonce"'),
    ],
)
def test_malformed_requests_are_400(broker: Broker, body: bytes, fragment: str) -> None:
    for route in ("/v1/credentials", "/v1/ear"):
        answer = requests.post(f"{broker.url}{route}", data=body, timeout=10)
        assert fragment in _error(answer, 400, "invalid_parameter")["message"]


def test_wrong_methods_are_405(broker: Broker) -> None:
    assert requests.get(f"{broker.url}/v1/credentials", timeout=10).status_code == 405
    assert requests.post(f"{broker.url}/.well-known/jwks.json", timeout=10).status_code == 405


def test_ear_affirms_an_allow(broker: Broker) -> None:
    answer = requests.post(
        f"{broker.url}/v1/ear",
        json={"evidence": broker.fresh.document, "nonce": _nonce(broker.url)},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    content = answer.json()
    jwks = requests.get(f"{broker.url}/.well-known/jwks.json", timeout=10).json()
    key = jwt.PyJWK(jwks["keys"][0]).key
    ear = jwt.decode(content["ear"], key, algorithms=["ES256"], options={"verify_aud": False})
    statuses = {submod["ear.status"] for submod in ear["submods"].values()}
    assert statuses == {"affirming"}
    assert content["decision"]["allow"] is True


def test_revocation_reaches_credentials_decisions_and_the_list(broker: Broker) -> None:
    url, fresh = broker.url, broker.fresh
    issued = [_request_credential(url, fresh.document, _nonce(url)).json()["jti"] for _ in range(2)]
    listed = requests.get(f"{url}/v1/revocations", timeout=10)
    assert listed.status_code == 200
    etag = listed.headers["etag"]
    assert (
        requests.get(
            f"{url}/v1/revocations", headers={"If-None-Match": etag}, timeout=10
        ).status_code
        == 304
    )

    body = {"key_id": fresh.signer_key_id, "reason": "key compromised"}
    no_token = requests.post(f"{url}/v1/revocations", json=body, timeout=10)
    assert _error(no_token, 401, "unauthorized")
    assert no_token.headers["www-authenticate"].startswith("Bearer")
    wrong = requests.post(
        f"{url}/v1/revocations",
        json=body,
        headers={"Authorization": "Bearer " + ADMIN_TOKEN[:-1] + "X"},
        timeout=10,
    )
    assert wrong.status_code == 401

    revoked = requests.post(
        f"{url}/v1/revocations",
        json=body,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    )
    assert revoked.status_code == 200, revoked.text
    returned = {credential["jti"] for credential in revoked.json()["credentials"]}
    assert set(issued) <= returned  # and the earlier tests' credentials from this evidence

    after = requests.get(f"{url}/v1/revocations", headers={"If-None-Match": etag}, timeout=10)
    assert after.status_code == 200
    assert after.headers["etag"] != etag
    assert set(issued) <= {entry["jti"] for entry in after.json()["revoked"]}
    # Every worker denies now (two workers share the revocation store): ask several times.
    for _ in range(6):
        denied = _request_credential(url, fresh.document, _nonce(url))
        content = _error(denied, 403, "forbidden")
        assert "image.untrusted_signer" in [error["code"] for error in content["errors"]]


@pytest.mark.parametrize(
    "body",
    [{}, {"colour": "blue"}, {"key_id": ""}, {"key_id": 7}, {"spiffe_id": ["ok", 3]}],
)
def test_malformed_revocations_are_400(broker: Broker, body: dict[str, Any]) -> None:
    answer = requests.post(
        f"{broker.url}/v1/revocations",
        json=body,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=10,
    )
    _error(answer, 400, "invalid_parameter")


def test_revoke_cli_lists_credentials_and_serve_sees_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = fresh_evidence()
    files = _files(tmp_path, fresh)
    settings = BrokerSettings(
        signing_key=str(files["key"]),
        issuer=ISSUER,
        credentials=str(files["credentials"]),
        trust=str(files["trust"]),
    )
    evaluator = load_evaluator(config_path=files["config"], revocations_path=files["revocations"])
    with BackgroundServer(create_app(evaluator, broker=settings)) as server:
        url = server.url
        issued = _request_credential(url, fresh.document, _nonce(url))
        jti = issued.json()["jti"]
        # No admin token configured: the route does not exist.
        disabled = requests.post(f"{url}/v1/revocations", json={"key_id": "x"}, timeout=10)
        _error(disabled, 404, "resource_not_found")
        code = cli_main(
            [
                "revoke",
                "--store",
                str(files["revocations"]),
                "--credentials",
                str(files["credentials"]),
                "--image-digest",
                fresh.image_digest,
            ]
        )
        assert code == 0
        printed = json.loads(capsys.readouterr().out)
        assert [credential["jti"] for credential in printed["credentials"]] == [jti]
        listed = requests.get(f"{url}/v1/revocations", timeout=10).json()
        assert [entry["jti"] for entry in listed["revoked"]] == [jti]
        denied = _request_credential(url, fresh.document, _nonce(url))
        content = _error(denied, 403, "forbidden")
        assert "image.revoked" in [error["code"] for error in content["errors"]]


def _serve_usage_error(tmp_path: Path, *args: str) -> str:
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "attestpolicy", "serve", "--addr", "127.0.0.1:0", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        check=False,
    )
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    return result.stderr


def test_serve_refuses_unusable_broker_settings(tmp_path: Path) -> None:
    fresh = fresh_evidence()
    files = _files(tmp_path, fresh)
    args = _serve_args(files)
    no_store = args[: args.index("--revocations")]
    assert "--revocations" in _serve_usage_error(tmp_path, *no_store)
    files["key"].chmod(0o644)
    assert "644" in _serve_usage_error(tmp_path, *args)
    files["key"].chmod(0o600)
    assert "--issuer" in _serve_usage_error(
        tmp_path, *[a for a in args if a not in ("--issuer", ISSUER)]
    )
    files["admin"].chmod(0o640)
    assert "admin token" in _serve_usage_error(
        tmp_path, *args, "--admin-token-file", str(files["admin"])
    )


def test_broker_settings_round_trip_and_checks() -> None:
    settings = BrokerSettings(signing_key="k", issuer="i", credentials="c", trust="t")
    assert BrokerSettings.from_json(settings.to_json()) == settings
    with pytest.raises(AttestPolicyError, match="issuer"):
        BrokerSettings(signing_key="k", issuer="", credentials="c", trust="t")
    with pytest.raises(AttestPolicyError, match="nonce_lifetime_seconds"):
        BrokerSettings(
            signing_key="k", issuer="i", credentials="c", trust="t", nonce_lifetime_seconds=0
        )
    with pytest.raises(AttestPolicyError, match="unusable broker settings"):
        BrokerSettings.from_json('{"issuer": "i"}')
