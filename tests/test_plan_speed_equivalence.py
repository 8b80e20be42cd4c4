"""The fast plan path writes what the plain one did: totals, sentences, JSON and CSV text, bit for bit.

Plans are assembled with numpy and written a column (or a distinct sentence) at a time; each
test compares that path with the straightforward one it replaced (pandas groupby, one sentence
per cell, ``json.dumps(indent=2)``, a Python call per text cell).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from allocator.explain import words
from allocator.explain.patterns import g4_keys
from allocator.plan import build_plan, group_sums, make_plan
from allocator.problem import EfficiencyConstraint, LinearConstraint
from allocator.solvers import solve

from helpers import random_problem


@pytest.mark.parametrize("sorted_keys", [True, False])
def test_group_sums_are_pandas_groupby_sums_to_the_bit(sorted_keys):
    rng = np.random.default_rng(1)
    for trial in range(200):
        n, k = int(rng.integers(1, 80)), int(rng.integers(1, 9))
        keys = rng.integers(0, k, n)
        codes = pd.factorize(np.sort(keys) if sorted_keys else keys, sort=False)[0]
        values = rng.uniform(-1e6, 1e7, (4, n)) * 10.0 ** rng.uniform(-3, 3, (4, n))
        if trial % 7 == 0:
            values[1, 0] = np.nan  # pandas skips NaN (and leaves its fast path)
        want = pd.DataFrame(values.T).groupby(codes, sort=False).sum().to_numpy()
        np.testing.assert_array_equal(group_sums(codes, codes.max() + 1, values), want)


def test_equal_g4_keys_print_equal():
    rng = np.random.default_rng(2)
    ties = np.array([1.2345, 1.23449999999, 1.23450000001, 9.9995, 9.99949999, 0.99995, 0.999949999, 1e4, 9999.5,
                     99995.0, 1e-5, 0.00012345, 123456789.0, 0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-300,
                     5e-324, 1e300, 2.5, 0.5, 1000.5, 1000.50000001])
    x = np.concatenate([ties, -ties, rng.normal(0, 1, 5000) * 10.0 ** rng.integers(-8, 9, 5000),
                        np.round(rng.uniform(0, 10, 5000), 4) + 5e-5, 1.0 + rng.normal(0, 1e-7, 2000)])
    keys = g4_keys(x)
    text = {}
    for k, v in zip(keys.tolist(), x.tolist()):
        assert text.setdefault(k, f"{v:.4g}") == f"{v:.4g}", (k, v)


def _instances():
    """Single budget with bounds and a baseline; rows, a lock and an efficiency rule; activation floors."""
    p = random_problem(600, seed=3, families=("exponential", "hill"))
    rng = np.random.default_rng(3)
    p = dataclasses.replace(p, current_spend=np.where(rng.random(p.n) < 0.5, rng.uniform(0, 3000, p.n), np.nan),
                            currency="EUR")
    out = [p]
    half = np.flatnonzero(rng.random(p.n) < 0.5)
    rows = (LinearConstraint("pot_a", half, np.ones(len(half)), -np.inf, 0.3 * p.budget, text="pot a", kind="budget"),
            LinearConstraint("ratio", np.arange(p.n), np.where(np.arange(p.n) % 3 == 0, 1.0, -0.4), -np.inf, 0.0,
                             text="ratio", kind="ratio"))
    locked = np.full(p.n, np.nan)
    locked[[5, 17]] = [800.0, 1500.0]
    q = dataclasses.replace(p, constraints=rows, locked=locked, lower=np.where(np.isnan(locked), p.lower, locked),
                            upper=np.where(np.isnan(locked), p.upper, locked),
                            lock_names=np.array(["lock a" if i == 5 else "" for i in range(p.n)], dtype=object))
    out.append(q)
    acq = np.arange(0, p.n, 2)
    plan = solve(q, "auto").spend
    roi = 1.1 * float(q.expected_value(plan)[acq].sum() / max(plan[acq].sum(), 1.0))
    out.append(dataclasses.replace(q, efficiency=(EfficiencyConstraint("roi", acq, q.value[acq], roi, "min_roi", roi,
                                                                       text="roi"),)))
    m = 300
    r = random_problem(m, seed=4, bounds=False)
    out.append(dataclasses.replace(r, min_active=np.where(rng.random(m) < 0.3, rng.uniform(500, 5000, m), 0.0),
                                   activation_cost=np.where(rng.random(m) < 0.3, rng.uniform(100, 3000, m), 0.0)))
    return out


@pytest.mark.parametrize("k", range(4))
def test_sentences_written_per_pattern_are_the_per_cell_sentences(k, monkeypatch):
    problem = _instances()[k]
    result = solve(problem, "auto")
    monkeypatch.setattr(words, "PER_CELL_MAX", 10**9)
    slow = build_plan(problem, result)
    monkeypatch.setattr(words, "PER_CELL_MAX", 0)
    fast = build_plan(problem, result)
    for col in ("binding_rules", "reason"):
        assert list(fast.table[col]) == list(slow.table[col])
    assert fast.table.columns.equals(slow.table.columns)
    assert len(set(fast.table["reason"])) > 1


def _old_plan_json(plan):
    from allocator.plan import _jsonable

    cells = plan.table.astype(object).where(plan.table.notna(), None).to_dict("records")
    return {"summary": _jsonable(dataclasses.asdict(plan.summary)), "cells": _jsonable(cells)}


@pytest.mark.parametrize("k", range(4))
def test_plan_json_and_summary_text_are_unchanged(k):
    from allocator.cli.plan_cmd import plan_json
    from allocator.json_text import dumps_indent2

    plan = make_plan(_instances()[k])
    new, old = plan_json(plan), _old_plan_json(plan)
    assert json.dumps(new, indent=2) == json.dumps(old, indent=2)
    summary = plan.summary.to_dict()
    assert summary == old["summary"]
    assert dumps_indent2(summary) == json.dumps(summary, indent=2)


def test_json_text_is_json_dumps_on_large_and_odd_input(monkeypatch):
    import allocator.json_text as jt
    from allocator.json_text import dumps_indent2

    monkeypatch.setattr(jt, "BIG", 2)
    rows = {f"s{i}": {"spend": float(i) / 3, "share": None if i % 5 == 0 else 1e-30 * i} for i in range(50)}
    odd = {"a": [1, 2.5, None, True, "x\u00e9\n\"%s"], "b": {}, "c": [], "rows": rows,
           "list": [{"name": "=n", "v": float("nan"), "w": float("inf"), "k": 3, "t": False}] * 4,
           "mixed": [{"a": 1}, {"b": [1, 2]}], "nested": {"x": {"y": {"z": [{"q": 1.0}]}}}}
    for obj in (odd, rows, [], {}, [rows, rows], 1.5, "s"):
        assert dumps_indent2(obj) == json.dumps(obj, indent=2)


def test_csv_escaping_of_text_columns_is_unchanged():
    from allocator.io import csv_text, escape_cell

    df = pd.DataFrame({"t": pd.array(["=1+1", "ok, \"q\"", None, "-x", "\tx", "plain", "@a", ""], dtype="str"),
                       "o": np.array(["+a", 1, None, "b", "c", "=d", 2.5, "e"], dtype=object),
                       "v": np.arange(8.0)})
    old = df.copy()
    for i in range(old.shape[1]):
        col = old.iloc[:, i]
        if col.dtype.kind not in "biufcmM":
            old.isetitem(i, col.astype(object).map(escape_cell))
    assert csv_text(df, float_format="%.10g") == old.to_csv(index=False, float_format="%.10g")


@pytest.mark.parametrize("fmt", ["%.10g", "%.12g", "%.17g"])
def test_csv_float_columns_are_pandas_to_csv_text(fmt):
    """csv_text formats float columns itself; the text must be pandas' own, value for value."""
    from allocator.io import csv_safe, csv_text

    rng = np.random.default_rng(7)
    n = 5000
    odd = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-5, 9.9999999995e-5, 1e16, 123456789012.5, 0.1 + 0.2,
           5e-324, 1.7976931348623157e308, 0.5, 2.5, 1234567890.5]
    vals = np.concatenate([rng.standard_normal(n) * 10.0 ** rng.integers(-20, 20, n), odd])
    df = pd.DataFrame({"segment": pd.array([f"s{i}" for i in range(len(vals))], dtype="str"), "v": vals,
                       "w": vals[::-1].copy(), "k": np.arange(len(vals)), "half": np.clip(vals, -1e30, 1e30).astype(np.float32)})
    for kw in ({}, {"na_rep": "NA"}):
        assert csv_text(df, float_format=fmt, **kw) == csv_safe(df).to_csv(index=False, float_format=fmt, **kw)
    assert csv_text(df.iloc[:0], float_format=fmt) == csv_safe(df.iloc[:0]).to_csv(index=False, float_format=fmt)
