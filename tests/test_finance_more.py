"""Finance surfaces of issue 10 beyond the single plan: frontier and sweep workbooks, the frontier report,
multi-period workbooks and reports, and the sweep's rich progress bar.

Truths come from outside the code under test: the CSV and JSON files the commands write beside the
workbooks (read with pandas and json), read back with openpyxl, and the numbers plotly embeds in the
HTML parsed back as JSON.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook

from allocator.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "scenarios" / "example.yaml"
SWEEP = ROOT / "scenarios" / "example_sweep.yaml"
FY2027 = ROOT / "scenarios" / "fy2027.yaml"


def _sheet(path: Path, name: str) -> pd.DataFrame:
    """A sheet as a table: first row the header, blank cells as NaN (what a table reader sees)."""
    rows = list(load_workbook(path, read_only=True)[name].iter_rows(values_only=True))
    return pd.DataFrame([list(r) for r in rows[1:]], columns=list(rows[0]))


def _assert_no_inf_nan_text(path: Path) -> None:
    wb = load_workbook(path)
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                v = cell.value
                if isinstance(v, str):
                    assert v.strip().lower() not in ("inf", "-inf", "nan", "infinity"), (ws.title, cell.coordinate)
                elif isinstance(v, float):
                    assert math.isfinite(v), (ws.title, cell.coordinate)


def _same(sheet: pd.DataFrame, csv: pd.DataFrame, rel: float = 1e-9) -> None:
    """The sheet holds the CSV's columns and rows; numbers equal to the CSV's printed precision."""
    assert list(sheet.columns) == list(csv.columns)
    assert len(sheet) == len(csv)
    for c in csv.columns:
        want, got = csv[c], sheet[c]
        if pd.api.types.is_numeric_dtype(want) and not pd.api.types.is_bool_dtype(want):
            w = want.to_numpy(float)
            g = pd.to_numeric(got, errors="coerce").to_numpy(float)
            assert np.array_equal(np.isnan(w), np.isnan(g)), c       # blank cell <=> empty CSV field
            ok = ~np.isnan(w)
            assert np.allclose(g[ok], w[ok], rtol=rel, atol=1e-9), c
        else:
            assert [("" if v is None or v != v else str(v)) for v in got] == \
                   [("" if v != v else str(v)) for v in want], c


def _plotly_data(text: str, div_id: str) -> list[dict]:
    """The trace list that ``Plotly.newPlot("div_id", [...])`` in the page draws."""
    m = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(div_id) + r'",\s*', text)
    assert m, div_id
    data, _ = json.JSONDecoder().raw_decode(text, m.end())
    return data


def _values(v) -> np.ndarray:
    """A trace's numbers: a plain list, or plotly's typed array ``{"dtype": "f8", "bdata": base64}``."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v, float)


# ------------------------------------------------------------------ frontier

