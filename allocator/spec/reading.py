"""Parsing untrusted YAML and JSON with bounded time and memory.

Every scenario, model and judgment file, and every request body, passes through :func:`parse_text`.
Its limits (:mod:`.limits`) hold *before* Python objects are built, so a 400-byte alias bomb or a
100,000-deep nesting is refused with a :class:`~allocator.errors.SpecError` naming the place, never
expanded:

* the file is at most :data:`MAX_BYTES` and UTF-8 text (a BOM is allowed);
* YAML is composed into nodes first (:mod:`.yaml_reading`); the composition is refused past
  :data:`MAX_DEPTH` levels or :data:`MAX_NODES` nodes, and the node graph is then measured *with
  aliases expanded* (what construction would build): more than :data:`MAX_ALIAS_EXPANSION` nodes
  added by aliases, a recursive alias, or an expanded depth past :data:`MAX_DEPTH` is refused;
* integers longer than :data:`MAX_INT_DIGITS` digits, duplicate keys, and control characters in
  strings are refused, each naming its line (YAML) or dotted path.

Large YAML files (at least :data:`C_YAML_MIN_BYTES`) are scanned and composed by libyaml when
PyYAML has it (about ten times faster than the pure-Python parser); the limits hold there too:
libyaml refuses nesting past 1,000 levels, a count of nodes as they are composed stops past
:data:`MAX_NODES`, and the composed graph is measured as above before anything is constructed.
Whenever that route finds any fault (a syntax error, a broken limit), the file is parsed again by
the pure-Python loader, so every message is the one it gives. Small JSON texts whose bytes prove
them safe are parsed by orjson (:func:`_fast_json`), others by :func:`json.loads`, likewise.

Error messages quote at most :data:`EXCERPT` characters of any input (:func:`excerpt`).
File references (``model``, ``extends``) are confined to allowed folders by :mod:`.paths`.
"""

from __future__ import annotations

import gc
import json
import re
from array import array
from contextlib import contextmanager
from itertools import accumulate
from pathlib import Path
from typing import Any

import yaml

from ..errors import Problem, SpecError
from .limits import (EXCERPT, MAX_ALIAS_EXPANSION, MAX_BYTES, MAX_DEPTH, MAX_INT_DIGITS,  # noqa: F401  (re-exported)
                     MAX_NODES, _at, _Refused, excerpt, short)
from .paths import MAX_EXTENDS, ROOTS_ENV, confine, default_roots  # noqa: F401  (re-exported: they lived here)
from .yaml_reading import _CSafeLoader, _SafeLoader, load_yaml

