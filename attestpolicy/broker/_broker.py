"""CredentialBroker: verify, decide, and only then mint a short-lived credential.

The broker asks the policy decision point, and on an allow signs a JWT whose ``exp`` is
``iat + ttl_seconds`` (capped by ``max_ttl_seconds``) and never later than the decision's
``valid_until``. A deny, or an allow with no time left, mints nothing: the caller gets a
:class:`~attestpolicy.broker.Credential` without a token and the decision's reasons.
Nothing in the request path raises: any failure is a deny with reason ``broker.error``.

With a :class:`~attestpolicy.broker.CredentialRegistry`, every credential is recorded with
the revocable values its decision rests on before it is signed, and then the decision is
confirmed (a decision-cache hit when nothing changed): a revocation that landed between the
decision and the record, in this process or another sharing the revocation store, voids the
recorded credential at once. :meth:`CredentialBroker.revoke` revokes a value in the policy
and marks, and returns, the live credentials that rested on it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from cryptography import x509

from attestpolicy._closing import Closing
from attestpolicy._model import FrozenModel
from attestpolicy.broker._credential import Credential, certificate_thumbprint, credential_claims
from attestpolicy.broker._ear import EarResult, ear_claims
from attestpolicy.broker._errors import BrokerError
from attestpolicy.broker._registry import CredentialRegistry, IssuedCredential
from attestpolicy.broker._signing import KeySet, SigningKey
from attestpolicy.claims import ClaimSet, format_timestamp, parse_timestamp
from attestpolicy.decision import Decision, Reason
from attestpolicy.errors import AttestPolicyError
from attestpolicy.evidence.document import (
    EvidenceDocument,
    TrustConfig,
    load_evidence_document,
    parse_evidence_document,
)
from attestpolicy.evidence.workload.spiffe import svid_chain
from attestpolicy.pdp import PolicyDecisionPoint
from attestpolicy.revocations import MEMBER_OF_KEYWORD

if TYPE_CHECKING:
    from attestpolicy.metrics import Metrics

__all__ = ["REVOKE_REASON", "CredentialBroker", "RevocationOutcome"]

_LOG = logging.getLogger(__name__)

REVOKE_REASON: Final = "revoked by CredentialBroker.revoke"
"""The reason :meth:`CredentialBroker.revoke` records when none is given."""

Evidence: TypeAlias = EvidenceDocument | Mapping[str, Any] | bytes
"""An evidence document: parsed, a mapping, or its JSON bytes."""
Trust: TypeAlias = TrustConfig | Mapping[str, Any]
"""A trust configuration: parsed, or a mapping."""
Claims: TypeAlias = ClaimSet | Mapping[str, Any] | str | bytes
"""A claim set: parsed, a mapping, or its JSON text."""


class RevocationOutcome(FrozenModel):
    """What :meth:`CredentialBroker.revoke` did: the decision-cache entries it dropped, and
    the live credentials it marked revoked (who to chase), sorted by jti."""

    cache_entries_dropped: int
    credentials: tuple[IssuedCredential, ...]


@dataclass(frozen=True, slots=True)
class _Appraisal:
    """A decision, the claim set it was made on (None when there was none) and the
    workload's verified X.509-SVID leaf (when it presented one)."""

    decision: Decision
    claims: ClaimSet | None
    svid_leaf: x509.Certificate | None = None


