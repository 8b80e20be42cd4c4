"""The second round of small-plan shortcuts gives what the routes they shortcut gave, bit for bit.

Tabulated and shape-1 Hill curves of a few cells are evaluated in Python floats, a block's derived
arrays are kept (and dropped when its parameters change), a smooth family's three slopes are one
call, the check skips masks no cell needs, the solver hands its response at the plan to the table,
and sentences and totals read Python floats. Each is compared here with the general route, taken
directly (the vectorized formula, the former expression, the shortcut switched off).
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
from allocator.curves import piecewise as pw
from allocator.explain import prices as prices_mod
from allocator.explain.decompose import _row_matrix, decompose, required_returns
from allocator.explain.prices import (BOUND_LOCKED, BOUND_LOWER, BOUND_NONE, BOUND_OFF, BOUND_UPPER, BOUND_ZERO,
                                      _cap, _capped_at, classify_bounds, classify_cells, curve_slopes, nudged_slopes)
from allocator.explain.words import _terms_per_cell, cell_reason, formula, reasons
from allocator.optimality import check_optimality
from allocator.plan import _baseline, _totals, build_plan, group_sums, make_plan
from allocator.problem import CurveBlock
from allocator.solvers import solve, solve_with_response
from allocator.spec import load_scenario

from helpers import random_problem
from test_plan_speed_equivalence import _instances


def _problems():
    out = [compile_scenario(load_scenario("scenarios/example.yaml")),
           compile_scenario(load_scenario("scenarios/constrained.yaml"))]
    for n, fam in ((3, ("exponential", "hill")), (22, ("exponential", "hill")), (40, ("hill",))):
        out.append(random_problem(n, seed=n, families=fam))
    p = random_problem(30, seed=5, families=("exponential", "hill"), use_all=True)
    out.append(dataclasses.replace(p, current_spend=np.where(np.arange(30) % 4 == 0, np.nan, p.pool)))
    return out + _instances()


def _tables(rng, cells: int) -> dict:
    raws = []
    for _ in range(cells):
        m = int(rng.integers(2, 6))
        x = np.concatenate([[0.0], np.cumsum(rng.uniform(0.5, 60, m - 1))])
        p = np.sort(rng.uniform(0, 1, m)) if rng.random() < 0.7 else rng.uniform(0, 1, m)
        raws.append({"points": [[float(a), float(b)] for a, b in zip(x, p)]})
    return get_family("piecewise").pack(raws)


def _spends(rng, X: np.ndarray) -> np.ndarray:
    n = len(X)
    x = rng.uniform(0, 1.2, n) * np.nanmax(np.where(np.isfinite(X), X, np.nan), axis=1)
    pick = rng.integers(0, 8, n)
    at_point = X[np.arange(n), rng.integers(0, X.shape[1], n)]
    x = np.where(pick == 0, np.where(np.isfinite(at_point), at_point, 0.0), x)  # exactly on a breakpoint
    x = np.where(pick == 1, rng.choice([0.0, -0.0, -3.0, np.inf, np.nan, 1e300], n), x)
    return x


def test_small_tables_are_the_vectorized_formulas():
    fam = get_family("piecewise")
    rng = np.random.default_rng(11)
    for trial in range(400):
        n = int(rng.integers(1, pw.SMALL + 1))
        P = _tables(rng, n)
        prepared = fam.prepare(P)
        assert pw.ROWS in prepared
        vectorized = {k: v for k, v in prepared.items() if k != pw.ROWS}
        assert prepared[pw.SLOPES].tobytes() == fam._slopes(P).tobytes()
        np.testing.assert_array_equal(fam.is_concave(prepared), fam.is_concave(P))
        x = _spends(rng, P["x"])
        for name in ("response", "slope", "slope_left"):
            got = getattr(fam, name)(x, prepared)
            assert got.tobytes() == getattr(fam, name)(x, vectorized).tobytes() == getattr(fam, name)(x, P).tobytes()
        value, pool = rng.uniform(1, 3000, n), rng.uniform(10, 5000, n)
        small, general = fam.spend_rule(prepared, value, pool), fam.spend_rule(P, value, pool)
        for lam in [1.0, 0.5, 2.0, *rng.uniform(0, 5, 6).tolist(), *(10.0 ** rng.uniform(-8, 8, 4)).tolist()]:
            assert small(lam).tobytes() == general(lam).tobytes()
        levels = rng.uniform(0, 3, n)[:, None]  # per-cell levels (the dual route): the vectorized rule answers
        assert small(levels).tobytes() == general(levels).tobytes()


def test_unsorted_or_large_tables_keep_the_vectorized_route():
    fam = get_family("piecewise")
    P = _tables(np.random.default_rng(1), pw.SMALL + 1)
    assert pw.ROWS not in fam.prepare(P)
    X = np.array([[0.0, 5.0, 3.0, np.inf]])
    assert pw.ROWS not in fam.prepare({"x": X, "p": np.array([[0.1, 0.2, 0.3, 0.3]])})


def test_a_block_keeps_its_derived_arrays_until_its_parameters_change():
    fam = get_family("piecewise")
    P = _tables(np.random.default_rng(2), 3)
    block = CurveBlock(fam, np.arange(3), P)
    first = block.prepared
    assert block.prepared is first and not first[pw.SLOPES].flags.writeable
    P["p"][0, -1] += 0.05  # written in place: the derived slopes are made again
    again = block.prepared
    assert again is not first
    assert again[pw.SLOPES].tobytes() == fam._slopes({"x": P["x"], "p": P["p"]}).tobytes()
    hill = CurveBlock(get_family("hill"), np.arange(2), {"ceiling": np.ones(2) * 0.5, "floor": np.zeros(2),
                                                        "half_saturation": np.ones(2), "shape": np.ones(2)})
    assert hill.prepared is hill.params  # nothing derived: the parameters themselves


def test_small_shape_one_hill_rule_is_the_array_rule():
    fam = get_family("hill")
    rng = np.random.default_rng(3)
    for trial in range(300):
        n = int(rng.integers(1, 17))
        P = {"ceiling": rng.uniform(0, 1, n), "floor": rng.uniform(0, 0.1, n) * (trial % 3 != 0),
             "half_saturation": 10.0 ** rng.uniform(-12, 308, n), "shape": np.ones(n)}
        value, pool = 10.0 ** rng.uniform(-3, 6, n), rng.uniform(1, 1e5, n)
        with np.errstate(all="ignore"):
            small = fam.spend_rule(P, value, pool)
            root = np.sqrt(value * (P["ceiling"] - P["floor"]) * P["half_saturation"])
            for lam in [1.0, *(10.0 ** rng.uniform(-300, 300, 5)).tolist(), 0.0, float("inf")]:
                want = pool * np.maximum(root / np.sqrt(lam) - P["half_saturation"], 0.0)
                assert small(lam).tobytes() == want.tobytes()


def test_hill_special_cases_are_found_as_before():
    fam = get_family("hill")
    P = {"ceiling": np.full(6, 0.5), "floor": np.zeros(6), "half_saturation": np.full(6, 2.0),
         "shape": np.array([0.5, 1.0, 3.0, 2.0, 0.7, 1.0])}
    for x in (np.array([0.0, 0.0, 0.0, -1.0, np.nan, 1e308]), np.array([-2.0, 1.0, 1e300, 0.0, 3.0, np.inf])):
        k, h = P["shape"], P["half_saturation"]
        with np.errstate(all="ignore"):
            z = x / h
            zk = np.power(z, k)
            d = k * np.power(z, k - 1.0) / (h * (1.0 + zk) ** 2)
            d = np.where(np.isinf(zk), 0.0, d)
            d = np.where(z == 0, np.where(k < 1, np.inf, np.where(k == 1, 1.0 / h, 0.0)), d)
            frac = np.where(np.isinf(zk), 1.0, zk / (1.0 + zk))
            assert fam.slope(x, P).tobytes() == (0.5 * d).tobytes()
            assert fam.response(x, P).tobytes() == (0.5 * frac).tobytes()


def test_exponential_rule_without_masks_is_the_masked_one():
    fam = get_family("exponential")
    rng = np.random.default_rng(4)
    for trial in range(200):
        n = int(rng.integers(1, 40))
        P = {"ceiling": rng.uniform(0.1, 1, n), "floor": rng.uniform(0, 0.1, n), "rate": 10.0 ** rng.uniform(-6, 3, n)}
        value, pool = rng.uniform(1, 5000, n), rng.uniform(1, 1e4, n)
        rule = fam.spend_rule(P, value, pool)
        amp = value * (P["ceiling"] - P["floor"]) * P["rate"]
        live = amp > 0
        inv_rate = np.where(live, 1.0 / np.where(live, P["rate"], 1.0), 0.0)
        intercept = pool * np.where(live, np.log(np.where(live, amp, 1.0)) * inv_rate, -1.0)
        inv_rate = pool * inv_rate
        for lam in rng.uniform(0.01, 20, 5).tolist():
            want = inv_rate * -np.log(lam) + intercept
            assert rule(lam).tobytes() == np.maximum(want, 0.0).tobytes()


@pytest.mark.parametrize("k", range(len(_problems())))
def test_stacked_slopes_are_three_calls(k, monkeypatch):
    problem = _problems()[k]
    rng = np.random.default_rng(k)
    spends = [solve(problem, "auto").spend, np.zeros(problem.n), rng.uniform(0, 5, problem.n) * problem.pool]
    fast = [nudged_slopes(problem, s) for s in spends]
    monkeypatch.setattr(prices_mod, "STACK_MAX", -1)
    for s, got in zip(spends, fast):
        for a, b in zip(got, nudged_slopes(problem, s)):
            assert a.tobytes() == b.tobytes()


def _decompose_before(problem, s, prices, bound, unit_steps):
    """decompose's masks, prices and deviations as written before the shortcuts (every mask, every class)."""
    W = problem.value if problem.objective.kind != "target" else np.asarray(problem.objective.weight, float)
    pr, pl = curve_slopes(problem, s, unit_steps)
    cap = _cap(W * pr)
    right, left = _capped_at(W * pr, cap), _capped_at(W * pl, cap)
    names = list(prices.rows)
    A = _row_matrix(problem, names)
    y = np.array([prices.rows[k] for k in names], float)
    req = (np.full(problem.n, float(prices.base)) + (A @ y if names else 0.0)) / np.ones(problem.n)
    floor = problem.min_active if problem.min_active is not None else np.zeros(problem.n)
    is_ = lambda label: bound == label  # noqa: E731
    at_floor = (floor > 0) & is_(BOUND_NONE) & (s <= floor * (1 + 1e-9))
    fixed = (problem.upper <= problem.lower) & ~is_(BOUND_LOCKED)
    interior = is_(BOUND_NONE) & ~at_floor & ~fixed
    lower_side = ((is_(BOUND_LOWER) | is_(BOUND_ZERO)) | at_floor) & ~fixed
    upper_side = is_(BOUND_UPPER) & ~fixed
    scale = np.maximum(np.maximum(np.abs(right), np.abs(left)), np.maximum(np.abs(req), 1.0))
    dev_hi = np.maximum(right - req, 0.0) / scale
    dev_lo = np.maximum(req - left, 0.0) / scale
    dev = np.where(interior, np.maximum(dev_hi, dev_lo), np.where(lower_side, dev_hi, np.where(upper_side, dev_lo, 0.0)))
    mid = np.where(interior, 0.5 * (right + left), right)
    price = np.where(lower_side | fixed, np.maximum(req - right, 0.0), np.zeros(problem.n))
    price = np.where(upper_side, np.maximum(left - req, 0.0), price)
    price = np.where(is_(BOUND_LOCKED), mid - req, price)
    return req, dev, price, float(np.max(np.where(interior, dev, 0.0), initial=0.0))


