"""All problems in one run (issue 8, item 7).

A file with problems in several stages (schema, references, curve parameters, conflicts
visible without solving) is reported in one error, every line naming its field and cell,
so it takes one round of fixes. The expected lines are read off the files written here:
each test plants its problems and checks that each one, and nothing else, is named.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from allocator.cli import main
from allocator.compile import compile_scenario
from allocator.errors import InfeasibleError, SpecError
from allocator.spec import load_scenario, scenario_from_dict
from allocator.spec.loader import MAX_PROBLEMS

from helpers import exp_cell, scenario

ROOT = Path(__file__).resolve().parents[1]


def four_stage_file() -> dict:
    """One problem per stage, each in a different cell or rule."""
    return {
        "name": "four_stages", "budget": {"total": 10000},
        "segments": [
            {"id": "vip", "tags": ["b2b"], "tasks": {
                # schema: a negative pool
                "winback": exp_cell(pool=-3, value=100, ceiling=0.3, rate=0.1),
                # pre-check: locked at 9,000 but capped at 8,000
                "retention": exp_cell(pool=100, value=100, ceiling=0.3, rate=0.1, max_spend=8000)}},
            {"id": "mass", "tasks": {
                # curve parameter: a negative rate; floor 5,000 (with the lock: 14,000 > budget 10,000)
                "acquisition": exp_cell(pool=1000, value=50, ceiling=0.1, rate=-0.1, min_spend=5000)}},
        ],
        "constraints": [
            # reference: a tag no segment carries
            {"name": "gold_cap", "type": "spend", "select": {"tags": ["gold"]}, "max": 100},
            {"name": "keep_ret", "type": "lock", "select": {"segments": ["vip"], "tasks": ["retention"]},
             "spend": 9000},
        ],
    }


EXPECTED = [
    "pool of cell (vip, winback): Input should be greater than 0; got -3",
    "curve.rate of cell (mass, acquisition): must be in [0, inf]; got -0.1",
    "constraints.gold_cap.select: unknown tag 'gold'; known: b2b",
    "constraints.keep_ret of cell (vip, retention): infeasible (found before solving): the lock spends 9,000, "
    "above the cell's max_spend (8,000)",
    "budget.total: infeasible (found before solving): the cap 10,000 is below the floors of cells "
    "(vip, retention) (9,000, locked), (mass, acquisition) (5,000)",
]


def write(tmp_path: Path, data: dict, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_one_error_lists_every_stage(tmp_path):
    path = write(tmp_path, four_stage_file())
    with pytest.raises(SpecError) as info:
        load_scenario(path)
    lines = str(info.value).splitlines()
    assert lines[0] == f"invalid input in {path} ({len(EXPECTED)} problems):"
    assert lines[1:] == [f"  - {e}" for e in EXPECTED]
    assert [p.cell for p in info.value.problems] == ["(vip, winback)", "(mass, acquisition)", None,
                                                     "(vip, retention)", None]


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_cli_lists_them_all_exits_2_and_writes_nothing(tmp_path, capsys, command):
    path = write(tmp_path, four_stage_file())
    out = tmp_path / "out"
    args = [command, str(path)] + (["--out", str(out)] if command == "plan" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    for e in EXPECTED:
        assert e in err
    assert not out.exists()


def test_missing_model_file_is_listed_with_the_other_problems(tmp_path):
    data = {"name": "m", "model": "../models/nowhere.yaml", "budget": {"total": -5}, "solver": {"name": "magic"},
            "constraints": [{"name": "c1", "type": "spend", "select": {"tasks": ["retention"]}, "min": 10}],
            "overrides": {"budget.use_all": True, "budget.totl": {"scale": 2}}}
    path = write(tmp_path, data)
    with pytest.raises(SpecError) as info:
        load_scenario(path)
    text = str(info.value)
    assert f"model: no such model file: ../models/nowhere.yaml (looked for {(tmp_path.parent / 'models' / 'nowhere.yaml').resolve()})" in text
    assert "budget.totl: `scale` needs an existing number; nothing is set here" in text
    assert "budget.total: Input should be greater than or equal to 0; got -5" in text
    assert "solver.name: unknown solver 'magic'" in text
    # the scenario has no cells because the model is missing: that is not a problem of its own
    assert "neither `segments` nor a `model`" not in text
    assert "(4 problems)" in text


def test_invalid_model_file_names_the_model_and_its_cells(tmp_path):
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"segments": [
        {"id": "a", "tasks": {
            "retention": {"pool": 0, "value": 10, "curve": {"family": "exponential", "ceiling": 0.5, "rate": 1}}}},
        {"id": "b", "tasks": {
            "winback": {"pool": 10, "value": 10, "curve": {"family": "exponential", "ceiling": 1.5, "rate": 1}}}}]}))
    path = write(tmp_path, {"name": "s", "model": "m.yaml", "budget": {"total": "lots"}})
    with pytest.raises(SpecError) as info:
        load_scenario(path)
    assert [str(p) for p in info.value.problems] == [
        "model: m.yaml: pool of cell (a, retention): Input should be greater than 0; got 0",
        "budget.total: Input should be a valid number; got 'lots'",
        # the model's other cell is still checked
        "curve.ceiling of cell (b, winback): must be in [0, 1]; got 1.5"]


def test_a_broken_constraint_does_not_hide_the_others():
    data = scenario({("a", "retention"): exp_cell(100, 50, 0.5, 0.1), ("b", "winback"): exp_cell(100, 50, 0.5, 0.1)},
                    budget=1000, constraints=[
                        {"name": "odd", "type": "spend", "select": {"tasks": ["retention"]}, "min": -1},
                        {"name": "typo", "type": "spend", "select": {"segments": ["c"]}, "max": 10},
                        {"name": "share_x", "type": "share", "select": {"tasks": ["winback"]}, "min": 0.6,
                         "max": 0.2}])
    with pytest.raises(SpecError) as info:
        scenario_from_dict(data)
    text = str(info.value)
    assert "constraints.0.spend.min: Input should be greater than or equal to 0; got -1" in text
    assert "constraints.typo.select: unknown segment 'c'; known: a, b" in text
    assert "constraints.share_x.max: must be >= min (0.6); got 0.2" in text
    assert "(3 problems)" in text


def test_a_cell_set_aside_does_not_make_references_to_it_wrong():
    # the only retention cell has a broken field; the rule selecting it must not be called empty
    data = scenario({("a", "retention"): exp_cell(100, 50, 0.5, 0.1, current_spend="many"),
                     ("b", "winback"): exp_cell(100, 50, 0.5, 0.1, min_spend=-2)},
                    budget=1000, constraints=[
                        {"name": "ret_floor", "type": "spend", "select": {"segments": ["a"], "tasks": ["retention"]},
                         "min": 10}])
    with pytest.raises(SpecError) as info:
        scenario_from_dict(data)
    assert [str(p) for p in info.value.problems] == [
        "current_spend of cell (a, retention): Input should be a valid number; got 'many'",
        "min_spend of cell (b, winback): Input should be greater than or equal to 0; got -2"]


def test_a_segment_with_a_broken_id_silences_reference_checks_rather_than_guessing():
    data = scenario({("a", "retention"): exp_cell(100, 50, 0.5, 0.1)}, budget=1000,
                    constraints=[{"name": "r", "type": "spend", "select": {"segments": ["a"]}, "min": 1}])
    data["segments"][0]["id"] = ""
    data["segments"][0]["tasks"]["retention"]["curve"]["rate"] = -1
    with pytest.raises(SpecError) as info:
        scenario_from_dict(data)
    assert [p.field for p in info.value.problems] == ["segments.0.id", "curve.rate"]


def test_many_problems_are_capped_and_counted():
    n = MAX_PROBLEMS + 12
    cells = {(f"s{i}", "retention"): exp_cell(pool=-1, value=10, ceiling=0.5, rate=0.1) for i in range(n)}
    with pytest.raises(SpecError) as info:
        scenario_from_dict(scenario(cells))
    lines = str(info.value).splitlines()
    assert len(info.value.problems) == n
    assert lines[0] == f"invalid input ({n} problems; the first {MAX_PROBLEMS} are listed):"
    assert lines[1] == "  - pool of cell (s0, retention): Input should be greater than 0; got -1"
    assert lines[-1] == "  ... and 12 more problems"
    assert len(lines) == MAX_PROBLEMS + 2


def test_conflicts_alone_load_and_every_lock_conflict_is_named_at_compile(tmp_path, capsys):
    data = scenario({("a", "retention"): exp_cell(100, 50, 0.5, 0.1, max_spend=300),
                     ("b", "winback"): exp_cell(100, 50, 0.5, 0.1, min_spend=200)}, budget=1000, constraints=[
        {"name": "lock_a", "type": "lock", "select": {"segments": ["a"]}, "spend": 500},
        {"name": "lock_b", "type": "lock", "select": {"segments": ["b"]}, "spend": 100}])
    sc = scenario_from_dict(data)                 # valid input: the conflicts are infeasibilities
    with pytest.raises(InfeasibleError) as info:
        compile_scenario(sc)
    assert info.value.conflict == ["lock 'lock_a': cell (a, retention) spends 500",
                                   "max_spend of cell (a, retention) = 300",
                                   "lock 'lock_b': cell (b, winback) spends 100",
                                   "min_spend of cell (b, winback) = 200"]
    path = write(tmp_path, data)
    assert main(["validate", str(path)]) == 3
    err = capsys.readouterr().err
    assert "2 locks conflict with their cells' bounds" in err and "lock 'lock_b'" in err


def test_floors_above_a_named_budget_and_a_cap_are_listed_with_input_problems():
    data = scenario({("a", "retention"): exp_cell(100, 50, 0.5, 0.1, min_spend=300),
                     ("b", "retention"): exp_cell(100, 50, 0.5, 0.1, min_spend=250),
                     ("c", "winback"): exp_cell(100, 50, 0.5, -0.1, min_spend=50)},
                    budgets=[{"name": "crm", "total": 400, "select": {"tasks": ["retention"]}}],
                    constraints=[{"name": "ab_cap", "type": "spend", "select": {"segments": ["a", "b"]}, "max": 500}])
    with pytest.raises(SpecError) as info:
        scenario_from_dict(data)
    assert [str(p) for p in info.value.problems] == [
        "curve.rate of cell (c, winback): must be in [0, inf]; got -0.1",
        "budgets.crm: infeasible (found before solving): the cap 400 is below the floors of cells "
        "(a, retention) (300), (b, retention) (250)",
        "constraints.ab_cap: infeasible (found before solving): the cap 500 is below the floors of cells "
        "(a, retention) (300), (b, retention) (250)"]


def test_shipped_scenarios_still_validate(capsys):
    for name in ("example", "constrained", "example_sweep", "example_uncertainty", "cdnow", "contracts",
                 "b2b_calibrated"):
        assert main(["validate", str(ROOT / "scenarios" / f"{name}.yaml")]) == 0, capsys.readouterr().err
