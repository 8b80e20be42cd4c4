"""JSON text fast: ``json.dumps(obj, indent=2)`` character for character on large tables of records,
and compact text (:func:`compact`) for the service.

With ``indent`` the standard library encodes in pure Python, about a microsecond per value: a
summary with a million segments (``by_segment``) took longer than solving and writing the plan.
Here a large dict or list of *flat records* (dicts of scalars) is written a column at a time:
each column's values are turned to text with the encoder's own functions (``float.__repr__``,
the C string escaper) and the records are assembled from a template. Everything else, and any
record that is not flat, goes to :func:`json.dumps` itself, so the text is the same.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii
from typing import Any

BIG = 256
"""Containers with at least this many records take the columnar path; smaller ones are json.dumps'."""

_SCALARS = (str, int, float, bool, type(None))


def compact(obj: Any, sort_keys: bool = False, default: Any = None) -> str:
    """``obj`` as compact JSON text (no spaces), by orjson: a tenth of :func:`json.dumps`' time.

    The service stores and sends every plan as such text, and its encoding was the largest single
    cost of a request after the solve. orjson writes some floats differently from
    :func:`json.dumps` (``0.00001`` for ``1e-05``; the same number when read back) and non-ASCII
    characters as UTF-8. What orjson refuses (integers beyond 64 bits, keys that are not strings)
    goes to :func:`json.dumps`, with ``default`` for objects neither knows (numpy scalars are
    taken as their Python values). Non-finite floats are written as ``null``.
    """
    try:
        import orjson
    except ImportError:  # pragma: no cover - a dependency; kept working without it
        return json.dumps(obj, sort_keys=sort_keys, separators=(",", ":"), default=default)

    def plain(o: Any) -> Any:
        # numpy scalars: their Python value (json.dumps takes a float64 as a float)
        if hasattr(o, "item") and not hasattr(o, "__len__"):
            return o.item()
        if default is None:
            raise TypeError(type(o).__name__)
        return default(o)

    try:
        return orjson.dumps(obj, default=plain, option=orjson.OPT_SORT_KEYS if sort_keys else 0).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(obj, sort_keys=sort_keys, separators=(",", ":"), default=default)


def dumps_indent2(obj: Any) -> str:
    """Exactly ``json.dumps(obj, indent=2)`` for JSON data (dict keys str; no custom types)."""
    return _value(obj, 0)


def _value(obj: Any, level: int) -> str:
    t = type(obj)
    if t is dict and obj and all(type(k) is str for k in obj):
        pad = "  " * (level + 1)
        if len(obj) >= BIG:
            body = _records(list(obj.values()), level + 1)
            if body is not None:
                keys = [encode_basestring_ascii(k) for k in obj]
                return "{\n" + ",\n".join(f"{pad}{k}: {v}" for k, v in zip(keys, body)) + "\n" + "  " * level + "}"
        return ("{\n" + ",\n".join(f"{pad}{encode_basestring_ascii(k)}: {_value(v, level + 1)}" for k, v in obj.items())
                + "\n" + "  " * level + "}")
    if t is list and len(obj) >= BIG:
        body = _records(obj, level + 1)
        if body is not None:
            pad = "  " * (level + 1)
            return "[\n" + ",\n".join(pad + v for v in body) + "\n" + "  " * level + "]"
    # json.dumps nests with newlines only between items, never inside strings (they are escaped)
    return json.dumps(obj, indent=2).replace("\n", "\n" + "  " * level) if level else json.dumps(obj, indent=2)


def _scalar(v: Any) -> str:
    t = type(v)
    if t is str:
        return encode_basestring_ascii(v)
    if t is float:
        return float.__repr__(v) if v == v and v not in (float("inf"), float("-inf")) else json.dumps(v)
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if t is int:
        return int.__repr__(v)
    raise TypeError(t)


def _records(items: list, level: int) -> list[str] | None:
    """Each item (a flat dict of scalars with str keys) as indented JSON at ``level``; None when any is not."""
    pad = "  " * (level + 1)
    end = "\n" + "  " * level + "}"
    first = items[0] if items else None
    if type(first) is not dict or not first:
        return None
    keys = list(first)
    if all(type(it) is dict and list(it) == keys for it in items):
        # one shape: a column at a time, then one template per record
        columns = []
        for k in keys:
            values = [it[k] for it in items]
            if all(type(v) is float for v in values) and all(v - v == 0 for v in values):
                columns.append(list(map(float.__repr__, values)))
            elif all(type(v) in _SCALARS for v in values):
                columns.append([_scalar(v) for v in values])
            else:
                return None
        heads = [f"{pad}{encode_basestring_ascii(k)}: " for k in keys]
        template = "{\n" + ",\n".join(h.replace("%", "%%") + "%s" for h in heads) + end
        return [template % row for row in zip(*columns)]
    out = []
    for it in items:
        if type(it) is not dict or not it or not all(type(k) is str and type(v) in _SCALARS for k, v in it.items()):
            return None
        out.append("{\n" + ",\n".join(f"{pad}{encode_basestring_ascii(k)}: {_scalar(v)}" for k, v in it.items()) + end)
    return out
