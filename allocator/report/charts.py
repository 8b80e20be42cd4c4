"""The report's charts, one function per chart, each returning a plotly figure built from a plan.

Every trace carries the plan's own numbers (spend, marginal and required returns, the frontier's
net values) and a ``meta`` label, so a test reading the figure back in the browser can check the
chart against the plan. Nothing here formats text for the page; :mod:`.page` does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

PLANNED, CURRENT, REQUIRED = "#1f77b4", "#ff7f0e", "#d62728"
UP, DOWN = "#2ca02c", "#d62728"
MAX_CURVE_CELLS = 48
"""Response curves drawn at most (the cells with the most spend, planned or current, first)."""


def _label(seg: str, task: str) -> str:
    return f"{seg} · {task}"


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(title=title, height=height, template="plotly_white", margin=dict(l=60, r=30, t=60, b=40),
                      separators=".,", legend=dict(orientation="h", y=-0.15))
    # no scientific notation on any axis: thousands separators, plain decimals
    fig.update_xaxes(exponentformat="none", separatethousands=True)
    fig.update_yaxes(exponentformat="none", separatethousands=True)
    return fig


def response_curves(plan, points: int = 60) -> tuple[go.Figure, list[int]]:
    """Per cell, its response rate against total spend, with the planned and the current point marked.

    Returns the figure and the indices of the cells drawn.
    """
    p = plan.problem
    spend = plan.spend
    cur = p.current_spend
    cur_or0 = np.where(np.isnan(cur), 0.0, cur)
    weight = np.maximum(spend, cur_or0)
    cells = [int(i) for i in np.argsort(-weight, kind="stable")[:MAX_CURVE_CELLS]]
    cells.sort()
    top = np.maximum.reduce([1.6 * spend, 1.3 * cur_or0, 1.2 * p.lower])
    fallback = (p.budget or float(spend.sum()) or 1.0) / max(p.n, 1)
    top = np.where(top > 0, top, fallback)
    finite_cap = np.where(np.isfinite(p.upper) & (p.upper > 0), np.maximum(p.upper * 1.05, 1e-9), np.inf)
    top = np.minimum(top, np.maximum(finite_cap, 1.05 * np.maximum(spend, cur_or0)))
    grid = np.linspace(0.0, 1.0, points)[:, None] * top[None, :]
    rates = np.vstack([p.response(g) for g in grid])             # points x cells
    planned_rate = p.response(spend)
    current_rate = p.response(cur_or0)
    ncols = 4
    nrows = max(1, -(-len(cells) // ncols))
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=[_label(p.segment[i], p.task[i]) for i in cells],
                        vertical_spacing=min(0.08, 0.35 / nrows), horizontal_spacing=0.06)
    for k, i in enumerate(cells):
        r, c = divmod(k, ncols)
        cell = _label(p.segment[i], p.task[i])
        first = k == 0
        fig.add_trace(go.Scatter(x=grid[:, i], y=rates[:, i] * 100, mode="lines", line=dict(color="#888"),
                                 name="response curve", legendgroup="curve", showlegend=first,
                                 meta={"kind": "curve", "cell": cell},
                                 hovertemplate="spend %{x:,.0f}<br>response %{y:.2f}%<extra></extra>"),
                      row=r + 1, col=c + 1)
        fig.add_trace(go.Scatter(x=[float(spend[i])], y=[float(planned_rate[i]) * 100], mode="markers",
                                 marker=dict(color=PLANNED, size=9), name="planned", legendgroup="planned",
                                 showlegend=first, meta={"kind": "planned", "cell": cell, "index": i},
                                 hovertemplate="planned %{x:,.2f}<br>response %{y:.2f}%<extra></extra>"),
                      row=r + 1, col=c + 1)
        if not np.isnan(cur[i]):
            fig.add_trace(go.Scatter(x=[float(cur[i])], y=[float(current_rate[i]) * 100], mode="markers",
                                     marker=dict(color=CURRENT, size=9, symbol="diamond"), name="current",
                                     legendgroup="current", showlegend=first,
                                     meta={"kind": "current", "cell": cell, "index": i},
                                     hovertemplate="current %{x:,.2f}<br>response %{y:.2f}%<extra></extra>"),
                          row=r + 1, col=c + 1)
    fig = _layout(fig, f"Response curves: response rate (%) against spend ({plan.summary.currency or 'currency'})",
                  height=230 * nrows + 80)
    fig.update_annotations(font_size=11)
    return fig, cells


def marginal_vs_required(plan) -> go.Figure:
    """Each cell's marginal return (bars) against the return its binding rules require (markers)."""
    t = plan.table
    labels = [_label(s, k) for s, k in zip(t["segment"], t["task"])]
    marg = [float(v) if np.isfinite(v) else None for v in t["marginal_return"]]
    req = [float(v) if np.isfinite(v) else None for v in t["required_return"]]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=labels, y=marg, name="marginal return", marker_color=PLANNED,
                         meta={"kind": "marginal"}, customdata=list(t["bound"]),
                         hovertemplate="%{x}<br>marginal return %{y:.4f}<br>bound %{customdata}<extra></extra>"))
    fig.add_trace(go.Scatter(x=labels, y=req, mode="markers", name="required return",
                             marker=dict(color=REQUIRED, symbol="line-ew-open", size=22, line=dict(width=3)),
                             meta={"kind": "required"},
                             hovertemplate="%{x}<br>required return %{y:.4f}<extra></extra>"))
    fig = _layout(fig, "Marginal return of each cell against the return it is required to earn", height=480)
    fig.update_xaxes(tickangle=-45)
    fig.update_layout(legend=dict(orientation="h", y=1.02, yanchor="bottom", x=1, xanchor="right"))
    return fig


