"""CredentialMiddleware over real HTTP on 127.0.0.1: a Starlette app served by uvicorn,
the broker's JWKS and revocation list served beside it, tokens signed with keys made now."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import jwt
import pytest
from evidence.helpers import der_to_pem, with_x509_version
from pep.helpers import (
    JWKS_PATH,
    REVOCATIONS_PATH,
    Publisher,
    TestKey,
    b64url,
    client_certificate,
    credential_claims,
    get,
    middleware_options,
    pem,
    plain_app,
    publishing,
    service,
    serving,
    unsigned,
    wait_until,
)

from attestpolicy.pep import LOGGER_NAME, CredentialMiddleware
from attestpolicy.pep._tokens import TokenVerifier, thumbprint

KEY = TestKey("ES256")
ED_KEY = TestKey("EdDSA")


@pytest.fixture
def key() -> TestKey:
    return KEY


@pytest.fixture
def ed_key() -> TestKey:
    return ED_KEY


@pytest.fixture(scope="module")
def publisher() -> Iterator[Publisher]:
    with publishing(KEY, ED_KEY) as running:
        yield running


@pytest.fixture(scope="module")
def url(publisher: Publisher) -> Iterator[str]:
    """The protected service (default settings but quick polls), shared by the module."""
    with serving(service(**middleware_options(publisher))) as running:
        yield running


def _refused(response: Any, status: int, fragment: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message"}
    assert body["code"] == {401: "unauthorized", 403: "forbidden", 503: "unavailable"}[status]
    assert fragment in body["message"], body
    return body


# --- what passes ----------------------------------------------------------------------


def test_a_valid_credential_passes_with_its_claims(url: str, key: TestKey, ed_key: TestKey) -> None:
    for signer in (key, ed_key):
        claims = credential_claims()
        response = get(f"{url}/whoami", signer.sign(claims))
        assert response.status_code == 200, response.text
        assert response.json() == {"attestation": claims}


def test_within_the_leeway_passes(url: str, key: TestKey) -> None:
    now = datetime.now(UTC)
    expired_lately = credential_claims(now=now - timedelta(minutes=5, seconds=10))
    early = credential_claims(now=now + timedelta(seconds=10))
    for claims in (expired_lately, early):
        assert get(f"{url}/whoami", key.sign(claims)).status_code == 200


def test_exclusions_pass_unchecked(url: str) -> None:
    assert get(f"{url}/health").json() == {"open": True, "attestation": False}
    assert get(f"{url}/public/a/b").status_code == 200
    # OPTIONS is excluded by default: the app answers it (here: the route has no OPTIONS)
    preflight = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=10)
    preflight.request("OPTIONS", "/whoami")
    assert preflight.getresponse().status == 405
    preflight.close()
    # an excluded prefix is a prefix of segments only; other paths are checked
    for path in ("/healthz", "/public", "/whoami?/health"):
        assert get(f"{url}{path}").status_code == 401


# --- what is refused: the token ----------------------------------------------------------


def _hs256(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """A token signed HS256 with ``secret`` (pyjwt refuses to use a public key so)."""
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    signing_input = unsigned(claims, header).rstrip(".")
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def _stolen_kid() -> TestKey:
    """Another key that claims the published key's id."""
    stolen = TestKey("ES256")
    stolen.kid = KEY.kid
    return stolen


def _at(minutes: float) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


_NONE = {"alg": "none", "typ": "JWT", "kid": KEY.kid}
_CLAIMS = credential_claims

