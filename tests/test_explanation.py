"""The one explanation of a plan (issue 8): required returns from the duals, every binding thing
once with a price that matches finite differences of re-solved plans, objective-aware words,
and a check that fails when the explanation is wrong."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import allocator
from allocator.analysis.sensitivity import shadow_prices
from allocator.cli.plan_cmd import render
from allocator.explain import Prices, decompose
from allocator.money import money_of

ROOT = Path(__file__).resolve().parents[1]


def _cell(pool, value, ceiling, rate, floor=0.0, **kw):
    return {"pool": pool, "value": value,
            "curve": {"family": "exponential", "ceiling": ceiling, "rate": rate, "floor": floor}, **kw}


def rules_scenario(budget: float) -> dict:
    """Three segments, eight concave cells, a pot, a share, a group cap, a ratio, a lock and a floor.

    At a budget of 260,000 the pot, share, cap, ratio, lock and floor bind; at 200,000 the total
    budget binds instead of the pot. (At 200,000 the ratio binds with price 0, a degenerate vertex
    where the optimal value has a kink and a finite difference is no test.)
    """
    return {
        "name": "rules", "currency": "USD", "budget": {"total": budget},
        "budgets": [{"name": "crm", "total": 70000, "select": {"tasks": ["retention"]}}],
        "constraints": [
            {"name": "ret_share", "type": "share", "select": {"tasks": ["retention"]}, "min": 0.3},
            {"name": "acq_cap", "type": "spend", "select": {"tags": ["b2b"], "tasks": ["acquisition"]},
             "max": 120000},
            {"name": "wb_ratio", "type": "ratio", "numerator": {"tasks": ["winback"]},
             "denominator": {"tasks": ["retention"]}, "min": 0.5},
            {"name": "keep", "type": "lock", "select": {"segments": ["b"], "tasks": ["retention"]},
             "spend": 20000},
        ],
        "segments": [
            {"id": "a", "tags": ["b2b"], "tasks": {
                "acquisition": _cell(1000, 900, 0.5, 0.02),
                "retention": _cell(800, 600, 0.95, 0.03, floor=0.7),
                "winback": _cell(300, 400, 0.3, 0.01, floor=0.02, max_spend=20000)}},
            {"id": "b", "tags": ["b2b"], "tasks": {
                "acquisition": _cell(2000, 500, 0.4, 0.015),
                "retention": _cell(500, 800, 0.9, 0.02, floor=0.6),
                "winback": _cell(400, 300, 0.25, 0.02, floor=0.01, min_spend=30000)}},
            {"id": "c", "tags": ["web"], "tasks": {
                "acquisition": _cell(50000, 60, 0.05, 0.5),
                "retention": _cell(3000, 100, 0.8, 0.1, floor=0.5)}},
        ]}


def _solve(data: dict) -> allocator.Plan:
    return allocator.plan(data, solver="global", tolerance=1e-10)


def _net(data: dict) -> float:
    return _solve(data).summary.net_value


def _identities(plan, rtol=1e-5):
    """Interior cells return exactly their required return, lower bounds at most, upper bounds at least."""
    t = plan.table
    t = t[t["required_return"].notna()]     # a target's uncounted cells have no required value return
    scale = np.maximum(1.0, np.abs(t["required_return"]))
    gap = (t["marginal_return"] - t["required_return"]) / scale
    inside = t["bound"] == "none"
    assert (np.abs(gap[inside]) <= rtol).all(), t.loc[inside, ["segment", "task", "marginal_return",
                                                             "required_return"]]
    low = t["bound"].isin(["lower", "zero"])
    assert (gap[low] <= rtol).all()
    assert (gap[t["bound"] == "upper"] >= -rtol).all()


# ------------------------------------------------------------- prices against finite differences

@pytest.mark.parametrize("budget,expected", [
    (260000.0, {"crm", "ret_share", "acq_cap", "wb_ratio", "keep", "min_spend (b, winback)"}),
    (230000.0, {"budget.total", "ret_share", "acq_cap", "wb_ratio", "keep", "min_spend (b, winback)"}),
])
def test_every_binding_thing_is_listed_once_with_a_price_that_matches_finite_differences(budget, expected):
    data = rules_scenario(budget)
    plan = _solve(data)
    assert plan.summary.status == "optimal" and plan.summary.optimality_gap <= 1e-9
    _identities(plan)
    things = {b["name"]: b for b in plan.summary.binding_constraints}
    assert len(things) == len(plan.summary.binding_constraints)          # each once
    assert expected <= set(things)
    sp = shadow_prices(plan).set_index("constraint")
    assert not sp.index.duplicated().any()
    s = plan.spend
    p = plan.problem
    is_ret = p.task == "retention"

    def fd(edit, h):
        up, down = copy.deepcopy(data), copy.deepcopy(data)
        edit(up, +h)
        edit(down, -h)
        return (_net(up) - _net(down)) / (2 * h)

    def rule(name):
        return next(c for c in data["constraints"] if c["name"] == name)

    checks = {
        "budget.total": (lambda d, h: d["budget"].update(total=d["budget"]["total"] + h), 50.0, 1.0),
        "crm": (lambda d, h: d["budgets"][0].update(total=d["budgets"][0]["total"] + h), 50.0, 1.0),
        "acq_cap": (lambda d, h: next(c for c in d["constraints"] if c["name"] == "acq_cap")
                    .update(max=rule("acq_cap")["max"] + h), 50.0, 1.0),
        # a share's number is a fraction: moving it by h moves the row by h x total spend
        "ret_share": (lambda d, h: next(c for c in d["constraints"] if c["name"] == "ret_share")
                      .update(min=rule("ret_share")["min"] + h), 2e-5, float(s.sum())),
        "wb_ratio": (lambda d, h: next(c for c in d["constraints"] if c["name"] == "wb_ratio")
                     .update(min=rule("wb_ratio")["min"] + h), 2e-5, float(s[is_ret].sum())),
        "keep": (lambda d, h: next(c for c in d["constraints"] if c["name"] == "keep")
                 .update(spend=rule("keep")["spend"] + h), 50.0, 1.0),
        "min_spend (b, winback)": (lambda d, h: d["segments"][1]["tasks"]["winback"]
                                   .update(min_spend=30000 + h), 50.0, 1.0),
    }
    for name in expected:
        edit, h, per = checks[name]
        got = sp.loc[name, "d_net_value_d_bound"] * per
        assert got == pytest.approx(fd(edit, h), rel=2e-4, abs=1e-6), name
        assert sp.loc[name, "shadow_price"] >= 0


def test_a_lock_is_reported_by_its_rule_name_with_its_price():
    plan = _solve(rules_scenario(260000.0))
    t = plan.table.set_index(["segment", "task"])
    assert t.loc[("b", "retention"), "bound"] == "locked"
    assert "keep" in t.loc[("b", "retention"), "binding_rules"]
    assert "locked at 20,000" in t.loc[("b", "retention"), "reason"]
    lock = next(b for b in plan.summary.binding_constraints if b["kind"] == "lock")
    assert lock["name"] == "keep" and lock["shadow_price"] > 0


def test_a_wrong_explanation_fails_the_check():
    plan = _solve(rules_scenario(200000.0))
    rep = plan.report
    d = rep.decomposition
    assert d.violations == []
    wrong = Prices(base=d.prices.base, rows={**d.prices.rows, "budget.total": d.prices.rows["budget.total"] + 0.05},
                   efficiency=d.prices.efficiency)
    assert decompose(plan.problem, plan.spend, wrong, rep.binding, d.bound, 1e-6).violations
    # a price on a rule that does not bind breaks complementarity
    slack = Prices(base=1.0, rows={**d.prices.rows, "acq_cap": 0.1})
    out = decompose(plan.problem, plan.spend, slack, rep.binding, d.bound, 1e-6).violations
    assert any("acq_cap" in v and "does not bind" in v for v in out)


def test_reason_of_each_cell_shows_the_sum_that_makes_its_required_return():
    plan = _solve(rules_scenario(200000.0))
    for r in plan.table.itertuples():
        nums = re.findall(r"= (.*?)(?:;|$)", r.reason)
        assert nums, r.reason
        if r.bound in ("none", "zero", "lower", "upper") and "x" not in nums[-1]:
            # a formula of plain sums: evaluate it and compare with the column
            expr = re.sub(r"\([^)]*\)", "", nums[-1].replace("required", ""))
            assert eval(expr) == pytest.approx(r.required_return, rel=2e-3)  # 4 significant digits


# ------------------------------------------------------------- the findings of issue 8 on constrained.yaml

@pytest.fixture(scope="module")
def constrained():
    return allocator.plan(ROOT / "scenarios" / "constrained.yaml")


def test_constrained_reasons_name_the_rules_not_a_common_return(constrained):
    t = constrained.table.set_index(["segment", "task"])
    assert not t["reason"].str.contains("equals the common").any()
    assert t.loc[("contract_premium", "retention"), "bound"] == "locked"
    assert "premium_retention_locked" in t.loc[("contract_premium", "retention"), "binding_rules"]
    for key in [("contract_standard", "retention"), ("enterprise", "retention")]:
        assert "retention_share" in t.loc[key, "binding_rules"]
        assert "retention_share" in t.loc[key, "reason"]
    # the enterprise acquisition cell returns ~2.28 because the share rule and the b2b band price it
    assert "b2b_band" in t.loc[("enterprise", "acquisition"), "reason"]
    names = [b["name"] for b in constrained.summary.binding_constraints]
    assert len(names) == len(set(names))
    assert "premium_retention_locked" in names
    lock = next(b for b in constrained.summary.binding_constraints if b["name"] == "premium_retention_locked")
    assert 0.5 < lock["shadow_price"] < 2.0      # the finding: about 1.1 per USD


def test_constrained_money_adds_up(constrained):
    s = constrained.summary
    m = money_of(constrained.problem, constrained.spend)
    assert s.activation_cost == pytest.approx(2000.0)
    assert s.net_value == pytest.approx(s.total_value - s.total_spend - s.activation_cost, abs=1e-6)
    assert (s.net_value, s.total_value, s.total_spend) == pytest.approx((m.net_value, m.value, m.spend))
    b = s.baseline
    assert b["net_value_gained"] == pytest.approx(s.net_value - b["net_value"], abs=1e-6)
    assert b["net_value"] == pytest.approx(b["value"] - b["spend"] - b["activation_cost"], abs=1e-6)
    t = constrained.table
    assert t["net_value"].sum() == pytest.approx(s.net_value, rel=1e-12)
    text = render(constrained)
    printed = [float(x.replace(",", "")) for x in re.findall(r"net value ([\d,]+)", text)]
    assert printed[0] == round(s.net_value)
    assert f"{abs(b['net_value_gained']):,.0f}" in text


# ------------------------------------------------------------- objective-aware words

def _example() -> dict:
    return yaml.safe_load((ROOT / "scenarios" / "example.yaml").read_text())


def test_hurdle_words_and_required_return():
    data = _example()
    data["objective"] = {"type": "hurdle", "rate": 1.3}
    plan = allocator.plan(data)
    text = render(plan)
    assert "hurdle rate 1.3" in text and "spend stops where a unit returns a unit" not in text
    inside = plan.table[plan.table["bound"] == "none"]
    assert len(inside) and np.allclose(inside["marginal_return"], 1.3, rtol=1e-4)
    assert np.allclose(inside["required_return"], 1.3, rtol=1e-9)


def test_target_words_print_the_target_and_what_was_reached():
    data = _example()
    data["objective"] = {"type": "target", "metric": "successes", "target": 500,
                         "select": {"tasks": ["acquisition"]}}
    plan = allocator.plan(data)
    o = plan.summary.objective
    reached = float((plan.table["expected_successes"][plan.table["task"] == "acquisition"]).sum())
    assert o["reached"] == pytest.approx(reached) and o["reached"] >= 500 * (1 - 1e-9) and o["met"]
    text = render(plan)
    assert "budget slack" not in text and "reached 500" in text and "successes per USD" in text
    _identities(plan, rtol=2e-4)


# ------------------------------------------------------------- every bundled scenario, every solver

# single-period scenarios: a multi-period file (a `periods` key) has its own checks (tests/test_dynamic_*.py)
BUNDLED = sorted(p for p in (ROOT / "scenarios").glob("*.yaml")
                 if "sweep" not in p.name and "periods" not in (yaml.safe_load(p.read_text()) or {}))


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_json_output_parses_for_every_bundled_scenario(path, tmp_path):
    run = subprocess.run([sys.executable, "-m", "allocator", "plan", str(path), "--json", "--out", str(tmp_path)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["summary"]["net_value"] == pytest.approx(
        out["summary"]["total_value"] - out["summary"]["total_spend"] - out["summary"]["activation_cost"])
    assert len(out["cells"]) == len(out["summary"]["by_task"]) or out["cells"]


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_explanation_identities_on_every_bundled_scenario(path):
    plan = allocator.plan(path)
    assert plan.summary.status == "optimal"
    assert "required_return" in plan.table and "binding_rules" in plan.table
    if plan.problem.unit is None:
        _identities(plan, rtol=max(1e-5, 2 * float(plan.result.info.get("kkt_tolerance", 0.0))))
    s = plan.summary
    assert s.net_value == pytest.approx(s.total_value - s.total_spend - s.activation_cost, abs=1e-6)


@pytest.mark.parametrize("solver", sorted(set(allocator.solvers.SOLVERS) - {"exact"}))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_explanation_identities_on_random_constrained_instances(solver, seed):
    rng = np.random.default_rng(seed)
    data = rules_scenario(float(rng.uniform(180000, 320000)))
    for seg in data["segments"]:
        for cell in seg["tasks"].values():
            cell["value"] *= float(rng.uniform(0.7, 1.3))
            cell["curve"]["rate"] *= float(rng.uniform(0.7, 1.3))
    data["constraints"][0]["min"] = float(rng.uniform(0.2, 0.4))
    if solver == "pyomo_highs":
        data["constraints"] = [c for c in data["constraints"] if c["type"] != "lock"]
    try:
        plan = allocator.plan(data, solver=solver)
    except allocator.SolverUnavailableError as exc:
        pytest.skip(str(exc))
    assert plan.summary.status == "optimal"
    _identities(plan, rtol=max(1e-5, 2 * float(plan.result.info.get("kkt_tolerance", 0.0))))
