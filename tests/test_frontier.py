"""Budget frontier by the multiplier path: equal to independent solves; events at hand-derived budgets."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from allocator.analysis import budget_frontier
from allocator.cli import main
from allocator.errors import InfeasibleError, SpecError
from allocator.problem import LinearConstraint
from allocator.solvers import solve
from helpers import compiled, exp_cell, random_problem, scenario, write_yaml

EXAMPLE = Path(__file__).resolve().parents[1] / "scenarios" / "example.yaml"


def _independent(problem, budget):
    res = solve(dataclasses.replace(problem, budget=float(budget)), "exact")
    return res.spend, problem.net_value(res.spend)


@pytest.mark.parametrize("use_all", [False, True])
def test_frontier_points_equal_independent_solves(use_all):
    # exponential (closed form in log lam), hill shape 1 (closed form in lam^-1/2) and hill shape
    # 0.7 (no closed form: the generic branch), with min and max spends
    p = random_problem(240, seed=11, families=("exponential", "hill", "hill"), use_all=use_all)
    hill_blocks = [b for b in p.blocks if b.family.name == "hill"]
    hill_blocks[0].params["shape"][:] = 1.0
    hill_blocks[1].params["shape"][:] = 0.7
    free = solve(dataclasses.replace(p, budget=None, use_all=False), "exact").spend.sum()
    fr = budget_frontier(p, p.lower.sum() * 1.001 + 1.0, free * 1.3, points=25)
    assert fr.method == "multiplier_path" and (fr.table["method"] == "multiplier_path").all()
    for k, b in enumerate(fr.table["budget"]):
        spend, value = _independent(p, b)
        assert fr.table["net_value"][k] == pytest.approx(value, rel=1e-9)
        np.testing.assert_allclose(fr.spend[k], spend, rtol=1e-9, atol=1e-9 * b)
        assert fr.table["total_spend"][k] == pytest.approx(spend.sum(), rel=1e-9)
    # beyond the unconstrained optimum the budget is slack and the multiplier is 1 (unless use_all)
    last = fr.table.iloc[-1]
    if use_all:
        assert last["marginal_return"] < 1 and last["total_spend"] == pytest.approx(last["budget"], rel=1e-12)
    else:
        assert last["marginal_return"] == 1.0 and not last["budget_binds"]


def test_frontier_with_table_curves_matches_solves_on_the_example():
    fr = budget_frontier(EXAMPLE, 2e5, 2.5e6, points=30)
    for k, b in enumerate(fr.table["budget"]):
        _, value = _independent(fr.problem, b)
        assert fr.table["net_value"][k] == pytest.approx(value, rel=1e-9)
    # by-task columns add up
    by_task = fr.table[["spend_acquisition", "spend_retention", "spend_winback"]].sum(axis=1)
    np.testing.assert_allclose(by_task, fr.table["total_spend"], rtol=1e-12)
    # baseline beside the plan: the gain is the plan's net value minus today's
    assert (fr.table["net_value_gained"] == fr.table["net_value"] - fr.table["baseline_net_value"]).all()


def test_table_curve_jump_is_interpolated_like_the_solver():
    # one tabulated cell and one exponential cell: budgets inside a jump of the table
    cells = {("t", "winback"): {"pool": 100, "value": 100,
                                "curve": {"family": "piecewise", "points": [[0, 0], [10, 0.3], [30, 0.4]]}},
             ("e", "acquisition"): exp_cell(100, 50, 0.5, 0.05)}
    p = compiled(cells, budget=1.0)
    for b in (100.0, 500.0, 999.0, 1500.0, 2500.0):
        fr = budget_frontier(p, b, b, points=1)
        _, value = _independent(p, b)
        assert fr.table["net_value"][0] == pytest.approx(value, rel=1e-9)


def test_switch_on_and_cap_budgets_match_hand_derived_ones():
    # three exponential cells without floors: cell i starts when the multiplier falls to
    # lam_i = v_i c_i r_i, its marginal return at zero; while on, it spends
    # pool_i / r_i * ln(lam_i / lam). Cell c has max_spend 3000: it reaches it at
    # lam_cap = lam_c * exp(-r_c * 3000 / pool_c).
    a = dict(pool=1000.0, value=100.0, ceiling=0.5, rate=0.1)   # lam_a = 5
    b = dict(pool=2000.0, value=80.0, ceiling=0.4, rate=0.05)   # lam_b = 1.6
    c = dict(pool=500.0, value=300.0, ceiling=0.2, rate=0.04)   # lam_c = 2.4
    cells = {("a", "acquisition"): exp_cell(a["pool"], a["value"], a["ceiling"], a["rate"]),
             ("b", "retention"): exp_cell(b["pool"], b["value"], b["ceiling"], b["rate"]),
             ("c", "winback"): exp_cell(c["pool"], c["value"], c["ceiling"], c["rate"], max_spend=3000.0)}
    p = compiled(cells, budget=1.0)
    lam = {k: d["value"] * d["ceiling"] * d["rate"] for k, d in (("a", a), ("b", b), ("c", c))}
    lam_cap = lam["c"] * math.exp(-c["rate"] * 3000.0 / c["pool"])

    def spend(d, k, at):
        return max(d["pool"] / d["rate"] * math.log(lam[k] / at), 0.0)

    def total(at):
        return spend(a, "a", at) + spend(b, "b", at) + min(spend(c, "c", at), 3000.0)

    expected = {("a", "switches_on"): 0.0, ("c", "switches_on"): total(lam["c"]), ("b", "switches_on"): total(lam["b"]),
                ("c", "reaches_max"): total(lam_cap)}
    fr = budget_frontier(p, 0.0, 1e6, points=5)
    ev = fr.events
    got = {(r.segment, r.event): r.budget for r in ev.itertuples()}
    assert set(got) == set(expected)
    for key, budget in expected.items():
        assert got[key] == pytest.approx(budget, rel=1e-12, abs=1e-9)
    assert list(ev["segment"]) == (["a", "c", "b", "c"] if lam_cap < lam["b"] else ["a", "c", "c", "b"])
    row = ev[(ev.segment == "b")].iloc[0]
    assert row.marginal_return == pytest.approx(lam["b"], rel=1e-15)
    # and the frontier at exactly those budgets has the hand-derived multiplier
    fr2 = budget_frontier(p, 0, 0, budgets=np.array(sorted(expected.values())[1:]))
    np.testing.assert_allclose(fr2.table["marginal_return"], sorted([lam["c"], lam["b"], lam_cap], reverse=True),
                               rtol=1e-12)


def test_constrained_problem_falls_back_to_resolving_each_budget():
    cells = {("a", "acquisition"): exp_cell(1000, 100, 0.5, 0.1), ("b", "retention"): exp_cell(2000, 80, 0.4, 0.05)}
    p = compiled(cells, budget=1.0)
    cap = LinearConstraint("cap_a", np.array([0]), np.array([1.0]), upper=500.0)
    pc = dataclasses.replace(p, constraints=(cap,))
    fr = budget_frontier(pc, 1000, 3000, points=3)
    used = f"resolve:{solve(dataclasses.replace(pc, budget=1000.0)).solver}"
    assert fr.method == used and (fr.table["method"] == used).all()
    for k, b in enumerate(fr.table["budget"]):
        # independent: the cap binds, so a spends 500 and b the rest (b alone is concave: its own optimum)
        sb = min(b - 500.0, solve(dataclasses.replace(p.subset(np.array([False, True])), budget=None)).spend[0])
        assert fr.spend[k][0] == pytest.approx(500.0, rel=1e-5)
        assert fr.spend[k][1] == pytest.approx(sb, rel=1e-4)


def test_frontier_rejects_bad_ranges_and_infeasible_budgets():
    p = compiled({("a", "acquisition"): exp_cell(1000, 100, 0.5, 0.1, min_spend=800.0)}, budget=1000.0)
    with pytest.raises(SpecError, match=r"--to: must be >= --from \(2,000\); got 1,000"):
        budget_frontier(p, 2000, 1000)
    with pytest.raises(SpecError, match=r"--points: must be a whole number >= 1; got 0"):
        budget_frontier(p, 1000, 2000, points=0)
    with pytest.raises(InfeasibleError, match=r"budget 500 is below the cells' min_spend total 800"):
        budget_frontier(p, 500, 2000)


def test_frontier_cli_writes_both_tables(tmp_path, capsys):
    out = tmp_path / "fr"
    rc = main(["frontier", str(EXAMPLE), "--from", "1e6", "--to", "2e6", "--points", "5", "--out", str(out)])
    assert rc == 0
    table = pd.read_csv(out / "frontier.csv")
    assert list(table["budget"]) == [1e6, 1.25e6, 1.5e6, 1.75e6, 2e6]
    events = pd.read_csv(out / "frontier_events.csv")
    assert set(events["event"]) <= {"switches_on", "reaches_max", "next_table_point"}
    assert ((events["budget"] >= 1e6) | (events["budget_to"] >= 1e6)).all()
    assert (table["method"] == "multiplier_path").all()
    assert "multiplier_path" in capsys.readouterr().out


def test_frontier_cli_error_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "fr"
    rc = main(["frontier", str(EXAMPLE), "--from", "3e6", "--to", "1e6", "--out", str(out)])
    assert rc == 2
    assert "--to: must be >= --from (3e+06); got 1e+06" in capsys.readouterr().err
    assert not out.exists()
    sc = write_yaml(tmp_path / "s.yaml", scenario({("a", "acquisition"): exp_cell(10, 10, 0.5, 0.1, min_spend=50)},
                                                  budget=100.0))
    rc = main(["frontier", str(sc), "--from", "10", "--to", "100", "--out", str(out)])
    assert rc == 3 and "below the cells' min_spend total 50" in capsys.readouterr().err
    assert not out.exists()


def test_frontier_csv_has_activation_cost_and_method_and_quiet_prints_nothing(tmp_path):
    # a separate process, so anything written below Python (a solver's banner) would show on stdout too
    import subprocess
    import sys

    constrained = EXAMPLE.parent / "constrained.yaml"
    out = tmp_path / "fr"
    run = subprocess.run([sys.executable, "-c", "import sys; from allocator.cli import main; sys.exit(main())",
                          "frontier", str(constrained), "--from", "1.4e6", "--to", "1.5e6", "--points", "2",
                          "--quiet", "--out", str(out)], capture_output=True, text=True, check=True)
    assert run.stdout == ""
    table = pd.read_csv(out / "frontier.csv")
    assert table["method"].str.startswith("resolve:").all()
    # money adds up row by row: value - spend - activation costs (the win-back set-up costs)
    np.testing.assert_allclose(table["net_value"],
                               table["total_value"] - table["total_spend"] - table["activation_cost"], rtol=0, atol=1e-3)
    assert (table["activation_cost"] > 0).all()
