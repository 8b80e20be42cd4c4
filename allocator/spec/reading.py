"""Parsing untrusted YAML and JSON with bounded time and memory, and confining file references.

Every scenario, model and judgment file passes through :func:`parse_mapping`. Its limits hold
*before* Python objects are built, so a 400-byte alias bomb or a 100,000-deep nesting is refused
with a :class:`~allocator.errors.SpecError` naming the place, never expanded:

* the file is at most :data:`MAX_BYTES` and UTF-8 text (a BOM is allowed);
* YAML is composed into nodes first; the composition is refused past :data:`MAX_DEPTH` levels or
  :data:`MAX_NODES` nodes, and the node graph is then measured *with aliases expanded* (what
  construction would build): more than :data:`MAX_ALIAS_EXPANSION` nodes added by aliases, a
  recursive alias, or an expanded depth past :data:`MAX_DEPTH` is refused;
* integers longer than :data:`MAX_INT_DIGITS` digits, duplicate keys, and control characters in
  strings are refused, each naming its line (YAML) or dotted path.

Large YAML files (at least :data:`C_YAML_MIN_BYTES`) are scanned and composed by libyaml when
PyYAML has it (about ten times faster than the pure-Python parser); the limits hold there too:
libyaml refuses nesting past 1,000 levels, a count of nodes as they are composed stops past
:data:`MAX_NODES`, and the composed graph is measured as above before anything is constructed.
Whenever that route finds any fault (a syntax error, a broken limit), the file is parsed again by
the pure-Python loader, so every message is the one it gives.

Error messages quote at most :data:`EXCERPT` characters of any input (:func:`excerpt`).
File references (``model``, ``extends``) are confined to allowed folders by :func:`confine`.
"""

from __future__ import annotations

import gc
import json
import os
import re
from array import array
from contextlib import contextmanager
from itertools import accumulate
from pathlib import Path
from typing import Any, Iterable

import yaml

from ..errors import Problem, SpecError

MAX_BYTES = 256 * 1024 * 1024
"""Largest input file read (a 44,000-cell scenario is about 10 MB, a 1,000,000-cell JSON one 150 MB)."""
MAX_DEPTH = 64
"""Deepest nesting of lists and mappings (scenarios nest about 8 levels)."""
MAX_NODES = 5_000_000
"""Most values (scalars, lists, mappings) in one document, counted as written."""
MAX_ALIAS_EXPANSION = 200_000
"""Most values that YAML aliases (``*name``) may add beyond what is written."""
MAX_INT_DIGITS = 40
"""Longest integer accepted (Python refuses 4,300 digits with an unhelpful message)."""
EXCERPT = 60
"""Characters of input quoted in a message, at most."""
C_YAML_MIN_BYTES = 128 * 1024
"""YAML files from this size on are parsed by libyaml (when present); smaller ones by the pure-Python
loader, whose speed does not matter there."""

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_LABEL_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LABEL_KEYS = {"id", "name", "segment", "task", "tags", "select", "family", "segments", "tasks"}


