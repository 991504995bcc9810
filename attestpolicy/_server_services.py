"""One ``serve`` worker's operational services, built from its :class:`OperationsSettings`.

- the policy: from ``--policy`` (watched with ``--watch``) or a polled bundle
  (``--bundle-url``), activated atomically by :class:`~attestpolicy.bundle.EvaluatorActivator`;
- ``GET /metrics`` (:mod:`attestpolicy.metrics`, every worker's counts in multiprocess mode)
  and ``GET /v1/status`` (OPA's status document);
- the decision log (:mod:`attestpolicy.decisionlog`) and the shadow bundle
  (:mod:`attestpolicy.shadow`), both fed by the Data API's query hook, off the request path.

Nothing here can change an answer: the hook's consumers only enqueue or count.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from attestpolicy._server_api import Answer, QueryRecord, Route, Scope, header, json_answer
from attestpolicy._server_limits import ServerSettingsError
from attestpolicy._server_operations import OperationsSettings
from attestpolicy.config import load_config
from attestpolicy.engine._inprocess import InProcessEvaluator, make_evaluator
from attestpolicy.policy import PolicyDirs, PolicySource
from attestpolicy.revocations import RevocationStore

if TYPE_CHECKING:
    from attestpolicy.bundle import BundleFeed
    from attestpolicy.decisionlog import DecisionLogger
    from attestpolicy.metrics import Metrics
    from attestpolicy.pdp import PolicyDecisionPoint
    from attestpolicy.shadow import Shadow

__all__ = ["WorkerServices"]

_FIRST_BUNDLE_SECONDS: Final = 30.0
_WATCH_INTERVAL_SECONDS: Final = 1.0


def _read_key(path: str | None) -> bytes | None:
    """The bundle verification key's PEM, or None; ServerSettingsError if unreadable."""
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ServerSettingsError(
            f"cannot read the bundle verification key {path}: {exc.strerror or exc}"
        ) from None


