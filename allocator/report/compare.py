"""Plans side by side: one table of what differs between scenarios, and its report.

:func:`compare_plans` builds the table (net value, spend by task and segment, required returns,
what binds) and the cells whose spend differs most; the terminal, the workbook
(:func:`allocator.workbook.comparison_workbook`) and the report (:func:`comparison_report`) show
the same objects.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..rounding import minor_unit, rounded_table


@dataclass
class Comparison:
    """Plans compared side by side.

    Attributes
    ----------
    names : list of str
        Column label of each plan (the scenario name; the file name where two names clash).
    plans : list of Plan
    table : pandas.DataFrame
        ``item``, ``unit``, then one column per plan; money rounded to the minor unit.
    differing : pandas.DataFrame
        ``segment``, ``task``, one spend column per plan (blank where the plan lacks the cell) and
        ``spread`` (largest minus smallest spend), the largest spreads first.
    currency : str or None
    """

    names: list[str]
    plans: list
    table: pd.DataFrame
    differing: pd.DataFrame
    currency: str | None


def _binding_names(plan) -> str:
    names = [b["name"] for b in plan.summary.binding_constraints
             if b["kind"] not in ("unit", "activation", "min_spend", "max_spend")]
    return ", ".join(names) or "nothing"


def compare_plans(plans: list, names: list[str], top: int = 10) -> Comparison:
    """The side-by-side table of ``plans`` (labelled ``names``) and the ``top`` cells whose spend differs most."""
    currencies = {p.summary.currency for p in plans}
    cur = currencies.pop() if len(currencies) == 1 else None
    d = max(minor_unit(p.summary.currency) for p in plans)
    tables = [rounded_table(p, d) for p in plans]
    unit = cur or "currency"
    rows: list[tuple[str, str, list]] = [
        ("status", "", [p.summary.status for p in plans]),
        ("net value", unit, [float(t["net_value"].sum()) for t in tables]),
        ("total value", unit, [float(t["expected_value"].sum()) for t in tables]),
        ("total spend", unit, [float(t["spend"].sum()) for t in tables]),
        ("activation cost", unit, [float(t["activation_cost"].sum()) for t in tables]),
        ("budget", unit, [p.summary.budget for p in plans]),
        ("gain over baseline", unit, [p.summary.baseline["net_value_gained"] if p.summary.baseline else None
                                      for p in plans]),
        ("common marginal return", "per unit", [p.summary.marginal_return for p in plans]),
        ("budget shadow price", "per unit", [p.summary.budget_shadow_price for p in plans]),
        ("required return, lowest", "per unit", [float(np.nanmin(p.table["required_return"])) for p in plans]),
        ("required return, highest", "per unit", [float(np.nanmax(p.table["required_return"])) for p in plans]),
    ]
    for key, label in (("task", "spend on task"), ("segment", "spend on segment")):
        keys = list(dict.fromkeys(k for t in tables for k in t[key]))
        for k in keys:
            rows.append((f"{label} {k}", unit, [round(float(t.loc[t[key] == k, "spend"].sum()), d)
                                                if (t[key] == k).any() else None for t in tables]))
    rows.append(("binds", "", [_binding_names(p) for p in plans]))
    rows.append(("solver", "", [p.summary.solver for p in plans]))
    table = pd.DataFrame([{"item": item, "unit": u, **dict(zip(names, vals))} for item, u, vals in rows])
    cells = None
    for name, t in zip(names, tables):
        one = t[["segment", "task", "spend"]].rename(columns={"spend": name})
        cells = one if cells is None else cells.merge(one, on=["segment", "task"], how="outer", sort=False)
    spends = cells[names].to_numpy(float)
    filled = np.where(np.isnan(spends), 0.0, spends)  # a cell a scenario lacks spends nothing there
    cells["spread"] = np.round(filled.max(axis=1) - filled.min(axis=1), d)
    differing = cells.sort_values("spread", ascending=False, kind="stable").head(top).reset_index(drop=True)
    return Comparison(names=names, plans=plans, table=table, differing=differing, currency=cur)


def comparison_report(comp: Comparison) -> str:
    """One-file HTML report of a comparison: net value, spend by task, the cells that differ, the tables."""
    from . import require_plotly

    require_plotly()
    import plotly.graph_objects as go

    from .charts import _layout
    from .page import _chart, html_table, page

    d = max(minor_unit(p.summary.currency) for p in comp.plans)
    money = lambda v: f"{v:,.{d}f}"  # noqa: E731
    cur = comp.currency or "currency"
    net = go.Figure(go.Bar(x=comp.names, y=[float(rounded_table(p, d)["net_value"].sum()) for p in comp.plans],
                           meta={"kind": "net_value"}, hovertemplate="%{x}<br>net value %{y:,.2f}<extra></extra>"))
    by_task = go.Figure()
    for name, p in zip(comp.names, comp.plans):
        g = rounded_table(p, d).groupby("task", sort=False)["spend"].sum()
        by_task.add_trace(go.Bar(x=list(g.index), y=list(g.values), name=name, meta={"kind": "task_spend"}))
    by_task.update_layout(barmode="group")
    diff = go.Figure()
    labels = [f"{s} · {k}" for s, k in zip(comp.differing["segment"], comp.differing["task"])]
    for name in comp.names:
        diff.add_trace(go.Bar(y=labels, x=comp.differing[name].fillna(0.0), name=name, orientation="h",
                              meta={"kind": "cell_spend"}))
    diff.update_layout(barmode="group")
    fmts = {n: (lambda v: f"{v:,.{d}f}" if abs(v) >= 10 else f"{v:.4f}") for n in comp.names}
    body = [f"<h1>Comparison of {html.escape(', '.join(comp.names))}</h1>",
            _chart(_layout(net, f"Net value ({cur})", 360), "chart-compare-net"),
            _chart(_layout(by_task, f"Spend by task ({cur})", 380), "chart-compare-task"),
            _chart(_layout(diff, f"Cells whose spend differs most ({cur})", max(360, 40 * len(labels) + 120)),
                   "chart-compare-cells"),
            "<h2>Side by side</h2>", html_table(comp.table, fmts, "table-compare"),
            "<h2>Cells whose spend differs most</h2>",
            html_table(comp.differing, {**{n: money for n in comp.names}, "spread": money}, "table-differing")]
    return page("allocator compare: " + ", ".join(comp.names), body)
