"""Large scenario files read straight into columns: validated and compiled without per-cell objects (issue 11).

:func:`~allocator.spec.load_scenario` hands a scenario of :data:`FAST_MIN_CELLS` cells or more to
:func:`fast_scenario`. Its ``segments`` are flattened into the columns of a cells table (the
contract of :mod:`allocator.tables`), checked column-wise by :func:`allocator.tables.check_rows`
and compiled to arrays by :func:`allocator.tables.compile_table`, as a ``cells: PATH`` scenario
is. The scenario's own small parts (name, budget, solver, ...) go through the schema and the
scenario rules as always.

The fast path only ever *accepts*. It returns ``None``, and the loader takes the full path (whose
messages name the YAML fields, ``segments.3.tasks...``), when

* the file uses ``extends``, ``model``, ``overrides``, ``cells`` or ``periods``; or rules that
  select cells (``constraints``, ``budgets``, an ``objective`` other than net value); or a cell
  has a ``value_curve``;
* anything breaks the schema, a rule or a limit of :mod:`.reading`, or is of a shape the
  columns cannot hold.

So a scenario that loads has passed the same rules on either path, and every error message is the
full path's. The result is a :class:`ColumnarScenario`, a genuine
:class:`~allocator.spec.Scenario` whose compiled problem is ready and whose ``segments`` are built
on first use, by the schema, from the file's bytes (kept for that until then).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from pydantic import PrivateAttr, ValidationError

from ..curves import FAMILIES
from .models import TASKS, Scenario
from .reading import (_CONTROL, _LABEL_CONTROL, MAX_ALIAS_EXPANSION, MAX_NODES, _check_values, _Refused,
                      parse_text)
from .rules import MAX_MONEY, check_scenario

FAST_MIN_CELLS = 5_000
"""Fewest cells read through the columns; smaller scenarios load in well under a second either way."""

_FULL_PATH_KEYS = ("extends", "model", "overrides", "cells", "periods", "constraints", "budgets", "objective")
_MONEY = ("min_spend", "max_spend", "current_spend", "min_active_spend", "activation_cost")
_NULLABLE = frozenset(("max_spend", "current_spend", "min_active_spend"))
_CLV = {"margin": "clv_margin", "retention": "clv_retention", "discount": "clv_discount", "horizon": "clv_horizon"}
_SEGMENT_KEYS = frozenset(("id", "tags", "description", "tasks"))
_MISSING = object()
_ABSENT = float("nan")
"""What a missing number reads as while flattening: a nan known by its identity (see :func:`_numbers`)."""


class ColumnarScenario(Scenario):
    """A :class:`Scenario` read through the columns: compiled already, ``segments`` built on first use.

    Reading ``segments`` validates them with the schema from the file's bytes, once, and keeps the
    result. Dumps, copies, comparisons and ``repr`` see the full scenario (a plain
    :class:`Scenario`, segments built); a copy is a plain :class:`Scenario`, compiled as any other.
    """

    _problem: Any = PrivateAttr(default=None)
    _source: Any = PrivateAttr(default=None)
    _n_segments: int = PrivateAttr(default=0)

    def __getattr__(self, item: str) -> Any:
        if item == "segments":
            return self._segments()
        return super().__getattr__(item)

    def _segments(self) -> Any:
        segments = self.__dict__.get("segments", _MISSING)
        if segments is _MISSING:
            raw, is_json = self.__pydantic_private__["_source"]
            # the columns proved the file valid: the schema gives what the full path gives
            segments = Scenario.model_validate(parse_text(raw, is_json)).segments
            self.__dict__["segments"] = segments
            self.__pydantic_private__["_source"] = None
        return segments

    def plain(self) -> Scenario:
        """The same scenario as a plain :class:`Scenario` (``segments`` built)."""
        fields = {**self.__dict__, "segments": self._segments()}
        return Scenario.model_construct(_fields_set=set(self.__pydantic_fields_set__), **fields)

    def segment_count(self) -> int:
        """Number of segments, without building them."""
        return self.__pydantic_private__["_n_segments"]

    def compiled(self):
        """The compiled problem (a new :class:`~allocator.problem.CompiledProblem` sharing the arrays)."""
        return dataclasses.replace(self.__pydantic_private__["_problem"])

    def model_dump(self, **kwargs: Any) -> Any:
        return self.plain().model_dump(**kwargs)

    def model_dump_json(self, **kwargs: Any) -> str:
        return self.plain().model_dump_json(**kwargs)

    def model_copy(self, *, update: Any = None, deep: bool = False) -> Scenario:
        return self.plain().model_copy(update=update, deep=deep)

    def __copy__(self) -> Scenario:
        return self.plain().model_copy()

    def __deepcopy__(self, memo: Any = None) -> Scenario:
        return self.plain().model_copy(deep=True)

    def __eq__(self, other: Any) -> bool:
        return self.plain() == (other.plain() if isinstance(other, ColumnarScenario) else other)

    __hash__ = None  # type: ignore[assignment]  (a scenario holds lists; none is hashable)

    def __iter__(self):  # type: ignore[override]
        return iter(self.plain())

    def __repr_args__(self):
        return self.plain().__repr_args__()

    def __getstate__(self) -> dict[Any, Any]:
        self._segments()
        return super().__getstate__()


def fast_scenario(data: dict[str, Any], raw: bytes, is_json: bool, solver_names: tuple[str, ...] | None = None,
                  min_cells: int | None = None) -> ColumnarScenario | None:
    """The scenario of the parsed file ``data`` (whose bytes are ``raw``), read through the columns.

    ``data`` comes from :func:`~.reading.parse_text` with ``check=False``: the walk over its values
    (nesting, count, control characters) is done here, for the cells as part of flattening them.

    Returns
    -------
    ColumnarScenario or None
        ``None`` when the scenario is smaller than ``min_cells`` (default :data:`FAST_MIN_CELLS`),
        uses a part the columns do not hold, or breaks any rule: the caller then takes the full
        path, which says what is wrong.
    """
    min_cells = FAST_MIN_CELLS if min_cells is None else min_cells
    segments = data.get("segments")
    if (not isinstance(segments, list) or 3 * len(segments) < min_cells
            or any(k in data for k in _FULL_PATH_KEYS)):
        return None
    rest = {k: v for k, v in data.items() if k != "segments"}
    try:
        counted = _check_values(rest)
    except _Refused:
        return None
    flat = flatten(segments)
    if flat is None or flat[0].shape[0] < min_cells or counted + flat[1] > MAX_NODES + MAX_ALIAS_EXPANSION:
        return None
    table = flat[0]
    try:
        head = Scenario.model_validate(rest)
    except ValidationError:
        return None
    # the rules of the scenario's own parts: solver name, magnitudes (the cells' are in check_rows)
    if check_scenario(head.model_copy(update={"cells": "(columns)"}), solver_names):
        return None
    if head.budget is not None and head.budget.use_all and head.budget.total is None:
        return None  # the one rule of allocator.constraints.check_constraints that needs no cell
    problem = _compile(head, table)
    if problem is None:
        return None
    sc = ColumnarScenario.model_construct(_fields_set=set(head.model_fields_set) | {"segments"}, **head.__dict__)
    del sc.__dict__["segments"]  # built on first use (ColumnarScenario.__getattr__)
    sc.__pydantic_private__.update(_problem=problem, _source=(raw, is_json), _n_segments=len(segments))
    return sc


def _compile(head: Scenario, table):
    """The table checked column-wise and compiled, or ``None`` when a row breaks a rule."""
    from ..tables import check_rows, compile_table
    from ..tables.columns import _Columns

    if check_rows(_Columns.read(table)):
        return None
    try:
        problem = compile_table(head, table, validate=False)
    except Exception:  # noqa: BLE001  (a lifetime value the full path refuses, say: it names the cell)
        return None
    with np.errstate(invalid="ignore"):
        if not np.all(np.abs(problem.value) <= MAX_MONEY):  # the lifetime values (clv), as the full path checks
            return None
    return problem


def flatten(segments: list[Any]):
    """The cells of ``segments`` as a cells table (one row per cell), and the mappings and lists they hold.

    Returns ``(table, count)``, or ``None`` when any part is of a type the schema refuses, a key is
    unknown, a number is not finite, a text holds a control character, two segments share an id,
    or a cell has a ``value_curve`` (then the full path checks and reports).

    One Python loop runs over the segments; each field is then taken from every cell by a list
    comprehension and its types checked at once (``set(map(type, ...))``), not key by key.
    """
    import pandas as pd

    from ..tables import param_columns

    seg_col: list[str] = []
    task_col: list[str] = []
    cells: list[Any] = []
    ids: list[str] = []
    labels: list[str] = []
    texts: list[str] = []
    count = 1  # the segments list
    for seg in segments:
        if type(seg) is not dict or not seg.keys() <= _SEGMENT_KEYS:
            return None
        sid, tasks = seg.get("id"), seg.get("tasks")
        if type(sid) is not str or not sid or type(tasks) is not dict or not tasks:
            return None
        if "tags" in seg:
            tags = seg["tags"]
            if type(tags) is not list or any(type(t) is not str for t in tags):
                return None
            labels += tags
            count += 1
        desc = seg.get("description")
        if desc is not None:
            if type(desc) is not str:
                return None
            texts.append(desc)
        ids.append(sid)
        seg_col += [sid] * len(tasks)
        task_col += tasks
        cells += tasks.values()
    n = len(cells)
    count += 2 * len(ids) + 2 * n  # each segment and its tasks mapping; each cell and its curve
    if (not _only(cells, dict) or not set(task_col) <= _TASKS or len(set(ids)) < len(ids)
            or _LABEL_CONTROL.search(" ".join(ids)) or _LABEL_CONTROL.search(" ".join(labels))
            or _CONTROL.search(" ".join(texts))):
        return None
    cell_keys = set().union(*cells)
    if not cell_keys <= _CELL_KEYS:
        return None
    columns: dict[str, Any] = {"segment": np.array(seg_col, dtype=object), "task": np.array(task_col, dtype=object)}
    del seg_col, task_col
    curves = [c.get("curve") for c in cells]
    if not _only(curves, dict):
        return None
    family = [c.get("family") for c in curves]
    try:
        if not set(family) <= _FAMILY_NAMES:
            return None
    except TypeError:  # an unhashable family
        return None
    columns["family"] = np.array(family, dtype=object)
    curve_keys = set().union(*curves) - {"family"}
    params = set(param_columns()[:-1])
    if not curve_keys <= params | {"points"}:
        return None
    for key in ("pool", *(k for k in _MONEY if k in cell_keys)):
        got = _numbers([c.get(key, _ABSENT) for c in cells], key in _NULLABLE, key == "pool")
        if got is None:
            return None
        columns[key] = got
    for key in sorted(curve_keys - {"points"}):
        got = _numbers([c.get(key, _ABSENT) for c in curves], False, False)
        if got is None:
            return None
        columns[key] = got
    if "points" in curve_keys:
        points = np.full(n, None, dtype=object)
        rows = [i for i, c in enumerate(curves) if "points" in c]
        for i in rows:  # one by one: numpy would make a 2-D array of lists of equal length
            p = curves[i]["points"]
            if type(p) is not list or family[i] != "piecewise":
                return None
            points[i] = p
            count += 1 + sum(type(q) is list or type(q) is dict for q in p)
        columns["points"] = points
    values = [c.get("value", _MISSING) for c in cells]
    kinds = set(map(type, values))
    if kinds <= _NUMBER:  # every cell has a number (a missing one is _MISSING, of another type)
        columns["value"] = _numbers(values, False, True)
    elif kinds <= _NUMBER | {dict}:
        count += 2 * sum(type(v) is dict for v in values)
        if not _lifetime_values(values, columns):
            return None
    else:
        return None
    if columns.get("value") is None:
        return None
    # text stays as Python objects: the table code reads it back as such (no round trip through Arrow)
    return pd.DataFrame({k: pd.Series(v, dtype=object, copy=False) if v.dtype == object else v
                         for k, v in columns.items()}, copy=False), count


_TASKS = frozenset(TASKS)
_FAMILY_NAMES = frozenset(FAMILIES)
_CELL_KEYS = frozenset(("pool", "value", "curve", *_MONEY))
_NUMBER = frozenset((int, float))


def _only(items: list[Any], kind: type) -> bool:
    """Every item of ``items`` is exactly of type ``kind`` (bool is not int: the schema is strict)."""
    return not items or set(map(type, items)) == {kind}


def _numbers(items: list[Any], nullable: bool, required: bool) -> np.ndarray | None:
    """``items`` (:data:`_ABSENT` where a key is missing) as floats, nan where missing (or ``None`` when
    ``nullable``); ``None`` when any item is of another type (bool, text, ...), not finite, or
    missing though ``required``."""
    kinds = set(map(type, items))
    if type(None) in kinds:
        if not nullable:
            return None
        items = [_ABSENT if v is None else v for v in items]
        kinds.discard(type(None))
    if not kinds <= _NUMBER:
        return None
    out = np.array(items, dtype=float)
    # list.count finds the marker by identity: any other nan was written in the file (the schema refuses it)
    absent = items.count(_ABSENT)
    if (required and absent) or int(np.isnan(out).sum()) != absent or np.isinf(out).any():
        return None
    return out


def _lifetime_values(values: list[Any], columns: dict[str, Any]) -> bool:
    """Numbers into ``value``, ``{clv: {...}}`` mappings into the ``clv_*`` columns; False when a mapping
    is not of the schema's shape."""
    n = len(values)
    number = np.full(n, np.nan)
    clv = {c: np.full(n, np.nan) for c in _CLV.values()}
    timing = np.full(n, None, dtype=object)
    for i, v in enumerate(values):
        if type(v) is not dict:
            if not math.isfinite(v):
                return False
            number[i] = v
            continue
        inner = v.get("clv")
        if len(v) != 1 or type(inner) is not dict:
            return False
        for key, x in inner.items():
            if key == "timing":
                if type(x) is not str:
                    return False
                timing[i] = x
            elif key in _CLV and (type(x) is int or type(x) is float) and math.isfinite(x):
                clv[_CLV[key]][i] = x
            elif not (key == "horizon" and x is None):
                return False
    columns["value"] = number
    columns.update({k: a for k, a in clv.items() if not np.isnan(a).all()})
    if (timing != None).any():  # noqa: E711  (elementwise)
        columns["clv_timing"] = timing
    return True
