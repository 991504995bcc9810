"""The status of a bundle and the status document, in OPA's own formats.

:class:`BundleStatus` has the fields and meaning of OPA's ``bundle.Status``
(``v1/plugins/bundle/status.go``): ``last_request`` is every attempt,
``last_successful_request`` every attempt the server answered (200 or 304),
``last_successful_download`` every bundle received and verified, and
``last_successful_activation`` with ``active_revision`` the bundle decisions use. A failure
sets ``code`` (``bundle_error``), ``message``, ``http_code`` for an HTTP status and
``errors`` for a bundle that did not compile; the next success clears them. A time never
reached is written as Go writes its zero time, as OPA does.

:func:`status_document` is OPA's status report (``UpdateRequestV1`` in
``v1/plugins/status/plugin.go``): ``labels``, ``bundles`` by name and ``plugins``; OPA's
``GET /v1/status`` answers ``{"result": <that document>}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

from attestpolicy._instance import instance_labels as _process_labels

__all__ = [
    "COMPILE_ERROR_MESSAGE",
    "ERROR_CODE",
    "BundleStatus",
    "instance_labels",
    "status_document",
]

ERROR_CODE: Final = "bundle_error"
"""``code`` of a failed download or activation (OPA's ``errCode``)."""

COMPILE_ERROR_MESSAGE: Final = "error(s) occurred while compiling module(s)"
"""``message`` of a bundle that downloaded but did not compile (OPA's
``types.MsgCompileModuleError``); ``errors`` lists what went wrong."""

ZERO_TIME: Final = "0001-01-01T00:00:00Z"
"""How OPA writes a time never reached (Go's zero ``time.Time``)."""


def instance_labels() -> dict[str, str]:
    """OPA's default labels: ``id`` (this process, a UUID made at import) and ``version``."""
    return _process_labels()


def go_time(moment: datetime | None) -> str:
    """``moment`` as Go's RFC 3339 with nanoseconds writes it (UTC, trailing zeros cut);
    None as Go's zero time."""
    if moment is None:
        return ZERO_TIME
    utc = moment.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


@dataclass(frozen=True)
class BundleStatus:
    """The status of one bundle source, as OPA reports it (see the module docstring)."""

    name: str
    active_revision: str = ""
    last_successful_download: datetime | None = None
    last_successful_activation: datetime | None = None
    last_request: datetime | None = None
    last_successful_request: datetime | None = None
    code: str = ""
    message: str = ""
    http_code: int | None = None
    errors: tuple[Mapping[str, str], ...] = ()
    """One ``{"code", "message"}`` per problem of a bundle that did not compile."""
    size: int = 0
    """Bytes of the active bundle as downloaded (0 for a directory)."""
    type: str = "snapshot"
    metrics: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Timers of the last attempt: ``timer_bundle_request_ns``, ``timer_rego_load_bundles_ns``."""

    @property
    def active(self) -> bool:
        """Whether a bundle has been activated (decisions are made with it)."""
        return self.last_successful_activation is not None

    @property
    def failed(self) -> bool:
        """Whether the last attempt failed (the active bundle, if any, stays in use)."""
        return bool(self.code)

    def to_json(self) -> dict[str, Any]:
        """The status as OPA writes it (its ``omitempty`` fields left out when empty)."""
        document: dict[str, Any] = {"name": self.name}
        if self.active_revision:
            document["active_revision"] = self.active_revision
        document["last_successful_download"] = go_time(self.last_successful_download)
        document["last_successful_activation"] = go_time(self.last_successful_activation)
        document["last_request"] = go_time(self.last_request)
        document["last_successful_request"] = go_time(self.last_successful_request)
        if self.metrics:
            document["metrics"] = dict(self.metrics)
        if self.type:
            document["type"] = self.type
        if self.code:
            document["code"] = self.code
        if self.message:
            document["message"] = self.message
        if self.http_code is not None:
            document["http_code"] = self.http_code
        if self.errors:
            document["errors"] = [dict(error) for error in self.errors]
        if self.size:
            document["size"] = self.size
        return document


def status_document(
    bundles: Iterable[BundleStatus],
    *,
    labels: Mapping[str, str] | None = None,
    plugins: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """OPA's status report for ``bundles``: ``{"labels", "bundles", "plugins"}``.

    ``labels`` default to :func:`instance_labels`. ``plugins`` maps each plugin's name to
    its state (``OK``, ``NOT_READY``, ``ERROR``, ``WARN``); with bundles, the ``bundle``
    plugin is ``OK`` once every bundle has been activated and ``NOT_READY`` before (OPA's
    rule: later failures show in the bundle's status, not the plugin's). ``GET /v1/status``
    answers ``{"result": <this document>}``, as OPA does.
    """
    statuses = list(bundles)
    states = dict(plugins or {})
    if statuses:
        states["bundle"] = "OK" if all(status.active for status in statuses) else "NOT_READY"
    document: dict[str, Any] = {"labels": dict(labels if labels is not None else instance_labels())}
    if statuses:
        document["bundles"] = {status.name: status.to_json() for status in statuses}
    document["plugins"] = {name: {"state": state} for name, state in sorted(states.items())}
    return document
