"""A value that depends on spend (``value_curve``): expected one-off value ``pool p(x) value v(x)``.

Truth: a fine grid plus a bounded scalar search of the one-period objective, written here from
the formula; over two periods with a budget, SLSQP on the direct formulation from several starts.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from allocator.dynamic import compile_dynamic, dynamic_from_dict, plan_dynamic
from allocator.dynamic.direct import solve_direct

POINTS = [[0, 1.0], [150, 0.8], [400, 0.55], [800, 0.5]]   # deeper win-back offers, cheaper customers


def _v(x):
    xs, vs = zip(*POINTS)
    return np.interp(x, xs, vs)


def _winback(periods=1, budget=None) -> dict:
    data = {"name": "vc", "periods": periods, "discount": 0.03, "segments": [{
        "id": "lapsed_b2b", "members": {"lapsed": 500.0, "active": 200.0}, "margin": 0.0,
        "tasks": {"winback": {"value": 2000.0, "value_curve": {"family": "piecewise", "points": POINTS},
                              "curve": {"family": "exponential", "floor": 0.02, "ceiling": 0.35, "rate": 0.006}},
                  "retention": {"curve": {"family": "exponential", "floor": 0.7, "ceiling": 0.9, "rate": 0.02},
                                "value": 300.0}}}]}
    if budget is not None:
        data["budget"] = {"per_period": budget}
    return data


def test_one_period_value_curve_matches_a_grid():
    plan = plan_dynamic(compile_dynamic(dynamic_from_dict(_winback())))

    def wb(x):
        p = 0.02 + 0.33 * (1 - np.exp(-0.006 * x))
        return 500 * (p * 2000 * _v(x) - x)

    def ret(x):
        return 200 * ((0.7 + 0.2 * (1 - np.exp(-0.02 * x))) * 300 - x)

    xs = np.linspace(0, 1500, 150001)
    i = int(np.argmax(wb(xs)))
    best_wb = -minimize_scalar(lambda x: -wb(x), bounds=(xs[max(i - 1, 0)], xs[i + 1]), method="bounded",
                               options={"xatol": 1e-10}).fun
    xr = np.log(200 * 0.2 * 0.02 * 300 / 200) / 0.02   # 300 p'(x) = 1
    truth = best_wb + ret(max(xr, 0.0))
    assert plan.summary["customer_equity"] == pytest.approx(truth, rel=1e-9)
    assert plan.summary["optimality_check"]["ok"]


def test_two_periods_with_budgets_against_slsqp():
    problem = compile_dynamic(dynamic_from_dict(_winback(periods=2, budget=[40000.0, 30000.0])))
    plan = plan_dynamic(problem, tolerance=1e-9)
    s = plan.summary
    assert s["optimality_gap"] <= 1e-9 and s["optimality_check"]["feasible"]
    starts = [None, plan.result.best.policy.x] + [np.full(problem.allowed.shape, v) for v in (20.0, 100.0)]
    local = max(solve_direct(problem, x0=x0).value for x0 in starts)
    assert s["customer_equity"] >= local * (1 - 1e-9)
    assert s["upper_bound"] >= local