@pytest.mark.parametrize("k", range(len(_problems())))
def test_decomposition_is_the_full_expressions(k):
    problem = _problems()[k]
    s = solve(problem, "auto").spend
    report = check_optimality(problem, s)
    d = report.decomposition
    if not problem.efficiency and problem.objective.kind == "net_value":
        req, dev, price, kkt = _decompose_before(problem, s, d.prices, d.bound, d.unit_steps)
        assert d.required.tobytes() == req.tobytes() and d.deviation.tobytes() == dev.tobytes()
        assert d.cell_price.tobytes() == price.tobytes() and d.kkt_max_deviation == kkt
    for label in (BOUND_NONE, BOUND_LOWER, BOUND_UPPER, BOUND_ZERO, BOUND_LOCKED, BOUND_OFF):
        np.testing.assert_array_equal(d.cells_with(label), np.flatnonzero(d.bound == label))
        assert (label in d.bound_masks) == bool((d.bound == label).any())
    # the single budget's required returns without the row matrix: as with it
    if not problem.constraints and not d.prices.efficiency:
        req, terms, _ = required_returns(problem, d.prices)
        names = list(d.prices.rows)
        A = _row_matrix(problem, names)
        y = np.array([d.prices.rows[k] for k in names], float)
        want = (np.full(problem.n, float(d.prices.base)) + (A @ y if names else 0.0)) / np.ones(problem.n)
        assert req.tobytes() == want.tobytes() and terms.A.tobytes() == A.tobytes()


