"""Polling a bundle server the way OPA does (``v1/download/download.go``).

After a successful attempt (a new bundle, a 304 or the same content) the next one waits a
random time between ``min_delay`` and ``max_delay`` (OPA's ``polling.min_delay_seconds``
and ``max_delay_seconds``, default 60 and 120), so a fleet does not poll in step. After a
failure it backs off as OPA does: at once the first time, then 0.1 s growing 1.6 times
per failure with 20 % jitter, never longer than ``max_delay``. Each request carries the
active bundle's ETag in ``If-None-Match``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final

from attestpolicy._keys import PublicKey
from attestpolicy.bundle._download import HttpDownloader
from attestpolicy.bundle._feed import NOT_MODIFIED, BundleFeed, Fetched, check_seconds
from attestpolicy.bundle._loading import DEFAULT_LIMITS, BundleLimits, LoadedBundle

__all__ = [
    "DEFAULT_MAX_DELAY",
    "DEFAULT_MIN_DELAY",
    "DEFAULT_NAME",
    "RETRY_BASE_DELAY",
    "BundlePoller",
    "retry_delay",
]

DEFAULT_MIN_DELAY: Final = 60.0
DEFAULT_MAX_DELAY: Final = 120.0
DEFAULT_NAME: Final = "attestpolicy"
"""The bundle's name in the status document (and OPA's configuration)."""

RETRY_BASE_DELAY: Final = 0.1
"""OPA's ``minRetryDelay``: the base of the backoff after failures."""

_FACTOR: Final = 1.6
_JITTER: Final = 0.2


def retry_delay(
    failures: int, max_delay: float, *, uniform: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after ``failures`` (>= 1) failed attempts in a row.

    OPA's ``util.DefaultBackoff``: none after the first failure, then
    ``0.1 * 1.6 ** (failures - 1)`` capped at ``max_delay``, with +-20 % jitter, and
    (unlike OPA, whose jitter can exceed it by a fifth) never more than ``max_delay``.
    """
    retries = failures - 1
    if retries <= 0:
        return 0.0
    delay = RETRY_BASE_DELAY
    while delay < max_delay and retries > 0:
        delay *= _FACTOR
        retries -= 1
    delay = min(delay, max_delay)
    delay *= 1 + _JITTER * (uniform() * 2 - 1)
    return max(0.0, min(delay, max_delay))


class BundlePoller(BundleFeed):
    """Poll ``url`` for a bundle and activate each new, verified one (see the module).

    ``token`` is sent as ``Authorization: Bearer <token>``; ``timeout`` bounds each
    request (connect, each read and the whole body); the bundle must fit ``limits``
    (``max_bundle_bytes`` caps the download). ``ca_bundle`` is a PEM file of CAs for
    https. ``name`` is the bundle's name in the status document. The other arguments are
    :class:`~attestpolicy.bundle._feed.BundleFeed`'s. Call :meth:`start` to poll in the
    background, :meth:`close` to stop.
    """

    def __init__(
        self,
        url: str,
        *,
        on_bundle: Callable[[LoadedBundle], object],
        on_activation: Callable[[bool], object] | None = None,
        verification_key: PublicKey | bytes | str | None = None,
        scope: str | None = None,
        token: str | None = None,
        min_delay: float = DEFAULT_MIN_DELAY,
        max_delay: float = DEFAULT_MAX_DELAY,
        timeout: float = 10.0,
        ca_bundle: str | None = None,
        limits: BundleLimits = DEFAULT_LIMITS,
        name: str = DEFAULT_NAME,
    ) -> None:
        low = check_seconds("min_delay", min_delay)
        high = check_seconds("max_delay", max_delay)
        if high < low:
            raise ValueError("max_delay must be >= min_delay")
        if high <= 0:
            raise ValueError("max_delay must be > 0")
        self._downloader = HttpDownloader(
            url,
            max_bytes=limits.max_bundle_bytes,
            timeout=timeout,
            token=token,
            ca_bundle=ca_bundle,
        )
        super().__init__(
            name,
            on_bundle=on_bundle,
            on_activation=on_activation,
            verification_key=verification_key,
            scope=scope,
            limits=limits,
        )
        self._min_delay = low
        self._max_delay = high

    @property
    def source(self) -> str:
        """The bundle URL."""
        return self._downloader.url

    def _fetch(self, active_etag: str | None) -> Fetched | str | None:
        downloaded = self._downloader.get(active_etag)
        if downloaded.body is None:
            return NOT_MODIFIED
        return Fetched(downloaded.body, downloaded.etag, len(downloaded.body))

    def _delay(self, failures: int) -> float:
        if failures:
            return retry_delay(failures, self._max_delay)
        return random.uniform(self._min_delay, self._max_delay)  # noqa: S311  # jitter, not a secret

    def _release(self) -> None:
        self._downloader.close()
