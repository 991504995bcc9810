"""The operational settings of ``serve`` (docs/operations.md): what each worker turns on.

One frozen value, handed to the worker processes as JSON like the limits: the access log,
decision logs, metrics, bundle polling or watching, and a shadow bundle.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from typing import Final

from attestpolicy._server_limits import ServerSettingsError

__all__ = ["LOG_LEVELS", "OperationsSettings"]

LOG_LEVELS: Final = ("critical", "error", "warning", "info", "debug")
"""``serve --log-level`` choices (uvicorn's, and the ``attestpolicy`` loggers')."""

_HANDLER_MARK: Final = "_attestpolicy_serve"


@dataclass(frozen=True, kw_only=True)
class OperationsSettings:
    """What a ``serve`` worker turns on besides answering."""

    access_log: bool = False
    """A JSON line per request on the ``attestpolicy.access`` logger."""
    log_level: str = "info"
    metrics: bool = True
    """``GET /metrics`` (Prometheus; every worker's counts together)."""
    decision_log: str | None = None
    """Where decision log events go: ``-`` (stdout), a file (JSON lines, rotated), or an
    ``http(s)://`` decision log service (OPA's API: gzip batches to ``<url>/logs``)."""
    decision_log_per_worker: bool = False
    """Several workers: each writes ``<file>.<pid>`` (a file has one writer)."""
    decision_log_masks: str | None = None
    """A JSON file of erase/upsert masks, applied after the default ones."""
    decision_log_token_file: str | None = None
    """The bearer token of the decision log service (mode 600)."""
    bundle_url: str | None = None
    """Poll the policy bundle from this URL (OPA's bundle protocol) instead of --policy."""
    bundle_token_file: str | None = None
    bundle_verification_key: str | None = None
    """PEM public key every bundle (polled, watched or shadow) must be signed with."""
    bundle_min_delay: float = 60.0
    bundle_max_delay: float = 120.0
    watch: bool = False
    """Re-load the policy directory (or bundle) whenever it changes."""
    shadow_bundle: str | None = None
    """A candidate bundle decided beside the active policy; disagreements logged and
    counted, answers unchanged."""

    def __post_init__(self) -> None:
        for name in ("access_log", "metrics", "watch", "decision_log_per_worker"):
            if not isinstance(getattr(self, name), bool):
                raise ServerSettingsError(f"{name} must be true or false")
        if self.log_level not in LOG_LEVELS:
            raise ServerSettingsError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        for name in (
            "decision_log",
            "decision_log_masks",
            "decision_log_token_file",
            "bundle_url",
            "bundle_token_file",
            "bundle_verification_key",
            "shadow_bundle",
        ):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ServerSettingsError(f"{name} must be a non-empty string")
        if self.bundle_url is not None and self.watch:
            raise ServerSettingsError("--watch re-reads local files: not with --bundle-url")
        for name in ("bundle_min_delay", "bundle_max_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ServerSettingsError(f"{name} must be a positive number of seconds")
        if self.bundle_max_delay < self.bundle_min_delay:
            raise ServerSettingsError("bundle_max_delay must be >= bundle_min_delay")

    def configure_logging(self) -> None:
        """Send the ``attestpolicy`` loggers (access log, broker, decision logs...) to
        stderr, one message per line, at :attr:`log_level` (once per process)."""
        logger = logging.getLogger("attestpolicy")
        logger.setLevel(self.log_level.upper())
        if not any(getattr(h, _HANDLER_MARK, False) for h in logger.handlers):
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
            setattr(handler, _HANDLER_MARK, True)
            logger.addHandler(handler)

    def to_json(self) -> str:
        """The settings as JSON (how ``run_server`` hands them to its workers)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> OperationsSettings:
        """The settings :meth:`to_json` wrote; ServerSettingsError if they are not that."""
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError) as exc:
            raise ServerSettingsError(f"unusable operations settings: {exc}") from None
