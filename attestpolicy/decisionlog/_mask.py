"""Masks: what is erased or replaced in a decision log event before any sink sees it.

The rules are OPA's (``data.system.log.mask``), in its JSON-pointer style: a pointer
starts with ``/input`` or ``/result`` and each further segment is an object member or an
array index; segments are percent-decoded (``%2F`` for a ``/`` inside a member name).

- :class:`Erase` (OPA's ``"remove"``, or a bare pointer string) deletes the value (an
  array element is taken out, the later ones move up) and adds the pointer to the
  event's ``erased`` list;
- :class:`Upsert` sets the value, creating missing objects on the way, and adds the
  pointer to ``masked``.

As in OPA, a pointer to nothing (an absent member, an index past the end, a path through
a string) changes nothing and is not listed, and an upsert below ``/input`` needs the input
to be an object. attestpolicy's own rule, :class:`AttestationMaterial` (the one rule of
:data:`DEFAULT_MASKS`), finds attestation material wherever it is in the input: it erases
members by name (nonces, signature, quote and report bytes, certificates) and replaces
the signature of a compact JWS token (or erases a token that is not one).
"""

from __future__ import annotations

import abc
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, unquote

from attestpolicy._json import loads_strict
from attestpolicy.decisionlog._errors import MaskConfigError

__all__ = [
    "ATTESTATION_MATERIAL_FIELDS",
    "DEFAULT_MASKS",
    "REDACTED",
    "TOKEN_FIELDS",
    "AttestationMaterial",
    "Erase",
    "MaskRule",
    "Upsert",
    "load_masks",
    "parse_masks",
]

REDACTED: Final = "**REDACTED**"
"""What replaces a token's signature."""

ATTESTATION_MATERIAL_FIELDS: Final = frozenset(
    {
        "nonce",
        "nonces",
        "signature",
        "sig",
        "pkcs7",
        "attest",
        "quote",
        "report",
        "hcl_report",
        "go_tpm_tools_attestation",
        "certificate",
        "certificates",
        "cert",
        "chain",
        "chain_der",
        "x5c",
        "vcek",
        "ask",
        "ak_certificate",
        "ak_intermediates",
        "bundle",
        "rawbytes",
        "canonicalizedbody",
        "signedentrytimestamp",
    }
)
"""Member names :class:`AttestationMaterial` erases by default (compared in lower case; for a name
with a ``/``, such as a cosign annotation, its last part). None is a claim set member, so
the input of ``decide()`` (a claim set) is logged whole."""

TOKEN_FIELDS: Final = frozenset({"token", "jwt", "id_token", "access_token"})
"""Member names whose token :class:`AttestationMaterial` redacts by default."""

_ROOTS: Final = ("input", "result")
_PATH_SAFE: Final = "$&+,:;=@"  # left as they are in a segment (as Go's url.PathEscape)
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_INDEX: Final = re.compile(r"[0-9]+")
_COMPACT_JWS: Final = re.compile(r"([A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)\.[A-Za-z0-9_-]+")
_OPS: Final = ("remove", "upsert")


def _segment(part: str) -> str:
    return quote(part, safe=_PATH_SAFE)


def _pointer(parts: Iterable[str]) -> str:
    """The canonical text of a pointer (each segment percent-encoded as needed)."""
    return "".join("/" + _segment(part) for part in parts)


def _parse_pointer(path: object) -> tuple[str, ...]:
    if not isinstance(path, str) or not path:
        raise MaskConfigError("a mask path must be a non-empty string")
    if not path.startswith("/"):
        raise MaskConfigError(f"mask path {path!r} must start with '/'")
    segments = path[1:].split("/")
    if segments[0] not in _ROOTS:
        hint = " (attestpolicy events have no nd_builtin_cache)"
        raise MaskConfigError(
            f"mask path {path!r} must start with /input or /result"
            + (hint if segments[0] == "nd_builtin_cache" else "")
        )
    parts = []
    for segment in segments:
        if _BAD_ESCAPE.search(segment):
            raise MaskConfigError(f"mask path {path!r} has an invalid percent escape")
        try:
            parts.append(unquote(segment, errors="strict"))
        except UnicodeDecodeError:
            raise MaskConfigError(f"mask path {path!r} escapes bytes that are not UTF-8") from None
    return tuple(parts)


def _index(key: str, length: int) -> int | None:
    """``key`` as an index into an array of ``length`` items, or None."""
    if _INDEX.fullmatch(key) is None:
        return None
    index = int(key)
    return index if index < length else None


def _child(node: Any, key: str) -> tuple[bool, Any]:
    """(found, value) of ``key`` in an object or array."""
    if isinstance(node, dict):
        return key in node, node.get(key)
    if isinstance(node, list):
        index = _index(key, len(node))
        return index is not None, None if index is None else node[index]
    return False, None


