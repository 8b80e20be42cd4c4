"""Solvers against allocations derived by hand from the optimality conditions.

For an exponential cell with floor 0, f(s) = N v c (1 - exp(-r s / N)) and the
marginal return is f'(s) = v c r exp(-r s / N). Setting f'(s) = lam gives

    s(lam) = (N / r) (ln(v c r) - ln lam),   or 0 when v c r <= lam.

Without a budget lam = 1. With a binding budget B over the active cells A,
sum_A s(lam) = B gives  ln lam = (sum_A (N/r) ln(v c r) - B) / sum_A (N/r).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from allocator.optimality import check_optimality
from allocator.solvers import SOLVERS, solve

from helpers import compiled, exp_cell

A = exp_cell(pool=100, value=50, ceiling=0.5, rate=1.0)      # v c r = 25
B_ = exp_cell(pool=50, value=200, ceiling=0.3, rate=0.5)     # v c r = 30
C_OUT = exp_cell(pool=80, value=30, ceiling=0.2, rate=0.1)   # v c r = 0.6: never pays
C_MID = exp_cell(pool=80, value=80, ceiling=0.2, rate=0.5)   # v c r = 8: pays until lam = 8

# relative tolerance on spend and marginal returns; pyomo_highs runs at an objective gap of 1e-9 here,
# which leaves spend O(sqrt(gap)) from the exact point (the objective is flat at the optimum)
SOLVER_TOL = {"exact": 1e-9, "pyomo_highs": 1e-3, "global": 1e-6, "dual": 1e-9, "envelope": 1e-9}
GAP = {"exact": None, "pyomo_highs": 1e-9, "global": None, "dual": None, "envelope": None}


def run(prob, solver):
    return solve(prob, solver, GAP[solver])


def s_of(cell, lam):
    N, v, c, r = cell["pool"], cell["value"], cell["curve"]["ceiling"], cell["curve"]["rate"]
    return max(N / r * (math.log(v * c * r) - math.log(lam)), 0.0)


def lam_for_budget(cells, budget):
    K = [c["pool"] / c["curve"]["rate"] for c in cells]
    L = [math.log(c["value"] * c["curve"]["ceiling"] * c["curve"]["rate"]) for c in cells]
    return math.exp((sum(k * l for k, l in zip(K, L)) - budget) / sum(K))


def net(cells, spend):
    return sum(c["pool"] * c["value"] * c["curve"]["ceiling"] * (1 - math.exp(-c["curve"]["rate"] * s / c["pool"])) - s
               for c, s in zip(cells, spend))


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_two_cells_no_budget_stop_at_marginal_return_one(solver):
    prob = compiled({("a", "acquisition"): A, ("b", "retention"): B_})
    res = run(prob, solver)
    expected = [100 * math.log(25), 100 * math.log(30)]
    np.testing.assert_allclose(res.spend, expected, rtol=SOLVER_TOL[solver])
    assert prob.net_value(res.spend) == pytest.approx(net([A, B_], expected), rel=1e-6)
    np.testing.assert_allclose(prob.marginal_return(res.spend), 1.0, rtol=SOLVER_TOL[solver])


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_two_cells_binding_budget_share_one_multiplier(solver):
    budget = 300.0
    prob = compiled({("a", "acquisition"): A, ("b", "retention"): B_}, budget=budget)
    lam = lam_for_budget([A, B_], budget)
    assert lam == pytest.approx(math.exp((100 * math.log(25) + 100 * math.log(30) - 300) / 200))
    res = run(prob, solver)
    np.testing.assert_allclose(res.spend, [s_of(A, lam), s_of(B_, lam)], rtol=SOLVER_TOL[solver])
    assert res.spend.sum() == pytest.approx(budget, rel=1e-9)
    report = check_optimality(prob, res.spend, rtol=SOLVER_TOL[solver])
    assert report.ok and report.budget_binds
    assert report.marginal_return == pytest.approx(lam, rel=SOLVER_TOL[solver])


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_three_cells_one_priced_out_without_budget(solver):
    prob = compiled({("a", "acquisition"): A, ("b", "retention"): B_, ("c", "winback"): C_OUT})
    res = run(prob, solver)
    assert res.spend[2] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(res.spend[:2], [100 * math.log(25), 100 * math.log(30)], rtol=SOLVER_TOL[solver])
    report = check_optimality(prob, res.spend, rtol=SOLVER_TOL[solver])
    assert report.ok and list(report.bound) == ["none", "none", "zero"]


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_three_cells_budget_prices_a_cell_out(solver):
    # lam with cells a, b active at B = 200; the third cell (v c r = 8) must then sit at zero
    budget = 200.0
    lam = lam_for_budget([A, B_], budget)
    assert lam > 8.0, "the hand-derived multiplier must exceed the third cell's first-unit return"
    prob = compiled({("a", "acquisition"): A, ("b", "retention"): B_, ("c", "winback"): C_MID}, budget=budget)
    res = run(prob, solver)
    np.testing.assert_allclose(res.spend, [s_of(A, lam), s_of(B_, lam), 0.0], rtol=SOLVER_TOL[solver], atol=1e-6)
    # with a larger budget lam falls below 8 and the third cell switches on: all three share lam
    big = 600.0
    lam3 = lam_for_budget([A, B_, C_MID], big)
    assert lam3 < 8.0
    prob3 = compiled({("a", "acquisition"): A, ("b", "retention"): B_, ("c", "winback"): C_MID}, budget=big)
    res3 = run(prob3, solver)
    np.testing.assert_allclose(res3.spend, [s_of(A, lam3), s_of(B_, lam3), s_of(C_MID, lam3)],
                               rtol=SOLVER_TOL[solver])


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_use_all_spends_past_marginal_return_one(solver):
    free = 100 * math.log(25) + 100 * math.log(30)
    budget = free + 150.0
    lam = lam_for_budget([A, B_], budget)
    assert lam < 1.0
    prob = compiled({("a", "acquisition"): A, ("b", "retention"): B_}, budget=budget, use_all=True)
    res = run(prob, solver)
    np.testing.assert_allclose(res.spend, [s_of(A, lam), s_of(B_, lam)], rtol=SOLVER_TOL[solver])
    assert res.spend.sum() == pytest.approx(budget, rel=1e-9)
    # without use_all the same budget is slack: spending stops at marginal return 1
    slack = run(compiled({("a", "acquisition"): A, ("b", "retention"): B_}, budget=budget), solver)
    assert slack.spend.sum() == pytest.approx(free, rel=SOLVER_TOL[solver])


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_cap_binds_and_the_rest_share_the_remaining_budget(solver):
    cap = 50.0
    a_capped = {**A, "max_spend": cap}
    budget = 300.0
    # cell a at its cap; cell b takes the rest: s_b = B - cap, lam = f_b'(s_b)
    lam = 200 * 0.3 * 0.5 * math.exp(-0.5 * (budget - cap) / 50)
    assert 25 * math.exp(-cap / 100) > lam  # cell a would like more: the cap binds
    prob = compiled({("a", "acquisition"): a_capped, ("b", "retention"): B_}, budget=budget)
    res = run(prob, solver)
    np.testing.assert_allclose(res.spend, [cap, budget - cap], rtol=SOLVER_TOL[solver])
    report = check_optimality(prob, res.spend, rtol=SOLVER_TOL[solver])
    assert report.ok and list(report.bound) == ["upper", "none"]
    assert report.marginal_return == pytest.approx(lam, rel=SOLVER_TOL[solver])


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_floor_held_at_min_spend(solver):
    floor_cell = {**C_OUT, "min_spend": 40.0}
    prob = compiled({("a", "acquisition"): A, ("c", "winback"): floor_cell}, budget=200.0)
    res = run(prob, solver)
    # the floor takes 40 of the budget; cell a gets the other 160
    np.testing.assert_allclose(res.spend, [160.0, 40.0], rtol=SOLVER_TOL[solver])
    report = check_optimality(prob, res.spend, rtol=SOLVER_TOL[solver])
    assert report.ok and list(report.bound) == ["none", "lower"]


def test_lifetime_value_cell_uses_the_formula():
    cell = {**A, "value": {"clv": {"margin": 10.0, "retention": 0.8, "discount": 0.1}}}
    v = 10 * 0.8 / (1.1 - 0.8)
    prob = compiled({("a", "acquisition"): cell})
    assert prob.value[0] == pytest.approx(v)
    res = solve(prob, "exact")
    assert res.spend[0] == pytest.approx(100 * math.log(v * 0.5 * 1.0), rel=1e-12)


def test_exact_reports_a_certified_gap():
    prob = compiled({("a", "acquisition"): A, ("b", "retention"): B_, ("c", "winback"): C_MID}, budget=300.0)
    res = solve(prob, "exact")
    assert res.upper_bound >= prob.net_value(res.spend) - 1e-9
    assert res.optimality_gap < 1e-12
