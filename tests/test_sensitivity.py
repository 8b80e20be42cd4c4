"""Envelope-theorem sensitivities against finite differences of re-solved plans; the move what-if."""

from __future__ import annotations

import numpy as np
import pytest

import allocator
from allocator.analysis.sensitivity import InfeasibleMoveError, sensitivity, what_if_move
from allocator.cli import main
from allocator.errors import SpecError
from allocator.spec.overrides import apply_overrides
from helpers import exp_cell, scenario, write_yaml


def _scenario() -> dict:
    """Budget binds; one cell at its max_spend, one held at its min_spend; three curve families."""
    cells = {
        ("ent", "acquisition"): exp_cell(400, 5200, 0.85, 0.0033),
        ("ent", "retention"): exp_cell(300, 8000, 0.95, 0.004, floor=0.87),
        ("mid", "acquisition"): exp_cell(900, 3800, 0.85, 0.0033, max_spend=150000.0),
        ("mid", "winback"): exp_cell(150, 2000, 0.25, 0.003, floor=0.02, min_spend=40000.0),
        ("small", "acquisition"): {"pool": 2500, "value": 1500,
                                   "curve": {"family": "hill", "ceiling": 0.6, "half_saturation": 350, "shape": 0.8}},
        ("web", "winback"): {"pool": 759, "value": 900,
                             "curve": {"family": "piecewise", "points": [[0, 0.02], [20, 0.08], [50, 0.12], [100, 0.14]]}},
    }
    return scenario(cells, budget=600000.0)


def _net(data: dict, path: str, step: float) -> float:
    return allocator.plan(apply_overrides(data, {path: {"add": step}}), solver="exact").summary.net_value


def _fd(data: dict, path: str, current: float, rel: float = 1e-4) -> float:
    h = rel * max(abs(current), 1e-3)
    return (_net(data, path, h) - _net(data, path, -h)) / (2 * h)


CASES = [
    ("ent", "acquisition", "curve.rate"), ("ent", "acquisition", "curve.ceiling"),
    ("ent", "retention", "curve.floor"), ("ent", "retention", "value"), ("ent", "retention", "pool"),
    ("mid", "acquisition", "curve.rate"),        # at its max_spend
    ("mid", "winback", "curve.ceiling"),         # held at its min_spend
    ("small", "acquisition", "curve.half_saturation"), ("small", "acquisition", "curve.shape"),
    ("small", "acquisition", "pool"), ("web", "winback", "value"),
]


@pytest.mark.parametrize("seg,task,param", CASES)
def test_first_order_sensitivities_match_finite_differences_of_resolved_plans(seg, task, param):
    data = _scenario()
    sens = sensitivity(allocator.plan(data, solver="exact"))
    row = sens.parameters[(sens.parameters.segment == seg) & (sens.parameters.task == task)
                          & (sens.parameters.parameter == param)].iloc[0]
    fd = _fd(data, f"segments.{seg}.tasks.{task}.{param}", row.current)
    assert row.derivative == pytest.approx(fd, rel=2e-5, abs=1e-6 * abs(sens.net_value) / max(abs(row.current), 1))
    assert row.elasticity == pytest.approx(row.derivative * row.current / sens.net_value, rel=1e-12)


def test_table_point_sensitivity_matches_finite_difference():
    data = _scenario()
    sens = sensitivity(allocator.plan(data, solver="exact"))
    row = sens.parameters[(sens.parameters.segment == "web") & (sens.parameters.parameter == "curve.points[2].p")]
    assert len(row) == 1
    h = 1e-5

    def with_p(dp):
        d = apply_overrides(data, {})
        seg = next(s for s in d["segments"] if s["id"] == "web")
        seg["tasks"]["winback"]["curve"]["points"][2][1] += dp
        return allocator.plan(d, solver="exact").summary.net_value

    fd = (with_p(h) - with_p(-h)) / (2 * h)
    assert row.derivative.iloc[0] == pytest.approx(fd, rel=1e-5)


