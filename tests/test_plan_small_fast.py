"""The small-plan fast paths give what the paths they shortcut gave, bit for bit.

A plan's table is built on first access (its JSON is read off the arrays), small texts are
factorized with a dict, the check's median and closeness test skip numpy's wrappers, and the
curves' slopes are computed with fewer calls. Each is compared here with the straightforward
computation it replaced (pandas, numpy's own functions, the former formulas).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from allocator.cli.plan_cmd import plan_json
from allocator.compile import compile_scenario
from allocator.curves import get_family
from allocator.explain.patterns import factorize_text
from allocator.explain.prices import _slopes, capped, nudged_slopes
from allocator.optimality import _isclose, _median
from allocator.plan import Plan, _jsonable, make_plan
from allocator.spec import load_scenario

from helpers import random_problem


def _problems():
    out = [compile_scenario(load_scenario("scenarios/example.yaml")),
           compile_scenario(load_scenario("scenarios/constrained.yaml"))]
    for n, fam in ((5, ("exponential",)), (22, ("exponential", "hill")), (300, ("exponential", "hill"))):
        out.append(random_problem(n, seed=n, families=fam))
    p = random_problem(40, seed=3, families=("exponential", "hill"), use_all=True)
    cur = np.where(np.arange(40) % 3 == 0, np.nan, p.pool * 2.0)
    out.append(dataclasses.replace(p, current_spend=cur))
    return out


def _frame_json(plan: Plan) -> dict:
    """The JSON of a plan as first written: from the frame, through pandas."""
    cells = plan.table.astype(object).where(plan.table.notna(), None).to_dict("records")
    return {"summary": _jsonable(dataclasses.asdict(plan.summary)), "cells": _jsonable(cells)}


@pytest.mark.parametrize("k", range(6))
def test_json_of_an_unbuilt_table_is_the_frames(k):
    problem = _problems()[k]
    plan = make_plan(problem)
    assert plan._unbuilt_columns() is not None
    fast = json.dumps(plan_json(plan))
    assert plan._unbuilt_columns() is not None  # the JSON did not build the frame
    frame = plan.table
    assert isinstance(frame, pd.DataFrame) and plan._unbuilt_columns() is None
    assert fast == json.dumps(plan_json(plan)) == json.dumps(_frame_json(plan))
    assert list(frame.columns[:12]) == ["segment", "task", "pool", "spend", "spend_per_member", "response_rate",
                                        "expected_successes", "expected_value", "marginal_return", "bound",
                                        "required_return", "binding_rules"]


def test_a_lazy_table_is_the_plan_of_its_moment_and_a_dataclass_field():
    problem = _problems()[0]
    plan = make_plan(problem)
    spend = plan.result.spend.copy()
    plan.result.spend[:] = -1.0  # a caller's later change does not reach the table
    np.testing.assert_array_equal(plan.table["spend"].to_numpy(), spend)
    other = dataclasses.replace(plan, table=plan.table.head(3))
    assert len(other.table) == 3 and len(plan.table) == problem.n
    assert "table=" in repr(plan)
    assert plan == dataclasses.replace(plan)


def test_json_of_unusual_columns_goes_through_the_frame():
    plan = make_plan(_problems()[2])
    cols = plan._unbuilt_columns()
    cols["note"] = np.array(["a", None, float("nan"), "b", 3][:plan.problem.n], dtype=object)
    cols["count"] = np.arange(plan.problem.n)
    cols["half"] = np.linspace(0, 1, plan.problem.n, dtype=np.float32)
    cols["big"] = np.where(np.arange(plan.problem.n) % 2 == 0, np.inf, -np.inf)
    fast = json.dumps(plan_json(plan))
    assert fast == json.dumps(_frame_json(plan))


def test_factorize_text_is_pandas():
    rng = np.random.default_rng(0)
    words = np.array(["a", "b", "c", "retention", "", "é"], dtype=object)
    cases = [words[rng.integers(0, len(words), n)] for n in (0, 1, 7, 22, 256, 257, 2000)]
    cases += [np.array(["x", None, "y", "x"], dtype=object), np.array(["x", np.nan, "x"], dtype=object),
              np.array(["s1", "s2", "s1"]), np.array([1, 2, 1], dtype=object)]
    for values in cases:
        codes, uniques = factorize_text(values)
        want_codes, want_uniques = pd.factorize(np.asarray(values, dtype=object), sort=False)
        np.testing.assert_array_equal(codes, want_codes)
        assert list(uniques) == list(want_uniques)


def test_median_and_isclose_are_numpys():
    rng = np.random.default_rng(1)
    odd = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e308, -1e308, 5e-324, 1.0, 1.0 + 2e-16]
    for trial in range(3000):
        n = int(rng.integers(1, 90))
        a = rng.normal(1.0, 0.3, n) * 10.0 ** rng.integers(-3, 4)
        if trial % 3 == 0:
            a[rng.integers(0, n, 2)] = rng.choice(odd, 2)
        if trial % 5 == 0:
            with np.errstate(over="ignore", invalid="ignore"):
                a = np.round(a, 1)  # ties
        with np.errstate(over="ignore"):
            got, want = _median(a), float(np.median(a))
        assert got == want or (np.isnan(got) and np.isnan(want)), (a, got, want)
        assert np.signbit(got) == np.signbit(want)
        b = a * (1 + rng.choice([0.0, 1e-7, 1e-6, 2e-6, -1e-6], n))
        if trial % 4 == 0:
            b[rng.integers(0, n, 2)] = rng.choice(odd, 2)
        with np.errstate(over="ignore"):
            np.testing.assert_array_equal(_isclose(a, b, 1e-6), np.isclose(a, b, rtol=1e-6, atol=0))


def _capped_before(a, reference):
    cap = 1e9 * max(float(np.max(np.where(np.isfinite(reference), np.abs(reference), 0.0), initial=1.0)), 1.0)
    return np.minimum(np.nan_to_num(a, nan=0.0, posinf=cap), cap)


def test_capped_is_the_former_formula():
    rng = np.random.default_rng(2)
    for trial in range(500):
        a = rng.normal(0, 10, 12) * 10.0 ** rng.integers(-300, 300, 12)
        a[rng.integers(0, 12, 3)] = rng.choice([np.inf, -np.inf, np.nan, 0.0, -0.0], 3)
        ref = a if trial % 2 else rng.normal(0, 1e300, 12)
        got, want = capped(a, ref), _capped_before(a, ref)
        assert got.tobytes() == want.tobytes()


def _curve_slopes_before(problem, s):
    nudge = 1e-9 * np.maximum(s, 1.0)
    right = np.minimum(_slopes(problem, s, "right"), _slopes(problem, s + nudge, "right"))
    left = np.maximum(_slopes(problem, s, "left"), _slopes(problem, np.maximum(s - nudge, 0.0), "left"))
    return right, left


@pytest.mark.parametrize("k", range(6))
def test_nudged_slopes_are_the_four_passes(k):
    problem = _problems()[k]
    rng = np.random.default_rng(k)
    for s in (make_plan(problem).spend, np.zeros(problem.n), rng.uniform(0, 5, problem.n) * problem.pool):
        right, left, at_plan = nudged_slopes(problem, s)
        want_right, want_left = _curve_slopes_before(problem, s)
        assert right.tobytes() == want_right.tobytes() and left.tobytes() == want_left.tobytes()
        assert (problem.value * at_plan).tobytes() == problem.marginal_return(s).tobytes()


def _piecewise_slopes_before(P):
    X, Y = P["x"], P["p"]
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.diff(Y, axis=1) / np.diff(X, axis=1)
    s = np.where(np.isfinite(s), s, 0.0)
    return np.concatenate([s, np.zeros((len(X), 1))], axis=1)


def test_piecewise_slopes_and_concavity_are_the_former_loops():
    fam = get_family("piecewise")
    rng = np.random.default_rng(3)
    raws = []
    for _ in range(300):
        m = int(rng.integers(2, 7))
        x = np.concatenate([[0.0], np.cumsum(rng.uniform(0.1, 50, m - 1))])
        p = np.sort(rng.uniform(0, 1, m)) if rng.random() < 0.7 else rng.uniform(0, 1, m)
        raws.append({"points": [[float(a), float(b)] for a, b in zip(x, p)]})
    P = fam.pack(raws)  # padded rows: inf beyond each table's last point
    assert fam._slopes(P).tobytes() == _piecewise_slopes_before(P).tobytes()
    s = _piecewise_slopes_before(P)
    finite = np.isfinite(P["x"])
    ok = np.ones(len(s), dtype=bool)
    for j in range(1, s.shape[1]):
        ok &= ~finite[:, j] | (s[:, j] <= s[:, j - 1] + 1e-15)
    np.testing.assert_array_equal(fam.is_concave(P), ok)


def test_hill_slope_is_the_former_formula():
    fam = get_family("hill")
    rng = np.random.default_rng(4)
    n = 4000
    P = {"ceiling": rng.uniform(0.1, 1, n), "floor": np.zeros(n), "half_saturation": 10.0 ** rng.uniform(-12, 308, n),
         "shape": rng.choice([0.3, 0.5, 1.0, 1.5, 3.0, 50.0], n)}
    x = np.where(rng.random(n) < 0.1, 0.0, 10.0 ** rng.uniform(-10, 308, n))
    k = P["shape"]
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        z = x / P["half_saturation"]
        zk = np.power(z, k)
        d = k * np.power(z, k - 1.0) / (P["half_saturation"] * (1.0 + zk) ** 2)
        d = np.where(np.isinf(zk), 0.0, d)
        d = np.where(z == 0, np.where(k < 1, np.inf, np.where(k == 1, 1.0 / P["half_saturation"], 0.0)), d)
        frac = np.where(np.isinf(zk), 1.0, zk / (1.0 + zk))
    with np.errstate(over="ignore"):
        got_slope, got_response = fam.slope(x, P), fam.response(x, P)
    assert got_slope.tobytes() == ((P["ceiling"] - P["floor"]) * d).tobytes()
    assert got_response.tobytes() == (P["floor"] + (P["ceiling"] - P["floor"]) * frac).tobytes()