def excerpt(value: Any, limit: int = EXCERPT) -> str:
    """``repr`` of a value, cut to ``limit`` characters (with a count of what was left out)."""
    if isinstance(value, (list, dict, tuple, set)) and len(value) > limit:
        return f"<{type(value).__name__} of {len(value):,} items>"
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def short(text: str, limit: int = 200) -> str:
    """``text`` as it is (no quotes), cut to ``limit`` characters: for paths and names in messages."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


class _Refused(Exception):
    """A limit broken while parsing: ``where`` is ``line L, column C`` or a dotted path."""

    def __init__(self, message: str, where: str = ""):
        super().__init__(message)
        self.message, self.where = message, where


def _at(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


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


def _decode(raw: bytes) -> str:
    if raw[:2] == b"\x1f\x8b":
        raise _Refused("is a gzip file, not text; unpack it first")
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise _Refused("is UTF-16 text; save it as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _Refused(f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} is not valid UTF-8); "
                       f"save it as UTF-8", f"line {line}, column {col}") from None


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) < len(pairs):  # rare: find the first repeated key (dict() keeps the last silently)
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _Refused(f"duplicate key {excerpt(k)}; each key may appear once in an object")
            seen.add(k)
    return out


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"an integer of {len(text.lstrip('-')):,} digits is too large (at most {MAX_INT_DIGITS})")
    return int(text)


def _check_values(data: Any) -> int:
    """Refuse nesting past :data:`MAX_DEPTH`, too many values, and control characters (iteratively).

    Returns the number of mappings and lists walked (what the limit on values counts here). The
    dotted path of a place is spelled out only for a message (:func:`_path`): a 1,000,000-cell file
    has millions of places and no fault.
    """
    stack: list[tuple[Any, Any, int]] = [(data, "", 0)]
    count = 0
    while stack:
        node, at, d = stack.pop()
        count += 1
        if count > MAX_NODES + MAX_ALIAS_EXPANSION:
            raise _Refused(f"holds more than {MAX_NODES:,} values")
        if d > MAX_DEPTH:
            raise _Refused(f"is nested more than {MAX_DEPTH} levels deep", _path(at))
        if isinstance(node, dict):
            for k, v in node.items():
                label = False
                if isinstance(k, str):
                    if _LABEL_CONTROL.search(k):
                        _check_text(k, _path(at) or "(top level)", label=True, what="a key")
                    label = k in _LABEL_KEYS
                if isinstance(v, str):
                    if (_LABEL_CONTROL if label else _CONTROL).search(v):
                        _check_text(v, _path((at, k, True)), label=label)
                elif isinstance(v, (dict, list)):
                    stack.append((v, (at, k, True), d + 1))
                    if label and isinstance(v, list):
                        for i, item in enumerate(v):
                            if isinstance(item, str) and _LABEL_CONTROL.search(item):
                                _check_text(item, f"{_path((at, k, True))}.{i}", label=True)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                if isinstance(v, str):
                    if _CONTROL.search(v):
                        _check_text(v, _path((at, i, False)), label=False)
                elif isinstance(v, (dict, list)):
                    stack.append((v, (at, i, False), d + 1))
    return count


def _path(at: Any) -> str:
    """The dotted path of a place of :func:`_check_values`: ``at`` is ``""`` (the top) or ``(parent, key,
    in_mapping)``; a step into a mapping cuts the path so far with :func:`excerpt_path`."""
    steps = []
    while at:
        at, key, in_mapping = at
        steps.append((key, in_mapping))
    path = ""
    for key, in_mapping in reversed(steps):
        where = f"{path}.{key}" if path else str(key)
        path = excerpt_path(where) if in_mapping else where
    return path


def excerpt_path(path: str, limit: int = 120) -> str:
    """A dotted path cut to ``limit`` characters (keys come from the input)."""
    return path if len(path) <= limit else path[:limit] + "..."


def _check_text(text: str, where: str, label: bool, what: str = "") -> None:
    bad = (_LABEL_CONTROL if label else _CONTROL).search(text)
    if bad:
        raise _Refused(f"{what + ' ' if what else ''}contains the control character U+{ord(bad.group()):04X} "
                       f"at position {bad.start() + 1}; ids, names and text may not contain control characters",
                       where)


def check_plain(data: Any, source: str | None = None) -> None:
    """:func:`_check_values` for a mapping given through the API: a SpecError naming the place."""
    try:
        _check_values(data)
    except _Refused as exc:
        raise SpecError(Problem(exc.where or "(top level)", exc.message), source=source) from None


def parse_text(raw: bytes, json_format: bool, check: bool = True) -> Any:
    """Parse ``raw`` (YAML or JSON) within the limits above.

    ``check=False`` leaves out the walk over every value for nesting, count and control characters
    (:func:`_check_values`): for a caller that checks the values itself, or runs that walk when its
    own check cannot decide (:mod:`allocator.spec.columnar`). The limits that hold while parsing
    (size, YAML nesting, node count and aliases, integer size, duplicate keys) hold either way.

    Raises
    ------
    _Refused
        For any broken limit (the caller turns it into a SpecError naming the file).
    yaml.YAMLError, json.JSONDecodeError
        For syntax errors.
    """
    if len(raw) > MAX_BYTES:
        raise _Refused(f"is larger than {MAX_BYTES // (1024 * 1024)} MB")
    text = _decode(raw)
    with _no_gc():
        data = _parse(raw, text, json_format)
    if check:
        check_parsed(raw, data, json_format)
    return data


def check_parsed(raw: bytes, data: Any, json_format: bool) -> None:
    """:func:`_check_values` of ``data`` parsed from ``raw``; for JSON, the bytes settle it when they can."""
    if not (json_format and _clean_json(raw)):
        _check_values(data)


_JSON_CONTROL_BYTES = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_NOT_CONTROL = bytes(b for b in range(256) if b not in _JSON_CONTROL_BYTES)
_C1 = re.compile(rb"\xc2[\x80-\x9f]")  # U+0080-U+009F in UTF-8
_CHUNK = 16 * 1024 * 1024
_SMALL_JSON = 64 * 1024
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and -1 as signed bytes


def _clean_json(raw: bytes) -> bool:
    """True when the JSON text ``raw`` (parsed already) surely passes :func:`_check_values`, seen from its bytes.

    Without a backslash no string holds an escape, and strict JSON keeps raw control characters
    out of strings, so a text with none of U+0000-U+001F (but tab, line feed, carriage return) and
    U+007F-U+009F holds no control character in any string. Quotes then delimit every string, so
    the brackets outside them give the nesting and the count of mappings and lists. About a second
    for 150 MB, where the walk over a million cells takes several; False leaves it to the walk.
    """
    if b"\\" in raw or raw.translate(None, _NOT_CONTROL) or (b"\xc2" in raw and _C1.search(raw)):
        return False
    count, deepest = _brackets(raw)
    # the top mapping is level 0 of _check_values
    return count <= MAX_NODES + MAX_ALIAS_EXPANSION and deepest - 1 <= MAX_DEPTH


def _brackets(raw: bytes) -> tuple[int, int]:
    """Mappings and lists opened outside strings in ``raw`` (JSON without a backslash), and the deepest level."""
    if len(raw) <= _SMALL_JSON:  # a request body: its few hundred brackets counted without numpy's overhead
        # with no backslash a string ends at the next quote: the even pieces between quotes are outside
        steps = array("b", b"".join(raw.split(b'"')[::2]).translate(_BRACKET_STEPS, _NOT_BRACKETS))
        return steps.count(1), max(accumulate(steps), default=0)
    import numpy as np

    count, level, deepest, quotes = 0, 0, 0, 0
    for start in range(0, len(raw), _CHUNK):  # in pieces: each comparison makes a temporary of the piece's size
        piece = np.frombuffer(raw, np.uint8, count=min(_CHUNK, len(raw) - start), offset=start)
        step = ((piece == 91) | (piece == 123)).astype(np.int8) - ((piece == 93) | (piece == 125))
        at = np.flatnonzero(step)
        q = np.flatnonzero(piece == 34)
        # a bracket after an odd number of quotes (from the start of the text) is inside a string
        step = step[at][(np.searchsorted(q, at) + quotes) % 2 == 0]
        quotes += len(q)
        count += int((step == 1).sum())
        if len(step):
            levels = np.cumsum(step, dtype=np.int64) + level
            deepest = max(deepest, int(levels.max()))
            level = int(levels[-1])
    return count, deepest


@contextmanager
def _no_gc():
    """The cyclic garbage collector paused: parsing makes millions of containers and no cycles, and
    each collection would walk all of them again (it tripled the time of a 100,000-cell YAML file)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _parse(raw: bytes, text: str, json_format: bool) -> Any:
    if json_format:
        try:
            data = json.loads(text, object_pairs_hook=_json_pairs, parse_int=_json_int)
        except RecursionError:
            raise _Refused(f"is nested more than {MAX_DEPTH} levels deep") from None
    else:
        data = None
        if len(raw) >= C_YAML_MIN_BYTES and getattr(yaml, "__with_libyaml__", False):
            try:
                data = _load_yaml(_CSafeLoader(text, raw.count(b"!")), aliases=b"*" in raw)
            except Exception:  # noqa: BLE001  (the pure-Python loader below gives the reference message)
                data = None
        if data is None:
            data = _load_yaml(_SafeLoader(text))
    return data