def test_shadow_prices_match_finite_differences_of_the_constraints():
    data = _scenario()
    plan = allocator.plan(data, solver="exact")
    sp = sensitivity(plan).shadow_prices.set_index("kind")
    assert set(sp.index) == {"budget", "max_spend", "min_spend"}   # each binding thing once
    assert (sp["shadow_price"] >= 0).all()
    fd_budget = _fd(data, "budget.total", 600000.0, rel=1e-5)
    assert sp.loc["budget", "shadow_price"] == pytest.approx(fd_budget, rel=1e-6)
    assert sp.loc["budget", "shadow_price"] == pytest.approx(plan.summary.budget_shadow_price, rel=1e-12)
    fd_max = _fd(data, "segments.mid.tasks.acquisition.max_spend", 150000.0, rel=1e-5)
    assert sp.loc["max_spend", "shadow_price"] == pytest.approx(fd_max, rel=1e-5)
    assert sp.loc["max_spend", "shadow_price"] > 0
    fd_min = _fd(data, "segments.mid.tasks.winback.min_spend", 40000.0, rel=1e-5)
    # relaxing a floor means lowering it: the price is the gain per unit lowered
    assert sp.loc["min_spend", "d_net_value_d_bound"] == pytest.approx(fd_min, rel=1e-5)
    assert sp.loc["min_spend", "shadow_price"] == pytest.approx(-fd_min, rel=1e-5)
    assert sp.loc["min_spend", "shadow_price"] > 0


def test_move_reports_the_exact_value_lost():
    data = _scenario()
    plan = allocator.plan(data, solver="exact")
    res = what_if_move(plan, 10000.0, ("ent", "acquisition"), "small/acquisition")
    # independent: evaluate the moved plan from the curve formulas
    s = plan.spend.copy()
    p = plan.problem
    a = int(np.flatnonzero((p.segment == "ent") & (p.task == "acquisition"))[0])
    b = int(np.flatnonzero((p.segment == "small") & (p.task == "acquisition"))[0])
    ent = 400 * 5200 * 0.85 * -np.expm1(-0.0033 * np.array([s[a], s[a] - 10000]) / 400)
    x = np.array([s[b], s[b] + 10000]) / 2500
    small = 2500 * 1500 * 0.6 * x ** 0.8 / (350 ** 0.8 + x ** 0.8)
    lost = (ent[0] - ent[1]) - (small[1] - small[0])
    assert res.value_lost == pytest.approx(lost, rel=1e-9)
    # both cells are interior at a common marginal return, so the first-order loss is ~0 and the
    # exact loss is positive (second order)
    assert res.value_lost > 0
    assert abs(res.first_order_estimate) < 1e-6 * res.amount
    assert res.marginal_return_from == pytest.approx(res.marginal_return_to, rel=1e-8)


def test_move_that_breaks_a_bound_is_refused_with_the_room_left():
    plan = allocator.plan(_scenario(), solver="exact")
    # a bound is a rule like any other: refused (exit 3), naming it with the room left
    with pytest.raises(InfeasibleMoveError, match=r"min_spend of cell \(mid, winback\) = 40,000; the move leaves "
                                                  r"39,999 \(at most 0 can move out\)"):
        what_if_move(plan, 1.0, "mid/winback", "ent/acquisition")
    with pytest.raises(SpecError, match=r"no cell \(nope, acquisition\) in the scenario"):
        what_if_move(plan, 1.0, "nope/acquisition", "ent/acquisition")


def test_sensitivity_and_whatif_cli(tmp_path, capsys):
    sc = write_yaml(tmp_path / "s.yaml", _scenario())
    out = tmp_path / "o"
    assert main(["sensitivity", str(sc), "--out", str(out), "--top", "3"]) == 0
    assert (out / "sensitivity.csv").is_file() and (out / "shadow_prices.csv").is_file()
    assert "shadow prices" in capsys.readouterr().out
    assert main(["whatif", str(sc), "--move", "5000", "--from", "ent/acquisition", "--to", "small/acquisition"]) == 0
    assert "loses" in capsys.readouterr().out
    rc = main(["whatif", str(sc), "--move", "-5", "--from", "ent/acquisition", "--to", "small/acquisition"])
    assert rc == 2 and "amount: must be a positive amount; got -5.0" in capsys.readouterr().err
