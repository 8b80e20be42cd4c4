"""Cells as a table: the table path against the YAML path (plans and validation messages)."""

from __future__ import annotations

import glob
import math

import numpy as np
import pandas as pd
import pytest

from allocator.compile import compile_scenario
from allocator.errors import SpecError
from allocator.solvers import solve
from allocator.spec import load_scenario, read_mapping, scenario_from_dict
from allocator.tables import (cells_table_from_scenario, compile_table, load_cells_table, plan_from_table,
                              random_cells_table, validate_cells, write_cells_table)


def _bundled():
    out = []
    for f in sorted(glob.glob("scenarios/*.yaml")):
        if "periods" in read_mapping(f):  # a multi-period scenario has no cells table
            continue
        sc = load_scenario(f)
        if sc.segments:  # concave and S-shaped (global solver) alike
            out.append(pytest.param(sc, id=f.split("/")[-1]))
    return out


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
@pytest.mark.parametrize("sc", _bundled())
def test_bundled_scenario_through_a_table_gives_the_identical_plan(sc, suffix, tmp_path):
    yaml_problem = compile_scenario(sc)
    truth = solve(yaml_problem, sc.solver.name, sc.solver.tolerance)
    path = write_cells_table(cells_table_from_scenario(sc), tmp_path / f"cells.{suffix}")
    plan = plan_from_table(sc.model_dump(exclude={"segments", "model", "samples"}), load_cells_table(path))
    assert plan.result.solver == truth.solver
    np.testing.assert_array_equal(plan.spend, truth.spend)
    for name in ("pool", "value", "lower", "upper"):
        np.testing.assert_array_equal(getattr(plan.problem, name), getattr(yaml_problem, name))
    assert plan.summary["net_value"] == pytest.approx(yaml_problem.net_value(truth.spend), rel=1e-12)
    # the explanation columns of plan.csv, from the same explanation layer, cell for cell
    from allocator.plan import build_plan

    yaml_table = build_plan(yaml_problem, truth).table
    assert list(plan.columns)[9:13] == ["bound", "required_return", "binding_rules", "reason"]
    assert list(plan.columns["bound"]) == list(yaml_table["bound"])     # locked and off included
    np.testing.assert_array_equal(plan.columns["required_return"], yaml_table["required_return"].to_numpy())
    assert list(plan.columns["binding_rules"]) == list(yaml_table["binding_rules"])
    assert list(plan.columns["reason"]) == list(yaml_table["reason"])
    back = pd.read_parquet(plan.write(tmp_path / "out", suffix)[0]) if suffix == "parquet" else \
        pd.read_csv(plan.write(tmp_path / "out", suffix)[0], keep_default_na=False)
    assert list(back["reason"].astype(str)) == list(yaml_table["reason"])
    assert list(back["binding_rules"].astype(str)) == list(yaml_table["binding_rules"])


def test_rules_compile_the_same_rows_from_a_table():
    sc = load_scenario("scenarios/constrained.yaml")
    a = compile_scenario(sc)
    b = compile_table(sc, cells_table_from_scenario(sc))
    assert [r.text for r in a.rows()] == [r.text for r in b.rows()]
    for ra, rb in zip(a.rows(), b.rows()):
        np.testing.assert_array_equal(ra.index, rb.index)
        np.testing.assert_array_equal(ra.coef, rb.coef)
    np.testing.assert_array_equal(a.lower, b.lower)
    np.testing.assert_array_equal(a.upper, b.upper)


def test_plan_written_from_arrays_reads_back(tmp_path):
    df = random_cells_table(2_000, seed=3)
    plan = plan_from_table({"name": "t", "budget": {"total": 150_000}}, df)
    paths = plan.write(tmp_path, "parquet")
    back = pd.read_parquet(paths[0])
    np.testing.assert_array_equal(back["spend"].to_numpy(), plan.spend)
    assert list(back["segment"][:3]) == ["s0", "s1", "s2"]
    assert plan.spend.sum() == pytest.approx(150_000, rel=1e-12)


# ---- validation: every rule of the YAML path, named by row and column

GOOD = {"segment": "a", "task": "retention", "pool": 1000.0, "value": 50.0, "family": "exponential",
        "ceiling": 0.3, "rate": 0.05}

