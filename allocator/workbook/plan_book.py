"""Plans, frontiers, sweeps and comparisons as Excel workbooks (``plan.xlsx`` and friends).

The Plan sheet's header is plan.csv's header, so reading the sheet gives the CSV's columns; its
money is rounded to the currency's minor unit by largest remainder (:mod:`allocator.rounding`),
so every column adds up to the totals the Summary sheet shows, and the Summary sheet carries an
Excel ``SUM`` over the Plan sheet beside each total as a check a reader can see.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from typing import Any

import numpy as np
import pandas as pd
from openpyxl.utils import get_column_letter

from ..json_text import compact
from ..rounding import minor_unit, rounded_table
from .sheets import (COUNT_FORMAT, PERCENT_FORMAT, RETURN_FORMAT, money_format, new_workbook, to_bytes,
                     write_pairs, write_table)

_MONEY = ("spend", "spend_per_member", "expected_value", "value_per_success", "activation_cost", "net_value",
          "min_spend", "max_spend", "current_spend", "current_expected_value", "spend_change", "value_change")
_RETURNS = ("marginal_return", "required_return", "current_marginal_return")


def scenario_hash(scenario) -> str:
    """First 16 hex digits of the SHA-256 of the validated scenario's canonical JSON (what was planned).

    ``scenario`` is a Scenario, or its :func:`~allocator.spec.canonical_data` (which the service
    stores too, and so makes once).
    """
    from ..spec import canonical_data

    data = canonical_data(scenario) if hasattr(scenario, "model_dump") else scenario
    return hashlib.sha256(compact(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("allocator")
    except importlib.metadata.PackageNotFoundError:
        from .. import __version__

        return __version__


def plan_formats(currency: str | None) -> dict[str, str]:
    """Number format of each plan.csv column."""
    money = money_format(currency)
    out = {c: money for c in _MONEY}
    out.update({c: RETURN_FORMAT for c in _RETURNS})
    out.update({"pool": COUNT_FORMAT, "response_rate": PERCENT_FORMAT, "expected_successes": "#,##0.0"})
    return out


def plan_notes(currency: str | None) -> dict[str, str]:
    """Header comments: the unit of each column (units live here, not in extra header rows)."""
    cur = currency or "currency units"
    d = minor_unit(currency)
    rounded = (f"{cur}, rounded to {d} decimals by largest remainder so the column sums to the total; "
               "plan.csv and the JSON keep the raw value")
    return {
        "pool": "members who can respond", "spend": rounded, "current_spend": rounded + "; blank: no baseline",
        "expected_value": rounded, "current_expected_value": rounded, "net_value": rounded,
        "activation_cost": rounded, "spend_change": rounded + "; plan minus baseline",
        "value_change": rounded + "; plan minus baseline",
        "spend_per_member": f"{cur} per member", "value_per_success": f"{cur} per success",
        "response_rate": "share of the pool expected to respond",
        "marginal_return": f"value returned by the last {cur} spent",
        "required_return": "marginal return the binding rules require of this cell",
        "min_spend": f"{cur}", "max_spend": f"{cur}; blank: unbounded",
        "bound": "none: interior; zero, lower, upper, locked, off: held by a bound",
    }


def _sum_formula(sheet: str, col: str, columns: list[str], rows: int) -> str | None:
    if col not in columns or rows == 0:
        return None
    letter = get_column_letter(columns.index(col) + 1)
    return f"=SUM('{sheet}'!{letter}2:{letter}{rows + 1})"


def _group(t: pd.DataFrame, key: str, d: int) -> pd.DataFrame:
    """Totals per task or segment from the rounded cells (sums of whole minor units: exact)."""
    cols = [c for c in ("spend", "expected_value", "activation_cost", "net_value", "current_spend",
                        "spend_change", "value_change") if c in t]
    g = t.groupby(key, sort=False)[cols].sum().round(d)
    g.insert(1, "expected_successes", t.groupby(key, sort=False)["expected_successes"].sum())
    total = g["spend"].sum()
    g["spend_share"] = g["spend"] / total if total > 0 else 0.0
    return g.reset_index()


def summary_rows(plan, table: pd.DataFrame, meta: dict[str, Any]) -> list[tuple]:
    """The Summary sheet: totals (with SUM checks over the Plan sheet), returns, gap, solver, provenance."""
    s = plan.summary
    money = money_format(s.currency)
    cols, n = list(table.columns), len(table)
    rows: list[tuple] = [
        ("scenario", s.scenario, None, None), ("currency", s.currency or "", None, None),
        ("status", s.status, None, None),
        ("total spend", float(table["spend"].sum()), money, _sum_formula("Plan", "spend", cols, n)),
        ("budget", s.budget, money, "blank: no budget" if s.budget is None else None),
        ("budget binds", s.budget_binds, None, None),
        ("total value", float(table["expected_value"].sum()), money, _sum_formula("Plan", "expected_value", cols, n)),
        ("activation cost", float(table["activation_cost"].sum()), money,
         _sum_formula("Plan", "activation_cost", cols, n)),
        ("net value", float(table["net_value"].sum()), money, _sum_formula("Plan", "net_value", cols, n)),
        ("common marginal return", s.marginal_return, RETURN_FORMAT, None),
        ("budget shadow price", s.budget_shadow_price, RETURN_FORMAT, f"net value per {s.currency or 'unit'} "
                                                                       "of extra budget"),
        ("required return, lowest", float(np.nanmin(plan.table["required_return"])) if n else None,
         RETURN_FORMAT, None),
        ("required return, highest", float(np.nanmax(plan.table["required_return"])) if n else None,
         RETURN_FORMAT, None),
        ("optimality gap", s.optimality_gap, "0.00E+00", "relative; certified by the upper bound"),
        ("upper bound", s.upper_bound, money, s.bound_method),
        ("largest KKT deviation", s.kkt_max_deviation, "0.00E+00", None),
        ("solver", s.solver, None, None), ("solve seconds", s.solve_seconds, "0.000", None),
    ]
    if s.baseline:
        b = s.baseline
        rows += [
            ("baseline spend", float(table["spend"].sum() - table["spend_change"].sum()), money,
             "plan spend minus the spend_change column"),
            ("baseline net value", b["net_value"], money, None),
            ("net value gained over baseline", s.net_value - b["net_value"], money, None),
        ]
    return rows + closing_rows(s.allocation_ratio, meta)


def closing_rows(allocation_ratio: dict[str, float], meta: dict[str, Any]) -> list[tuple]:
    """The Summary sheet's last rows, alike for every plan: spend shares by task, then provenance."""
    rows = [(f"share of spend: {t}", share, PERCENT_FORMAT, None) for t, share in allocation_ratio.items()]
    return rows + [("scenario hash", meta.get("scenario_hash") or "", None, "SHA-256 of the validated scenario"),
                   ("allocator version", meta.get("version") or _version(), None, None),
                   ("written at (UTC)", meta.get("time") or _dt.datetime.now(_dt.timezone.utc)
                    .strftime("%Y-%m-%d %H:%M:%S"), None, None)]