class MaskRule(abc.ABC):
    """One masking rule. Subclass it for a rule of your own: both methods run on the
    decision log's writer thread."""

    def applies_to(self, event: Mapping[str, Any]) -> bool:
        """Whether :meth:`apply` may change ``event`` (read it, change nothing). When no
        rule applies, the logger writes the event without copying its input and result."""
        return True

    @abc.abstractmethod
    def apply(self, event: dict[str, Any], erased: list[str], masked: list[str]) -> None:
        """Change ``event`` in place (its input and result are the logger's own copies,
        plain JSON values); append the pointer of each value removed to ``erased`` and of
        each value set to ``masked``."""


@dataclass(frozen=True)
class Erase(MaskRule):
    """Erase the value at ``path`` (OPA's ``"remove"``): ``Erase("/input/password")``."""

    path: str
    _parts: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_parts", _parse_pointer(self.path))

    def applies_to(self, event: Mapping[str, Any]) -> bool:
        """Whether the value is there."""
        root, *rest = self._parts
        found, node = root in event, event.get(root)
        for key in rest:
            if not found:
                break
            found, node = _child(node, key)
        return found

    def apply(self, event: dict[str, Any], erased: list[str], masked: list[str]) -> None:
        """Erase the value if it is there."""
        root, *rest = self._parts
        if root not in event:
            return
        if not rest:
            del event[root]
            erased.append(_pointer(self._parts))
            return
        node = event[root]
        for key in rest[:-1]:
            found, node = _child(node, key)
            if not found:
                return
        last = rest[-1]
        if isinstance(node, dict) and last in node:
            del node[last]
        elif isinstance(node, list) and (index := _index(last, len(node))) is not None:
            del node[index]
        else:
            return
        erased.append(_pointer(self._parts))