CASES = [
    ("pool", {"pool": -1.0}),
    ("pool", {"pool": 1e13}),
    ("value", {"value": -2.0}),
    ("value", {"value": 1e16}),
    ("value", {"value": np.nan}),
    ("clv_retention", {"value": np.nan, "clv_margin": 10.0, "clv_retention": 1.5, "clv_discount": 0.1}),
    ("clv_margin/clv_retention/clv_discount", {"value": np.nan, "clv_margin": 10.0, "clv_retention": 1.0, "clv_discount": 0.0}),
    ("min_spend", {"min_spend": -5.0}),
    ("max_spend", {"min_spend": 10.0, "max_spend": 5.0}),
    ("current_spend", {"current_spend": -1.0}),
    ("min_active_spend", {"min_active_spend": 0.0}),
    ("activation_cost", {"activation_cost": -3.0}),
    ("family", {"family": "gompertz"}),
    ("rate", {"rate": np.nan}),
    ("rate", {"rate": -0.2}),
    ("ceiling", {"ceiling": 1.5}),
    ("ceiling", {"ceiling": 0.1, "floor": 0.2}),
    ("shape", {"shape": 2.0}),
    ("rate", {"rate": 1e13}),
    ("task", {"task": "upsell"}),
    ("points[0]", {"family": "piecewise", "ceiling": np.nan, "rate": np.nan, "points": "[[1, 0.1], [2, 0.2]]"}),
    ("pool", {"pool": "many"}),
]


def _yaml_messages(row: dict) -> list[str]:
    cell = {"pool": row["pool"], "curve": {"family": row["family"]}}
    if not (isinstance(row.get("value"), float) and math.isnan(row["value"])):
        cell["value"] = row["value"]
    elif "clv_margin" in row:
        cell["value"] = {"clv": {"margin": row["clv_margin"], "retention": row["clv_retention"],
                                 "discount": row["clv_discount"]}}
    for k in ("ceiling", "rate", "floor", "shape"):
        if k in row and not (isinstance(row[k], float) and math.isnan(row[k])):
            cell["curve"][k] = row[k]
    if "points" in row:
        import json
        cell["curve"]["points"] = json.loads(row["points"])
    for k in ("min_spend", "max_spend", "current_spend", "min_active_spend", "activation_cost"):
        if k in row:
            cell[k] = row[k]
    data = {"name": "x", "segments": [{"id": row["segment"], "tasks": {row["task"]: cell}}]}
    with pytest.raises(SpecError) as e:
        scenario_from_dict(data)
    return [p.message for p in e.value.problems]


@pytest.mark.parametrize("column,change", CASES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CASES)])
def test_table_validation_names_row_and_column_with_the_yaml_message(column, change):
    rows = [dict(GOOD, segment=f"s{i}") for i in range(5)]
    rows[3] = {**rows[3], **change}
    df = pd.DataFrame(rows)
    if isinstance(change.get("pool"), str):
        df["pool"] = df["pool"].astype(object)
    problems = validate_cells(df, source="cells.parquet")
    assert problems, "the vectorized checks missed the rule"
    assert all(p.row == 4 and p.segment == "s3" for p in problems)
    assert any(p.column == column for p in problems), [str(p) for p in problems]
    assert all("outside the allowed range" not in p.message for p in problems)
    assert str(problems[0]).startswith("cells.parquet row 4 (segment s3, task ")
    if column != "pool" or not isinstance(change.get("pool"), str):
        row = {**GOOD, "segment": "s3", **change}
        assert sorted(p.message for p in problems) == sorted(_yaml_messages(row))


def test_duplicate_cell_and_large_tables_are_summarized():
    df = random_cells_table(100_000, seed=1)
    df.loc[81_232, "rate"] = -0.2
    df.loc[[10, 20], "segment"] = "s5"
    df.loc[[10, 20], "task"] = df.loc[5, "task"]
    bad = df.index[df.index % 1000 == 7]
    df.loc[bad, "pool"] = 0.0
    problems = validate_cells(df, source="cells.parquet")
    text = [str(p) for p in problems]
    assert text[0] == "cells.parquet row 8 (segment s7, task %s): pool Input should be greater than 0; got 0.0" % df.loc[7, "task"]
    assert any(t.startswith("cells.parquet row 11 (segment s5, task ") and "repeats the cell of row 6" in t for t in text)
    assert text[-1].startswith("cells.parquet row") and "more rows with problems" in text[-1]
    one = validate_cells(df.iloc[81_000:81_300].reset_index(drop=True), source="cells.parquet")
    assert any("rate must be in [0, inf]; got -0.2" in str(p) and "(segment s81232," in str(p) for p in one)


def test_compile_table_raises_spec_error_with_rows():
    df = random_cells_table(50, seed=2)
    df.loc[7, "ceiling"] = -1
    with pytest.raises(SpecError, match=r"row 8 \(segment s7, task \w+\): ceiling must be in \[0, 1\]; got -1"):
        compile_table({"name": "x", "budget": {"total": 100}}, df, source="cells.csv")


