"""The multi-period contract: bad input named by field and segment (exit 2), and the files of a plan."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from allocator.dynamic import dynamic_from_dict, load_dynamic
from allocator.dynamic.cli import main
from allocator.errors import SpecError

BASE = yaml.safe_load(open("scenarios/fy2027.yaml"))


def _errors(mutate) -> str:
    data = copy.deepcopy(BASE)
    mutate(data)
    with pytest.raises(SpecError) as err:
        dynamic_from_dict(data)
    return str(err.value)


def test_negative_members_name_field_and_segment():
    msg = _errors(lambda d: d["segments"][1]["members"].update(prospects=-5))
    assert "members.prospects of segment 'mid_market'" in msg and "got -5" in msg


def test_margin_that_is_not_a_number():
    msg = _errors(lambda d: d["segments"][0].update(margin="lots"))
    assert "margin of segment 'enterprise': must be a number or a mapping of state -> number; got 'lots'" in msg


def test_unknown_state_names():
    msg = _errors(lambda d: d["segments"][2]["members"].update(churned=10))
    assert "members of segment 'small_business': unknown state 'churned'; allowed: prospects, active, lapsed" in msg
    msg = _errors(lambda d: d["segments"][0].update(terminal={"actve": 5}))
    assert "terminal of segment 'enterprise': unknown state 'actve'" in msg


def test_task_restricted_to_periods_that_do_not_exist():
    msg = _errors(lambda d: d["segments"][2]["tasks"]["acquisition"].update(periods=[1, 6]))
    assert "periods of cell (small_business, acquisition): period 6 does not exist (the horizon is 1..4)" in msg


@pytest.mark.parametrize("rate", [-1, -1.5])
def test_discount_at_or_below_minus_one(rate):
    msg = _errors(lambda d: d.update(discount=rate))
    assert f"discount: must be a number > -1 (a rate per period, 0.025 is 2.5%); got {rate}" in msg


def test_every_problem_is_listed_at_once():
    def many(d):
        d["segments"][0]["members"]["prospects"] = -1
        d["segments"][1]["margin"] = "x"
        d["discount"] = -2
    msg = _errors(many)
    assert "(3 problems)" in msg


def test_bad_file_exits_2_and_writes_nothing(tmp_path, capsys):
    data = copy.deepcopy(BASE)
    data["segments"][0]["members"]["lapsed"] = -50
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    assert main(["plan", str(bad), "--out", str(out)]) == 2
    assert "members.lapsed of segment 'enterprise'" in capsys.readouterr().err
    assert not out.exists()


def test_fy2027_plan_files(tmp_path):
    out = tmp_path / "fy"
    assert main(["plan", "scenarios/fy2027.yaml", "--out", str(out), "--quiet"]) == 0
    plan = pd.read_csv(out / "plan.csv")
    flows = pd.read_csv(out / "flows.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert list(plan.columns[:3]) == ["period", "segment", "task"] and "share_treated" in plan
    assert set(plan.period) == {1, 2, 3, 4}
    # budget over the year holds exactly and binds; no quarter goes above its cap
    assert plan.spend.sum() == pytest.approx(1_600_000, rel=1e-9)
    assert plan.groupby("period").spend.sum().max() <= 440_000
    assert summary["status"] == "optimal" and summary["optimality_gap"] <= 1e-6
    assert summary["customer_equity"] == summary["net_value"]
    # members are conserved: start = moved + stayed + lapsed + lost + kept in place, and the end
    # of a period (plus arrivals) is the start of the next
    for (seg, t), g in flows.groupby(["segment", "period"]):
        g = g.set_index("state")
        moved = g.moved_to_active.sum() + g.stayed_active.sum()
        assert g.loc["active", "end"] == pytest.approx(moved)
        if t < 4:
            nxt = flows[(flows.segment == seg) & (flows.period == t + 1)].set_index("state")
            np.testing.assert_allclose(nxt.start.values, g.end.values + np.array([nxt.loc["prospects", "arrived"],
                                                                                  0, 0]))
    # the acquisition of small_business stops after period 3
    sb = plan[(plan.segment == "small_business") & (plan.task == "acquisition")].set_index("period")
    assert sb.loc[4, "spend"] == 0 and sb.loc[4, "bound"] == "off"
    assert {"lifetime_value_active", "priced_value_active"} <= set(summary["state_values"][0])


def test_infinite_horizon_reports_a_steady_row(tmp_path):
    data = copy.deepcopy(BASE)
    data["periods"] = "infinite"
    del data["budget"]
    for seg in data["segments"]:
        seg.pop("terminal")
    f = tmp_path / "inf.yaml"
    f.write_text(yaml.safe_dump(data))
    out = tmp_path / "o"
    assert main(["plan", str(f), "--out", str(out), "--quiet"]) == 0
    plan = pd.read_csv(out / "plan.csv")
    assert list(dict.fromkeys(plan.period.astype(str))) == ["1", "2", "3", "steady"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steady_state"]["starts_after_period"] == 3
    assert summary["optimality_check"]["ok"]


def test_budget_with_infinite_horizon_is_refused():
    msg = _errors(lambda d: d.update(periods="infinite"))
    assert "budgets need a finite horizon" in msg
    assert "terminal of segment 'enterprise': an infinite horizon has no terminal values" in msg


def test_loader_reads_the_bundled_scenario():
    sc = load_dynamic("scenarios/fy2027.yaml")
    assert sc.periods == 4 and sc.discount == 0.025 and len(sc.segments) == 3


def test_least_spend_above_a_budget_is_infeasible_exit_3(tmp_path, capsys):
    data = copy.deepcopy(BASE)
    data["segments"][0]["tasks"]["retention"]["min_spend_per_member"] = 5000.0   # 300 x 5,000 > 440k
    f = tmp_path / "tight.yaml"
    f.write_text(yaml.safe_dump(data))
    assert main(["plan", str(f), "--out", str(tmp_path / "o")]) == 3
    assert "infeasible" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_frontier_over_the_total_budget():
    from allocator.dynamic import compile_dynamic
    from allocator.dynamic.analysis import dynamic_frontier

    data = copy.deepcopy(BASE)
    data["budget"] = {"total": 1.0}
    problem = compile_dynamic(dynamic_from_dict(data))
    free = copy.deepcopy(BASE)
    del free["budget"]
    from allocator.dynamic import plan_dynamic
    unconstrained = plan_dynamic(compile_dynamic(dynamic_from_dict(free))).summary
    budgets = [0.5e6, 1e6, 2e6, unconstrained["total_spend"] * 1.5]
    table = dynamic_frontier(problem, budgets)
    assert (table.status == "optimal").all()
    assert np.all(np.diff(table.customer_equity) > 0)
    assert np.all(np.diff(table.budget_shadow_price) < 0)
    # above the unconstrained spend the budget is slack: the unconstrained plan's equity, price 0
    assert table.customer_equity.iloc[-1] == pytest.approx(unconstrained["customer_equity"], rel=1e-12)
    assert table.budget_shadow_price.iloc[-1] == 0


def test_a_pot_over_some_periods():
    from allocator.dynamic import compile_dynamic, plan_dynamic

    data = copy.deepcopy(BASE)
    del data["budget"]
    data["budgets"] = [{"name": "first_half", "total": 700_000, "periods": [1, 2]}]
    s = plan_dynamic(compile_dynamic(dynamic_from_dict(data))).summary
    assert s["status"] == "optimal"
    pot = next(r for r in s["budget_rows"] if r["name"] == "budgets.first_half")
    assert pot["spend"] == pytest.approx(700_000, rel=1e-9) and pot["shadow_price"] > 0
    assert s["by_period"][0]["spend"] + s["by_period"][1]["spend"] == pytest.approx(700_000, rel=1e-9)
    # a pot over every period is the total budget, and a pot over one period is that period's cap
    total = copy.deepcopy(BASE)
    total["budget"] = {"total": 1_500_000}
    as_pot = copy.deepcopy(BASE)
    del as_pot["budget"]
    as_pot["budgets"] = [{"name": "all", "total": 1_500_000, "periods": [1, 2, 3, 4]}]
    a = plan_dynamic(compile_dynamic(dynamic_from_dict(total))).summary["customer_equity"]
    b = plan_dynamic(compile_dynamic(dynamic_from_dict(as_pot))).summary["customer_equity"]
    assert a == pytest.approx(b, rel=1e-10)
