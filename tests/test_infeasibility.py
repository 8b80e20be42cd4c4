"""Conflicting rules are named as a small irreducible set; the CLI exits 3 and writes nothing."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

import allocator
from allocator.cli import main
from allocator.errors import InfeasibleError
from allocator.infeasibility import find_conflict, is_feasible, items_of, restrict
from helpers import exp_cell, hill_cell, scenario

CELLS = {("a", "retention"): exp_cell(100, 50, 0.5, 0.1),
         ("b", "acquisition"): exp_cell(200, 100, 0.4, 0.05),
         ("c", "winback"): hill_cell(300, 80, 0.3, 5.0, 2.0)}


def conflict_of(**extra) -> list[str]:
    with pytest.raises(InfeasibleError) as err:
        allocator.plan(scenario(CELLS, **extra))
    return err.value.conflict


def test_floor_above_budget_names_both_with_numbers_and_nothing_else():
    conflict = conflict_of(budget=1000, constraints=[
        {"name": "ret_floor", "type": "spend", "select": {"tasks": ["retention"]}, "min": 800},
        {"name": "acq_floor", "type": "spend", "select": {"tasks": ["acquisition"]}, "min": 500},
        {"name": "harmless_cap", "type": "spend", "select": {"tasks": ["winback"]}, "max": 900}])
    assert conflict == ["budget.total: total spend <= 1,000",
                        "'ret_floor': spend of tasks [retention] >= 800",
                        "'acq_floor': spend of tasks [acquisition] >= 500"]


def test_conflict_is_irreducible():
    sc = allocator.compile_scenario(allocator.scenario_from_dict(scenario(CELLS, budget=5000, constraints=[
        {"name": "share", "type": "share", "select": {"tasks": ["winback"]}, "min": 0.5},
        {"name": "cap_c", "type": "spend", "select": {"segments": ["c"]}, "max": 1000},
        {"name": "floor_ab", "type": "spend", "select": {"segments": ["a", "b"]}, "min": 1500},
        {"name": "unrelated", "type": "ratio", "numerator": {"segments": ["a"]},
         "denominator": {"segments": ["b"]}, "max": 10}])))
    items = items_of(sc)
    assert not is_feasible(sc)
    names = find_conflict(sc)
    assert len(names) == 3 and not any("unrelated" in t for t in names)
    kept = [it for it in items if it.text in names]
    assert not is_feasible(restrict(sc, kept))
    for drop in kept:  # dropping any one member makes the rest feasible
        assert is_feasible(restrict(sc, [it for it in kept if it is not drop]))


def test_lock_against_max_spend():
    cells = dict(CELLS)
    cells[("a", "retention")] = exp_cell(100, 50, 0.5, 0.1, max_spend=300)
    with pytest.raises(InfeasibleError) as err:
        allocator.plan(scenario(cells, constraints=[{"name": "fix_a", "type": "lock", "select": {"segments": ["a"]},
                                                     "spend": 500}]))
    assert err.value.conflict == ["lock 'fix_a': cell (a, retention) spends 500",
                                  "max_spend of cell (a, retention) = 300"]


def test_unreachable_target_names_target_and_budget():
    conflict = conflict_of(budget=100, objective={"type": "target", "metric": "successes", "target": 150})
    assert conflict == ["budget.total: total spend <= 100",
                        "objective target: expected successes of all cells >= 150"]


def test_spend_unit_conflicts_with_cell_bounds():
    cells = dict(CELLS)
    cells[("b", "acquisition")] = exp_cell(200, 100, 0.4, 0.05, min_spend=1500, max_spend=1900)
    data = scenario(cells)
    data["budget"] = {"unit": 1000}
    with pytest.raises(InfeasibleError) as err:
        allocator.plan(data)
    assert set(err.value.conflict) == {"budget.unit: every cell spends a whole multiple of 1,000",
                                       "min_spend of cell (b, acquisition) = 1,500",
                                       "max spend of cell (b, acquisition) = 1,900 (max_spend or the curve's peak)"}


def test_named_budgets_against_group_floor():
    conflict = conflict_of(budgets=[{"name": "crm", "total": 400, "select": {"tasks": ["retention"]}}],
                           constraints=[{"name": "ret_min", "type": "spend", "select": {"segments": ["a"]},
                                         "min": 600}])
    assert conflict == ["budget 'crm': spend of tasks [retention] <= 400", "'ret_min': spend of segments [a] >= 600"]


def test_cli_exits_3_with_no_output_files(tmp_path, capsys):
    data = scenario(CELLS, budget=1000, constraints=[
        {"name": "ret_floor", "type": "spend", "select": {"tasks": ["retention"]}, "min": 800},
        {"name": "acq_floor", "type": "spend", "select": {"tasks": ["acquisition"]}, "min": 500}])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    assert main(["plan", str(path), "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert "cannot hold together" in err
    assert "'ret_floor': spend of tasks [retention] >= 800" in err
    assert "budget.total: total spend <= 1,000" in err
    assert not out.exists() or not any(out.iterdir())


def test_feasible_rules_give_no_conflict():
    sc = allocator.compile_scenario(allocator.scenario_from_dict(scenario(CELLS, budget=5000)))
    assert find_conflict(sc) is None
    assert find_conflict(dataclasses.replace(sc, budget=None)) is None
