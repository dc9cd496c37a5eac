"""YAML loading that remembers where each key and item came from, so errors can name a line."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..yaml_limits import load_checked, number_problem


class LineDict(dict[Any, Any]):
    """A mapping from YAML; ``lines[key]`` is the 1-based line of that key."""

    line: int
    lines: dict[Any, int]

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.lines = {}


class LineList(list[Any]):
    """A sequence from YAML; ``lines[i]`` is the 1-based line of item ``i``."""

    line: int
    lines: list[int]

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.lines = []


class _Loader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        # (line, message) pairs found while building; YAML itself would silently keep the last duplicate
        self.issues: list[tuple[int, str]] = []


def _mapping(loader: _Loader, node: Node) -> LineDict:
    assert isinstance(node, MappingNode)
    loader.flatten_mapping(node)
    result = LineDict(node.start_mark.line + 1)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, Hashable):
            loader.issues.append((line, "a mapping key must be a plain value"))
            continue
        if key in result:
            loader.issues.append((line, f"duplicate key {key!r} (first at line {result.lines[key]})"))
            continue
        if isinstance(value_node, ScalarNode) and (problem := number_problem(value_node)):
            loader.issues.append((value_node.start_mark.line + 1, f"{key}: {problem}"))
            continue
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = line
    return result


def _sequence(loader: _Loader, node: Node) -> LineList:
    assert isinstance(node, SequenceNode)
    result = LineList(node.start_mark.line + 1)
    for item in node.value:
        result.append(loader.construct_object(item, deep=True))
        result.lines.append(item.start_mark.line + 1)
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _number(loader: _Loader, node: Node) -> Any:
    # a mapping value is checked with its key's name above; this catches keys and list items
    assert isinstance(node, ScalarNode)
    problem = number_problem(node)
    if problem is not None:
        loader.issues.append((node.start_mark.line + 1, problem))
        return None
    if node.tag == "tag:yaml.org,2002:int":
        return loader.construct_yaml_int(node)
    return loader.construct_yaml_float(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)
_Loader.add_constructor("tag:yaml.org,2002:int", _number)
_Loader.add_constructor("tag:yaml.org,2002:float", _number)


def load_yaml(text: str) -> tuple[Any, list[tuple[int, str]]]:
    """Parse one YAML document; returns the data and (line, message) issues such as duplicate keys.

    Raises ``yaml.YAMLError`` on a syntax error (its ``problem_mark`` has the position), and
    :class:`~uptimewatch.yaml_limits.YamlLimitError` on an alias bomb, a recursive alias or
    nesting too deep.
    """
    loader = _Loader(text)
    data = load_checked(loader)
    return data, loader.issues


def line_of(data: Any, loc: Sequence[int | str]) -> int | None:
    """The deepest known line along a pydantic error location."""
    line: int | None = getattr(data, "line", None)
    node = data
    for step in loc:
        if isinstance(node, LineDict) and step in node:
            line = node.lines.get(step, line)
            node = node[step]
        elif isinstance(node, LineList) and isinstance(step, int) and 0 <= step < len(node):
            line = node.lines[step]
            node = node[step]
        else:
            break
    return line
