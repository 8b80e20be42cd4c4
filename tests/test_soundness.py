"""Certificates that are never false (issue 12, items 1 and 2).

A certified plan claims ``upper_bound >= true optimum`` and ``plan >= upper_bound - gap``.
These tests try to beat every certified plan: small random instances with spend units,
minimums, activation costs and steep curves are searched exhaustively (every whole number
of units per cell) and by local moves from the certified plan (a unit moved between cells,
a cell switched on or off). The truth is computed here from the curves' closed forms, not
by the code under test.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import yaml

import allocator
from allocator.cli import main
from allocator.compile import compile_scenario
from allocator.errors import InfeasibleError
from allocator.solvers import solve
from allocator.spec import scenario_from_dict
from tests.helpers import scenario

# ---------------------------------------------------------------- independent truth


def response(curve: dict, x: np.ndarray) -> np.ndarray:
    """p(x) from the family's closed form (spend per member ``x``)."""
    x = np.asarray(x, float)
    f = curve.get("floor", 0.0)
    if curve["family"] == "exponential":
        return f + (curve["ceiling"] - f) * -np.expm1(-curve["rate"] * x)
    z = x / curve["half_saturation"]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        zk = z ** curve["shape"]
        frac = np.where(np.isinf(zk), 1.0, zk / (1.0 + zk))
    return f + (curve["ceiling"] - f) * frac


def true_net(cells: list[dict], spend: np.ndarray) -> np.ndarray:
    """Net value (value - spend - activation) of plans ``spend`` (plans x cells)."""
    spend = np.atleast_2d(spend)
    total = -spend.sum(axis=1)
    for i, c in enumerate(cells):
        s = spend[:, i]
        total = total + c["pool"] * c["value"] * response(c["curve"], s / c["pool"])
        total = total - np.where(s > 0, c.get("activation_cost", 0.0), 0.0)
    return total


def feasible(cells: list[dict], spend: np.ndarray, budget: float) -> np.ndarray:
    spend = np.atleast_2d(spend)
    ok = spend.sum(axis=1) <= budget * (1 + 1e-9)   # round-off of a plan that meets the budget
    for i, c in enumerate(cells):
        s = spend[:, i]
        ok &= s >= c.get("min_spend", 0.0) * (1 - 1e-12)
        if c.get("max_spend") is not None:
            ok &= s <= c["max_spend"] * (1 + 1e-12)
        ma = c.get("min_active_spend") or 0.0
        ok &= (s <= 0) | (s >= ma * (1 - 1e-12))
    return ok


def brute_force(cells: list[dict], unit: float, budget: float) -> tuple[float, np.ndarray]:
    """The best plan over every whole number of units per cell."""
    K = int(math.floor(budget / unit + 1e-9))
    n = len(cells)
    grid = np.array([q for q in itertools.product(range(K + 1), repeat=n) if sum(q) <= K], float) * unit
    ok = feasible(cells, grid, budget)
    assert ok.any()
    vals = np.where(ok, true_net(cells, grid), -np.inf)
    j = int(np.argmax(vals))
    return float(vals[j]), grid[j]


def local_search(cells: list[dict], unit: float, budget: float, start: np.ndarray) -> tuple[float, np.ndarray]:
    """Hill-climb from ``start`` by moving a unit between cells, adding or removing one, or
    switching a cell off or on at its smallest allowed spend."""
    best = np.array(start, float)
    best_v = float(true_net(cells, best)[0])
    n = len(cells)
    for _ in range(200):
        moves = []
        for i in range(n):
            for d in (unit, -unit):
                m = best.copy()
                m[i] += d
                moves.append(m)
            for j in range(n):
                if i != j:
                    m = best.copy()
                    m[i] += unit
                    m[j] -= unit
                    moves.append(m)
            m = best.copy()
            m[i] = 0.0
            moves.append(m)
            m = best.copy()
            lo = max(cells[i].get("min_spend", 0.0), cells[i].get("min_active_spend") or 0.0, unit)
            m[i] = math.ceil(lo / unit - 1e-9) * unit
            moves.append(m)
        M = np.maximum(np.array(moves), 0.0)
        ok = feasible(cells, M, budget)
        vals = np.where(ok, true_net(cells, M), -np.inf)
        j = int(np.argmax(vals))
        if vals[j] <= best_v * (1 + 1e-12) + 1e-12:
            break
        best, best_v = M[j], float(vals[j])
    return best_v, best


