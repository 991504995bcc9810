"""attestpolicy: a policy decision point for attestation-based workload identity.

Metadata is intent; attestation is proof. Verified evidence becomes a typed
:class:`ClaimSet`, a Rego policy decides, and the caller gets a :class:`Decision`
(allow/deny, a credential TTL and reasons).
"""

import typing

__version__ = "0.1.0"

# Every name loads on first use (PEP 562): ``import attestpolicy`` (and so the command
# line's ``--help``) costs nothing, the PDP loads pydantic and the engine when asked for,
# and the evidence verifiers (sigstore and the crypto stack, most of a second) only when
# they are.
_LAZY: typing.Final = {
    "AttestPolicyError": "attestpolicy.errors",
    "BundleError": "attestpolicy.errors",
    "ClaimSet": "attestpolicy.claims",
    "ClaimsError": "attestpolicy.errors",
    "ConfigError": "attestpolicy.errors",
    "Decision": "attestpolicy.decision",
    "EvaluatorError": "attestpolicy.errors",
    "EvidenceError": "attestpolicy.errors",
    "EvidenceReport": "attestpolicy.evidence.verify",
    "Image": "attestpolicy.claims",
    "ImageSignature": "attestpolicy.claims",
    "Node": "attestpolicy.claims",
    "PolicyDecisionPoint": "attestpolicy.pdp",
    "PolicyError": "attestpolicy.errors",
    "Provenance": "attestpolicy.claims",
    "Reason": "attestpolicy.decision",
    "Request": "attestpolicy.claims",
    "Runtime": "attestpolicy.claims",
    "Subject": "attestpolicy.claims",
    "TtlTerm": "attestpolicy.decision",
    "verify_evidence": "attestpolicy.evidence.verify",
    "verify_evidence_report": "attestpolicy.evidence.verify",
}


def __getattr__(name: str) -> object:
    """Load a public name on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'attestpolicy' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if typing.TYPE_CHECKING:  # the lazily loaded names, for type checkers
    from attestpolicy.claims import (
        ClaimSet,
        Image,
        ImageSignature,
        Node,
        Provenance,
        Request,
        Runtime,
        Subject,
    )
    from attestpolicy.decision import Decision, Reason, TtlTerm
    from attestpolicy.errors import (
        AttestPolicyError,
        BundleError,
        ClaimsError,
        ConfigError,
        EvaluatorError,
        EvidenceError,
        PolicyError,
    )
    from attestpolicy.evidence.verify import (
        EvidenceReport,
        verify_evidence,
        verify_evidence_report,
    )
    from attestpolicy.pdp import PolicyDecisionPoint

__all__ = [
    "AttestPolicyError",
    "BundleError",
    "ClaimSet",
    "ClaimsError",
    "ConfigError",
    "Decision",
    "EvaluatorError",
    "EvidenceError",
    "EvidenceReport",
    "Image",
    "ImageSignature",
    "Node",
    "PolicyDecisionPoint",
    "PolicyError",
    "Provenance",
    "Reason",
    "Request",
    "Runtime",
    "Subject",
    "TtlTerm",
    "__version__",
    "verify_evidence",
    "verify_evidence_report",
]