class WorkerServices:
    """The evaluator a worker answers with, and the services around it."""

    def __init__(
        self,
        settings: OperationsSettings,
        *,
        evaluator: InProcessEvaluator | None = None,
        engine: str,
        policy_dir: PolicyDirs | None,
        config_path: str | Path | None,
        revocations_path: str | Path | None,
        freeze_heap: bool = False,
    ) -> None:
        """``evaluator``: answer with this one (no bundle feed); else build it from
        ``policy_dir`` or the bundle feed, with ``config_path`` and ``revocations_path``.
        ``freeze_heap``: freeze the heap (``gc.freeze``) after each bundle activated after
        the first (the application freezes it once built)."""
        self.settings = settings
        self._freeze_heap = freeze_heap
        self._config = load_config(config_path) if config_path is not None else None
        self._store = RevocationStore(revocations_path) if revocations_path is not None else None
        self._engine = engine
        self._feed: BundleFeed | None = None
        self.metrics: Metrics | None = None
        self.decision_log: DecisionLogger | None = None
        self.shadow: Shadow | None = None
        try:
            self._start(evaluator, policy_dir)
        except BaseException:
            self.close()
            raise

    def _start(self, evaluator: InProcessEvaluator | None, policy_dir: PolicyDirs | None) -> None:
        settings = self.settings
        if settings.metrics:
            from attestpolicy.metrics import Metrics

            self.metrics = Metrics()
        self.evaluator = evaluator if evaluator is not None else self._policy(policy_dir)
        if settings.decision_log is not None:
            self.decision_log = self._decision_logger(settings.decision_log)
        if settings.shadow_bundle is not None:
            from attestpolicy.replay import load_candidate
            from attestpolicy.shadow import Shadow

            candidate = load_candidate(
                bundle=settings.shadow_bundle,
                config=self._config,
                verification_key=_read_key(settings.bundle_verification_key),
                engine=self._engine,
                revocations=self._store,
            )
            self.shadow = Shadow(candidate.evaluator)
        if self.metrics is not None:
            if self._feed is not None:
                self.metrics.watch_bundle(self._feed.status)
            if self.decision_log is not None:
                self.metrics.watch_decision_log(self.decision_log)

    def _build(self, source: PolicySource) -> InProcessEvaluator:
        return make_evaluator(self._engine, source, self._config, revocations=self._store)

    def _policy(self, policy_dir: PolicyDirs | None) -> InProcessEvaluator:
        """The evaluator: from the policy directories, or from the first bundle a feed
        activates (``bundle.unavailable`` when none is within 30 s)."""
        settings = self.settings
        if settings.bundle_url is None and not settings.watch:
            return self._build(PolicySource.from_directory(policy_dir))
        from attestpolicy.bundle import (
            BundlePoller,
            BundleWatcher,
            EvaluatorActivator,
            load_token,
        )

        activator = EvaluatorActivator(self._build)
        if self._freeze_heap:
            activator.on_swap = gc.freeze
        on_activation = self.metrics.bundle_activation if self.metrics is not None else None
        key = _read_key(settings.bundle_verification_key)
        feed: BundleFeed
        if settings.bundle_url is not None:
            feed = BundlePoller(
                settings.bundle_url,
                on_bundle=activator,
                on_activation=on_activation,
                verification_key=key,
                token=load_token(settings.bundle_token_file),
                min_delay=settings.bundle_min_delay,
                max_delay=settings.bundle_max_delay,
            )
        else:
            directories = [policy_dir] if isinstance(policy_dir, str | os.PathLike) else policy_dir
            if not directories or len(directories) != 1:
                raise ServerSettingsError("--watch needs exactly one --policy directory or bundle")
            feed = BundleWatcher(
                directories[0],
                on_bundle=activator,
                on_activation=on_activation,
                verification_key=key,
                interval=_WATCH_INTERVAL_SECONDS,
            )
        self._feed = feed
        feed.start(wait=_FIRST_BUNDLE_SECONDS)
        return activator.evaluator

    def _decision_logger(self, target: str) -> DecisionLogger:
        from attestpolicy.bundle import load_token
        from attestpolicy.decisionlog import (
            DEFAULT_MASKS,
            DecisionLogger,
            FileSink,
            HttpSink,
            Sink,
            StdoutSink,
            load_masks,
        )

        settings = self.settings
        masks = DEFAULT_MASKS
        if settings.decision_log_masks is not None:
            masks = (*DEFAULT_MASKS, *load_masks(settings.decision_log_masks))
        sink: Sink
        if target == "-":
            sink = StdoutSink()
        elif target.startswith(("http://", "https://")):
            token = (
                load_token(settings.decision_log_token_file)
                if settings.decision_log_token_file is not None
                else None
            )
            sink = HttpSink(target, token=token)
        else:
            path = Path(target)
            if settings.decision_log_per_worker:  # one writer per file: <file>.<pid>
                path = path.with_name(f"{path.name}.{os.getpid()}")
            sink = FileSink(path)
        return DecisionLogger(sink, masks=masks)  # labels: this process's, as the status

    # --- the hooks ------------------------------------------------------------------

    def observe(self, pdp: PolicyDecisionPoint) -> None:
        """Count and log the decisions of a PDP of this worker (the broker's)."""
        if self.metrics is not None:
            self.metrics.observe(pdp)
        if self.decision_log is not None:
            pdp.add_observer(self.decision_log)

    @property
    def on_query(self) -> Callable[[QueryRecord], None] | None:
        """The Data API's query hook, or None when nothing listens (then no answer
        carries a decision id, as OPA without decision logs)."""
        if self.metrics is None and self.decision_log is None and self.shadow is None:
            return None
        return self._on_query

    @property
    def logs_decisions(self) -> bool:
        """Whether answers name their decision (OPA does when it logs decisions)."""
        return self.decision_log is not None

    def _on_query(self, record: QueryRecord) -> None:
        if self.metrics is not None:
            self.metrics.on_query(record)
        if self.decision_log is not None:
            self.decision_log.log_query(
                record.path,
                record.input,
                record.result,
                revision=record.revision,
                eval_ns=record.evaluation_ns,
                decision_id=record.decision_id,
                defined=record.defined,
            )
        if self.shadow is not None:
            self.shadow.submit(
                record.input,
                record.result if record.defined else None,
                decision_id=record.decision_id,
                path=record.path,
            )

    def routes(self) -> dict[str, Route]:
        """``GET /v1/status`` always; ``GET /metrics`` with metrics on."""
        routes = {"/v1/status": Route(("GET",), self._status)}
        if self.metrics is not None:
            routes["/metrics"] = Route(("GET",), self._metrics)
        return routes

    def _status(self, scope: Scope, raw: bytes) -> Answer:
        from attestpolicy.bundle import instance_labels, status_document

        statuses = [self._feed.status()] if self._feed is not None else []
        return json_answer({"result": status_document(statuses, labels=instance_labels())})

    def _metrics(self, scope: Scope, raw: bytes) -> Answer:
        assert self.metrics is not None  # the route exists only with metrics
        body, content_type = self.metrics.render(header(scope, b"accept"))
        return Answer(200, body, content_type=content_type.encode("latin-1"))

    def close(self) -> None:
        """Stop the feed, flush the decision log, stop the shadow and the metrics."""
        for service in (self._feed, self.shadow, self.decision_log, self.metrics):
            if service is not None:
                service.close()
