"""The bundle status and the status document in OPA's formats (``bundle.Status`` and the
status plugin's ``UpdateRequestV1``, which OPA's ``GET /v1/status`` answers as ``result``)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType

from attestpolicy import __version__
from attestpolicy.bundle import BundleStatus, instance_labels, status_document
from attestpolicy.bundle._status import ZERO_TIME, go_time

MOMENT = datetime(2026, 3, 4, 5, 6, 7, 120000, tzinfo=UTC)


def test_a_bundle_never_fetched() -> None:
    assert BundleStatus(name="attestpolicy").to_json() == {
        "name": "attestpolicy",
        "last_successful_download": ZERO_TIME,
        "last_successful_activation": ZERO_TIME,
        "last_request": ZERO_TIME,
        "last_successful_request": ZERO_TIME,
        "type": "snapshot",
    }
    assert ZERO_TIME == "0001-01-01T00:00:00Z"  # Go's zero time.Time, as OPA writes it


def test_an_active_bundle_whose_last_attempt_failed() -> None:
    status = BundleStatus(
        name="attestpolicy",
        active_revision="r1",
        last_successful_download=MOMENT,
        last_successful_activation=MOMENT,
        last_request=MOMENT + timedelta(seconds=60),
        last_successful_request=MOMENT,
        code="bundle_error",
        message="server replied with Service Unavailable",
        http_code=503,
        size=15003,
        metrics=MappingProxyType({"timer_bundle_request_ns": 1200}),
    )
    assert status.active
    assert status.failed
    assert status.to_json() == {
        "name": "attestpolicy",
        "active_revision": "r1",
        "last_successful_download": "2026-03-04T05:06:07.12Z",
        "last_successful_activation": "2026-03-04T05:06:07.12Z",
        "last_request": "2026-03-04T05:07:07.12Z",
        "last_successful_request": "2026-03-04T05:06:07.12Z",
        "metrics": {"timer_bundle_request_ns": 1200},
        "type": "snapshot",
        "code": "bundle_error",
        "message": "server replied with Service Unavailable",
        "http_code": 503,
        "size": 15003,
    }


def test_compile_errors_are_listed() -> None:
    error = {"code": "policy.invalid", "message": "a.rego:3: rego_unsafe_var_error: var y"}
    status = BundleStatus(
        name="attestpolicy",
        code="bundle_error",
        message="error(s) occurred while compiling module(s)",
        errors=(error,),
    )
    assert not status.active
    assert status.to_json()["errors"] == [error]
    assert "http_code" not in status.to_json()


def test_times_are_written_as_go_writes_them() -> None:
    assert go_time(None) == ZERO_TIME
    assert go_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    assert go_time(datetime(2026, 1, 2, 3, 4, 5, 1, tzinfo=UTC)) == "2026-01-02T03:04:05.000001Z"
    east = timezone(timedelta(hours=2))
    assert go_time(datetime(2026, 1, 2, 5, 4, 5, 500000, tzinfo=east)) == "2026-01-02T03:04:05.5Z"


def test_the_status_document() -> None:
    waiting = BundleStatus(name="attestpolicy")
    active = BundleStatus(
        name="attestpolicy", active_revision="r1", last_successful_activation=MOMENT
    )
    document = status_document([waiting])
    assert set(document) == {"labels", "bundles", "plugins"}
    assert document["bundles"] == {"attestpolicy": waiting.to_json()}
    assert document["plugins"] == {"bundle": {"state": "NOT_READY"}}
    assert status_document([active])["plugins"] == {"bundle": {"state": "OK"}}
    # once active, the plugin stays OK; a later failure shows in the bundle's status
    failed = BundleStatus(
        name="attestpolicy",
        active_revision="r1",
        last_successful_activation=MOMENT,
        code="bundle_error",
        message="x",
    )
    assert status_document([failed])["plugins"] == {"bundle": {"state": "OK"}}
    assert json.loads(json.dumps(document)) == document


def test_labels_and_other_plugins() -> None:
    labels = instance_labels()
    assert set(labels) == {"id", "version"}
    assert uuid.UUID(labels["id"])
    assert labels["version"] == __version__
    assert instance_labels() == labels  # one id per process
    document = status_document([], labels={"app": "payments", **labels}, plugins={"status": "OK"})
    assert document == {
        "labels": {"app": "payments", **labels},
        "plugins": {"status": {"state": "OK"}},
    }
    assert status_document([])["labels"] == labels
