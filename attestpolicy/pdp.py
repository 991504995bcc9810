"""PolicyDecisionPoint: validate claims, evaluate the policy, fail closed."""

from __future__ import annotations

import functools
import logging
import math
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple

from attestpolicy._closing import Closing
from attestpolicy.claims import ClaimSet, format_timestamp, parse_timestamp
from attestpolicy.config import validate_config
from attestpolicy.decision import Decision, Reason
from attestpolicy.engine._inprocess import DEFAULT_ENGINE, check_engine_name, make_evaluator
from attestpolicy.engine.base import Evaluator
from attestpolicy.engine.cache import CacheStats, CacheTicket, DecisionCache, decode_encoding
from attestpolicy.errors import AttestPolicyError, ClaimsError
from attestpolicy.observe import CacheOutcome, DecisionObserver, DecisionRecord, EvidenceFailure
from attestpolicy.policy import PolicyDirs, PolicySource
from attestpolicy.revocations import MEMBER_OF_KEYWORD, RevocationStore

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from attestpolicy.bundle import BundleFeed, BundleStatus

__all__ = ["EvidenceAppraisal", "PolicyDecisionPoint"]

_LOG = logging.getLogger(__name__)

REVOKE_REASON: Final = "revoked by PolicyDecisionPoint.revoke"
"""The reason :meth:`PolicyDecisionPoint.revoke` records when none is given."""

REMOTE_CACHE_MAX_AGE_SECONDS: Final = 5.0
"""How long a remote PDP's cached decision is served at most (wall clock)."""

ASYNC_WORKERS: Final = 4
"""Threads of the executor :meth:`PolicyDecisionPoint.adecide` evaluates on (per PDP)."""

TIMEOUT_CODE: Final = "engine.timeout"
"""The reason code of an async decision whose deadline passed."""

BUNDLE_WAIT_SECONDS: Final = 30.0
"""How long :meth:`PolicyDecisionPoint.from_bundle` waits for the first polled or watched
bundle (``wait``) before it raises."""


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


def _no_input() -> Mapping[str, Any] | None:
    return None


def _hit_input(encoding: bytes, moment: datetime) -> dict[str, Any]:
    """The policy input of a cached decision: its claims, decoded and normalized as on
    the miss that cached it, at ``moment``."""
    policy_input = ClaimSet.parse(decode_encoding(encoding)[1]).to_input()
    policy_input["now"] = format_timestamp(moment)
    return policy_input


def _section(failure: Exception) -> str:
    """The evidence section an error is about (``image.cosign``), or ``document``."""
    parts = re.split(r"[.\[]", getattr(failure, "field", None) or "")
    return ".".join(part for part in parts[:2] if part) or "document"


class _Trace:
    """What a decision went through, for its observers (only made when there are some)."""

    __slots__ = ("cache", "evaluation_ns", "input", "started")

    def __init__(self) -> None:
        self.started = time.perf_counter_ns()
        self.cache: CacheOutcome = "off"
        self.evaluation_ns: int | None = None
        self.input: Callable[[], Mapping[str, Any] | None] = _no_input


class _Pending(NamedTuple):
    """A decision the cache could not answer: the claims to decide on and, when the
    answer can be cached, the lookup's ticket and the revision it was keyed on."""

    source: object
    ticket: CacheTicket | None
    revision: str


def _check_deadline(deadline: object) -> float | None:
    """``deadline`` as seconds (None: no deadline); ValueError when it is not a number."""
    if deadline is None:
        return None
    if isinstance(deadline, bool) or not isinstance(deadline, int | float) or math.isnan(deadline):
        raise ValueError(f"deadline must be a number of seconds or None, not {deadline!r}")
    return float(deadline)


