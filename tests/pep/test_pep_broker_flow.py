"""The PEP with the real broker: a credential issued by CredentialBroker (keys in a KeySet,
recorded in a real SQLite registry) is accepted by a service behind CredentialMiddleware,
then refused once the broker revokes a value it rested on."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from pep.helpers import (
    client_certificate,
    get,
    middleware_options,
    pem,
    publishing,
    service,
    serving,
    wait_until,
)

from attestpolicy import PolicyDecisionPoint
from attestpolicy.broker import CredentialBroker, CredentialRegistry, KeySet, SigningKey

ISSUER = "https://broker.test"


def _claims_now(claims: dict[str, Any]) -> dict[str, Any]:
    """The example claim set moved to the current time (fresh node and runtime evidence)."""
    now = datetime.now(UTC).replace(microsecond=0)
    moved = copy.deepcopy(claims)
    moved["now"] = now.isoformat().replace("+00:00", "Z")
    moved["node"]["issued_at"] = (now - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    moved["runtime"]["expires_at"] = (now + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    return moved


@pytest.fixture
def broker(example_config: dict[str, Any], tmp_path: Path) -> Iterator[CredentialBroker]:
    keys = KeySet(SigningKey.generate("ES256"), retired=[SigningKey.generate("EdDSA")])
    registry = CredentialRegistry(tmp_path / "credentials.sqlite")
    with (
        PolicyDecisionPoint.local(config=example_config) as pdp,
        CredentialBroker(pdp, keys, ISSUER, registry) as running,
    ):
        yield running


def test_a_broker_credential_is_accepted_until_revoked(
    broker: CredentialBroker, claims: dict[str, Any], tmp_path: Path
) -> None:
    registry = CredentialRegistry(tmp_path / "credentials.sqlite")  # the serve side's handle
    der = client_certificate()
    moved = _claims_now(claims)
    credential = broker.issue_for_claims(moved, client_certificate=der)
    assert credential.token is not None, credential.decision.reasons

    def revocation_list() -> tuple[bytes, str]:
        listed = registry.revoked()
        return json.dumps(listed.to_json_dict()).encode(), f'"{listed.etag}"'

    with publishing() as publisher:
        publisher.jwks = broker.jwks()
        publisher.revocation_source = revocation_list
        options = middleware_options(publisher, client_cert_header="X-Client-Cert")
        with serving(service(**options)) as url:
            whoami, presented = f"{url}/whoami", {"X-Client-Cert": quote(pem(der))}
            accepted = get(whoami, credential.token, **presented)
            assert accepted.status_code == 200, accepted.text
            attestation = accepted.json()["attestation"]
            assert attestation["jti"] == credential.jti
            assert attestation["sub"] == moved["subject"]["spiffe_id"]
            assert attestation["aud"] == moved["request"]["audience"]
            assert (
                attestation["attestation"]["evidence"]["image_digest"] == moved["image"]["digest"]
            )
            assert get(whoami, credential.token).status_code == 401  # bound: no certificate

            outcome = broker.revoke(image_digest=moved["image"]["digest"])
            assert [issued.jti for issued in outcome.credentials] == [credential.jti]
            wait_until(lambda: get(whoami, credential.token, **presented).status_code == 403)
            assert get(whoami, credential.token, **presented).json() == {
                "code": "forbidden",
                "message": "the credential has been revoked",
            }
            assert broker.issue_for_claims(_claims_now(claims)).token is None  # denied now
    registry.close()
