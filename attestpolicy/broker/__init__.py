"""The credential broker: short-lived credentials bound to verified evidence.

:class:`SigningKey` and :class:`KeySet` hold the signing keys (ES256 or EdDSA, rotation
through the JWKS).
"""

from attestpolicy.broker._errors import BrokerError
from attestpolicy.broker._signing import KeySet, SigningKey

__all__ = ["BrokerError", "KeySet", "SigningKey"]
