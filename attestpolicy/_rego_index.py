"""The structure of a Rego policy, read from its own sources (for ``decide --explain`` and
the explanations of failing Rego tests).

What it finds: every rule with its file and line, the METADATA annotations, the rules
that emit reasons (``{"code": ..., "message": ...}`` objects) with their codes and titles,
Rego text for any expression of a rule body, and the input and data paths an expression
reads, followed through the rules and functions it uses.

The modules are parsed by regorus's parser (always installed, and the Rego is the same
for both engines). regorus keeps no comments, so METADATA blocks are read from the text
as OPA reads them: ``# METADATA`` then YAML in ``#`` lines, for the rule (or package)
on the next line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import regorus
import yaml

from attestpolicy.errors import PolicyError

__all__ = [
    "ANY",
    "Annotation",
    "Body",
    "IndexBy",
    "Node",
    "Path",
    "PathResolver",
    "PolicyIndex",
    "ReasonRule",
    "Rule",
    "UnsupportedRego",
    "bound_after",
    "free_vars",
    "render",
    "render_path",
    "render_statement",
    "statement_terms",
]

Node = Mapping[str, Any]
"""One regorus AST node, ``{"Kind": {...fields}}``."""


class UnsupportedRego(ValueError):
    """A construct this module cannot render (a newer regorus AST node)."""


# --- annotations -------------------------------------------------------------------

_METADATA: Final = "# METADATA"


@dataclass(frozen=True)
class Annotation:
    """A METADATA block: where it is and what it says."""

    file: str
    line: int
    """The line of ``# METADATA``."""
    target_line: int
    """The first line after the block: the rule or package it belongs to."""
    title: str | None
    custom: Mapping[str, Any]

    @property
    def codes(self) -> tuple[str, ...]:
        """The reason codes it names: ``custom.code`` and ``custom.codes``."""
        codes: list[str] = []
        single = self.custom.get("code")
        if isinstance(single, str):
            codes.append(single)
        several = self.custom.get("codes")
        if isinstance(several, list):
            codes.extend(code for code in several if isinstance(code, str))
        return tuple(codes)


def read_annotations(file: str, text: str) -> list[Annotation]:
    """Every METADATA block of a module (a block that is not YAML raises PolicyError)."""
    lines = text.splitlines()
    annotations = []
    index = 0
    while index < len(lines):
        if lines[index].strip() != _METADATA:
            index += 1
            continue
        start = index
        index += 1
        body = []
        while index < len(lines) and lines[index].lstrip().startswith("#"):
            comment = lines[index].lstrip()[1:]
            body.append(comment[1:] if comment.startswith(" ") else comment)
            index += 1
        try:
            document = yaml.safe_load("\n".join(body)) or {}
        except yaml.YAMLError as exc:
            raise PolicyError(
                f"{file}:{start + 1}: METADATA is not YAML: {_yaml_problem(exc)}"
            ) from None
        if not isinstance(document, dict):
            raise PolicyError(f"{file}:{start + 1}: METADATA must be a YAML mapping")
        title = document.get("title")
        custom = document.get("custom")
        annotations.append(
            Annotation(
                file=file,
                line=start + 1,
                target_line=index + 1,
                title=title if isinstance(title, str) else None,
                custom=custom if isinstance(custom, dict) else {},
            )
        )
    return annotations


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: what is wrong, and where in the block."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1} of the block, column {mark.column + 1})" if mark else ""
    return f"{problem}{where}"


# --- rules -------------------------------------------------------------------------


@dataclass(frozen=True)
class Body:
    """One body of a rule: its statements, and for an ``else`` its value."""

    statements: tuple[Node, ...]
    value: Node | None
    is_else: bool


RuleKind = Literal["set", "value", "function", "default"]


