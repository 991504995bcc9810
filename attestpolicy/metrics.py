"""Prometheus metrics: decisions, latencies, the decision cache, evidence, credentials,
bundles and decision-log drops (prometheus-client).

A :class:`Metrics` is a decision observer (``metrics.observe(pdp)``: its decisions, its
decision cache and its bundle revision) with counters for what a decision does not show
(credentials, bundle activations, decision log drops); :meth:`Metrics.render` gives what
``GET /metrics`` answers and :meth:`Metrics.asgi_app` an ASGI application answering it.

Label values always come from bounded sets: ``result``, ``source`` and ``cache`` are
fixed; reason codes must look like one (``image.untrusted_signer``) and at most
:data:`MAX_CODES` distinct codes get a series of their own (the rest count as ``other``);
evidence sections are the evidence document's formats. Nothing per workload (SPIFFE IDs,
digests, decision ids) is ever a label.

In one process nothing needs setting up. Several worker processes (``serve --workers``)
share their metrics through files, prometheus-client's multiprocess mode: the parent
process enters :func:`multiprocess_directory` before it starts any worker (each worker
must import prometheus-client with ``PROMETHEUS_MULTIPROC_DIR`` already set), calls
:func:`mark_process_dead` for each worker that exits, and any worker's
:meth:`Metrics.render` then answers for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.multiprocess import mark_process_dead as _mark_dead

from attestpolicy.engine.cache import CacheStats
from attestpolicy.observe import DecisionRecord, EvidenceFailure

if TYPE_CHECKING:
    from attestpolicy.pdp import PolicyDecisionPoint

__all__ = [
    "DECISION_PATH",
    "EVIDENCE_FORMATS",
    "FOLD_INTERVAL_SECONDS",
    "LATENCY_BUCKETS",
    "MAX_CODES",
    "MULTIPROC_ENV",
    "OTHER",
    "DataQuery",
    "Metrics",
    "mark_process_dead",
    "multiprocess_directory",
    "multiprocess_mode",
    "multiprocess_registry",
    "render",
]

_LOG = logging.getLogger(__name__)

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
"""Where prometheus-client's multiprocess mode keeps each process's metric files."""

DECISION_PATH: Final = "attestpolicy/v1/decision"
"""The Data API path whose answers :meth:`Metrics.on_query` counts as decisions."""

LATENCY_BUCKETS: Final = (
    *(0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5),
    *(0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
"""Histogram buckets in seconds: from a cache hit (microseconds) to a slow verification."""

FOLD_INTERVAL_SECONDS: Final = 1.0
"""How often cache hits, noted on the deciding thread, are counted (and at each scrape)."""

MAX_CODES: Final = 256
"""Distinct reason (or evidence) codes given a series of their own; later ones: ``other``."""

OTHER: Final = "other"
"""The label value of anything outside a bounded set."""

EVIDENCE_FORMATS: Final = frozenset(
    {
        "image.cosign",
        "image.sigstore",
        "provenance",
        *(
            f"node.{kind}"
            for kind in ("tpm", "aws_iid", "gcp_iit", "k8s_psat", "sev_snp", "az_snp_vtpm", "tdx")
        ),
        *(f"runtime.{kind}" for kind in ("x509_svid", "jwt_svid", "psat", "attestor")),
    }
)
"""The evidence formats failures are counted by; a failure elsewhere counts under its
section (``image``, ``node``, ``runtime``) or ``document``."""

_SECTIONS: Final = ("image", "node", "runtime")
_CODE: Final = re.compile(r"[a-z][a-z0-9_]{0,31}(?:\.[a-z0-9_]{1,48}){1,3}")
_MAX_REVISION_CHARS: Final = 128
_RESULTS: Final = ("allow", "deny")
_SOURCES: Final = ("claims", "evidence")
_CACHE_OUTCOMES: Final = ("hit", "miss", "off")
_EVICTION_CAUSES: Final = ("capacity", "expired", "revoked")
_ENGINE_PREFIXES: Final = ("engine.", "remote.")
_NS: Final = 1e-9
_shared_by_pid: set[int] = set()  # processes that made their multiprocess-mode Metrics
_shared_lock = threading.Lock()


class DataQuery(Protocol):
    """One Data API evaluation of ``serve`` (its query hook's record)."""

    @property
    def path(self) -> str:
        """The data path, without ``/v1/data/`` (``attestpolicy/v1/decision``)."""

    @property
    def defined(self) -> bool:
        """Whether the document was defined."""

    @property
    def result(self) -> Any:
        """The document's value."""

    @property
    def evaluation_ns(self) -> int:
        """The engine's time."""


def multiprocess_mode() -> bool:
    """Whether metrics of this process go to files in ``PROMETHEUS_MULTIPROC_DIR``.

    prometheus-client decides it once, when it is imported; RuntimeError when the
    environment variable was set (or unset) after that, or names no directory.
    """
    directory = os.environ.get(MULTIPROC_ENV)
    shared = bool(getattr(values.ValueClass, "_multiprocess", False))
    if shared and not directory:
        raise RuntimeError(f"{MULTIPROC_ENV} was unset after prometheus_client was imported")
    if directory and not shared:
        raise RuntimeError(
            f"{MULTIPROC_ENV} was set after prometheus_client was imported in this process: "
            "set it before the process starts (serve's workers inherit it from their parent)"
        )
    if directory and not os.path.isdir(directory):
        raise RuntimeError(f"{MULTIPROC_ENV}={directory} is not a directory")
    return shared


@contextlib.contextmanager
def multiprocess_directory() -> Iterator[Path]:
    """For a parent process, before it starts its workers: a new private directory (mode
    0700) in ``PROMETHEUS_MULTIPROC_DIR`` for the workers' metric files, removed (and the
    variable restored) on exit. Workers started inside inherit the variable."""
    previous = os.environ.get(MULTIPROC_ENV)
    directory = Path(tempfile.mkdtemp(prefix="attestpolicy-metrics-"))
    os.environ[MULTIPROC_ENV] = str(directory)
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(directory, ignore_errors=True)


def mark_process_dead(pid: int) -> None:
    """Forget a worker that exited: its live gauges (cache entries, active revision) go;
    its counters and histograms stay in the totals. Nothing outside multiprocess mode."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        _mark_dead(pid, directory)  # type: ignore[no-untyped-call]  # untyped upstream


def multiprocess_registry() -> CollectorRegistry:
    """A registry that reads every process's metric files (make one per scrape)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped upstream
    return registry


def render(registry: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    """``registry`` in Prometheus' text format (or OpenMetrics when ``accept``, an HTTP
    ``Accept`` header, asks for it): ``(body, content type)``."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


class _Children:
    """The series of a metric labelled by one code, bound once per distinct code."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: Counter) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Counter] = {}

    def inc(self, *labels: str) -> None:
        child = self._children.get(labels)
        if child is None:
            child = self._children.setdefault(labels, self._metric.labels(*labels))
        child.inc()


class _Codes:
    """Maps a code to its label value: itself for the first :data:`MAX_CODES` distinct
    well-formed codes, :data:`OTHER` for anything else."""

    __slots__ = ("_known", "_lock")

    def __init__(self) -> None:
        self._known: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, code: object) -> str:
        if not isinstance(code, str):
            return OTHER
        label = self._known.get(code)
        if label is not None:
            return label
        if not _CODE.fullmatch(code):
            return OTHER
        with self._lock:
            if len(self._known) >= MAX_CODES:
                return OTHER
            return self._known.setdefault(code, code)


def _evidence_format(section: str) -> str:
    """The label of an evidence failure's section: one of :data:`EVIDENCE_FORMATS`, the
    section it is in, or ``document``."""
    head, _, rest = section.partition(".")
    if head == "provenance":
        return head
    if head in _SECTIONS:
        name = f"{head}.{rest.partition('.')[0]}"
        return name if name in EVIDENCE_FORMATS else head
    return "document"


class _Watch:
    """Cumulative counts read from elsewhere (a cache's or a decision log's stats), and
    the counters each sync advances by what they grew."""

    __slots__ = ("counters", "read", "seen")

    def __init__(self, read: Callable[[], Any], counters: tuple[Counter, ...]) -> None:
        self.read = read
        self.counters = counters
        self.seen = (0,) * len(counters)

    def advance(self, counts: tuple[int, ...]) -> None:
        for counter, new, old in zip(self.counters, counts, self.seen, strict=True):
            if new > old:
                counter.inc(new - old)
        self.seen = counts


def _stats_reader(source: object, method: str, what: str) -> Callable[[], Any]:
    """``source.<method>`` when it has one, else ``source`` itself (a callable)."""
    read = getattr(source, method, source)
    if not callable(read):
        raise TypeError(f"{what} needs an object with {method}() or a callable")
    return read


class Metrics:
    """attestpolicy's metrics in ``registry`` (default: a new one), as a decision observer.

    :meth:`observe` a PDP (its decisions, cache and bundle), :meth:`on_query` serve's
    Data API, :meth:`watch_decision_log` a decision logger; the broker calls
    :meth:`credential_issued` and :meth:`credentials_revoked`, a bundle feed
    :meth:`bundle_activation`. Cache hits and what is watched are counted on a thread of
    its own (every :data:`FOLD_INTERVAL_SECONDS`, and at each :meth:`render`);
    :meth:`close` stops it. In multiprocess mode (:func:`multiprocess_mode`) make one per
    process. Its methods never raise once made (a metric is never worth a failed decision).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.multiprocess = multiprocess_mode()
        if self.multiprocess:  # a second one would overwrite the first one's values
            with _shared_lock:
                if os.getpid() in _shared_by_pid:
                    raise RuntimeError("multiprocess mode: make one Metrics per process")
                _shared_by_pid.add(os.getpid())
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        decisions = Counter(
            "attestpolicy_decisions",
            "Decisions, by result and by what they were made on (claims, evidence, or "
            "serve's Data API).",
            ("result", "source"),
            registry=reg,
        )
        self._decisions = {
            (result, source): decisions.labels(result, source)
            for result in _RESULTS
            for source in (*_SOURCES, "data_api")
        }
        self._deny_reasons = _Children(
            Counter(
                "attestpolicy_deny_reasons",
                "Reason codes of denies (a deny with several reasons counts each).",
                ("code",),
                registry=reg,
            )
        )
        self._engine_errors = _Children(
            Counter(
                "attestpolicy_engine_errors",
                "Decisions the evaluator failed (engine.* and remote.* reason codes).",
                ("code",),
                registry=reg,
            )
        )
        self._evidence_failures = _Children(
            Counter(
                "attestpolicy_evidence_failures",
                "Evidence that failed verification, by evidence format and reason code.",
                ("format", "code"),
                registry=reg,
            )
        )
        self._codes = _Codes()
        duration = Histogram(
            "attestpolicy_decision_duration_seconds",
            "Time from a decide call to its decision (evidence verification included).",
            ("source", "cache"),
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self._duration = {
            (source, cache): duration.labels(source, cache)
            for source in _SOURCES
            for cache in _CACHE_OUTCOMES
        }
        self._evaluation = Histogram(
            "attestpolicy_evaluation_duration_seconds",
            "Time the policy engine took to evaluate (cache misses, and Data API queries).",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self._verification = Histogram(
            "attestpolicy_verification_duration_seconds",
            "Time evidence verification took, for decisions on evidence.",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self._hits = Counter(
            "attestpolicy_decision_cache_hits",
            "Decisions answered from the decision cache.",
            registry=reg,
        )
        self._misses = Counter(
            "attestpolicy_decision_cache_misses",
            "Decisions the decision cache could not answer (evaluated).",
            registry=reg,
        )
        evictions = Counter(
            "attestpolicy_decision_cache_evictions",
            "Entries dropped from the decision cache: capacity (least recently used), "
            "expired, revoked.",
            ("cause",),
            registry=reg,
        )
        self._evictions = tuple(evictions.labels(cause) for cause in _EVICTION_CAUSES)
        self._cache_entries = Gauge(
            "attestpolicy_decision_cache_entries",
            "Decisions in the decision cache (summed over live processes).",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self._credentials_issued = Counter(
            "attestpolicy_credentials_issued",
            "Credentials the broker signed.",
            registry=reg,
        )
        self._credentials_revoked = Counter(
            "attestpolicy_credentials_revoked",
            "Live credentials marked revoked in the issued-credential registry.",
            registry=reg,
        )
        self._activations = Counter(
            "attestpolicy_bundle_activations",
            "Policy bundles activated.",
            registry=reg,
        )
        self._activation_failures = Counter(
            "attestpolicy_bundle_failures",
            "Policy bundles refused or failed to download, verify or activate (the last "
            "good one stays active).",
            registry=reg,
        )
        self._last_activation = Gauge(
            "attestpolicy_bundle_last_activation_timestamp_seconds",
            "When a bundle was last activated (Unix time; the latest of live processes).",
            registry=reg,
            multiprocess_mode="livemax",
        )
        self._revision = Gauge(
            "attestpolicy_bundle_revision",
            "1 for the bundle revision this process decides with (summed over live "
            "processes: how many decide with it).",
            ("revision",),
            registry=reg,
            multiprocess_mode="livesum",
        )
        self._log_dropped = Counter(
            "attestpolicy_decision_log_dropped",
            "Decision log events dropped (a full buffer, or offered after close).",
            registry=reg,
        )
        self._log_failed = Counter(
            "attestpolicy_decision_log_failed",
            "Decision log events lost to an error (encoding, a sink's write or rejection).",
            registry=reg,
        )
        self._active_revision: str | None = None
        self._revision_lock = threading.Lock()
        self._bundles: tuple[Callable[[], Any], ...] = ()
        self._caches: tuple[_Watch, ...] = ()
        self._logs: tuple[_Watch, ...] = ()
        self._sync_lock = threading.Lock()
        # Allows answered from the cache, (source, duration_ns), counted by _fold.
        self._hits_pending: deque[tuple[str, int]] = deque()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._closed = threading.Event()

    def observe(self, pdp: PolicyDecisionPoint) -> None:
        """Count ``pdp``'s decisions (``pdp.add_observer(self)``), its decision cache
        (:meth:`watch_cache`) and its bundle revision (:meth:`watch_bundle`)."""
        pdp.add_observer(self)
        self.watch_cache(pdp)
        self.watch_bundle(pdp)

    # --- decisions --------------------------------------------------------------------

    def on_decision(self, record: DecisionRecord) -> None:
        """Count one decision of a PDP (the :class:`~attestpolicy.observe.DecisionObserver`
        protocol)."""
        decision, source, cache = record.decision, record.source, record.cache
        if cache == "hit" and decision.allow:  # the hot path: counted off this thread
            self._hits_pending.append((source, record.duration_ns))
            if self._thread is None:
                self._start()
            return
        if decision.allow:
            self._decisions["allow", source].inc()
        else:
            self._decisions["deny", source].inc()
            self._count_reasons(reason.code for reason in decision.reasons)
        self._duration[source, cache].observe(record.duration_ns * _NS)
        if cache == "hit":
            self._hits.inc()
            return
        if cache == "miss":
            self._misses.inc()
        if record.evaluation_ns is not None:
            self._evaluation.observe(record.evaluation_ns * _NS)
        if record.verification_ns is not None:
            self._verification.observe(record.verification_ns * _NS)
        for failure in record.evidence_failures:
            self._evidence_failure(failure)

    def on_query(self, query: DataQuery) -> None:
        """Count one Data API evaluation of ``serve``: its engine time, and, on
        :data:`DECISION_PATH`, the decision (undefined: an ``engine.undefined`` deny)."""
        self._evaluation.observe(query.evaluation_ns * _NS)
        if query.path.strip("/") != DECISION_PATH:
            return
        result = query.result if query.defined else None
        if isinstance(result, Mapping) and result.get("allow") is True:
            self._decisions["allow", "data_api"].inc()
            return
        self._decisions["deny", "data_api"].inc()
        if result is None:
            self._count_reasons(("engine.undefined",))
            return
        reasons = result.get("reasons") if isinstance(result, Mapping) else None
        codes = [r.get("code") for r in reasons or () if isinstance(r, Mapping)]
        self._count_reasons(codes or ("engine.error",))

    def engine_error(self, code: str = "engine.error") -> None:
        """Count an evaluation that failed outside a PDP (a Data API query answered 500)."""
        self._engine_errors.inc(self._codes(code))

    def _count_reasons(self, codes: Iterable[object]) -> None:
        for code in codes:
            label = self._codes(code)
            self._deny_reasons.inc(label)
            if isinstance(code, str) and code.startswith(_ENGINE_PREFIXES):
                self._engine_errors.inc(label)

    def _evidence_failure(self, failure: EvidenceFailure) -> None:
        section = failure.section if isinstance(failure.section, str) else ""
        self._evidence_failures.inc(_evidence_format(section), self._codes(failure.code))

    # --- what is read from elsewhere ---------------------------------------------------

    def watch_cache(self, source: PolicyDecisionPoint | Callable[[], CacheStats | None]) -> None:
        """Count the evictions of a decision cache and its size: ``source`` is a
        :class:`~attestpolicy.pdp.PolicyDecisionPoint` (or a callable returning its
        :class:`~attestpolicy.engine.cache.CacheStats`, None without a cache)."""
        watch = _Watch(_stats_reader(source, "cache_stats", "watch_cache"), self._evictions)
        with self._sync_lock:
            self._caches = (*self._caches, watch)
        self._start()

    def watch_decision_log(self, source: Any) -> None:
        """Count what a :class:`~attestpolicy.decisionlog.DecisionLogger` (or a callable
        returning its :class:`~attestpolicy.decisionlog.DecisionLogStats`) dropped or
        lost to errors."""
        read = _stats_reader(source, "stats", "watch_decision_log")
        watch = _Watch(read, (self._log_dropped, self._log_failed))
        with self._sync_lock:
            self._logs = (*self._logs, watch)
        self._start()

    def watch_bundle(self, source: Any) -> None:
        """Show the active revision of a PDP's bundle feed (``source``: a PDP made with
        ``from_bundle``, or a callable returning its
        :class:`~attestpolicy.bundle.BundleStatus`, None without a feed), now and at each
        :meth:`bundle_activation` that names none."""
        read = _stats_reader(source, "bundle_status", "watch_bundle")
        with self._sync_lock:
            self._bundles = (*self._bundles, read)
        self._show_revision(None)

    def _sync(self) -> None:
        """Advance the watched counts (any thread; skipped while another thread does)."""
        if not self._sync_lock.acquire(blocking=False):
            return
        try:
            entries = 0
            for watch in self._caches:
                stats = _read(watch.read)
                if stats is not None:
                    watch.advance((stats.evictions, stats.expirations, stats.revocations))
                    entries += stats.entries
            if self._caches:
                self._cache_entries.set(entries)
            for watch in self._logs:
                stats = _read(watch.read)
                if stats is not None:
                    watch.advance((stats.dropped, stats.failed))
        finally:
            self._sync_lock.release()

    # --- credentials, bundles, decision logs ------------------------------------------

    def credential_issued(self) -> None:
        """Count a credential the broker signed."""
        self._credentials_issued.inc()

    def credentials_revoked(self, count: int) -> None:
        """Count ``count`` live credentials marked revoked."""
        if count > 0:
            self._credentials_revoked.inc(count)

    def bundle_activation(self, ok: bool, *, revision: str | None = None) -> None:
        """Count a bundle activated (``ok``) or refused/failed: a bundle feed's
        ``on_activation`` hook. The active ``revision`` is shown (without one, the
        watched bundle's: :meth:`watch_bundle`)."""
        if not ok:
            self._activation_failures.inc()
            return
        self._activations.inc()
        self._last_activation.set(time.time())
        self._show_revision(revision)

    def _show_revision(self, revision: str | None) -> None:
        if revision is None:
            statuses = (_read(read) for read in self._bundles)
            revision = next((s.active_revision for s in statuses if s is not None), None)
            if not revision:
                return
        printable = isinstance(revision, str) and revision.isprintable()
        label = revision if printable and len(revision) <= _MAX_REVISION_CHARS else OTHER
        with self._revision_lock:
            previous, self._active_revision = self._active_revision, label
            if previous is not None and previous != label:
                if self.multiprocess:  # series cannot be removed from the files
                    self._revision.labels(previous).set(0)
                else:
                    self._revision.remove(previous)
            self._revision.labels(label).set(1)

    def log_dropped(self, count: int) -> None:
        """Count ``count`` decision log events dropped (beside :meth:`watch_decision_log`)."""
        if count > 0:
            self._log_dropped.inc(count)

    # --- the thread counting hits and reading what is watched -------------------------

    def _start(self) -> None:
        with self._thread_lock:
            if self._closed.is_set():
                self._fold()  # no thread any more: count at once
            elif self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="attestpolicy-metrics", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._closed.wait(FOLD_INTERVAL_SECONDS):
            self._fold()
            self._sync()

    def _fold(self) -> None:
        """Count the cache hits noted by :meth:`on_decision` so far (any thread)."""
        pending, counts = self._hits_pending, dict.fromkeys(_SOURCES, 0)
        while pending:
            try:
                source, duration_ns = pending.popleft()
            except IndexError:  # another thread took the last one
                break
            counts[source] += 1
            self._duration[source, "hit"].observe(duration_ns * _NS)
        for source, count in counts.items():
            if count:
                self._decisions["allow", source].inc(count)
                self._hits.inc(count)

    def close(self) -> None:
        """Count what is pending and stop the thread (a worker calls it before it exits).
        Later hits are counted on the deciding thread, watched counts at :meth:`render`."""
        with self._thread_lock:
            self._closed.set()
            thread = self._thread
        if thread is not None:
            thread.join()
        with self._thread_lock:
            self._thread = None  # from now on, _start counts at once
        self._fold()
        self._sync()

    # --- exposition -------------------------------------------------------------------

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """What ``GET /metrics`` answers: ``(body, content type)``; in multiprocess mode
        the metrics of every process. ``accept`` is the request's ``Accept`` header."""
        self._fold()
        self._sync()
        registry = multiprocess_registry() if self.multiprocess else self.registry
        return render(registry, accept)

    def asgi_app(self) -> Callable[..., Awaitable[None]]:
        """An ASGI application answering ``GET``/``HEAD`` with :meth:`render` (405 for
        other methods); mount it at ``/metrics``. Rendering runs on a thread."""
        return _MetricsApp(self)


def _read(read: Callable[[], Any]) -> Any:
    """``read()``, or None (logged) when it fails."""
    try:
        return read()
    except Exception:
        _LOG.exception("reading counts for the metrics failed")
        return None


class _MetricsApp:
    """The ASGI application of :meth:`Metrics.asgi_app`."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def __call__(
        self,
        scope: Mapping[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            raise RuntimeError(f"cannot answer a {scope['type']} connection")
        headers: list[tuple[bytes, bytes]] = []
        if scope["method"] not in ("GET", "HEAD"):
            status, body = 405, b"method not allowed\n"
            headers += [(b"allow", b"GET, HEAD"), (b"content-type", b"text/plain")]
        else:
            accept = next(
                (v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"accept"),
                None,
            )
            status = 200
            body, content_type = await asyncio.to_thread(self._metrics.render, accept)
            headers.append((b"content-type", content_type.encode()))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )
