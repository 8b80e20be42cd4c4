"""Each rule of the constraint language on a case whose answer is derived by hand.

Two exponential cells (p = c (1 - exp(-r x)), marginal return v c r exp(-r s / pool)):

* A: pool 100, value 50, c 0.5, r 0.1  -> v c r = 2.5, free optimum s = 1000 ln 2.5 = 916.29
* B: pool 200, value 100, c 0.4, r 0.05 -> v c r = 2.0, free optimum s = 4000 ln 2 = 2772.59
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import allocator
from allocator.errors import SpecError
from helpers import exp_cell, scenario

A = ("a", "retention")
B = ("b", "acquisition")


def m_a(s):
    return 2.5 * math.exp(-0.1 * s / 100)


def m_b(s):
    return 2.0 * math.exp(-0.05 * s / 200)


def two_cells(**kw):
    return {A: exp_cell(100, 50, 0.5, 0.1, **kw.pop("a", {})), B: exp_cell(200, 100, 0.4, 0.05, **kw.pop("b", {}))}


def solve(constraints=(), budget=None, **extra):
    sc = scenario(two_cells(), budget=budget, constraints=list(constraints), **extra)
    return allocator.plan(sc)


def spend(plan, cell):
    t = plan.table
    return float(t.loc[(t.segment == cell[0]) & (t.task == cell[1]), "spend"].iloc[0])


def price(plan, name):
    return next(b["shadow_price"] for b in plan.summary.binding_constraints if b["name"] == name)


def test_no_constraints_free_optima():
    p = solve()
    assert spend(p, A) == pytest.approx(1000 * math.log(2.5), rel=1e-9)
    assert spend(p, B) == pytest.approx(4000 * math.log(2.0), rel=1e-9)


def test_group_floor_forces_spend_past_the_optimum():
    p = solve([{"name": "ret_floor", "type": "spend", "select": {"tasks": ["retention"]}, "min": 1500}])
    assert p.summary.solver == "dual"      # concave curves with a rule: the convex dual route
    assert spend(p, A) == pytest.approx(1500, rel=1e-7)
    assert spend(p, B) == pytest.approx(4000 * math.log(2.0), rel=1e-6)
    # the floor costs 1 - m_A(1500) per currency unit
    assert price(p, "ret_floor") == pytest.approx(1 - m_a(1500), rel=1e-5)
    assert p.summary.status == "optimal"
    assert p.summary.optimality_gap <= 1e-4


def test_group_cap_by_segment():
    p = solve([{"name": "b_cap", "type": "spend", "select": {"segments": ["b"]}, "max": 2000}])
    assert spend(p, B) == pytest.approx(2000, rel=1e-7)
    assert spend(p, A) == pytest.approx(1000 * math.log(2.5), rel=1e-6)
    assert price(p, "b_cap") == pytest.approx(m_b(2000) - 1, rel=1e-5)


def test_share_floor_with_budget_predicted_marginals():
    # budget 2000 binds; retention (A) must get >= 60%: A = 1200, B = 800.
    # KKT: m_A = 1 + y_b + 0.4 y_s, m_B = 1 + y_b - 0.6 y_s  (share row A - 0.6 (A + B) >= 0)
    p = solve([{"name": "ret_share", "type": "share", "select": {"tasks": ["retention"]}, "min": 0.6}],
              budget=2000)
    assert spend(p, A) == pytest.approx(1200, rel=1e-6)
    assert spend(p, B) == pytest.approx(800, rel=1e-6)
    t = p.table.set_index("segment")
    assert t.loc["a", "marginal_return"] == pytest.approx(m_a(1200), rel=1e-6)
    assert t.loc["b", "marginal_return"] == pytest.approx(m_b(800), rel=1e-6)
    assert price(p, "ret_share") == pytest.approx(m_b(800) - m_a(1200), rel=1e-4)
    assert p.summary.budget_shadow_price == pytest.approx(0.6 * m_a(1200) + 0.4 * m_b(800) - 1, rel=1e-4)
    assert p.summary.status == "optimal"


def test_ratio_cap_with_budget():
    # spend(A) <= 0.2 spend(B) and A + B = 1500 -> A = 250, B = 1250
    p = solve([{"name": "ret_vs_acq", "type": "ratio", "numerator": {"tasks": ["retention"]},
                "denominator": {"tasks": ["acquisition"]}, "max": 0.2}], budget=1500)
    assert spend(p, A) == pytest.approx(250, rel=1e-6)
    assert spend(p, B) == pytest.approx(1250, rel=1e-6)
    y_r = (m_a(250) - m_b(1250)) / 1.2
    assert price(p, "ret_vs_acq") == pytest.approx(y_r, rel=1e-4)
    assert p.summary.budget_shadow_price == pytest.approx(m_a(250) - 1 - y_r, rel=1e-4)


def test_lock_and_budget():
    p = solve([{"name": "lock_b", "type": "lock", "select": {"segments": ["b"]}, "spend": 1000}], budget=1500)
    assert spend(p, B) == pytest.approx(1000, abs=1e-9)
    assert spend(p, A) == pytest.approx(500, rel=1e-9)
    assert p.summary.budget_shadow_price == pytest.approx(m_a(500) - 1, rel=1e-6)
    assert p.summary.solver == "exact"  # a lock is a pair of bounds: the exact solver keeps it


def test_lock_at_current_spend():
    cells = two_cells()
    cells[A]["current_spend"] = 700.0
    p = allocator.plan(scenario(cells, constraints=[{"name": "keep", "type": "lock", "select": {"segments": ["a"]},
                                                     "spend": "current"}]))
    assert spend(p, A) == 700.0


def _single(min_active=None, activation_cost=0.0, unit=None):
    cell = exp_cell(100, 50, 0.5, 0.1, activation_cost=activation_cost)
    if min_active is not None:
        cell["min_active_spend"] = min_active
    data = scenario({A: cell})
    if unit is not None:
        data["budget"] = {"unit": unit}
    return allocator.plan(data)


def net(s):
    return 2500 * (1 - math.exp(-s / 1000)) - s


@pytest.mark.parametrize("min_active, expected", [(2000, 2000.0), (3000, 0.0)])
def test_min_active_spend(min_active, expected):
    # net(2000) = 2500 (1 - e^-2) - 2000 = 161.7 > 0: run at the floor; net(3000) = -624.7 < 0: stay off
    assert net(2000) > 0 > net(3000)
    p = _single(min_active=min_active)
    assert spend(p, A) == pytest.approx(expected, abs=1e-6)
    assert p.summary.net_value == pytest.approx(max(net(min_active), 0.0), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("cost, on", [(500.0, True), (600.0, False)])
def test_activation_cost(cost, on):
    # at the free optimum 916.29 the net value is 2500 * 0.6 - 916.29 = 583.7
    best = net(1000 * math.log(2.5))
    assert best == pytest.approx(1500 - 1000 * math.log(2.5))
    p = _single(activation_cost=cost)
    assert (spend(p, A) > 0) == on
    assert p.summary.net_value == pytest.approx(max(best - cost, 0.0), rel=1e-6, abs=1e-6)
    if on:
        assert p.summary.activation_cost == cost


def test_spend_unit():
    # free optimum 916.29 -> the better of 500 (483.6) and 1000 (580.3)
    assert net(1000) > net(500)
    p = _single(unit=500.0)
    assert spend(p, A) == 1000.0
    assert p.summary.optimality_gap <= 1e-4


def test_named_budgets_instead_of_total():
    p = allocator.plan(scenario(two_cells(), budgets=[
        {"name": "crm", "total": 500, "select": {"tasks": ["retention"]}},
        {"name": "marketing", "total": 1000, "select": {"tasks": ["acquisition"]}}]))
    assert spend(p, A) == pytest.approx(500, rel=1e-7)
    assert spend(p, B) == pytest.approx(1000, rel=1e-7)
    assert price(p, "crm") == pytest.approx(m_a(500) - 1, rel=1e-5)
    assert price(p, "marketing") == pytest.approx(m_b(1000) - 1, rel=1e-5)


def test_tags_select_segments():
    cells = two_cells()
    data = scenario(cells, constraints=[{"name": "vip_cap", "type": "spend", "select": {"tags": ["vip"]},
                                         "max": 300}])
    data["segments"][0]["tags"] = ["vip"]
    p = allocator.plan(data)
    assert spend(p, A) == pytest.approx(300, rel=1e-7)


# ---------------------------------------------------------------- objectives

def test_target_successes_hand_derived():
    # same rate 0.1: A (pool 100, c 0.5), B (pool 200, c 0.4); equal marginal successes per unit:
    # 0.5 e^{-0.1 x1} = 0.4 e^{-0.1 x2}; 50 (1 - u) + 80 (1 - 1.25 u) = 60  ->  u = 70 / 150
    cells = {A: exp_cell(100, 50, 0.5, 0.1), B: exp_cell(200, 100, 0.4, 0.1)}
    p = allocator.plan(scenario(cells, objective={"type": "target", "metric": "successes", "target": 60}))
    u = 70 / 150
    assert spend(p, A) == pytest.approx(100 * -math.log(u) / 0.1, rel=2e-3)
    assert spend(p, B) == pytest.approx(200 * -math.log(1.25 * u) / 0.1, rel=2e-3)
    assert p.summary.total_spend == pytest.approx(100 * -math.log(u) / 0.1 + 200 * -math.log(1.25 * u) / 0.1,
                                                  rel=1e-4)
    assert p.summary.objective["reached"] >= 60 - 1e-6
    assert p.summary.optimality_gap <= 1e-4


def test_target_value_hand_derived():
    # value weights: v c = 25 and 40; 2500 (1 - u) + 8000 (1 - 0.625 u) = 6000 -> u = 0.6
    cells = {A: exp_cell(100, 50, 0.5, 0.1), B: exp_cell(200, 100, 0.4, 0.1)}
    p = allocator.plan(scenario(cells, objective={"type": "target", "metric": "value", "target": 6000}))
    exact = 100 * -math.log(0.6) / 0.1 + 200 * -math.log(0.375) / 0.1
    assert p.summary.total_spend == pytest.approx(exact, rel=1e-4)
    assert spend(p, A) == pytest.approx(100 * -math.log(0.6) / 0.1, rel=2e-3)


def test_target_counts_only_selected_cells():
    cells = {A: exp_cell(100, 50, 0.5, 0.1), B: exp_cell(200, 100, 0.4, 0.1)}
    p = allocator.plan(scenario(cells, objective={"type": "target", "metric": "successes", "target": 30,
                                                  "select": {"tasks": ["retention"]}}))
    # only A counts: 50 (1 - e^{-0.1 x}) = 30 -> x = 10 ln 2.5
    assert spend(p, A) == pytest.approx(100 * 10 * math.log(2.5), rel=1e-4)
    assert spend(p, B) == 0.0


def test_hurdle_rate_hand_derived():
    # spend while a unit returns >= 1.3: v c r e^{-r x} = 1.3
    p = solve(objective={"type": "hurdle", "rate": 1.3})
    assert spend(p, A) == pytest.approx(100 * math.log(2.5 / 1.3) / 0.1, rel=1e-6)
    assert spend(p, B) == pytest.approx(200 * math.log(2.0 / 1.3) / 0.05, rel=1e-6)
    assert p.table["marginal_return"].to_numpy() == pytest.approx([1.3, 1.3], rel=1e-6)
    assert p.summary.status == "optimal"


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("rule, message", [
    ({"name": "x", "type": "spend", "select": {"segments": ["nope"]}, "max": 1}, "unknown segment 'nope'"),
    ({"name": "x", "type": "spend", "select": {"tags": ["gold"]}, "max": 1}, "unknown tag 'gold'"),
    ({"name": "x", "type": "spend", "select": {"tasks": ["winback"]}, "max": 1}, "selects no cell"),
    ({"name": "x", "type": "spend", "select": {"tasks": ["retention"]}}, "give `min`, `max` or both"),
    ({"name": "x", "type": "spend", "min": 5, "max": 1}, "must be >= min (5); got 1"),
    ({"name": "x", "type": "share", "select": {"tasks": ["retention"]}, "min": 1.5}, "less than or equal to 1"),
    ({"name": "x", "type": "lock", "select": {"segments": ["a"]}, "spend": "current"}, "needs current_spend"),
    ({"name": "x", "type": "bogus"}, "does not match any of the expected tags"),
    ({"name": "x", "type": "spend", "max": 1, "colour": "red"}, "unknown key"),
])
def test_bad_rules_are_named(rule, message):
    with pytest.raises(SpecError) as err:
        allocator.plan(scenario(two_cells(), constraints=[rule]))
    assert message in str(err.value)
    assert "constraints" in str(err.value)


def test_duplicate_names_rejected():
    rules = [{"name": "x", "type": "spend", "max": 1}, {"name": "x", "type": "spend", "max": 2}]
    with pytest.raises(SpecError, match="names must be unique; 'x'"):
        allocator.plan(scenario(two_cells(), constraints=rules))


def test_schema_lists_the_constraint_language():
    schema = allocator.Scenario.model_json_schema()
    text = str(schema)
    for word in ("ShareConstraint", "RatioConstraint", "LockConstraint", "MinActiveConstraint", "NamedBudget",
                 "TargetObjective", "HurdleObjective"):
        assert word in text


def test_example_scenario_file_solves_to_certified_gap(tmp_path):
    p = allocator.plan("scenarios/constrained.yaml")
    s = p.summary
    assert s.solver == "global"
    assert s.optimality_gap <= 1e-4
    assert s.optimality_check["feasible"]
    names = {b["name"] for b in s.binding_constraints}
    assert "retention_share" in names
    spend_total = p.table["spend"].sum()
    assert spend_total <= 1_500_000 + 1e-6
    assert np.all(np.abs(p.table["spend"] / 1000 - np.round(p.table["spend"] / 1000)) < 1e-9)
    locked = p.table[(p.table.segment == "contract_premium") & (p.table.task == "retention")]
    assert float(locked["spend"].iloc[0]) == 50000.0