@dataclass(frozen=True)
class Rule:
    """One rule definition."""

    file: str
    line: int
    package: tuple[str, ...]
    name: str
    """The first name of its head (``violation``, ``_node``, ``_field``)."""
    kind: RuleKind
    head: Node
    """The head's fields (``refr``, and ``key``, ``args`` or ``assign``)."""
    bodies: tuple[Body, ...]
    annotation: Annotation | None
    source: bytes
    """The module's text, for the names regorus gives only as a span."""

    @property
    def value(self) -> Node | None:
        """The value of the first body (None for a rule that is only true)."""
        assign = self.head.get("assign") if self.kind != "default" else self.head
        if not isinstance(assign, Mapping):
            return None
        value = assign.get("value")
        return value if isinstance(value, Mapping) else None

    @property
    def params(self) -> tuple[Node, ...]:
        """A function's parameters."""
        return tuple(self.head.get("args") or ())

    @property
    def location(self) -> str:
        """``file:line``."""
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class ReasonRule:
    """A rule that emits reasons: a reason object in its head (or its default value)."""

    rule: Rule
    reason: Node
    """The reason object (``{"code": ..., "message": ...}``)."""
    codes: tuple[str, ...]
    """The codes it can emit: the literal code, or its annotation's codes."""
    title: str | None
    titled_by: Annotation | None
    """The annotation the title comes from: the rule's own, or one on another rule with
    the same code (a second definition of the same check)."""

    @property
    def literal(self) -> tuple[str, str] | None:
        """``(code, message)`` when both are string literals."""
        fields = _object_fields(self.reason)
        code, message = fields.get("code"), fields.get("message")
        if code is None or message is None:
            return None
        code_text, message_text = _string(code), _string(message)
        if code_text is None or message_text is None:
            return None
        return code_text, message_text


def _kind(node: Node) -> tuple[str, Mapping[str, Any]]:
    ((kind, fields),) = node.items()
    return kind, fields


def _string(node: Node) -> str | None:
    kind, fields = _kind(node)
    if kind in ("String", "RawString") and isinstance(fields.get("value"), str):
        return str(fields["value"])
    return None


def _object_fields(node: Node) -> dict[str, Node]:
    kind, fields = _kind(node)
    if kind != "Object":
        return {}
    out = {}
    for _span, key, value in fields["fields"]:
        text = _string(key)
        if text is not None:
            out[text] = value
    return out


def _is_reason_object(node: Node) -> bool:
    return set(_object_fields(node)) == {"code", "message"} and len(_kind(node)[1]["fields"]) == 2


def _ref_names(node: Node) -> list[str]:
    """The names of a plain reference ``a.b.c`` (empty for anything else)."""
    kind, fields = _kind(node)
    if kind == "Var":
        return [str(fields["value"])]
    if kind == "RefDot":
        base = _ref_names(fields["refr"])
        return [*base, str(fields["field"][1])] if base else []
    return []


def _root_name(node: Node) -> str:
    kind, fields = _kind(node)
    while kind in ("RefDot", "RefBrack"):
        kind, fields = _kind(fields["refr"])
    return str(fields.get("value", ""))


def _span_text(source: bytes, span: Mapping[str, Any]) -> str:
    return source[int(span["start"]) : int(span["end"])].decode("utf-8")


def _reason_objects(node: Node) -> Iterator[Node]:
    """Reason objects written literally inside a value (a default decision's reasons)."""
    if _is_reason_object(node):
        yield node
        return
    kind, fields = _kind(node)
    if kind == "Object":
        for _span, _key, value in fields["fields"]:
            yield from _reason_objects(value)
    elif kind in ("Array", "Set"):
        for item in fields["items"]:
            yield from _reason_objects(item)


# --- the index -----------------------------------------------------------------------


@dataclass
class _Module:
    file: str
    package: tuple[str, ...]
    imports: dict[str, Node]
    source: bytes


