"""The decision log event: OPA's ``EventV1`` with attestpolicy's extras, built and typed.

The builders turn a :class:`~attestpolicy.observe.DecisionRecord` or a Data API query into
the event as a plain dict (on the logger's writer thread); :class:`DecisionLogEvent` is the
strict model of what is written (masks applied), for readers of the log and for tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import Field, JsonValue, model_validator

from attestpolicy._model import FrozenModel
from attestpolicy.observe import DecisionRecord

__all__ = [
    "BUNDLE_NAME",
    "DECISION_PATH",
    "BundleInfo",
    "DecisionExtras",
    "DecisionLogEvent",
    "EventExtras",
    "LoggedEvidenceFailure",
    "QueryExtras",
    "decision_event",
    "event_json_schema",
    "format_timestamp_ns",
    "query_event",
]

DECISION_PATH: Final = "attestpolicy/v1/decision"
"""The ``path`` of every decision event (the policy's entrypoint, as OPA names it)."""

BUNDLE_NAME: Final = "attestpolicy"
"""The ``bundles`` key under which a decision's policy revision is logged."""

EXTRAS_KEY: Final = "attestpolicy"
"""The member holding attestpolicy's own fields (OPA's readers ignore unknown members)."""

_RFC3339_NANOS: Final = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$"
_POINTER: Final = r"^/(input|result)(/.*)?$"
_METRIC: Final = r"^(timer|counter)_[a-z0-9_]+$"


def format_timestamp_ns(nanoseconds: int) -> str:
    """RFC 3339 in UTC with nine fractional digits, from nanoseconds since the epoch."""
    seconds, fraction = divmod(nanoseconds, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"


def _format_datetime(moment: datetime) -> str:
    """An aware datetime as :func:`format_timestamp_ns` writes it (microseconds, padded)."""
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}000Z"


def decision_event(record: DecisionRecord, labels: Mapping[str, str]) -> dict[str, Any]:
    """The event of one decision, unmasked (its input is the record's: copy before a
    change)."""
    decision = record.decision
    event: dict[str, Any] = {
        "labels": labels,
        "decision_id": decision.decision_id,
        "path": DECISION_PATH,
    }
    if decision.policy_revision:
        event["bundles"] = {BUNDLE_NAME: {"revision": decision.policy_revision}}
    policy_input = record.policy_input()
    if policy_input is not None:
        event["input"] = policy_input
    event["result"] = decision.to_json_dict()
    event["timestamp"] = _format_datetime(decision.evaluated_at)
    metrics = {"timer_attestpolicy_decide_ns": record.duration_ns}
    if record.evaluation_ns is not None:
        metrics["timer_rego_query_eval_ns"] = record.evaluation_ns
    if record.verification_ns is not None:
        metrics["timer_attestpolicy_verify_ns"] = record.verification_ns
    event["metrics"] = metrics
    event[EXTRAS_KEY] = {
        "source": record.source,
        "cache": record.cache,
        "reason_codes": list(decision.reason_codes),
        "ttl_bound_by": decision.ttl_bound_by,
        "evidence_failures": [
            {"section": failure.section, "code": failure.code}
            for failure in record.evidence_failures
        ],
    }
    return event


def query_event(
    labels: Mapping[str, str],
    decision_id: str,
    path: str,
    policy_input: Any,
    result: Any,
    *,
    defined: bool,
    revision: str,
    eval_ns: int | None,
    requested_by: str | None,
    timestamp_ns: int,
) -> dict[str, Any]:
    """The event of one Data API query, unmasked (input and result are the caller's: copy
    before a change)."""
    event: dict[str, Any] = {
        "labels": labels,
        "decision_id": decision_id,
        "path": path.strip("/"),
    }
    if revision:
        event["bundles"] = {BUNDLE_NAME: {"revision": revision}}
    if policy_input is not None:
        event["input"] = policy_input
    if defined:
        event["result"] = result
    if requested_by:
        event["requested_by"] = requested_by
    event["timestamp"] = format_timestamp_ns(timestamp_ns)
    event["metrics"] = {} if eval_ns is None else {"timer_rego_query_eval_ns": eval_ns}
    event[EXTRAS_KEY] = {"source": "query"}
    return event


# --- the model ------------------------------------------------------------------------


class BundleInfo(FrozenModel):
    """``bundles.<name>``: the revision the decision was made with."""

    revision: Annotated[str, Field(min_length=1)]


class LoggedEvidenceFailure(FrozenModel):
    """One evidence section that failed verification, and its reason code."""

    section: Annotated[str, Field(min_length=1)]
    code: Annotated[str, Field(min_length=1)]


class DecisionExtras(FrozenModel):
    """The ``attestpolicy`` member of a decision: what OPA's event has no field for."""

    source: Literal["claims", "evidence"]
    cache: Literal["hit", "miss", "off"]
    reason_codes: tuple[str, ...]
    ttl_bound_by: str | None
    evidence_failures: tuple[LoggedEvidenceFailure, ...]


class QueryExtras(FrozenModel):
    """The ``attestpolicy`` member of a Data API query."""

    source: Literal["query"]


EventExtras = Annotated[DecisionExtras | QueryExtras, Field(discriminator="source")]
"""The ``attestpolicy`` member, by its ``source``."""


Pointer = Annotated[str, Field(pattern=_POINTER)]


class DecisionLogEvent(FrozenModel):
    """One decision log event as written: OPA's decision log event (``labels``,
    ``decision_id``, ``bundles``, ``path``, ``input``, ``result``, ``requested_by``,
    ``timestamp``, ``metrics``, ``erased``, ``masked``) and the ``attestpolicy`` extras.

    ``input`` is absent when there was none or it was erased whole; ``result`` is absent
    for an undefined query or when erased.
    """

    labels: Annotated[dict[str, str], Field(json_schema_extra={"required": ["id", "version"]})]
    decision_id: Annotated[str, Field(min_length=1)]
    bundles: dict[str, BundleInfo] | None = None
    path: Annotated[str, Field(min_length=1)]
    input: JsonValue = None
    result: JsonValue = None
    requested_by: str | None = None
    timestamp: Annotated[str, Field(pattern=_RFC3339_NANOS)]
    metrics: Annotated[
        dict[str, Annotated[int, Field(ge=0)]],
        Field(json_schema_extra={"propertyNames": {"pattern": _METRIC}}),
    ]
    erased: tuple[Pointer, ...] | None = None
    masked: tuple[Pointer, ...] | None = None
    attestpolicy: EventExtras

    @model_validator(mode="after")
    def _labels_and_metric_names(self) -> DecisionLogEvent:
        if not self.labels.get("id") or not self.labels.get("version"):
            raise ValueError("labels need the instance id and version")
        if not all(re.match(_METRIC, name) for name in self.metrics):
            raise ValueError(f"metric names match {_METRIC}")
        return self

    @property
    def input_altered(self) -> bool:
        """Whether the input is not what the decision was made on: absent, or partly
        or wholly erased or masked (such an event cannot be replayed)."""
        if self.input is None:
            return True
        pointers = (*(self.erased or ()), *(self.masked or ()))
        return any(p == "/input" or p.startswith("/input/") for p in pointers)


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a decision log event as written."""
    schema = DecisionLogEvent.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://attestpolicy.dev/schemas/decision-log-event.json"
    return schema
