"""Replaying recorded decisions with a candidate policy: what would change before it ships.

A decision log (OPA's decision-log events, one JSON object per line: attestpolicy's own
logs and a real OPA fleet's alike) holds, for every decision, the exact policy input
(with the ``now`` it was decided at) and the result. :func:`replay` decides every such
input again with a candidate (a policy bundle or directory with its configuration), at
the time it was logged, and counts what changes: allows that become denies (narrowing),
denies that become allows (widening), denies whose reasons change, allows whose TTL
changes, by reason code and by workload (``subject.spiffe_id``).

A record is replayed only when it is real: an input that masking erased or rewrote (the
event's ``erased``/``masked`` pointers under ``/input``), a result rewritten the same
way, or an event without an input is never decided as if it were what the workload
sent; it is counted as not replayable, with the reason. Events for other paths are
skipped and counted; lines that are not JSON objects are counted as unreadable, with
their line numbers. Logs are read line by line: memory stays bounded by the longest
line, the listed examples (``max_listed``) and the distinct reasons and workloads.

The policy reads the time only from ``input.now``; a candidate that calls a
non-deterministic builtin such as ``time.now_ns`` is flagged (:attr:`CandidatePolicy.warnings`).
"""

from __future__ import annotations

import gzip
import io
import re
import sys
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final, Literal, TypeAlias

from attestpolicy._closing import Closing
from attestpolicy._json import loads_strict
from attestpolicy.claims import parse_timestamp
from attestpolicy.config import validate_config
from attestpolicy.decision import Decision
from attestpolicy.engine._inprocess import DEFAULT_ENGINE, InProcessEvaluator, make_evaluator
from attestpolicy.engine.base import Evaluator
from attestpolicy.errors import ConfigError
from attestpolicy.pdp import PolicyDecisionPoint
from attestpolicy.policy import DECISION_PATH, PolicySource
from attestpolicy.revocations import RevocationStore

__all__ = [
    "CHANGES",
    "MAX_LINE_BYTES",
    "Candidate",
    "CandidatePolicy",
    "Change",
    "ChangedDecision",
    "LogLine",
    "NotReplayable",
    "Outcome",
    "ReplayReport",
    "compare",
    "decide_with",
    "load_candidate",
    "normalized_path",
    "read_decision_log",
    "recorded_outcome",
    "replay",
]

Candidate: TypeAlias = PolicyDecisionPoint | Evaluator
"""What decides a replayed input: a PolicyDecisionPoint (its ``decide``, which validates
the input as a claim set) or an evaluator (its ``evaluate``, on the input as logged)."""

Change = Literal["unchanged", "allow_to_deny", "deny_to_allow", "reasons_changed", "ttl_changed"]
CHANGES: Final[tuple[Change, ...]] = (
    "allow_to_deny",
    "deny_to_allow",
    "reasons_changed",
    "ttl_changed",
)
"""The changes :func:`replay` counts (``unchanged`` aside), in report order."""

MAX_LINE_BYTES: Final = 16 * 1024 * 1024
"""Longest log line read (a longer one is unreadable: it is skipped, never held whole)."""

UNDEFINED_CODE: Final = "engine.undefined"
"""The reason code of a recorded event without a result (an undefined decision: a deny)."""

ERROR_CODE: Final = "engine.error"
"""The reason code of a recorded event whose evaluation failed (OPA's ``error``)."""

EXTRAS: Final = "attestpolicy"
"""The event member holding attestpolicy's own fields (``source``, ``evidence_failures``)."""

_NON_DETERMINISTIC: Final = re.compile(
    r"\b(time\.now_ns|http\.send|rand\.intn|uuid\.rfc4122|net\.lookup_ip_addr)\s*\("
)
_OTHER_PATHS_KEPT: Final = 100  # distinct other paths counted by name; the rest together
_OTHER: Final = "(other paths)"
_NO_WORKLOAD: Final = "(no subject.spiffe_id)"
_LIST_DEFAULT: Final = 1000


# --- reading logs -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of a decision log: its event, or why it could not be read."""

    source: str
    """The file it came from (empty for events handed over in Python)."""
    number: int
    """Its line number (1-based), or position for events handed over in Python."""
    event: Mapping[str, Any] | None = None
    error: str | None = None

    @property
    def where(self) -> str:
        """``file:line`` (or the position alone)."""
        return f"{self.source}:{self.number}" if self.source else str(self.number)


