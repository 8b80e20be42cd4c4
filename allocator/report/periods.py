"""The one-file HTML report of a multi-period plan (:mod:`allocator.dynamic`): ``plan --html``.

Headline (customer equity, spend, budget and its price), the by-period flows chart (members per
state per period), spend and the budget's shadow price per period, then the tables: by period,
the plan (plan.csv's columns, money rounded by largest remainder) and the flows (flows.csv).
"""

from __future__ import annotations

import html
from typing import Any

from ..rounding import minor_unit
from ..workbook.period_book import by_period_table, rounded_period_table
from . import charts
from .page import _chart, _fmt_money, _formats, _kpis, html_table, page


def period_plan_body(plan, meta: dict[str, Any] | None = None) -> list[str]:
    """The sections of a multi-period plan's report as HTML fragments."""
    s = plan.summary
    cur = s["currency"] or ""
    d = minor_unit(s["currency"])
    table = rounded_period_table(plan, d)
    periods = by_period_table(plan, d)
    budget = (s.get("budget") or {}).get("total")
    total_price = next((r["shadow_price"] for r in s.get("budget_rows", []) if r["name"] == "budget.total"), None)
    kpis = [("customer equity " + cur, f"{s['customer_equity']:,.{d}f}"),
            ("total spend " + cur, f"{float(periods['spend'].sum()) if len(periods) else 0.0:,.{d}f}"),
            ("total budget " + cur, "none" if budget is None else f"{budget:,.{d}f}"),
            ("budget's price (equity per extra " + (cur or "unit") + ")",
             "0 (slack)" if not s.get("budget_binds") or total_price is None else f"{total_price:.4f}"),
            ("periods", str(s["periods"]))]
    body = [f"<h1>Multi-period plan for scenario {html.escape(str(s['scenario']))}</h1>",
            f'<p class="note">{html.escape(str(s["solver"]))} solver, status {html.escape(str(s["status"]))}, '
            f"optimality gap {s['optimality_gap']:.2e}"
            + (f", scenario hash {html.escape(meta['scenario_hash'])}" if meta and meta.get("scenario_hash")
               else "") + "</p>", _kpis(kpis)]
    body += ["<h2>Members by state and period</h2>",
             '<p class="note">Members at the start of each period, summed over segments (flows.csv).</p>',
             _chart(charts.period_flows(plan.flows), "chart-flows"),
             "<h2>Spend and shadow price by period</h2>",
             '<p class="note">Spend per period (nominal) and the budget\'s shadow price: the customer equity '
             "one more unit of that period's budget would add.</p>",
             _chart(charts.period_spend(s["by_period"], s["currency"]), "chart-period-spend")]
    fmts = {**_formats(d), "budget": lambda v: _fmt_money(v, d), "margin": lambda v: _fmt_money(v, d),
            "one_off_value": lambda v: _fmt_money(v, d), "budget_shadow_price": "{:.4f}".format,
            "discount_factor": "{:.4f}".format, "spend_per_treated": "{:,.2f}".format,
            "share_treated": "{:.1%}".format}
    members = "{:,.2f}".format
    body += ["<h2>By period</h2>",
             html_table(periods, {**fmts, **{c: members for c in periods.columns if c.startswith("members_")}},
                        "table-periods"),
             "<h2>Plan</h2>", '<p class="note">Money rounded to the minor unit by largest remainder: spend adds '
             "up to the total; plan.csv keeps the raw values.</p>", html_table(table, fmts, "table-plan"),
             "<h2>Flows</h2>",
             html_table(plan.flows, {c: members for c in plan.flows.columns if c not in ("period", "segment",
                                                                                          "state")}, "table-flows")]
    return body


def period_plan_report(plan, meta: dict[str, Any] | None = None) -> str:
    """The one-file HTML report of a multi-period plan (a string; write it with :func:`allocator.io.write_unit`)."""
    return page(f"allocator plan: {plan.summary['scenario']}", period_plan_body(plan, meta))


__all__ = ["period_plan_body", "period_plan_report"]