# (case, the token, what the refusal says): each is made when the test runs
REFUSALS: list[tuple[str, Callable[[], str], str]] = [
    ("wrong key", lambda: _stolen_kid().sign(_CLAIMS()), "signature does not verify"),
    ("expired", lambda: KEY.sign(_CLAIMS(now=_at(-10))), "has expired"),
    ("not yet valid", lambda: KEY.sign(_CLAIMS(now=_at(2))), "not yet valid"),
    ("wrong audience", lambda: KEY.sign(_CLAIMS(aud="other")), "audience"),
    ("audience list", lambda: KEY.sign(_CLAIMS(aud=["vault"])), "audience"),
    ("wrong issuer", lambda: KEY.sign(_CLAIMS(iss="https://evil")), "issuer"),
    ("no jti", lambda: KEY.sign(_CLAIMS(jti=None)), "no jti claim"),
    ("no exp", lambda: KEY.sign(_CLAIMS(exp=None)), "no exp claim"),
    ("empty sub", lambda: KEY.sign(_CLAIMS(sub="")), "sub claim"),
    ("no attestation", lambda: KEY.sign(_CLAIMS(attestation=None)), "attestation"),
    ("alg none", lambda: unsigned(_CLAIMS(), _NONE), "algorithm is not allowed"),
    (
        "HS256, the public key PEM as secret",
        lambda: _hs256(_CLAIMS(), KEY.public_pem, KEY.kid),
        "algorithm is not allowed",
    ),
    (
        "HS256, the JWK as secret",
        lambda: _hs256(_CLAIMS(), json.dumps(KEY.jwk).encode(), KEY.kid),
        "algorithm is not allowed",
    ),
    (
        "ES256 header, the EdDSA key's kid",
        lambda: jwt.encode(_CLAIMS(), TestKey().private, "ES256", headers={"kid": ED_KEY.kid}),
        "not its key's",
    ),
    ("critical header", lambda: KEY.sign(_CLAIMS(), crit=["exp"], exp=1), "token is invalid"),
    ("typ not JWT", lambda: KEY.sign(_CLAIMS(), typ="at+jwt"), "not a JWT"),
    ("no kid", lambda: jwt.encode(_CLAIMS(), KEY.private, "ES256"), "no key"),
    ("garbage", lambda: "abc.def.ghi", "malformed"),
    ("oversized", lambda: KEY.sign(_CLAIMS(pad="x" * 17_000)), "over 16384 bytes"),
]


@pytest.mark.parametrize(
    ("make", "fragment"), [case[1:] for case in REFUSALS], ids=[case[0] for case in REFUSALS]
)
def test_a_bad_token_is_401(url: str, make: Callable[[], str], fragment: str) -> None:
    response = get(f"{url}/whoami", make())
    _refused(response, 401, fragment)
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_')


@pytest.mark.parametrize(
    ("headers", "fragment", "error"),
    [
        ({}, "no bearer token", None),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "not a bearer JWT", "invalid_request"),
        ({"Authorization": "Bearer"}, "not a bearer JWT", "invalid_request"),
        ({"Authorization": "Bearer a.b"}, "not a bearer JWT", "invalid_request"),
        ({"Authorization": "Bearer a b.c.d"}, "not a bearer JWT", "invalid_request"),
    ],
)
def test_a_missing_or_malformed_header_is_401(
    url: str, headers: dict[str, str], fragment: str, error: str | None
) -> None:
    response = get(f"{url}/whoami", **headers)
    _refused(response, 401, fragment)
    challenge = response.headers["www-authenticate"]
    assert challenge == "Bearer" if error is None else f'error="{error}"' in challenge


def test_two_authorization_headers_are_401(url: str, key: TestKey) -> None:
    token = key.sign(credential_claims())
    connection = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=10)
    connection.putrequest("GET", "/whoami")
    for _ in range(2):
        connection.putheader("Authorization", f"Bearer {token}")
    connection.endheaders()
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert response.status == 401
    assert body["message"] == "more than one Authorization header"


# --- the JWKS: unknown keys, refresh bounds, rotation, a broker that is down ----------------


def test_an_unknown_kid_refreshes_once_then_rejects(key: TestKey) -> None:
    newcomer = TestKey("ES256")
    with (
        publishing(key) as publisher,
        serving(service(**middleware_options(publisher, jwks_min_refresh_seconds=0.5))) as url,
    ):
        time.sleep(0.6)  # past the bound since the start-up fetch
        before = publisher.hits[JWKS_PATH]
        for _ in range(5):
            _refused(get(f"{url}/whoami", newcomer.sign(credential_claims())), 401, "(kid)")
        assert publisher.hits[JWKS_PATH] == before + 1  # one refresh, rate-bounded
        assert get(f"{url}/whoami", key.sign(credential_claims())).status_code == 200


def test_a_rotated_key_is_fetched_on_first_use(key: TestKey) -> None:
    rotated = TestKey("EdDSA")
    with publishing(key) as publisher:
        options = middleware_options(publisher, jwks_min_refresh_seconds=0.3)
        with serving(service(**options)) as url:
            token = rotated.sign(credential_claims())
            time.sleep(0.4)
            publisher.jwks = {"keys": [rotated.jwk, key.jwk]}  # the broker rotated
            assert get(f"{url}/whoami", token).status_code == 200
            publisher.jwks = {"keys": [rotated.jwk]}  # and retired the old key
            old = key.sign(credential_claims())
            assert get(f"{url}/whoami", old).status_code == 200  # cached until a refresh


