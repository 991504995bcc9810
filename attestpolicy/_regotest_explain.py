"""Why a Rego test is undefined: the statement of its body that does not hold, with values.

Neither engine explains a failure in values (regorus has no trace; OPA's trace shows
compiler-rewritten expressions), so the body is replayed in the engine that failed, one
prefix at a time. For a test rule whose body is ``s1; ...; sn`` a module in the test's
package (with the test file's imports) adds, for every k, a rule holding the local
variables bound after ``s1; ...; sk`` (one object per solution), and for every term of
every statement (variables, references, calls, arithmetic) a rule holding its values
after the statements before it, under the statement's ``with`` modifiers. The first
prefix without a solution names the failing statement; its terms' values (none:
undefined) and the variables bound before it are the explanation.

When a term of the failing statement is an undefined or false rule of the loaded policy
(``allow`` in ``allow with input as {...}``), that rule's definitions are replayed the
same way, each statement under the failing statement's ``with`` modifiers: the
explanation then shows the policy statement that does not hold, with its values. This
goes one rule deep.

Everything is evaluated by the engine itself: no value here is computed in Python.
Statements and terms are rendered from regorus's syntax tree
(:mod:`attestpolicy._rego_index`). When a replay module does not load (a construct that
cannot be replayed), the terms are dropped; failing that, the explanation says why it
has no values. It never guesses.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any, Final

from attestpolicy._rego_index import (
    PolicyIndex,
    Rule,
    UnsupportedRego,
    bound_after,
    free_vars,
    render,
    render_statement,
    statement_terms,
)

__all__ = [
    "FailedStatement",
    "FailureExplanation",
    "Replay",
    "TermValue",
    "explain_undefined",
    "index_modules",
]

_PREFIX: Final = "__attestpolicy_explain"
_VALUE: Final = "__attestpolicy_value"
_MODULE_FILE: Final = "__attestpolicy_explain__.rego"
_MAX_SHOWN: Final = 3
_MAX_VALUE_CHARS: Final = 300
_MAX_CAUSES: Final = 2
"""How many undefined or false rules of a failing statement are themselves explained."""

Values = Callable[[str], list[Any]]
Replay = Callable[[str, str], AbstractContextManager[Values]]
"""``replay(module_file, module_text)``: a context in which the test's engine, with that
module added, answers ``values(rule_path)`` with the members of a set rule (raises when
the module does not load or evaluation fails)."""


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def _several(values: Sequence[str]) -> str:
    shown = ", ".join(values[:_MAX_SHOWN])
    more = len(values) - _MAX_SHOWN
    return f"one of {shown}" + (f" (and {more} more)" if more > 0 else "")


@dataclass(frozen=True)
class TermValue:
    """A term of the failing statement and its values there (none: undefined).

    ``cause`` explains a term that is an undefined or false rule of the policy.
    """

    text: str
    values: tuple[Any, ...]
    cause: FailureExplanation | None = None

    def describe(self) -> str:
        """``text: value``, ``text: undefined`` or ``text: one of a, b, c``."""
        if not self.values:
            return f"{self.text}: undefined"
        if len(self.values) == 1:
            return f"{self.text}: {_short(self.values[0])}"
        return f"{self.text}: {_several([_short(value) for value in self.values])}"

    def to_json(self) -> dict[str, Any]:
        """The term, whether it is defined, its values, and its cause if explained."""
        out: dict[str, Any] = {
            "text": self.text,
            "defined": bool(self.values),
            "values": list(self.values),
        }
        if self.cause is not None:
            out["cause"] = self.cause.to_json()
        return out


@dataclass(frozen=True)
class FailedStatement:
    """The first statement of a rule body that does not hold."""

    file: str
    line: int
    text: str
    terms: tuple[TermValue, ...]
    bindings: tuple[Mapping[str, Any], ...]
    """The local variables bound before it: one mapping per solution (none for the
    first statement)."""

    def lines(self) -> list[str]:
        """The statement, its terms' values (and their causes), and the other variables
        bound before it."""
        out = [f"{self.file}:{self.line}: {self.text}"]
        shown = {term.text for term in self.terms}
        solutions = [
            ", ".join(
                f"{name} = {_short(value)}" for name, value in binding.items() if name not in shown
            )
            for binding in self.bindings
        ]
        solutions = [solution for solution in dict.fromkeys(solutions) if solution]
        if len(solutions) == 1:
            out.append(f"  where {solutions[0]}")
        elif solutions:
            out.append(f"  where {_several([f'({text})' for text in solutions])}")
        for term in self.terms:
            out.append(f"  {term.describe()}")
            if term.cause is not None:
                out.extend(f"    {row}" for row in term.cause.lines())
        return out

    def to_json(self) -> dict[str, Any]:
        """The statement, its location, its terms' values and the bindings before it."""
        return {
            "location": {"file": self.file, "row": self.line},
            "expression": self.text,
            "terms": [term.to_json() for term in self.terms],
            "bindings": [dict(binding) for binding in self.bindings],
        }