C_YAML_MIN_BYTES = 128 * 1024
"""YAML files from this size on are parsed by libyaml (when present); smaller ones by the pure-Python
loader, whose speed does not matter there."""

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_LABEL_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LABEL_KEYS = {"id", "name", "segment", "task", "tags", "select", "family", "segments", "tasks"}


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

    A small JSON text whose bytes prove it safe is parsed by orjson (:func:`_fast_json`); any
    other, and any that orjson refuses, by :func:`json.loads`, which gives every message.

    Raises
    ------
    _Refused
        For any broken limit (the caller turns it into a SpecError naming the file).
    yaml.YAMLError, json.JSONDecodeError
        For syntax errors.
    """
    if len(raw) > MAX_BYTES:
        raise _Refused(f"is larger than {MAX_BYTES // (1024 * 1024)} MB")
    if json_format:
        # orjson reads only valid UTF-8 without a BOM, so what it reads, _decode would pass
        data = _fast_json(raw)
        if data is not _UNPROVEN:  # the bytes proved what check_parsed would find: nothing
            return data
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
_FAST_JSON_BYTES = 64 * 1024
"""Largest JSON text parsed by :func:`_fast_json` (a request body); larger ones take the general route."""
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and -1 as signed bytes
_NOT_QUOTES_OR_BRACKETS = bytes(b for b in range(256) if b not in b'"[]{}')
_PAIRS = bytes.maketrans(b"[{]}", b"(())")
# digits to "0", a backslash and the control characters of _plain_text to "\\", the rest to " "
_MARKS = bytes(48 if 48 <= b <= 57 else 92 if b == 92 or b in _JSON_CONTROL_BYTES else 32 for b in range(256))
_LONG_NUMBER = b"0" * 19
_UNPROVEN = object()
try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - a dependency; the general route works without it
    _orjson = None


def _clean_json(raw: bytes) -> bool:
    """True when the JSON text ``raw`` (parsed already) surely passes :func:`_check_values`, seen from its bytes.

    Without a backslash no string holds an escape, and strict JSON keeps raw control characters
    out of strings, so a text with none of U+0000-U+001F (but tab, line feed, carriage return) and
    U+007F-U+009F holds no control character in any string. Quotes then delimit every string, so
    the brackets outside them give the nesting and the count of mappings and lists. About a second
    for 150 MB, where the walk over a million cells takes several; False leaves it to the walk.
    """
    if not _plain_text(raw):
        return False
    count, deepest = _brackets(raw)
    # the top mapping is level 0 of _check_values
    return count <= MAX_NODES + MAX_ALIAS_EXPANSION and deepest - 1 <= MAX_DEPTH


def _brackets(raw: bytes) -> tuple[int, int]:
    """Mappings and lists opened outside strings in ``raw`` (JSON without a backslash), and the deepest level."""
    if len(raw) <= _SMALL_JSON:  # a request body: its few hundred brackets counted without numpy's overhead
        outside = _outside(raw)
        deepest = None if outside is None else _peel(outside, MAX_DEPTH + 2)
        if deepest is not None:
            return outside.count(b"[") + outside.count(b"{"), deepest
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


def _plain_text(raw: bytes) -> bool:
    """No backslash (so no escape), no control character but tab, line feed and carriage return."""
    return not (b"\\" in raw or raw.translate(None, _NOT_CONTROL) or (b"\xc2" in raw and _C1.search(raw)))


def _outside(raw: bytes) -> bytes | None:
    """The brackets of ``raw`` (JSON without a backslash) outside strings; None when a string holds one.

    Deleting all but quotes and brackets leaves ``""`` for each string without brackets. Counted from
    the left, such pairs take every quote exactly when every string is one: a string holding a
    bracket leaves a quote that no ``""`` takes.
    """
    marks = raw.translate(None, _NOT_QUOTES_OR_BRACKETS)
    return marks.translate(None, b'"') if 2 * marks.count(b'""') == marks.count(b'"') else None


def _peel(outside: bytes, most: int) -> int | None:
    """The deepest level of the balanced brackets ``outside``, by removing the innermost pairs level by
    level; None when it is past ``most`` or the brackets do not balance."""
    level, depth = outside.translate(_PAIRS), 0
    while level:
        depth += 1
        inner = level.replace(b"()", b"")
        if depth > most or len(inner) == len(level):
            return None
        level = inner
    return depth


def _fast_json(raw: bytes) -> Any:
    """``raw`` parsed by orjson (a tenth of the hooked :func:`json.loads`' time) when its bytes prove that
    :func:`json.loads` with the hooks would give the same data and :func:`check_parsed` accept it;
    :data:`_UNPROVEN` otherwise, for the caller to take the general route (which words every message).

    The proof, for a text of at most :data:`_FAST_JSON_BYTES` bytes: :func:`_plain_text` (so strings are
    taken literally and hold no control character), no run of 19 digits (orjson reads every integer
    of up to 18 digits exactly, and larger ones as floats), no bracket in a string, nesting and count
    within the limits, and orjson accepts the text (it refuses ``NaN``, ``Infinity`` and numbers that
    overflow, which :func:`json.loads` takes). A duplicate key is the one thing orjson passes
    silently (keeping one pair): writing the data back then gives fewer ``:`` than the text has,
    since each pair has one outside strings and strings come back as they were.
    """
    if _orjson is None or len(raw) > _FAST_JSON_BYTES:
        return _UNPROVEN
    marks = raw.translate(_MARKS)  # what _plain_text and a run of 19 digits look for, in one pass
    if b"\\" in marks or _LONG_NUMBER in marks or (b"\xc2" in raw and _C1.search(raw)):
        return _UNPROVEN
    outside = _outside(raw)
    if outside is None or outside.count(b"[") + outside.count(b"{") > MAX_NODES + MAX_ALIAS_EXPANSION:
        return _UNPROVEN
    try:
        data = _orjson.loads(raw)
        if _orjson.dumps(data).count(b":") != raw.count(b":"):
            return _UNPROVEN
    except (_orjson.JSONDecodeError, _orjson.JSONEncodeError):
        return _UNPROVEN
    # the top mapping is level 0 of _check_values
    return data if _peel(outside, MAX_DEPTH + 1) is not None else _UNPROVEN


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
                data = load_yaml(_CSafeLoader(text, raw.count(b"!")), aliases=b"*" in raw)
            except Exception:  # noqa: BLE001  (the pure-Python loader below gives the reference message)
                data = None
        if data is None:
            data = load_yaml(_SafeLoader(text))
    return data


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
