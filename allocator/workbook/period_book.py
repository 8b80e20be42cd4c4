"""Multi-period plans (:mod:`allocator.dynamic`) as ``plan.xlsx``: Summary, Plan, By period, Budget rows, Flows.

The Plan sheet's header is plan.csv's header and the Flows sheet's is flows.csv's. Money is
rounded to the currency's minor unit by largest remainder over the planning periods, so the
Plan sheet's spend adds up to the rounded ``total_spend`` of summary.json (a ``steady`` row,
the repeating policy after the horizon, is rounded on its own and is not part of the totals,
as in summary.json); the Summary sheet carries an Excel ``SUM`` beside each total.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from openpyxl.utils import get_column_letter

from ..rounding import minor_unit, round_each, round_to_total
from .plan_book import closing_rows
from .sheets import COUNT_FORMAT, PERCENT_FORMAT, RETURN_FORMAT, money_format, new_workbook, to_bytes, \
    write_pairs, write_table

MEMBERS_FORMAT = "#,##0.00"
_MONEY = ("spend", "spend_per_member", "spend_per_treated", "value_per_success", "expected_value", "budget",
          "margin", "one_off_value", "net_value")
_RETURNS = ("marginal_return", "required_return", "budget_shadow_price", "shadow_price")


def _planning_rows(table: pd.DataFrame) -> np.ndarray:
    """Rows of the planning periods (not the ``steady`` policy row after the horizon)."""
    return (table["period"].astype(str) != "steady").to_numpy()


def rounded_period_table(plan, decimals: int | None = None) -> pd.DataFrame:
    """plan.csv's table with ``spend`` and ``expected_value`` rounded so the planning rows add up to the totals."""
    d = minor_unit(plan.summary["currency"]) if decimals is None else decimals
    t = plan.table.copy()
    inside = _planning_rows(t)
    for col in ("spend", "expected_value"):
        if col in t:
            x = t[col].to_numpy(float).copy()
            x[inside] = round_to_total(x[inside], d)
            x[~inside] = round_each(x[~inside], d)
            t[col] = x
    return t


def by_period_table(plan, decimals: int | None = None) -> pd.DataFrame:
    """summary.json's ``by_period`` as a table; spend rounded by largest remainder to the rounded total spend."""
    d = minor_unit(plan.summary["currency"]) if decimals is None else decimals
    rows = []
    for b in plan.summary["by_period"]:
        rec = {k: v for k, v in b.items() if k != "members_start"}
        rec.update({f"members_start_{s}": v for s, v in b["members_start"].items()})
        rows.append(rec)
    t = pd.DataFrame(rows)
    if len(t):
        t["spend"] = round_to_total(t["spend"].to_numpy(float), d)
    return t


def _formats(currency: str | None, columns) -> dict[str, str]:
    money = money_format(currency)
    out = {c: money for c in columns if c in _MONEY or c in ("cap",)}
    out.update({c: RETURN_FORMAT for c in columns if c in _RETURNS})
    out.update({c: MEMBERS_FORMAT for c in columns if c == "expected_successes" or c.startswith("members_")})
    out.update({c: PERCENT_FORMAT for c in columns if c in ("response_rate", "share_treated")})
    out.update({c: COUNT_FORMAT for c in columns if c == "pool"})
    out.update({"discount_factor": "0.0000"} if "discount_factor" in columns else {})
    return out


def _sum(sheet: str, col: str, columns: list[str], rows: int) -> str | None:
    if col not in columns or rows == 0:
        return None
    letter = get_column_letter(columns.index(col) + 1)
    return f"=SUM('{sheet}'!{letter}2:{letter}{rows + 1})"