def _bundle_feed(
    bundle: Path | str | bytes | None,
    url: str | None,
    on_bundle: Callable[[Any], object],
    *,
    verification_key: bytes | str | None,
    token: str | None,
    poll_interval: float | None,
    min_delay: float | None,
    max_delay: float | None,
    on_activation: Callable[[bool], object] | None,
) -> BundleFeed:
    """The poller (``url``) or the watcher (``bundle`` path) of ``from_bundle``."""
    from attestpolicy.bundle import BundlePoller, BundleWatcher
    from attestpolicy.bundle._polling import DEFAULT_MAX_DELAY, DEFAULT_MIN_DELAY
    from attestpolicy.bundle._watching import DEFAULT_WATCH_INTERVAL

    if (url is None) == (bundle is None) or isinstance(bundle, bytes):
        raise ValueError("give url= to poll, or a bundle path with watch=True (not both)")
    if poll_interval is not None and (min_delay is not None or max_delay is not None):
        raise ValueError("give poll_interval or min_delay and max_delay, not both")
    if url is None:
        assert bundle is not None
        if min_delay is not None or max_delay is not None or token is not None:
            raise ValueError("min_delay, max_delay and token apply to url=, not to watch=True")
        return BundleWatcher(
            bundle,
            on_bundle=on_bundle,
            on_activation=on_activation,
            verification_key=verification_key,
            interval=DEFAULT_WATCH_INTERVAL if poll_interval is None else poll_interval,
        )
    if (min_delay is None) != (max_delay is None):
        raise ValueError("give both min_delay and max_delay (as OPA requires)")
    low = poll_interval if poll_interval is not None else min_delay
    high = poll_interval if poll_interval is not None else max_delay
    return BundlePoller(
        url,
        on_bundle=on_bundle,
        on_activation=on_activation,
        verification_key=verification_key,
        token=token,
        min_delay=DEFAULT_MIN_DELAY if low is None else low,
        max_delay=DEFAULT_MAX_DELAY if high is None else high,
    )


@dataclass(frozen=True, slots=True)
class EvidenceAppraisal:
    """A decision on evidence, and the verified claim set it was made on (None when the
    evidence could not be turned into claims)."""

    decision: Decision
    claims: ClaimSet | None


