"""The exact solver and Pyomo+HiGHS agree on random instances; the shared check passes on both."""

from __future__ import annotations

import numpy as np
import pytest

from allocator.optimality import check_optimality
from allocator.plan import build_plan
from allocator.solvers import SOLVERS, solve

from helpers import compiled, random_problem

CASES = [
    dict(n=25, seed=1, bounds=True, budget_share=0.4),
    dict(n=25, seed=2, bounds=False, budget_share=0.8),
    dict(n=30, seed=3, bounds=True, budget_share=None),
    dict(n=20, seed=4, bounds=True, budget_share=1.5, use_all=True),
    dict(n=30, seed=5, bounds=True, budget_share=0.3, families=("exponential", "hill")),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"n{c['n']}-seed{c['seed']}")
def test_exact_and_pyomo_highs_agree_to_1e6(case):
    prob = random_problem(**case)
    exact = solve(prob, "exact")
    lp = solve(prob, "pyomo_highs")  # default tolerance: 1e-6 relative objective gap
    v_exact, v_lp = prob.net_value(exact.spend), prob.net_value(lp.spend)
    assert abs(v_exact - v_lp) <= 1e-6 * abs(v_exact)
    # the LP's certified bound must contain the exact optimum
    assert lp.upper_bound >= v_exact - 1e-9 * abs(v_exact)
    assert v_lp <= v_exact + 1e-9 * abs(v_exact)


@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"n{c['n']}-seed{c['seed']}")
def test_shared_optimality_check_on_every_solver(solver, case):
    prob = random_problem(**case)
    plan = build_plan(prob, solve(prob, solver))
    assert plan.report.feasible, plan.report.feasibility_violations
    assert plan.report.ok, (plan.report.kkt_max_deviation, plan.report.complementarity_violations)
    assert plan.summary.status == "optimal"


def test_check_catches_a_plan_that_moves_money_between_interior_cells():
    prob = random_problem(n=20, seed=7, bounds=False, budget_share=0.5)
    s = solve(prob, "exact").spend.copy()
    interior = np.flatnonzero(s > 1.0)
    i, j = interior[:2]
    moved = 0.05 * min(s[i], s[j])
    s[i] += moved
    s[j] -= moved
    report = check_optimality(prob, s)
    assert report.feasible and not report.ok and report.kkt_max_deviation > 1e-4


def test_check_catches_infeasible_and_complementarity_breaks():
    prob = random_problem(n=10, seed=8, bounds=False, budget_share=0.5)
    s = solve(prob, "exact").spend
    over = check_optimality(prob, s * 1.01)
    assert not over.feasible and "exceeds budget" in over.feasibility_violations[0]
    # starve one interior cell to zero and give its money to another: the starved cell's
    # first unit returns more than the common marginal return
    t = s.copy()
    i, j = np.flatnonzero(s > 0)[:2]
    t[j] += t[i]
    t[i] = 0.0
    bad = check_optimality(prob, t)
    assert not bad.ok and any("sits at its lower bound" in v for v in bad.complementarity_violations)


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_concave_piecewise_tables(solver):
    tab = {"family": "piecewise", "points": [[0, 0.0], [10, 0.2], [30, 0.3], [60, 0.33]]}
    cells = {("a", "acquisition"): {"pool": 100, "value": 40, "curve": tab},
             ("b", "retention"): {"pool": 50, "value": 30, "curve": tab}}
    # marginal returns per segment: a: 40*[0.02, 0.005, 0.001] = [0.8, 0.2, 0.04]; b: 30*... = [0.6, 0.15, 0.03]
    # (per member slopes 0.02, 0.005, 0.001). Nothing pays >= 1 so without budget nothing is spent.
    prob = compiled(cells)
    assert solve(prob, solver).spend.sum() == pytest.approx(0.0, abs=1e-6)
    # value 100: a's first segment returns 2, second 0.5; b's first returns 1.5*... (value 75): 1.5, 0.375
    cells2 = {k: {**c, "value": v} for (k, c), v in zip(cells.items(), (100, 75))}
    prob2 = compiled(cells2, budget=1200.0)
    res = solve(prob2, solver)
    # both first segments pay (2 and 1.5 > 1): a fills 10*100 = 1000, b gets the remaining 200 of its 500
    np.testing.assert_allclose(res.spend, [1000.0, 200.0], rtol=1e-6, atol=1e-3)
    assert check_optimality(prob2, res.spend).ok


def test_pyomo_highs_ignores_a_rule_with_no_finite_side():
    from allocator.problem import LinearConstraint

    prob = random_problem(n=8, seed=9, bounds=False, budget_share=0.5)
    free_rule = LinearConstraint("unbounded", np.arange(4), np.ones(4))
    with_rule = type(prob)(**{**prob.__dict__, "constraints": (free_rule,)})
    assert prob.net_value(solve(with_rule, "pyomo_highs").spend) == pytest.approx(
        prob.net_value(solve(prob, "exact").spend), rel=1e-6)
