"""Sensitivity, what-if moves and uncertainty of multi-period plans, against independent truth.

* sensitivity: envelope-theorem derivatives against central differences of re-solved plans
  (each perturbed scenario validated, compiled and solved afresh);
* what-if: the moved plan's value against a plain forward simulation written here from the
  README's conventions; refused moves name the budget they break;
* uncertainty: per-sample equity of the plan against the same simulation with the sampled
  parameters, and a margin drawn from a distribution against linearity (the mean of a plan's
  equity over margins is its equity at the mean margin).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from allocator.dynamic import compile_dynamic, dynamic_from_dict, solve_dynamic
from allocator.dynamic.examples import random_scenario
from allocator.dynamic.sensitivity import dynamic_sensitivity


def _instance(budget: str = "per_period", seed: int = 3) -> dict:
    data = random_scenario(2, 3, seed=seed, budget=budget, tightness=0.4)
    if budget == "per_period":
        data["budget"]["total"] = 0.9 * sum(data["budget"]["per_period"])
    return data


def _equity(data: dict) -> float:
    return solve_dynamic(compile_dynamic(dynamic_from_dict(data)), tolerance=1e-13).primal


def _set(data: dict, path: tuple, value: float) -> dict:
    out = copy.deepcopy(data)
    node = out
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return out


def _get(data: dict, path: tuple):
    node = data
    for p in path:
        node = node[p]
    return node


CASES = [  # (path in the scenario, parameter label, segment, task)
    (("segments", 0, "margin"), "margin.active", "s0", ""),
    (("segments", 1, "members", "prospects"), "members.prospects", "s1", ""),
    (("segments", 0, "members", "lapsed"), "members.lapsed", "s0", ""),
    (("segments", 1, "terminal", "active"), "terminal.active", "s1", ""),
    (("segments", 0, "tasks", "acquisition", "curve", "rate"), "curve.rate", "s0", "acquisition"),
    (("segments", 1, "tasks", "retention", "curve", "ceiling"), "curve.ceiling", "s1", "retention"),
    (("segments", 0, "tasks", "winback", "curve", "rate"), "curve.rate", "s0", "winback"),
    (("segments", 1, "arrivals"), "arrivals", "s1", ""),
    (("budget", "per_period", 1), "budget.per_period[2]", "", ""),
    (("budget", "total"), "budget.total", "", ""),
]


@pytest.mark.parametrize("budget", ["per_period", "total"])
def test_sensitivity_matches_finite_differences_of_resolved_plans(budget):
    data = _instance(budget)
    problem = compile_dynamic(dynamic_from_dict(data))
    result = solve_dynamic(problem, tolerance=1e-13)
    assert result.rows is not None and np.any(result.price > 0)   # a budget binds
    sens = dynamic_sensitivity(problem, result).parameters
    checked = 0
    for path, label, seg, task in CASES:
        if path[0] == "budget" and path[1] not in data["budget"]:
            continue
        theta = float(_get(data, path))
        h = 1e-4 * max(abs(theta), 1e-2)
        fd = (_equity(_set(data, path, theta + h)) - _equity(_set(data, path, theta - h))) / (2 * h)
        row = sens[(sens.parameter == label) & (sens.segment == seg) & (sens.task == task)]
        assert len(row) == 1, label
        got = float(row.derivative.iloc[0])
        assert got == pytest.approx(fd, rel=2e-4, abs=1e-6 * abs(result.primal) / max(abs(theta), 1e-2)), \
            (label, seg, task, got, fd)
        checked += 1
    assert checked >= 9


def test_per_period_budget_prices_are_the_derivatives_of_equity():
    data = random_scenario(2, 3, seed=5, budget="per_period", tightness=0.3)
    problem = compile_dynamic(dynamic_from_dict(data))
    result = solve_dynamic(problem, tolerance=1e-13)
    sens = dynamic_sensitivity(problem, result)
    sp = sens.shadow_prices
    assert list(sp.constraint) == ["budget.per_period[1]", "budget.per_period[2]", "budget.per_period[3]"]
    assert sp.binding.all()
    for t in range(3):
        b = data["budget"]["per_period"][t]
        h = 1e-4 * b
        fd = (_equity(_set(data, ("budget", "per_period", t), b + h))
              - _equity(_set(data, ("budget", "per_period", t), b - h))) / (2 * h)
        assert sp.shadow_price[t] == pytest.approx(fd, rel=1e-5)


def test_sensitivity_on_an_infinite_horizon():
    from allocator.dynamic.examples import blattberg_deighton

    data = blattberg_deighton(margin=100.0, discount=0.1, acq_ceiling=0.4, acq_rate=0.02, ret_ceiling=0.8,
                              ret_rate=0.05)
    problem = compile_dynamic(dynamic_from_dict(data))
    sens = dynamic_sensitivity(problem, solve_dynamic(problem)).parameters
    for path, label, task in [(("segments", 0, "margin"), "margin.active", ""),
                              (("segments", 0, "tasks", "retention", "curve", "rate"), "curve.rate", "retention")]:
        theta = float(_get(data, path))
        h = 1e-4 * theta
        fd = (_equity(_set(data, path, theta + h)) - _equity(_set(data, path, theta - h))) / (2 * h)
        row = sens[(sens.parameter == label) & (sens.task == task)]
        assert float(row.derivative.iloc[0]) == pytest.approx(fd, rel=1e-5)


# ---------------------------------------------------------------- an independent simulation

def _simulate(data: dict, x: dict) -> tuple[float, list[float]]:
    """Customer equity and nominal spend per period of spend per member ``x[(t, seg, task)]``.

    Written from the README's conventions (exponential curves only), independently of the solver:
    margins earned by members at the end of a period, one-off values 0, terminal values per state at
    the end of period T discounted like period T, arrivals at the start of periods 2..T.
    """
    T, d = data["periods"], data["discount"]
    src = {"acquisition": "prospects", "retention": "active", "winback": "lapsed"}
    total, spend = 0.0, [0.0] * T
    for seg in data["segments"]:
        n = {"prospects": 0.0, "active": 0.0, "lapsed": 0.0, **seg["members"]}
        arr = seg.get("arrivals", 0.0)
        for t in range(1, T + 1):
            disc = (1 + d) ** -(t - 1)
            moved = {}
            for task, spec in seg["tasks"].items():
                c = spec["curve"]
                xv = x.get((t, seg["id"], task), 0.0)
                floor = c.get("floor", 0.0)
                p = floor + (c["ceiling"] - floor) * (1 - np.exp(-c["rate"] * xv))
                moved[task] = n[src[task]] * p
                spend[t - 1] += n[src[task]] * xv
                total -= disc * n[src[task]] * xv
            keep_p = seg.get("prospects_stay", 1.0)
            lost = seg.get("unreachable", 0.0)
            new = {"active": sum(moved.values()),
                   "prospects": (n["prospects"] - moved.get("acquisition", 0.0)) * keep_p,
                   "lapsed": (n["active"] - moved.get("retention", 0.0))
                   + (n["lapsed"] - moved.get("winback", 0.0)) * (1 - lost)}
            total += disc * seg["margin"] * new["active"]
            if t < T:
                new["prospects"] += arr
            n = new
        total += (1 + d) ** -(T - 1) * sum(v * n[s] for s, v in seg.get("terminal", {}).items())
    return total, spend


def _policy(problem, result) -> dict:
    from allocator.dynamic.evaluation import fixed_plan
    from allocator.dynamic.model import TASK_OF_STATE

    plan = fixed_plan(result, min_share=1e-9)
    assert len(plan.weights) == 1          # concave curves: the plan is one policy
    return {(t + 1, str(problem.segment[s]), TASK_OF_STATE[k]): float(plan.x[0, t, s, k])
            for t in range(problem.T) for s in range(problem.S) for k in range(3)}


def test_the_independent_simulation_reproduces_the_plan():
    data = _instance("total")
    problem = compile_dynamic(dynamic_from_dict(data))
    result = solve_dynamic(problem, tolerance=1e-12)
    ce, spend = _simulate(data, _policy(problem, result))
    assert ce == pytest.approx(result.primal, rel=1e-12)
    assert sum(spend) == pytest.approx(data["budget"]["total"], rel=1e-9)


@pytest.mark.parametrize("hold", ["spend", "per_member"])
def test_whatif_move_is_valued_like_an_independent_simulation(hold):
    from allocator.dynamic.whatif import move_spend

    data = _instance("total")
    problem = compile_dynamic(dynamic_from_dict(data))
    result = solve_dynamic(problem, tolerance=1e-12)
    x = _policy(problem, result)
    base_ce, base_spend = _simulate(data, x)
    members = {}   # members of each cell's state in the plan, from the simulation's own counts
    amount = 500.0
    a, b = (1, "s0", "retention"), (1, "s1", "acquisition")   # the same period: counts before it unchanged
    if hold == "per_member":
        seg = {s["id"]: s for s in data["segments"]}
        members = {c: seg[c[1]]["members"][{"retention": "active", "acquisition": "prospects"}[c[2]]] for c in (a, b)}
        moved = dict(x)
        moved[a] -= amount / members[a]
        moved[b] += amount / members[b]
        ce, spend = _simulate(data, moved)
        # later periods spend per member as before, on other counts: the total budget breaks or not
        if sum(spend) > data["budget"]["total"] * (1 + 1e-9):
            from allocator.dynamic.whatif import InfeasibleMoveError

            with pytest.raises(InfeasibleMoveError, match="budget.total"):
                move_spend(problem, result, amount, "1/s0/retention", "1/s1/acquisition", hold=hold)
            return
    res = move_spend(problem, result, amount, "1/s0/retention", "1/s1/acquisition", hold=hold)
    assert res.customer_equity_before == pytest.approx(base_ce, rel=1e-12)
    if hold == "per_member":
        assert res.customer_equity_after == pytest.approx(ce, rel=1e-12)
    else:
        # every other cell keeps its nominal spend: the total is unchanged and the plan is worse
        assert res.periods.spend_after.sum() == pytest.approx(sum(base_spend), rel=1e-12)
        moved = {}
        xs = res.x[0]
        for (t, s, task), _ in x.items():
            moved[(t, s, task)] = float(xs[t - 1, [str(v) for v in problem.segment].index(s),
                                           ["acquisition", "retention", "winback"].index(task)])
        ce, spend = _simulate(data, moved)
        assert res.customer_equity_after == pytest.approx(ce, rel=1e-12)
        assert sum(spend) == pytest.approx(sum(base_spend), rel=1e-10)
        # the moved cells changed by exactly the amount (simulated counts)
        assert spend[0] == pytest.approx(base_spend[0], rel=1e-12)
    # a small move away from the optimum loses value, to second order
    assert res.value_lost > -1e-9 * abs(base_ce)


def test_whatif_refuses_moves_that_break_budgets_or_bounds():
    from allocator.dynamic.whatif import InfeasibleMoveError, move_spend

    data = random_scenario(2, 3, seed=5, budget="per_period", tightness=0.3)
    problem = compile_dynamic(dynamic_from_dict(data))
    result = solve_dynamic(problem, tolerance=1e-12)
    # period 2's cap binds: moving money into period 2 breaks it
    with pytest.raises(InfeasibleMoveError, match=r"budget\.per_period\[2\]: spend .* above its cap"):
        move_spend(problem, result, 100.0, "1/s0/retention", "2/s0/retention")
    # taking more than a cell spends
    with pytest.raises(InfeasibleMoveError, match=r"period 1, cell \(s0, retention\): spend per member .* below"):
        move_spend(problem, result, 1e9, "1/s0/retention", "1/s1/retention")
    from allocator.errors import SpecError

    with pytest.raises(SpecError, match="PERIOD/SEGMENT/TASK"):
        move_spend(problem, result, 1.0, "s0/retention", "1/s1/retention")
    with pytest.raises(SpecError, match="period must be a whole number from 1 to 3"):
        move_spend(problem, result, 1.0, "4/s0/retention", "1/s1/retention")


def test_uncertainty_evaluation_matches_independent_simulations():
    from allocator.dynamic.spec import DynamicUncertainty
    from allocator.dynamic.uncertainty import evaluate_risk

    data = _instance("total")
    problem = compile_dynamic(dynamic_from_dict(data))
    result = solve_dynamic(problem, tolerance=1e-12)
    x = _policy(problem, result)
    spec = DynamicUncertainty.model_validate({"seed": 1, "distributions": [
        {"segment": "s0", "param": "margin", "dist": "normal", "sd": 20.0},
        {"task": "acquisition", "param": "curve.ceiling", "dist": "uniform", "low": 0.05, "high": 0.3,
         "shared": True}]})
    risk = evaluate_risk(problem, result, spec, count=40)
    # redo the draws in the documented order: one normal per matching segment, then one shared uniform
    rng = np.random.default_rng(1)
    m = data["segments"][0]["margin"] + rng.normal(0.0, 20.0, (40, 1))[:, 0]
    c = rng.uniform(0.05, 0.3, (40, 1))[:, 0]
    for i in (0, 17, 39):
        d = copy.deepcopy(data)
        d["segments"][0]["margin"] = float(m[i])
        for seg in d["segments"]:
            seg["tasks"]["acquisition"]["curve"]["ceiling"] = float(c[i])
        ce, spend = _simulate(d, x)
        assert risk.samples.customer_equity_plan_per_member[i] == pytest.approx(ce, rel=1e-12)
    row = risk.table.set_index("plan")
    assert row.loc["plan", "budget_broken_share"] == 0.0   # nominal spend held: budgets hold in every sample


def test_uncertainty_is_linear_in_a_margin():
    """Equity is linear in a margin for a fixed plan: the sample mean is the equity at the mean margin."""
    from allocator.dynamic.spec import DynamicUncertainty
    from allocator.dynamic.uncertainty import evaluate_risk

    data = _instance("total")
    problem = compile_dynamic(dynamic_from_dict(data))
    result = solve_dynamic(problem, tolerance=1e-12)
    spec = DynamicUncertainty.model_validate({"seed": 3, "distributions": [
        {"segment": "s1", "param": "margin", "dist": "normal", "sd": 30.0}]})
    risk = evaluate_risk(problem, result, spec, count=200)
    m = data["segments"][1]["margin"] + np.random.default_rng(3).normal(0.0, 30.0, (200, 1))[:, 0]
    d = copy.deepcopy(data)
    d["segments"][1]["margin"] = float(m.mean())
    ce, _ = _simulate(d, _policy(problem, result))
    assert risk.samples.customer_equity_plan_per_member.mean() == pytest.approx(ce, rel=1e-11)
    assert risk.samples.customer_equity_plan.mean() == pytest.approx(ce, rel=1e-11)   # counts unchanged


def test_uncertainty_errors_name_the_field():
    from allocator.dynamic.spec import DynamicUncertainty
    from allocator.dynamic.uncertainty import evaluate_risk
    from allocator.errors import SpecError

    data = _instance("total")
    problem = compile_dynamic(dynamic_from_dict(data))
    result = solve_dynamic(problem)
    for dist, msg in [({"param": "margin", "dist": "lognormal"}, r"distributions\[0\]\.sigma.*required"),
                      ({"segment": "nope", "param": "margin", "dist": "normal", "sd": 1.0}, "no segment 'nope'"),
                      ({"task": "winback", "param": "curve.shape", "dist": "normal", "sd": 1.0}, "has 'curve.shape'")]:
        with pytest.raises(SpecError, match=msg):
            evaluate_risk(problem, result, DynamicUncertainty.model_validate({"distributions": [dist]}), count=5)


# ---------------------------------------------------------------- the commands on multi-period files

def _write(tmp_path, data: dict, name: str = "dyn.yaml"):
    import yaml

    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_sweep_over_a_multi_period_base(tmp_path):
    import pandas as pd

    from allocator.cli import main

    data = _instance("total")
    base = _write(tmp_path, data, "base.yaml")
    total = data["budget"]["total"]
    sweep = _write(tmp_path, {"extends": "base.yaml", "name": "dyn_sweep", "variants": {
        "grid": {"budget.total": [0.5 * total, total],
                 "margins": {"as_is": {}, "higher": {"segments.*.margin": {"scale": 1.1}}}}}}, "sweep.yaml")
    assert base.exists()
    out = tmp_path / "out"
    assert main(["sweep", str(sweep), "--out", str(out), "--quiet"]) == 0
    s = pd.read_csv(out / "summary.csv")
    cells = pd.read_csv(out / "cells.csv")
    assert list(s.scenario_id) == ["v0000", "v0001", "v0002", "v0003"]
    assert (s.status == "optimal").all()
    for row in s.itertuples():
        d = copy.deepcopy(data)
        d["budget"]["total"] = float(row._2)
        if row.margins == "higher":
            for seg in d["segments"]:
                seg["margin"] *= 1.1
        assert row.customer_equity == pytest.approx(_equity(d), rel=1e-9)
    assert set(cells.columns[:4]) == {"scenario_id", "budget.total", "margins", "period"}
    assert len(cells) == 4 * 3 * 2 * 3


def test_sweep_names_an_invalid_variant(tmp_path, capsys):
    from allocator.cli import main

    data = _instance("total")
    data["variants"] = {"cases": [{"name": "bad", "set": {"discount": -2}}]}
    assert main(["sweep", str(_write(tmp_path, data)), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "variant v0000 (case=bad): discount" in err and "> -1" in err


def test_sensitivity_whatif_uncertainty_commands(tmp_path, capsys):
    import json

    import pandas as pd

    from allocator.cli import main

    data = _instance("per_period")
    data["uncertainty"] = {"samples": 20, "seed": 2, "distributions": [
        {"param": "margin", "dist": "lognormal", "sigma": 0.1}]}
    path = _write(tmp_path, data)
    out = tmp_path / "o"
    assert main(["sensitivity", str(path), "--out", str(out), "--quiet"]) == 0
    sens = pd.read_csv(out / "sensitivity.csv")
    prices = pd.read_csv(out / "shadow_prices.csv")
    assert {"parameter", "segment", "task", "derivative", "elasticity"} <= set(sens.columns)
    assert list(prices.constraint)[-1] == "budget.total"
    assert main(["uncertainty", str(path), "--out", str(out), "--quiet"]) == 0
    risk = pd.read_csv(out / "risk.csv")
    assert list(risk.plan) == ["plan", "plan_per_member", "least_spend"]
    capsys.readouterr()
    assert main(["whatif", str(path), "--move", "10", "--from", "1/s0/retention", "--to", "1/s1/retention",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["status"] == "moved" and res["from"] == [1, "s0", "retention"]
    # a refused move: exit 3, with the broken budget named
    assert main(["whatif", str(path), "--move", "1e9", "--from", "1/s0/retention", "--to",
                 "1/s1/retention"]) == 3
    assert "below its least" in capsys.readouterr().err
    assert main(["whatif", str(path), "--move", "10", "--from", "s0/retention", "--to", "1/s1/retention"]) == 2
    assert "PERIOD/SEGMENT/TASK" in capsys.readouterr().err
