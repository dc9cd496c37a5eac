"""Limits that keep a hostile YAML file from costing more than its size: alias bombs, recursive
aliases, absurd nesting and numbers too long to convert.

PyYAML shares the object an alias points to, so a "billion laughs" file loads in a blink and
only explodes later, in whatever walks the result (our line tracking, pydantic): 9 levels of 10
aliases are 10⁹ nodes from a 1 KB file. So the composed node graph is measured before anything
is built from it: each node's expanded size, memoized and without recursion, stops at the first
subtree that aliases would expand past :data:`MAX_ALIAS_NODES` nodes more than the file holds.
The walk costs a few percent of a load (0.07 s for a 4,000-site province).

A leaf on purpose: it imports nothing from uptimewatch, so the configuration loader and the
profile loader share it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = [
    "MAX_ALIAS_NODES",
    "MAX_DEPTH",
    "MAX_NUMBER_CHARS",
    "YamlLimitError",
    "check_graph",
    "load_checked",
    "number_problem",
]

#: How many nodes aliases may add to a document beyond the nodes written in it. A province that
#: repeats an SNMP block with ``<<: *defaults`` on 12,000 devices adds about 100,000.
MAX_ALIAS_NODES: Final = 1_000_000
#: Nesting of mappings and sequences; the deepest configuration path is about ten.
MAX_DEPTH: Final = 100
#: Characters of an integer or float; a 64-bit counter has 20 digits.
MAX_NUMBER_CHARS: Final = 100

_INT_TAG: Final = "tag:yaml.org,2002:int"
_FLOAT_TAG: Final = "tag:yaml.org,2002:float"


class YamlLimitError(yaml.MarkedYAMLError):
    """The document is well-formed YAML but exceeds a limit; ``problem_mark`` says where."""


def _children(node: Node) -> Iterator[Node]:
    if isinstance(node, SequenceNode):
        yield from node.value
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            yield key
            yield value


def check_graph(root: Node, *, max_alias_nodes: int = MAX_ALIAS_NODES, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`YamlLimitError` if aliases would expand ``root`` by more than
    ``max_alias_nodes`` nodes, if an alias points into its own node, or if nesting is deeper than
    ``max_depth``."""
    sizes: dict[int, int] = {}  # id(node) -> nodes in its expansion
    open_ids: set[int] = {id(root)}
    stack: list[tuple[Node, Iterator[Node], list[int]]] = [(root, _children(root), [1])]
    while stack:
        node, children, total = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            open_ids.discard(id(node))
            size = total[0]
            sizes[id(node)] = size
            # every node of this subtree has been seen, and the document holds this subtree at
            # least once: its excess over the distinct nodes seen is a floor of the whole excess
            if size - len(sizes) > max_alias_nodes:
                raise YamlLimitError(
                    problem=(
                        f"aliases expand this document by more than {max_alias_nodes:,} nodes "
                        "(an alias bomb?); write the values out, or use the defaults"
                    ),
                    problem_mark=node.start_mark,
                )
            if stack:
                stack[-1][2][0] += size
            continue
        key = id(child)
        known = sizes.get(key)
        if known is not None:
            total[0] += known
            continue
        if key in open_ids:
            raise YamlLimitError(
                problem="the node anchored here contains an alias to itself (a structure without end)",
                problem_mark=child.start_mark,
            )
        if len(stack) >= max_depth:
            raise YamlLimitError(
                problem=f"nested deeper than {max_depth} levels", problem_mark=child.start_mark
            )
        open_ids.add(key)
        stack.append((child, _children(child), [1]))


def number_problem(node: ScalarNode) -> str | None:
    """Why an int or float scalar cannot be taken as a number, or None if it can (or is no number).

    Python refuses to convert integers of more than 4,300 digits with a ``ValueError`` that YAML
    passes on, and a long float silently becomes infinity.
    """
    if node.tag not in (_INT_TAG, _FLOAT_TAG):
        return None
    text: str = node.value
    if len(text) > MAX_NUMBER_CHARS:
        return f"number too long ({len(text):,} characters; at most {MAX_NUMBER_CHARS})"
    if node.tag == _FLOAT_TAG and not text.lstrip("+-").lower().startswith((".inf", ".nan")):
        try:
            value = float(text.replace("_", ""))
        except ValueError:
            return None  # YAML's own forms (sexagesimal) are its constructor's business
        if not math.isfinite(value):
            return f"number out of range: {text}"
    return None


def check_depth(root: Node, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`YamlLimitError` if nesting is deeper than ``max_depth``: what is left of
    :func:`check_graph` for a document without anchors (no alias can expand anything)."""
    stack: list[tuple[Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, SequenceNode):
            children = node.value
        else:
            continue
        if children and depth >= max_depth:  # as check_graph counts: keys and scalars too
            raise YamlLimitError(
                problem=f"nested deeper than {max_depth} levels", problem_mark=children[0].start_mark
            )
        stack.extend([(child, depth + 1) for child in children if not isinstance(child, ScalarNode)])


def load_checked(loader: Any, *, anchors: bool = True) -> Any:
    """``loader.get_single_data()`` with the graph checked between composing and constructing.

    ``loader`` is a PyYAML loader (pure or libyaml) built on the text; it is disposed of here. A
    pure-Python composer recursing past the interpreter's limit is reported as too deep.
    ``anchors=False`` says the text has no ``&`` at all, so no anchor and no alias: only the
    depth is checked then (a quarter of the walk over a province file's million nodes).
    """
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise YamlLimitError(problem=f"nested deeper than {MAX_DEPTH} levels") from None
        if node is None:
            return None
        if anchors:
            check_graph(node)
        else:
            check_depth(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()
