"""Fixtures of the decision log tests: a log collector on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from decisionlog.helpers import Collector


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A running log collector, stopped after the test."""
    running = Collector().start()
    try:
        yield running
    finally:
        running.stop()
