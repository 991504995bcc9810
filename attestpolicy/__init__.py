"""attestpolicy: a policy decision point for attestation-based workload identity.

Metadata is intent; attestation is proof. Verified evidence becomes a typed
:class:`ClaimSet`, a Rego policy decides, and the caller gets a :class:`Decision`
(allow/deny, a credential TTL and reasons).
"""

import typing

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
from attestpolicy.pdp import PolicyDecisionPoint

__version__ = "0.1.0"

# The evidence verifiers load sigstore and the crypto stack (hundreds of modules, most of
# a second): they are imported on first use (PEP 562), so a PDP-only import stays light.
_EVIDENCE_NAMES = frozenset({"EvidenceReport", "verify_evidence", "verify_evidence_report"})


def __getattr__(name: str) -> object:
    """Load the evidence API on first use."""
    if name in _EVIDENCE_NAMES:
        from attestpolicy.evidence import verify

        return getattr(verify, name)
    raise AttributeError(f"module 'attestpolicy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _EVIDENCE_NAMES)


if typing.TYPE_CHECKING:  # the lazily loaded names, for type checkers
    from attestpolicy.evidence.verify import (
        EvidenceReport,
        verify_evidence,
        verify_evidence_report,
    )

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
