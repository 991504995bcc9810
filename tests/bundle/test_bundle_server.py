"""The bundle server (``attestpolicy bundle serve``) over real HTTP on 127.0.0.1: paths as
OPA asks for them, strong ETags and 304, the bearer token, 404s, signature checks, the
token file, and the command itself."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from bundle.bundle_fleet import build, replace_file, tamper
from bundle.helpers import REPO, pem
from cryptography.hazmat.primitives.asymmetric import rsa
from serving import BackgroundServer, serve_process

from attestpolicy.bundle import TOKEN_ENV, BundleLimits, BundleServer, load_token
from attestpolicy.bundle._server import etag_matches
from attestpolicy.cli import main
from attestpolicy.errors import BundleError

TOKEN = "a-token-for-the-fleet-0123456789"


@pytest.fixture(scope="module")
def signed(rsa_key: rsa.RSAPrivateKey) -> bytes:
    return build("r1", rsa_key)


@pytest.fixture
def directory(tmp_path: Path, signed: bytes) -> Path:
    served = tmp_path / "served"
    (served / "http" / "example").mkdir(parents=True)
    (served / "attestpolicy.tar.gz").write_bytes(signed)
    (served / "http" / "example" / "authz.tar.gz").write_bytes(signed)
    (served / ".hidden.tar.gz").write_bytes(signed)
    (served / "notes.txt").write_text("not a bundle")
    (served / "dir.tar.gz").mkdir()
    (tmp_path / "secret.tar.gz").write_bytes(b"outside the served directory")
    (served / "link.tar.gz").symlink_to(served / "attestpolicy.tar.gz")
    return served


@pytest.fixture
def url(directory: Path) -> Iterator[str]:
    with BackgroundServer(BundleServer(directory)) as server:
        yield server.url


def _etag(content: bytes) -> str:
    return f'"{hashlib.sha256(content).hexdigest()}"'


def test_bundles_are_served_at_opa_resource_paths(url: str, signed: bytes) -> None:
    for path in (
        "/bundles/attestpolicy.tar.gz",
        "/bundles/attestpolicy",  # OPA's default resource for a bundle named attestpolicy
        "/bundles/http/example/authz.tar.gz",  # the resource of OPA's configuration example
        "/bundles/http/example/authz",
    ):
        response = requests.get(url + path, timeout=10)
        assert response.status_code == 200, path
        assert response.content == signed
        assert response.headers["content-type"] == "application/gzip"
        assert response.headers["etag"] == _etag(signed)


def test_if_none_match_gets_a_304_without_a_body(url: str, signed: bytes) -> None:
    etag = _etag(signed)
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = requests.get(
            f"{url}/bundles/attestpolicy", headers={"If-None-Match": header}, timeout=10
        )
        assert response.status_code == 304, header
        assert response.content == b""
        assert response.headers["etag"] == etag
    other = requests.get(
        f"{url}/bundles/attestpolicy", headers={"If-None-Match": '"other"'}, timeout=10
    )
    assert other.status_code == 200
    assert other.content == signed


def test_the_etag_follows_the_file(
    url: str, directory: Path, rsa_key: rsa.RSAPrivateKey, signed: bytes
) -> None:
    newer = build("r2", rsa_key)
    replace_file(directory / "attestpolicy.tar.gz", newer)
    response = requests.get(
        f"{url}/bundles/attestpolicy", headers={"If-None-Match": _etag(signed)}, timeout=10
    )
    assert response.status_code == 200
    assert response.content == newer
    assert response.headers["etag"] == _etag(newer)


def test_head_answers_the_headers_alone(url: str, signed: bytes) -> None:
    response = requests.head(f"{url}/bundles/attestpolicy", timeout=10)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len(signed))
    assert response.headers["etag"] == _etag(signed)


def test_health(url: str) -> None:
    response = requests.get(f"{url}/health", timeout=10)
    assert response.status_code == 200
    assert response.json() == {}


@pytest.mark.parametrize(
    "path",
    [
        "/bundles/missing",
        "/bundles/notes.txt",
        "/bundles/.hidden.tar.gz",
        "/bundles/link.tar.gz",
        "/bundles/dir.tar.gz",
        "/bundles/../secret.tar.gz",
        "/bundles/http/../attestpolicy.tar.gz",
        "/bundles//attestpolicy.tar.gz",
        "/bundles/",
        "/attestpolicy.tar.gz",
        "/",
    ],
)
def test_anything_else_is_a_clear_404(url: str, path: str) -> None:
    status, body = _raw_get(url, path)  # the path exactly as written, not normalized
    assert status == 404, (path, body)
    assert body == {"code": "resource_not_found", "message": f"no bundle at {path}"}


def _raw_get(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def test_other_methods_are_refused(url: str) -> None:
    response = requests.post(f"{url}/bundles/attestpolicy", data=b"x", timeout=10)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.json()["code"] == "invalid_operation"


def test_the_token_is_required(directory: Path, signed: bytes) -> None:
    with BackgroundServer(BundleServer(directory, token=TOKEN)) as server:
        bundle = f"{server.url}/bundles/attestpolicy"
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token-of-the-same-size-xx"},
            {"Authorization": TOKEN},
            {"Authorization": f"Basic {TOKEN}"},
        ):
            response = requests.get(bundle, headers=headers, timeout=10)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"] == 'Bearer realm="attestpolicy-bundles"'
            assert response.json()["code"] == "unauthorized"
        # no answer says whether a bundle exists before the token is checked
        assert requests.get(f"{server.url}/bundles/missing", timeout=10).status_code == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        response = requests.get(bundle, headers=good, timeout=10)
        assert response.status_code == 200
        assert response.content == signed
        missing = requests.get(f"{server.url}/bundles/missing", headers=good, timeout=10)
        assert missing.status_code == 404
        assert requests.get(f"{server.url}/health", timeout=10).status_code == 200


def test_with_a_key_only_verified_bundles_are_served(
    directory: Path, rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    served = BundleServer(directory, verification_key=pem(rsa_key.public_key()))
    with BackgroundServer(served) as server:
        bundle = f"{server.url}/bundles/attestpolicy"
        assert requests.get(bundle, timeout=10).status_code == 200
        for content, message in (
            (build("r2", None), "a signature is required"),
            (build("r2", other_rsa_key), "does not verify with the verification key"),
            (tamper(build("r2", rsa_key)), "digest mismatch"),
        ):
            replace_file(directory / "attestpolicy.tar.gz", content)
            response = requests.get(bundle, timeout=10)
            assert response.status_code == 500
            assert "is not served: it does not verify" in response.json()["message"]
            assert message in response.json()["message"]


def test_an_oversized_file_is_not_served(directory: Path) -> None:
    with BackgroundServer(
        BundleServer(directory, limits=BundleLimits(max_bundle_bytes=100))
    ) as server:
        response = requests.get(f"{server.url}/bundles/attestpolicy", timeout=10)
    assert response.status_code == 500
    assert "larger than 100 bytes" in response.json()["message"]


def test_server_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="bundle directory not found"):
        BundleServer(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="token must be a non-empty string"):
        BundleServer(tmp_path, token="")
    with pytest.raises(BundleError, match="verification key"):
        BundleServer(tmp_path, verification_key=b"not a key")


def test_etag_matching() -> None:
    assert etag_matches('"a"', '"a"')
    assert etag_matches('W/"a"', '"a"')
    assert etag_matches(' "b" , "a"', '"a"')
    assert etag_matches("*", '"a"')
    assert not etag_matches(None, '"a"')
    assert not etag_matches('"ab"', '"a"')
    assert not etag_matches("", '"a"')


# --- the token file -------------------------------------------------------------------------


def _token_file(tmp_path: Path, content: str, mode: int = 0o600) -> Path:
    path = tmp_path / f"token-{len(list(tmp_path.glob('token-*')))}"
    path.write_text(content)
    path.chmod(mode)
    return path


def test_load_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert load_token() is None
    assert load_token(_token_file(tmp_path, f"{TOKEN}\n")) == TOKEN
    monkeypatch.setenv(TOKEN_ENV, f" {TOKEN} ")
    assert load_token() == TOKEN
    cases = [
        (_token_file(tmp_path, TOKEN, 0o644), "readable by group or others"),
        (_token_file(tmp_path, ""), "is empty"),
        (_token_file(tmp_path, "short"), "16 to 4096 characters"),
        (_token_file(tmp_path, "two words of a token"), "one word"),
        (tmp_path / "missing", "cannot read token file"),
    ]
    for path, message in cases:
        with pytest.raises(BundleError, match=message):
            load_token(path)


# --- the command ----------------------------------------------------------------------------


def test_bundle_serve_command(tmp_path: Path, directory: Path, signed: bytes) -> None:
    token_file = _token_file(tmp_path, TOKEN)
    argv = [sys.executable, "-m", "attestpolicy", "bundle", "serve", str(directory)]
    argv += ["--addr", "127.0.0.1:0", "--token-file", str(token_file)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(TOKEN_ENV, None)
    with serve_process(argv, cwd=tmp_path, env=env, log_path=tmp_path / "serve.log") as (_, url):
        bundle = f"{url}/bundles/attestpolicy"
        assert requests.get(bundle, timeout=10).status_code == 401
        response = requests.get(bundle, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert response.status_code == 200
        assert response.content == signed
    assert "bearer token required" in (tmp_path / "serve.log").read_text()


def test_bundle_serve_usage_errors(
    tmp_path: Path, directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loose = _token_file(tmp_path, TOKEN, 0o644)
    for argv, message in (
        (["bundle", "serve", str(tmp_path / "nowhere")], "bundle directory not found"),
        (["bundle", "serve", str(directory), "--token-file", str(loose)], "chmod 600"),
        (["bundle", "serve", str(directory), "--addr", "nohost"], "host:port"),
        (
            ["bundle", "serve", str(directory), "--verification-key", str(tmp_path / "no.pem")],
            "cannot read verification key",
        ),
    ):
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err