def frontier_chart(frontier, stops_binding: float | None, currency: str | None = None, budget: float | None = None,
                   budget_net: float | None = None) -> go.Figure:
    """Net value over the budget range, the current budget and the budget where it stops binding marked."""
    t = frontier.table
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=t["budget"], y=t["net_value"], mode="lines+markers", name="net value",
                             marker=dict(size=4), meta={"kind": "frontier"},
                             hovertemplate="budget %{x:,.0f}<br>net value %{y:,.0f}<extra></extra>"),
                  secondary_y=False)
    fig.add_trace(go.Scatter(x=t["budget"], y=t["marginal_return"], mode="lines", name="common marginal return",
                             line=dict(dash="dot", color="#888"), meta={"kind": "frontier_return"},
                             hovertemplate="budget %{x:,.0f}<br>marginal return %{y:.4f}<extra></extra>"),
                  secondary_y=True)
    if budget is not None:
        if budget_net is None:
            budget_net = float(np.interp(budget, t["budget"], t["net_value"]))
        fig.add_trace(go.Scatter(x=[budget], y=[budget_net], mode="markers+text", name="current budget",
                                 marker=dict(color=PLANNED, size=13, symbol="star"), text=["current budget"],
                                 textposition="top left", meta={"kind": "current_budget"},
                                 hovertemplate="budget %{x:,.0f}<br>net value %{y:,.0f}<extra></extra>"),
                      secondary_y=False)
        fig.add_vline(x=budget, line=dict(color=PLANNED, dash="dash"))
    if stops_binding is not None:
        y = float(np.interp(stops_binding, t["budget"], t["net_value"]))
        fig.add_trace(go.Scatter(x=[stops_binding], y=[y], mode="markers+text", name="budget stops binding",
                                 marker=dict(color=UP, size=12, symbol="diamond"), text=["stops binding"],
                                 textposition="bottom right", meta={"kind": "stops_binding"},
                                 hovertemplate="budget %{x:,.0f}<br>net value %{y:,.0f}<extra></extra>"),
                      secondary_y=False)
        fig.add_vline(x=stops_binding, line=dict(color=UP, dash="dot"))
    fig = _layout(fig, f"Budget frontier: optimal net value by budget ({currency or 'currency'})")
    fig.update_yaxes(title_text="net value", secondary_y=False)
    fig.update_yaxes(title_text="marginal return", secondary_y=True)
    return fig


def money_moved(plan) -> go.Figure | None:
    """Diverging bars: spend moved into (right) and out of (left) each cell relative to the baseline."""
    t = plan.table
    if "spend_change" not in t:
        return None
    order = t.sort_values("spend_change")
    labels = [_label(s, k) for s, k in zip(order["segment"], order["task"])]
    change = [float(v) for v in order["spend_change"]]
    fig = go.Figure(go.Bar(y=labels, x=change, orientation="h", name="spend change",
                           marker_color=[UP if v >= 0 else DOWN for v in change], meta={"kind": "spend_change"},
                           hovertemplate="%{y}<br>change %{x:,.2f}<extra></extra>"))
    fig = _layout(fig, f"Where the money moved: plan minus baseline spend ({plan.summary.currency or 'currency'})",
                  height=max(360, 22 * len(labels) + 120))
    return fig


