"""The dual solver against the global MILP on random constrained concave problems.

Truth is the global solver's certified optimum (a different method: a MILP over
piecewise curves with its own bound); both must agree within the global solver's
gap, and the dual's own certificate must be <= 1e-6.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from allocator.curves import get_family
from allocator.problem import CompiledProblem, CurveBlock, EfficiencyConstraint, LinearConstraint, ObjectiveSpec
from allocator.solvers import choose_solver, solve
from helpers import compiled


def constrained(n: int, seed: int, hill_share: float = 0.3, use_all_pot: bool = False) -> CompiledProblem:
    """Random concave cells (exponential, hill with shape <= 1) under a budget, 2 pots, task floors/caps,
    a share and a ratio, scaled to the free optimum so that several rules bind."""
    rng = np.random.default_rng(seed)
    pool = rng.uniform(100, 10_000, n)
    value = rng.uniform(50, 2_000, n)
    c = rng.uniform(0.02, 0.6, n)
    hill = rng.random(n) < hill_share
    ie, ih = np.flatnonzero(~hill), np.flatnonzero(hill)
    blocks = [CurveBlock(get_family("exponential"), ie, {"ceiling": c[ie],
                                                         "floor": rng.uniform(0, 0.5, len(ie)) * c[ie],
                                                         "rate": rng.uniform(0.005, 0.5, len(ie))})]
    if len(ih):
        blocks.append(CurveBlock(get_family("hill"), ih, {"ceiling": c[ih], "floor": np.zeros(len(ih)),
                                                          "half_saturation": rng.uniform(1, 100, len(ih)),
                                                          "shape": rng.uniform(0.5, 1.0, len(ih))}))
    task = rng.choice(["acquisition", "retention", "winback"], n)
    k = rng.random(n)
    lower = np.where(k < 0.1, rng.uniform(0, 2, n) * pool, 0.0)
    upper = np.where(k > 0.85, lower + rng.uniform(0.5, 20, n) * pool, np.inf)
    base = CompiledProblem(name="rules", segment=np.array([f"s{i}" for i in range(n)], dtype=object),
                           task=task.astype(object), pool=pool, value=value, lower=lower, upper=upper,
                           current_spend=np.full(n, np.nan), blocks=tuple(blocks))
    B = float(rng.uniform(0.4, 0.7)) * solve(base, "exact").spend.sum()
    rows = []
    for name, t, lo, hi in [("acq_cap", "acquisition", None, rng.uniform(0.3, 0.5)),
                            ("ret_floor", "retention", rng.uniform(0.2, 0.4), None),
                            ("wb_cap", "winback", None, rng.uniform(0.05, 0.2))]:
        idx = np.flatnonzero(task == t)
        rows.append(LinearConstraint(name, idx, np.ones(len(idx)), -np.inf if lo is None else lo * B,
                                     np.inf if hi is None else hi * B, text=name, kind="spend"))
    half = rng.random(n) < 0.5
    for name, m, share in [("pot_east", half, 0.55), ("pot_west", ~half, 0.5)]:
        idx = np.flatnonzero(m)
        lo = share * B if (use_all_pot and name == "pot_west") else -np.inf
        rows.append(LinearConstraint(name, idx, np.ones(len(idx)), lo, share * B, text=name, kind="budget"))
    ret = (task == "retention").astype(float)
    rows.append(LinearConstraint("ret_share", np.arange(n), ret - 0.35, 0.0, np.inf, text="share", kind="share"))
    coef = (task == "acquisition") - 3.0 * (task == "winback")
    idx = np.flatnonzero(coef)
    rows.append(LinearConstraint("acq_vs_wb", idx, coef[idx].astype(float), -np.inf, 0.0, text="ratio", kind="ratio"))
    return dataclasses.replace(base, budget=B, constraints=tuple(rows))


def objective(p: CompiledProblem, s: np.ndarray) -> float:
    return float(np.sum(p.expected_value(s)) - p.objective.rate * s.sum())


def assert_feasible(p: CompiledProblem, s: np.ndarray) -> None:
    assert np.all(s >= p.lower - 1e-9 * np.maximum(p.lower, 1)) and np.all(s <= p.upper * (1 + 1e-12) + 1e-9)
    total = s.sum()
    for r in p.rows():
        a = r.activity(s)
        assert r.lower - 1e-9 * total <= a <= r.upper + 1e-9 * total, r.name
    for e in p.efficiency:
        assert e.activity(p, s) >= -1e-9 * total, e.name


@pytest.mark.parametrize("seed", range(6))
def test_dual_agrees_with_the_global_solver_on_random_rules(seed):
    p = constrained(n=40 + 20 * seed, seed=seed, use_all_pot=seed % 3 == 2)
    d = solve(p, "dual")
    g = solve(p, "global")
    assert d.termination == "optimal" and d.optimality_gap <= 1e-6
    assert_feasible(p, d.spend)
    fd, fg = objective(p, d.spend), objective(p, g.spend)
    # the global plan's objective is within its certified gap of the optimum, and so is the dual's
    assert abs(fd - fg) <= max(g.optimality_gap, 1e-6) * abs(fg) + 1e-6 * abs(fd)
    assert fd <= g.upper_bound * (1 + 1e-9)
    assert fg <= d.upper_bound * (1 + 1e-9)
    # binding rows carry the same shadow prices
    for name, y in d.constraint_duals.items():
        assert y == pytest.approx(g.constraint_duals.get(name, 0.0), abs=1e-4 * max(1.0, abs(y)))


def test_interior_cells_sit_at_their_price():
    p = constrained(n=60, seed=11)
    d = solve(p, "dual")
    price = np.full(p.n, 1.0)
    for r in p.rows():
        price[r.index] += d.constraint_duals[r.name] * r.coef
    s = d.spend
    interior = (s > p.lower * (1 + 1e-9) + 1e-9) & (s < p.upper * (1 - 1e-9))
    np.testing.assert_allclose(p.marginal_return(s)[interior], price[interior], rtol=1e-7)


def test_hurdle_objective_with_rules():
    p = constrained(n=50, seed=3)
    p = dataclasses.replace(p, objective=ObjectiveSpec(kind="hurdle", rate=1.3))
    d = solve(p, "dual")
    g = solve(p, "global")
    assert d.optimality_gap <= 1e-6
    fd, fg = objective(p, d.spend), objective(p, g.spend)
    assert abs(fd - fg) <= max(g.optimality_gap, 1e-6) * abs(fg) + 1e-6 * abs(fd)


def test_auto_takes_the_dual_route_for_concave_rules_and_exact_for_a_plain_budget():
    p = constrained(n=30, seed=5)
    assert choose_solver(p).name == "dual"
    assert choose_solver(dataclasses.replace(p, constraints=())).name == "exact"
    r = solve(p)
    assert r.solver == "dual" and r.optimality_gap <= 1e-6


def slsqp_best(q: CompiledProblem, starts: int = 6) -> float:
    """Best feasible objective SLSQP finds from several starts (a convex problem: any start should do)."""
    from scipy.optimize import minimize

    k = 1e3 * max(float(np.median(q.pool)), 1.0) / 1e3
    scale = max(abs(objective(q, np.zeros(q.n))), 1.0) + float(q.budget)
    cons = []
    for r in q.rows():
        if np.isfinite(r.upper):
            cons.append({"type": "ineq", "fun": (lambda r: lambda u: (r.upper - r.activity(u * k)) / k)(r)})
        if np.isfinite(r.lower):
            cons.append({"type": "ineq", "fun": (lambda r: lambda u: (r.activity(u * k) - r.lower) / k)(r)})
    for e in q.efficiency:
        cons.append({"type": "ineq", "fun": (lambda e: lambda u: e.activity(q, u * k) / k)(e)})
    bounds = [(lo / k, None if not np.isfinite(hi) else hi / k) for lo, hi in zip(q.lower, q.upper)]
    rng = np.random.default_rng(1)
    best = -np.inf
    for _ in range(starts):
        u0 = q.lower / k + rng.uniform(0, 1, q.n) * float(q.budget) / q.n / k
        res = minimize(lambda u: -objective(q, u * k) / scale, u0, method="SLSQP", bounds=bounds,
                       constraints=cons, options={"ftol": 1e-15, "maxiter": 1000})
        ok = all(c["fun"](res.x) >= -1e-6 for c in cons)
        if ok:
            best = max(best, objective(q, res.x * k))
    return best


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_efficiency_rule_with_rows_agrees_with_slsqp(seed):
    p = constrained(n=8, seed=seed, hill_share=0.0)
    acq = np.flatnonzero(p.task != "retention")
    free = solve(p, "dual").spend
    roi0 = float(p.expected_value(free)[acq].sum() / max(free[acq].sum(), 1.0))
    rule = EfficiencyConstraint("acq_roi", acq, p.value[acq], 1.15 * roi0, "min_roi", 1.15 * roi0, text="acq_roi")
    q = dataclasses.replace(p, efficiency=(rule,))
    d = solve(q, "dual")
    assert d.termination == "optimal" and d.optimality_gap <= 1e-6
    assert_feasible(q, d.spend)
    assert d.constraint_duals["acq_roi"] > 0
    ref = slsqp_best(q)
    # SLSQP's plan is feasible to 1e-6 only, so it may edge past the optimum by that much
    assert np.isfinite(ref)
    assert objective(q, d.spend) == pytest.approx(ref, rel=1e-6)
    assert ref <= d.upper_bound * (1 + 1e-6)


@pytest.mark.parametrize("cap", [300.0, 1000.0, 50.0])
def test_tabulated_curves_under_rules_agree_with_the_global_solver(cap):
    # per-member tables: the spend jumps between table points, so the dual is piecewise linear
    tab = {"family": "piecewise", "points": [[0, 0.0], [10, 0.2], [30, 0.3], [60, 0.33]]}
    p = compiled({("a", "acquisition"): {"pool": 100, "value": 100, "curve": tab},
                  ("b", "retention"): {"pool": 50, "value": 75, "curve": tab},
                  ("c", "winback"): {"pool": 80, "value": 60, "curve": tab}}, budget=2500.0)
    p = dataclasses.replace(p, constraints=(LinearConstraint("cap_a", np.array([0]), np.ones(1), upper=cap),
                                            LinearConstraint("floor_bc", np.array([1, 2]), np.ones(2), lower=900.0)))
    d = solve(p, "dual")
    g = solve(p, "global")
    assert d.termination == "optimal" and d.optimality_gap <= 1e-6
    assert_feasible(p, d.spend)
    assert objective(p, d.spend) == pytest.approx(objective(p, g.spend), rel=max(g.optimality_gap, 1e-6))


def test_a_valueless_cell_forced_to_spend_falls_back_to_the_global_solver():
    # cell b has no value: only the floor makes it spend, and the dual has no curvature to price it
    from allocator.errors import NumericalError
    from helpers import exp_cell

    p = compiled({("a", "acquisition"): exp_cell(100, 50, 0.5, 0.1),
                  ("b", "acquisition"): exp_cell(200, 0.0, 0.4, 0.05),
                  ("c", "retention"): exp_cell(300, 80, 0.3, 0.2)}, budget=5000.0)
    p = dataclasses.replace(p, constraints=(LinearConstraint("floor_b", np.array([1]), np.ones(1), lower=500.0),))
    with pytest.raises(NumericalError, match="use solver 'global'"):
        solve(p, "dual")
    r = solve(p)
    assert r.solver == "global"
    # by hand: a and c at their free optima (marginal return 1), b held at its floor
    np.testing.assert_allclose(r.spend, [1000 * np.log(2.5), 500.0, 1500 * np.log(4.8)], rtol=1e-6)
