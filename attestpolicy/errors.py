"""The attestpolicy error tree: one root, branches by who is at fault.

A deny is a :class:`~attestpolicy.decision.Decision`, never an error. Errors are
raised by verifiers, loaders and builders; ``PolicyDecisionPoint.decide`` turns
every one of them into a deny with the error's ``code``.
"""

from __future__ import annotations

__all__ = [
    "AttestPolicyError",
    "BundleError",
    "ClaimsError",
    "ConfigError",
    "EngineUnavailableError",
    "EvaluatorError",
    "EvidenceError",
    "PolicyError",
]


class AttestPolicyError(Exception):
    """Root of every error attestpolicy raises on purpose.

    ``code`` is the stable reason code a fail-closed deny carries.
    """

    code = "attestpolicy.error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


# --- the caller's fault: input and evidence ---------------------------------


class EvidenceError(AttestPolicyError):
    """Evidence could not be verified or parsed (caller input).

    ``field`` names the part of the evidence document that failed, when known.
    """

    code = "evidence.invalid"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message, code=code)
        self.field = field
        self.detail = message

    def within(self, section: str) -> EvidenceError:
        """The same error with ``field`` prefixed by the enclosing ``section``."""
        field = f"{section}.{self.field}" if self.field and self.field != "(section)" else section
        try:
            return type(self)(self.detail, field=field, code=self.code)
        except TypeError:  # a subclass with its own constructor
            return EvidenceError(self.detail, field=field, code=self.code)


class ClaimsError(EvidenceError):
    """A claim set failed validation (wrong type, bad timestamp, oversized...)."""

    code = "input.invalid"


# --- the policy author's fault ----------------------------------------------


class PolicyError(AttestPolicyError):
    """The Rego policy could not be loaded or compiled."""

    code = "policy.invalid"


class ConfigError(PolicyError):
    """The policy configuration document is malformed."""

    code = "config.invalid"


class BundleError(PolicyError):
    """An OPA bundle is malformed, unsigned when it must be signed, or tampered."""

    code = "bundle.invalid"


# --- the engine's or the transport's fault ----------------------------------


class EvaluatorError(AttestPolicyError):
    """The evaluator failed: engine error, undefined decision or transport failure.

    ``code`` is one of ``engine.error``, ``engine.undefined`` or ``remote.error``.
    """

    code = "engine.error"


class EngineUnavailableError(EvaluatorError):
    """The in-process engine asked for is not installed (raised when building an evaluator).

    Its message says how to install it.
    """

    code = "engine.unavailable"