def test_the_jwks_is_refreshed_in_the_background_when_old(key: TestKey) -> None:
    with publishing(key) as publisher:
        options = middleware_options(publisher, jwks_max_age_seconds=0.2)
        with serving(service(**options)) as url:
            publisher.jwks = {"keys": []}  # the key is retired
            wait_until(
                lambda: get(f"{url}/whoami", key.sign(credential_claims())).status_code == 401
            )


def test_a_broker_that_is_down_is_503(key: TestKey) -> None:
    publisher = Publisher()  # bound, then closed: nothing listens on its port
    publisher.server_close()
    with serving(service(**middleware_options(publisher, http_timeout_seconds=0.5))) as url:
        for token in (key.sign(credential_claims()), None):
            response = get(f"{url}/whoami", token)
            _refused(response, 503, "revocation list has not been fetched")
            assert response.headers["retry-after"] == "1"
        assert get(f"{url}/health").status_code == 200


def test_a_jwks_that_comes_back_is_taken(key: TestKey) -> None:
    with publishing(key) as publisher:
        publisher.status[JWKS_PATH] = 500
        with serving(service(**middleware_options(publisher))) as url:
            token = key.sign(credential_claims())
            _refused(get(f"{url}/whoami", token), 503, "JWKS cannot be had")
            del publisher.status[JWKS_PATH]  # the poller tries again while it has none
            wait_until(lambda: get(f"{url}/whoami", token).status_code == 200)


def test_a_jwks_answered_too_slowly_is_503(key: TestKey) -> None:
    with publishing(key) as publisher:
        publisher.delay[JWKS_PATH] = 2.0
        options = middleware_options(publisher, http_timeout_seconds=0.3)
        with serving(service(**options)) as url:
            _refused(get(f"{url}/whoami", key.sign(credential_claims())), 503, "JWKS")


@pytest.mark.parametrize(
    "jwks",
    [
        "down",
        b"not json",
        {"keys": "none"},
        {"keys": [{"kty": "EC"}]},
        "too many",
        "duplicate kid",
        "too large",
    ],
)
def test_an_unusable_jwks_is_503(key: TestKey, jwks: Any) -> None:
    with publishing(key) as publisher:
        if jwks == "down":
            publisher.status[JWKS_PATH] = 500
        elif jwks == "too many":
            publisher.jwks = {"keys": [TestKey().jwk for _ in range(17)]}
        elif jwks == "duplicate kid":
            publisher.jwks = {"keys": [key.jwk, key.jwk]}
        elif jwks == "too large":
            publisher.jwks = {"keys": [key.jwk], "padding": "x" * 70_000}
        else:
            publisher.jwks = jwks
        with serving(service(**middleware_options(publisher))) as url:
            _refused(get(f"{url}/whoami", key.sign(credential_claims())), 503, "JWKS")


def test_keys_the_middleware_cannot_use_are_left_out(key: TestKey, ed_key: TestKey) -> None:
    secret = b"s" * 32
    hmac_jwk = {"kty": "oct", "k": b64url(secret), "kid": "hmac", "alg": "HS256"}
    encryption = {**ed_key.jwk, "use": "enc"}
    with publishing(key) as publisher:
        publisher.jwks = {"keys": [hmac_jwk, encryption, key.jwk]}
        with serving(service(**middleware_options(publisher, algorithms=["ES256"]))) as url:
            assert get(f"{url}/whoami", key.sign(credential_claims())).status_code == 200
            forged = jwt.encode(credential_claims(), secret, "HS256", headers={"kid": "hmac"})
            _refused(get(f"{url}/whoami", forged), 401, "algorithm is not allowed")
            _refused(get(f"{url}/whoami", ed_key.sign(credential_claims())), 401, "algorithm")


# --- revocation ----------------------------------------------------------------------------


