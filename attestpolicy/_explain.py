"""Why a decision came out as it did (``attestpolicy decide --explain``).

Built from the policy itself, never from a table kept beside it
(:mod:`attestpolicy._rego_index` reads the rules, their METADATA and what they read):

- each reason of a deny is matched to the rule that emitted it by evaluating, in the
  engine that decided, a copy of every candidate rule's body that also returns the
  value of each expression in it; the explanation names the rule (file:line, METADATA
  title), the values of its body's expressions and the input and configuration
  paths it reads, with their values;
- for an allow, every check (every rule that can emit a reason) is shown with the first
  statement of its body that did not hold and the values there, and the TTL term chain.

A reason no policy rule emitted (a claim set refused before the policy ran, an engine
failure) is said to come from outside the policy. Explaining never changes a decision.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from attestpolicy._output import DECISION_HEADER, Format, decision_row, render_decision, table
from attestpolicy._rego_index import (
    ANY,
    IndexBy,
    Node,
    Path,
    PathResolver,
    PolicyIndex,
    ReasonRule,
    UnsupportedRego,
    bound_after,
    free_vars,
    render,
    render_path,
    render_statement,
    statement_terms,
)
from attestpolicy.claims import parse_timestamp
from attestpolicy.decision import Decision, TtlTerm
from attestpolicy.engine._inprocess import load_state, make_evaluator
from attestpolicy.errors import AttestPolicyError
from attestpolicy.policy import PolicySource

if TYPE_CHECKING:
    from attestpolicy.observe import DecisionRecord
    from attestpolicy.pdp import PolicyDecisionPoint

__all__ = [
    "Check",
    "ExplainedReason",
    "Explanation",
    "Read",
    "TermStep",
    "decide_and_explain",
    "explain",
    "render_explanation",
]

_FIRED: Final = "__explain_fired_"
_STEPS: Final = "__explain_steps_"
_VALUE: Final = "__explain_value"
_MODULE_PREFIX: Final = "__explain__/"
_MAX_BINDINGS: Final = 5
OUTSIDE_POLICY: Final = (
    "not emitted by a policy rule: attestpolicy added it outside the policy (a claim set "
    "refused before evaluation, an engine or evaluator failure)"
)


# --- what an explanation holds --------------------------------------------------------


@dataclass(frozen=True)
class Value:
    """An expression of a rule body and its value (``defined`` False: undefined)."""

    expression: str
    defined: bool
    value: Any = None

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        out: dict[str, Any] = {"expression": self.expression, "defined": self.defined}
        if self.defined:
            out["value"] = self.value
        return out


@dataclass(frozen=True)
class Read:
    """An input or data path a rule reads, and its value in this decision."""

    path: str
    present: bool
    value: Any = None

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        out: dict[str, Any] = {"path": self.path, "present": self.present}
        if self.present:
            out["value"] = self.value
        return out


@dataclass(frozen=True)
class RuleRef:
    """Where a rule is and what its METADATA calls it."""

    file: str
    line: int
    title: str | None
    titled_at: str | None
    """``file:line`` of the METADATA the title comes from."""

    @classmethod
    def of(cls, reason_rule: ReasonRule) -> RuleRef:
        """The reference for ``reason_rule``."""
        annotation = reason_rule.titled_by
        return cls(
            file=reason_rule.rule.file,
            line=reason_rule.rule.line,
            title=reason_rule.title,
            titled_at=f"{annotation.file}:{annotation.line}" if annotation else None,
        )

    @property
    def location(self) -> str:
        """``file:line``."""
        return f"{self.file}:{self.line}"

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "file": self.file,
            "line": self.line,
            "title": self.title,
            "titled_at": self.titled_at,
        }


@dataclass(frozen=True)
class Statement:
    """One statement of a rule body, with the values of its expressions."""

    line: int
    text: str
    values: tuple[Value, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "line": self.line,
            "text": self.text,
            "values": [value.to_json() for value in self.values],
        }


@dataclass(frozen=True)
class ExplainedReason:
    """One reason of a deny and the rule that emitted it (None: outside the policy)."""

    code: str
    message: str
    rule: RuleRef | None
    body: tuple[Statement, ...] = ()
    reads: tuple[Read, ...] = ()
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "code": self.code,
            "message": self.message,
            "rule": self.rule.to_json() if self.rule else None,
            "body": [statement.to_json() for statement in self.body],
            "reads": [read.to_json() for read in self.reads],
            "note": self.note,
        }


@dataclass(frozen=True)
class Check:
    """One check of an allow: a rule that can emit a reason, and why it did not."""

    codes: tuple[str, ...]
    rule: RuleRef
    passed: bool
    stopped_at: Statement | None
    """The first statement of its body that held for no binding (None: no body, or
    the values could not be computed: see ``note``)."""
    bindings: int = 0
    """How many bindings of the statements before it reached it."""
    reads: tuple[Read, ...] = ()
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "codes": list(self.codes),
            "rule": self.rule.to_json(),
            "passed": self.passed,
            "stopped_at": self.stopped_at.to_json() if self.stopped_at else None,
            "bindings": self.bindings,
            "reads": [read.to_json() for read in self.reads],
            "note": self.note,
        }


@dataclass(frozen=True)
class TermStep:
    """One TTL term of an allow: its seconds at the decision's ``now``."""

    name: str
    seconds: int
    until: str | None
    binds: bool
    rule: str | None
    """``file:line`` of the rule that adds the term, when one rule names it."""

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "name": self.name,
            "seconds": self.seconds,
            "until": self.until,
            "binds": self.binds,
            "rule": self.rule,
        }


