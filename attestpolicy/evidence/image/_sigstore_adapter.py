"""Every use of sigstore-python's private API, in one place.

sigstore-python's public ``Verifier`` does all the checks of a Sigstore bundle but keeps two
things we need to itself. This module reaches for them, and nothing else in attestpolicy
touches a private sigstore name:

* **the verified signing times.** ``verify_artifact``/``verify_dsse`` establish them (RFC 3161
  timestamps, the Rekor integrated time) in ``Verifier._establish_time(bundle)``, which
  returns ``list[sigstore._internal.timestamp.TimestampVerificationResult]`` (``source``, a
  ``TimestampSource``, and ``time``), and then drop them. :class:`RecordingVerifier`
  overrides that method to keep them, as :class:`SignedTime` values (no private type leaves
  this module): they are the signing time a claim reports and the time checked against now.
* **whether a bundle signs a DSSE envelope**, which decides between ``verify_dsse`` and
  ``verify_artifact``: the ``Bundle._dsse_envelope`` property. Reading it also builds and
  checks the envelope, so a malformed envelope fails while the bundle is parsed.

Private names touched: ``sigstore._internal.timestamp.TimestampSource`` (members
``TIMESTAMP_AUTHORITY``, ``TRANSPARENCY_SERVICE``),
``sigstore._internal.timestamp.TimestampVerificationResult`` (fields ``source``, ``time``),
``sigstore.verify.Verifier._establish_time(self, bundle)`` and
``sigstore.models.Bundle._dsse_envelope``. pyproject.toml pins sigstore to the exact
version this was written against (:data:`SIGSTORE_VERSION`);
tests/evidence/image/test_sigstore_adapter.py fails, naming the private name and the pin,
when any of them moves. Upgrade sigstore, this module and the pin together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from sigstore._internal.timestamp import TimestampSource, TimestampVerificationResult
from sigstore.models import Bundle, TrustedRoot
from sigstore.verify import Verifier

__all__ = ["SIGSTORE_VERSION", "RecordingVerifier", "SignedTime", "carries_dsse"]

SIGSTORE_VERSION: Final = "4.5.1"
"""The sigstore-python release the private names below were checked against (the pin)."""

_Source = Literal["transparency_log", "timestamp_authority"]
_SOURCES: Final[dict[TimestampSource, _Source]] = {
    TimestampSource.TRANSPARENCY_SERVICE: "transparency_log",
    TimestampSource.TIMESTAMP_AUTHORITY: "timestamp_authority",
}


@dataclass(frozen=True, slots=True)
class SignedTime:
    """A signing time sigstore verified, and who vouches for it."""

    time: datetime
    source: _Source


class RecordingVerifier(Verifier):
    """A ``Verifier`` that keeps the signing times it verified (those of its last call)."""

    def __init__(self, *, trusted_root: TrustedRoot) -> None:
        super().__init__(trusted_root=trusted_root)
        self.signed_times: tuple[SignedTime, ...] = ()

    def _establish_time(self, bundle: Bundle) -> list[TimestampVerificationResult]:
        times = super()._establish_time(bundle)
        self.signed_times = tuple(SignedTime(item.time, _SOURCES[item.source]) for item in times)
        return times


def carries_dsse(bundle: Bundle) -> bool:
    """Whether ``bundle`` signs a DSSE envelope (else a message signature); builds and
    checks the envelope, raising sigstore's error for a malformed one."""
    return bundle._dsse_envelope is not None