# ---------------------------------------------------------------- random instances


def random_instance(seed: int) -> tuple[list[dict], float, float]:
    """2-5 cells, a spend unit, a budget of a few units, steep curves, tiny or huge pools."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 6))
    unit = float(10 ** rng.uniform(0, 3))
    K = int(rng.integers(4, {2: 24, 3: 14, 4: 10, 5: 8}[n]))
    budget = K * unit + float(rng.uniform(0, 0.9)) * unit   # a budget off the unit grid as well
    cells = []
    for _ in range(n):
        pool = float(10 ** rng.uniform(-1, 6))
        x_unit = unit / pool                              # spend per member of one unit
        # curves whose action is anywhere from far below one unit to a few units
        scale = x_unit * 10 ** rng.uniform(-3, 1)
        if rng.random() < 0.5:
            rate = float(min(1.0 / scale, 50.0) if rng.random() < 0.3 else 1.0 / scale)
            curve = {"family": "exponential", "ceiling": float(rng.uniform(0.05, 0.9)), "rate": rate}
        else:
            curve = {"family": "hill", "ceiling": float(rng.uniform(0.05, 0.9)), "half_saturation": float(scale),
                     "shape": float(rng.uniform(0.3, 6.0))}
        # a value that makes the cell worth about a few units when fully on
        worth = unit * 10 ** rng.uniform(-0.5, 1.5)
        value = float(worth / (pool * curve["ceiling"]))
        c = {"pool": pool, "value": value, "curve": curve}
        r = rng.random()
        if r < 0.2:
            c["min_spend"] = float(unit * rng.integers(1, 3))
        elif r < 0.45:
            c["min_active_spend"] = float(unit * rng.integers(1, 4))
        if rng.random() < 0.3:
            c["activation_cost"] = float(unit * rng.uniform(0.1, 2.0))
        if rng.random() < 0.15:
            c["max_spend"] = float(unit * rng.integers(2, K + 1))
        cells.append(c)
    return cells, unit, budget


def solve_instance(cells: list[dict], unit: float, budget: float, formulation: str = "incremental"):
    data = scenario({(f"s{i}", "acquisition"): c for i, c in enumerate(cells)})
    data["budget"] = {"total": budget, "unit": unit}
    problem = compile_scenario(scenario_from_dict(data))
    problem = dataclasses.replace(problem, options={**problem.options, "formulation": formulation})
    return problem, solve(problem, "global")


def assert_unbeaten(cells, unit, budget, res, found: float, how: str) -> None:
    plan_v = float(true_net(cells, res.spend)[0])
    scale = max(abs(plan_v), 1.0)
    # the reported bound is a bound on every plan found ...
    assert found <= res.upper_bound + 1e-7 * max(abs(res.upper_bound), 1.0), (how, found, res.upper_bound)
    # ... and no plan beats the certified one by more than its gap
    assert found - plan_v <= (res.optimality_gap + 1e-7) * scale, (how, found, plan_v, res.optimality_gap)


@pytest.mark.parametrize("seed", range(36))
def test_no_plan_beats_a_certified_one(seed):
    cells, unit, budget = random_instance(seed)
    try:
        problem, res = solve_instance(cells, unit, budget, "sos2" if seed % 3 == 2 else "incremental")
    except InfeasibleError:
        # then brute force must find no feasible plan either
        K = int(math.floor(budget / unit + 1e-9))
        grid = np.array([q for q in itertools.product(range(K + 1), repeat=len(cells)) if sum(q) <= K]) * unit
        assert not feasible(cells, grid, budget).any()
        return
    assert res.termination == "optimal"
    assert feasible(cells, res.spend, budget)[0]
    assert np.allclose(res.spend / unit, np.round(res.spend / unit), atol=1e-9)
    best, where = brute_force(cells, unit, budget)
    assert_unbeaten(cells, unit, budget, res, best, f"brute force {where}")
    local, where = local_search(cells, unit, budget, res.spend)
    assert_unbeaten(cells, unit, budget, res, local, f"local moves {where}")


@pytest.mark.parametrize("seed", range(100, 112))
def test_no_plan_beats_a_certified_one_without_units(seed):
    """The same instances with continuous spend: every plan on the unit grid is feasible, so none
    may pass the bound; local moves of an eighth of a unit from the plan may not either."""
    cells, unit, budget = random_instance(seed)
    data = scenario({(f"s{i}", "acquisition"): c for i, c in enumerate(cells)})
    data["budget"] = {"total": budget}
    try:
        res = solve(compile_scenario(scenario_from_dict(data)), "global")
    except InfeasibleError:
        return
    assert res.termination == "optimal"
    assert feasible(cells, res.spend, budget)[0]
    best, where = brute_force(cells, unit, budget)
    assert_unbeaten(cells, unit, budget, res, best, f"unit grid {where}")
    local, where = local_search(cells, unit / 8, budget, res.spend)
    assert_unbeaten(cells, unit, budget, res, local, f"local moves {where}")


# ---------------------------------------------------------------- the reported case


def _example(**acq) -> dict:
    with open("scenarios/example.yaml", encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    data["budget"]["unit"] = 1000
    cell = data["segments"][0]["tasks"]["acquisition"]
    cell["curve"]["rate"] = 30
    cell.update(acq)
    return data


def test_steep_curve_under_spend_units_is_not_shut_out():
    """Issue 12.1: a curve saturating within one spend unit was capped below the unit, so the cell
    could never run and the 'bound' (10,179,266) sat below a feasible plan (11,946,247)."""
    free = allocator.plan(scenario_from_dict(_example()))
    forced = allocator.plan(scenario_from_dict(_example(min_spend=1000)))
    assert free.summary.status == "optimal"
    # the plan with the cell forced on is feasible for the free problem: the bound must cover it
    assert free.summary.upper_bound >= forced.summary.net_value
    assert forced.summary.net_value > 11_900_000
    assert free.summary.net_value >= forced.summary.net_value - 1e-4 * abs(forced.summary.net_value)
    cell = free.table[(free.table.segment == "enterprise") & (free.table.task == "acquisition")]
    assert float(cell.spend.iloc[0]) >= 1000


# ---------------------------------------------------------------- two locks on one cell


def _two_locks(first, second):
    cells = {("a", "acquisition"): {"pool": 1000, "value": 50, "current_spend": 400,
                                    "curve": {"family": "exponential", "ceiling": 0.3, "rate": 0.05}},
             ("b", "acquisition"): {"pool": 1000, "value": 60,
                                    "curve": {"family": "exponential", "ceiling": 0.3, "rate": 0.05}}}
    cons = [{"name": "keep_a", "type": "lock", "select": {"segments": ["a"]}, "spend": first},
            {"name": "pin_all", "type": "lock", "select": {}, "spend": second}]
    return scenario(cells, budget=5000, constraints=cons)


def test_conflicting_locks_are_infeasible_naming_both():
    with pytest.raises(InfeasibleError) as e:
        allocator.plan(scenario_from_dict(_two_locks(300, 500)))
    text = str(e.value)
    assert "keep_a" in text and "pin_all" in text and "(a, acquisition)" in text


def test_equal_locks_are_fine():
    p = allocator.plan(scenario_from_dict(_two_locks("current", 400)))
    assert p.summary.status == "optimal"
    spend = dict(zip(p.table.segment, p.table.spend))
    assert spend["a"] == pytest.approx(400) and spend["b"] == pytest.approx(400)


def test_conflicting_locks_exit_3(tmp_path, capsys):
    path = tmp_path / "locks.yaml"
    path.write_text(yaml.safe_dump(_two_locks(300, 500)), encoding="utf-8")
    assert main(["plan", str(path), "--out", str(tmp_path / "out")]) == 3
    err = capsys.readouterr().err
    assert "keep_a" in err and "pin_all" in err
    assert not (tmp_path / "out" / "plan.csv").exists()