@dataclass(frozen=True)
class PolicyIndex:
    """The rules (with their annotations) and reason rules of a set of Rego modules."""

    modules: Mapping[str, str]
    rules: tuple[Rule, ...]
    reason_rules: tuple[ReasonRule, ...]
    _imports: Mapping[str, Mapping[str, Node]] = field(repr=False)
    _packages: Mapping[str, tuple[str, ...]] = field(repr=False)

    @classmethod
    def from_modules(cls, modules: Mapping[str, str]) -> PolicyIndex:
        """Parse ``modules`` (name -> Rego text); PolicyError when one does not parse."""
        engine = regorus.Engine()
        try:
            for name, text in modules.items():
                engine.add_policy(name, text)
            parsed = json.loads(engine.get_ast_as_json())
        except Exception as exc:  # regorus raises its own RuntimeError subclasses
            raise PolicyError(f"policy failed to parse: {str(exc).strip()[:500]}") from None
        rules: list[Rule] = []
        imports: dict[str, dict[str, Node]] = {}
        packages: dict[str, tuple[str, ...]] = {}
        for entry in parsed:
            file = str(entry["source"]["file"])
            text = modules[file]
            by_line = {
                annotation.target_line: annotation for annotation in read_annotations(file, text)
            }
            module = _module(file, entry["ast"], text.encode("utf-8"))
            imports[file] = module.imports
            packages[file] = module.package
            for raw in entry["ast"]["rules"]:
                rules.append(_rule(module, raw, by_line))
        reason_rules = _reason_rules(rules)
        return cls(
            modules=dict(modules),
            rules=tuple(rules),
            reason_rules=reason_rules,
            _imports=imports,
            _packages=packages,
        )

    @property
    def codes(self) -> frozenset[str]:
        """Every reason code the reason rules can emit."""
        return frozenset(code for rule in self.reason_rules for code in rule.codes)

    def rules_for(self, code: str) -> list[ReasonRule]:
        """The reason rules that can emit ``code``."""
        return [rule for rule in self.reason_rules if code in rule.codes]

    def names(self, file: str) -> frozenset[str]:
        """The names a rule body in ``file`` can use without declaring them: its
        package's rules, its imports, ``input`` and ``data``."""
        package = self._packages[file]
        rules = {rule.name for rule in self.rules if rule.package == package}
        return frozenset({*rules, *self._imports[file], "input", "data"})

    def package(self, file: str) -> tuple[str, ...]:
        """The package of ``file``."""
        return self._packages[file]

    def imports(self, file: str) -> Mapping[str, Node]:
        """The imports of ``file``: the name each binds -> the reference."""
        return self._imports[file]

    def definitions(self, package: tuple[str, ...], name: str) -> list[Rule]:
        """The rules of ``package`` named ``name``."""
        return [rule for rule in self.rules if rule.package == package and rule.name == name]


def _module(file: str, ast: Mapping[str, Any], source: bytes) -> _Module:
    package = tuple(_ref_names(ast["package"]["refr"]))
    imports: dict[str, Node] = {}
    for item in ast.get("imports") or ():
        names = _ref_names(item["refr"])
        if names[:1] not in (["data"], ["input"]):
            continue  # rego.v1, future.keywords
        alias = item.get("as")
        imports[_span_text(source, alias) if alias else names[-1]] = item["refr"]
    return _Module(file=file, package=package, imports=imports, source=source)


def _rule(module: _Module, raw: Node, by_line: Mapping[int, Annotation]) -> Rule:
    kind, fields = _kind(raw)
    line = int(fields["span"]["line"])
    if kind == "Default":
        return Rule(
            file=module.file,
            line=line,
            package=module.package,
            name=_root_name(fields["refr"]),
            kind="default",
            head=fields,
            bodies=(),
            annotation=by_line.get(line),
            source=module.source,
        )
    if kind != "Spec":
        raise UnsupportedRego(f"{module.file}:{line}: unknown rule kind {kind}")
    head_kind, head = _kind(fields["head"])
    rule_kind: RuleKind = {"Set": "set", "Compr": "value", "Func": "function"}.get(
        head_kind, "value"
    )  # type: ignore[assignment]  # the three literals above
    bodies = tuple(
        Body(
            statements=tuple(body["query"]["stmts"]),
            value=(body.get("assign") or {}).get("value"),
            is_else=bool(body.get("is_else")),
        )
        for body in fields["bodies"]
    )
    return Rule(
        file=module.file,
        line=line,
        package=module.package,
        name=_root_name(head["refr"]),
        kind=rule_kind,
        head=head,
        bodies=bodies,
        annotation=by_line.get(line),
        source=module.source,
    )