def test_frontier_xlsx_and_html_equal_the_csvs(tmp_path, capsys):
    out = tmp_path / "fr"
    assert main(["frontier", str(EXAMPLE), "--from", "1000000", "--to", "2000000", "--points", "11",
                 "--xlsx", "--html", "--out", str(out), "--quiet"]) == 0
    assert {p.name for p in out.iterdir()} >= {"frontier.csv", "frontier_events.csv", "frontier.xlsx",
                                               "report.html"}
    csv = pd.read_csv(out / "frontier.csv")
    _same(_sheet(out / "frontier.xlsx", "Frontier"), csv)
    events = pd.read_csv(out / "frontier_events.csv")
    if len(events):
        _same(_sheet(out / "frontier.xlsx", "Events"), events)
    _assert_no_inf_nan_text(out / "frontier.xlsx")
    text = (out / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=", text)
    path = next(t for t in _plotly_data(text, "chart-frontier") if t["meta"]["kind"] == "frontier")
    assert np.allclose(_values(path["y"]), csv["net_value"], rtol=1e-9)


def test_dynamic_frontier_xlsx_and_refused_html(tmp_path, capsys):
    out = tmp_path / "dfr"
    assert main(["frontier", str(FY2027), "--from", "1200000", "--to", "2000000", "--points", "3", "--xlsx",
                 "--out", str(out), "--quiet"]) == 0
    _same(_sheet(out / "frontier.xlsx", "Frontier"), pd.read_csv(out / "frontier.csv"))
    _assert_no_inf_nan_text(out / "frontier.xlsx")
    assert main(["frontier", str(FY2027), "--from", "1200000", "--to", "2000000", "--points", "3", "--html",
                 "--out", str(tmp_path / "h"), "--quiet"]) == 2
    assert "--html: is not available for multi-period frontiers yet" in capsys.readouterr().err


# ------------------------------------------------------------------ sweep

def test_sweep_xlsx_equals_summary_and_cells_and_progress_stays_on_stderr(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main(["sweep", str(SWEEP), "--out", str(out), "--executor", "serial", "--xlsx", "--progress"]) == 0
    captured = capsys.readouterr()
    # rich draws the bar on stderr; stdout carries the table only (no control codes, no bar)
    assert "\x1b" not in captured.out and "variants [" not in captured.out and "━" not in captured.out
    summary = pd.read_csv(out / "summary.csv")
    assert f"{len(summary)}/{len(summary)} variants" in captured.err
    assert "sweep.xlsx" in captured.out
    _same(_sheet(out / "sweep.xlsx", "Summary"), summary)
    _same(_sheet(out / "sweep.xlsx", "Cells"), pd.read_csv(out / "cells.csv"))
    _assert_no_inf_nan_text(out / "sweep.xlsx")
    # --no-progress: nothing on stderr at all
    assert main(["sweep", str(SWEEP), "--out", str(out), "--executor", "serial", "--restart", "--no-progress",
                 "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_progress_bar_is_drawn_by_rich(tmp_path):
    import io

    from allocator.scenarios import ProgressBar

    buf = io.StringIO()
    bar = ProgressBar(4, stream=buf)
    for i in range(5):
        bar.update(i)
    bar.close()
    text = buf.getvalue()
    assert "━" in text                                   # rich's bar glyph
    # after the transient rich display, one plain summary line stays for logs
    last = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).rstrip("\n").rsplit("\n", 1)[-1].split("\r")[-1]
    assert re.fullmatch(r"4/4 variants \[#{24}\] [0-9.]+/s elapsed 0:0\d left 0:00", last), last


# ------------------------------------------------------------------ multi-period plans

@pytest.fixture(scope="module")
def fy2027(tmp_path_factory):
    out = tmp_path_factory.mktemp("fy2027")
    assert main(["plan", str(FY2027), "--xlsx", "--html", "--out", str(out), "--quiet"]) == 0
    return out


def test_multi_period_workbook_equals_the_plans_files(fy2027):
    book = fy2027 / "plan.xlsx"
    summary = json.loads((fy2027 / "summary.json").read_text())
    wb = load_workbook(book, read_only=True)
    assert wb.sheetnames == ["Summary", "Plan", "By period", "Budget rows", "Flows"]
    # Flows is flows.csv
    _same(_sheet(book, "Flows"), pd.read_csv(fy2027 / "flows.csv"))
    # Plan has plan.csv's header and rows; money is rounded to the cent, the rest is plan.csv's
    plan_csv = pd.read_csv(fy2027 / "plan.csv")
    sheet = _sheet(book, "Plan")
    assert list(sheet.columns) == list(plan_csv.columns) and len(sheet) == len(plan_csv)
    _same(sheet.drop(columns=["spend", "expected_value"]), plan_csv.drop(columns=["spend", "expected_value"]))
    assert np.abs(sheet["spend"].to_numpy(float) - plan_csv["spend"].to_numpy(float)).max() < 0.01
    # its totals are summary.json's: the rounded spends add up to the rounded total spend exactly
    inside = plan_csv["period"].astype(str) != "steady"
    cents = np.round(sheet.loc[inside, "spend"].to_numpy(float) * 100).astype(np.int64)
    assert int(cents.sum()) == round(summary["total_spend"] * 100)
    for task, v in summary["by_task"].items():
        assert sheet.loc[inside & (sheet["task"] == task), "spend"].sum() == pytest.approx(v["spend"], abs=0.01 * 40)
    # By period: summary.json's by_period, spend rounded to the same total
    periods = _sheet(book, "By period")
    assert list(periods["period"]) == [b["period"] for b in summary["by_period"]]
    assert np.allclose(periods["spend"], [b["spend"] for b in summary["by_period"]], atol=0.01)
    assert round(float(periods["spend"].sum()) * 100) == round(summary["total_spend"] * 100)
    assert np.allclose(periods["budget_shadow_price"], [b["budget_shadow_price"] for b in summary["by_period"]],
                       rtol=1e-12)
    for state in ("prospects", "active", "lapsed"):
        assert np.allclose(periods[f"members_start_{state}"],
                           [b["members_start"][state] for b in summary["by_period"]], rtol=1e-12)
    # Summary: values and the SUM checks over the other sheets
    pairs = {r[0]: r for r in load_workbook(book)["Summary"].iter_rows(min_row=2, values_only=True)}
    assert pairs["total spend (nominal)"][1] == pytest.approx(round(summary["total_spend"], 2), abs=1e-6)
    assert pairs["total spend (nominal)"][2].startswith("=SUM('Plan'!")
    assert pairs["customer equity (net value, present value)"][1] == pytest.approx(summary["customer_equity"],
                                                                                   rel=1e-12)
    assert pairs["budget, total"][1] == summary["budget"]["total"]
    _assert_no_inf_nan_text(book)


def test_multi_period_report_carries_the_flows_and_period_numbers(fy2027):
    text = (fy2027 / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=", text) and "<link" not in text
    flows = pd.read_csv(fy2027 / "flows.csv")
    summary = json.loads((fy2027 / "summary.json").read_text())
    members = [t for t in _plotly_data(text, "chart-flows") if t["meta"]["kind"] == "members"]
    assert [t["meta"]["state"] for t in members] == ["prospects", "active", "lapsed"]
    periods = sorted(flows["period"].unique())
    for t in members:
        want = [flows.loc[(flows["period"] == p) & (flows["state"] == t["meta"]["state"]), "start"].sum()
                for p in periods]
        assert t["x"] == [str(p) for p in periods]
        assert np.allclose(_values(t["y"]), want, rtol=1e-9)
    spend_chart = _plotly_data(text, "chart-period-spend")
    spend = next(t for t in spend_chart if t["meta"]["kind"] == "spend")
    price = next(t for t in spend_chart if t["meta"]["kind"] == "shadow_price")
    assert np.allclose(_values(spend["y"]), [b["spend"] for b in summary["by_period"]], rtol=1e-12)
    assert np.allclose(_values(price["y"]), [b["budget_shadow_price"] for b in summary["by_period"]], rtol=1e-12)
    assert f"{summary['customer_equity']:,.2f}" in text
    assert text.count("<tr>") >= len(flows) + len(pd.read_csv(fy2027 / "plan.csv"))


def test_multi_period_report_renders_in_headless_chromium(fy2027):
    from test_report import CHROMIUM, CHROMIUM_ARGS, _browser, _open

    sync_api = _browser()
    shots = ROOT / "out" / "report-screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors = _open(page, fy2027 / "report.html", 2)
            drawn = page.evaluate("""() => Object.fromEntries(Array.from(document.querySelectorAll('.js-plotly-plot'))
                .map(d => [d.id, {svg: d.querySelectorAll('svg.main-svg').length,
                                  data: d.data.map(t => ({meta: t.meta, y: t.y}))}]))""")
            assert {"chart-flows", "chart-period-spend"} <= set(drawn)
            assert all(drawn[k]["svg"] >= 1 for k in ("chart-flows", "chart-period-spend"))
            summary = json.loads((fy2027 / "summary.json").read_text())
            spend = next(t for t in drawn["chart-period-spend"]["data"] if t["meta"]["kind"] == "spend")
            assert np.allclose(spend["y"], [b["spend"] for b in summary["by_period"]], rtol=1e-12)
            page.screenshot(path=str(shots / "fy2027.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
