"""The broker's error: key, registry and configuration problems."""

from __future__ import annotations

from attestpolicy.errors import AttestPolicyError

__all__ = ["BrokerError"]


class BrokerError(AttestPolicyError):
    """A signing key, the credential registry or the broker's configuration is unusable,
    or an argument to them is malformed (a nonce that cannot be used: ``nonce.invalid``)."""

    code = "broker.error"