def test_cli_plans_a_scenario_whose_cells_are_a_parquet_table(tmp_path):
    from allocator.cli import main

    df = random_cells_table(3_000, seed=4)
    write_cells_table(df, tmp_path / "cells.parquet")
    (tmp_path / "s.yaml").write_text("name: t\nbudget: {total: 200000}\ncells: cells.parquet\n")
    assert main(["plan", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    back = pd.read_parquet(tmp_path / "out" / "plan.parquet")
    truth = plan_from_table({"name": "t", "budget": {"total": 200_000}}, df)
    np.testing.assert_array_equal(back["spend"].to_numpy(), truth.spend)
    assert main(["plan", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "csv"), "--quiet", "--format", "csv"]) == 0
    np.testing.assert_allclose(pd.read_csv(tmp_path / "csv" / "plan.csv")["spend"].to_numpy(), truth.spend,
                               rtol=1e-12)


def test_cli_format_parquet_on_a_yaml_scenario(tmp_path):
    from allocator.cli import main

    assert main(["plan", "scenarios/example.yaml", "--out", str(tmp_path), "--quiet", "--format", "parquet"]) == 0
    a = pd.read_parquet(tmp_path / "plan.parquet")
    b = pd.read_csv(tmp_path / "plan.csv")
    np.testing.assert_allclose(a["spend"].to_numpy(), b["spend"].to_numpy(), rtol=1e-9)


def test_empty_segment_and_missing_columns_are_named():
    rows = [dict(GOOD, segment=f"s{i}") for i in range(3)]
    rows[1]["segment"] = ""
    problems = validate_cells(pd.DataFrame(rows), source="cells.csv")
    assert [(p.row, p.column) for p in problems] == [(2, "segment")]
    yaml = _yaml_messages({**GOOD, "segment": ""})
    assert [p.message for p in problems] == yaml
    problems = validate_cells(pd.DataFrame(rows).drop(columns=["family"]), source="cells.csv")
    assert str(problems[0]).startswith("cells.csv row 0 (segment -, task -): column family is a required column")


def test_logistic_quadratic_rows_need_their_own_parameters():
    row = {"segment": "a", "task": "acquisition", "pool": 10.0, "value": 5.0, "family": "logistic_quadratic",
           "b0": 0.1, "b1": 0.01}
    problems = validate_cells(pd.DataFrame([row]), source="cells.csv")
    assert [(p.column, p.message) for p in problems] == [("b2", "is required by family 'logistic_quadratic'")]


def test_table_plan_says_locked_as_the_yaml_plan_does():
    """A lock rule on a table: the cell's ``bound`` reads ``locked``, as in the YAML plan."""
    df = random_cells_table(40, seed=11)
    df["current_spend"] = 500.0
    lock = {"name": "keep_s3", "type": "lock", "select": {"segments": [str(df["segment"][3])],
                                                          "tasks": [str(df["task"][3])]}, "spend": "current"}
    plan = plan_from_table({"name": "t", "budget": {"total": 40_000}, "constraints": [lock]}, df)
    bound = list(plan.columns["bound"])
    assert bound[3] == "locked" and bound.count("locked") == 1
    assert plan.spend[3] == pytest.approx(500.0)


def test_table_summary_reports_the_optimality_check_as_the_yaml_summary_does():
    import allocator

    sc = load_scenario("scenarios/example.yaml")
    plan = plan_from_table(sc.model_dump(exclude={"segments", "model", "samples"}), cells_table_from_scenario(sc))
    yaml_summary = allocator.plan(sc).summary
    assert plan.summary["status"] == yaml_summary.status == "optimal"
    assert plan.summary["optimality_check"] == yaml_summary.optimality_check
    assert plan.summary["kkt_max_deviation"] == pytest.approx(yaml_summary.kkt_max_deviation, abs=1e-12)


def test_table_plan_whose_check_fails_is_not_called_optimal(monkeypatch):
    """A spend the check refutes (one cell moved off the optimum) must not be reported optimal."""
    from allocator.tables import output

    real = output.explanation

    def nudged(problem, result):
        spend = result.spend.copy()
        spend[0] += 0.2 * spend.sum() / len(spend)
        spend[1] -= min(spend[1], 0.2 * spend.sum() / len(spend))
        return real(problem, type(result)(**{**result.__dict__, "spend": spend}))

    monkeypatch.setattr(output, "explanation", nudged)
    plan = plan_from_table({"name": "t", "budget": {"total": 150_000}}, random_cells_table(200, seed=5))
    assert plan.summary["status"] == "suboptimal" and not plan.summary["optimality_check"]["ok"]