def _load_yaml(loader: Any, aliases: bool = True) -> Any:
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


def syntax_message(exc: Exception, json_format: bool) -> tuple[str, str]:
    """``(message, where)`` of a YAML or JSON syntax error, without quoting the input's lines."""
    if isinstance(exc, json.JSONDecodeError):
        return f"is not valid JSON: {exc.msg}", f"line {exc.lineno}, column {exc.colno}"
    parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    text = "; ".join(excerpt(p, 120).strip("'\"") for p in parts if p) or type(exc).__name__
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return f"is not valid YAML: {text}", _at(mark)


def read_bytes(path: Path, field: str = "file") -> bytes:
    """The bytes of ``path`` (at most :data:`MAX_BYTES`); a missing or unreadable file is a SpecError."""
    try:
        if path.is_dir():
            raise SpecError(Problem(field, f"{path} is a folder, not a file"))
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(Problem(field, f"no such file: {path}")) from None
    except PermissionError:
        raise SpecError(Problem(field, f"cannot read {path}: permission denied")) from None
    except OSError as exc:
        raise SpecError(Problem(field, f"cannot read {path}: {exc.strerror or type(exc).__name__}")) from None
    return raw


# ---------------------------------------------------------------- file references

ROOTS_ENV = "ALLOCATOR_ROOTS"
"""Extra folders (separated by ``os.pathsep``) that ``model`` and ``extends`` may point into."""
MAX_EXTENDS = 32
"""Longest ``extends`` chain (scenario -> base -> base of base ...)."""