def net_value_waterfall(plan, base_net_by_cell: np.ndarray) -> go.Figure:
    """From the baseline's net value to the plan's, one step per task."""
    t = plan.table
    change = t["net_value"].to_numpy() - base_net_by_cell
    tasks = list(dict.fromkeys(t["task"]))
    steps = [float(change[(t["task"] == k).to_numpy()].sum()) for k in tasks]
    base, total = float(base_net_by_cell.sum()), float(t["net_value"].sum())
    fig = go.Figure(go.Waterfall(
        x=["baseline", *tasks, "plan"], y=[base, *steps, total],
        measure=["absolute", *(["relative"] * len(tasks)), "total"], meta={"kind": "waterfall"},
        increasing=dict(marker_color=UP), decreasing=dict(marker_color=DOWN),
        totals=dict(marker_color=PLANNED), hovertemplate="%{x}<br>%{y:,.0f}<extra></extra>"))
    # start the axis near the smaller end, so the steps between the two totals are visible
    running = base + np.cumsum([0.0, *steps])
    low, high = min(running.min(), total), max(running.max(), total)
    pad = 0.15 * max(high - low, 1e-9 * max(abs(high), 1.0))
    fig = _layout(fig, "Net value: baseline to plan, by task", height=380)
    fig.update_yaxes(range=[low - pad, high + pad])
    return fig


def value_distribution(net: np.ndarray, plan_net: float, label: str) -> go.Figure:
    fig = go.Figure(go.Histogram(x=net, nbinsx=40, name="net value across samples", marker_color=PLANNED,
                                 meta={"kind": "distribution"}))
    fig.add_vline(x=plan_net, line=dict(color=REQUIRED, dash="dash"))
    return _layout(fig, f"Net value across parameter samples ({label})", height=360)


def period_flows(flows, states: tuple[str, ...] = ("prospects", "active", "lapsed")) -> go.Figure:
    """Members in each state at the start of each period (stacked bars), from flows.csv's ``start`` column.

    One trace per state; its ``meta`` carries the state, ``x`` the periods and ``y`` the member counts
    summed over segments, so the chart can be checked against flows.csv.
    """
    colors = {"prospects": "#9ecae1", "active": PLANNED, "lapsed": CURRENT}
    totals = flows.groupby(["period", "state"], sort=False)["start"].sum()
    periods = list(dict.fromkeys(flows["period"].tolist()))
    fig = go.Figure()
    for state in [s for s in states if s in set(flows["state"])]:
        y = [float(totals.get((p, state), 0.0)) for p in periods]
        fig.add_trace(go.Bar(x=[str(p) for p in periods], y=y, name=state, marker_color=colors.get(state),
                             meta={"kind": "members", "state": state},
                             hovertemplate=f"period %{{x}}<br>{state}: %{{y:,.1f}} members<extra></extra>"))
    fig.update_layout(barmode="stack", xaxis_title="period", yaxis_title="members at the start of the period")
    return _layout(fig, "Members by state and period")


def period_spend(by_period, currency: str | None = None) -> go.Figure:
    """Spend per period (bars) and the budget's shadow price per period (line, right axis)."""
    periods = [str(b["period"]) for b in by_period]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=periods, y=[float(b["spend"]) for b in by_period], name="spend",
                         marker_color=PLANNED, meta={"kind": "spend"}), secondary_y=False)
    fig.add_trace(go.Scatter(x=periods, y=[float(b["budget_shadow_price"]) for b in by_period],
                             name="budget shadow price", mode="lines+markers", line=dict(color=REQUIRED),
                             meta={"kind": "shadow_price"}), secondary_y=True)
    if any(b.get("budget") is not None for b in by_period):
        fig.add_trace(go.Scatter(x=periods, y=[b.get("budget") for b in by_period], name="period budget",
                                 mode="markers", marker=dict(symbol="line-ew-open", size=24, color="#555"),
                                 meta={"kind": "budget"}), secondary_y=False)
    fig.update_yaxes(title_text=f"spend ({currency})" if currency else "spend", secondary_y=False)
    fig.update_yaxes(title_text="shadow price (equity per unit)", secondary_y=True)
    fig.update_xaxes(title_text="period")
    return _layout(fig, "Spend and the budget's shadow price by period")


def figure_data(fig: go.Figure) -> list[dict[str, Any]]:
    """The traces as plain dicts (what the browser receives), for tests that check a chart's numbers."""
    return [tr.to_plotly_json() for tr in fig.data]
