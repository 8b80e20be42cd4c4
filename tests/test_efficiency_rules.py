"""Average-efficiency rules (``type: efficiency``): validation, compilation, optimum, shadow price, conflicts.

Truth comes from outside the code under test: SLSQP from several starts on the same
problem written with the exponential formula ``p(x) = c (1 - exp(-r x))``, finite
differences of re-solved plans, and the KKT identity derived in the README
(``m_i = (price_i + mu b) / (1 + mu alpha_i)`` on interior cells).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy.optimize import minimize

import allocator
from allocator.compile import compile_scenario
from allocator.constraints import CellLabels, compile_constraints
from allocator.errors import InfeasibleError, SolverUnavailableError, SpecError
from allocator.infeasibility import find_conflict
from allocator.solvers import choose_solver, solve
from allocator.spec import scenario_from_dict
from helpers import exp_cell, hill_cell, scenario

# (pool, value, ceiling, rate) of three exponential cells; two acquisition cells share the rules
CELLS = {("a", "acquisition"): (100, 50, 0.5, 0.1), ("b", "acquisition"): (200, 100, 0.4, 0.05),
         ("c", "retention"): (300, 80, 0.3, 0.2)}
N, V, C, R = (np.array([c[k] for c in CELLS.values()], float) for k in range(4))
ACQ = np.array([True, True, False])


def cells() -> dict:
    return {k: exp_cell(*v) for k, v in CELLS.items()}


def compiled(data: dict):
    """The compiled problem with its efficiency rules (merged here too, whichever way compile wires them)."""
    sc = scenario_from_dict(data)
    p = compile_scenario(sc)
    if not p.efficiency:
        eff = compile_constraints(sc, CellLabels.from_scenario(sc), p.value, p.current_spend).efficiency
        p = dataclasses.replace(p, efficiency=eff)
    return p


def successes(s: np.ndarray) -> np.ndarray:
    return N * C * -np.expm1(-R * s / N)


def net(s: np.ndarray) -> float:
    return float(np.sum(V * successes(s)) - np.sum(s))


def slsqp(cons: list[dict], budget: float | None = None, starts: int = 8) -> tuple[float, np.ndarray]:
    """Best feasible SLSQP optimum from several starts (scaled to thousands)."""
    k = 1e3
    cons = [{"type": "ineq", "fun": (lambda f: lambda u: f(u * k) / k)(c["fun"])} for c in cons]
    if budget is not None:
        cons.append({"type": "ineq", "fun": lambda u: (budget - np.sum(u * k)) / k})
    rng = np.random.default_rng(0)
    best = (-math.inf, None)
    for _ in range(starts):
        u0 = rng.uniform(0.0, 3.0, 3)
        res = minimize(lambda u: -net(u * k) / 1e4, u0, method="SLSQP", bounds=[(0, None)] * 3,
                       constraints=cons, options={"ftol": 1e-14, "maxiter": 500})
        s = res.x * k
        if all(c["fun"](res.x) >= -1e-7 for c in cons) and net(s) > best[0]:
            best = (net(s), s)
    return best


def free_optimum() -> np.ndarray:
    return N / R * np.log(np.maximum(V * C * R, 1.0))


def roi_rule(target: float, **extra) -> dict:
    return {"name": "acq_roi", "type": "efficiency", "select": {"tasks": ["acquisition"]}, "min_roi": target,
            **extra}


def cps_rule(target: float) -> dict:
    return {"name": "cps", "type": "efficiency", "max_cost_per_success": target}


# ---------------------------------------------------------------- validation and compilation

@pytest.mark.parametrize("rule, message", [
    (roi_rule(2.0, max_cost_per_success=10.0), "give exactly one of `min_roi` and `max_cost_per_success`; got "
                                               "`min_roi` and `max_cost_per_success`"),
    ({"name": "x", "type": "efficiency"}, "give exactly one of `min_roi` and `max_cost_per_success`; got neither"),
    ({"name": "x", "type": "efficiency", "min_roi": -1.0}, "greater than 0"),
    ({"name": "x", "type": "efficiency", "max_cost_per_success": 0.0}, "greater than 0"),
    ({"name": "x", "type": "efficiency", "min_roi": float("inf")}, "finite"),
    ({"name": "x", "type": "efficiency", "select": {"tags": ["gold"]}, "min_roi": 2.0}, "unknown tag 'gold'"),
    ({"name": "x", "type": "efficiency", "select": {"tasks": ["winback"]}, "min_roi": 2.0}, "selects no cell"),
    ({"name": "x", "type": "efficiency", "select": {"segments": ["zz"]}, "min_roi": 2.0}, "unknown segment 'zz'"),
])
def test_bad_efficiency_rules_are_named(rule, message):
    with pytest.raises(SpecError) as err:
        allocator.plan(scenario(cells(), constraints=[rule]))
    assert message in str(err.value)
    assert "constraints" in str(err.value)


def test_names_must_be_unique_across_rule_types():
    rules = [{"name": "x", "type": "spend", "max": 1000}, {"name": "x", "type": "efficiency", "min_roi": 2.0}]
    with pytest.raises(SpecError, match="names must be unique; 'x'"):
        allocator.plan(scenario(cells(), constraints=rules))


def test_compiled_rules_carry_weights_rates_and_a_sentence():
    p = compiled(scenario(cells(), constraints=[roi_rule(3.0), cps_rule(25.0)]))
    roi, cps = p.efficiency
    assert (roi.kind, roi.rate, roi.target, roi.source) == ("min_roi", 3.0, 3.0, "acq_roi")
    np.testing.assert_array_equal(roi.index, [0, 1])
    np.testing.assert_array_equal(roi.weight, V[:2])
    assert roi.text == "'acq_roi': value of tasks [acquisition] >= 3 x its spend"
    assert (cps.kind, cps.rate, cps.target) == ("max_cost_per_success", 1.0, 25.0)
    np.testing.assert_array_equal(cps.weight, [25.0] * 3)
    assert cps.text == "'cps': spend of all cells <= 25 per expected success"
    # the rule's left-hand side, by hand, at some plan
    s = np.array([300.0, 900.0, 50.0])
    assert roi.activity(p, s) == pytest.approx(np.sum((V * successes(s))[:2]) - 3.0 * 1200.0, rel=1e-12)
    assert cps.activity(p, s) == pytest.approx(25.0 * successes(s).sum() - s.sum(), rel=1e-12)


# ---------------------------------------------------------------- optimum and shadow prices

def roi_target() -> float:
    s0 = free_optimum()
    return 1.3 * float(np.sum((V * successes(s0))[ACQ]) / s0[ACQ].sum())


def test_min_roi_binds_and_matches_slsqp_and_the_kkt_identity():
    target = roi_target()
    p = compiled(scenario(cells(), constraints=[roi_rule(target)]))
    assert choose_solver(p).name == "dual"
    r = solve(p)
    assert r.termination == "optimal" and r.optimality_gap <= 1e-6
    s = r.spend
    g = lambda s: float(np.sum((V * successes(s))[ACQ]) - target * s[ACQ].sum())  # noqa: E731
    best, s_ref = slsqp([{"fun": g}])
    assert net(s) == pytest.approx(best, rel=1e-8) or net(s) > best
    np.testing.assert_allclose(s, s_ref, rtol=1e-4, atol=1e-3)
    assert g(s) == pytest.approx(0.0, abs=1e-7 * target * s[ACQ].sum())   # binds, holds to round-off
    assert g(s) >= -1e-9 * target * s[ACQ].sum()
    mu = r.constraint_duals["acq_roi"]
    assert mu > 0
    m = V * C * R * np.exp(-R * s / N)
    # interior acquisition cells: (1 + mu * roi) / (1 + mu); the retention cell stays at 1
    np.testing.assert_allclose(m[ACQ], (1 + mu * target) / (1 + mu), rtol=1e-8)
    assert m[2] == pytest.approx(1.0, rel=1e-8)


def test_min_roi_shadow_price_matches_finite_differences():
    target = roi_target()
    plan = lambda t: solve(compiled(scenario(cells(), constraints=[roi_rule(t)])))  # noqa: E731
    r = plan(target)
    mu, S = r.constraint_duals["acq_roi"], r.spend[ACQ].sum()
    h = 1e-4 * target
    slope = (net(plan(target + h).spend) - net(plan(target - h).spend)) / (2 * h)
    # g = V - roi S, dg/droi = -S: d(optimum)/d(roi) = -mu S
    assert slope == pytest.approx(-mu * S, rel=1e-5)


def cps_target() -> float:
    s0 = free_optimum()
    return 0.8 * float(s0.sum() / successes(s0).sum())


def test_max_cost_per_success_binds_with_a_budget_and_matches_slsqp():
    t = cps_target()
    budget = 0.9 * free_optimum().sum()
    p = compiled(scenario(cells(), budget=budget, constraints=[cps_rule(t)]))
    r = solve(p)
    assert r.termination == "optimal" and r.optimality_gap <= 1e-6
    s = r.spend
    g = lambda s: float(t * successes(s).sum() - s.sum())  # noqa: E731
    best, s_ref = slsqp([{"fun": g}], budget=budget)
    assert net(s) == pytest.approx(best, rel=1e-8) or net(s) > best
    np.testing.assert_allclose(s, s_ref, rtol=1e-4, atol=1e-3)
    assert g(s) >= -1e-9 * s.sum() and s.sum() <= budget * (1 + 1e-12)
    mu, y = r.constraint_duals["cps"], r.constraint_duals.get("budget.total", 0.0)
    assert mu > 0
    m = V * C * R * np.exp(-R * s / N)
    interior = s > 1e-6
    # price 1 + y; the rule adds mu * (rate 1) to the price and mu * t / v_i to the value factor
    np.testing.assert_allclose(m[interior], ((1 + y + mu) / (1 + mu * t / V))[interior], rtol=1e-8)


def test_max_cost_per_success_shadow_price_matches_finite_differences():
    t = cps_target()
    plan = lambda u: solve(compiled(scenario(cells(), constraints=[cps_rule(u)])))  # noqa: E731
    r = plan(t)
    mu, succ = r.constraint_duals["cps"], successes(r.spend).sum()
    assert mu > 0
    h = 1e-4 * t
    slope = (net(plan(t + h).spend) - net(plan(t - h).spend)) / (2 * h)
    # g = t * successes - spend, dg/dt = successes: d(optimum)/dt = mu * successes
    assert slope == pytest.approx(mu * succ, rel=1e-5)


def test_a_rule_that_does_not_bind_changes_nothing():
    p = compiled(scenario(cells(), constraints=[roi_rule(1.01)]))
    r = solve(p)
    np.testing.assert_allclose(r.spend, free_optimum(), rtol=1e-8)
    assert r.constraint_duals["acq_roi"] == 0.0


def test_a_group_that_spends_nothing_satisfies_the_rule():
    # v c r = 0.6 < 1: the cell never pays, so its group spends 0 and its ROI is undefined;
    # the constraint form value - roi * spend >= 0 holds at 0 and the plan is the free optimum
    data = scenario({**cells(), ("d", "winback"): exp_cell(80, 30, 0.2, 0.1)},
                    constraints=[{"name": "wb_roi", "type": "efficiency", "select": {"tasks": ["winback"]},
                                  "min_roi": 5.0}])
    r = solve(compiled(data))
    assert r.termination == "optimal"
    assert r.spend[3] == 0.0
    np.testing.assert_allclose(r.spend[:3], free_optimum(), rtol=1e-8)


# ---------------------------------------------------------------- conflicts and unsupported problems

def test_a_floor_that_breaks_the_roi_rule_is_named_with_it():
    rules = [roi_rule(roi_target()),
             {"name": "acq_floor", "type": "spend", "select": {"tasks": ["acquisition"]}, "min": 20_000},
             {"name": "ret_cap", "type": "spend", "select": {"tasks": ["retention"]}, "max": 5_000}]
    p = compiled(scenario(cells(), constraints=rules))
    texts = [e.text for e in p.efficiency] + [c.text for c in p.constraints if c.name == "acq_floor"]
    assert sorted(find_conflict(p)) == sorted(texts)
    with pytest.raises(InfeasibleError) as err:
        solve(p)
    assert sorted(err.value.conflict) == sorted(texts)
    # the floor alone, or the rule alone, can hold
    assert find_conflict(dataclasses.replace(p, efficiency=())) is None
    assert find_conflict(dataclasses.replace(p, constraints=p.constraints[1:])) is None


@pytest.mark.parametrize("floor", [1_000.0, 1_200.0])
def test_a_floor_near_the_edge_is_a_conflict_exactly_when_a_grid_says_so(floor):
    # best ROI slack of the acquisition group at spend `floor`, by brute force over the split
    target = roi_target()
    split = np.linspace(0.0, floor, 20_001)
    s = np.stack([split, floor - split, np.zeros_like(split)], axis=1)
    best = max(float(np.sum((V * successes(row))[ACQ]) - target * floor) for row in s)
    p = compiled(scenario(cells(), constraints=[
        roi_rule(target), {"name": "acq_floor", "type": "spend", "select": {"tasks": ["acquisition"]},
                           "min": floor}]))
    conflict = find_conflict(p)
    assert (conflict is not None) == (best < 0)
    if conflict is None:
        assert solve(p).spend[ACQ].sum() >= floor * (1 - 1e-12)


def test_s_curves_with_an_efficiency_rule_name_the_rule_and_the_cells():
    data = scenario({**cells(), ("d", "winback"): hill_cell(300, 80, 0.3, 5.0, 2.0)}, constraints=[roi_rule(2.0)])
    with pytest.raises(SolverUnavailableError) as err:
        solve(compiled(data))
    assert "acq_roi" in str(err.value) and "(d, winback)" in str(err.value)


def test_two_rules_binding_together_match_slsqp():
    # both bind at once (checked below): ROI of acquisition >= 1.9 and at most 30 per success overall
    p = compiled(scenario(cells(), budget=3000.0, constraints=[roi_rule(1.9), cps_rule(30.0)]))
    r = solve(p)
    assert r.termination == "optimal" and r.optimality_gap <= 1e-6
    s = r.spend
    g_roi = lambda s: float(np.sum((V * successes(s))[ACQ]) - 1.9 * s[ACQ].sum())  # noqa: E731
    g_cps = lambda s: float(30.0 * successes(s).sum() - s.sum())  # noqa: E731
    best, s_ref = slsqp([{"fun": g_roi}, {"fun": g_cps}], budget=3000.0)
    assert net(s) == pytest.approx(best, rel=1e-8) or net(s) > best
    np.testing.assert_allclose(s, s_ref, rtol=1e-4, atol=1e-3)
    assert r.constraint_duals["acq_roi"] > 0 and r.constraint_duals["cps"] > 0
    assert min(g_roi(s), g_cps(s)) >= -1e-9 * s.sum()
    # interior cells: m_i = (1 + mu_roi * 1.9 [acq] + mu_cps) / (1 + mu_roi [acq] + mu_cps * 30 / v_i)
    mr, mc = r.constraint_duals["acq_roi"], r.constraint_duals["cps"]
    m = V * C * R * np.exp(-R * s / N)
    want = (1 + mr * 1.9 * ACQ + mc) / (1 + mr * ACQ + mc * 30.0 / V)
    np.testing.assert_allclose(m, want, rtol=1e-8)
