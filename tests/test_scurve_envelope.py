"""The envelope solver on S-curves: against brute force, the global MILP, and its own certificate."""

from __future__ import annotations

import numpy as np
import pytest

from allocator.problem import CompiledProblem
from allocator.solvers import SOLVERS, choose_solver, solve
from helpers import brute_force_dp, s_curve_problem

ENV = SOLVERS["envelope"]


def _feasible(p, s):
    assert np.all(s >= p.lower - 1e-9) and np.all(s <= p.upper + 1e-9)
    assert s.sum() <= p.budget * (1 + 1e-12) + 1e-9


@pytest.mark.parametrize("n,seed", [(4, 1), (5, 1), (6, 7), (8, 2)])
def test_small_s_curves_against_brute_force_grid(n, seed):
    p = s_curve_problem(n, seed=seed)
    r = ENV.solve(p, 1e-9)
    _feasible(p, r.spend)
    truth, _ = brute_force_dp(p, p.budget, steps=400)
    ours = p.net_value(r.spend)
    # the bound is valid: nothing on the grid beats it
    assert r.upper_bound >= truth - 1e-9 * abs(truth)
    # the plan is at least the grid optimum minus the grid's own resolution, or within the certified gap
    assert ours >= truth - max(r.optimality_gap, 2e-5) * abs(truth)


@pytest.mark.parametrize("n,seed", [(5, 1), (8, 2), (30, 3), (60, 4)])
def test_s_curves_against_the_global_milp(n, seed):
    p = s_curve_problem(n, seed=seed)
    r = ENV.solve(p, 1e-9)
    g = SOLVERS["global"].solve(p, 1e-7)
    ours, milp = p.net_value(r.spend), p.net_value(g.spend)
    _feasible(p, r.spend)
    assert r.upper_bound >= milp * (1 - 1e-9)
    assert ours >= milp - max(r.optimality_gap, 1e-7) * abs(milp)
    if r.optimality_gap <= 1e-8:
        assert ours == pytest.approx(milp, rel=1e-6)


