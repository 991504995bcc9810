"""attestpolicy: a policy decision point for attestation-based workload identity.

Metadata is intent; attestation is proof. Verified evidence becomes a typed
:class:`ClaimSet`, a Rego policy decides, and the caller gets a :class:`Decision`
(allow/deny, a credential TTL and reasons).
"""

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
from attestpolicy.decision import Decision, Reason
from attestpolicy.errors import (
    AttestPolicyError,
    BundleError,
    ClaimsError,
    ConfigError,
    EvaluatorError,
    EvidenceError,
    PolicyError,
)
from attestpolicy.evidence.verify import EvidenceReport, verify_evidence, verify_evidence_report
from attestpolicy.pdp import PolicyDecisionPoint

__version__ = "0.1.0"

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
    "__version__",
    "verify_evidence",
    "verify_evidence_report",
]
