"""A bundle feed: fetch, verify, then activate, keeping the last good bundle and its status.

:class:`BundleFeed` is what :class:`~attestpolicy.bundle.BundlePoller` (HTTP) and
:class:`~attestpolicy.bundle.BundleWatcher` (a local file or directory) share. Each
attempt fetches the bundle (the subclass's part), loads it with
:func:`~attestpolicy.bundle.load_bundle` (signature verified first with the
verification key, and required when there is one), and only then hands it to
``on_bundle``, the activation (an evaluator's atomic reload). A failure at any step keeps
the active bundle and is recorded in :meth:`BundleFeed.status`, as OPA's bundle plugin
records it (``v1/plugins/bundle/plugin.go``): a bundle that does not download or verify
is a failed request; one that verifies but does not activate is a failed activation. A
bundle whose content equals the active one's is not activated again.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Final, Self

from attestpolicy._closing import Closing
from attestpolicy._keys import PublicKey
from attestpolicy.bundle._download import DownloadError
from attestpolicy.bundle._loading import DEFAULT_LIMITS, BundleLimits, LoadedBundle, load_bundle
from attestpolicy.bundle._status import COMPILE_ERROR_MESSAGE, ERROR_CODE, BundleStatus
from attestpolicy.errors import AttestPolicyError, BundleError, PolicyError

__all__ = [
    "NOT_MODIFIED",
    "UNAVAILABLE_CODE",
    "BundleFeed",
    "Fetched",
    "bundle_digest",
    "check_seconds",
]

_LOG = logging.getLogger("attestpolicy.bundle")

UNAVAILABLE_CODE: Final = "bundle.unavailable"
"""``code`` of the :class:`BundleError` raised when no bundle was activated in time."""

NOT_MODIFIED: Final = "not-modified"
"""What :meth:`BundleFeed._fetch` returns for a 304: the active bundle is current."""


@dataclass(frozen=True)
class Fetched:
    """A bundle fetched by a feed: tar.gz bytes or a path, its ETag and size in bytes."""

    source: bytes | Path
    etag: str | None
    size: int


def bundle_digest(loaded: LoadedBundle) -> str:
    """A SHA-256 over what a bundle gives the evaluator: revision, roots, modules, data."""
    content = {
        "revision": loaded.manifest.revision,
        "roots": list(loaded.manifest.roots),
        "modules": dict(loaded.modules),
        "data": loaded.data,
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=dict)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:1000]


def _errors(exc: BaseException) -> tuple[dict[str, str], ...]:
    code = exc.code if isinstance(exc, AttestPolicyError) else "bundle.activation"
    return ({"code": code, "message": _describe(exc)},)


class BundleFeed(Closing, abc.ABC):
    """Fetches a bundle again and again and activates each new, verified one.

    ``on_bundle(loaded)`` activates a bundle (it raises to refuse it); ``on_activation(ok)``
    is told of each attempt that brought something new: True once a bundle is activated,
    False when a download, a verification or an activation failed (a metrics hook:
    ``Metrics.bundle_activation``). Neither is called for an unchanged bundle.
    ``verification_key`` (PEM or key object) makes a valid signature by that key
    mandatory; ``scope`` is the signature's expected scope; ``limits`` bound the bundle.
    """

    def __init__(
        self,
        name: str,
        *,
        on_bundle: Callable[[LoadedBundle], object],
        on_activation: Callable[[bool], object] | None = None,
        verification_key: PublicKey | bytes | str | None = None,
        scope: str | None = None,
        limits: BundleLimits = DEFAULT_LIMITS,
    ) -> None:
        if not callable(on_bundle):
            raise TypeError("on_bundle must be callable")
        if on_activation is not None and not callable(on_activation):
            raise TypeError("on_activation must be callable")
        if verification_key is not None:
            from attestpolicy.bundle._signing import public_key

            verification_key = public_key(verification_key)  # a bad key fails here, at once
        self._on_bundle = on_bundle
        self._on_activation = on_activation
        self._verification_key = verification_key
        self._scope = scope
        self._limits = limits
        self._status = BundleStatus(name=name)
        self._status_lock = threading.Lock()
        self._attempt_lock = threading.Lock()
        self._active = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._active_etag: str | None = None
        self._active_digest: str | None = None

    # --- what a source supplies ---------------------------------------------------------

    @abc.abstractmethod
    def _fetch(self, active_etag: str | None) -> Fetched | str | None:
        """The bundle, :data:`NOT_MODIFIED` (a 304), or None (nothing changed: no attempt).

        Raise :class:`DownloadError` or :class:`BundleError` when it cannot be had.
        """

    @abc.abstractmethod
    def _delay(self, failures: int) -> float:
        """Seconds to wait before the next attempt, after ``failures`` failed ones in a row."""

    @property
    @abc.abstractmethod
    def source(self) -> str:
        """Where bundles come from (a URL or a path), for messages."""

    def _release(self) -> None:
        """Release what fetching holds (connections); called once by :meth:`close`."""

    # --- public ------------------------------------------------------------------------

    def status(self) -> BundleStatus:
        """The bundle's status now (an immutable snapshot)."""
        with self._status_lock:
            return self._status

    @property
    def revision(self) -> str:
        """The active bundle's manifest revision ("" before the first activation)."""
        return self.status().active_revision

    def poll_once(self) -> BundleStatus:
        """One attempt now, in this thread (serialized with the background loop's);
        returns the status after it. Never raises for a bad or missing bundle."""
        with self._attempt_lock:
            self._attempt()
        return self.status()

    def start(self, *, wait: float | None = None) -> Self:
        """Start the background loop (first attempt at once).

        With ``wait`` (seconds), block until a bundle is active; when none is by then,
        close this feed and raise :class:`~attestpolicy.errors.BundleError` (code
        ``bundle.unavailable``) saying what the last attempt met.
        """
        if self._thread is not None or self._stop.is_set():
            raise RuntimeError("a bundle feed starts once")
        if wait is not None:
            check_seconds("wait", wait)
        thread = threading.Thread(
            target=self._run, name=f"attestpolicy-bundle-{self.status().name}", daemon=True
        )
        self._thread = thread
        thread.start()
        if wait is not None and not self._active.wait(wait):
            status = self.status()
            self.close()
            why = status.message or "no answer yet"
            raise BundleError(
                f"no bundle activated from {self.source} within {wait:g} s: {why}",
                code=UNAVAILABLE_CODE,
            )
        return self

    def wait_active(self, timeout: float) -> bool:
        """Block until a bundle is active or ``timeout`` seconds pass; whether one is."""
        check_seconds("timeout", timeout)
        return self._active.wait(timeout)

    def close(self) -> None:
        """Stop the loop (an attempt under way finishes within its timeouts); idempotent.
        The active bundle stays in use by whoever activated it."""
        if self._stop.is_set():
            return
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._release()

    # --- the loop and one attempt -------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            with self._attempt_lock:
                if self._stop.is_set():
                    return
                failed = self._attempt()
            failures = failures + 1 if failed else 0
            self._stop.wait(self._delay(failures))

    def _update(self, **changes: object) -> BundleStatus:
        with self._status_lock:
            self._status = dataclasses.replace(self._status, **changes)  # type: ignore[arg-type]
            return self._status

    def _nothing_new(self, requested: datetime, request_ns: int, **changes: object) -> None:
        """Record a successful request that brought nothing to activate (not modified, or
        the active bundle's content again), with ``changes`` to the status besides."""
        self._update(
            last_request=requested,
            last_successful_request=requested,
            code="",
            message="",
            http_code=None,
            errors=(),
            metrics=MappingProxyType({"timer_bundle_request_ns": request_ns}),
            **changes,
        )

    def _attempt(self) -> bool:
        """One fetch-verify-activate round; True when it failed."""
        requested = _now()
        started = time.perf_counter_ns()
        try:
            fetched = self._fetch(self._active_etag)
        except (DownloadError, BundleError, OSError) as exc:
            http_code = exc.http_code if isinstance(exc, DownloadError) else None
            self._failed_request(requested, exc, http_code, started)
            return True
        except Exception as exc:  # a bug in fetching must not end polling
            _LOG.exception("bundle fetch from %s failed", self.source)
            self._failed_request(requested, exc, None, started)
            return True
        request_ns = time.perf_counter_ns() - started
        if fetched is None:
            return False
        if fetched == NOT_MODIFIED:
            self._nothing_new(requested, request_ns)
            return False
        assert isinstance(fetched, Fetched)
        return self._load_and_activate(fetched, requested, request_ns)

    def _load_and_activate(self, fetched: Fetched, requested: datetime, request_ns: int) -> bool:
        load_started = time.perf_counter_ns()
        try:
            loaded = load_bundle(
                fetched.source,
                verification_key=self._verification_key,
                require_signature=self._verification_key is not None,
                scope=self._scope,
                limits=self._limits,
            )
            digest = bundle_digest(loaded)
        except Exception as exc:  # not verified: a failed download, as OPA counts it
            self._failed_request(requested, exc, None, load_started, request_ns=request_ns)
            return True
        if digest == self._active_digest:  # the same content again: nothing to activate
            self._active_etag = fetched.etag
            self._nothing_new(requested, request_ns, last_successful_download=requested)
            return False
        try:
            self._on_bundle(loaded)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            load_ns = time.perf_counter_ns() - load_started
            message = COMPILE_ERROR_MESSAGE if isinstance(exc, PolicyError) else _describe(exc)
            _LOG.warning(
                "bundle %s from %s not activated (active: %s): %s",
                loaded.revision or "(no revision)",
                self.source,
                self.revision or "none",
                _describe(exc),
            )
            self._update(
                last_request=requested,
                last_successful_request=requested,
                last_successful_download=requested,
                code=ERROR_CODE,
                message=message,
                http_code=None,
                errors=_errors(exc),
                metrics=_timers(request_ns, load_ns),
            )
            self._notify(False)
            return True
        load_ns = time.perf_counter_ns() - load_started
        self._active_etag = fetched.etag
        self._active_digest = digest
        self._update(
            active_revision=loaded.revision,
            last_request=requested,
            last_successful_request=requested,
            last_successful_download=requested,
            last_successful_activation=_now(),
            code="",
            message="",
            http_code=None,
            errors=(),
            size=fetched.size,
            metrics=_timers(request_ns, load_ns),
        )
        self._active.set()
        _LOG.info("bundle %s from %s activated", loaded.revision or "(no revision)", self.source)
        self._notify(True)
        return False

    def _failed_request(
        self,
        requested: datetime,
        exc: BaseException,
        http_code: int | None,
        started: int,
        *,
        request_ns: int | None = None,
    ) -> None:
        elapsed = time.perf_counter_ns() - started
        metrics = (
            {"timer_bundle_request_ns": elapsed}
            if request_ns is None
            else _timers(request_ns, elapsed)
        )
        _LOG.warning(
            "bundle from %s refused (active: %s): %s",
            self.source,
            self.revision or "none",
            _describe(exc),
        )
        self._update(
            last_request=requested,
            code=ERROR_CODE,
            message=_describe(exc),
            http_code=http_code,
            errors=_errors(exc) if isinstance(exc, AttestPolicyError) else (),
            metrics=MappingProxyType(metrics),
        )
        self._notify(False)

    def _notify(self, ok: bool) -> None:
        if self._on_activation is None:
            return
        try:
            self._on_activation(ok)
        except Exception:  # a hook never stops polling
            _LOG.exception("bundle on_activation hook %r failed", self._on_activation)


def _timers(request_ns: int, load_ns: int) -> MappingProxyType[str, int]:
    return MappingProxyType(
        {"timer_bundle_request_ns": request_ns, "timer_rego_load_bundles_ns": load_ns}
    )


def check_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds")
    if not (value >= 0 and value != float("inf")):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return float(value)
