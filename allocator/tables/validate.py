"""Column-wise validation of a cells table, with the YAML path's messages, naming row and column."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..curves import FAMILIES, CurveFamily
from ..errors import Problem, SpecError
from ..spec.models import TASKS
from ..spec.rules import MAX_MONEY, MAX_PARAM, MAX_POOL
from .columns import CLV_COLUMNS, MAX_LISTED, MONEY_COLUMNS, _Columns, _points, _tags_of, _text, param_columns

@dataclass(frozen=True)
class TableProblem(Problem):
    """A problem of one table row: ``cells.parquet row 81,233 (segment s81233, task retention): ...``."""

    source: str = "cells"
    row: int = 0
    segment: str = ""
    task: str = ""
    column: str = ""

    def __str__(self) -> str:
        return (f"{self.source} row {self.row:,} (segment {self.segment}, task {self.task}): "
                f"{self.column} {self.message}")


def _row_cell(cols: _Columns, i: int) -> tuple[str, dict[str, Any], list[str]]:
    """Row ``i`` as a YAML cell mapping (empty columns left out), its segment id and tags."""
    g = cols.num
    cell: dict[str, Any] = {}

    def put(target: dict, key: str, col: str) -> None:
        if col in cols.raw and pd.notna(cols.raw[col].iloc[i]):
            v = cols.raw[col].iloc[i]
            target[key] = v.item() if hasattr(v, "item") else v

    put(cell, "pool", "pool")
    if "value" in cols.raw and pd.notna(cols.raw["value"].iloc[i]):
        put(cell, "value", "value")
    else:
        clv: dict[str, Any] = {}
        for key, col in zip(("margin", "retention", "discount", "horizon", "timing"), CLV_COLUMNS):
            put(clv, key, col)
        if clv:
            cell["value"] = {"clv": clv}
    curve: dict[str, Any] = {}
    fam = cols.raw["family"].iloc[i] if "family" in cols.raw else None
    if fam is not None and not (isinstance(fam, float) and math.isnan(fam)):
        curve["family"] = fam
    for col in param_columns():
        if col == "points" and "points" in cols.raw and pd.notna(cols.raw["points"].iloc[i]):
            try:
                curve["points"] = json.loads(cols.raw["points"].iloc[i])
            except (TypeError, ValueError):
                curve["points"] = cols.raw["points"].iloc[i]
        elif col != "points":
            put(curve, col, col)
    cell["curve"] = curve
    for col in MONEY_COLUMNS:
        put(cell, col, col)
    for k, v in list(cell.items()):
        if isinstance(v, np.generic):
            cell[k] = v.item()
    tags = _tags_of(cols.raw["tags"].iloc[i]) if "tags" in cols.raw else []
    seg = cols.segment[i]
    return ("" if seg is None else str(seg)), cell, tags


def _yaml_problems(cols: _Columns, i: int) -> list[Problem]:
    """What the YAML path says about row ``i``: the row validated as a one-cell scenario."""
    from ..spec import scenario_from_dict

    seg, cell, tags = _row_cell(cols, i)
    task = cols.task[i]
    data = {"name": "row", "segments": [{"id": seg, "tags": tags, "tasks": {str(task): cell}}]}
    try:
        scenario_from_dict(data, allow_files=False)
    except SpecError as exc:
        return [p for p in exc.problems if p.field not in ("segments.id",)]
    return []


def _column_of(field_name: str) -> str:
    """The table column a YAML field lives in (``curve.rate`` -> ``rate``; ``value.clv`` -> ``clv_*``)."""
    if field_name.startswith("segments.0."):
        rest = field_name[len("segments.0."):]
        return {"id": "segment", "tags": "tags"}.get(rest.split(".")[0], rest)
    if field_name.startswith("curve."):
        return field_name.split(".", 1)[1]
    if field_name.startswith("value.clv"):
        rest = field_name.split(".")[2:]
        return f"clv_{rest[0]}" if rest else "clv_margin/clv_retention/clv_discount"
    return field_name


def check_rows(cols: _Columns) -> dict[str, np.ndarray]:
    """Vectorized checks: per rule (named by its column), the mask of rows breaking it."""
    n, g = cols.n, cols.num
    bad: dict[str, np.ndarray] = {}

    def flag(col: str, mask: np.ndarray) -> None:
        mask = np.asarray(mask, bool)
        if mask.any():
            bad[col] = bad[col] | mask if col in bad else mask

    for col, mask in cols.text_bad.items():
        flag(col, mask)
    with np.errstate(invalid="ignore"):
        seg = cols.raw["segment"]
        if pd.api.types.is_string_dtype(seg):
            seg_ok = (seg.notna() & (seg.str.len() > 0)).to_numpy(dtype=bool)
        else:
            seg_ok = np.array([isinstance(v, str) and len(v) > 0 for v in cols.segment], bool)
        flag("segment", ~seg_ok)
        flag("task", ~cols.raw["task"].isin(list(TASKS)).to_numpy(dtype=bool))
        pool = g["pool"]
        flag("pool", ~(pool > 0) | ~(pool <= MAX_POOL))
        value = g["value"]
        has_value = ~np.isnan(value)
        clv_given = ~np.isnan(g["clv_margin"]) | ~np.isnan(g["clv_retention"]) | ~np.isnan(g["clv_discount"])
        flag("value", has_value & (~np.isfinite(value) | (value < 0) | (np.abs(value) > MAX_MONEY)))
        flag("value", ~has_value & ~clv_given)
        flag("value", has_value & clv_given)
        clv_rows = ~has_value & clv_given
        if clv_rows.any():
            m, r, d, h = (g[c] for c in CLV_COLUMNS[:4])
            broken = (np.isnan(m) | np.isnan(r) | np.isnan(d) | ~np.isfinite(np.where(np.isnan(m), 0, m))
                      | ~(r >= 0) | ~(r <= 1) | ~(d >= 0) | (~np.isnan(h) & ~(h >= 1)) | (np.abs(m) > MAX_MONEY))
            infinite = np.isnan(h) & (r / (1.0 + d) >= 1.0)
            timing = _text(cols.raw, "clv_timing", n)
            from ..value.clv import TIMINGS
            bad_timing = np.array([t is not None and t not in TIMINGS for t in timing], bool) \
                if "clv_timing" in cols.raw else np.zeros(n, bool)
            flag("clv_margin", clv_rows & (broken | infinite | bad_timing))
        for col in MONEY_COLUMNS:
            v = g[col]
            given = ~np.isnan(v)
            low_bad = (v <= 0) if col == "min_active_spend" else (v < 0)
            flag(col, given & (~np.isfinite(v) | low_bad | (np.abs(v) > MAX_MONEY)))
        lo = np.where(np.isnan(g["min_spend"]), 0.0, g["min_spend"])
        flag("max_spend", ~np.isnan(g["max_spend"]) & (g["max_spend"] < lo))
        fam_codes, fam_names = pd.factorize(cols.raw["family"])
        known = np.isin(np.asarray(fam_names, dtype=object), list(FAMILIES))
        flag("family", (fam_codes < 0) | ~known[np.maximum(fam_codes, 0)])
        for name, f in FAMILIES.items():
            where = [j for j, nm in enumerate(fam_names) if nm == name]
            rows = fam_codes == where[0] if where else np.zeros(n, bool)
            if not rows.any():
                continue
            declared = {p.name for p in f.params}
            for col in param_columns():
                if col == "points":
                    continue
                v = g[col]
                if col not in declared:
                    flag(col, rows & ~np.isnan(v))
            for p in f.params:
                v = g[p.name]
                missing = rows & np.isnan(v)
                if p.required:
                    flag(p.name, missing)
                vv = np.where(np.isnan(v), p.default if p.default is not None else 0.0, v)
                flag(p.name, rows & (~np.isfinite(vv) | (vv < p.lower) | (vv > p.upper) | (np.abs(vv) > MAX_PARAM)))
            if name == "piecewise":
                pts = _text(cols.raw, "points", n)
                for i in np.flatnonzero(rows):
                    if f.check({"points": _points(pts[i])}):
                        flag("points", np.arange(n) == i)
            elif type(f).check_relations is CurveFamily.ceiling_above_floor:
                fl = np.where(np.isnan(g["floor"]), 0.0, g["floor"])
                flag("ceiling", rows & (g["ceiling"] < fl))
            elif type(f).check_relations is not CurveFamily.check_relations:
                for i in np.flatnonzero(rows):  # a family with its own relations: checked row by row
                    vals = {p.name: float(g[p.name][i]) if not np.isnan(g[p.name][i]) else p.default
                            for p in f.params}
                    if all(v is not None for v in vals.values()) and f.check_relations(vals):
                        flag(p.name, np.arange(n) == i)
    return bad


def _pair_key(cols: _Columns) -> np.ndarray:
    seg_codes, _ = pd.factorize(cols.raw["segment"])
    task_codes, _ = pd.factorize(cols.raw["task"])
    return seg_codes.astype(np.int64) * (len(TASKS) + 8) + task_codes


def validate_cells(df: pd.DataFrame, source: str | None = None) -> list[TableProblem]:
    """Every problem of the table, each naming row (from 1), segment, task and column.

    Empty when the table is sound. Messages are those of the YAML path for the same cell.
    """
    source = source or df.attrs.get("source", "cells")
    cols = _Columns.read(df)
    return _validate(cols, source)


def _validate(cols: _Columns, source: str) -> list[TableProblem]:
    problems: list[TableProblem] = []
    for col in ("segment", "task", "pool", "family"):
        if col not in cols.raw:
            problems.append(TableProblem("", f"is a required column; the table has: "
                                             f"{', '.join(map(str, cols.raw.columns))}", None, source, 0, "-", "-",
                                         f"column {col}"))
    if problems:
        return problems
    bad = check_rows(cols)
    key = _pair_key(cols)
    dup = pd.Series(key).duplicated(keep="first").to_numpy()
    if dup.any():
        bad["segment/task"] = dup
    if not bad:
        return problems
    any_bad = np.zeros(cols.n, bool)
    for m in bad.values():
        any_bad |= m
    rows = np.flatnonzero(any_bad)
    first_of = pd.Series(np.arange(cols.n)).groupby(key).transform("first").to_numpy() if dup.any() else None
    for i in rows[:MAX_LISTED]:
        seg, task = str(cols.segment[i]), str(cols.task[i])
        row_cols = [c for c, m in bad.items() if m[i]]
        if "segment/task" in row_cols:
            problems.append(TableProblem("", f"repeats the cell of row {first_of[i] + 1:,}; each (segment, task) "
                                             f"pair must appear once", None, source, int(i) + 1, seg, task,
                                         "segment/task"))
            row_cols.remove("segment/task")
        if not row_cols:
            continue
        found = _yaml_problems(cols, int(i))
        if not found:  # a rule the one-cell YAML check cannot see (kept for safety): name the columns
            found = [Problem(c, "holds a value outside the allowed range") for c in row_cols]
        for p in found:
            problems.append(TableProblem(p.field, p.message, p.cell, source, int(i) + 1, seg, task,
                                         _column_of(p.field)))
    if len(rows) > MAX_LISTED:
        rest = rows[MAX_LISTED:]
        counts = ", ".join(f"{c}: {int(m[rest].sum()):,}" for c, m in bad.items() if m[rest].any())
        problems.append(TableProblem("", f"... and {len(rest):,} more rows with problems ({counts})", None, source,
                                     int(rest[0]) + 1, str(cols.segment[rest[0]]), str(cols.task[rest[0]]),
                                     "(more)"))
    return problems
