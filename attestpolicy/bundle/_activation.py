"""Activating bundles in an in-process evaluator: the first builds it, each later one swaps.

:class:`EvaluatorActivator` is a feed's ``on_bundle``. The swap is the evaluator's
``reload``: the new policy is compiled before one attribute assignment replaces the old
snapshot, so a decision is made wholly with one revision or wholly with the next, and a
policy that does not compile raises with the old one still in place (the feed reports it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from attestpolicy.bundle._feed import bundle_digest
from attestpolicy.bundle._loading import LoadedBundle
from attestpolicy.errors import BundleError
from attestpolicy.policy import PolicySource

if TYPE_CHECKING:
    from attestpolicy.engine._inprocess import InProcessEvaluator

__all__ = ["EvaluatorActivator"]

_LOG = logging.getLogger("attestpolicy.bundle")


class EvaluatorActivator:
    """Keeps one in-process evaluator on the latest bundle a feed delivers.

    ``build(source)`` makes the evaluator from the first bundle (e.g.
    ``make_evaluator(engine, source, config)``); each later bundle is swapped in with
    ``evaluator.reload(source)``, then ``on_swap()`` runs (a decision point clears its
    cache there). A bundle that keeps the active manifest revision but changes what it
    holds is given the revision ``<revision>+sha256:<12 hex digits>``, so no decision
    cached under the old content is ever served for the new.
    """

    def __init__(self, build: Callable[[PolicySource], InProcessEvaluator]) -> None:
        if not callable(build):
            raise TypeError("build must be callable")
        self._build = build
        self._evaluator: InProcessEvaluator | None = None
        self._source: PolicySource | None = None
        self._lock = threading.Lock()
        self.on_swap: Callable[[], object] | None = None

    @property
    def evaluator(self) -> InProcessEvaluator:
        """The evaluator; :class:`~attestpolicy.errors.BundleError` before any bundle."""
        evaluator = self._evaluator
        if evaluator is None:
            raise BundleError("no bundle has been activated yet", code="bundle.unavailable")
        return evaluator

    def __call__(self, loaded: LoadedBundle) -> None:
        """Activate ``loaded`` (raises, keeping the active bundle, when it cannot)."""
        source = loaded.to_policy_source()
        with self._lock:
            current = self._source
            if (
                current is not None
                and source.revision == current.revision
                and (dict(source.modules) != dict(current.modules) or source.data != current.data)
            ):
                revision = f"{source.revision}+sha256:{bundle_digest(loaded)[:12]}"
                source = PolicySource(source.modules, revision, source.data)
            if self._evaluator is None:
                self._evaluator = self._build(source)
            else:
                self._evaluator.reload(source)
            self._source = source
            on_swap = self.on_swap
        if on_swap is not None and current is not None:
            try:
                on_swap()
            except Exception:  # the swap is done; a failing hook does not undo it
                _LOG.exception("bundle on_swap hook %r failed", on_swap)