def test_a_revoked_credential_is_403_and_logged(
    key: TestKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER_NAME)
    with publishing(key) as publisher, serving(service(**middleware_options(publisher))) as url:
        claims, other = credential_claims(), credential_claims()
        token = key.sign(claims)
        assert get(f"{url}/whoami", token).status_code == 200
        publisher.revoke(claims["jti"], claims["exp"])
        wait_until(lambda: get(f"{url}/whoami", token).status_code == 403)
        _refused(get(f"{url}/whoami", token), 403, "revoked")
        assert get(f"{url}/whoami", key.sign(other)).status_code == 200
        wait_until(lambda: publisher.not_modified > 0)  # polled with If-None-Match
    denies = [json.loads(r.getMessage()) for r in caplog.records if r.name == LOGGER_NAME]
    revoked = next(entry for entry in denies if entry["status"] == 403)
    assert revoked == {
        "event": "pep.deny",
        "middleware": "credential",
        "status": 403,
        "code": "forbidden",
        "message": "the credential has been revoked",
        "method": "GET",
        "path": "/whoami",
        "client": "127.0.0.1",
        "jti": claims["jti"],
        "sub": claims["sub"],
    }
    assert token not in caplog.text
    assert token.split(".")[2] not in caplog.text


def test_a_stale_revocation_list_fails_closed_then_recovers(key: TestKey) -> None:
    with publishing(key) as publisher:
        options = middleware_options(publisher, revocations_max_age_seconds=0.5)
        with serving(service(**options)) as url:
            token = key.sign(credential_claims())
            assert get(f"{url}/whoami", token).status_code == 200
            publisher.status[REVOCATIONS_PATH] = 503
            wait_until(lambda: get(f"{url}/whoami", token).status_code == 503)
            _refused(get(f"{url}/whoami", token), 503, "revocation list is stale")
            _refused(get(f"{url}/whoami"), 503, "stale")  # every request
            assert get(f"{url}/health").status_code == 200
            del publisher.status[REVOCATIONS_PATH]
            wait_until(lambda: get(f"{url}/whoami", token).status_code == 200)


@pytest.mark.parametrize(
    "body",
    [
        b'{"revoked": [], "generated_at": 1, "revoked": []}',
        b'{"revoked": [{"jti": "a"}], "generated_at": 1}',
        b'{"revoked": [{"jti": "a", "exp": "1"}], "generated_at": 1}',
        b'{"revoked": {}, "generated_at": 1}',
        b'{"revoked": []}',
        b"[]",
    ],
)
def test_a_malformed_revocation_list_is_not_taken(key: TestKey, body: bytes) -> None:
    with publishing(key) as publisher:
        publisher.revocation_source = lambda: (body, '"x"')
        with serving(service(**middleware_options(publisher))) as url:
            _refused(get(f"{url}/whoami", key.sign(credential_claims())), 503, "not been fetched")


# --- the certificate binding (cnf) --------------------------------------------------------


def _pem_header(der: bytes) -> str:
    return quote(pem(der))  # as nginx's $ssl_client_escaped_cert


def test_a_bound_credential_needs_its_certificate(publisher: Publisher, key: TestKey) -> None:
    mine = client_certificate()
    theirs = client_certificate()
    bound = key.sign(credential_claims(cnf={"x5t#S256": thumbprint(mine)}))
    unbound = key.sign(credential_claims())
    options = middleware_options(publisher, client_cert_header="X-Client-Cert")
    with serving(service(**options)) as url:
        whoami = f"{url}/whoami"
        assert get(whoami, bound, **{"X-Client-Cert": _pem_header(mine)}).status_code == 200
        _refused(get(whoami, bound, **{"X-Client-Cert": _pem_header(theirs)}), 401, "not the one")
        _refused(get(whoami, bound), 401, "none was presented")
        _refused(get(whoami, bound, **{"X-Client-Cert": ""}), 401, "none was presented")
        _refused(get(whoami, bound, **{"X-Client-Cert": "garbage"}), 401, "cannot be read")
        bad_version = quote(der_to_pem(with_x509_version(mine, 5)))  # InvalidVersion on load
        _refused(get(whoami, bound, **{"X-Client-Cert": bad_version}), 401, "cannot be read")
        assert get(whoami, unbound, **{"X-Client-Cert": _pem_header(theirs)}).status_code == 200
        assert get(whoami, unbound).status_code == 200
        odd = key.sign(credential_claims(cnf={"jkt": "abc"}))
        _refused(get(whoami, odd, **{"X-Client-Cert": _pem_header(mine)}), 401, "x5t#S256")


def test_without_a_certificate_source_a_bound_credential_is_refused(url: str, key: TestKey) -> None:
    """No proxy header configured and no TLS extension from uvicorn: fail closed."""
    mine = client_certificate()
    bound = key.sign(credential_claims(cnf={"x5t#S256": thumbprint(mine)}))
    _refused(get(f"{url}/whoami", bound, **{"X-Client-Cert": _pem_header(mine)}), 401, "none")