@dataclass(frozen=True)
class Explanation:
    """Why ``decision`` is what it is."""

    decision: Decision
    engine: str
    reasons: tuple[ExplainedReason, ...] = ()
    checks: tuple[Check, ...] = ()
    ttl_terms: tuple[TermStep, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """``{"decision": ..., "explanation": ...}``."""
        decision = self.decision.to_json_dict()
        return {
            "decision": decision,
            "explanation": {
                "engine": self.engine,
                "reasons": [reason.to_json() for reason in self.reasons],
                "checks": [check.to_json() for check in self.checks],
                "ttl": {
                    "ttl_seconds": self.decision.ttl_seconds,
                    "bound_by": self.decision.ttl_bound_by,
                    "valid_until": decision["valid_until"],
                    "terms": [term.to_json() for term in self.ttl_terms],
                }
                if self.decision.allow
                else None,
                "notes": list(self.notes),
            },
        }


# --- instrumented copies of the rules ----------------------------------------------------


@dataclass(frozen=True)
class _Instrumented:
    """The generated rules of one reason rule and how to read their values."""

    fired_terms: tuple[str, ...]
    step_terms: tuple[tuple[str, ...], ...]
    """Per statement: the expressions shown when evaluation stopped there."""


class _Instrumentation:
    """A copy of the policy with, for every reason rule, a rule giving the reasons it
    emits with the values of its body's expressions (``__explain_fired_N``) and one
    giving, statement by statement, whether it held (``__explain_steps_N``); without
    the values when ``with_values`` is false (a fallback when they do not load)."""

    def __init__(self, index: PolicyIndex, *, with_values: bool = True) -> None:
        self.index = index
        self._with_values = with_values
        self.rules: dict[int, _Instrumented] = {}
        self.errors: dict[int, str] = {}
        self.modules: dict[str, str] = {}
        texts: dict[str, list[str]] = {}
        for number, reason_rule in enumerate(index.reason_rules):
            rule = reason_rule.rule
            if rule.kind != "set":
                continue
            try:
                text, instrumented = self._generate(number, reason_rule)
            except UnsupportedRego as exc:
                self.errors[number] = str(exc)
                continue
            self.rules[number] = instrumented
            texts.setdefault(rule.file, []).append(text)
        for file, rules in texts.items():
            package = ".".join(self.index.package(file))
            header = [f"package {package}", "", "import rego.v1"]
            for name, ref in self.index.imports(file).items():
                header.append(f"import {render(ref)} as {name}")
            self.modules[_MODULE_PREFIX + file] = "\n".join([*header, "", *rules, ""])

    def _generate(self, number: int, reason_rule: ReasonRule) -> tuple[str, _Instrumented]:
        rule = reason_rule.rule
        names = self.index.names(rule.file)
        statements = rule.bodies[0].statements if rule.bodies else ()
        texts = [render_statement(statement, rule.source) for statement in statements]
        bound: frozenset[str] = frozenset()
        step_rules = []
        step_terms = []
        for step, statement in enumerate(statements):
            terms = self._showable(statement_terms(statement), names, bound, rule.source)
            step_terms.append(tuple(terms))
            prefix = texts[:step] or ["true"]
            held = (
                "true" if "SomeVars" in statement["literal"] else f"count([1 | {texts[step]}]) > 0"
            )
            step_rules.append(
                f'{_STEPS}{number} contains {{"step": {step}, "held": {held}, '
                f'"values": {_values(terms)}}} if {{\n\t' + "\n\t".join(prefix) + "\n}"
            )
            bound = bound_after(statement, names, bound)
        fired_terms = self._showable(
            [term for statement in statements for term in statement_terms(statement)],
            names,
            bound,
            rule.source,
        )
        key = render(reason_rule.reason, rule.source)
        fired = (
            f'{_FIRED}{number} contains {{"reason": {key}, "values": {_values(fired_terms)}}} '
            "if {\n\t" + "\n\t".join(texts or ["true"]) + "\n}"
        )
        text = "\n\n".join([fired, *step_rules])
        return text, _Instrumented(tuple(fired_terms), tuple(step_terms))

    def _showable(
        self, terms: Iterable[Node], names: frozenset[str], bound: frozenset[str], source: bytes
    ) -> list[str]:
        """The distinct texts of ``terms`` that can be evaluated with ``bound`` variables."""
        out: list[str] = []
        for term in terms if self._with_values else ():
            local = free_vars(term, names)
            if local is None or not local <= bound:
                continue
            text = render(term, source)
            if text not in out:
                out.append(text)
        return out


def _values(terms: Sequence[str]) -> str:
    """Rego for the values of ``terms``: each an array of zero (undefined) or one value."""
    return "[" + ", ".join(f"[{_VALUE} | {_VALUE} := {term}]" for term in terms) + "]"


# --- evaluation ---------------------------------------------------------------------------


class _Evaluation:
    """The instrumented policy in one engine, evaluated rule by rule on one input."""

    def __init__(
        self,
        instrumentation: _Instrumentation,
        source: PolicySource,
        config: Mapping[str, Any] | None,
        engine: str,
        policy_input: Mapping[str, Any],
    ) -> None:
        modules = {**source.modules, **instrumentation.modules}
        copy = PolicySource(modules=modules, revision=source.revision, data=source.data)
        self._evaluator = make_evaluator(engine, copy, config)
        self._input = dict(policy_input)
        self._instrumentation = instrumentation
        self.engine_version = self._evaluator.engine_version

    def close(self) -> None:
        """Free this thread's engine."""
        self._evaluator.close()

    def rows(self, prefix: str, number: int) -> list[Mapping[str, Any]]:
        """The entries of ``<prefix><number>`` (EvaluatorError when the engine fails)."""
        rule = self._instrumentation.index.reason_rules[number].rule
        path = "/".join([*rule.package, f"{prefix}{number}"])
        defined, value = self._evaluator.evaluate_path(path, self._input)
        if not defined or not isinstance(value, list):
            return []
        return [row for row in value if isinstance(row, Mapping)]


def _to_values(terms: Sequence[str], raw: object) -> tuple[Value, ...]:
    out = []
    cells = raw if isinstance(raw, list) else []
    for term, cell in zip(terms, cells, strict=False):
        defined = isinstance(cell, list) and len(cell) == 1
        out.append(Value(term, defined, cell[0] if defined else None))
    return tuple(out)


# --- reads ----------------------------------------------------------------------------------


def _reads(
    index: PolicyIndex, reason_rule: ReasonRule, documents: Mapping[str, Any]
) -> tuple[Read, ...]:
    """The input and data paths a reason rule's body and reason read, with values."""
    rule = reason_rule.rule
    resolver = PathResolver(index, rule.file)
    statements = rule.bodies[0].statements if rule.bodies else ()
    env = resolver.body_env(statements)
    paths: set[Path] = set(resolver.paths(reason_rule.reason, env))
    for statement in statements:
        for term in statement_terms(statement):
            paths |= resolver.paths(term, env)
    reads = [_read(path, documents) for path in paths]
    return tuple(sorted(reads, key=lambda read: (not read.path.startswith("input"), read.path)))


def _read(path: Path, documents: Mapping[str, Any]) -> Read:
    found = _lookup(documents, path)
    if _is_wildcard(path):
        return Read(render_path(path), bool(found), found)
    return Read(render_path(path), bool(found), found[0] if found else None)


def _is_wildcard(path: Path) -> bool:
    """Whether ``path`` may name several values (``[_]``, or an index that does)."""
    return any(
        segment is ANY or (isinstance(segment, IndexBy) and _is_wildcard(segment.path))
        for segment in path
    )


def _lookup(documents: Mapping[str, Any], path: Path) -> list[Any]:
    """The values at ``path`` (none when absent; an index that is not a key matches none)."""
    root = str(path[0])
    values: list[Any] = [documents[root]] if root in documents else []
    for segment in path[1:]:
        keys: list[Any] = (
            _lookup(documents, segment.path) if isinstance(segment, IndexBy) else [segment]
        )
        step: list[Any] = []
        for value in values:
            if segment is ANY:
                if isinstance(value, Mapping):
                    step.extend(value.values())
                elif isinstance(value, list):
                    step.extend(value)
                continue
            for key in keys:
                if isinstance(value, Mapping) and isinstance(key, str) and key in value:
                    step.append(value[key])
                elif isinstance(value, list):
                    position = _position(key, len(value))
                    if position is not None:
                        step.append(value[position])
        values = step
    return values


def _position(key: object, length: int) -> int | None:
    if isinstance(key, str) and key.isdigit():
        key = int(key)
    if isinstance(key, int) and not isinstance(key, bool) and 0 <= key < length:
        return key
    return None


# --- explaining -------------------------------------------------------------------------------


def explain(
    decision: Decision,
    policy_input: Mapping[str, Any] | None,
    *,
    source: PolicySource,
    config: Mapping[str, Any] | None,
    engine: str,
    index: PolicyIndex | None = None,
) -> Explanation:
    """Explain ``decision``, made on ``policy_input`` (None: refused before evaluation)
    with the policy ``source`` and ``config`` in ``engine`` (``regorus`` or ``opa``).

    Raises :class:`~attestpolicy.errors.PolicyError` when the policy cannot be parsed;
    a failure to evaluate the explanation is a note, never an error.
    """
    index = index or PolicyIndex.from_modules(source.modules)
    instrumentation = _Instrumentation(index)
    state = load_state(source, config, "explain")
    documents = {"input": dict(policy_input or {}), "data": state.document()}
    notes = [
        f"{index.reason_rules[number].rule.location}: not evaluated ({error})"
        for number, error in instrumentation.errors.items()
    ]
    evaluation = None
    engine_version = engine
    if policy_input is not None:
        try:
            evaluation = _Evaluation(instrumentation, source, config, engine, policy_input)
        except AttestPolicyError as exc:  # the values do not load: try the bodies alone
            notes.append(f"the values of the rules' expressions could not be evaluated: {exc}")
            instrumentation = _Instrumentation(index, with_values=False)
            try:
                evaluation = _Evaluation(instrumentation, source, config, engine, policy_input)
            except AttestPolicyError as again:
                notes.append(f"the rules could not be evaluated: {again}")
        if evaluation is not None:
            engine_version = evaluation.engine_version
    try:
        if decision.allow:
            checks = tuple(_checks(instrumentation, evaluation, documents))
            return Explanation(
                decision=decision,
                engine=engine_version,
                checks=checks,
                ttl_terms=_ttl_chain(index, decision, policy_input),
                notes=tuple(notes),
            )
        reasons = tuple(
            _explain_reason(instrumentation, evaluation, documents, reason.code, reason.message)
            for reason in decision.reasons
        )
        return Explanation(
            decision=decision, engine=engine_version, reasons=reasons, notes=tuple(notes)
        )
    finally:
        if evaluation is not None:
            evaluation.close()


def decide_and_explain(
    pdp: PolicyDecisionPoint,
    claims: str | bytes | Mapping[str, Any],
    *,
    now: datetime | None,
    source: PolicySource,
    config: Mapping[str, Any] | None,
    engine: str,
) -> Explanation:
    """Decide ``claims`` with ``pdp`` (in-process, on ``source``, ``config`` and
    ``engine``) and explain the decision on the very input it was made on."""
    inputs: list[Mapping[str, Any] | None] = []

    class _Input:
        def on_decision(self, record: DecisionRecord) -> None:
            inputs.append(record.policy_input())

    observer = _Input()
    pdp.add_observer(observer)
    try:
        decision = pdp.decide(claims, now=now)
    finally:
        pdp.remove_observer(observer)
    policy_input = inputs[0] if inputs else None
    return explain(decision, policy_input, source=source, config=config, engine=engine)


def _explain_reason(
    instrumentation: _Instrumentation,
    evaluation: _Evaluation | None,
    documents: Mapping[str, Any],
    code: str,
    message: str,
) -> ExplainedReason:
    index = instrumentation.index
    wanted = {"code": code, "message": message}
    notes = []
    for number, reason_rule in enumerate(index.reason_rules):
        if reason_rule.codes and code not in reason_rule.codes:
            continue
        reads = _reads(index, reason_rule, documents) if evaluation is not None else ()
        if reason_rule.literal == (code, message) and reason_rule.rule.kind == "default":
            return ExplainedReason(code, message, RuleRef.of(reason_rule), reads=reads)
        instrumented = instrumentation.rules.get(number)
        if instrumented is None or evaluation is None:
            continue
        try:
            rows = evaluation.rows(_FIRED, number)
        except AttestPolicyError as exc:
            notes.append(f"{reason_rule.rule.location}: not evaluated ({exc})")
            continue
        matches = [row for row in rows if row.get("reason") == wanted]
        if matches:
            values = _to_values(instrumented.fired_terms, matches[0].get("values"))
            return ExplainedReason(
                code,
                message,
                RuleRef.of(reason_rule),
                body=_body(reason_rule, values),
                reads=reads,
                note=f"{len(matches)} bindings emit it; the values of the first"
                if len(matches) > 1
                else None,
            )
    return ExplainedReason(code, message, None, note="; ".join([OUTSIDE_POLICY, *notes]))


def _body(reason_rule: ReasonRule, values: Sequence[Value]) -> tuple[Statement, ...]:
    """The statements of the rule's body, each with the values of its own expressions."""
    rule = reason_rule.rule
    by_text = {value.expression: value for value in values}
    out = []
    for statement in rule.bodies[0].statements if rule.bodies else ():
        own = [
            by_text[text]
            for text in dict.fromkeys(
                render(term, rule.source) for term in statement_terms(statement)
            )
            if text in by_text
        ]
        out.append(
            Statement(
                line=int(statement["span"]["line"]),
                text=render_statement(statement, rule.source),
                values=tuple(own),
            )
        )
    return tuple(out)


def _checks(
    instrumentation: _Instrumentation, evaluation: _Evaluation | None, documents: Mapping[str, Any]
) -> Iterable[Check]:
    index = instrumentation.index
    for number, reason_rule in enumerate(index.reason_rules):
        rule = reason_rule.rule
        reads = _reads(index, reason_rule, documents) if evaluation is not None else ()
        reference = RuleRef.of(reason_rule)
        instrumented = instrumentation.rules.get(number)
        if rule.kind == "default":
            yield Check(
                reason_rule.codes,
                reference,
                passed=True,
                stopped_at=None,
                reads=reads,
                note="a default: it applies only when no other definition does",
            )
            continue
        if instrumented is None or evaluation is None:
            note = instrumentation.errors.get(number, "not evaluated")
            yield Check(reason_rule.codes, reference, True, None, reads=reads, note=note)
            continue
        try:
            rows = evaluation.rows(_STEPS, number)
        except AttestPolicyError as exc:
            yield Check(reason_rule.codes, reference, True, None, reads=reads, note=str(exc))
            continue
        yield _check(reason_rule, instrumented, rows, reads)


def _check(
    reason_rule: ReasonRule,
    instrumented: _Instrumented,
    rows: Sequence[Mapping[str, Any]],
    reads: tuple[Read, ...],
) -> Check:
    rule = reason_rule.rule
    statements = rule.bodies[0].statements if rule.bodies else ()
    reference = RuleRef.of(reason_rule)
    steps = [row for row in rows if isinstance(row.get("step"), int)]
    if not statements or not steps:
        return Check(reason_rule.codes, reference, False, None, reads=reads, note="no body")
    deepest = max(int(row["step"]) for row in steps)
    at_step = [row for row in steps if row["step"] == deepest]
    fired = deepest == len(statements) - 1 and any(row.get("held") is True for row in at_step)
    statement = statements[deepest]
    terms = instrumented.step_terms[deepest]
    values = _to_values(terms, at_step[0].get("values"))
    return Check(
        reason_rule.codes,
        reference,
        passed=not fired,
        stopped_at=Statement(
            line=int(statement["span"]["line"]),
            text=render_statement(statement, rule.source),
            values=values,
        ),
        bindings=len(at_step),
        reads=reads,
        note="it emits a reason that is not in this decision" if fired else None,
    )


def _ttl_chain(
    index: PolicyIndex, decision: Decision, policy_input: Mapping[str, Any] | None
) -> tuple[TermStep, ...]:
    terms: Sequence[TtlTerm] = decision.ttl_terms or ()
    now_text = (policy_input or {}).get("now")
    now = parse_timestamp(now_text) if isinstance(now_text, str) else decision.evaluated_at
    out = []
    for term in terms:
        if term.until is not None:
            delta = term.until - now
            seconds = (delta.days * 86_400 + delta.seconds) if delta.days >= 0 else 0
            until = decision.to_json_dict()["ttl_terms"][terms.index(term)]["until"]
        else:
            seconds, until = int(term.seconds or 0), None
        out.append(
            TermStep(
                name=term.name,
                seconds=seconds,
                until=until,
                binds=term.name == decision.ttl_bound_by,
                rule=_term_rule(index, term.name),
            )
        )
    return tuple(out)


def _term_rule(index: PolicyIndex, name: str) -> str | None:
    """The one rule whose head names the TTL term ``name`` (a string in its key)."""
    found = [
        rule.location
        for rule in index.rules
        if rule.kind == "set" and _names_string(rule.head["key"], name)
    ]
    return found[0] if len(found) == 1 else None


def _names_string(node: Node, text: str) -> bool:
    ((kind, fields),) = node.items()
    if kind == "Array":
        return any(_names_string(item, text) for item in fields["items"])
    return kind == "String" and fields["value"] == text


# --- rendering --------------------------------------------------------------------------------

_MAX_VALUE_CHARS: Final = 100


def show(value: Any, limit: int = _MAX_VALUE_CHARS) -> str:
    """A value as compact JSON, cut at ``limit`` characters."""
    text = json.dumps(value, separators=(", ", ": "), ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_explanation(explanation: Explanation, fmt: Format) -> str:
    """The explanation as JSON (``{"decision", "explanation"}``), pretty text or tables."""
    if fmt == "json":
        return json.dumps(explanation.to_json(), indent=2)
    if fmt == "table":
        return _tables(explanation)
    return _pretty(explanation)


def _pretty(explanation: Explanation) -> str:
    decision = explanation.decision
    lines = [render_decision(decision, "pretty").splitlines()[0], ""]
    for reason in explanation.reasons:
        lines.append(f"{reason.code}: {reason.message}")
        if reason.rule is None:
            lines.append(f"  rule   none: {reason.note}")
        else:
            lines.append(f"  rule   {_rule_text(reason.rule)}")
            for index, statement in enumerate(reason.body):
                label = "body" if index == 0 else ""
                lines.append(f"  {label:<5}  {statement.line}: {statement.text}")
                lines.extend(f"           {_value_text(value)}" for value in statement.values)
            if reason.note:
                lines.append(f"  note   {reason.note}")
        lines.extend(_reads_text(reason.reads))
        lines.append("")
    if decision.allow:
        lines.append("TTL: the shortest term binds; on a tie, the first")
        lines.extend(f"  {_term_text(term)}" for term in explanation.ttl_terms)
        lines.append("")
        passed = [check for check in explanation.checks if check.passed]
        lines.append(f"checks passed ({len(passed)} of {len(explanation.checks)})")
        for check in explanation.checks:
            lines.append(f"  {', '.join(check.codes)}: {_rule_text(check.rule)}")
            if check.stopped_at is not None:
                at = check.stopped_at
                several = f" (for none of {check.bindings} bindings)" if check.bindings > 1 else ""
                verdict = f"does not hold{several}" if check.passed else "holds: the rule fired"
                lines.append(f"    {at.line}: {at.text}  {verdict}")
                lines.extend(f"      {_value_text(value)}" for value in at.values)
            if check.note:
                lines.append(f"    note: {check.note}")
        lines.append("")
    lines.extend(f"note: {note}" for note in explanation.notes)
    lines.append(render_decision(decision, "pretty").splitlines()[-1])
    lines.append(f"explained with {explanation.engine}")
    return "\n".join(lines)


def _rule_text(rule: RuleRef) -> str:
    return f"{rule.title or '(no METADATA title)'}, {rule.location}"


def _value_text(value: Value) -> str:
    if not value.defined:
        return f"{value.expression} is undefined"
    return f"{value.expression} = {show(value.value)}"


def _reads_text(reads: Sequence[Read]) -> list[str]:
    lines = []
    for index, read in enumerate(reads):
        label = "reads" if index == 0 else ""
        shown = show(read.value) if read.present else "(absent)"
        lines.append(f"  {label:<5}  {read.path} = {shown}")
    return lines


def _term_text(term: TermStep) -> str:
    until = f"  until {term.until}" if term.until else ""
    binds = "  <- binds" if term.binds else ""
    where = f"  ({term.rule})" if term.rule else ""
    return f"{term.name:<16} {term.seconds:>10} s{until}{binds}{where}"


def _tables(explanation: Explanation) -> str:
    decision = explanation.decision
    parts = [table(DECISION_HEADER, [decision_row(decision)])]
    if explanation.reasons:
        rows = [
            [
                reason.code,
                reason.rule.title or "-" if reason.rule else "(outside the policy)",
                reason.rule.location if reason.rule else "-",
                reason.message,
            ]
            for reason in explanation.reasons
        ]
        parts.append(table(("reason", "rule", "location", "message"), rows))
    if decision.allow:
        terms = [
            [term.name, str(term.seconds), term.until or "-", "yes" if term.binds else "-"]
            for term in explanation.ttl_terms
        ]
        parts.append(table(("ttl term", "seconds", "until", "binds"), terms))
        checks = [
            [
                ", ".join(check.codes),
                "passed" if check.passed else "FIRED",
                check.rule.location,
                f"{check.stopped_at.line}: {check.stopped_at.text}" if check.stopped_at else "-",
            ]
            for check in explanation.checks
        ]
        parts.append(table(("check", "result", "location", "stopped at"), checks))
    return "\n\n".join(parts)