def test_classify_bounds_is_the_former_formula():
    rng = np.random.default_rng(5)
    for problem in _problems():
        for s in (solve(problem, "auto").spend, rng.uniform(0, 2, problem.n) * problem.pool,
                  np.where(rng.random(problem.n) < 0.5, problem.lower, problem.upper)):
            s = np.where(np.isfinite(s), s, problem.lower)
            lo, up = problem.lower, problem.upper
            scale = np.maximum(np.maximum(np.abs(lo), np.where(np.isfinite(up), up, 0)), np.maximum(s, 1.0))
            eps = 1e-7 * scale + 1e-9 * max(float(np.sum(s)), 1.0)
            width = up - lo
            eps = np.where(np.isfinite(width) & (width > 0), np.minimum(eps, 0.25 * width), eps)
            at_lo, at_hi = s <= lo + eps, np.isfinite(up) & (s >= up - eps)
            want = np.full(problem.n, BOUND_NONE, dtype=object)
            want[at_hi] = BOUND_UPPER
            want[at_lo & (lo <= eps)] = BOUND_ZERO
            want[at_lo & (lo > eps)] = BOUND_LOWER
            assert list(classify_bounds(problem, s)) == list(want)


@pytest.mark.parametrize("k", range(len(_problems())))
def test_sentences_from_floats_are_cell_reason(k):
    problem = _problems()[k]
    s = solve(problem, "auto").spend
    d = check_optimality(problem, s).decomposition
    floor = problem.min_active if problem.min_active is not None else np.zeros(problem.n)
    want = [cell_reason(problem, d, s, i, problem.currency or "", floor, formula(problem, d, i)) for i in range(problem.n)]
    assert list(reasons(problem, d, s)) == want
    rows, effs = _terms_per_cell(d, problem.n)
    assert rows == [d.terms[i] for i in range(problem.n)] and effs == [d.efficiency_terms[i] for i in range(problem.n)]