def binding_table(plan) -> pd.DataFrame:
    cols = ["name", "kind", "rule", "side", "activity", "bound", "shadow_price", "direction", "segment", "task",
            "note"]
    rows = [{c: b.get(c) for c in cols} for b in plan.summary.binding_constraints]
    return pd.DataFrame(rows, columns=cols)


def frontier_formats(table: pd.DataFrame, currency: str | None) -> dict[str, str]:
    money = money_format(currency)
    out = {c: money for c in table.columns if c in ("budget", "net_value", "total_value", "total_spend",
                                                     "activation_cost", "baseline_net_value", "net_value_gained")
           or c.startswith(("spend_", "value_"))}
    out.update({"marginal_return": RETURN_FORMAT, "cells_funded": COUNT_FORMAT})
    return out


def add_plan_sheets(wb, plan, meta: dict[str, Any] | None = None, frontier=None) -> pd.DataFrame:
    """Add the Summary, Plan, By task, By segment, Binding rules (and Frontier) sheets; return the rounded table."""
    meta = meta or {}
    cur = plan.summary.currency
    d = minor_unit(cur)
    t = rounded_table(plan, d)
    write_pairs(wb.create_sheet("Summary"), summary_rows(plan, t, meta))
    write_table(wb.create_sheet("Plan"), t, plan_formats(cur), plan_notes(cur), freeze="C2")
    group_fmt = {**plan_formats(cur), "spend_share": PERCENT_FORMAT}
    write_table(wb.create_sheet("By task"), _group(t, "task", d), group_fmt)
    write_table(wb.create_sheet("By segment"), _group(t, "segment", d), group_fmt)
    write_table(wb.create_sheet("Binding rules"), binding_table(plan),
                {"shadow_price": RETURN_FORMAT, "activity": "#,##0.00", "bound": "#,##0.00"},
                {"shadow_price": f"net value per {cur or 'unit'} of relaxing the rule"})
    if frontier is not None:
        write_table(wb.create_sheet("Frontier"), frontier.table, frontier_formats(frontier.table, cur))
    return t