def _lines(stream: IO[bytes], max_line_bytes: int) -> Iterator[bytes | None]:
    """The stream's lines; None for a line longer than ``max_line_bytes`` (drained)."""
    while raw := stream.readline(max_line_bytes + 1):
        if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
            while (rest := stream.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
            yield None
        else:
            yield raw


def _parse_line(source: str, number: int, raw: bytes | None, limit: int) -> LogLine | None:
    if raw is None:
        return LogLine(source, number, error=f"line longer than {limit} bytes")
    if not raw.strip():
        return None
    try:
        event = loads_strict(raw)
    except ValueError as exc:
        return LogLine(source, number, error=f"not JSON: {exc}")
    if not isinstance(event, dict):
        return LogLine(source, number, error=f"not a JSON object ({type(event).__name__})")
    if not any(key in event for key in ("decision_id", "path", "query")):
        return LogLine(source, number, error="not a decision-log event (no decision_id or path)")
    return LogLine(source, number, event=event)


def read_decision_log(
    path: str | Path, *, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[LogLine]:
    """Stream a decision log (JSON lines; gzip-compressed too; ``-`` for standard input).

    Blank lines are skipped; a line that is not a decision-log event, or longer than
    ``max_line_bytes``, comes back with its ``error``; a corrupt or truncated gzip stream
    ends the file with one such line. Raises OSError when the file cannot be opened.
    """
    name = str(path)
    handle: IO[bytes] = sys.stdin.buffer if name == "-" else Path(path).open("rb")  # noqa: SIM115
    try:
        stream: IO[bytes] = handle
        magic = handle.peek(2)[:2] if isinstance(handle, io.BufferedReader) else b""
        if magic == b"\x1f\x8b":
            stream = gzip.GzipFile(fileobj=handle, mode="rb")  # type: ignore[assignment]
        number = 0
        try:
            for raw in _lines(stream, max_line_bytes):
                number += 1
                line = _parse_line(name, number, raw, max_line_bytes)
                if line is not None:
                    yield line
        except (EOFError, OSError, zlib.error) as exc:
            yield LogLine(name, number + 1, error=f"the log cannot be read further: {exc}")
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()


# --- outcomes -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """A decision as replay compares it: allow, its reason codes (sorted, unique), its TTL."""

    allow: bool
    reason_codes: tuple[str, ...] = ()
    ttl_seconds: int | None = None

    @classmethod
    def of(cls, decision: Decision) -> Outcome:
        """The outcome of a :class:`~attestpolicy.decision.Decision`."""
        return cls(
            decision.allow,
            tuple(sorted(set(decision.reason_codes))),
            decision.ttl_seconds if decision.allow else None,
        )

    def to_json_dict(self) -> dict[str, Any]:
        """``{"allow", "reasons" (the codes), "ttl_seconds"}``."""
        return {
            "allow": self.allow,
            "reasons": list(self.reason_codes),
            "ttl_seconds": self.ttl_seconds,
        }

    def __str__(self) -> str:
        if self.allow:
            return "allow" if self.ttl_seconds is None else f"allow ttl={self.ttl_seconds}"
        return "deny " + ",".join(self.reason_codes)


def recorded_outcome(result: object, *, defined: bool = True, error: bool = False) -> Outcome:
    """The outcome of a logged decision document (the policy's, or ``Decision.to_json_dict()``).

    ``defined=False`` (no ``result`` in the event) is an ``engine.undefined`` deny, and
    ``error=True`` an ``engine.error`` deny, as a client sees them. Raises ValueError when
    ``result`` is not a decision document.
    """
    if error and not defined:
        return Outcome(False, (ERROR_CODE,))
    if not defined:
        return Outcome(False, (UNDEFINED_CODE,))
    if not isinstance(result, Mapping):
        raise ValueError(f"the result is not a decision document ({type(result).__name__})")
    allow = result.get("allow")
    if not isinstance(allow, bool):
        raise ValueError("the result has no boolean allow")
    reasons = result.get("reasons", [])
    if not isinstance(reasons, list):
        raise ValueError("the result's reasons are not an array")
    codes = set()
    for reason in reasons:
        code = reason.get("code") if isinstance(reason, Mapping) else None
        if not isinstance(code, str) or not code:
            raise ValueError("a reason of the result has no code")
        codes.add(code)
    ttl = result.get("ttl_seconds")
    ttl_seconds = int(ttl) if allow and isinstance(ttl, int | float) and ttl == int(ttl) else None
    return Outcome(allow, tuple(sorted(codes)), ttl_seconds)


def compare(before: Outcome, after: Outcome) -> Change:
    """How ``after`` differs from ``before``, the most consequential change first."""
    if before.allow and not after.allow:
        return "allow_to_deny"
    if after.allow and not before.allow:
        return "deny_to_allow"
    if not after.allow:
        return "unchanged" if before.reason_codes == after.reason_codes else "reasons_changed"
    if None not in (before.ttl_seconds, after.ttl_seconds) and (
        before.ttl_seconds != after.ttl_seconds
    ):
        return "ttl_changed"
    return "unchanged"


def decide_with(candidate: Candidate, policy_input: Mapping[str, Any], at: datetime) -> Decision:
    """The candidate's decision on ``policy_input``, made at ``at`` (its ``now``); never raises.

    A PolicyDecisionPoint reads the time from the input's ``now``; an evaluator is given
    ``at`` (only to label the decision): nothing here reads the wall clock.
    """
    try:
        if isinstance(candidate, PolicyDecisionPoint):
            return candidate.decide(policy_input)
        return candidate.evaluate(dict(policy_input), evaluated_at=at)
    except Exception as exc:  # fail closed: a broken candidate denies
        return Decision.deny(ERROR_CODE, f"the candidate failed: {exc}", evaluated_at=at)


# --- examining one event ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotReplayable:
    """A recorded decision that was not replayed, and why."""

    where: str
    decision_id: str | None
    reason: str
    """``input.erased``, ``input.masked``, ``input.absent``, ``input.no_now``,
    ``result.erased``, ``result.masked``, ``result.unreadable`` or ``event.invalid``."""
    detail: str

    def to_json_dict(self) -> dict[str, Any]:
        """The fields as a JSON object."""
        return {
            "where": self.where,
            "decision_id": self.decision_id,
            "reason": self.reason,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class _Recorded:
    where: str
    decision_id: str | None
    timestamp: str | None
    workload: str
    policy_input: Mapping[str, Any]
    moment: datetime
    before: Outcome
    evidence_codes: tuple[str, ...]
    revision: str | None


def normalized_path(path: object) -> str | None:
    """A logged path as a Data API path (``data.a.b``, ``/a/b`` -> ``a/b``); None if absent."""
    if not isinstance(path, str) or not path.strip("/ "):
        return None
    text = path.strip().strip("/")
    if "/" not in text and "." in text:
        text = text.replace(".", "/")
    return text.removeprefix("data/")


def _pointers(event: Mapping[str, Any], member: str) -> list[str]:
    value = event.get(member)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{member} is not a list of JSON pointers")
    return value


def _under(pointers: list[str], root: str) -> list[str]:
    return [p for p in pointers if p == root or p.startswith(root + "/")]


def _revision(event: Mapping[str, Any]) -> str | None:
    bundles = event.get("bundles")
    if not isinstance(bundles, Mapping) or not bundles:
        return None
    revisions = sorted(
        f"{name}={info.get('revision')}" if len(bundles) > 1 else str(info.get("revision"))
        for name, info in bundles.items()
        if isinstance(info, Mapping)
    )
    return ",".join(revisions) or None


def _evidence_codes(event: Mapping[str, Any]) -> tuple[str, ...]:
    """The evidence problems an evidence decision merged into its deny (attestpolicy's
    ``decide_evidence`` adds them after the policy ran)."""
    extras = event.get(EXTRAS)
    if not isinstance(extras, Mapping) or extras.get("source") != "evidence":
        return ()
    failures = extras.get("evidence_failures")
    if not isinstance(failures, list):
        return ()
    codes = {f.get("code") for f in failures if isinstance(f, Mapping)}
    return tuple(sorted(code for code in codes if isinstance(code, str) and code))


def _examine(line: LogLine, path: str) -> _Recorded | NotReplayable | str:
    """The record to replay, why it cannot be, or the other path it was logged for."""
    event = line.event or {}
    logged_path = normalized_path(event.get("path"))
    if logged_path != path:
        return logged_path or ("(ad-hoc query)" if "query" in event else "(no path)")
    decision_id = event.get("decision_id")
    decision_id = decision_id if isinstance(decision_id, str) else None

    def refused(reason: str, detail: str) -> NotReplayable:
        return NotReplayable(line.where, decision_id, reason, detail)

    try:
        erased, masked = _pointers(event, "erased"), _pointers(event, "masked")
    except ValueError as exc:
        return refused("event.invalid", str(exc))
    for root, pointers, reason in (
        ("/input", erased, "input.erased"),
        ("/input", masked, "input.masked"),
        ("/result", erased, "result.erased"),
        ("/result", masked, "result.masked"),
    ):
        touched = _under(pointers, root)
        if touched:
            return refused(reason, "masking changed " + ", ".join(touched))
    policy_input = event.get("input")
    if not isinstance(policy_input, Mapping):
        detail = "no input was logged" if policy_input is None else "the input is not an object"
        return refused("input.absent", detail + " (the decision was made before the policy ran)")
    try:
        moment = parse_timestamp(policy_input.get("now"))
    except ValueError as exc:
        return refused("input.no_now", f"the input has no usable now: {exc}")
    try:
        before = recorded_outcome(
            event.get("result"), defined="result" in event, error="error" in event
        )
    except ValueError as exc:
        return refused("result.unreadable", str(exc))
    subject = policy_input.get("subject")
    spiffe_id = subject.get("spiffe_id") if isinstance(subject, Mapping) else None
    timestamp = event.get("timestamp")
    return _Recorded(
        where=line.where,
        decision_id=decision_id,
        timestamp=timestamp if isinstance(timestamp, str) else None,
        workload=spiffe_id if isinstance(spiffe_id, str) and spiffe_id else _NO_WORKLOAD,
        policy_input=policy_input,
        moment=moment,
        before=before,
        evidence_codes=_evidence_codes(event),
        revision=_revision(event),
    )


# --- the report ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChangedDecision:
    """One recorded decision the candidate decides differently."""

    where: str
    decision_id: str | None
    timestamp: str | None
    workload: str
    change: Change
    before: Outcome
    after: Outcome

    def to_json_dict(self) -> dict[str, Any]:
        """The fields as a JSON object."""
        return {
            "where": self.where,
            "decision_id": self.decision_id,
            "timestamp": self.timestamp,
            "workload": self.workload,
            "change": self.change,
            "before": self.before.to_json_dict(),
            "after": self.after.to_json_dict(),
        }


def _sorted_counts(counter: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda item: (-item[1], item[0])))


@dataclass(frozen=True)
class ReplayReport:
    """What :func:`replay` found. ``counts`` always covers every record; the lists hold
    the first ``max_listed`` of each kind."""

    candidate_revision: str
    events: int
    """Lines (or events) read, unreadable ones included."""
    replayed: int
    counts: Mapping[Change, int]
    by_reason: Mapping[Change, Mapping[str, int]]
    """Per change, the reason codes behind it: a new deny's codes (``allow_to_deny``), the
    recorded deny's codes (``deny_to_allow``), the codes added or dropped
    (``reasons_changed``, as ``+code`` and ``-code``)."""
    by_workload: Mapping[str, Mapping[Change, int]]
    changes: tuple[ChangedDecision, ...]
    not_replayable: Mapping[str, int]
    not_replayable_listed: tuple[NotReplayable, ...]
    other_paths: Mapping[str, int]
    unreadable: int
    unreadable_listed: tuple[LogLine, ...]
    recorded_revisions: Mapping[str, int]
    warnings: tuple[str, ...] = ()

    @property
    def widening(self) -> bool:
        """True when some recorded deny would be an allow."""
        return self.counts.get("deny_to_allow", 0) > 0

    @property
    def changed(self) -> int:
        """Recorded decisions decided differently."""
        return sum(self.counts.get(change, 0) for change in CHANGES)

    def to_json_dict(self) -> dict[str, Any]:
        """The report as JSON (``attestpolicy replay --format json``)."""
        return {
            "candidate_revision": self.candidate_revision,
            "widening": self.widening,
            "events": self.events,
            "replayed": self.replayed,
            "counts": {change: self.counts.get(change, 0) for change in ("unchanged", *CHANGES)},
            "by_reason": {change: dict(self.by_reason.get(change, {})) for change in CHANGES},
            "by_workload": {
                workload: {change: counts.get(change, 0) for change in CHANGES}
                for workload, counts in self.by_workload.items()
            },
            "changes": [change.to_json_dict() for change in self.changes],
            "changes_truncated": len(self.changes) < self.changed,
            "not_replayable": {
                "count": sum(self.not_replayable.values()),
                "by_reason": dict(self.not_replayable),
                "records": [record.to_json_dict() for record in self.not_replayable_listed],
            },
            "other_paths": {
                "count": sum(self.other_paths.values()),
                "by_path": dict(self.other_paths),
            },
            "unreadable": {
                "count": self.unreadable,
                "lines": [
                    {"where": line.where, "error": line.error} for line in self.unreadable_listed
                ],
            },
            "recorded_revisions": dict(self.recorded_revisions),
            "warnings": list(self.warnings),
        }

    def table(self) -> str:
        """The report for people (``attestpolicy replay``'s default output)."""
        out = [f"candidate {self.candidate_revision}"]
        out.extend(f"warning: {warning}" for warning in self.warnings)
        rows = [
            ("events read", self.events, ""),
            ("replayed", self.replayed, ""),
            ("unchanged", self.counts.get("unchanged", 0), ""),
            ("allow -> deny", self.counts.get("allow_to_deny", 0), ""),
            ("deny -> allow", self.counts.get("deny_to_allow", 0), "WIDENING"),
            ("deny reasons changed", self.counts.get("reasons_changed", 0), ""),
            ("allow TTL changed", self.counts.get("ttl_changed", 0), ""),
            ("not replayable", sum(self.not_replayable.values()), _inline(self.not_replayable)),
            ("other paths", sum(self.other_paths.values()), _inline(self.other_paths)),
            ("unreadable", self.unreadable, _inline_lines(self.unreadable_listed)),
        ]
        for label, count, note in rows:
            flag = note if count and (note != "WIDENING" or self.widening) else ""
            out.append(f"  {label:<22}{count:>8}  {flag}".rstrip())
        titles: tuple[tuple[Change, str], ...] = (
            ("allow_to_deny", "allow -> deny, by the candidate's reason code"),
            ("deny_to_allow", "deny -> allow, by the recorded reason code"),
            ("reasons_changed", "deny reasons changed, by code added (+) or dropped (-)"),
        )
        for kind, title in titles:
            codes = self.by_reason.get(kind, {})
            if codes:
                out.extend(["", title])
                out.extend(f"  {code:<40}{count:>8}" for code, count in codes.items())
        if self.by_workload:
            header = f"  {'workload':<56}{'a->d':>6}{'d->a':>6}{'reas':>6}{'ttl':>6}"
            out.extend(["", "by workload: allow->deny, deny->allow, reasons, TTL", header])
            for workload, counts in self.by_workload.items():
                cells = "".join(f"{counts.get(change, 0):>6}" for change in CHANGES)
                out.append(f"  {workload:<56}{cells}")
        if self.changes:
            more = self.changed - len(self.changes)
            out.extend(
                ["", "changed decisions" + (f" (first {len(self.changes)})" if more else "")]
            )
            for change in self.changes:
                out.append(
                    f"  {change.where} {change.decision_id or '-'} {change.workload}: "
                    f"{change.before} -> {change.after}"
                )
        if self.not_replayable_listed:
            out.extend(["", "not replayable"])
            out.extend(
                f"  {record.where} {record.decision_id or '-'} [{record.reason}] {record.detail}"
                for record in self.not_replayable_listed
            )
        return "\n".join(out)


def _inline(counts: Mapping[str, int], limit: int = 3) -> str:
    items = list(counts.items())
    text = ", ".join(f"{key} {count}" for key, count in items[:limit])
    return f"({text}{', ...' if len(items) > limit else ''})" if text else ""


def _inline_lines(lines: tuple[LogLine, ...], limit: int = 5) -> str:
    text = ", ".join(line.where for line in lines[:limit])
    return f"(lines {text}{', ...' if len(lines) > limit else ''})" if text else ""


class _Tally:
    """The counts while replaying (a report is made from it at the end)."""

    def __init__(self, max_listed: int) -> None:
        self.max_listed = max_listed
        self.events = 0
        self.replayed = 0
        self.counts: Counter[Change] = Counter()
        self.by_reason: dict[Change, Counter[str]] = {change: Counter() for change in CHANGES}
        self.by_workload: dict[str, Counter[Change]] = {}
        self.changes: list[ChangedDecision] = []
        self.not_replayable: Counter[str] = Counter()
        self.not_replayable_listed: list[NotReplayable] = []
        self.other_paths: Counter[str] = Counter()
        self.unreadable = 0
        self.unreadable_listed: list[LogLine] = []
        self.revisions: Counter[str] = Counter()

    def unreadable_line(self, line: LogLine) -> None:
        self.unreadable += 1
        if len(self.unreadable_listed) < self.max_listed:
            self.unreadable_listed.append(line)

    def other_path(self, path: str) -> None:
        if path in self.other_paths or len(self.other_paths) < _OTHER_PATHS_KEPT:
            self.other_paths[path] += 1
        else:
            self.other_paths[_OTHER] += 1

    def refused(self, record: NotReplayable) -> None:
        self.not_replayable[record.reason] += 1
        if len(self.not_replayable_listed) < self.max_listed:
            self.not_replayable_listed.append(record)

    def decided(self, recorded: _Recorded, after: Outcome) -> None:
        self.replayed += 1
        if recorded.revision is not None:
            self.revisions[recorded.revision] += 1
        change = compare(recorded.before, after)
        self.counts[change] += 1
        if change == "unchanged":
            return
        if change == "allow_to_deny":
            self.by_reason[change].update(after.reason_codes)
        elif change == "deny_to_allow":
            self.by_reason[change].update(recorded.before.reason_codes)
        elif change == "reasons_changed":
            before, now = set(recorded.before.reason_codes), set(after.reason_codes)
            self.by_reason[change].update([f"+{c}" for c in now - before])
            self.by_reason[change].update([f"-{c}" for c in before - now])
        self.by_workload.setdefault(recorded.workload, Counter())[change] += 1
        if len(self.changes) < self.max_listed:
            self.changes.append(
                ChangedDecision(
                    recorded.where,
                    recorded.decision_id,
                    recorded.timestamp,
                    recorded.workload,
                    change,
                    recorded.before,
                    after,
                )
            )

    def report(self, candidate_revision: str) -> ReplayReport:
        workloads = sorted(
            self.by_workload.items(), key=lambda item: (-sum(item[1].values()), item[0])
        )
        return ReplayReport(
            candidate_revision=candidate_revision,
            events=self.events,
            replayed=self.replayed,
            counts=dict(self.counts),
            by_reason={change: _sorted_counts(codes) for change, codes in self.by_reason.items()},
            by_workload={workload: dict(counts) for workload, counts in workloads},
            changes=tuple(self.changes),
            not_replayable=_sorted_counts(self.not_replayable),
            not_replayable_listed=tuple(self.not_replayable_listed),
            other_paths=_sorted_counts(self.other_paths),
            unreadable=self.unreadable,
            unreadable_listed=tuple(self.unreadable_listed),
            recorded_revisions=_sorted_counts(self.revisions),
        )


def replay(
    events: Iterable[Mapping[str, Any] | LogLine],
    candidate: Candidate,
    *,
    path: str = DECISION_PATH,
    max_listed: int = _LIST_DEFAULT,
) -> ReplayReport:
    """Decide every recorded input of ``events`` again with ``candidate``, at its logged time.

    ``events`` are decision-log events (mappings, numbered by position) or the
    :class:`LogLine` items of :func:`read_decision_log`; it is consumed once, as a stream.
    Only events for ``path`` are replayed (others are counted by path). The report lists
    at most ``max_listed`` changed decisions, not-replayable records and unreadable lines
    (its counts are always complete).
    """
    if isinstance(max_listed, bool) or not isinstance(max_listed, int) or max_listed < 0:
        raise ValueError("max_listed must be a whole number >= 0")
    wanted = normalized_path(path) or DECISION_PATH
    tally = _Tally(max_listed)
    for position, item in enumerate(events, 1):
        line = item if isinstance(item, LogLine) else LogLine("", position, event=item)
        tally.events += 1
        if line.event is None or not isinstance(line.event, Mapping):
            tally.unreadable_line(
                line if line.error else LogLine(line.source, line.number, error="not an event")
            )
            continue
        examined = _examine(line, wanted)
        if isinstance(examined, str):
            tally.other_path(examined)
        elif isinstance(examined, NotReplayable):
            tally.refused(examined)
        else:
            decision = decide_with(candidate, examined.policy_input, examined.moment)
            after = Outcome.of(decision)
            if not after.allow and examined.evidence_codes:
                codes = sorted({*after.reason_codes, *examined.evidence_codes})
                after = Outcome(False, tuple(codes))
            tally.decided(examined, after)
    return tally.report(candidate.revision)


# --- the candidate ------------------------------------------------------------------------


@dataclass(frozen=True)
class CandidatePolicy(Closing):
    """A candidate policy loaded for replay or shadow mode (:func:`load_candidate`)."""

    evaluator: InProcessEvaluator
    warnings: tuple[str, ...]
    """What may make its replayed decisions differ from what it would have decided then
    (a non-deterministic builtin that reads the wall clock or the network)."""

    @property
    def revision(self) -> str:
        """The candidate's revision (policy, configuration, revocations, engine)."""
        return self.evaluator.revision

    def close(self) -> None:
        """Release the evaluator's engine on this thread."""
        self.evaluator.close()


def _non_deterministic(source: PolicySource) -> tuple[str, ...]:
    found: dict[str, list[str]] = {}
    for name, text in sorted(source.modules.items()):
        code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
        for builtin in sorted(set(_NON_DETERMINISTIC.findall(code))):
            found.setdefault(builtin, []).append(name)
    return tuple(
        f"the candidate calls {builtin} ({', '.join(names)}): its decisions may depend on "
        "when and where they are replayed, not only on the logged input"
        for builtin, names in found.items()
    )


def load_candidate(
    *,
    bundle: Path | str | bytes | None = None,
    policy_dir: Path | str | None = None,
    config: Mapping[str, Any] | None = None,
    verification_key: bytes | str | None = None,
    engine: str = DEFAULT_ENGINE,
    revocations: RevocationStore | None = None,
) -> CandidatePolicy:
    """Load a candidate: a bundle (``.tar.gz`` path, directory or bytes) or a policy
    directory (neither: the shipped policy), and its configuration.

    The configuration is ``config`` when given (it replaces any the bundle carries at
    ``data.attestpolicy.config``), else the bundle's own; a candidate with neither is a
    ConfigError (it would deny everything). With ``verification_key`` the bundle must be
    signed by it; a signed bundle without one is refused (BundleError). ``revocations``
    adds a revocation store's runtime revocations, as a serving PDP has them.
    """
    if bundle is not None and policy_dir is not None:
        raise ValueError("give a bundle or a policy directory, not both")
    if verification_key is not None and bundle is None:
        raise ValueError("a verification key applies to a bundle")
    if bundle is not None:
        from attestpolicy.bundle import load_bundle

        loaded = load_bundle(
            bundle,
            verification_key=verification_key,
            require_signature=verification_key is not None,
        )
        source = loaded.to_policy_source()
    else:
        source = PolicySource.from_directory(policy_dir)
    if config is not None:
        checked = validate_config(config)
    else:
        carried = source.data.get("attestpolicy")
        carried = carried.get("config") if isinstance(carried, Mapping) else None
        if carried is None:
            raise ConfigError(
                "the candidate has no configuration (data.attestpolicy.config): pass one, "
                "or build the bundle with its configuration"
            )
        checked = validate_config(carried)
    evaluator = make_evaluator(engine, source, checked, revocations=revocations)
    return CandidatePolicy(evaluator, _non_deterministic(source))
