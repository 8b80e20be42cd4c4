"""Workbooks out (plan.xlsx) and in (scenario workbooks), read back with openpyxl.

Truths: the plan's own numbers (plan.table, plan.summary), totals re-computed here in exact
decimal arithmetic, plan.csv's header, and the plan of the YAML file the workbook came from.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook

import allocator
import allocator.cli as cli
from allocator.spec import load_scenario
from allocator.workbook import (frontier_workbook, plan_workbook, read_scenario_workbook, scenario_hash,
                                scenario_workbook)

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = {name: ROOT / "scenarios" / f"{name}.yaml" for name in ("example", "constrained")}


def run_cli(monkeypatch, *argv: str) -> int:
    """``allocator ARGV`` with the finance commands registered (until COMMAND_MODULES lists them)."""
    extra = [m for m in ("report_cmd", "compare_cmd") if m not in cli.COMMAND_MODULES]
    monkeypatch.setattr(cli, "COMMAND_MODULES", [*cli.COMMAND_MODULES, *extra])
    return cli.main(list(argv))


def _dec(v) -> Decimal:
    return Decimal(repr(float(v)))


def _sheet(ws) -> pd.DataFrame:
    rows = list(ws.iter_rows(values_only=True))
    return pd.DataFrame(rows[1:], columns=rows[0])


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def book(request, tmp_path_factory):
    """(plan, workbook read back, plan.csv header) for each bundled scenario."""
    sc = load_scenario(SCENARIOS[request.param])
    plan = allocator.plan(sc)
    out = tmp_path_factory.mktemp(request.param)
    plan.write(out)
    (out / "plan.xlsx").write_bytes(plan_workbook(plan, {"scenario_hash": scenario_hash(sc)}))
    header = (out / "plan.csv").read_text().splitlines()[0].split(",")
    return plan, load_workbook(out / "plan.xlsx"), header


def test_sheets_and_plan_header_equal_plan_csv(book):
    plan, wb, header = book
    assert wb.sheetnames[:5] == ["Summary", "Plan", "By task", "By segment", "Binding rules"]
    ws = wb["Plan"]
    assert [c.value for c in ws[1]] == header
    assert ws.max_row == len(plan.table) + 1
    assert ws.freeze_panes == "C2" and ws.auto_filter.ref == f"A1:{ws.cell(1, ws.max_column).column_letter}{ws.max_row}"
    assert all(ws.column_dimensions[c.column_letter].width >= len(str(c.value)) for c in ws[1])


def test_no_inf_or_nan_text_anywhere_and_blank_unbounded(book):
    plan, wb, _ = book
    for ws in wb:
        for row in ws.iter_rows(values_only=True):
            for v in row:
                if isinstance(v, str):
                    assert v.strip().lower() not in ("inf", "-inf", "nan", "infinity") and v != "None", (ws.title, v)
                elif isinstance(v, float):
                    assert np.isfinite(v)
    df = _sheet(wb["Plan"])
    unbounded = ~np.isfinite(plan.table["max_spend"].to_numpy())
    assert unbounded.any()
    assert df.loc[unbounded, "max_spend"].isna().all()
    assert (df.loc[~unbounded, "max_spend"].astype(float) == plan.table.loc[~unbounded, "max_spend"]).all()


def test_every_total_equals_the_plan(book):
    plan, wb, _ = book
    s = plan.summary
    df = _sheet(wb["Plan"])
    n = len(df)
    totals = {k: sum(_dec(v) for v in df[k]) for k in ("spend", "expected_value", "activation_cost", "net_value")}
    # each rounded total is within half a cent per cell of the plan's raw total ...
    for col, raw in (("spend", s.total_spend), ("expected_value", s.total_value),
                     ("activation_cost", s.activation_cost), ("net_value", s.net_value)):
        assert abs(float(totals[col]) - raw) <= 0.005 * n + 1e-6, col
    # ... the spend total is the rounded total spend (the budget when it binds), in exact decimals
    assert totals["spend"] == Decimal(round(s.total_spend, 2)).quantize(Decimal("0.01"))
    if s.budget_binds:
        assert totals["spend"] == Decimal(str(s.budget))
    assert totals["net_value"] == totals["expected_value"] - totals["spend"] - totals["activation_cost"]
    summary = {r[0]: r[1:] for r in wb["Summary"].iter_rows(min_row=2, values_only=True)}
    for label, col in (("total spend", "spend"), ("total value", "expected_value"), ("net value", "net_value"),
                       ("activation cost", "activation_cost")):
        value, formula = summary[label][0], summary[label][1]
        assert _dec(value) == totals[col]
        # the Excel SUM written beside it covers exactly the Plan sheet's column
        m = re.fullmatch(r"=SUM\('Plan'!([A-Z]+)2:([A-Z]+)(\d+)\)", formula)
        assert m and m[1] == m[2] and int(m[3]) == n + 1
        cells = [c.value for c in wb["Plan"][m[1]][1:]]
        assert sum(_dec(v) for v in cells) == _dec(value)
    assert summary["net value gained over baseline"][0] == pytest.approx(s.baseline["net_value_gained"])
    assert summary["budget"][0] == s.budget and summary["status"][0] == s.status


@pytest.mark.parametrize("sheet,key", [("By task", "task"), ("By segment", "segment")])
def test_group_sheets_add_up(book, sheet, key):
    plan, wb, _ = book
    g = _sheet(wb[sheet]).set_index(key)
    plan_df = _sheet(wb["Plan"])
    raw = plan.table.groupby(key)["spend"].sum()
    for k, row in g.iterrows():
        assert _dec(row["spend"]) == sum(_dec(v) for v in plan_df.loc[plan_df[key] == k, "spend"])
        assert abs(row["spend"] - raw[k]) <= 0.005 * (plan.table[key] == k).sum() + 1e-6
        by = getattr(plan.summary, f"by_{key}")[k]
        assert row["net_value"] == pytest.approx(by["net_value"], abs=0.01 * (plan.table[key] == k).sum() + 1e-6)
    assert sum(_dec(v) for v in g["spend"]) == sum(_dec(v) for v in plan_df["spend"])


def test_number_formats_and_binding_prices(book):
    plan, wb, _ = book
    ws = wb["Plan"]
    head = {c.value: c.column_letter for c in ws[1]}
    assert ws[f"{head['spend']}2"].number_format == "[$USD] #,##0.00"
    assert ws[f"{head['response_rate']}2"].number_format == "0.00%"
    assert ws[f"{head['marginal_return']}2"].number_format == "0.0000"
    assert ws[f"{head['spend']}1"].comment is not None and "USD" in ws[f"{head['spend']}1"].comment.text
    binding = _sheet(wb["Binding rules"])
    got = dict(zip(binding["name"], binding["shadow_price"]))
    assert len(got) == len(plan.summary.binding_constraints)
    for b in plan.summary.binding_constraints:
        if b.get("shadow_price") is None:       # integer rules (whole units) have no price: blank cell
            assert got[b["name"]] is None or np.isnan(got[b["name"]])
        else:
            assert got[b["name"]] == pytest.approx(b["shadow_price"], rel=1e-12)


def test_frontier_sheet_holds_the_frontier():
    fr = allocator.budget_frontier(SCENARIOS["example"], 500_000, 2_000_000, points=16)
    wb = load_workbook(__import__("io").BytesIO(frontier_workbook(fr, "USD")))
    df = _sheet(wb["Frontier"])
    assert list(df.columns) == list(fr.table.columns)
    assert np.allclose(df["net_value"].astype(float), fr.table["net_value"], rtol=0, atol=1e-6)


# ------------------------------------------------------------------ scenario workbooks (in)

@pytest.mark.parametrize("name", [*sorted(SCENARIOS), "example_uncertainty", "cdnow"])
def test_round_trip_yaml_workbook_plan_is_identical(name, tmp_path):
    """example_uncertainty carries samples and distributions (JSON settings); cdnow's cells come from a model."""
    sc = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
    path = tmp_path / "book.xlsx"
    path.write_bytes(scenario_workbook(sc))
    wb = load_workbook(path)
    assert wb.sheetnames == ["Cells", "Rules", "Budget", "Settings"]
    back = read_scenario_workbook(path)
    # the workbook holds the model file's cells themselves, so it no longer refers to the model file
    assert back.model_dump() == {**sc.model_dump(), "model": None}
    a, b = allocator.plan(sc), allocator.plan(back)
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)
    assert a.summary.net_value == b.summary.net_value