def _reason_rules(rules: Sequence[Rule]) -> tuple[ReasonRule, ...]:
    found: list[tuple[Rule, Node]] = []
    for rule in rules:
        if rule.kind == "set" and _is_reason_object(rule.head["key"]):
            found.append((rule, rule.head["key"]))
        elif rule.kind == "default" and rule.value is not None:
            found.extend((rule, reason) for reason in _reason_objects(rule.value))
    titles: dict[str, Annotation] = {}
    for rule, reason in found:
        literal = _string(_object_fields(reason)["code"])
        annotation = rule.annotation
        if annotation is None or annotation.title is None:
            continue
        for code in (literal,) if literal is not None else annotation.codes:
            if code is not None:
                titles.setdefault(code, annotation)
    out = []
    for rule, reason in found:
        literal = _string(_object_fields(reason)["code"])
        own = rule.annotation
        codes = (literal,) if literal is not None else own.codes if own is not None else ()
        titled_by = own if own is not None and own.title is not None else None
        if titled_by is None:
            titled_by = next((titles[code] for code in codes if code in titles), None)
        out.append(
            ReasonRule(
                rule=rule,
                reason=reason,
                codes=codes,
                title=titled_by.title if titled_by is not None else None,
                titled_by=titled_by,
            )
        )
    return tuple(out)


# --- Rego text -------------------------------------------------------------------------

_OPERATORS: Final = {
    "Eq": "==",
    "Ne": "!=",
    "Lt": "<",
    "Le": "<=",
    "Gt": ">",
    "Ge": ">=",
    "Add": "+",
    "Sub": "-",
    "Mul": "*",
    "Div": "/",
    "Mod": "%",
    "Union": "|",
    "Intersection": "&",
}
_ASSIGN: Final = {"ColEq": ":=", "Eq": "="}
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_OPERATIONS: Final = frozenset(
    {"BoolExpr", "ArithExpr", "BinExpr", "AssignExpr", "Membership", "UnaryExpr"}
)


def render(node: Node, source: bytes = b"", *, nested: bool = False) -> str:
    """Rego text for an expression (an operation inside another in parentheses)."""
    kind, fields = _kind(node)
    text = _render(kind, fields, source)
    return f"({text})" if nested and kind in _OPERATIONS else text


def _render(kind: str, fields: Mapping[str, Any], source: bytes) -> str:
    if kind == "Var":
        return str(fields["value"])
    if kind == "String":
        return json.dumps(fields["value"], ensure_ascii=False)
    if kind == "RawString":
        return f"`{fields['value']}`"
    if kind in ("Number", "Bool", "Null"):
        return json.dumps(fields["value"])
    if kind == "Array":
        return "[" + ", ".join(render(item, source) for item in fields["items"]) + "]"
    if kind == "Set":
        items = ", ".join(render(item, source) for item in fields["items"])
        return "{" + items + "}" if items else "set()"
    if kind == "Object":
        pairs = (f"{render(k, source)}: {render(v, source)}" for _s, k, v in fields["fields"])
        return "{" + ", ".join(pairs) + "}"
    if kind == "RefDot":
        name = str(fields["field"][1])
        base = render(fields["refr"], source, nested=True)
        return f"{base}.{name}" if _IDENTIFIER.match(name) else f"{base}[{json.dumps(name)}]"
    if kind == "RefBrack":
        base = render(fields["refr"], source, nested=True)
        return f"{base}[{render(fields['index'], source)}]"
    if kind == "Call":
        args = ", ".join(render(param, source) for param in fields["params"])
        return f"{render(fields['fcn'], source)}({args})"
    if kind in ("BoolExpr", "ArithExpr", "BinExpr"):
        lhs = render(fields["lhs"], source, nested=True)
        return f"{lhs} {_OPERATORS[fields['op']]} {render(fields['rhs'], source, nested=True)}"
    if kind == "AssignExpr":
        lhs = render(fields["lhs"], source, nested=True)
        return f"{lhs} {_ASSIGN[fields['op']]} {render(fields['rhs'], source, nested=True)}"
    if kind == "UnaryExpr":
        return "-" + render(fields["expr"], source, nested=True)
    if kind == "Membership":
        key = fields.get("key")
        head = f"{render(key, source)}, " if key else ""
        value = render(fields["value"], source, nested=True)
        return f"{head}{value} in {render(fields['collection'], source, nested=True)}"
    if kind in ("ArrayCompr", "SetCompr"):
        inner = f"{render(fields['term'], source)} | {_render_query(fields['query'], source)}"
        return f"[{inner}]" if kind == "ArrayCompr" else "{" + inner + "}"
    if kind == "ObjectCompr":
        pair = f"{render(fields['key'], source)}: {render(fields['value'], source)}"
        return "{" + f"{pair} | {_render_query(fields['query'], source)}" + "}"
    raise UnsupportedRego(f"cannot render a {kind} expression")