def period_summary_rows(plan, table: pd.DataFrame, periods: pd.DataFrame, meta: dict[str, Any]) -> list[tuple]:
    """The Summary sheet of a multi-period plan: totals (with SUM checks), budget and its prices, provenance."""
    s = plan.summary
    cur = s["currency"]
    money = money_format(cur)
    budget = s.get("budget") or {}
    inside = _planning_rows(table)
    n = len(table)
    plan_cols, period_cols = list(table.columns), list(periods.columns)
    # the SUM check over plan.csv rows holds only when no steady row sits among them
    plan_sum = _sum("Plan", "spend", plan_cols, n) if inside.all() else \
        f"=SUMIF('Plan'!A2:A{n + 1},\"<>steady\",'Plan'!{get_column_letter(plan_cols.index('spend') + 1)}2:" \
        f"{get_column_letter(plan_cols.index('spend') + 1)}{n + 1})"
    total_row = [r for r in s.get("budget_rows", []) if r["name"] == "budget.total"]
    rows: list[tuple] = [
        ("scenario", s["scenario"], None, None), ("currency", cur or "", None, None),
        ("status", s["status"], None, None), ("periods", s["periods"], None, None),
        ("discount rate per period", s.get("discount"), PERCENT_FORMAT, None),
        ("total spend (nominal)", float(table.loc[inside, "spend"].sum()), money, plan_sum),
        ("total spend by period", float(periods["spend"].sum()) if len(periods) else None, money,
         _sum("By period", "spend", period_cols, len(periods))),
        ("discounted spend", s.get("discounted_spend"), money, "present value of the spend"),
        ("budget, total", budget.get("total"), money, "blank: no total budget" if budget.get("total") is None
         else None),
        ("budget binds", s.get("budget_binds"), None, None),
        ("budget shadow price (total)", total_row[0]["shadow_price"] if total_row else None, RETURN_FORMAT,
         "customer equity per extra unit of total budget"),
        ("customer equity (net value, present value)", s["customer_equity"], money,
         "the objective: discounted margin and one-off value minus discounted spend"),
        ("total value (present value)", s.get("total_value"), money, None),
        ("optimality gap", s.get("optimality_gap"), "0.00E+00", "relative; certified by the upper bound"),
        ("upper bound", s.get("upper_bound"), money, s.get("bound_method")),
        ("largest KKT deviation", s.get("kkt_max_deviation"), "0.00E+00", None),
        ("solver", s.get("solver"), None, None), ("solve seconds", s.get("solve_seconds"), "0.000", None),
    ]
    return rows + closing_rows(s.get("allocation_ratio") or {}, meta)


def period_plan_workbook(plan, meta: dict[str, Any] | None = None) -> bytes:
    """``plan.xlsx`` of a multi-period plan: Summary, Plan (plan.csv), By period, Budget rows, Flows (flows.csv)."""
    meta = meta or {}
    cur = plan.summary["currency"]
    d = minor_unit(cur)
    table = rounded_period_table(plan, d)
    periods = by_period_table(plan, d)
    wb = new_workbook()
    write_pairs(wb.create_sheet("Summary"), period_summary_rows(plan, table, periods, meta))
    write_table(wb.create_sheet("Plan"), table, _formats(cur, table.columns), freeze="D2")
    write_table(wb.create_sheet("By period"), periods, _formats(cur, periods.columns),
                {"budget_shadow_price": f"customer equity per {cur or 'unit'} of this period's budget",
                 "spend": f"{cur or 'currency units'}, nominal; rounded so the column sums to the total spend"})
    rows = pd.DataFrame(plan.summary.get("budget_rows") or [], columns=["name", "cap", "spend", "shadow_price"])
    write_table(wb.create_sheet("Budget rows"), rows, _formats(cur, rows.columns))
    write_table(wb.create_sheet("Flows"), plan.flows,
                {c: MEMBERS_FORMAT for c in plan.flows.columns if c not in ("period", "segment", "state")},
                {"start": "members at the start of the period", "end": "members at the end, before next arrivals"},
                freeze="D2")
    return to_bytes(wb)


__all__ = ["by_period_table", "period_plan_workbook", "rounded_period_table"]
