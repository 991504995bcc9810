"""The validity collector: the earliest upper time bound reported during a verification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from attestpolicy.evidence._validity import collect_validity, valid_until

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_outside_a_collection_a_bound_goes_nowhere() -> None:
    valid_until(T0)  # no error, no effect
    with collect_validity() as validity:
        pass
    assert validity.until is None


def test_the_earliest_bound_is_kept() -> None:
    with collect_validity() as validity:
        for hours in (5, 2, 9):
            valid_until(T0 + timedelta(hours=hours))
    assert validity.until == T0 + timedelta(hours=2)


def test_an_inner_collection_reports_to_the_outer_one() -> None:
    with collect_validity() as outer:
        valid_until(T0 + timedelta(hours=3))
        with collect_validity() as inner:
            valid_until(T0 + timedelta(hours=1))
        valid_until(T0 + timedelta(hours=2))
    assert inner.until == T0 + timedelta(hours=1)
    assert outer.until == T0 + timedelta(hours=1)


def test_a_failed_verification_ends_its_collection() -> None:
    with pytest.raises(RuntimeError), collect_validity():
        raise RuntimeError("verification failed")
    with collect_validity() as validity:
        pass
    valid_until(T0)
    assert validity.until is None
