"""Strict YAML, for the documents people write by hand (trust and policy configuration).

Safe types only, no aliases (no "billion laughs" expansion) and no duplicate keys (one
reader keeping the first, another the last, is how a document says two things).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, cast

import yaml

__all__ = ["loads_strict_yaml"]


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML without aliases and without duplicate keys."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = cast(Any, self).peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "YAML aliases are not allowed", mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value[:64]!r}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep)


def loads_strict_yaml(text: str | bytes) -> Any:
    """Parse strict YAML (see the module docstring); raise ``ValueError`` naming the problem."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:  # one line: what, and where
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"{exc.problem or exc.context}{where}") from None
    except yaml.reader.ReaderError as exc:
        raise ValueError(f"not UTF-8 text: {exc.reason} at byte {exc.position}") from None
    except yaml.YAMLError as exc:
        raise ValueError(" ".join(str(exc).split())) from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
