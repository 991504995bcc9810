"""How long a verification stays true: the earliest instant a passed time check would fail.

A verification at ``now`` compares ``now`` with two kinds of bound. A lower bound (a
certificate's ``notBefore``, a token's ``nbf`` or ``iat``, a signed time that may not lie
in the future) that held at ``now`` holds at every later instant. An upper bound (a
certificate's ``notAfter``, a token's ``exp``, a document's maximum age, a signing key's
``not_after``) stops holding once it is passed. Every check of an upper bound against
``now`` reports it here with :func:`valid_until`; :func:`collect_validity` gathers the
earliest, so a verification that passed at ``t`` is known to pass again, unchanged, at
every ``now`` in ``[t, valid_until)``. The verified-evidence cache serves an entry only
inside that window.

Checks made at a time fixed by the evidence (a Fulcio certificate checked at its Rekor
integrated time) do not depend on ``now`` and report nothing. Outside a collection
:func:`valid_until` does nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime

__all__ = ["Validity", "collect_validity", "valid_until"]


class Validity:
    """The earliest upper bound reported during one verification (None: none reported)."""

    __slots__ = ("until",)

    def __init__(self) -> None:
        self.until: datetime | None = None

    def note(self, moment: datetime) -> None:
        """Keep ``moment`` when it is earlier than every bound seen so far."""
        if self.until is None or moment < self.until:
            self.until = moment


_CURRENT: ContextVar[Validity | None] = ContextVar("attestpolicy_validity", default=None)


def valid_until(moment: datetime) -> None:
    """Report that the check just passed holds only while ``now < moment``."""
    current = _CURRENT.get()
    if current is not None:
        current.note(moment)


@contextmanager
def collect_validity() -> Iterator[Validity]:
    """Collect the bounds reported inside the block; an enclosing block gets them too."""
    outer = _CURRENT.get()
    validity = Validity()
    token = _CURRENT.set(validity)
    try:
        yield validity
    finally:
        _CURRENT.reset(token)
        if outer is not None and validity.until is not None:
            outer.note(validity.until)