def _render_query(query: Mapping[str, Any], source: bytes) -> str:
    return "; ".join(render_statement(statement, source) for statement in query["stmts"])


def render_statement(statement: Node, source: bytes = b"") -> str:
    """Rego text for one statement of a body (with its ``with`` modifiers)."""
    kind, fields = _kind(statement["literal"])
    if kind == "Expr":
        text = render(fields["expr"], source)
    elif kind == "NotExpr":
        text = "not " + render(fields["expr"], source)
    elif kind == "SomeIn":
        key = fields.get("key")
        head = f"{render(key, source)}, " if key else ""
        value = render(fields["value"], source)
        text = f"some {head}{value} in {render(fields['collection'], source)}"
    elif kind == "SomeVars":
        text = "some " + ", ".join(_span_text(source, span) for span in fields["vars"])
    elif kind == "Every":
        key = fields.get("key")
        head = f"{_span_text(source, key)}, " if key else ""
        domain = render(fields["domain"], source)
        text = (
            f"every {head}{_span_text(source, fields['value'])} in {domain} "
            "{ " + _render_query(fields["query"], source) + " }"
        )
    else:
        raise UnsupportedRego(f"cannot render a {kind} statement")
    for modifier in statement.get("with_mods") or ():
        text += f" with {render(modifier['refr'], source)} as {render(modifier['as'], source)}"
    return text


# --- variables -----------------------------------------------------------------------

_COMPREHENSIONS: Final = frozenset({"ArrayCompr", "SetCompr", "ObjectCompr"})


def _children(kind: str, fields: Mapping[str, Any]) -> Iterator[Node]:
    """The sub-expressions of an expression (none for a comprehension: its own scope)."""
    if kind in ("Array", "Set"):
        yield from fields["items"]
    elif kind == "Object":
        for _span, key, value in fields["fields"]:
            yield key
            yield value
    elif kind == "RefDot":
        yield fields["refr"]
    elif kind == "RefBrack":
        yield fields["refr"]
        yield fields["index"]
    elif kind == "Call":  # the function's name is not a variable
        yield from fields["params"]
    elif kind in ("BoolExpr", "ArithExpr", "BinExpr", "AssignExpr"):
        yield fields["lhs"]
        yield fields["rhs"]
    elif kind == "UnaryExpr":
        yield fields["expr"]
    elif kind == "Membership":
        if fields.get("key"):
            yield fields["key"]
        yield fields["value"]
        yield fields["collection"]


def free_vars(node: Node, names: frozenset[str]) -> frozenset[str] | None:
    """The local variables ``node`` reads (not ``names``), or None when it cannot be
    evaluated alone (it holds ``_`` or a comprehension)."""
    found: set[str] = set()
    pending = [node]
    while pending:
        kind, fields = _kind(pending.pop())
        if kind in _COMPREHENSIONS:
            return None
        if kind == "Var":
            name = str(fields["value"])
            if name == "_":
                return None
            if name not in names:
                found.add(name)
            continue
        pending.extend(_children(kind, fields))
    return frozenset(found)


def _pattern_vars(node: Node, names: frozenset[str]) -> set[str]:
    kind, fields = _kind(node)
    if kind == "Var":
        name = str(fields["value"])
        return set() if name in names or name == "_" else {name}
    if kind in ("Array", "Object"):
        out: set[str] = set()
        for child in _children(kind, fields):
            out |= _pattern_vars(child, names)
        return out
    return set()