def default_roots(scenario_dir: str | Path, extra: Iterable[str | Path] = ()) -> tuple[Path, ...]:
    """Folders a scenario in ``scenario_dir`` may reference: that folder's parent's tree (so that
    ``scenarios/x.yaml`` can use ``../models/m.yaml``), or the folder itself when its parent is a
    file-system root; the working folder's tree (the project being worked in), unless it is a
    file-system root; plus ``extra`` and the folders in ``$ALLOCATOR_ROOTS``.
    """
    here = Path(scenario_dir).resolve()
    parent = here.parent
    roots = [here if parent == Path(parent.anchor) else parent]
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # the working folder was removed: it grants nothing
        cwd = Path("/")
    if cwd != Path(cwd.anchor):
        roots.append(cwd)
    roots += [Path(p).resolve() for p in extra]
    roots += [Path(p).resolve() for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    return tuple(roots)


def confine(ref: Any, base_dir: str | Path, roots: tuple[Path, ...] | None, field: str) -> Path:
    """The resolved path of a file reference, refused when it points outside ``roots``.

    ``roots`` of ``None`` refuses every file reference (input from a request). The message names
    the reference, never the file's content.
    """
    if not isinstance(ref, str) or not ref:
        raise SpecError(Problem(field, f"must be the path of a file; got {excerpt(ref)}"))
    if roots is None:
        raise SpecError(Problem(field, f"file references are not allowed here (got {excerpt(ref)}); "
                                       f"give the content inline"))
    if "\x00" in ref:
        raise SpecError(Problem(field, f"the path {excerpt(ref)} contains a NUL character"))
    path = (Path(base_dir) / ref).resolve()
    if not any(path == r or path.is_relative_to(r) for r in roots):
        raise SpecError(Problem(field, f"{short(ref)} points outside the folders this scenario may read "
                                       f"({', '.join(str(r) for r in roots)}); move the file there or add its "
                                       f"folder to ${ROOTS_ENV}"))
    return path