@pytest.mark.parametrize("n,seed", [(3_000, 11), (50_000, 12)])
def test_certificate_on_random_large_problems(n, seed):
    p = s_curve_problem(n, seed=seed, budget_share=0.3)
    r = ENV.solve(p, 1e-4)
    _feasible(p, r.spend)
    assert r.termination == "optimal" and r.optimality_gap <= 1e-4
    # the bound recomputed independently: sum over cells of max (f - lam s) on a fine grid <= L(lam)
    lam = r.marginal_return
    sub = np.arange(0, n, max(n // 200, 1))
    grid = np.linspace(0, 1, 4001)[None, :] * np.minimum(p.upper[sub], 60 * p.pool[sub])[:, None]
    q = p.subset(np.isin(np.arange(n), sub))
    vals = np.stack([q.expected_value(grid[:, k]) - lam * grid[:, k] for k in range(grid.shape[1])], axis=1)
    from allocator.solvers.scurve import _Run
    run = _Run(q, 1e-4)
    s = run.spend(lam)
    per_cell = q.expected_value(s) - lam * s
    assert np.all(per_cell >= vals.max(axis=1) - 1e-7 * np.abs(per_cell).max())
    # every cell on its true curve: the plan's value is the true objective, not an envelope value
    assert r.info["objective"] == pytest.approx(p.net_value(r.spend), rel=1e-14)


def test_no_budget_is_exact_per_cell():
    p = s_curve_problem(200, seed=5, budget_share=None)
    r = ENV.solve(p)
    _feasible_nb = np.all(r.spend >= 0)
    assert _feasible_nb and r.optimality_gap <= 1e-12


def test_partial_targeting_plan_is_optimal_for_the_relaxation_and_reports_shares():
    p = s_curve_problem(300, seed=9)
    q = CompiledProblem(**{**p.__dict__, "options": {"partial_targeting": True}})
    r = ENV.solve(q, 1e-9)
    assert r.spend.sum() == pytest.approx(q.budget, rel=1e-10)
    shares = r.info["treated_share"]
    assert len(shares) <= 3 and all(0 < v < 1 for v in shares.values())
    # the envelope plan reaches the Lagrangian bound: exactly optimal when shares may be treated
    assert r.info["objective"] == pytest.approx(r.upper_bound, rel=1e-9)
    plain = ENV.solve(p, 1e-9)
    assert r.info["objective"] >= p.net_value(plain.spend) - 1e-9 * abs(r.info["objective"])


def test_auto_uses_the_envelope_from_100_cells_and_the_milp_below():
    assert choose_solver(s_curve_problem(300, seed=1)).name == "envelope"
    assert choose_solver(s_curve_problem(5, seed=1)).name == "global"
    r = solve(s_curve_problem(300, seed=1))
    assert r.solver == "envelope" and r.optimality_gap <= 1e-4


def test_logistic_quadratic_s_curves_against_the_milp():
    from allocator.tables import compile_table
    import pandas as pd
    rng = np.random.default_rng(4)
    n = 12
    df = pd.DataFrame({"segment": [f"s{i}" for i in range(n)], "task": "acquisition",
                       "pool": rng.uniform(100, 1000, n), "value": rng.uniform(50, 300, n),
                       "family": "logistic_quadratic", "b0": rng.uniform(-4, -2, n),
                       "b1": rng.uniform(0.02, 0.05, n), "b2": -rng.uniform(2e-5, 6e-5, n)})
    p = compile_table({"name": "lq", "budget": {"total": 20_000}}, df)
    assert not p.concave.all()
    r = ENV.solve(p, 1e-9)
    g = SOLVERS["global"].solve(p, 1e-7)
    _feasible(p, r.spend)
    assert r.upper_bound >= p.net_value(g.spend) * (1 - 1e-7)
    assert p.net_value(r.spend) >= p.net_value(g.spend) - max(r.optimality_gap, 1e-6) * abs(p.net_value(g.spend))


def test_partial_targeting_through_a_table_reports_the_treated_share():
    from allocator.tables import plan_from_table, random_cells_table

    df = random_cells_table(500, seed=3, family="hill")
    plain = plan_from_table({"name": "h", "budget": {"total": 400_000}}, df)
    assert plain.result.solver == "envelope"
    from allocator.problem import CompiledProblem
    from allocator.tables import compile_table
    from allocator.tables.output import plan_columns
    p = compile_table({"name": "h", "budget": {"total": 400_000}}, df)
    q = CompiledProblem(**{**p.__dict__, "options": {**p.options, "partial_targeting": True}})
    r = ENV.solve(q, 1e-9)
    cols = plan_columns(q, r.spend, r.info)
    # the table's value is the relaxation's optimum: the Lagrangian bound, and at least the plain plan
    assert float((cols["expected_value"] - r.spend).sum()) == pytest.approx(r.upper_bound, rel=1e-9)
    assert r.upper_bound >= plain.summary["net_value"] * (1 - 1e-12)
    assert len(r.info["treated_cells"]) >= 1
    assert ((cols["treated_share"] > 0) & (cols["treated_share"] < 1)).sum() == len(r.info["treated_cells"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixed_families_with_cell_bounds_against_the_milp(seed):
    import pandas as pd

    from allocator.tables import compile_table
    rng = np.random.default_rng(seed)
    n = 14
    hill = rng.random(n) < 0.6
    df = pd.DataFrame({"segment": [f"s{i}" for i in range(n)], "task": "retention",
                       "pool": rng.uniform(100, 2000, n), "value": rng.uniform(20, 200, n),
                       "family": np.where(hill, "hill", "exponential"),
                       "ceiling": rng.uniform(0.1, 0.5, n),
                       "half_saturation": np.where(hill, rng.uniform(2, 20, n), np.nan),
                       "shape": np.where(hill, rng.uniform(1.2, 3.5, n), np.nan),
                       "rate": np.where(hill, np.nan, rng.uniform(0.02, 0.2, n)),
                       "min_spend": np.where(rng.random(n) < 0.3, rng.uniform(100, 3000, n), np.nan),
                       "max_spend": np.where(rng.random(n) < 0.3, rng.uniform(5000, 30000, n), np.nan)})
    p = compile_table({"name": "mixed", "budget": {"total": 60_000}}, df)
    r = ENV.solve(p, 1e-9)
    g = SOLVERS["global"].solve(p, 1e-7)
    _feasible(p, r.spend)
    ours, milp = p.net_value(r.spend), p.net_value(g.spend)
    assert r.upper_bound >= milp * (1 - 1e-7)
    assert ours >= milp - max(r.optimality_gap, 1e-6) * abs(milp)