def bound_after(statement: Node, names: frozenset[str], bound: frozenset[str]) -> frozenset[str]:
    """The local variables bound once ``statement`` holds, given those ``bound`` before."""
    kind, fields = _kind(statement["literal"])
    new: set[str] = set()
    if kind == "SomeIn":
        for part in (fields.get("key"), fields["value"]):
            if part:
                new |= _pattern_vars(part, names)
    elif kind == "Expr":
        expr_kind, expr = _kind(fields["expr"])
        if expr_kind == "AssignExpr":
            new |= _pattern_vars(expr["lhs"], names)
            if expr["op"] == "Eq":
                new |= _pattern_vars(expr["rhs"], names)
        new |= _iteration_vars(fields["expr"], names)
    return bound | frozenset(new - bound)


def _iteration_vars(node: Node, names: frozenset[str]) -> set[str]:
    """Variables used as an index (``x[i]``): an iteration binds them."""
    out: set[str] = set()
    pending = [node]
    while pending:
        kind, fields = _kind(pending.pop())
        if kind in _COMPREHENSIONS:
            continue
        if kind == "RefBrack":
            out |= _pattern_vars(fields["index"], names)
        pending.extend(_children(kind, fields))
    return out


_SKIPPED_TERMS: Final = frozenset(
    {"String", "RawString", "Number", "Bool", "Null", *_COMPREHENSIONS}
)


def statement_terms(statement: Node) -> list[Node]:
    """The terms worth showing the value of, in a statement: variables, references,
    calls and arithmetic (not literals, comparisons or comprehensions)."""
    kind, fields = _kind(statement["literal"])
    if kind in ("Expr", "NotExpr"):
        roots = [fields["expr"]]
    elif kind == "SomeIn":
        roots = [part for part in (fields.get("key"), fields["value"]) if part]
        roots.append(fields["collection"])
    else:
        return []
    out: list[Node] = []
    for root in roots:
        _collect_terms(root, out)
    return out


def _collect_terms(node: Node, out: list[Node]) -> None:
    kind, fields = _kind(node)
    if kind in _SKIPPED_TERMS:
        return
    if kind in ("Var", "RefDot", "RefBrack", "Call", "ArithExpr"):
        out.append(node)
        if kind in ("Var", "RefDot"):
            return
        if kind == "RefBrack":
            _collect_terms(fields["index"], out)
            return
    for child in _children(kind, fields):
        _collect_terms(child, out)


# --- what an expression reads ----------------------------------------------------------


class _AnyElement:
    """A path segment: any element (an index or key not known statically)."""

    def __repr__(self) -> str:
        return "[_]"


ANY: Final = _AnyElement()


@dataclass(frozen=True)
class IndexBy:
    """A path segment: the element whose key is the value at ``path``."""

    path: Path


Segment = str | _AnyElement | IndexBy
Path = tuple[Segment, ...]
"""A path from ``input`` or ``data``: field names, ANY, or IndexBy."""


def render_path(path: Path) -> str:
    """``input.node.issued_at``, ``data.x.workloads[input.subject.spiffe_id]``, ``a[_]``."""
    out = str(path[0])
    for segment in path[1:]:
        if isinstance(segment, IndexBy):
            out += f"[{render_path(segment.path)}]"
        elif isinstance(segment, _AnyElement):
            out += "[_]"
        elif _IDENTIFIER.match(segment):
            out += f".{segment}"
        else:
            out += f"[{json.dumps(segment)}]"
    return out


_MAX_DEPTH: Final = 48


@dataclass(frozen=True)
class _Bound:
    """What a local variable is: an expression, or an element (key) of a collection."""

    node: Node
    env: _Env
    element: tuple[str, ...] | None = None
    """For a variable bound by ``some ... in``: the positions inside each element
    (``()`` the element itself); None for ``x := expr``."""
    is_key: bool = False


_Env = dict[str, _Bound]


