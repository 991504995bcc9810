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

    def __post_init__(self) -> None:
        if not isinstance(self.access_log, bool):
            raise ServerSettingsError("access_log must be true or false")
        if self.log_level not in LOG_LEVELS:
            raise ServerSettingsError(f"log_level must be one of {', '.join(LOG_LEVELS)}")

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
