"""Runtime facts reported by a workload attestor, and their explicit binding to a PSAT.

A workload attestor (a node agent reading the kubelet or the container runtime) reports
namespace, service account, pod and the container image digest. Nobody signed those
facts, so on their own they are recorded as asserted: ``Runtime.verified=False``.

They become verified only through :func:`verify_workload_attestor` with a PSAT that was
itself verified (:func:`attestpolicy.evidence.jwt_tokens.verify_psat`): the token's
namespace, service account and pod (and pod UID, when the attestor reports one) must
equal the reported ones, otherwise ``evidence.identity_mismatch``. The bound runtime then
has ``verified=True`` and expires with the token. A PSAT says nothing about the image,
so the bound runtime leaves ``image_digest`` empty and the reported digest is returned
separately as :attr:`WorkloadAttestorResult.unbound_image_digest`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import Field, StrictBool, StrictStr

from attestpolicy._model import FrozenModel
from attestpolicy.claims import Digest, Runtime
from attestpolicy.evidence._common import Code, EvidenceSection, fail, require_utc
from attestpolicy.evidence._validity import valid_until
from attestpolicy.evidence.workload.psat import PsatResult

__all__ = [
    "WorkloadAttestorEvidence",
    "WorkloadAttestorResult",
    "WorkloadAttestorTrust",
    "verify_workload_attestor",
]

_Name = Annotated[
    StrictStr, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
]


class WorkloadAttestorEvidence(EvidenceSection):
    """The runtime facts one workload attestor reported (all optional, all unsigned)."""

    namespace: _Name | None = None
    service_account: _Name | None = None
    pod: _Name | None = None
    pod_uid: Annotated[StrictStr, Field(min_length=1, max_length=128)] | None = None
    image_digest: Digest | None = None


class WorkloadAttestorTrust(FrozenModel):
    """Whether asserted-only facts are acceptable at all."""

    require_binding: StrictBool = False
    """If True, facts not bound to a verified PSAT are rejected (``evidence.untrusted``)."""


@dataclass(frozen=True, slots=True)
class WorkloadAttestorResult:
    """The runtime claim, and the image digest the token could not bind (if any)."""

    runtime: Runtime
    unbound_image_digest: str | None


def verify_workload_attestor(
    evidence: WorkloadAttestorEvidence,
    trust: WorkloadAttestorTrust,
    *,
    now: datetime,
    psat: PsatResult | None = None,
) -> WorkloadAttestorResult:
    """Record the attestor's facts, bound to ``psat`` when one is given.

    Without ``psat``: ``Runtime(verified=False, ...)`` with every reported fact (or
    ``evidence.untrusted`` when ``trust.require_binding``). With ``psat``: namespace,
    service account and pod must be reported and equal the token's (and ``pod_uid``, if
    reported); the token must still be valid at ``now``.
    """
    now = require_utc(now)
    if psat is None:
        if trust.require_binding:
            fail(Code.UNTRUSTED, "(section)", "runtime facts must be bound to a verified PSAT")
        return WorkloadAttestorResult(runtime=_reported(evidence), unbound_image_digest=None)
    bound = psat.runtime
    if not bound.verified or bound.expires_at is None:
        fail(Code.UNTRUSTED, "psat", "the PSAT runtime is not verified")
    if now >= bound.expires_at:
        fail(Code.EXPIRED, "psat", f"the PSAT expired at {bound.expires_at.isoformat()}")
    valid_until(bound.expires_at)
    pairs = [
        ("namespace", evidence.namespace, bound.namespace),
        ("service_account", evidence.service_account, bound.service_account),
        ("pod", evidence.pod, bound.pod),
    ]
    if evidence.pod_uid is not None:
        pairs.append(("pod_uid", evidence.pod_uid, psat.pod_uid))
    for name, reported, token in pairs:
        if (
            reported is None
            or token is None
            or not hmac.compare_digest(reported.encode("utf-8"), token.encode("utf-8"))
        ):
            fail(
                Code.IDENTITY_MISMATCH, name, f"reported {name} does not match the verified token's"
            )
    # the facts are the token's now: verified, expiring with it, without the image digest
    bound_facts = {"verified": True, "image_digest": None, "expires_at": bound.expires_at}
    return WorkloadAttestorResult(
        runtime=_reported(evidence).model_copy(update=bound_facts),
        unbound_image_digest=evidence.image_digest,
    )


def _reported(evidence: WorkloadAttestorEvidence) -> Runtime:
    """The attestor's facts as asserted (unverified) runtime claims."""
    return Runtime(
        verified=False,
        namespace=evidence.namespace,
        service_account=evidence.service_account,
        pod=evidence.pod,
        image_digest=evidence.image_digest,
    )
