"""A static cell's value that depends on spend (``value_curve``): expected value ``pool value p(x) w(x)``.

Truth comes from outside the solvers: a brute-force grid of the objective written here from the
formula (two cells, the budget split over a fine grid), the one-period multi-period engine on the
same cells (its own value-curve code), and the messages of bad inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

import allocator
from allocator.compile import compile_scenario
from allocator.curves.product import ProductFamily
from allocator.dynamic import compile_dynamic, dynamic_from_dict, plan_dynamic
from allocator.errors import SpecError
from allocator.spec import scenario_from_dict
from tests.helpers import scenario

DECLINING = {"family": "logistic_quadratic", "b0": 3.0, "b1": -0.01, "b2": 0.0}   # w(0) = 0.95, falling
TABLE = {"family": "piecewise", "points": [[0, 1.0], [100, 0.98], [200, 0.9], [300, 0.7], [400, 0.3]]}
S_CURVE = {"family": "hill", "ceiling": 0.5, "half_saturation": 150.0, "shape": 3.0}


def _cell(pool, value, ceiling, rate, value_curve, **extra):
    return {"pool": pool, "value": value, "curve": {"family": "exponential", "ceiling": ceiling, "rate": rate},
            "value_curve": value_curve, **extra}


def _cells(value_curve, curve_b=None):
    b = _cell(50, 1500, 0.4, 0.01, value_curve)
    if curve_b is not None:
        b["curve"] = curve_b
    return {("a", "acquisition"): _cell(100, 2000, 0.3, 0.02, value_curve), ("b", "winback"): b}


def _w(value_curve, x):
    """The value curve written from its definition (not the library's family code)."""
    if value_curve["family"] == "piecewise":
        xs, ws = zip(*value_curve["points"])
        return np.interp(x, xs, ws)
    q = value_curve["b0"] + value_curve["b1"] * x + value_curve["b2"] * x * x
    return 1.0 / (1.0 + np.exp(-q))


def _p(curve, x):
    if curve["family"] == "exponential":
        return curve["ceiling"] * (1 - np.exp(-curve["rate"] * x))
    z = (x / curve["half_saturation"]) ** curve["shape"]
    return curve["ceiling"] * z / (1 + z)


def _grid_best(cells, budget, n=200001):
    """max over s_a + s_b <= budget of the two cells' net value, by brute force on a grid of splits."""
    (ca, cb) = cells.values()

    def f(c, s):
        x = s / c["pool"]
        return c["pool"] * c["value"] * _p(c["curve"], x) * _w(c["value_curve"], x) - s

    sa = np.linspace(0.0, budget, n)
    best = -np.inf
    for total in np.linspace(0.0, budget, 201):     # the budget need not bind
        a = sa[sa <= total]
        best = max(best, float(np.max(f(ca, a) + f(cb, total - a))))
    return best


@pytest.mark.parametrize("value_curve", [DECLINING, TABLE], ids=["logistic", "table"])
def test_concave_product_is_solved_exactly_and_matches_a_grid(value_curve):
    cells, budget = _cells(value_curve), 10000.0
    problem = compile_scenario(scenario_from_dict(scenario(cells, budget=budget)))
    assert problem.concave.all()
    plan = allocator.plan(scenario(cells, budget=budget))
    assert plan.summary.solver == "exact" and plan.summary.optimality_check["ok"]
    truth = _grid_best(cells, budget)
    assert plan.summary.net_value >= truth - 1e-6 * abs(truth)
    assert plan.summary.net_value == pytest.approx(truth, rel=1e-6)
    # expected value column: pool * value * p(x) * w(x), the formula written here
    t = plan.table.set_index("segment")
    for seg, c in zip("ab", cells.values()):
        x = t.loc[seg, "spend"] / c["pool"]
        assert t.loc[seg, "expected_value"] == pytest.approx(
            c["pool"] * c["value"] * _p(c["curve"], x) * _w(value_curve, x), rel=1e-12)
        # the table shows the response curve and the value of a success separately
        assert t.loc[seg, "response_rate"] == pytest.approx(_p(c["curve"], x), rel=1e-12)
        assert t.loc[seg, "value_per_success"] == pytest.approx(c["value"] * _w(value_curve, x), rel=1e-12)
        assert t.loc[seg, "expected_successes"] == pytest.approx(c["pool"] * _p(c["curve"], x), rel=1e-12)


def test_absent_value_curve_changes_nothing():
    cells = _cells(None)
    for c in cells.values():
        del c["value_curve"]
    problem = compile_scenario(scenario_from_dict(scenario(cells, budget=5000.0)))
    assert not any(isinstance(b.family, ProductFamily) for b in problem.blocks)
    assert [b.family.name for b in problem.blocks] == ["exponential"]


def test_non_concave_product_goes_global_with_a_certificate_bracketing_a_grid():
    cells, budget = _cells(TABLE, curve_b=S_CURVE), 12000.0
    problem = compile_scenario(scenario_from_dict(scenario(cells, budget=budget)))
    assert not problem.concave[1]
    plan = allocator.plan(scenario(cells, budget=budget))
    s = plan.summary
    assert s.solver == "global"
    truth = _grid_best(cells, budget)
    assert s.upper_bound >= truth - 1e-9 * abs(truth)             # the bound is never beaten by the grid
    assert s.net_value >= truth - (s.optimality_gap + 1e-6) * abs(truth)
    assert s.net_value <= truth + 1e-6 * abs(truth)


def test_sampled_concavity_errs_towards_not_concave():
    from allocator.curves import get_family

    fam = ProductFamily(get_family("exponential"), get_family("piecewise"))
    # a value curve rising at an increasing rate makes p w convex near 0: not concave
    P = fam.pack([{"curve": {"ceiling": 0.3, "rate": 0.001}, "value_curve": {"points": [[0, 0.1], [100, 0.2], [200, 1.0]]}}])
    assert not fam.is_concave(P)[0]
    x = np.linspace(0, 300, 7)
    got = [fam.response(np.array([xi]), P)[0] for xi in x]
    assert np.allclose(got, 0.3 * (1 - np.exp(-0.001 * x)) * np.interp(x, [0, 100, 200], [0.1, 0.2, 1.0]))


@pytest.mark.parametrize("value_curve", [DECLINING, TABLE], ids=["logistic", "table"])
def test_one_period_dynamic_scenario_gives_the_same_plan(value_curve):
    cells, budget = _cells(value_curve), 10000.0
    static = allocator.plan(scenario(cells, budget=budget))
    source = {"acquisition": "prospects", "winback": "lapsed"}
    segments = []
    for (seg, task), c in cells.items():
        segments.append({"id": seg, "members": {source[task]: float(c["pool"])}, "margin": 0.0,
                         "tasks": {task: {"curve": c["curve"], "value": float(c["value"]),
                                          "value_curve": c["value_curve"]}}})
    dyn = plan_dynamic(compile_dynamic(dynamic_from_dict(
        {"name": "twin", "periods": 1, "discount": 0.0, "budget": {"total": budget}, "segments": segments})),
        tolerance=1e-10)
    assert dyn.summary["customer_equity"] == pytest.approx(static.summary.net_value, rel=1e-7)
    s = static.table.set_index("segment")["spend"]
    d = dyn.table.groupby("segment")["spend"].sum()
    np.testing.assert_allclose(d.loc[s.index], s, atol=1e-4 * budget)


@pytest.mark.parametrize("value_curve, expected", [
    ({"family": "exponential", "ceiling": 1.5, "rate": 0.01},
     "value_curve.ceiling of cell (a, acquisition): must be in [0, 1]; got 1.5"),
    ({"family": "exponential", "ceiling": 0.9}, "value_curve.rate of cell (a, acquisition): is required"),
    ({"family": "exponential", "ceiling": 0.9, "rate": 0.1, "slope": 2},
     "value_curve.slope of cell (a, acquisition): unknown parameter"),
    ({"family": "nope"}, "value_curve.family of cell (a, acquisition): unknown curve family 'nope'"),
    ({"family": "piecewise", "points": [[0, 1.0], [10, 1.2]]}, "value_curve.points[1] of cell (a, acquisition)"),
])
def test_bad_value_curve_names_the_parameter_and_the_cell(value_curve, expected):
    cells = {("a", "acquisition"): _cell(100, 2000, 0.3, 0.02, value_curve)}
    with pytest.raises(SpecError) as info:
        scenario_from_dict(scenario(cells, budget=1000.0))
    assert expected in str(info.value)
