"""DecisionMiddleware over real HTTP on 127.0.0.1: the claims come in the request body,
the real policy decides (both engines where a Rego decision is at stake)."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pep.helpers import serving
from pep.slow_policy import SLOW_AUDIENCE, slow_pdp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message

from attestpolicy import PolicyDecisionPoint
from attestpolicy._demo import EVIDENCE_NONCE, EVIDENCE_TIME
from attestpolicy.pep import LOGGER_NAME, DecisionMiddleware, Evidence

EXAMPLES = Path(__file__).resolve().parents[2] / "attestpolicy" / "examples"


async def _echo(request: Request) -> JSONResponse:
    """What the app sees: its decision and the body ``extract`` read before it."""
    decision = request.state.decision
    return JSONResponse(
        {
            "ttl": decision.ttl_seconds,
            "decision_id": decision.decision_id,
            "body": await request.json(),
        }
    )


async def _open(request: Request) -> JSONResponse:
    return JSONResponse({"decided": hasattr(request.state, "decision")})


async def claims_from_body(request: Request) -> Any:
    """The claim set is the JSON body."""
    return await request.json()


def decided_app(pdp: PolicyDecisionPoint, **options: Any) -> Starlette:
    app = Starlette(routes=[Route("/act", _echo, methods=["POST"]), Route("/health", _open)])
    options.setdefault("extract", claims_from_body)
    app.add_middleware(DecisionMiddleware, pdp=pdp, exclude_paths=("/health",), **options)
    return app


def _post(url: str, body: Any) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{url}/act", data=data, timeout=30)


def _forbidden(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["code"] == "forbidden"
    return body


@pytest.fixture
def shipped(example_config: dict[str, Any], engine: str) -> Iterator[str]:
    """The shipped policy and example configuration in ``engine``, behind the middleware."""
    with (
        PolicyDecisionPoint.local(config=example_config, engine=engine) as pdp,
        serving(decided_app(pdp)) as url,
    ):
        yield url


def test_an_allow_passes_with_its_decision_and_the_body(
    shipped: str, claims: dict[str, Any]
) -> None:
    response = _post(shipped, claims)
    assert response.status_code == 200, response.text
    assert response.json()["ttl"] == 900
    assert response.json()["body"] == claims  # read by extract, then by the app


def test_a_deny_is_403_with_its_reasons_and_logged(
    shipped: str, claims: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER_NAME)
    claims["request"]["audience"] = "nobody"
    body = _forbidden(_post(shipped, claims))
    assert body["message"] == "denied by policy: request.unknown_audience"
    assert [error["code"] for error in body["errors"]] == ["request.unknown_audience"]
    assert body["decision_id"]
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == LOGGER_NAME]
    assert lines[-1] == {
        "event": "pep.deny",
        "middleware": "decision",
        "status": 403,
        "code": "forbidden",
        "message": "denied by policy: request.unknown_audience",
        "method": "POST",
        "path": "/act",
        "client": "127.0.0.1",
        "decision_id": body["decision_id"],
    }


def test_what_extract_cannot_read_is_403(shipped: str) -> None:
    broken = _forbidden(_post(shipped, b"{not json"))
    assert broken == {
        "code": "forbidden",
        "message": "the request could not be read: JSONDecodeError",
    }
    not_claims = _forbidden(_post(shipped, [1, 2]))
    assert [e["code"] for e in not_claims["errors"]] == ["input.invalid"]


def test_exclusions_pass_undecided(shipped: str) -> None:
    assert requests.get(f"{shipped}/health", timeout=10).json() == {"decided": False}


def test_a_passed_deadline_is_engine_timeout(
    claims: dict[str, Any], engine: str, tmp_path: Path
) -> None:
    with (
        slow_pdp(tmp_path, engine, cache=False) as pdp,
        serving(decided_app(pdp, deadline_seconds=0.05)) as url,
    ):
        slow = copy.deepcopy(claims)
        slow["request"]["audience"] = SLOW_AUDIENCE
        body = _forbidden(_post(url, slow))
        assert [error["code"] for error in body["errors"]] == ["engine.timeout"]
        assert body["errors"][0]["message"] == "no decision within the 0.05 s deadline"
        assert _post(url, claims).status_code == 200  # a quick decision still passes


def test_evidence_is_verified_then_decided(example_config: dict[str, Any]) -> None:
    from attestpolicy.evidence.document import load_evidence_document, load_trust_config

    config = json.loads((EXAMPLES / "evidence-config.json").read_text())
    trust = load_trust_config((EXAMPLES / "trust.json").read_bytes())

    async def evidence_from_body(request: Request) -> Evidence:
        document = load_evidence_document(await request.body())
        return Evidence(document, trust, nonce=EVIDENCE_NONCE, now=EVIDENCE_TIME)

    with (
        PolicyDecisionPoint.local(config=config) as pdp,
        serving(decided_app(pdp, extract=evidence_from_body, deadline_seconds=30)) as url,
    ):
        allowed = (EXAMPLES / "evidence" / "allow-eks-workload.json").read_bytes()
        response = requests.post(f"{url}/act", data=allowed, timeout=30)
        assert response.status_code == 200, response.text
        wrong = (EXAMPLES / "evidence" / "deny-wrong-signer.json").read_bytes()
        body = _forbidden(requests.post(f"{url}/act", data=wrong, timeout=30))
        assert body["errors"]


def test_a_websocket_is_refused(example_config: dict[str, Any]) -> None:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    with PolicyDecisionPoint.local(config=example_config) as pdp:
        app = decided_app(pdp)
        scope = {"type": "websocket", "path": "/act", "headers": []}
        asyncio.run(app(scope, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "forbidden"}]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"deadline_seconds": 0}, "deadline_seconds"),
        ({"deadline_seconds": float("inf")}, "deadline_seconds"),
        ({"extract": None}, "extract"),
        ({"pdp": object()}, "pdp"),
    ],
)
def test_bad_settings_are_refused(
    example_config: dict[str, Any], options: dict[str, Any], error: str
) -> None:
    with PolicyDecisionPoint.local(config=example_config) as pdp:
        settings: dict[str, Any] = {"pdp": pdp, "extract": claims_from_body, **options}
        with pytest.raises((TypeError, ValueError), match=error):
            DecisionMiddleware(Starlette(), **settings)