def test_plan_reads_a_workbook_through_the_cli(monkeypatch, tmp_path):
    book = tmp_path / "book.xlsx"
    assert run_cli(monkeypatch, "template", str(SCENARIOS["example"]), "--xlsx", "--out", str(book)) == 0
    assert run_cli(monkeypatch, "plan", str(book), "--out", str(tmp_path / "xl"), "--quiet", "--xlsx") == 0
    assert run_cli(monkeypatch, "plan", str(SCENARIOS["example"]), "--out", str(tmp_path / "yaml"), "--quiet") == 0
    assert (tmp_path / "xl" / "plan.csv").read_text() == (tmp_path / "yaml" / "plan.csv").read_text()
    assert (tmp_path / "xl" / "plan.xlsx").is_file()


def _edit(src: Path, dst: Path, edits) -> Path:
    wb = load_workbook(src)
    for sheet, find, column, value in edits:
        ws = wb[sheet]
        head = [c.value for c in ws[1]]
        for row in ws.iter_rows(min_row=2):
            vals = {h: c.value for h, c in zip(head, row)}
            if all(vals.get(k) == v for k, v in find.items()):
                row[head.index(column)].value = value
                break
        else:
            raise AssertionError(f"no row {find} in {sheet}")
    wb.save(dst)
    return dst


