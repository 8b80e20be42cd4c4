"""`use_all` budgets of multi-period plans (spent exactly), against SLSQP on the direct formulation."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from allocator.dynamic import compile_dynamic, dynamic_from_dict, plan_dynamic, solve_dynamic
from allocator.dynamic.direct import solve_direct
from allocator.dynamic.examples import random_scenario
from allocator.errors import SpecError


def _case(seed: int = 2) -> dict:
    return random_scenario(1, 2, seed=seed, budget="none")


def _unconstrained_spend(data: dict) -> np.ndarray:
    res = solve_dynamic(compile_dynamic(dynamic_from_dict(data)), tolerance=1e-12)
    return res.columns[0].outcome.spend


@pytest.mark.parametrize("factor", [1.6, 0.5])
def test_use_all_total_spends_exactly_and_matches_slsqp(factor):
    data = _case()
    free = _unconstrained_spend(data)
    data["budget"] = {"total": float(factor * free.sum()), "use_all": True}
    problem = compile_dynamic(dynamic_from_dict(data))
    plan = plan_dynamic(problem, tolerance=1e-10)
    s = plan.summary
    assert s["status"] == "optimal", s["optimality_check"]
    assert s["total_spend"] == pytest.approx(data["budget"]["total"], rel=1e-9)
    price = s["budget_rows"][0]["shadow_price"]
    assert (price < 0) if factor > 1 else (price > 0)     # forced to spend more: a negative price
    best = max((solve_direct(problem, x0=np.full((2, 1, 3), x0)) for x0 in (0.0, 5.0, 30.0)),
               key=lambda r: r.value)
    assert s["customer_equity"] >= best.value - 1e-7 * abs(best.value)
    assert s["customer_equity"] == pytest.approx(best.value, rel=1e-6)
    # a cap of the same size (not use_all) does at least as well
    capped = copy.deepcopy(data)
    capped["budget"]["use_all"] = False
    assert solve_dynamic(compile_dynamic(dynamic_from_dict(capped))).primal >= s["customer_equity"] - 1e-6


def test_use_all_per_period_and_the_shadow_price_is_the_derivative():
    data = random_scenario(2, 3, seed=4, budget="none")
    free = _unconstrained_spend(data)
    pp = [float(v) for v in free * np.array([1.3, 0.7, 1.2])]
    data["budget"] = {"per_period": pp, "use_all": True}

    def equity(d):
        return solve_dynamic(compile_dynamic(dynamic_from_dict(d)), tolerance=1e-13).primal

    res = solve_dynamic(compile_dynamic(dynamic_from_dict(data)), tolerance=1e-13)
    spend = sum(w * c.outcome.spend for c, w in zip(res.columns, res.weights))
    assert spend == pytest.approx(pp, rel=1e-9)
    for t in range(3):
        h = 1e-4 * pp[t]
        up, down = copy.deepcopy(data), copy.deepcopy(data)
        up["budget"]["per_period"][t] += h
        down["budget"]["per_period"][t] -= h
        assert res.price[t] == pytest.approx((equity(up) - equity(down)) / (2 * h), rel=1e-5, abs=1e-7)
    assert res.price[0] < 0 < res.price[1]


def test_use_all_with_disagreeing_total_is_refused():
    data = _case()
    data["budget"] = {"total": 100.0, "per_period": [30.0, 30.0], "use_all": True}
    with pytest.raises(SpecError, match=r"budget\.use_all.*sum of per_period 60\.00 vs total 100\.00"):
        dynamic_from_dict(data)