@pytest.mark.parametrize("k", range(len(_problems())))
def test_kept_response_and_unit_value_factors_are_the_general_plan(k, monkeypatch):
    import importlib

    plan_mod = importlib.import_module("allocator.plan")  # (``allocator.plan`` the attribute is the function)
    problem = _problems()[k]
    result, kept = solve_with_response(problem, "auto")
    if kept is not None:
        assert kept.tobytes() == problem.response(result.spend).tobytes()
    fast = build_plan(problem, result, response=kept)
    monkeypatch.setattr(plan_mod, "_has_value_curves", lambda p: True)  # the value-curve route: factors of 1
    slow = build_plan(problem, result)
    fast_json, slow_json = plan_json(fast), plan_json(slow)
    for j in (fast_json, slow_json):
        j["summary"].pop("solve_seconds")
    assert json.dumps(fast_json) == json.dumps(slow_json)
    assert fast.table.to_csv(float_format="%.17g") == slow.table.to_csv(float_format="%.17g")
    resp, slope = problem.response_and_slope(result.spend)
    assert resp.tobytes() == problem.response(result.spend).tobytes()
    assert (problem.value * slope).tobytes() == problem.marginal_return(result.spend).tobytes()


def test_the_exact_solver_hands_over_the_response_of_its_spend():
    problem = _problems()[0]
    result, kept = solve_with_response(problem, "exact")
    assert kept is not None and kept.tobytes() == problem.response(result.spend).tobytes()
    assert dataclasses.asdict(solve(problem, "exact")).keys() == dataclasses.asdict(result).keys()
    assert result.optimality_gap == max(result.upper_bound - problem.net_value(result.spend), 0.0) / max(
        abs(problem.net_value(result.spend)), 1e-12)


