"""The one-file HTML report: offline, every chart present and carrying the plan's numbers, in a real browser.

The browser test drives Debian's Chromium through Playwright (``executable_path``; browser downloads
are impossible here) and is skipped, with the reason, only where no Chromium or no Playwright exists.
Truths: the plan's own spends and returns, an independent re-solve without the budget, and the
comparison's numbers re-computed from each plan here.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import allocator
import allocator.cli as cli
from allocator.report import frontier_for, plan_report
from allocator.report.charts import marginal_vs_required, response_curves
from allocator.rounding import rounded_table
from allocator.spec import load_scenario

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "scenarios" / "example.yaml"
CONSTRAINED = ROOT / "scenarios" / "constrained.yaml"
CHARTS = ("chart-response", "chart-marginal", "chart-frontier", "chart-moved", "chart-waterfall")
CHROMIUM = next((p for p in (os.environ.get("ALLOCATOR_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser",
                             shutil.which("chromium") or "") if p and Path(p).is_file()), None)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def run_cli(monkeypatch, *argv: str) -> int:
    """``allocator ARGV`` with the finance commands registered (until COMMAND_MODULES lists them)."""
    extra = [m for m in ("report_cmd", "compare_cmd") if m not in cli.COMMAND_MODULES]
    monkeypatch.setattr(cli, "COMMAND_MODULES", [*cli.COMMAND_MODULES, *extra])
    return cli.main(list(argv))


@pytest.fixture(scope="module")
def example():
    return allocator.plan(EXAMPLE)


@pytest.fixture(scope="module")
def example_html(example, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(plan_report(example, load_scenario(EXAMPLE)), encoding="utf-8")
    return path


def test_report_is_one_offline_file_with_every_chart(example_html):
    text = example_html.read_text(encoding="utf-8")
    # no script or stylesheet is fetched (the browser test also checks that no request leaves the file)
    assert not re.search(r"<script[^>]+src=", text) and "<link" not in text
    assert text.count("Plotly.newPlot") >= len(CHARTS)
    for div in CHARTS:
        assert f'id="{div}"' in text
    assert "chart-distribution" not in text        # no samples in the example: no distribution chart


def test_chart_numbers_are_the_plans(example):
    fig, cells = response_curves(example)
    planned = {tr.meta["index"]: tr.x[0] for tr in fig.data if tr.meta["kind"] == "planned"}
    assert sorted(planned) == cells == list(range(example.problem.n))
    assert np.array_equal([planned[i] for i in cells], example.spend)
    current = {tr.meta["index"]: tr.x[0] for tr in fig.data if tr.meta["kind"] == "current"}
    assert np.array_equal([current[i] for i in sorted(current)], example.table["current_spend"].dropna())
    bars, req = marginal_vs_required(example).data
    assert np.allclose(bars.y, example.table["marginal_return"], rtol=0, atol=0)
    assert np.allclose(req.y, example.table["required_return"], rtol=0, atol=0)


def test_frontier_marks_the_budget_and_where_it_stops_binding(example):
    fr, stops = frontier_for(example)
    t = fr.table.set_index("budget")
    s = example.summary
    assert t.loc[s.budget, "net_value"] == pytest.approx(s.net_value, rel=1e-12)
    # independent truth: the plan with no budget cap spends exactly where the budget stops binding
    free = allocator.make_plan(dataclasses.replace(example.problem, budget=None))
    assert stops == pytest.approx(free.summary.total_spend, rel=1e-12)
    assert free.summary.marginal_return == pytest.approx(1.0, abs=1e-9)
    assert t.loc[stops, "net_value"] == pytest.approx(free.summary.net_value, rel=1e-9)


def test_value_distribution_only_where_samples_exist(tmp_path):
    path = ROOT / "scenarios" / "example_uncertainty.yaml"
    sc = load_scenario(path)
    text = plan_report(allocator.plan(sc), sc, frontier=None)
    assert 'id="chart-distribution"' in text and 'id="chart-frontier"' not in text


def test_report_and_plan_html_commands(monkeypatch, tmp_path):
    assert run_cli(monkeypatch, "report", str(EXAMPLE), "--out", str(tmp_path / "r"), "--quiet") == 0
    assert (tmp_path / "r" / "report.html").stat().st_size > 1_000_000    # plotly.js inlined
    assert run_cli(monkeypatch, "plan", str(EXAMPLE), "--out", str(tmp_path / "p"), "--quiet", "--html",
                   "--xlsx") == 0
    assert {p.name for p in (tmp_path / "p").iterdir()} == {"plan.csv", "summary.json", "plan.xlsx", "report.html"}


def test_compare_numbers_are_each_plans(monkeypatch, tmp_path, capsys):
    assert run_cli(monkeypatch, "compare", str(EXAMPLE), str(CONSTRAINED), "--out", str(tmp_path), "--html") == 0
    out = capsys.readouterr().out
    import pandas as pd

    table = pd.read_csv(tmp_path / "compare.csv").set_index("item")
    plans = {"example": allocator.plan(EXAMPLE), "constrained": allocator.plan(CONSTRAINED)}
    for name, plan in plans.items():
        t = rounded_table(plan)
        assert float(table.loc["net value", name]) == pytest.approx(float(t["net_value"].sum()), abs=1e-6)
        assert float(table.loc["total spend", name]) == pytest.approx(float(t["spend"].sum()), abs=1e-6)
        for task, spend in t.groupby("task")["spend"].sum().items():
            assert float(table.loc[f"spend on task {task}", name]) == pytest.approx(spend, abs=1e-6)
    # the cell listed first differs most: its spread is the largest over every cell, computed here
    a, b = (rounded_table(p).set_index(["segment", "task"])["spend"] for p in plans.values())
    spread = (a - b).abs()
    first = out.split("cells whose spend differs most")[1].splitlines()[4].split()
    assert tuple(first[:2]) == spread.idxmax()
    assert float(first[-1].replace(",", "")) == pytest.approx(spread.max(), abs=1e-6)
    assert (tmp_path / "compare.xlsx").is_file() and (tmp_path / "report.html").is_file()


# ------------------------------------------------------------------ a real browser

def _browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium found (/usr/bin/chromium; CI installs it with apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed "
                                                                 "(pip install -e '.[test]')")
    return sync_api


def _open(page, path: Path, charts: int):
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    page.on("request", lambda r: None if r.url.startswith(("file:", "data:", "blob:", "about:"))
            else errors.append(f"request leaves the file: {r.url}"))
    page.goto(path.as_uri())
    page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot').length >= {charts}", timeout=60_000)
    return errors


def test_report_renders_in_headless_chromium(example, example_html, monkeypatch, tmp_path):
    sync_api = _browser()
    shots = ROOT / "out" / "report-screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    assert run_cli(monkeypatch, "compare", str(EXAMPLE), str(CONSTRAINED), "--out", str(tmp_path), "--html",
                   "--quiet") == 0
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors = _open(page, example_html, len(CHARTS))
            drawn = page.evaluate("""() => Object.fromEntries(Array.from(document.querySelectorAll('.js-plotly-plot'))
                .map(d => [d.id, {traces: d.data.length, svg: d.querySelectorAll('svg.main-svg').length,
                                  data: d.data.map(t => ({meta: t.meta, x: t.x, y: t.y}))}]))""")
            assert set(CHARTS) <= set(drawn)
            for div in CHARTS:
                assert drawn[div]["traces"] >= 1 and drawn[div]["svg"] >= 1, div
            # the numbers the browser drew are the plan's
            planned = {t["meta"]["index"]: t["x"][0] for t in drawn["chart-response"]["data"]
                       if t["meta"]["kind"] == "planned"}
            assert np.allclose([planned[i] for i in range(example.problem.n)], example.spend, rtol=1e-15, atol=0)
            bars = next(t for t in drawn["chart-marginal"]["data"] if t["meta"]["kind"] == "marginal")
            assert np.allclose(bars["y"], example.table["marginal_return"], rtol=1e-15, atol=0)
            star = next(t for t in drawn["chart-frontier"]["data"] if t["meta"]["kind"] == "current_budget")
            assert star["x"] == [example.summary.budget]
            assert star["y"][0] == pytest.approx(example.summary.net_value, rel=1e-12)
            moved = drawn["chart-moved"]["data"][0]
            assert sum(moved["x"]) == pytest.approx(float(example.table["spend_change"].sum()), abs=1e-6)
            table_total = page.evaluate("""() => Array.from(document.querySelectorAll('#table-plan tbody tr'))
                .length""")
            assert table_total == example.problem.n
            page.screenshot(path=str(shots / "example.png"), full_page=True)
            assert not errors, errors

            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors = _open(page, tmp_path / "report.html", 3)
            net = page.evaluate("() => document.getElementById('chart-compare-net').data[0].y")
            want = [float(rounded_table(allocator.plan(p))["net_value"].sum()) for p in (EXAMPLE, CONSTRAINED)]
            assert np.allclose(net, want, rtol=0, atol=1e-6)
            page.screenshot(path=str(shots / "compare.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    assert (shots / "example.png").stat().st_size > 10_000


def test_frontier_report_and_sweep_workbook(tmp_path):
    """The files ``frontier --html/--xlsx`` and ``sweep --xlsx`` will write (their commands are wired elsewhere)."""
    import io

    from openpyxl import load_workbook

    from allocator.report import frontier_report
    from allocator.workbook import sweep_workbook

    fr = allocator.budget_frontier(EXAMPLE, 1_000_000, 2_000_000, points=11)
    text = frontier_report(fr, "USD", 1_500_000)
    assert 'id="chart-frontier"' in text and text.count("<tr>") == len(fr.table) + len(fr.events) + 2
    sweep = allocator.Sweep(EXAMPLE, grid={"budget.total": [1_000_000.0, 1_500_000.0]})
    res = allocator.run_sweep(sweep, tmp_path / "sweep", executor="serial", progress=False)
    wb = load_workbook(io.BytesIO(sweep_workbook(res, "USD")))
    rows = list(wb["Summary"].iter_rows(values_only=True))
    assert list(rows[0]) == list(res.summary.columns) and len(rows) == len(res.summary) + 1
    col = list(res.summary.columns).index("net_value")
    assert [r[col] for r in rows[1:]] == pytest.approx(list(res.summary["net_value"]), rel=1e-15)