class PolicyDecisionPoint(Closing):
    """Decides whether a workload gets a credential, and for how long.

    Build one with :meth:`local` (in-process Rego), :meth:`from_bundle` (an OPA
    bundle, in-process) or :meth:`remote` (an OPA server), then call :meth:`decide`
    from any thread, or ``await`` :meth:`adecide` from an event loop. ``decide`` never
    raises for bad claims or a failing engine: it returns a deny whose reason code says
    what went wrong.
    """

    def __init__(self, evaluator: Evaluator, *, cache: DecisionCache | None = None) -> None:
        self._evaluator = evaluator
        self._cache = cache
        self._revocation_lock = threading.Lock()
        # adecide's executor, made on first use; once closed, never again.
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._closed = False
        # Whether the revision is read without IO (no revocation store to consult), so
        # adecide may look a decision up in the cache on the event loop itself.
        self._hits_on_loop = False
        self._observers: tuple[DecisionObserver, ...] = ()
        self._feed: BundleFeed | None = None  # from_bundle(url=...) or watch=True

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
        policy_dir: PolicyDirs | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        cache: bool | DecisionCache = True,
        negative_ttl_seconds: float = 0.0,
        engine: str = DEFAULT_ENGINE,
        revocations: Path | str | RevocationStore | None = None,
    ) -> PolicyDecisionPoint:
        """Evaluate in-process; ``policy_dir=None`` uses the policy shipped in the package,
        and a sequence of directories loads them as one policy (the shipped one and an
        organisation's own rules: docs/custom-policies.md).

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
        store = _store(revocations)
        pdp = cls(
            make_evaluator(engine, source, checked, revocations=store),
            cache=cls._make_cache(cache, negative_ttl_seconds),
        )
        pdp._hits_on_loop = store is None
        return pdp

    @classmethod
    def from_bundle(
        cls,
        bundle: Path | str | bytes | None = None,
        *,
        url: str | None = None,
        config: Mapping[str, Any] | None = None,
        verification_key: bytes | str | None = None,
        token: str | None = None,
        poll_interval: float | None = None,
        min_delay: float | None = None,
        max_delay: float | None = None,
        watch: bool = False,
        wait: float = BUNDLE_WAIT_SECONDS,
        on_activation: Callable[[bool], object] | None = None,
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

        ``url`` (instead of ``bundle``) polls a bundle server as OPA does
        (:class:`~attestpolicy.bundle.BundlePoller`: ETag and 304, a random delay between
        ``min_delay`` and ``max_delay`` seconds, default 60 and 120, or exactly
        ``poll_interval``; ``token`` as a bearer token); ``watch=True`` re-reads the
        ``bundle`` path when it changes (:class:`~attestpolicy.bundle.BundleWatcher`,
        every ``poll_interval`` seconds, default 1). Each new bundle is verified, then
        swapped in atomically (no decision mixes revisions; the decision cache is
        cleared); a bad, tampered or unsigned one keeps the last good one and shows in
        :meth:`bundle_status`, and ``on_activation(ok)`` hears of each. This blocks until
        the first bundle is active and raises :class:`~attestpolicy.errors.BundleError`
        (``bundle.unavailable``) when none is within ``wait`` seconds: there is no
        decision point without a verified policy. :meth:`close` stops the polling.
        """
        check_engine_name(engine)  # before reading the bundle
        static = url is None and not watch
        if static:
            if bundle is None:
                raise ValueError("from_bundle needs a bundle, or url=")
            if poll_interval is not None or min_delay is not None or max_delay is not None:
                raise ValueError("poll_interval, min_delay and max_delay need url= or watch=True")
            from attestpolicy.bundle import load_bundle

            loaded = load_bundle(
                bundle,
                verification_key=verification_key,
                require_signature=verification_key is not None,
            )
        checked = validate_config(config) if config is not None else None
        store = _store(revocations)
        if static:
            evaluator = make_evaluator(
                engine, loaded.to_policy_source(), checked, revocations=store
            )
            feed = activator = None
        else:
            from attestpolicy.bundle import EvaluatorActivator

            activator = EvaluatorActivator(
                lambda source: make_evaluator(engine, source, checked, revocations=store)
            )
            feed = _bundle_feed(
                bundle,
                url,
                activator,
                verification_key=verification_key,
                token=token,
                poll_interval=poll_interval,
                min_delay=min_delay,
                max_delay=max_delay,
                on_activation=on_activation,
            ).start(wait=wait)
            evaluator = activator.evaluator
        pdp = cls(evaluator, cache=cls._make_cache(cache, negative_ttl_seconds))
        pdp._hits_on_loop = store is None
        pdp._feed = feed
        if activator is not None and pdp._cache is not None:
            activator.on_swap = pdp._cache.clear
        return pdp

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
        pdp = cls(RemoteEvaluator(url, **options), cache=cls._make_cache(cache, 0.0))
        pdp._hits_on_loop = True  # the revision is an attribute
        return pdp

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
        if not self._observers:
            return self._guarded(self._decide, claims, now, evaluated_at)
        trace = _Trace()
        step = functools.partial(self._decide, trace=trace)
        decision = self._guarded(step, claims, now, evaluated_at)
        self._notify(decision, trace)
        return decision

    # --- observers --------------------------------------------------------------

    def add_observer(self, observer: DecisionObserver) -> None:
        """Tell ``observer`` of every decision from now on (decision logs, metrics): see
        :mod:`attestpolicy.observe`."""
        if not callable(getattr(observer, "on_decision", None)):
            raise TypeError("an observer needs an on_decision(record) method")
        self._observers = (*self._observers, observer)

    def remove_observer(self, observer: DecisionObserver) -> None:
        """Stop telling ``observer`` (no error if it was not added)."""
        self._observers = tuple(o for o in self._observers if o is not observer)

    def _notify(
        self,
        decision: Decision,
        trace: _Trace,
        *,
        verification_ns: int | None = None,
        failures: tuple[EvidenceFailure, ...] = (),
        source: Literal["claims", "evidence"] = "claims",
    ) -> None:
        record = DecisionRecord(
            decision=decision,
            cache=trace.cache,
            duration_ns=time.perf_counter_ns() - trace.started,
            evaluation_ns=trace.evaluation_ns,
            verification_ns=verification_ns,
            evidence_failures=failures,
            source=source,
            _input=trace.input,
        )
        for observer in self._observers:
            try:
                observer.on_decision(record)
            except Exception:  # an observer never changes a decision
                _LOG.exception("decision observer %r failed", observer)

    def _guarded(
        self,
        step: Callable[[Any, datetime | None, datetime], Decision],
        claims: Any,
        now: datetime | None,
        evaluated_at: datetime,
    ) -> Decision:
        try:
            return step(claims, now, evaluated_at)
        except Exception as exc:  # fail closed: never an uncaught crash in the request path
            return self._deny("input.invalid", f"claims could not be read: {exc}", evaluated_at)

    def _decide(
        self,
        claims: ClaimSet | Mapping[str, Any] | str | bytes,
        now: datetime | None,
        evaluated_at: datetime,
        trace: _Trace | None = None,
    ) -> Decision:
        looked_up = self._look_up(claims, now, evaluated_at, trace)
        if isinstance(looked_up, Decision):
            return looked_up
        return self._decide_pending(looked_up, now, evaluated_at, trace)

    def _look_up(
        self,
        claims: ClaimSet | Mapping[str, Any] | str | bytes,
        now: datetime | None,
        evaluated_at: datetime,
        trace: _Trace | None = None,
    ) -> Decision | _Pending:
        """The cached decision, or what to decide on (never raises)."""
        # The caller's claims are read exactly once. With the cache, that read is the
        # canonical encoding: the key, and on a miss the copy decided on (decoded from
        # it), so claims changed by another thread meanwhile cannot be decided as one
        # thing and cached as another. Without the cache, ClaimSet.parse is the read.
        cache = self._cache
        if cache is None or isinstance(claims, str | bytes):
            return _Pending(claims, None, "")
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
                if trace is not None:
                    trace.cache = "hit"
                    trace.input = functools.partial(_hit_input, ticket.encoding, moment)
                return hit
            if trace is not None:
                trace.cache = "miss"
            snapshot = decode_encoding(ticket.encoding)[1]
            if raw_now is not None:
                snapshot["now"] = raw_now
            return _Pending(snapshot, ticket, revision)
        except Exception:
            return _Pending(claims, None, "")  # not cacheable as given: validation says why

    def _decide_pending(
        self,
        pending: _Pending,
        now: datetime | None,
        evaluated_at: datetime,
        trace: _Trace | None = None,
    ) -> Decision:
        cache, ticket, revision = self._cache, pending.ticket, pending.revision
        source = pending.source
        try:
            claim_set = ClaimSet.parse(source)  # type: ignore[arg-type]  # checked by parse
            moment = parse_timestamp(now) if now is not None else claim_set.now or evaluated_at
            policy_input = claim_set.to_input()
            policy_input["now"] = format_timestamp(moment)
        except ClaimsError as exc:
            return self._deny(exc.code, str(exc), evaluated_at)
        except ValueError as exc:
            return self._deny("input.invalid", f"now: {exc}", evaluated_at)
        if trace is not None:
            trace.input = policy_input.copy
            started = time.perf_counter_ns()
        try:
            decision = self._evaluator.evaluate(policy_input, evaluated_at=evaluated_at)
        except AttestPolicyError as exc:
            return self._deny(exc.code, str(exc), evaluated_at)
        except Exception as exc:
            return self._deny("engine.error", f"evaluator failed: {exc}", evaluated_at)
        finally:
            if trace is not None:
                trace.evaluation_ns = time.perf_counter_ns() - started
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
        return self.appraise_evidence(
            document, trust, now=now, nonce=nonce, nonce_audience=nonce_audience
        ).decision

    def appraise_evidence(
        self,
        document: Any,
        trust: Any,
        *,
        now: datetime | str | None = None,
        nonce: bytes | None = None,
        nonce_audience: str | None = None,
    ) -> EvidenceAppraisal:
        """:meth:`decide_evidence`, keeping the claim set the decision was made on (None
        when the evidence could not be turned into claims): a credential broker builds
        its token from exactly those claims. Never raises."""
        from attestpolicy.evidence.verify import verify_evidence_report

        evaluated_at = datetime.now(UTC)
        trace = _Trace() if self._observers else None
        try:
            report = verify_evidence_report(
                document,
                trust,
                now if now is not None else evaluated_at,
                nonce=nonce,
                nonce_audience=nonce_audience,
            )
        except Exception as exc:  # fail closed, on a verifier bug too
            if isinstance(exc, AttestPolicyError):
                code, message = exc.code, str(exc)
            else:
                code, message = "evidence.invalid", f"evidence could not be verified: {exc}"
            appraisal = EvidenceAppraisal(self._deny(code, message, evaluated_at), None)
            if trace is not None:
                failure = EvidenceFailure(_section(exc), code)
                self._notify(appraisal.decision, trace, failures=(failure,), source="evidence")
            return appraisal
        verification_ns = time.perf_counter_ns() - trace.started if trace is not None else None
        step = functools.partial(self._decide, trace=trace)
        decision = self._guarded(step, report.claims, None, evaluated_at)
        if not decision.allow and report.problems:
            extra = tuple(Reason(code=p.code, message=str(p)) for p in report.problems)
            reasons = sorted({*decision.reasons, *extra}, key=lambda r: (r.code, r.message))
            decision = decision.model_copy(update={"reasons": tuple(reasons)})
        if trace is not None:
            failures = tuple(EvidenceFailure(_section(p), p.code) for p in report.problems)
            self._notify(
                decision,
                trace,
                verification_ns=verification_ns,
                failures=failures,
                source="evidence",
            )
        return EvidenceAppraisal(decision, report.claims)

    # --- deciding from an event loop -------------------------------------------

    async def adecide(
        self,
        claims: ClaimSet | Mapping[str, Any] | str | bytes,
        *,
        now: datetime | None = None,
        deadline: float | None = None,
    ) -> Decision:
        """:meth:`decide` for asyncio code: the event loop never evaluates.

        A cache hit is answered at once (on the loop: an encoding and a table lookup,
        a few microseconds; with a revocation store, whose revision is read from a file,
        the lookup moves to the executor as well). Everything else runs on this PDP's
        executor (:data:`ASYNC_WORKERS` threads, made on first use, shut down by
        :meth:`close`). ``deadline`` is the number of seconds the caller waits, queueing
        included: past it the answer is an ``engine.timeout`` deny (an evaluation under
        way finishes on its thread, unused). Never raises: a bad ``deadline`` is an
        ``input.invalid`` deny, a closed PDP an ``engine.error`` deny. The caller must
        not change ``claims`` until the call returns.
        """
        evaluated_at = datetime.now(UTC)
        trace = _Trace() if self._observers else None
        try:
            limit = _check_deadline(deadline)
            work: Callable[[], Decision]
            if self._hits_on_loop:
                looked_up = self._look_up(claims, now, evaluated_at, trace)
                if isinstance(looked_up, Decision):
                    if trace is not None:
                        self._notify(looked_up, trace)
                    return looked_up
                pending = functools.partial(self._decide_pending, trace=trace)
                work = functools.partial(self._guarded, pending, looked_up, now, evaluated_at)
            else:
                step = functools.partial(self._decide, trace=trace)
                work = functools.partial(self._guarded, step, claims, now, evaluated_at)
        except ValueError as exc:
            decision = self._deny("input.invalid", str(exc), evaluated_at)
        else:
            decision = await self._on_executor(work, limit, evaluated_at)
        if trace is not None:
            self._notify(decision, trace)
        return decision

    async def adecide_evidence(
        self,
        document: Any,
        trust: Any,
        *,
        now: datetime | str | None = None,
        nonce: bytes | None = None,
        nonce_audience: str | None = None,
        deadline: float | None = None,
    ) -> Decision:
        """:meth:`decide_evidence` for asyncio code: verification and evaluation run on
        the executor of :meth:`adecide`, with the same ``deadline`` and failure rules.
        The caller must not change ``document`` or ``trust`` until the call returns."""
        evaluated_at = datetime.now(UTC)
        try:
            limit = _check_deadline(deadline)
        except ValueError as exc:
            return self._deny("input.invalid", str(exc), evaluated_at)
        work = functools.partial(
            self.decide_evidence,
            document,
            trust,
            now=now,
            nonce=nonce,
            nonce_audience=nonce_audience,
        )
        return await self._on_executor(work, limit, evaluated_at)

    async def _on_executor(
        self, work: Callable[[], Decision], deadline: float | None, evaluated_at: datetime
    ) -> Decision:
        """Run ``work`` on the executor and wait for it, at most ``deadline`` seconds."""
        import asyncio

        if deadline is not None and deadline <= 0:
            return self._timed_out(deadline, evaluated_at)
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            future = loop.run_in_executor(self._async_executor(), work)
            if deadline is None or math.isinf(deadline):
                return await future
            decision = await asyncio.wait_for(future, deadline)
            # An evaluation that held the GIL past the deadline (regorus does) kept the
            # loop from timing out: its late answer is a timeout all the same.
            if loop.time() - started > deadline:
                return self._timed_out(deadline, evaluated_at)
            return decision
        except TimeoutError:
            return self._timed_out(deadline or 0.0, evaluated_at)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the caller was cancelled, not the evaluation
            return self._deny("engine.error", "the decision point was closed", evaluated_at)
        except Exception as exc:  # a closed executor, a bug: fail closed
            return self._deny("engine.error", f"no decision: {exc}", evaluated_at)

    def _async_executor(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._closed:
                raise RuntimeError("the decision point is closed")
            if self._executor is None:
                from concurrent.futures import ThreadPoolExecutor

                self._executor = ThreadPoolExecutor(
                    max_workers=ASYNC_WORKERS, thread_name_prefix="attestpolicy-adecide"
                )
            return self._executor

    def _timed_out(self, deadline: float, evaluated_at: datetime) -> Decision:
        return self._deny(
            TIMEOUT_CODE, f"no decision within the {deadline:g} s deadline", evaluated_at
        )

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
        policy_dir: PolicyDirs | None = None,
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

    def bundle_status(self) -> BundleStatus | None:
        """The bundle feed's status (OPA's format), or None when no bundle is polled or
        watched."""
        return self._feed.status() if self._feed is not None else None

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
        """Shut down the executor of :meth:`adecide` (waiting for the evaluations under
        way; queued ones end as ``engine.error`` denies) and release the evaluator's
        resources; stop polling or watching the bundle. Later :meth:`adecide` calls deny
        with ``engine.error``."""
        with self._executor_lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        if self._feed is not None:
            self._feed.close()
        self._evaluator.close()