def test_group_sums_of_few_cells_are_pandas_whatever_the_codes():
    rng = np.random.default_rng(6)
    for trial in range(300):
        n, k = int(rng.integers(1, 60)), int(rng.integers(1, 7))
        codes = np.sort(rng.integers(0, k, n)) if trial % 2 else rng.integers(0, k, n)
        values = rng.normal(0, 1e6, (4, n)) * 10.0 ** rng.uniform(-3, 3, (4, n))
        want = pd.DataFrame(values.T).groupby(codes).sum().reindex(range(k), fill_value=0.0).to_numpy()
        assert group_sums(codes, k, values).tobytes() == np.ascontiguousarray(want).tobytes() or \
            np.array_equal(group_sums(codes, k, values), want)


def test_totals_net_and_share_are_the_array_formulas():
    for problem in _problems():
        plan = make_plan(problem)
        cols = plan._unbuilt_columns()
        for key in (problem.task, problem.segment):
            got = _totals(key, cols)
            codes, uniques = pd.factorize(np.asarray(key, dtype=object), sort=False)
            sums = group_sums(codes, len(uniques), np.array([cols[c] for c in ("spend", "expected_value",
                                                                               "expected_successes",
                                                                               "activation_cost")], float))
            spend, value, act = sums[:, 0], sums[:, 1], sums[:, 3]
            net, total = value - spend - act, np.sum(spend)
            share = spend / total if total > 0 else np.zeros(len(uniques))
            assert [g["net_value"] for g in got.values()] == net.tolist()
            assert [g["spend_share"] for g in got.values()] == share.tolist()
            assert all(type(v) is float for g in got.values() for v in g.values())


def test_baseline_order_without_nan_is_the_sorted_frame_order():
    rng = np.random.default_rng(7)
    problem = _problems()[0]
    plan = make_plan(problem)
    cur = np.where(np.isnan(problem.current_spend), problem.lower, problem.current_spend)
    for trial in range(50):
        change = np.round(rng.normal(0, 3, problem.n))  # ties
        got = _baseline(problem, cur, plan.summary and _money(problem, plan), change)
        frame = pd.DataFrame({"c": change}).sort_values("c", kind="quicksort")
        order = frame.index.to_numpy()
        assert [c["spend_change"] for c in got["largest_cuts"]] == [float(change[i]) for i in order[:3] if change[i] < 0]
        assert [(c["segment"], c["task"]) for c in got["largest_increases"]] == [
            (problem.segment[i], problem.task[i]) for i in order[::-1][:3] if change[i] > 0]


def _money(problem, plan):
    from allocator.money import money_of

    return money_of(problem, plan.spend)


def test_cell_classes_need_no_copy_for_plain_problems():
    problem = _problems()[0]
    s = solve(problem, "auto").spend
    bound = classify_bounds(problem, s)
    cls = classify_cells(problem, s, bound)
    assert list(cls) == list(bound) and cls is not bound
    d = decompose(problem, s, check_optimality(problem, s).decomposition.prices, {}, cls)
    assert d.cells_with(BOUND_LOCKED).size == 0
