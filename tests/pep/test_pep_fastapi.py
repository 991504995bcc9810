"""A FastAPI app behind both middlewares, as docs/pep.md shows it, over real HTTP."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from pep.helpers import (
    TestKey,
    credential_claims,
    get,
    middleware_options,
    publishing,
    serving,
)

from attestpolicy import ClaimSet, PolicyDecisionPoint
from attestpolicy.pep import CredentialMiddleware, DecisionMiddleware


def test_fastapi_app_behind_both_middlewares(claims: dict[str, Any], example_config: Any) -> None:
    key = TestKey()
    app = FastAPI()

    @app.get("/payments")
    async def payments(request: Request) -> dict[str, Any]:
        return {
            "workload": request.state.attestation["sub"],
            "allowed_for": request.state.decision.ttl_seconds,
        }

    async def extract(request: Request) -> ClaimSet:
        # what the verified credential says, with the rest of the claim set this service
        # keeps for its callers (here: the example claim set)
        subject = {"spiffe_id": request.state.attestation["sub"]}
        return ClaimSet.parse({**claims, "subject": subject})

    with PolicyDecisionPoint.local(config=example_config) as pdp, publishing(key) as publisher:
        # the last middleware added runs first: credentials, then the decision
        app.add_middleware(DecisionMiddleware, pdp=pdp, extract=extract)
        app.add_middleware(CredentialMiddleware, **middleware_options(publisher))
        with serving(app) as url:
            allowed = get(f"{url}/payments", key.sign(credential_claims()))
            assert allowed.status_code == 200, allowed.text
            assert allowed.json() == {
                "workload": claims["subject"]["spiffe_id"],
                "allowed_for": 900,
            }
            other = credential_claims(sub="spiffe://prod.example.com/ns/other/sa/x")
            denied = get(f"{url}/payments", key.sign(other))
            assert denied.status_code == 403
            assert denied.json()["errors"][0]["code"] == "subject.unregistered"
            assert get(f"{url}/payments").status_code == 401
            assert get(f"{url}/docs").status_code == 401  # nothing is excluded by default