class PathResolver:
    """The input and data paths expressions read, following the rules and functions they
    use: through a rule's value (or, for a rule that is only true, its body), a
    function's value with its arguments, ``object.get`` with a literal key, and local
    variables; never through conditions that only decide whether a value exists."""

    def __init__(self, index: PolicyIndex, file: str) -> None:
        self._index = index
        self._file = file
        self._package = index.package(file)
        self._imports = index.imports(file)
        self._rule_paths: dict[tuple[str, Path], frozenset[Path]] = {}
        self._active: set[tuple[str, Path]] = set()

    def body_env(self, statements: Sequence[Node], env: _Env | None = None) -> _Env:
        """The local variables a body binds, on top of ``env``."""
        scope: _Env = dict(env or {})
        for statement in statements:
            kind, fields = _kind(statement["literal"])
            if kind == "SomeIn":
                value = fields["value"]
                for name, position in _destructure(value):
                    scope[name] = _Bound(fields["collection"], scope, position)
                key = fields.get("key")
                if key is not None and _kind(key)[0] == "Var":
                    scope[str(_kind(key)[1]["value"])] = _Bound(
                        fields["collection"], scope, (), is_key=True
                    )
            elif kind == "Expr" and _kind(fields["expr"])[0] == "AssignExpr":
                expr = _kind(fields["expr"])[1]
                for target, source in ((expr["lhs"], expr["rhs"]), (expr["rhs"], expr["lhs"])):
                    for name, position in _destructure(target):
                        if name not in scope:
                            scope[name] = _Bound(_index_into(source, position), scope)
                    if expr["op"] != "Eq":
                        break
        return scope

    def paths(self, node: Node, env: _Env | None = None) -> frozenset[Path]:
        """The paths ``node`` reads, with ``env`` for its local variables."""
        return self._paths(node, env or {}, (), 0)

    def _paths(self, node: Node, env: _Env, suffix: Path, depth: int) -> frozenset[Path]:
        if depth > _MAX_DEPTH:
            return frozenset()
        depth += 1
        kind, fields = _kind(node)
        if kind == "Var":
            return self._var(str(fields["value"]), env, suffix, depth)
        if kind == "RefDot":
            return self._paths(fields["refr"], env, (str(fields["field"][1]), *suffix), depth)
        if kind == "RefBrack":
            index = fields["index"]
            literals = _literals(index, env)
            if literals:
                return frozenset().union(
                    *(self._paths(fields["refr"], env, (key, *suffix), depth) for key in literals)
                )
            keys = self._paths(index, env, (), depth)
            segment: Segment = IndexBy(next(iter(keys))) if len(keys) == 1 else ANY
            return self._paths(fields["refr"], env, (segment, *suffix), depth) | keys
        if kind == "Object":
            members = _object_fields(node)
            head = suffix[0] if suffix else None
            if isinstance(head, str) and head in members:
                return self._paths(members[head], env, suffix[1:], depth)
            return self._union((v for _s, _k, v in fields["fields"]), env, depth)
        if kind in ("Array", "Set"):
            rest = suffix[1:] if suffix else ()
            return frozenset().union(
                *(self._paths(item, env, rest, depth) for item in fields["items"])
            )
        if kind == "Call":
            return self._call(fields, env, suffix, depth)
        if kind in _COMPREHENSIONS:
            scope = self.body_env(fields["query"]["stmts"], env)
            term = fields.get("term") or fields.get("value")
            rest = suffix[1:] if suffix else ()
            return self._paths(term, scope, rest, depth) if term else frozenset()
        return self._union(_children(kind, fields), env, depth)

    def _union(self, nodes: Iterator[Node], env: _Env, depth: int) -> frozenset[Path]:
        return frozenset().union(*(self._paths(node, env, (), depth) for node in nodes))

    def _var(self, name: str, env: _Env, suffix: Path, depth: int) -> frozenset[Path]:
        if name in ("input", "data"):
            return frozenset({(name, *suffix)})
        bound = env.get(name)
        if bound is not None:
            if bound.is_key:
                return frozenset()
            if bound.element is None:
                return self._paths(bound.node, bound.env, suffix, depth)
            return self._paths(bound.node, bound.env, (ANY, *bound.element, *suffix), depth)
        if name in self._imports:
            return self._paths(self._imports[name], {}, suffix, depth)
        return self._rule(name, suffix, depth)

    def _rule(self, name: str, suffix: Path, depth: int) -> frozenset[Path]:
        key = (name, suffix)
        cached = self._rule_paths.get(key)
        if cached is not None:
            return cached
        if key in self._active:
            return frozenset()
        self._active.add(key)
        try:
            found: set[Path] = set()
            for rule in self._index.definitions(self._package, name):
                if rule.kind == "function":
                    continue
                found |= self._definition(rule, {}, suffix, depth)
        finally:
            self._active.discard(key)
        result = frozenset(found)
        self._rule_paths[key] = result
        return result

    def _definition(self, rule: Rule, env: _Env, suffix: Path, depth: int) -> frozenset[Path]:
        """What one definition's value reads (its body, when it is only true)."""
        if rule.kind == "default":
            value = rule.value
            return self._paths(value, env, suffix, depth) if value else frozenset()
        found: set[Path] = set()
        if rule.kind == "set":
            rest = suffix[1:] if suffix else ()
            for body in rule.bodies or (Body((), None, False),):
                scope = self.body_env(body.statements, env)
                found |= self._paths(rule.head["key"], scope, rest, depth)
            return frozenset(found)
        head_value = rule.value
        for body in rule.bodies or (Body((), None, False),):
            scope = self.body_env(body.statements, env)
            value = body.value if body.is_else else head_value
            if value is not None:
                found |= self._paths(value, scope, suffix, depth)
            else:  # a rule or function that is only true: what it reads is its body
                for statement in body.statements:
                    for term in statement_terms(statement):
                        found |= self._paths(term, scope, (), depth)
        return frozenset(found)

    def _call(
        self, fields: Mapping[str, Any], env: _Env, suffix: Path, depth: int
    ) -> frozenset[Path]:
        params = list(fields["params"])
        function = _ref_names(fields["fcn"])
        if function == ["object", "get"] and len(params) == 3:
            keys = _literals(params[1], env)
            if keys:
                default = self._paths(params[2], env, suffix, depth)
                return default.union(
                    *(self._paths(params[0], env, (key, *suffix), depth) for key in keys)
                )
        if len(function) == 1:
            definitions = [
                rule
                for rule in self._index.definitions(self._package, function[0])
                if rule.kind == "function" and len(rule.params) == len(params)
            ]
            if definitions:
                found: set[Path] = set()
                for rule in definitions:
                    scope: _Env = {}
                    for param, arg in zip(rule.params, params, strict=True):
                        if _kind(param)[0] == "Var":
                            scope[str(_kind(param)[1]["value"])] = _Bound(arg, env)
                    found |= self._definition(rule, scope, suffix, depth)
                return frozenset(found)
        return self._union(iter(params), env, depth)