def plan_workbook(plan, meta: dict[str, Any] | None = None, frontier=None) -> bytes:
    """``plan.xlsx`` of ``plan`` as bytes (write it with :func:`allocator.io.atomic_write`).

    Parameters
    ----------
    plan : Plan
    meta : dict, optional
        ``scenario_hash``, ``version`` and ``time`` for the Summary sheet.
    frontier : Frontier, optional
        Adds a Frontier sheet.
    """
    wb = new_workbook()
    add_plan_sheets(wb, plan, meta, frontier)
    return to_bytes(wb)


def frontier_workbook(frontier, currency: str | None = None) -> bytes:
    """``frontier.xlsx``: the Frontier table and, when the path was followed, its Events."""
    wb = new_workbook()
    write_table(wb.create_sheet("Frontier"), frontier.table, frontier_formats(frontier.table, currency))
    if len(frontier.events):
        write_table(wb.create_sheet("Events"), frontier.events,
                    {"budget": money_format(currency), "budget_to": money_format(currency),
                     "marginal_return": RETURN_FORMAT})
    return to_bytes(wb)


def sweep_workbook(result, currency: str | None = None) -> bytes:
    """``sweep.xlsx``: the sweep's Summary (one row per variant) and Cells tables, as returned."""
    wb = new_workbook()
    money = money_format(currency)
    for name, df in (("Summary", result.summary), ("Cells", result.cells)):
        fmt = {c: money for c in df.columns if any(k in c for k in ("spend", "value", "budget", "cost"))}
        fmt.update({c: RETURN_FORMAT for c in df.columns if "return" in c or "price" in c})
        write_table(wb.create_sheet(name), df, fmt)
    return to_bytes(wb)


def comparison_workbook(comparison) -> bytes:
    """``compare.xlsx``: the side-by-side table, the cells whose spend differs most, and each plan's cells."""
    wb = new_workbook()
    cur = comparison.currency
    names = list(comparison.names)
    fmt = {n: "#,##0.00####" for n in names}
    write_table(wb.create_sheet("Compare"), comparison.table, fmt, freeze="C2")
    write_table(wb.create_sheet("Cells differing"), comparison.differing,
                {c: money_format(cur) for c in comparison.differing.columns if c not in ("segment", "task")})
    for name, plan in zip(names, comparison.plans):
        title = f"Plan {name}"[:31]
        write_table(wb.create_sheet(title), rounded_table(plan), plan_formats(plan.summary.currency),
                    plan_notes(plan.summary.currency), freeze="C2")
    return to_bytes(wb)


__all__ = ["add_plan_sheets", "comparison_workbook", "frontier_workbook", "plan_workbook", "scenario_hash",
           "sweep_workbook"]