class _Refused(Exception):
    """An allow the broker will not mint for: the deny reason it becomes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _denied(decision: Decision, code: str, message: str) -> Decision:
    """``decision`` turned into a deny with one reason (same decision id and revision)."""
    return decision.model_copy(
        update={
            "allow": False,
            "ttl_seconds": 0,
            "reasons": (Reason(code=code, message=message),),
            "ttl_bound_by": None,
            "valid_until": None,
            "ttl_terms": (),
            "revocable": (),
        }
    )


def _moment(now: datetime | None) -> datetime:
    return datetime.now(UTC) if now is None else parse_timestamp(now)


def _svid_leaf(document: EvidenceDocument) -> x509.Certificate | None:
    """The leaf of the X.509-SVID the workload presented (already verified), if any."""
    section = document.runtime.x509_svid
    return svid_chain(section)[0] if section is not None else None


class CredentialBroker(Closing):
    """Mints short-lived credentials (JWT) for workloads whose evidence the policy allows.

    ``signing_key`` is one :class:`SigningKey` or a :class:`KeySet` (rotation: see
    :attr:`keys`). ``issuer`` is the ``iss`` of every credential and EAR. ``registry``
    records each credential with the revocable values it rests on. ``max_ttl_seconds``
    caps every credential's lifetime below what the policy allows. ``metrics`` counts the
    credentials issued and revoked. Closing the broker closes the registry (not the PDP).
    """

    def __init__(
        self,
        pdp: PolicyDecisionPoint,
        signing_key: SigningKey | KeySet,
        issuer: str,
        registry: CredentialRegistry | None = None,
        *,
        max_ttl_seconds: int | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        if not isinstance(issuer, str) or not issuer:
            raise BrokerError("issuer must be a non-empty string")
        if max_ttl_seconds is not None and (
            isinstance(max_ttl_seconds, bool)
            or not isinstance(max_ttl_seconds, int)
            or max_ttl_seconds <= 0
        ):
            raise BrokerError("max_ttl_seconds must be a positive integer")
        if not isinstance(signing_key, SigningKey | KeySet):
            raise BrokerError("signing_key must be a SigningKey or a KeySet")
        self._pdp = pdp
        self._keys = signing_key if isinstance(signing_key, KeySet) else KeySet(signing_key)
        self._issuer = issuer
        self._registry = registry
        self._max_ttl = max_ttl_seconds
        self._metrics = metrics

    @property
    def keys(self) -> KeySet:
        """The signing keys: ``broker.keys.rotate(SigningKey.generate())`` rotates."""
        return self._keys

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public keys relying parties verify credentials with, the active key first."""
        return self._keys.jwks()

    # --- credentials ------------------------------------------------------------------

    def issue(
        self,
        evidence: Evidence,
        trust: Trust,
        *,
        nonce: bytes | None = None,
        now: datetime | None = None,
        client_certificate: bytes | None = None,
    ) -> Credential:
        """Verify ``evidence`` against ``trust`` at ``now`` (with the freshness ``nonce``
        the caller issued), decide, and mint a credential on an allow.

        The credential is bound (``cnf``, ``x5t#S256``) to the workload's X.509-SVID when
        the evidence carries one, or to ``client_certificate`` (PEM or DER: the certificate
        the workload presented over mutual TLS). When both are present they must be the
        same certificate (otherwise a deny, ``broker.binding_mismatch``). Never raises.
        """
        try:
            moment = _moment(now)
            appraisal = self._appraise_evidence(evidence, trust, nonce, moment)
            return self._mint(appraisal, moment, client_certificate)
        except Exception as exc:  # fail closed: never an exception in the caller's path
            return self._failed(exc)

    def issue_for_claims(
        self,
        claims: Claims,
        *,
        now: datetime | None = None,
        client_certificate: bytes | None = None,
    ) -> Credential:
        """Decide for a claim set the caller verified itself, and mint on an allow.

        The broker decides at ``now`` (default: the current time), whatever ``now`` the
        claim set carries. ``client_certificate`` binds the credential as for
        :meth:`issue`. Never raises.
        """
        try:
            moment = _moment(now)
            return self._mint(self._appraise_claims(claims, moment), moment, client_certificate)
        except Exception as exc:  # fail closed
            return self._failed(exc)

    def _mint(
        self, appraisal: _Appraisal, moment: datetime, client_certificate: bytes | None
    ) -> Credential:
        decision, claims = appraisal.decision, appraisal.claims
        if not decision.allow or claims is None:
            return Credential(decision=decision)
        try:
            issued_at, expires_at = self._window(decision, moment)
            thumbprint = self._binding(appraisal.svid_leaf, client_certificate)
            if self._registry is not None and decision.revocable is None:
                raise _Refused(
                    "broker.error",
                    "the decision does not list the values it rests on (revocable): a "
                    "credential recorded without them could not be revoked by value",
                )
        except _Refused as refused:
            return Credential(decision=_denied(decision, refused.code, refused.message))
        payload = credential_claims(
            issuer=self._issuer,
            decision=decision,
            claims=claims,
            issued_at=issued_at,
            expires_at=expires_at,
            thumbprint=thumbprint,
        )
        issued, expires = (datetime.fromtimestamp(t, UTC) for t in (issued_at, expires_at))
        if self._registry is not None:
            confirmed = self._record(self._registry, decision, claims, moment, issued, expires)
            if not confirmed.allow:
                return Credential(decision=confirmed)
        token = self._keys.active.sign(payload)
        if self._metrics is not None:
            self._metrics.credential_issued()
        return Credential(
            decision=decision,
            token=token,
            jti=decision.decision_id,
            subject=claims.subject.spiffe_id,
            audience=claims.request.audience,
            issued_at=issued,
            expires_at=expires,
        )

    def _window(self, decision: Decision, moment: datetime) -> tuple[int, int]:
        """``(iat, exp)`` in whole seconds: ``exp`` never past ``valid_until``."""
        issued_at = math.floor(moment.timestamp())
        lifetime = decision.ttl_seconds
        if self._max_ttl is not None:
            lifetime = min(lifetime, self._max_ttl)
        expires_at = issued_at + lifetime
        if decision.valid_until is not None:
            expires_at = min(expires_at, math.floor(decision.valid_until.timestamp()))
        if expires_at <= issued_at:  # only a valid_until can make it so
            until = format_timestamp(decision.valid_until) if decision.valid_until else "-"
            raise _Refused(
                "broker.expired",
                f"the decision stopped holding at {until}: no time is left to issue in",
            )
        return issued_at, expires_at

    @staticmethod
    def _binding(
        svid_leaf: x509.Certificate | None, client_certificate: bytes | None
    ) -> str | None:
        """The ``x5t#S256`` the credential is bound to, if any."""
        if client_certificate is None:
            return certificate_thumbprint(svid_leaf) if svid_leaf is not None else None
        try:
            presented = certificate_thumbprint(client_certificate)
        except (TypeError, ValueError):
            raise _Refused(
                "broker.error", "the client certificate is not one PEM or DER X.509 certificate"
            ) from None
        if svid_leaf is not None and certificate_thumbprint(svid_leaf) != presented:
            raise _Refused(
                "broker.binding_mismatch",
                "the client certificate is not the X.509-SVID the evidence presented",
            )
        return presented

    def _record(
        self,
        registry: CredentialRegistry,
        decision: Decision,
        claims: ClaimSet,
        moment: datetime,
        issued_at: datetime,
        expires_at: datetime,
    ) -> Decision:
        """Record the credential, then confirm its decision: when a revocation landed in
        between, revoke the record and return the deny."""
        registry.record(
            jti=decision.decision_id,
            subject=claims.subject.spiffe_id,
            audience=claims.request.audience,
            issued_at=issued_at,
            expires_at=expires_at,
            revocable=decision.revocable or (),
        )
        confirmed = self._pdp.decide(claims, now=moment)
        if confirmed.allow:
            return decision
        registry.revoke_jti(
            [decision.decision_id],
            reason="its decision no longer holds: " + _codes(confirmed),
            now=moment,
        )
        return confirmed

    def _failed(self, exc: Exception) -> Credential:
        _LOG.warning("no credential issued: %s: %s", type(exc).__name__, exc)
        return Credential(decision=self._error(exc))

    # --- EAR --------------------------------------------------------------------------

    def ear(
        self,
        evidence: Evidence,
        trust: Trust,
        *,
        nonce: bytes | None = None,
        now: datetime | None = None,
    ) -> EarResult:
        """The decision on ``evidence`` as a signed EAR (see :mod:`attestpolicy.broker`).

        Verification and policy failures are a contraindicated EAR, never an exception;
        only a failure to sign raises (:class:`BrokerError`).
        """
        try:
            moment = _moment(now)
            appraisal = self._appraise_evidence(evidence, trust, nonce, moment)
        except Exception as exc:  # fail closed: an EAR of the error
            moment, appraisal = datetime.now(UTC), _Appraisal(self._error(exc), None)
        return self._sign_ear(appraisal, moment, nonce)

    def ear_for_claims(self, claims: Claims, *, now: datetime | None = None) -> EarResult:
        """The decision on a claim set the caller verified itself, as a signed EAR."""
        try:
            moment = _moment(now)
            appraisal = self._appraise_claims(claims, moment)
        except Exception as exc:  # fail closed: an EAR of the error
            moment, appraisal = datetime.now(UTC), _Appraisal(self._error(exc), None)
        return self._sign_ear(appraisal, moment, None)

    def _sign_ear(self, appraisal: _Appraisal, moment: datetime, nonce: bytes | None) -> EarResult:
        decision, expires_at = appraisal.decision, None
        if decision.allow:
            try:
                expires_at = self._window(decision, moment)[1]
            except _Refused as refused:
                decision = _denied(decision, refused.code, refused.message)
        payload = ear_claims(
            issuer=self._issuer,
            decision=decision,
            claims=appraisal.claims,
            issued_at=math.floor(moment.timestamp()),
            expires_at=expires_at,
            nonce=nonce,
        )
        try:
            token = self._keys.active.sign(payload)
        except Exception as exc:
            raise BrokerError(f"the EAR could not be signed: {type(exc).__name__}") from None
        return EarResult(decision=decision, token=token, claims=payload)

    # --- deciding ---------------------------------------------------------------------

    def _appraise_evidence(
        self, evidence: Evidence, trust: Trust, nonce: bytes | None, moment: datetime
    ) -> _Appraisal:
        """Verify once and decide on exactly the verified claims
        (``PolicyDecisionPoint.appraise_evidence``); keep the claims for the token."""
        try:
            document = (
                load_evidence_document(evidence)
                if isinstance(evidence, bytes)
                else parse_evidence_document(evidence)
            )
        except AttestPolicyError as exc:
            return _Appraisal(self._deny(exc.code, str(exc)), None)
        appraisal = self._pdp.appraise_evidence(document, trust, now=moment, nonce=nonce)
        if appraisal.decision.allow:
            return _Appraisal(appraisal.decision, appraisal.claims, _svid_leaf(document))
        return _Appraisal(appraisal.decision, appraisal.claims)

    def _appraise_claims(self, claims: Claims, moment: datetime) -> _Appraisal:
        try:
            claim_set = ClaimSet.parse(claims)
        except AttestPolicyError as exc:
            return _Appraisal(self._deny(exc.code, str(exc)), None)
        return _Appraisal(self._pdp.decide(claim_set, now=moment), claim_set)

    def _revision(self) -> str:
        try:
            return self._pdp.revision
        except Exception:
            return ""

    def _deny(self, code: str, message: str) -> Decision:
        return Decision.deny(code, message, policy_revision=self._revision())

    def _error(self, exc: Exception) -> Decision:
        return self._deny("broker.error", f"the broker failed: {type(exc).__name__}: {exc}")

    # --- revocation -------------------------------------------------------------------

    def revoke(
        self,
        *,
        signer_subject: str | None = None,
        key_id: str | None = None,
        image_digest: str | None = None,
        node_id: str | None = None,
        spiffe_id: str | None = None,
        reason: str = REVOKE_REASON,
    ) -> RevocationOutcome:
        """Revoke values everywhere at once: later decisions deny them, cached decisions
        resting on them go, and the live credentials resting on them are marked revoked
        in the registry and returned. A signing ``key_id`` is revoked as a signer subject.

        Raises ValueError without any value, TypeError/BrokerError for a malformed one,
        BrokerError when the registry fails (the policy revocation has happened then).
        """
        signers = list(dict.fromkeys(v for v in (signer_subject, key_id) if v is not None))
        others = {"image_digest": image_digest, "node_id": node_id, "spiffe_id": spiffe_id}
        pairs = [(MEMBER_OF_KEYWORD["signer_subject"], value) for value in signers] + [
            (MEMBER_OF_KEYWORD[name], value) for name, value in others.items() if value is not None
        ]
        if not pairs:
            raise ValueError("revoke() needs at least one value")
        dropped = self._pdp.revoke(
            signer_subject=signers[0] if signers else None,
            image_digest=image_digest,
            node_id=node_id,
            spiffe_id=spiffe_id,
            reason=reason,
        )
        for value in signers[1:]:
            dropped += self._pdp.revoke(signer_subject=value, reason=reason)
        marked = self._registry.revoke(pairs, reason=reason) if self._registry else []
        if self._metrics is not None:
            self._metrics.credentials_revoked(len(marked))
        return RevocationOutcome(cache_entries_dropped=dropped, credentials=tuple(marked))

    def close(self) -> None:
        """Close the registry (the PDP belongs to the caller)."""
        if self._registry is not None:
            self._registry.close()


def _codes(decision: Decision) -> str:
    return ", ".join(decision.reason_codes) or "denied"
