"""The credential broker: short-lived credentials bound to verified evidence.

:class:`CredentialBroker` verifies evidence (or takes verified claims), asks the policy
decision point, and on an allow signs a JWT that never outlives the decision; it can give
the same decision as an EAR attestation result. :class:`SigningKey` and :class:`KeySet`
hold the signing keys (ES256 or EdDSA, rotation through the JWKS);
:class:`CredentialRegistry` records what each credential rests on, so revoking a value
returns the live credentials that depended on it.
"""

from attestpolicy.broker._broker import CredentialBroker, RevocationOutcome
from attestpolicy.broker._credential import Credential
from attestpolicy.broker._ear import EAR_MEDIA_TYPE, EAT_PROFILE, EarResult
from attestpolicy.broker._errors import BrokerError
from attestpolicy.broker._registry import (
    CredentialRegistry,
    IssuedCredential,
    IssuedNonce,
    RevocationList,
)
from attestpolicy.broker._signing import KeySet, SigningKey

__all__ = [
    "EAR_MEDIA_TYPE",
    "EAT_PROFILE",
    "BrokerError",
    "Credential",
    "CredentialBroker",
    "CredentialRegistry",
    "EarResult",
    "IssuedCredential",
    "IssuedNonce",
    "KeySet",
    "RevocationList",
    "RevocationOutcome",
    "SigningKey",
]
