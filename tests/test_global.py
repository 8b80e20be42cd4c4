"""The global solver against independent truths: brute-force dynamic programming, scipy, a second solver."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy.optimize import minimize

import allocator
from allocator.cli import main
from allocator.curves import get_family
from allocator.errors import SolverUnavailableError
from allocator.problem import CompiledProblem, CurveBlock, LinearConstraint
from allocator.solvers import choose_solver, solve
from helpers import brute_force_dp, exp_cell, random_problem, s_curve_problem, scenario


def with_options(problem: CompiledProblem, **options) -> CompiledProblem:
    return dataclasses.replace(problem, options={**problem.options, **options})


def assert_certified(problem, result, truth, rel=1e-4):
    """The plan matches the brute-force optimum and the truth lies under the reported bound."""
    ours = problem.net_value(result.spend)
    scale = max(abs(truth), 1.0)
    assert ours >= truth - rel * scale, (ours, truth)
    assert result.upper_bound >= truth - 1e-9 * scale      # honest: the true optimum is inside the bound
    assert result.upper_bound >= ours - 1e-9 * scale
    assert result.optimality_gap <= rel
    assert (result.upper_bound - ours) / max(abs(ours), 1.0) <= result.optimality_gap * (1 + 1e-9) + 1e-12


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("formulation", ["incremental", "sos2"])
def test_s_curves_match_brute_force(seed, formulation):
    p = with_options(s_curve_problem(4, seed=seed), formulation=formulation)
    r = solve(p, "global")
    truth, _ = brute_force_dp(p, p.budget, steps=2000)
    assert_certified(p, r, truth)
    assert np.sum(r.spend) <= p.budget * (1 + 1e-9)


def test_s_curves_with_min_active_and_activation_costs_match_brute_force():
    base = s_curve_problem(4, seed=11)
    ma = np.array([0.0, 4000.0, 2000.0, 0.0])
    ac = np.array([500.0, 0.0, 1500.0, 800.0])
    p = dataclasses.replace(base, min_active=ma, activation_cost=ac)
    r = solve(p, "global")
    truth, _ = brute_force_dp(p, p.budget, steps=2000, min_active=ma, activation_cost=ac)
    assert_certified(p, r, truth)
    on = r.spend > 0
    assert np.all(r.spend[on] >= ma[on] - 1e-6)


def test_nonconcave_table_matches_brute_force():
    # S-shaped tables: flat, then steep, then flat
    fam = get_family("piecewise")
    raws = [{"points": [[0, 0.0], [5, 0.01], [10, 0.2], [30, 0.3]]},
            {"points": [[0, 0.0], [2, 0.0], [4, 0.15], [8, 0.2], [20, 0.22]]},
            {"points": [[0, 0.05], [10, 0.06], [15, 0.3], [40, 0.35]]}]
    n = 3
    p = CompiledProblem(name="tables", segment=np.array(["a", "b", "c"], dtype=object),
                        task=np.array(["acquisition"] * n, dtype=object), pool=np.array([1000.0, 800.0, 500.0]),
                        value=np.array([100.0, 150.0, 120.0]), lower=np.zeros(n), upper=np.full(n, np.inf),
                        current_spend=np.full(n, np.nan), blocks=(CurveBlock(fam, np.arange(n), fam.pack(raws)),),
                        budget=20000.0)
    assert not p.concave.any()
    r = solve(p, "global")
    truth, _ = brute_force_dp(p, p.budget, steps=4000)
    assert_certified(p, r, truth)


def test_slsqp_from_the_equal_split_ends_far_below():
    """Documented instance (README, "Why not a local method"): 10 S-curves, budget 30% of the free spend.

    scipy's SLSQP from the equal split stops at a local optimum at least 5% below the certified plan.
    """
    p = s_curve_problem(10, seed=1, budget_share=0.3, shape=(2.5, 3.5))
    r = solve(p, "global")
    n, B = p.n, p.budget
    res = minimize(lambda s: -p.net_value(np.maximum(s, 0)), np.full(n, B / n),
                   jac=lambda s: -(p.marginal_return(np.maximum(s, 0)) - 1.0), method="SLSQP",
                   bounds=[(0, B)] * n, options={"maxiter": 500, "ftol": 1e-12},
                   constraints=[{"type": "ineq", "fun": lambda s: B - s.sum(), "jac": lambda s: -np.ones(n)}])
    ours = p.net_value(r.spend)
    local = p.net_value(np.maximum(res.x, 0))
    assert r.optimality_gap <= 1e-4
    assert local <= ours * (1 - 0.05)
    # and the local optimum is a genuine KKT point, not an unfinished run
    assert res.success


def test_auto_routes_s_curves_to_the_global_solver_and_forced_exact_explains():
    p = s_curve_problem(5, seed=2)
    assert choose_solver(p).name == "global"
    with pytest.raises(SolverUnavailableError, match=r"needs concave response curves; .* cell\(s\) \(s0, acquisition\)"):
        solve(p, "exact")
    plain = random_problem(50, seed=1)
    assert choose_solver(plain).name == "exact"


def test_forced_solver_names_the_feature_it_lacks():
    cells = {("a", "retention"): exp_cell(100, 50, 0.5, 0.1), ("b", "acquisition"): exp_cell(200, 100, 0.4, 0.05)}
    sc = allocator.scenario_from_dict(scenario(cells, constraints=[{"name": "floor", "type": "spend", "min": 10}]))
    p = allocator.compile_scenario(sc)
    with pytest.raises(SolverUnavailableError, match="does not handle general constraints \\(floor\\); use solver 'global'"):
        solve(p, "exact")
    unit = dataclasses.replace(p, constraints=(), unit=100.0)
    with pytest.raises(SolverUnavailableError, match=r"integer features \(budget.unit\)"):
        solve(unit, "exact")


def test_global_equals_exact_on_plain_concave_problems():
    p = random_problem(300, seed=4, families=("exponential", "hill"))
    e = solve(p, "exact")
    g = solve(p, "global")
    assert p.net_value(g.spend) == pytest.approx(p.net_value(e.spend), rel=1e-9)
    assert g.optimality_gap <= 1e-9


def test_global_agrees_with_pyomo_on_constrained_concave_problem():
    p = random_problem(60, seed=5)
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 3, p.n)
    rows = []
    for k, (lo, hi) in enumerate([(None, 0.3), (0.35, None), (None, 0.5)]):
        idx = np.flatnonzero(groups == k)
        rows.append(LinearConstraint(f"g{k}", idx, np.ones(len(idx)),
                                     -np.inf if lo is None else lo * p.budget, np.inf if hi is None else hi * p.budget))
    share = (groups == 2).astype(float) - 0.2
    rows.append(LinearConstraint("share2", np.arange(p.n), share, 0.0, np.inf))
    p = dataclasses.replace(p, constraints=tuple(rows))
    g = solve(p, "global")
    q = solve(p, "pyomo_highs")
    assert p.net_value(g.spend) == pytest.approx(p.net_value(q.spend), rel=2e-6)
    assert p.net_value(g.spend) >= p.net_value(q.spend) - 1e-7 * abs(p.net_value(q.spend))
    for c in p.rows():
        a = c.activity(g.spend)
        assert c.lower - 1e-6 * p.budget <= a <= c.upper + 1e-6 * p.budget
    report = allocator.check_optimality(p, g.spend, 1e-6)
    assert report.ok, report.complementarity_violations
    # shadow prices agree with the second solver's duals
    for name, value in report.shadow_prices.items():
        if name != "budget.total" and abs(value) > 1e-3:
            assert abs(value) == pytest.approx(abs(q.constraint_duals[name]), rel=1e-3)


def test_hurdle_and_use_all_on_s_curves_against_brute_force():
    p = s_curve_problem(4, seed=3, budget_share=0.5)
    h = dataclasses.replace(p, objective=dataclasses.replace(p.objective, kind="hurdle", rate=1.3))
    r = solve(h, "global")
    truth, _ = brute_force_dp(h, h.budget, steps=2000, rate=1.3)
    ours = h.expected_value(r.spend).sum() - 1.3 * r.spend.sum()
    assert ours >= truth - 1e-4 * max(abs(truth), 1.0)
    assert r.upper_bound >= truth - 1e-9 * max(abs(truth), 1.0)


def test_plan_cli_reports_gap_bound_method_and_shadow_prices(tmp_path):
    out = tmp_path / "out"
    assert main(["plan", "scenarios/constrained.yaml", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["solver"] == "global"
    assert summary["optimality_gap"] <= 1e-4
    assert "bound" in summary["bound_method"].lower()
    binding = {b["name"]: b for b in summary["binding_constraints"]}
    assert binding["retention_share"]["shadow_price"] > 0
    assert binding["retention_share"]["rule"] == "'retention_share': spend of tasks [retention] >= 0.4 x total spend"
    assert summary["activation_cost"] == 2000.0 * sum(
        1 for t, s in zip(summary_rows(out), summary_rows(out, "spend")) if t == "winback" and s > 0)


def summary_rows(out, column="task"):
    import csv

    with open(out / "plan.csv") as fh:
        return [float(r[column]) if column == "spend" else r[column] for r in csv.DictReader(fh)]


def test_use_all_on_s_curves_spends_the_budget_exactly():
    p = dataclasses.replace(s_curve_problem(6, seed=9), use_all=True)
    r = solve(p, "global")
    assert r.spend.sum() == pytest.approx(p.budget, rel=1e-9)
    assert r.optimality_gap <= 1e-4
    truth, _ = brute_force_dp(p, p.budget, steps=2000, use_all=True)
    assert_certified(p, r, truth)


def test_example_scenario_still_uses_the_exact_solver(tmp_path):
    p = allocator.plan("scenarios/example.yaml")
    assert p.summary.solver == "exact"
    # the budget is the one binding thing, listed once, with the same price as its own fields
    assert [b["name"] for b in p.summary.binding_constraints] == ["budget.total"]
    assert p.summary.binding_constraints[0]["shadow_price"] == pytest.approx(p.summary.budget_shadow_price)
    assert p.summary.budget_binds and p.summary.budget_shadow_price > 0


def _family_cases():
    from allocator.curves import FAMILIES

    return [(name, ex) for name, fam in sorted(FAMILIES.items()) for ex in fam.examples]


@pytest.mark.parametrize("family, params", _family_cases())
def test_envelope_bounds_hold_on_a_fine_grid(family, params):
    """Lifts and sags bound the curve's distance from each chord (checked on 20,000 points per segment)."""
    from allocator.solvers import envelope as env

    fam = get_family(family)
    P = fam.pack([params])
    p = CompiledProblem(name="one", segment=np.array(["s"], dtype=object), task=np.array(["acquisition"], dtype=object),
                        pool=np.array([1000.0]), value=np.array([100.0]), lower=np.zeros(1), upper=np.full(1, np.inf),
                        current_spend=np.full(1, np.nan), blocks=(CurveBlock(fam, np.arange(1), P),))
    b = float(min(p.pool[0] * fam.domain_max(P)[0], env.marginal_caps(p, np.zeros(1))[0]))
    T = env.initial_breakpoints(p, np.zeros(1), np.array([b]), 12, p.value, 1.0)
    bnd = env.segment_bounds(p, T, 8)
    for k in range(T.shape[1] - 1):
        t0, t1 = T[0, k], T[0, k + 1]
        if t1 <= t0:
            continue
        s = np.linspace(t0, t1, 20_001)
        E = p.pool[0] * fam.response(s / p.pool[0], {kk: np.repeat(v, len(s), axis=0) for kk, v in P.items()})
        chord = bnd["E"][0, k] + (bnd["E"][0, k + 1] - bnd["E"][0, k]) * (s - t0) / (t1 - t0)
        tol = 1e-9 * max(abs(E).max(), 1.0)
        assert np.max(E - chord) <= bnd["lift"][0, k] + tol
        assert np.max(chord - E) <= bnd["sag"][0, k] + tol
    if p.concave[0]:
        # tangents lie above a concave curve and touch it at the breakpoints
        Tt, Vt = env.tangent_overestimate(p, T, bnd["E"], p.concave)
        s = np.linspace(0, b, 50_001)
        E = p.pool[0] * fam.response(s / p.pool[0], {kk: np.repeat(v, len(s), axis=0) for kk, v in P.items()})
        assert np.all(np.interp(s, Tt[0], Vt[0]) >= E - 1e-9 * max(E.max(), 1.0))


@pytest.mark.parametrize("family, params", _family_cases())
def test_every_family_solves_to_a_certified_gap_against_brute_force(family, params):
    fam = get_family(family)
    raws = [params] * 3
    n = 3
    p = CompiledProblem(name="fam", segment=np.array(["a", "b", "c"], dtype=object),
                        task=np.array(["acquisition"] * n, dtype=object), pool=np.array([1000.0, 500.0, 2000.0]),
                        value=np.array([300.0, 500.0, 150.0]), lower=np.zeros(n), upper=np.full(n, np.inf),
                        current_spend=np.full(n, np.nan), blocks=(CurveBlock(fam, np.arange(n), fam.pack(raws)),))
    p = dataclasses.replace(p, upper=np.minimum(p.upper, p.pool * fam.domain_max(fam.pack(raws))))
    free = solve(dataclasses.replace(p, budget=None), "global").spend.sum()
    p = dataclasses.replace(p, budget=max(0.5 * free, 1.0))
    r = solve(p, "global")
    truth, _ = brute_force_dp(p, p.budget, steps=3000)
    assert_certified(p, r, truth)
