"""PolicyDecisionPoint: validate claims, evaluate the policy, fail closed."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from attestpolicy._closing import Closing
from attestpolicy.claims import ClaimSet, format_timestamp, parse_timestamp
from attestpolicy.config import validate_config
from attestpolicy.decision import Decision, Reason
from attestpolicy.engine._inprocess import DEFAULT_ENGINE, check_engine_name, make_evaluator
from attestpolicy.engine.base import Evaluator
from attestpolicy.engine.cache import CacheStats, DecisionCache, decode_encoding
from attestpolicy.errors import AttestPolicyError, ClaimsError
from attestpolicy.policy import PolicySource
from attestpolicy.revocations import MEMBER_OF_KEYWORD, RevocationStore

__all__ = ["PolicyDecisionPoint"]

_LOG = logging.getLogger(__name__)

REVOKE_REASON: Final = "revoked by PolicyDecisionPoint.revoke"
"""The reason :meth:`PolicyDecisionPoint.revoke` records when none is given."""

REMOTE_CACHE_MAX_AGE_SECONDS: Final = 5.0
"""How long a remote PDP's cached decision is served at most (wall clock)."""


def _purge_verified_evidence(pairs: list[tuple[str, str]]) -> None:
    """Drop the verified evidence that rests on a revoked value (if the evidence stack was
    ever loaded: a PDP-only process never imports it). The policy would deny it anyway."""
    verify = sys.modules.get("attestpolicy.evidence.verify")
    cache = verify.verified_evidence_cache() if verify is not None else None
    if cache is not None:
        cache.purge(pairs)


def _store(revocations: Path | str | RevocationStore | None) -> RevocationStore | None:
    if revocations is None or isinstance(revocations, RevocationStore):
        return revocations
    return RevocationStore(revocations)


def _pairs(
    signer_subject: str | None, node_id: str | None, image_digest: str | None, spiffe_id: str | None
) -> list[tuple[str, str]]:
    """The ``(revoked member, value)`` pairs named by revoke()/lift() keywords."""
    given = {
        "signer_subject": signer_subject,
        "node_id": node_id,
        "image_digest": image_digest,
        "spiffe_id": spiffe_id,
    }
    pairs = []
    for name, value in given.items():
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise TypeError(f"{name} value must be a non-empty string")
        pairs.append((MEMBER_OF_KEYWORD[name], value))
    if not pairs:
        raise ValueError("revoke() and lift() need at least one value")
    return pairs


