"""One self-contained HTML page per plan (or comparison): headline, charts, then the tables.

plotly's JavaScript is inlined once in the page head, so the file opens offline (no CDN); each
chart is a ``<div id="chart-...">`` followed by the call that draws it. Money in the tables is
rounded by largest remainder (:mod:`allocator.rounding`), so the columns add up to the totals.
"""

from __future__ import annotations

import dataclasses
import html
import logging
from typing import Any

import numpy as np
import pandas as pd
import plotly.io as pio
from plotly.offline import get_plotlyjs

from ..rounding import minor_unit, rounded_table
from . import charts

logger = logging.getLogger(__name__)

STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;color:#222}
h1{font-size:1.6em;margin-bottom:.2em} h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.headline{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.kpi{background:#f4f6fa;border-radius:6px;padding:10px 14px;min-width:170px}
.kpi .v{font-size:1.35em;font-weight:600} .kpi .l{color:#555;font-size:.85em}
table.data{border-collapse:collapse;font-size:.85em;margin:8px 0}
table.data th,table.data td{border-bottom:1px solid #e4e4e4;padding:3px 8px}
table.data th{background:#eef1f6;text-align:left} table.data td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#666;font-size:.85em} ul.lines{font-size:.9em}
"""


def _fmt_money(v: Any, d: int) -> str:
    return "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:,.{d}f}"


def html_table(df: pd.DataFrame, formats: dict[str, Any], table_id: str) -> str:
    """A plain HTML table: formatted numbers right-aligned, blank for missing and unbounded values."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for rec in df.itertuples(index=False, name=None):
        cells = []
        for c, v in zip(df.columns, rec):
            f = formats.get(c)
            if isinstance(v, (float, np.floating)) and not np.isfinite(v):
                text, num = "", True
            elif isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)):
                text, num = (f(v) if f is not None else f"{v:,.2f}" if abs(v) >= 1000 else f"{v:.6g}"), True
            else:
                text, num = ("" if v is None else str(v)), False
            cells.append(f'<td class="num">{html.escape(text)}</td>' if num else f"<td>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="data" id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _formats(d: int) -> dict[str, Any]:
    money = lambda v: _fmt_money(v, d)  # noqa: E731
    ret = "{:.4f}".format
    return {"pool": "{:,.0f}".format, "spend": money, "current_spend": money, "spend_change": money,
            "expected_value": money, "net_value": money, "activation_cost": money, "value_change": money,
            "current_expected_value": money, "spend_per_member": "{:,.2f}".format, "response_rate": "{:.2%}".format,
            "expected_successes": "{:,.1f}".format, "marginal_return": ret, "required_return": ret,
            "current_marginal_return": ret, "min_spend": money, "max_spend": money,
            "value_per_success": "{:,.2f}".format, "shadow_price": ret, "spend_share": "{:.1%}".format,
            "activity": "{:,.2f}".format, "bound": None}


def _chart(fig, div_id: str) -> str:
    return pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def _kpis(items: list[tuple[str, str]]) -> str:
    return '<div class="headline">' + "".join(
        f'<div class="kpi"><div class="v">{html.escape(v)}</div><div class="l">{html.escape(k)}</div></div>'
        for k, v in items) + "</div>"


def page(title: str, body: list[str]) -> str:
    """The complete HTML document: plotly.js inlined in the head, so nothing is fetched."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style>"
            f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def frontier_for(plan, points: int = 41):
    """The budget frontier around the plan's budget, and the budget at which the budget stops binding.

    The range runs from the cells' minimum spend to past the spend of the plan without a budget
    cap (the budget where it stops binding), capped at three times the budget. Returns
    ``(None, None)`` when the problem has no budget or the frontier cannot be computed.
    """
    from ..analysis.frontier import budget_frontier, path_supported
    from ..errors import AllocatorError
    from ..solvers import solve

    p = plan.problem
    if p.budget is None:
        return None, None
    try:
        free = solve(dataclasses.replace(p, budget=None, use_all=False), plan.summary.solver)
        stops = float(free.spend.sum())
    except AllocatorError as exc:  # e.g. a target objective needs its budget; then mark nothing
        logger.info("report: no unconstrained plan (%s)", exc)
        stops = None
    floor = float(p.lower.sum())
    top = max(p.budget * 1.25, (stops or 0.0) * 1.1)
    top = min(top, 3 * p.budget) if p.budget > 0 else top
    if path_supported(p) is not None:
        points = min(points, 11)   # every budget is a full solve: keep the page quick
    fr = None
    # rules such as a group's minimum spend make small budgets infeasible: start higher until it holds
    for start in (floor, 0.5 * p.budget, 0.8 * p.budget, p.budget):
        if start < floor:
            continue
        budgets = np.unique(np.concatenate([np.linspace(start, top, points), [p.budget],
                                            [stops] if stops is not None and start <= stops <= top else []]))
        try:
            fr = budget_frontier(p, start, top, budgets=budgets)
            break
        except AllocatorError as exc:
            logger.info("report: no frontier from %s (%s)", f"{start:,.0f}", exc)
    if fr is None:
        return None, stops
    return fr, (stops if stops is not None and stops <= top else None)


def base_net_by_cell(plan) -> np.ndarray:
    """Each cell's net value at the baseline spend (value - spend - activation cost)."""
    from ..analysis.baseline import baseline_spend
    from ..money import activation_per_cell

    p = plan.problem
    b = baseline_spend(p)
    return p.expected_value(b) - b - activation_per_cell(p, b)


def plan_body(plan, scenario=None, frontier: Any = "auto", meta: dict[str, Any] | None = None) -> list[str]:
    """The sections of a plan's report (headline, charts, tables) as HTML fragments."""
    from ..explain import headline

    s = plan.summary
    cur = s.currency or ""
    d = minor_unit(s.currency)
    t = rounded_table(plan, d)
    spend_total = float(t["spend"].sum())
    kpis = [("net value " + cur, f"{float(t['net_value'].sum()):,.{d}f}"),
            ("total spend " + cur, f"{spend_total:,.{d}f}"),
            ("budget " + cur, "none" if s.budget is None else f"{s.budget:,.{d}f}"),
            ("budget's price (net value per extra " + (cur or "unit") + ")",
             f"{s.budget_shadow_price:.4f}" if s.budget_binds else "0 (slack)"),
            ("common marginal return", f"{s.marginal_return:.4f}")]
    if s.baseline:
        kpis.insert(1, ("gain over baseline " + cur, f"{s.baseline['net_value_gained']:,.{d}f}"))
    lines = headline(plan.problem, plan.report.decomposition, s)
    lines += [f"binding: {b['rule']}" + ("" if b.get("shadow_price") is None else
                                          f" (shadow price {b['shadow_price']:.4f} per {cur or 'unit'})")
              for b in s.binding_constraints
              if b["kind"] not in ("unit", "activation", "min_spend", "max_spend", "min_active")
              and b["name"] != "budget.total"]
    body = [f"<h1>Plan for scenario {html.escape(s.scenario)}</h1>",
            f'<p class="note">{html.escape(s.solver)} solver, status {html.escape(s.status)}, optimality gap '
            f"{s.optimality_gap:.2e}" + (f", scenario hash {html.escape(meta['scenario_hash'])}"
                                          if meta and meta.get("scenario_hash") else "") + "</p>",
            _kpis(kpis), '<ul class="lines">' + "".join(f"<li>{html.escape(x)}</li>" for x in lines) + "</ul>"]
    fig, drawn = charts.response_curves(plan)
    body += ["<h2>Response curves</h2>",
             f'<p class="note">Planned point (circle) and today\'s spend (diamond) on each cell\'s curve'
             + (f"; the {len(drawn)} cells with the most spend of {plan.problem.n}" if len(drawn) < plan.problem.n
                else "") + ".</p>", _chart(fig, "chart-response")]
    body += ["<h2>Marginal against required return</h2>",
             '<p class="note">A funded cell strictly inside its bounds earns exactly its required return; a cell '
             "below it is priced out (spends its minimum); above it, a cap holds it back.</p>",
             _chart(charts.marginal_vs_required(plan), "chart-marginal")]
    if isinstance(frontier, str) and frontier == "auto":
        frontier, stops = frontier_for(plan)
    else:
        stops = None
    if frontier is not None:
        body += ["<h2>Budget frontier</h2>",
                 '<p class="note">Optimal net value for each budget; the star is the current budget'
                 + (f"; beyond {stops:,.0f} {cur} more budget adds nothing (the budget stops binding)"
                    if stops is not None else "") + ".</p>",
                 _chart(charts.frontier_chart(frontier, stops, s.currency, s.budget, s.net_value),
                        "chart-frontier")]
    moved = charts.money_moved(plan)
    if moved is not None:
        body += ["<h2>Where the money moved</h2>", _chart(moved, "chart-moved"),
                 _chart(charts.net_value_waterfall(plan, base_net_by_cell(plan)), "chart-waterfall")]
    dist = _distribution(plan, scenario)
    if dist is not None:
        body += ["<h2>Value distribution</h2>", _chart(dist, "chart-distribution")]
    fmts = _formats(d)
    from ..workbook.plan_book import _group, binding_table

    body += ["<h2>Plan</h2>", '<p class="note">Money rounded to the minor unit by largest remainder: each '
             "column adds up to its total; plan.csv keeps the raw values.</p>",
             html_table(t, fmts, "table-plan"),
             "<h2>By task</h2>", html_table(_group(t, "task", d), fmts, "table-task"),
             "<h2>By segment</h2>", html_table(_group(t, "segment", d), fmts, "table-segment")]
    bt = binding_table(plan)
    if len(bt):
        body += ["<h2>Binding rules</h2>", html_table(bt, fmts, "table-binding")]
    return body


def _distribution(plan, scenario):
    """A histogram of the plan's net value across the scenario's parameter samples, when it has any."""
    if scenario is None or (getattr(scenario, "samples", None) is None and getattr(scenario, "uncertainty", None)
                            is None):
        return None
    from ..analysis.evaluation import evaluate_plan
    from ..analysis.samples import draw_samples
    from ..errors import AllocatorError

    try:
        samples = draw_samples(scenario)
        risk = evaluate_plan(plan.problem, plan.spend, samples)
    except AllocatorError as exc:
        logger.info("report: no value distribution (%s)", exc)
        return None
    return charts.value_distribution(risk.net, plan.summary.net_value, samples.method)


def plan_report(plan, scenario=None, meta: dict[str, Any] | None = None, frontier: Any = "auto") -> str:
    """The one-file HTML report of ``plan`` (a string; write it with :func:`allocator.io.atomic_write`).

    Parameters
    ----------
    plan : Plan
    scenario : Scenario, optional
        Adds the value distribution when the scenario carries parameter samples or distributions.
    meta : dict, optional
        ``scenario_hash`` shown under the title.
    frontier : Frontier, None or "auto"
        ``"auto"`` computes one around the plan's budget; ``None`` leaves the chart out.
    """
    return page(f"allocator plan: {plan.summary.scenario}", plan_body(plan, scenario, frontier, meta))


def frontier_report(frontier, currency: str | None = None, budget: float | None = None) -> str:
    """One-file HTML report of a budget frontier (``allocator frontier --html``): the chart and its table.

    ``budget`` (the scenario's own) is marked; the budget where it stops binding is the first
    budget of the table at which it is slack, where there is one.
    """
    t = frontier.table
    slack = t.loc[~t["budget_binds"].astype(bool), "total_spend"]
    stops = float(slack.iloc[0]) if len(slack) else None
    d = minor_unit(currency)
    fmts = {**_formats(d), **{c: (lambda v: _fmt_money(v, d)) for c in t.columns
                              if c.startswith(("spend_", "value_")) or c in ("budget", "total_value", "total_spend",
                                                                             "baseline_net_value", "net_value_gained")}}
    body = [f"<h1>Budget frontier of {html.escape(frontier.problem.name)}</h1>",
            f'<p class="note">{len(t)} budgets by {html.escape(frontier.method)}.</p>',
            _chart(charts.frontier_chart(frontier, stops, currency, budget), "chart-frontier"),
            "<h2>Frontier</h2>", html_table(t, fmts, "table-frontier")]
    if len(frontier.events):
        body += ["<h2>Events</h2>", html_table(frontier.events, fmts, "table-events")]
    return page(f"allocator frontier: {frontier.problem.name}", body)