async def _call(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    """Call an ASGI app in-process with an empty request body; the messages it sent."""
    sent: list[dict[str, Any]] = []
    first = scope["type"] == "http"

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "websocket.connect"} if scope["type"] == "websocket" else {}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _scope(kind: str, token: str | None, **extra: Any) -> dict[str, Any]:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    scope: dict[str, Any] = {"type": kind, "path": "/whoami", "headers": headers}
    scope.update({"method": "GET"} if kind == "http" else {})
    scope.update(extra)
    return scope


def test_the_asgi_tls_extension_gives_the_certificate(publisher: Publisher, key: TestKey) -> None:
    """As Hypercorn reports a verified client certificate (uvicorn does not)."""
    import asyncio

    mine = client_certificate()
    theirs = client_certificate()
    bound = key.sign(credential_claims(cnf={"x5t#S256": thumbprint(mine)}))
    app = service(**middleware_options(publisher))

    def tls(chain: list[str], error: str | None = None) -> dict[str, Any]:
        return {"tls": {"client_cert_chain": chain, "client_cert_error": error}}

    async def statuses() -> list[int]:
        scopes = [
            _scope("http", bound, extensions=tls([pem(mine)])),
            _scope("http", bound, extensions=tls([pem(mine)], error="unknown ca")),
            _scope("http", bound, extensions=tls([])),
            _scope("http", bound),
        ]
        scopes.append(_scope("http", bound, extensions=tls([pem(theirs)])))
        return [(await _call(app, scope))[0]["status"] for scope in scopes]

    assert asyncio.run(statuses()) == [200, 401, 401, 401, 401]


def test_a_websocket_without_credential_is_closed(publisher: Publisher, key: TestKey) -> None:
    import asyncio

    app = service(**middleware_options(publisher))
    sent = asyncio.run(_call(app, _scope("websocket", None)))
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "unauthorized"}]


# --- faults and lifecycle --------------------------------------------------------------


def test_a_fault_in_verification_is_503_never_a_pass(
    url: str, key: TestKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(self: TokenVerifier, token: str, keys: Any) -> dict[str, Any]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(TokenVerifier, "verify", explode)
    _refused(get(f"{url}/whoami", key.sign(credential_claims())), 503, "could not be checked")


def test_the_poller_lives_with_the_lifespan(key: TestKey) -> None:
    threads_before = set(threading.enumerate())
    with publishing(key) as publisher:
        with serving(service(**middleware_options(publisher))):
            assert publisher.hits[REVOCATIONS_PATH] >= 1  # fetched at startup, before requests
            assert publisher.hits[JWKS_PATH] == 1
            wait_until(lambda: publisher.hits[REVOCATIONS_PATH] >= 3)
        stopped = publisher.hits[REVOCATIONS_PATH]
        time.sleep(0.3)
        assert publisher.hits[REVOCATIONS_PATH] == stopped
    wait_until(lambda: set(threading.enumerate()) <= threads_before)


def test_without_a_lifespan_the_first_request_starts_the_poller(
    publisher: Publisher, key: TestKey
) -> None:
    import asyncio

    app = CredentialMiddleware(plain_app(), **middleware_options(publisher))

    async def main() -> list[int]:
        token = key.sign(credential_claims())
        return [(await _call(app, _scope("http", t)))[0]["status"] for t in (token, None)]

    assert asyncio.run(main()) == [200, 401]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"algorithms": ["ES256", "none"]}, "not accepted"),
        ({"algorithms": ["HS256"]}, "not accepted"),
        ({"algorithms": []}, "at least one"),
        ({"algorithms": "ES256"}, "not one string"),
        ({"jwks_url": "file:///etc/passwd"}, "http or https"),
        ({"revocations_url": "http://user:pw@host/x"}, "credentials"),
        ({"revocations_max_age_seconds": 0.05}, "> 0.1"),
        ({"poll_interval_seconds": float("nan")}, "finite"),
        ({"leeway_seconds": -1}, "between 0 and 300"),
        ({"issuer": ""}, "issuer"),
        ({"max_token_bytes": 10}, "max_token_bytes"),
        ({"client_cert_header": "X Cert"}, "header name"),
        ({"exclude_paths": ["health"]}, "start with '/'"),
        ({"exclude_paths": "/health"}, "sequences"),
    ],
)
def test_bad_settings_are_refused(
    publisher: Publisher, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        CredentialMiddleware(plain_app(), **middleware_options(publisher, **change))