class PolicyDecisionPoint(Closing):
    """Decides whether a workload gets a credential, and for how long.

    Build one with :meth:`local` (in-process Rego), :meth:`from_bundle` (an OPA
    bundle, in-process) or :meth:`remote` (an OPA server), then call :meth:`decide`
    from any thread. ``decide`` never raises for bad claims or a failing engine: it
    returns a deny whose reason code says what went wrong.
    """

    def __init__(self, evaluator: Evaluator, *, cache: DecisionCache | None = None) -> None:
        self._evaluator = evaluator
        self._cache = cache
        self._revocation_lock = threading.Lock()

    @staticmethod
    def _make_cache(
        cache: bool | DecisionCache, negative_ttl_seconds: float
    ) -> DecisionCache | None:
        if cache is True:
            return DecisionCache(negative_ttl_seconds=negative_ttl_seconds)
        if cache is False:
            return None
        return cache

    # --- construction --------------------------------------------------------

    @classmethod
    def local(
        cls,
        policy_dir: Path | str | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        cache: bool | DecisionCache = True,
        negative_ttl_seconds: float = 0.0,
        engine: str = DEFAULT_ENGINE,
        revocations: Path | str | RevocationStore | None = None,
    ) -> PolicyDecisionPoint:
        """Evaluate in-process; ``policy_dir=None`` uses the policy shipped in the package.

        ``config`` is the document placed at ``data.attestpolicy.config``; without one
        every request is denied (no workload is registered). ``cache`` turns the
        decision cache on (default), off, or supplies one; denies are cached only for
        ``negative_ttl_seconds`` > 0. ``engine`` is ``"regorus"`` (default) or ``"opa"``
        (OPA's Go evaluator, from the optional ``opa-golib-python-bindings`` wheel; without
        it :class:`~attestpolicy.errors.EngineUnavailableError` says how to install it).
        Another name raises ValueError. ``revocations`` is a revocation store (a SQLite
        file path, shared with other processes, or a :class:`RevocationStore`); without
        one, :meth:`revoke` keeps revocations in memory.
        """
        source = PolicySource.from_directory(policy_dir)
        checked = validate_config(config) if config is not None else None
        return cls(
            make_evaluator(engine, source, checked, revocations=_store(revocations)),
            cache=cls._make_cache(cache, negative_ttl_seconds),
        )

    @classmethod
    def from_bundle(
        cls,
        bundle: Path | str | bytes,
        *,
        config: Mapping[str, Any] | None = None,
        verification_key: bytes | str | None = None,
        cache: bool | DecisionCache = True,
        negative_ttl_seconds: float = 0.0,
        engine: str = DEFAULT_ENGINE,
        revocations: Path | str | RevocationStore | None = None,
    ) -> PolicyDecisionPoint:
        """Evaluate in-process with the policy (and data) of an OPA bundle.

        ``bundle`` is a ``.tar.gz`` path, a bundle directory, or the archive bytes. With
        ``verification_key`` (PEM) the bundle must be signed by it. The policy bundle
        carries no configuration: pass ``config`` (``data.attestpolicy.config``).
        ``engine`` and ``revocations`` are as for :meth:`local`.
        """
        check_engine_name(engine)  # before reading the bundle
        from attestpolicy.bundle import load_bundle

        loaded = load_bundle(
            bundle,
            verification_key=verification_key,
            require_signature=verification_key is not None,
        )
        checked = validate_config(config) if config is not None else None
        return cls(
            make_evaluator(
                engine, loaded.to_policy_source(), checked, revocations=_store(revocations)
            ),
            cache=cls._make_cache(cache, negative_ttl_seconds),
        )

    @classmethod
    def remote(
        cls,
        url: str,
        *,
        cache: bool | DecisionCache = False,
        cache_max_age_seconds: float = REMOTE_CACHE_MAX_AGE_SECONDS,
        **options: Any,
    ) -> PolicyDecisionPoint:
        """Evaluate on an OPA server (or ``attestpolicy serve``) at ``url``.

        ``options`` go to :class:`~attestpolicy.engine.remote.RemoteEvaluator`
        (``connect_timeout``, ``read_timeout``, ``deadline``, ``max_response_bytes``,
        ``token``, ``ca_bundle``, ``retries``). The cache is off by default. A cached
        allow is served without asking the server, so ``cache=True`` bounds each entry's
        life to ``cache_max_age_seconds`` of wall-clock time (default 5): a policy or data
        change on the server is seen by then at the latest, and at once on the next
        answer that reports a new bundle revision. :meth:`revoke` drops matching entries
        at once.
        """
        from attestpolicy.engine.remote import RemoteEvaluator

        if cache is True:
            cache = DecisionCache(max_age_seconds=cache_max_age_seconds)
        return cls(RemoteEvaluator(url, **options), cache=cls._make_cache(cache, 0.0))

    # --- deciding -------------------------------------------------------------

    @property
    def revision(self) -> str:
        """The policy/configuration/engine revision decisions are made with."""
        return self._evaluator.revision

    def decide(
        self,
        claims: ClaimSet | Mapping[str, Any] | str | bytes,
        *,
        now: datetime | None = None,
    ) -> Decision:
        """Decide for one claim set (a ClaimSet, a mapping, or JSON text).

        ``now`` overrides the clock; otherwise the claim set's ``now`` is used, or the
        current UTC time when it has none.
        """
        evaluated_at = datetime.now(UTC)
        try:
            return self._decide(claims, now, evaluated_at)
        except Exception as exc:  # fail closed: never an uncaught crash in the request path
            return self._deny("input.invalid", f"claims could not be read: {exc}", evaluated_at)

    def _decide(
        self,
        claims: ClaimSet | Mapping[str, Any] | str | bytes,
        now: datetime | None,
        evaluated_at: datetime,
    ) -> Decision:
        # The caller's claims are read exactly once. With the cache, that read is the
        # canonical encoding: the key, and on a miss the copy decided on (decoded from
        # it), so claims changed by another thread meanwhile cannot be decided as one
        # thing and cached as another. Without the cache, ClaimSet.parse is the read.
        cache, ticket, revision = self._cache, None, ""
        source: object = claims
        if cache is not None and not isinstance(claims, str | bytes):
            try:
                raw = claims.to_input() if isinstance(claims, ClaimSet) else claims
                if not isinstance(raw, Mapping):
                    raise TypeError("not a mapping")
                raw_now = raw.get("now")
                moment = (
                    parse_timestamp(now)
                    if now is not None
                    else evaluated_at
                    if raw_now is None
                    else parse_timestamp(raw_now)
                )
                revision = self._evaluator.revision
                ticket, hit = cache.lookup(raw, revision, moment)
                if hit is not None:
                    return hit
                snapshot = decode_encoding(ticket.encoding)[1]
                if raw_now is not None:
                    snapshot["now"] = raw_now
                source = snapshot
            except Exception:
                ticket = None  # not cacheable as given: validation below says why
        try:
            claim_set = ClaimSet.parse(source)  # type: ignore[arg-type]  # checked by parse
            moment = parse_timestamp(now) if now is not None else claim_set.now or evaluated_at
            policy_input = claim_set.to_input()
            policy_input["now"] = format_timestamp(moment)
        except ClaimsError as exc:
            return self._deny(exc.code, str(exc), evaluated_at)
        except ValueError as exc:
            return self._deny("input.invalid", f"now: {exc}", evaluated_at)
        try:
            decision = self._evaluator.evaluate(policy_input, evaluated_at=evaluated_at)
        except AttestPolicyError as exc:
            return self._deny(exc.code, str(exc), evaluated_at)
        except Exception as exc:
            return self._deny("engine.error", f"evaluator failed: {exc}", evaluated_at)
        if ticket is not None and cache is not None and decision.policy_revision == revision:
            try:
                cache.store(ticket, decision, now=moment)
            except (TypeError, ValueError) as exc:  # not cached; the decision is still right
                _LOG.warning("decision %s not cached: %s", decision.decision_id, exc)
        return decision

    def decide_evidence(
        self,
        document: Any,
        trust: Any,
        *,
        now: datetime | str | None = None,
        nonce: bytes | None = None,
        nonce_audience: str | None = None,
    ) -> Decision:
        """Verify an evidence document against ``trust`` and decide, in one step.

        A document that cannot be verified at all is a deny with the evidence error's
        code; sections that fail verification are denied by the policy
        (``verified: false``) and their evidence errors are added to the reasons.
        """
        from attestpolicy.evidence.verify import verify_evidence_report

        evaluated_at = datetime.now(UTC)
        try:
            report = verify_evidence_report(
                document,
                trust,
                now if now is not None else evaluated_at,
                nonce=nonce,
                nonce_audience=nonce_audience,
            )
        except AttestPolicyError as exc:
            return self._deny(exc.code, str(exc), evaluated_at)
        except Exception as exc:  # fail closed on any verifier bug
            return self._deny(
                "evidence.invalid", f"evidence could not be verified: {exc}", evaluated_at
            )
        decision = self.decide(report.claims)
        if decision.allow or not report.problems:
            return decision
        extra = tuple(Reason(code=p.code, message=str(p)) for p in report.problems)
        reasons = tuple(sorted({*decision.reasons, *extra}, key=lambda r: (r.code, r.message)))
        return decision.model_copy(update={"reasons": reasons})

    # --- revocation and reloads -------------------------------------------------

    def revoke(
        self,
        *,
        signer_subject: str | None = None,
        node_id: str | None = None,
        image_digest: str | None = None,
        spiffe_id: str | None = None,
        reason: str = REVOKE_REASON,
    ) -> int:
        """Revoke a signer subject or key id, node id, image digest or SPIFFE ID, at once.

        The evaluator adds each value to its runtime revocations with ``reason`` (a value
        already revoked keeps its reason): they are apart from the configuration, so a
        reload never lifts them, and with a revocation store they reach every process
        that shares it and survive restarts. Every cached decision whose ``revocable``
        lists a value is dropped, so the very next ``decide()`` denies. A remote evaluator
        cannot change the server's data: only the local cache is purged, so push the
        revocation to the server as well. Returns the number of cache entries dropped.
        """
        pairs = _pairs(signer_subject, node_id, image_digest, spiffe_id)
        if not isinstance(reason, str):
            raise TypeError("reason must be a string")
        with self._revocation_lock:
            self._evaluator.revoke(pairs, reason=reason)
            _purge_verified_evidence(pairs)
            return self._cache.revoke(pairs) if self._cache is not None else 0

    def lift(
        self,
        *,
        signer_subject: str | None = None,
        node_id: str | None = None,
        image_digest: str | None = None,
        spiffe_id: str | None = None,
    ) -> bool:
        """Lift runtime revocations made with :meth:`revoke` (those written in the
        configuration stay until it changes). Cached decisions are keyed by the
        revocations' revision, so none made before the lift is served after it. Returns
        False for a remote evaluator (lift it on the server)."""
        pairs = _pairs(signer_subject, node_id, image_digest, spiffe_id)
        with self._revocation_lock:
            return self._evaluator.lift(pairs)

    def reload(
        self,
        *,
        policy_dir: Path | str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> str:
        """Atomically swap in a new policy directory and/or configuration (in-process).

        The new policy is compiled first; on error the old one stays. Cached decisions
        of the old revision become unreachable at once. Returns the new revision.
        """
        source = PolicySource.from_directory(policy_dir) if policy_dir is not None else None
        checked = validate_config(config) if config is not None else None
        with self._revocation_lock:
            revision = self._evaluator.reload(source, checked)
        if self._cache is not None:
            self._cache.clear()
        return revision

    def cache_stats(self) -> CacheStats | None:
        """The decision cache's counters, or None when caching is off."""
        return self._cache.stats() if self._cache is not None else None

    def _deny(self, code: str, message: str, evaluated_at: datetime) -> Decision:
        try:
            revision = self._evaluator.revision
        except Exception:
            revision = ""
        return Decision.deny(code, message, policy_revision=revision, evaluated_at=evaluated_at)

    # --- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        """Release the evaluator's resources."""
        self._evaluator.close()