def _destructure(node: Node) -> list[tuple[str, tuple[str, ...]]]:
    """The variables of a pattern and their positions (``[a, b]`` -> a at 0, b at 1)."""
    kind, fields = _kind(node)
    if kind == "Var":
        name = str(fields["value"])
        return [] if name == "_" else [(name, ())]
    if kind == "Array":
        out: list[tuple[str, tuple[str, ...]]] = []
        for position, item in enumerate(fields["items"]):
            out.extend((name, (str(position), *rest)) for name, rest in _destructure(item))
        return out
    return []


def _index_into(node: Node, position: tuple[str, ...]) -> Node:
    """``node[position...]`` as an AST node (for a destructured assignment)."""
    for segment in position:
        node = {"RefBrack": {"refr": node, "index": {"Number": {"value": int(segment)}}}}
    return node


def _literals(node: Node, env: _Env) -> tuple[str, ...]:
    """The keys an index names when they are written in the policy: a literal, or a
    variable bound to one or to the elements (at one position) of a literal array."""
    kind, fields = _kind(node)
    if kind in ("String", "RawString"):
        return (str(fields["value"]),)
    if kind == "Number" and isinstance(fields["value"], int):
        return (str(fields["value"]),)
    if kind != "Var":
        return ()
    bound = env.get(str(fields["value"]))
    if bound is None or bound.is_key:
        return ()
    if bound.element is None:
        return _literals(bound.node, bound.env)
    collection_kind, collection = _kind(bound.node)
    if collection_kind not in ("Array", "Set"):
        return ()
    out: list[str] = []
    for item in collection["items"]:
        for position in bound.element:
            item_kind, item_fields = _kind(item)
            if item_kind != "Array" or not 0 <= int(position) < len(item_fields["items"]):
                return ()
            item = item_fields["items"][int(position)]
        keys = _literals(item, {})
        if len(keys) != 1:
            return ()
        out.append(keys[0])
    return tuple(out)
