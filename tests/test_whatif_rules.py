"""whatif honours the rules: a move that breaks any rule is refused naming it, never reported as feasible.

Every kind of rule is broken once on scenarios/constrained.yaml or a small built instance; the
expected numbers are computed from the plan, and an independent check (``rules_broken``) confirms
that the move really breaks what the message names. Allowed moves report the money recomputed
from the curves; ``resolve`` gives a plan that keeps every rule and is at least as good as the
plain move.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import allocator
from allocator.analysis.whatif import InfeasibleMoveError, what_if_move
from allocator.cli import main
from allocator.errors import InfeasibleError
from allocator.problem import EfficiencyConstraint
from helpers import exp_cell, scenario, write_yaml
from test_money import rules_broken, truth

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINED = ROOT / "scenarios" / "constrained.yaml"


@pytest.fixture(scope="module")
def plan():
    return allocator.plan(CONSTRAINED)


def _idx(problem, cell: str) -> int:
    seg, task = cell.split("/")
    return int(np.flatnonzero((problem.segment == seg) & (problem.task == task))[0])


def _moved(plan, amount, a, b):
    p = plan.problem
    s = plan.spend.copy()
    s[_idx(p, a)] -= amount
    s[_idx(p, b)] += amount
    return s


def _group(plan, spend, **sel):
    p = plan.problem
    keep = np.ones(p.n, bool)
    if "tasks" in sel:
        keep &= np.isin(p.task, sel["tasks"])
    if "segments" in sel:
        keep &= np.isin(p.segment, sel["segments"])
    return float(spend[keep].sum())


B2B = ["enterprise", "mid_market", "small_business"]


def _expected(plan, kind):
    """(amount, from, to, independent rule name, text the message must contain) for each kind of rule."""
    s = plan.spend
    if kind == "share":
        return 1000.0, "enterprise/retention", "enterprise/acquisition", "retention_share", "'retention_share'"
    if kind == "spend":
        after = _group(plan, _moved(plan, 1000.0, "web_medium/acquisition", "mid_market/acquisition"), segments=B2B)
        return (1000.0, "web_medium/acquisition", "mid_market/acquisition", "b2b_band",
                f"'b2b_band': spend of tags [b2b] between 500,000 and 900,000; the move makes it {after:,.0f}")
    if kind == "ratio":
        return 30000.0, "contract_standard/retention", "web_medium/acquisition", "acquisition_vs_retention", \
            "'acquisition_vs_retention'"
    if kind == "budget":
        amount = 700000.0 - _group(plan, s, tasks=["retention"]) + 6000.0
        after = _group(plan, _moved(plan, amount, "mid_market/acquisition", "contract_standard/retention"),
                       tasks=["retention"])
        return (amount, "mid_market/acquisition", "contract_standard/retention", "crm",
                f"budget 'crm': spend of tasks [retention] <= 700,000; the move makes it {after:,.0f}")
    if kind == "lock":
        return 1000.0, "contract_premium/retention", "web_top/retention", "lock", \
            "lock: cell (contract_premium, retention) spends 50,000; the move makes it 49,000"
    if kind == "min_active":
        return 1000.0, "web_top/retention", "enterprise/winback", "min_active", \
            "min_active_spend of cell (enterprise, winback) = 5,000 (or 0); the move makes it 1,000"
    if kind == "unit":
        after = s[_idx(plan.problem, "web_top/retention")] - 500.0
        return 500.0, "web_top/retention", "web_high/retention", "unit", \
            f"budget.unit: every cell spends a whole multiple of 1,000; the move makes cell (web_top, retention) " \
            f"spend {after:,.0f}"
    if kind == "min_spend":
        return 1000.0, "web_low/acquisition", "web_top/retention", "bounds", \
            "min_spend of cell (web_low, acquisition) = 0; the move leaves -1,000 (at most 0 can move out)"
    if kind == "max_spend":
        amount = 401000.0 - s[_idx(plan.problem, "small_business/acquisition")]
        return amount, "mid_market/acquisition", "small_business/acquisition", "bounds", \
            "max spend of cell (small_business, acquisition) = 400,000 (max_spend or the curve's peak); " \
            "the move makes it 401,000"
    raise KeyError(kind)


KINDS = ["share", "spend", "ratio", "budget", "lock", "min_active", "unit", "min_spend", "max_spend"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_move_breaking_a_rule_is_refused_naming_it(plan, kind):
    amount, a, b, rule, text = _expected(plan, kind)
    # independent: the move really breaks that rule
    assert rule in rules_broken(plan.problem, plan.spend, _moved(plan, amount, a, b))
    with pytest.raises(InfeasibleMoveError) as err:
        what_if_move(plan, amount, a, b)
    assert text in str(err.value)
    assert str(err.value).startswith(f"infeasible move: moving {amount:,.0f} from ")
    assert any(r.kind == kind for r in err.value.broken)


def test_efficiency_rule_is_checked():
    cells = {("a", "acquisition"): exp_cell(1000, 100, 0.5, 0.1), ("b", "acquisition"): exp_cell(1000, 60, 0.5, 0.1),
             ("c", "retention"): exp_cell(1000, 80, 0.6, 0.05)}
    base = allocator.plan(scenario(cells, budget=6000.0), solver="exact")
    p, s = base.problem, base.spend
    # min_roi over cells a and b set just below the plan's own average return: the plan keeps it
    g = np.array([0, 1])
    roi = float(p.expected_value(s)[g].sum() / s[g].sum())
    rule = EfficiencyConstraint("ab_roi", g, p.value[g], roi * (1 - 1e-6), "min_roi", roi * (1 - 1e-6),
                                text=f"'ab_roi': value of a, b >= {roi * (1 - 1e-6):.6g} x their spend",
                                source="ab_roi")
    plan = dataclasses.replace(base, problem=dataclasses.replace(p, efficiency=(rule,)))
    # moving money from c into a raises the group's spend at a falling average return
    moved = s.copy()
    moved[2] -= 500.0
    moved[0] += 500.0
    assert "ab_roi" in rules_broken(plan.problem, s, moved)
    with pytest.raises(InfeasibleMoveError, match=r"'ab_roi': value of a, b >= .* the move leaves it short by"):
        what_if_move(plan, 500.0, "c/retention", "a/acquisition")
    # the other way round lowers the group's spend and keeps the rule
    ok = what_if_move(plan, 500.0, "a/acquisition", "c/retention")
    assert ok.status == "moved"


def test_allowed_move_reports_money_recomputed_from_the_curves():
    # moving all of a cell's money out stops its activation cost: the loss counts that
    cells = {("a", "acquisition"): exp_cell(1000, 100, 0.5, 0.1, activation_cost=300.0, min_active_spend=500.0),
             ("b", "retention"): exp_cell(2000, 150, 0.4, 0.05, activation_cost=200.0)}
    plan = allocator.plan(scenario(cells, budget=8000.0))
    s = plan.spend
    assert s[0] > 500 and s[1] > 0
    res = what_if_move(plan, float(s[0]), "a/acquisition", "b/retention")
    moved = np.array([0.0, s.sum()])
    value = 1000 * 100 * 0.5 * -np.expm1(-0.1 * moved / 1000)[0] + 2000 * 150 * 0.4 * -np.expm1(-0.05 * moved / 2000)[1]
    before = truth(plan.problem, s)["net_value"]
    after = value - moved.sum() - 200.0
    assert res.status == "moved" and res.rules_broken == []
    assert res.net_value_before == pytest.approx(before, rel=1e-12)
    assert res.net_value_after == pytest.approx(after, rel=1e-12)
    assert res.value_lost == pytest.approx(before - after, rel=1e-9)
    assert res.money_after["activation_cost"] == 200.0
    # a partial move below the minimum-if-active spend is refused
    with pytest.raises(InfeasibleMoveError, match=r"min_active_spend of cell \(a, acquisition\) = 500 \(or 0\)"):
        what_if_move(plan, float(s[0]) - 100.0, "a/acquisition", "b/retention")


def test_resolve_gives_a_feasible_plan_at_least_as_good_as_the_plain_move(plan):
    p = plan.problem
    # an allowed move: the re-solve can only do better (within the solver's gap)
    plain = what_if_move(plan, 2000.0, "web_top/retention", "web_high/retention")
    res = what_if_move(plan, 2000.0, "web_top/retention", "web_high/retention", resolve=True)
    assert res.status == "resolved"
    assert not rules_broken(p, None, res.spend_after)
    assert res.net_value_after >= plain.net_value_after - 1e-9 * abs(plain.net_value_after)
    assert res.net_value_after == pytest.approx(truth(p, res.spend_after)["net_value"], rel=1e-12)
    # a move breaking a group rule: the other cells make room, the two cells stay where moved
    res = what_if_move(plan, 1000.0, "enterprise/retention", "enterprise/acquisition", resolve=True)
    assert res.status == "resolved" and any("'retention_share'" in r for r in res.rules_broken)
    assert not rules_broken(p, None, res.spend_after)
    moved = _moved(plan, 1000.0, "enterprise/retention", "enterprise/acquisition")
    for cell in ("enterprise/retention", "enterprise/acquisition"):
        assert res.spend_after[_idx(p, cell)] == pytest.approx(moved[_idx(p, cell)], abs=1e-6)
    # forced: no better than the optimum, which the plan's certified upper bound caps (the plan itself
    # is only within its gap of the optimum, so the forced plan may beat it by that much)
    bound = plan.summary.upper_bound or plan.summary.net_value * (1 + plan.summary.optimality_gap)
    assert res.net_value_after <= bound * (1 + 1e-9)
    # rules of the two cells themselves cannot be repaired by the other cells
    with pytest.raises(InfeasibleMoveError, match=r"lock: cell \(contract_premium, retention\) spends 50,000"):
        what_if_move(plan, 1000.0, "contract_premium/retention", "web_top/retention", resolve=True)


def test_resolve_names_the_conflict_when_no_plan_can_make_the_move():
    # group G = {a, b} must get >= 1,800 and each of its cells at most 1,000: with a forced down to
    # 500, no plan keeps the floor
    cells = {("a", "acquisition"): exp_cell(1000, 100, 0.5, 0.1, max_spend=1000.0),
             ("b", "acquisition"): exp_cell(1000, 100, 0.5, 0.1, max_spend=1000.0),
             ("c", "retention"): exp_cell(1000, 80, 0.6, 0.05)}
    data = scenario(cells, budget=4000.0)
    data["constraints"] = [{"name": "g_floor", "type": "spend", "select": {"segments": ["a", "b"]}, "min": 1800.0}]
    plan = allocator.plan(data)
    with pytest.raises(InfeasibleError, match=r"infeasible move: with \(a, acquisition\) at .* no plan keeps every rule"
                       ) as err:
        what_if_move(plan, 500.0, "a/acquisition", "c/retention", resolve=True)
    assert any("g_floor" in c for c in err.value.conflict)


def test_cli_refuses_with_exit_3_and_json_stays_json(tmp_path, capsys):
    args = ["whatif", str(CONSTRAINED), "--move", "1000", "--from", "enterprise/retention",
            "--to", "enterprise/acquisition"]
    assert main(args) == 3
    cap = capsys.readouterr()
    assert cap.out == "" and "error: infeasible move" in cap.err and "'retention_share'" in cap.err
    assert main(args + ["--json"]) == 3
    cap = capsys.readouterr()
    refused = json.loads(cap.out)
    assert refused["status"] == "refused" and refused["rules_broken"][0]["name"] == "retention_share"
    assert main(args + ["--resolve", "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["status"] == "resolved" and done["rules_broken"]
    assert done["net_value_after"] == pytest.approx(done["money_after"]["value"] - done["money_after"]["spend"]
                                                    - done["money_after"]["activation_cost"], rel=1e-12)


def test_whatif_json_is_the_only_thing_on_stdout(tmp_path):
    # a separate process, so output written below Python (a solver's banner) would show too
    sc = write_yaml(tmp_path / "s.yaml", scenario({("a", "acquisition"): exp_cell(1000, 100, 0.5, 0.1),
                                                   ("b", "retention"): exp_cell(2000, 80, 0.4, 0.05)}, budget=3000.0))
    for extra in ([], ["--resolve"]):
        out = subprocess.run([sys.executable, "-c", "import sys; from allocator.cli import main; sys.exit(main())",
                              "whatif", str(sc), "--move", "100", "--from",
                              "a/acquisition", "--to", "b/retention", "--json", *extra],
                             capture_output=True, text=True, check=True).stdout
        assert json.loads(out)["amount"] == 100.0