@dataclass(frozen=True)
class Upsert(MaskRule):
    """Set ``value`` (any JSON value) at ``path``, replacing what is there or adding it:
    ``Upsert("/input/password", "**REDACTED**")``."""

    path: str
    value: Any
    _parts: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _encoded: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_parts", _parse_pointer(self.path))
        try:
            encoded = json.dumps(self.value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise MaskConfigError(f"upsert {self.path}: the value is not JSON: {exc}") from None
        object.__setattr__(self, "_encoded", encoded)

    def applies_to(self, event: Mapping[str, Any]) -> bool:
        """Whether the path's start is there (the rest may be made)."""
        root = self._parts[0]
        return root in event and (len(self._parts) == 1 or isinstance(event[root], dict))

    def _fresh_value(self) -> Any:
        """A copy of the value for one event (later rules may change the event)."""
        return json.loads(self._encoded)

    def apply(self, event: dict[str, Any], erased: list[str], masked: list[str]) -> None:
        """Set the value where the path can be reached (see the module documentation)."""
        root, *rest = self._parts
        if root not in event:
            return
        if not rest:
            event[root] = self._fresh_value()
            masked.append(_pointer(self._parts))
            return
        node = event[root]
        if not isinstance(node, dict):
            return
        for key in rest[:-1]:
            if isinstance(node, dict):
                node = node.setdefault(key, {})
            elif isinstance(node, list) and (index := _index(key, len(node))) is not None:
                node = node[index]
            else:
                return
        last = rest[-1]
        if isinstance(node, dict):
            node[last] = self._fresh_value()
        elif isinstance(node, list) and (index := _index(last, len(node))) is not None:
            node[index] = self._fresh_value()
        else:
            return
        masked.append(_pointer(self._parts))


def _names(names: Iterable[str], what: str) -> frozenset[str]:
    if isinstance(names, str):
        raise MaskConfigError(f"{what} is a collection of member names, not one string")
    checked = frozenset(names)
    if not all(isinstance(name, str) and name for name in checked):
        raise MaskConfigError(f"{what}: each name must be a non-empty string")
    return frozenset(name.lower() for name in checked)


_NAME_CACHE: dict[str, str] = {}
_NAME_CACHE_SIZE: Final = 4096


def _member_name(key: str) -> str:
    """How a member is matched: in lower case, the part after its last ``/``."""
    name = _NAME_CACHE.get(key)
    if name is None:
        name = key.rpartition("/")[2].lower()
        if len(_NAME_CACHE) < _NAME_CACHE_SIZE:  # member names repeat from event to event
            _NAME_CACHE[key] = name
    return name


def _containers(root: Any, first: str) -> Iterable[tuple[dict[str, Any], tuple[str, ...]]]:
    """Every object in ``root`` (depth first), with the pointer parts leading to it."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(root, (first,))]
    while stack:
        node, parts = stack.pop()
        if type(node) is dict:
            yield node, parts
            children: Iterable[tuple[str, Any]] = node.items()
        elif type(node) is list:
            children = ((str(index), child) for index, child in enumerate(node))
        else:
            continue
        found = [
            (child, (*parts, key))
            for key, child in children
            if type(child) is dict or type(child) is list
        ]
        stack.extend(reversed(found))  # in document order


@dataclass(frozen=True)
class AttestationMaterial(MaskRule):
    """Attestation material wherever it is in the input, in one pass: every member named
    one of ``fields`` is erased (listed in ``erased``); a member named one of ``tokens``
    that holds a compact JWS (``header.payload.signature``) keeps its header and payload
    and has its signature replaced by :data:`REDACTED` (listed in ``masked``), and one that
    holds anything else but null or ``""`` is erased (a token that is not a JWS may be a
    secret whole). Names are compared in lower case; for a name with a ``/`` (a cosign
    annotation), its last part."""

    fields: frozenset[str] = ATTESTATION_MATERIAL_FIELDS
    tokens: frozenset[str] = TOKEN_FIELDS
    _kinds: dict[str, bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = _names(self.fields, "fields")
        tokens = _names(self.tokens, "tokens")
        if not fields and not tokens:
            raise MaskConfigError("AttestationMaterial needs at least one field or token name")
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "tokens", tokens)
        # name -> is it a token (a field named in both is erased)
        object.__setattr__(
            self, "_kinds", {**dict.fromkeys(tokens, True), **dict.fromkeys(fields, False)}
        )

    def applies_to(self, event: Mapping[str, Any]) -> bool:
        """Whether the input has a member by one of the names."""
        kinds = self._kinds
        return any(
            _member_name(key) in kinds
            for node, _ in _containers(event.get("input"), "input")
            for key in node
        )

    def apply(self, event: dict[str, Any], erased: list[str], masked: list[str]) -> None:
        """Erase or redact the matching members (an erased value is not searched)."""
        kinds = self._kinds
        for node, parts in _containers(event.get("input"), "input"):
            for key in [key for key in node if _member_name(key) in kinds]:
                value = node[key]
                if kinds[_member_name(key)]:
                    if value is None or value == "":
                        continue
                    jws = _COMPACT_JWS.fullmatch(value) if isinstance(value, str) else None
                    if jws is not None:
                        node[key] = f"{jws.group(1)}.{REDACTED}"
                        masked.append(_pointer((*parts, key)))
                        continue
                del node[key]
                erased.append(_pointer((*parts, key)))


DEFAULT_MASKS: Final[tuple[MaskRule, ...]] = (AttestationMaterial(),)
"""The rules a :class:`~attestpolicy.decisionlog.DecisionLogger` applies unless told
otherwise: attestation material is erased, token signatures are redacted."""


def _rule(item: object) -> MaskRule:
    if isinstance(item, str):
        return Erase(item)
    if not isinstance(item, dict):
        raise MaskConfigError(
            f"a mask is a pointer string or an object with op and path, not {type(item).__name__}"
        )
    unknown = sorted(set(item) - {"op", "path", "value"})
    if unknown:
        raise MaskConfigError(f"unknown member(s) {', '.join(map(repr, unknown))}")
    op = item.get("op")
    if op not in _OPS:
        raise MaskConfigError(f"op must be one of {', '.join(map(repr, _OPS))}, not {op!r}")
    if "path" not in item:
        raise MaskConfigError(f"an {op!r} mask needs a path")
    if op == "remove":
        if "value" in item:
            raise MaskConfigError("a 'remove' mask takes no value")
        return Erase(item["path"])
    if "value" not in item:
        raise MaskConfigError("an 'upsert' mask needs a value")
    return Upsert(item["path"], item["value"])


def parse_masks(document: object) -> tuple[MaskRule, ...]:
    """Mask rules from OPA's format: a JSON array whose items are pointer strings (erase)
    or ``{"op": "remove" | "upsert", "path": ..., "value": ...}`` objects. Raises
    :class:`MaskConfigError` naming the first bad item."""
    if not isinstance(document, list):
        raise MaskConfigError(f"masks must be a JSON array of rules, not {type(document).__name__}")
    rules = []
    for position, item in enumerate(document):
        try:
            rules.append(_rule(item))
        except MaskConfigError as exc:
            raise MaskConfigError(f"mask {position}: {exc.message}") from None
    return tuple(rules)


def load_masks(path: Path | str) -> tuple[MaskRule, ...]:
    """Mask rules from a JSON file (see :func:`parse_masks`); :class:`MaskConfigError`
    names the file and the problem when it cannot be read or is not valid."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise MaskConfigError(f"{path}: cannot read the mask file: {exc.strerror}") from None
    try:
        document = loads_strict(text)
    except ValueError as exc:
        raise MaskConfigError(f"{path}: not valid JSON: {exc}") from None
    try:
        return parse_masks(document)
    except MaskConfigError as exc:
        raise MaskConfigError(f"{path}: {exc.message}") from None
