"""Rules on per-period spend (`constraints` with `select: {periods}`) and the hurdle objective.

Truth: SLSQP on the direct formulation (flow equations as constraints, from several starts),
finite differences of re-solved plans for the rules' prices, and the hurdle's closed-form
marginal condition on a one-period case.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from allocator.dynamic import compile_dynamic, dynamic_from_dict, plan_dynamic, solve_dynamic
from allocator.dynamic.direct import solve_direct
from allocator.dynamic.examples import random_scenario
from allocator.errors import SpecError


def _base(seed: int = 2, periods: int = 3) -> dict:
    return random_scenario(1, periods, seed=seed, budget="none")


def _free_spend(data: dict) -> np.ndarray:
    return solve_dynamic(compile_dynamic(dynamic_from_dict(data)), tolerance=1e-12).columns[0].outcome.spend


def _slsqp(problem) -> float:
    starts = (0.0, 5.0, 30.0)
    return max(solve_direct(problem, x0=np.full((problem.T, problem.S, 3), x0)).value for x0 in starts)


@pytest.mark.parametrize("rule", ["spend_min", "spend_max", "share_max", "share_min"])
def test_period_rules_match_slsqp(rule):
    data = _base()
    free = _free_spend(data)
    if rule == "spend_min":
        c = {"name": "early_push", "type": "spend", "select": {"periods": [1, 2]}, "min": float(1.4 * free[:2].sum())}
    elif rule == "spend_max":
        c = {"name": "h1_cap", "type": "spend", "select": {"periods": [1, 2]}, "max": float(0.6 * free[:2].sum())}
    elif rule == "share_max":
        c = {"name": "q1_share", "type": "share", "select": {"periods": [1]},
             "max": float(0.6 * free[0] / free.sum())}
    else:
        c = {"name": "late_share", "type": "share", "select": {"periods": [3]},
             "min": float(min(0.9, 1.5 * free[2] / free.sum()))}
    data["constraints"] = [c]
    problem = compile_dynamic(dynamic_from_dict(data))
    plan = plan_dynamic(problem, tolerance=1e-10)
    s = plan.summary
    assert s["status"] == "optimal", s["optimality_check"]
    row = s["budget_rows"][-1]
    assert row["name"].startswith(f"constraints.{c['name']}")
    assert row["shadow_price"] > 0                              # the rule binds
    assert row["spend"] == pytest.approx(row["cap"], abs=1e-7 * free.sum())
    ref = _slsqp(problem)
    assert s["customer_equity"] >= ref - 1e-7 * abs(ref)
    assert s["customer_equity"] == pytest.approx(ref, rel=1e-6)


def test_a_rule_price_is_the_derivative_of_equity():
    data = _base(seed=4)
    free = _free_spend(data)
    cap = float(0.5 * free[:2].sum())
    data["constraints"] = [{"name": "cap12", "type": "spend", "select": {"periods": [1, 2]}, "max": cap}]
    res = solve_dynamic(compile_dynamic(dynamic_from_dict(data)), tolerance=1e-13)

    def equity(v):
        d = copy.deepcopy(data)
        d["constraints"][0]["max"] = v
        return solve_dynamic(compile_dynamic(dynamic_from_dict(d)), tolerance=1e-13).primal

    h = 1e-4 * cap
    assert res.price[-1] == pytest.approx((equity(cap + h) - equity(cap - h)) / (2 * h), rel=1e-5)


def test_hurdle_one_period_closed_form():
    """periods: 1, one acquisition cell: the hurdle optimum solves delta * a'(x) = rate."""
    m, term, ceiling, rate_c, hurdle = 100.0, 400.0, 0.3, 0.02, 1.5
    data = {"name": "h", "periods": 1, "discount": 0.0, "objective": {"type": "hurdle", "rate": hurdle},
            "segments": [{"id": "s", "members": {"prospects": 1000.0}, "margin": m, "terminal": {"active": term},
                          "tasks": {"acquisition": {"curve": {"family": "exponential", "ceiling": ceiling,
                                                              "rate": rate_c}}}}]}
    plan = plan_dynamic(compile_dynamic(dynamic_from_dict(data)))
    delta = m + term
    # delta * ceiling * rate * exp(-rate x) = hurdle
    x = np.log(delta * ceiling * rate_c / hurdle) / rate_c
    row = plan.table.iloc[0]
    assert row.spend_per_member == pytest.approx(x, rel=1e-9)
    ce = 1000.0 * (ceiling * (1 - np.exp(-rate_c * x)) * delta - x)
    assert plan.summary["customer_equity"] == pytest.approx(ce, rel=1e-12)
    assert plan.summary["objective"] == {"type": "hurdle", "rate": hurdle,
                                         "value": pytest.approx(ce - (hurdle - 1) * 1000.0 * x, rel=1e-12)}
    assert plan.summary["by_period"][0]["required_return"] == pytest.approx(hurdle)
    assert plan.summary["status"] == "optimal"


def test_hurdle_with_budget_matches_slsqp():
    data = random_scenario(1, 3, seed=7, budget="per_period", tightness=0.8)
    data["objective"] = {"type": "hurdle", "rate": 1.3}
    problem = compile_dynamic(dynamic_from_dict(data))
    plan = plan_dynamic(problem, tolerance=1e-10)
    assert plan.summary["status"] == "optimal"
    ref = _slsqp(problem)                      # the direct formulation prices spend at the hurdle too
    assert plan.summary["objective"]["value"] == pytest.approx(ref, rel=1e-6)
    assert plan.summary["objective"]["value"] >= ref - 1e-7 * abs(ref)


@pytest.mark.parametrize("rule, msg", [
    ({"name": "r", "type": "spend", "select": {"periods": [5]}, "max": 1.0},
     r"constraints\.r\.select\.periods.*period 5"),
    ({"name": "r", "type": "share", "select": {"periods": [1]}, "max": 1.5}, r"constraints\.r.*fraction"),
    ({"name": "r", "type": "spend", "select": {"periods": [1]}}, r"constraints\.r.*min.*max"),
    ({"name": "r", "type": "spend", "select": {"segments": ["s0"]}, "max": 1.0}, r"selects periods only"),
])
def test_bad_rules_name_the_field(rule, msg):
    data = _base()
    data["constraints"] = [rule]
    with pytest.raises(SpecError, match=msg):
        dynamic_from_dict(data)