@dataclass(frozen=True)
class FailureExplanation:
    """Why a rule was undefined: the failing statement of each definition, and notes."""

    statements: tuple[FailedStatement, ...] = ()
    notes: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """Text lines for a report."""
        out: list[str] = []
        for statement in self.statements:
            out.extend(statement.lines())
        out.extend(self.notes)
        return out

    def to_json(self) -> dict[str, Any]:
        """The explanation as JSON."""
        return {
            "statements": [statement.to_json() for statement in self.statements],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class _Modifier:
    """A statement's ``with`` modifier: its target, its value as Rego, and the rule that
    evaluates the value when it reads local variables of the body."""

    target: str
    value: str
    rule: str | None


@dataclass(frozen=True)
class _Plan:
    """One definition's replay: its statements, the step rules and the term rules."""

    rule: Rule
    outer: str
    """The ``with`` modifiers every statement is replayed under."""
    statements: tuple[Any, ...]
    texts: tuple[str, ...]
    """Each statement as Rego."""
    withs: tuple[tuple[_Modifier, ...], ...]
    """Each statement's own ``with`` modifiers."""
    steps: tuple[str, ...]
    """Rule name of each prefix (index k: statements 0..k)."""
    bound: tuple[tuple[str, ...], ...]
    """The local variables bound after each prefix, sorted."""
    terms: tuple[tuple[tuple[str, Any, str], ...], ...]
    """Per statement: (text, node, rule name) of each term that can be evaluated alone."""

    def modifiers(self, position: int) -> str:
        """The modifiers a term of the statement at ``position`` is evaluated under."""
        own = "".join(f" with {item.target} as {item.value}" for item in self.withs[position])
        return own + self.outer

    def rules(self, with_terms: bool) -> str:
        """The step rules, and with ``with_terms`` the term and modifier-value rules."""
        replayed = [text + self.outer for text in self.texts]
        out: list[str] = []
        for k, step in enumerate(self.steps):
            value = "{" + ", ".join(f"{json.dumps(var)}: {var}" for var in self.bound[k]) + "}"
            body = "\n\t".join(replayed[: k + 1])
            out.append(f"\n{step} contains {value} if {{\n\t{body}\n}}\n")
            if not with_terms:
                continue
            before = "".join(f"\t{text}\n" for text in replayed[:k])
            for text, _node, rule_name in self.terms[k]:
                out.append(_value_rule(rule_name, before, text + self.modifiers(k)))
            for item in self.withs[k]:
                if item.rule is not None:  # evaluated outside the modifiers, as Rego does
                    out.append(_value_rule(item.rule, before, item.value))
        return "".join(out)

    def cause_modifiers(self, position: int, values: Values, prefix: str) -> str | None:
        """The modifiers to replay a rule the statement at ``position`` reads under: its
        own, with values that read local variables replaced by their one value (None when
        one has several), then the outer ones."""
        parts = []
        for item in self.withs[position]:
            value = item.value
            if item.rule is not None:
                solutions = values(prefix + item.rule)
                if len(solutions) != 1:
                    return None
                value = json.dumps(solutions[0])
            parts.append(f" with {item.target} as {value}")
        return "".join(parts) + self.outer


def _value_rule(name: str, before: str, expression: str) -> str:
    return f"\n{name} contains {_VALUE} if {{\n{before}\t{_VALUE} := {expression}\n}}\n"


def index_modules(sources: Mapping[str, str]) -> PolicyIndex | FailureExplanation:
    """The index :func:`explain_undefined` needs (build it once per set of modules), or
    the explanation every test gets when the modules cannot be indexed."""
    try:
        return PolicyIndex.from_modules(sources)
    except Exception as exc:  # PolicyError, UnsupportedRego: the index cannot be built
        return FailureExplanation(notes=(f"no values: {_first_line(exc)}",))


def explain_undefined(
    index: PolicyIndex, file: str, test_path: str, replay: Replay
) -> FailureExplanation:
    """Explain why the test at ``test_path`` (``data.pkg.test_x``) in ``file`` was
    undefined, replaying its body with ``replay``; ``index`` indexes the loaded modules
    (:func:`index_modules`)."""
    package, _, name = test_path.removeprefix("data.").rpartition(".")
    definitions = [
        rule
        for rule in index.definitions(tuple(package.split(".")), name)
        if rule.file == file and rule.kind == "value"
    ]
    return _Explainer(index, replay).explain(definitions, "", depth=0)


class _Explainer:
    def __init__(self, index: PolicyIndex, replay: Replay) -> None:
        self._index = index
        self._replay = replay

    def explain(self, definitions: Sequence[Rule], outer: str, depth: int) -> FailureExplanation:
        """Replay each definition's first body under the ``outer`` modifiers (one replay
        module per file: a module takes its file's package and imports)."""
        by_file: dict[str, list[Rule]] = {}
        for rule in definitions:
            if rule.bodies and rule.bodies[0].statements:
                by_file.setdefault(rule.file, []).append(rule)
        if not by_file:
            return FailureExplanation(notes=("no body to explain",))
        statements: list[FailedStatement] = []
        notes: list[str] = []
        for file, rules in by_file.items():
            found = self._explain_file(file, rules, outer, depth)
            statements.extend(found.statements)
            notes.extend(found.notes)
        return FailureExplanation(statements=tuple(statements), notes=tuple(notes))

    def _explain_file(
        self, file: str, rules: Sequence[Rule], outer: str, depth: int
    ) -> FailureExplanation:
        try:
            plans = [self._plan(number, rule, outer) for number, rule in enumerate(rules)]
        except UnsupportedRego as exc:
            return FailureExplanation(notes=(f"no values: {exc}",))
        header = self._header(file)
        prefix = "data." + ".".join(rules[0].package) + "."
        problem = ""
        for with_terms in (True, False):
            text = header + "".join(plan.rules(with_terms) for plan in plans)
            try:
                with self._replay(_MODULE_FILE, text) as values:
                    found, notes = _evaluate(plans, prefix, values, with_terms)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # pyo3 panics derive from BaseException
                problem = problem or _first_line(exc)
                continue
            statements = self._with_causes(found, depth)
            return FailureExplanation(statements=tuple(statements), notes=tuple(notes))
        return FailureExplanation(notes=(f"no values: the body could not be replayed: {problem}",))

    def _header(self, file: str) -> str:
        """The module's text up to its last ``import`` line before its first rule."""
        first_rule = min(rule.line for rule in self._index.rules if rule.file == file)
        lines = self._index.modules[file].splitlines()[: first_rule - 1]
        last = 0
        for number, line in enumerate(lines):
            if line.strip().startswith(("package ", "import ")):
                last = number
        return "\n".join(lines[: last + 1]) + "\n"

    def _plan(self, number: int, rule: Rule, outer: str) -> _Plan:
        names = self._index.names(rule.file)
        statements = tuple(rule.bodies[0].statements)
        texts = tuple(render_statement(statement, rule.source) for statement in statements)
        terms: list[tuple[tuple[str, Any, str], ...]] = []
        withs: list[tuple[_Modifier, ...]] = []
        bound_after_each: list[tuple[str, ...]] = []
        bound: frozenset[str] = frozenset()
        for position, statement in enumerate(statements):
            tag = f"{_PREFIX}_{number}_t{position}"
            terms.append(tuple(_evaluable_terms(tag, statement, rule, names, bound)))
            withs.append(tuple(_statement_modifiers(f"{tag}_w", statement, rule, names)))
            bound = bound_after(statement, names, bound)
            bound_after_each.append(tuple(sorted(bound)))
        return _Plan(
            rule=rule,
            outer=outer,
            statements=statements,
            texts=texts,
            withs=tuple(withs),
            steps=tuple(f"{_PREFIX}_{number}_s{k}" for k in range(len(statements))),
            bound=tuple(bound_after_each),
            terms=tuple(terms),
        )

    def _with_causes(self, found: Sequence[_Found], depth: int) -> list[FailedStatement]:
        """Explain the undefined or false rules among the failing statements' terms."""
        budget = _MAX_CAUSES if depth == 0 else 0
        statements = []
        for plan, position, statement, modifiers in found:
            terms = []
            for term, (_text, node, _name) in zip(
                statement.terms, plan.terms[position], strict=True
            ):
                rules = self._rules_named(node, plan.rule) if budget else []
                if rules and term.values in ((), (False,)):
                    budget -= 1
                    cause = (
                        self.explain(rules, modifiers, depth + 1)
                        if modifiers is not None
                        else FailureExplanation(
                            notes=("not replayed: a with value has several values",)
                        )
                    )
                    term = TermValue(term.text, term.values, cause)
                terms.append(term)
            statements.append(replace(statement, terms=tuple(terms)))
        return statements

    def _rules_named(self, node: Mapping[str, Any], context: Rule) -> list[Rule]:
        """The complete rules a reference names (``allow``, ``data.p.allow``, ``p.allow``
        with ``import data.p``), or none."""
        names = _reference(node)
        imports = self._index.imports(context.file)
        if names[:1] == ["data"]:
            path = names[1:]
        elif names and names[0] in imports:
            path = [*_reference(imports[names[0]])[1:], *names[1:]]
        elif len(names) == 1:
            path = [*context.package, *names]
        else:
            return []
        if len(path) < 2:
            return []
        rules = self._index.definitions(tuple(path[:-1]), path[-1])
        return [rule for rule in rules if rule.kind == "value"]


def _reference(node: Mapping[str, Any]) -> list[str]:
    """The names of a plain reference ``a.b.c`` (empty for anything else)."""
    ((kind, fields),) = node.items()
    if kind == "Var":
        return [str(fields["value"])]
    if kind == "RefDot":
        base = _reference(fields["refr"])
        return [*base, str(fields["field"][1])] if base else []
    return []


def _first_line(exc: BaseException) -> str:
    """An engine error in one line: regorus's ``--> file:line:col`` and ``error:`` lines,
    or OPA's message with its lines joined."""
    message = str(exc).split("Stack backtrace:", 1)[0]
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    where = next((line[4:] for line in lines if line.startswith("--> ")), None)
    error = next((line for line in lines if line.startswith("error:")), None)
    if where is not None and error is not None:
        return f"{where}: {error}"[:300]
    return " ".join(lines)[:300] or type(exc).__name__


def _evaluable_terms(
    tag: str, statement: Any, rule: Rule, names: frozenset[str], bound: frozenset[str]
) -> Iterator[tuple[str, Any, str]]:
    """The statement's terms that read only variables bound before it."""
    seen: set[str] = set()
    for index, term in enumerate(statement_terms(statement)):
        reads = free_vars(term, names)
        if reads is None or not reads <= bound:
            continue  # a variable this statement binds, or a comprehension
        try:
            text = render(term, rule.source)
        except UnsupportedRego:
            continue
        if text not in seen:
            seen.add(text)
            yield text, term, f"{tag}_{index}"


_Found = tuple[_Plan, int, FailedStatement, str | None]
"""A failing statement: its plan, its position, and the modifiers to replay the rules it
reads under (None when they cannot be written down)."""


def _statement_modifiers(
    tag: str, statement: Mapping[str, Any], rule: Rule, names: frozenset[str]
) -> Iterator[_Modifier]:
    for index, modifier in enumerate(statement.get("with_mods") or ()):
        value = modifier["as"]
        reads = free_vars(value, names)
        evaluated = reads is None or bool(reads)  # it reads variables of the body
        yield _Modifier(
            target=render(modifier["refr"], rule.source),
            value=render(value, rule.source),
            rule=f"{tag}{index}" if evaluated else None,
        )


def _evaluate(
    plans: Sequence[_Plan], prefix: str, values: Values, with_terms: bool
) -> tuple[list[_Found], list[str]]:
    """The failing statement of each plan (with the plan and its position), and notes."""
    found: list[_Found] = []
    notes: list[str] = []
    for plan in plans:
        previous: list[Any] = []
        failed = None
        for k, step in enumerate(plan.steps):
            solutions = values(prefix + step)
            if not solutions:
                failed = k
                break
            previous = solutions
        if failed is None:
            notes.append(
                f"{plan.rule.location}: every statement holds when replayed one by one; "
                "the rule is undefined for another reason"
            )
            continue
        terms = tuple(
            TermValue(text, tuple(values(prefix + rule_name)))
            for text, _node, rule_name in (plan.terms[failed] if with_terms else ())
        )
        statement = FailedStatement(
            file=plan.rule.file,
            line=int(plan.statements[failed]["span"]["line"]),
            text=plan.texts[failed],
            terms=terms,
            bindings=tuple(b for b in previous if isinstance(b, Mapping) and b),
        )
        modifiers = plan.cause_modifiers(failed, values, prefix) if with_terms else None
        found.append((plan, failed, statement, modifiers))
    if not with_terms:
        notes.append("(the terms' values could not be replayed)")
    return found, notes
