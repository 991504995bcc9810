"""Decision logs in OPA's decision log event format, masked before they leave the process.

::

    from attestpolicy.decisionlog import DecisionLogger, FileSink

    logger = DecisionLogger(FileSink("decisions.jsonl"))
    pdp.add_observer(logger)  # every decision is logged from now on
    ...
    logger.close()  # delivers what is queued (bounded by close_timeout)

See docs/operations.md ("Decision logs", "Masking") for the event, the sinks and masks.
"""

from attestpolicy.decisionlog._errors import DecisionLogConfigError, MaskConfigError
from attestpolicy.decisionlog._event import (
    BUNDLE_NAME,
    DECISION_PATH,
    BundleInfo,
    DecisionExtras,
    DecisionLogEvent,
    EventExtras,
    LoggedEvidenceFailure,
    QueryExtras,
    event_json_schema,
)
from attestpolicy.decisionlog._http import HttpSink
from attestpolicy.decisionlog._logger import DecisionLogger, DecisionLogStats
from attestpolicy.decisionlog._mask import (
    ATTESTATION_MATERIAL_FIELDS,
    DEFAULT_MASKS,
    REDACTED,
    TOKEN_FIELDS,
    AttestationMaterial,
    Erase,
    MaskRule,
    Upsert,
    load_masks,
    parse_masks,
)
from attestpolicy.decisionlog._sinks import FileSink, Sink, SinkStats, StdoutSink

__all__ = [
    "ATTESTATION_MATERIAL_FIELDS",
    "BUNDLE_NAME",
    "DECISION_PATH",
    "DEFAULT_MASKS",
    "REDACTED",
    "TOKEN_FIELDS",
    "AttestationMaterial",
    "BundleInfo",
    "DecisionExtras",
    "DecisionLogConfigError",
    "DecisionLogEvent",
    "DecisionLogStats",
    "DecisionLogger",
    "Erase",
    "EventExtras",
    "FileSink",
    "HttpSink",
    "LoggedEvidenceFailure",
    "MaskConfigError",
    "MaskRule",
    "QueryExtras",
    "Sink",
    "SinkStats",
    "StdoutSink",
    "Upsert",
    "event_json_schema",
    "load_masks",
    "parse_masks",
]
