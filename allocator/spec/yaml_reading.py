"""YAML composed within the limits of :mod:`.limits`, before any Python object is built.

The document is composed into nodes first; the composition is refused past :data:`~.limits.MAX_DEPTH`
levels or :data:`~.limits.MAX_NODES` nodes, and the node graph is then measured *with aliases
expanded* (what construction would build), so an alias bomb is refused, never expanded. Construction
refuses integers past :data:`~.limits.MAX_INT_DIGITS` digits and duplicate keys, naming their line.
:func:`~.reading.parse_text` chooses the loader (libyaml's for large files) and words the errors.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from .limits import MAX_ALIAS_EXPANSION, MAX_DEPTH, MAX_INT_DIGITS, MAX_NODES, _at, _Refused, excerpt


class _Checks:
    """Constructor checks shared by both loaders: integer size and duplicate keys, each naming its line."""

    def construct_yaml_int(self, node: Any) -> Any:
        digits = sum(ch.isdigit() for ch in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise _Refused(f"an integer of {digits:,} digits is too large (at most {MAX_INT_DIGITS})",
                           _at(node.start_mark))
        return super().construct_yaml_int(node)  # type: ignore[misc]

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[tuple[str, str], Any] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                k = (key_node.tag, key_node.value)
                if k in seen:
                    raise _Refused(f"duplicate key {excerpt(key_node.value)} (first at {_at(seen[k])}); "
                                   f"each key may appear once in a mapping", _at(key_node.start_mark))
                seen[k] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc]


class _SafeLoader(_Checks, yaml.SafeLoader):
    """SafeLoader with limits on nesting, node count, alias expansion, integer size and duplicate keys.

    Also reads ``1e5`` as a float (YAML 1.1 needs a dot: ``1.0e5``).
    """

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._composed = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        self._composed += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(f"is nested more than {MAX_DEPTH} levels deep", _at(self.peek_event().start_mark))
        if self._composed > MAX_NODES:
            raise _Refused(f"holds more than {MAX_NODES:,} values", _at(self.peek_event().start_mark))
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _CSafeLoader(_Checks, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The same loader with libyaml's scanner, parser and composer (construction stays Python).

    libyaml composes without calling back per node, except to resolve the tag of every node without
    an explicit one: that call counts nodes, so composition stops past :data:`MAX_NODES` (nodes with
    an explicit tag, which need a ``!``, are counted up front from the text).
    """

    def __init__(self, stream: str, tagged: int = 0):
        super().__init__(stream)
        self._composed = tagged

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        self._composed += 1
        if self._composed > MAX_NODES:
            raise _Refused(f"holds more than {MAX_NODES:,} values")
        return super().resolve(kind, value, implicit)


_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+][0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X)
for _loader in (_SafeLoader, _CSafeLoader):
    _loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
    _loader.add_constructor("tag:yaml.org,2002:int", _loader.construct_yaml_int)


def _measure(root: Any) -> None:
    """Refuse a node graph whose aliases would expand too far, recurse, or nest too deep.

    Iterative (no recursion limit), memoized per node: each node's expanded size and depth.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    written = 0
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        nid = id(node)
        if done:
            on_path.discard(nid)
            kids = _children(node)
            size[nid] = 1 + sum(size[id(k)] for k in kids)
            depth[nid] = 1 + max((depth[id(k)] for k in kids), default=0)
            if depth[nid] > MAX_DEPTH:
                raise _Refused(f"is nested more than {MAX_DEPTH} levels deep once aliases are expanded",
                               _at(node.start_mark))
            if size[nid] - written > MAX_ALIAS_EXPANSION and size[nid] > written:
                raise _Refused(f"aliases (*name) would add more than {MAX_ALIAS_EXPANSION:,} values to what is "
                               f"written (an alias bomb?); write the values out or use fewer aliases",
                               _at(node.start_mark))
            continue
        if nid in size:
            continue
        if nid in on_path:
            raise _Refused("an alias refers to a mapping or list that contains it (a recursive alias)",
                           _at(node.start_mark))
        written += 1
        on_path.add(nid)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node) if id(k) not in size)


def _measure_tree(root: Any) -> None:
    """Refuse a tree (no node shared) nested more than :data:`MAX_DEPTH` deep: one pass per level."""
    level, depth = [root], 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise _Refused(f"is nested more than {MAX_DEPTH} levels deep", _at(level[0].start_mark))
        level = [k for node in level if not isinstance(node, yaml.ScalarNode) for k in _children(node)]


def _children(node: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for kv in node.value for n in kv]
    return []


def load_yaml(loader: Any, aliases: bool = True) -> Any:
    """The document of ``loader``, composed, measured, then constructed.

    ``aliases=False`` (the text holds no ``*``, so no node is shared) measures only the depth, level
    by level; a node graph with aliases goes through :func:`_measure`.
    """
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if aliases:
            _measure(node)
        else:
            _measure_tree(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()
