"""Policy enforcement for ASGI services (Starlette, FastAPI): two middlewares.

:class:`CredentialMiddleware` lets a request through only with a valid, unrevoked
credential from the broker (verified against its JWKS, bound to the client certificate
when the credential says so); :class:`DecisionMiddleware` has the policy decide each
request (``await pdp.adecide(...)``). Both fail closed: any fault is a refusal with an
OPA-style JSON error and a log line (logger ``attestpolicy.pep``). docs/pep.md shows how.
"""

from attestpolicy.pep._common import LOGGER_NAME
from attestpolicy.pep._credential import (
    MAX_JWKS_BYTES,
    MAX_JWKS_KEYS,
    MAX_REVOCATION_LIST_BYTES,
    CredentialMiddleware,
)
from attestpolicy.pep._decision import DecisionMiddleware, Evidence, Extract
from attestpolicy.pep._jwks import SUPPORTED_ALGORITHMS

__all__ = [
    "LOGGER_NAME",
    "MAX_JWKS_BYTES",
    "MAX_JWKS_KEYS",
    "MAX_REVOCATION_LIST_BYTES",
    "SUPPORTED_ALGORITHMS",
    "CredentialMiddleware",
    "DecisionMiddleware",
    "Evidence",
    "Extract",
]