def _ref(path: Path, sheet: str, find: dict, column: str) -> str:
    ws = load_workbook(path)[sheet]
    head = [c.value for c in ws[1]]
    for row in ws.iter_rows(min_row=2):
        if all(row[head.index(k)].value == v for k, v in find.items()):
            return f"{sheet}!{row[head.index(column)].coordinate}"
    raise AssertionError(find)


def test_workbook_errors_name_sheet_row_and_column(monkeypatch, tmp_path, capsys):
    src = tmp_path / "good.xlsx"
    src.write_bytes(scenario_workbook(load_scenario(SCENARIOS["constrained"])))
    bad = _edit(src, tmp_path / "bad.xlsx", [
        ("Cells", {"segment": "small_business", "task": "winback"}, "pool", -3),
        ("Cells", {"segment": "web_top", "task": "retention"}, "curve.rate", -0.1),
        ("Rules", {"name": "retention_share"}, "min", -1),
        ("Rules", {"name": "b2b_band"}, "select", "{tags: [gold]}"),
        ("Budget", {"kind": "total"}, "total", "lots"),
    ])
    pool = _ref(bad, "Cells", {"segment": "small_business", "task": "winback"}, "pool")
    rate = _ref(bad, "Cells", {"segment": "web_top", "task": "retention"}, "curve.rate")
    share = _ref(bad, "Rules", {"name": "retention_share"}, "min")
    select = _ref(bad, "Rules", {"name": "b2b_band"}, "select")
    total = _ref(bad, "Budget", {"kind": "total"}, "total")
    with pytest.raises(allocator.SpecError) as err:
        read_scenario_workbook(bad)
    text = str(err.value)
    assert f"{pool} (segment small_business, task winback): pool must be > 0; got -3" in text
    assert f"{rate} (segment web_top, task retention): curve.rate must be in [0, inf]; got -0.1" in text
    assert f"{share} (rule retention_share): min must be >= 0; got -1" in text
    assert f"{select} (rule b2b_band): select: unknown tag 'gold'" in text
    assert f"{total} (budget): total must be a number; got 'lots'" in text
    # the command line: exit 2, nothing written
    assert run_cli(monkeypatch, "plan", str(bad), "--out", str(tmp_path / "never")) == 2
    assert f"{pool} (segment small_business, task winback): pool must be > 0; got -3" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_unknown_column_and_missing_sheet(tmp_path):
    src = tmp_path / "good.xlsx"
    src.write_bytes(scenario_workbook(load_scenario(SCENARIOS["example"])))
    wb = load_workbook(src)
    ws = wb["Cells"]
    ws.cell(row=1, column=ws.max_column + 1).value = "notes"
    del wb["Settings"]
    wb.save(tmp_path / "bad.xlsx")
    with pytest.raises(allocator.SpecError, match="missing sheet\\(s\\) Settings"):
        read_scenario_workbook(tmp_path / "bad.xlsx")
    wb.create_sheet("Settings").append(["key", "value", "format"])
    wb["Settings"].append(["name", "example", None])
    wb.save(tmp_path / "bad.xlsx")
    col = ws.cell(row=1, column=ws.max_column).coordinate
    with pytest.raises(allocator.SpecError, match=f"Cells!{col}: unknown column 'notes'"):
        read_scenario_workbook(tmp_path / "bad.xlsx")
