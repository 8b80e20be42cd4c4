"""``allocator plan``, ``allocator validate``, ``allocator template`` and ``allocator schema``.

``plan`` and ``validate`` read YAML, JSON or a scenario workbook (``.xlsx``, dispatched on the
suffix in :func:`load_any`); ``plan --xlsx`` and ``--html`` add ``plan.xlsx`` and ``report.html``
to the same atomic write as ``plan.csv``. The terminal table is drawn with ``rich``
(:func:`render`, :func:`rich_table`), money rounded by :mod:`allocator.rounding`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..compile import compile_scenario
from ..plan import Plan, make_plan
from ..spec import load_scenario


def register(sub) -> None:
    p = sub.add_parser("plan", help="solve a scenario and write plan.csv and summary.json",
                       description="Solve SCENARIO and write DIR/plan.csv and DIR/summary.json "
                                   "(default DIR: out/<scenario name>/).")
    p.add_argument("scenario", help="scenario file (.yaml, .json, or a scenario workbook .xlsx)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: out/<scenario name>/)")
    p.add_argument("--solver", help="auto (default), exact, dual, pyomo_highs or global; overrides the scenario")
    p.add_argument("--tolerance", type=float, help="relative optimality gap for approximate solvers")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.add_argument("--json", action="store_true",
                   help="print the plan as JSON (summary and cells) on stdout, nothing else")
    p.add_argument("--explain", action="store_true", help="print each cell's reason under the table")
    p.add_argument("--wide", action="store_true",
                   help="all columns (pool, per member, change, response, successes, net value, binding rules)")
    p.add_argument("--xlsx", action="store_true", help="also write DIR/plan.xlsx (Summary, Plan, By task, ...)")
    p.add_argument("--html", action="store_true", help="also write DIR/report.html (one file, opens offline)")
    p.add_argument("--format", choices=("csv", "parquet"),
                   help="plan table format: plan.csv (default) or plan.parquet (the default for `cells:` tables)")
    p.set_defaults(handler=run_plan)

    v = sub.add_parser("validate", help="check a scenario file without solving")
    v.add_argument("scenario")
    v.set_defaults(handler=run_validate)

    t = sub.add_parser("template", help="write a scenario as an editable workbook (Cells, Rules, Budget, Settings)",
                       description="Write SCENARIO as a workbook that `allocator plan BOOK.xlsx` reads back "
                                   "through the same validation.")
    t.add_argument("scenario", help="scenario file (.yaml, .json or .xlsx)")
    t.add_argument("--xlsx", action="store_true", required=True, help="write an Excel workbook (the only format)")
    t.add_argument("--out", metavar="FILE", help="workbook path (default: out/<scenario name>/scenario.xlsx)")
    t.set_defaults(handler=run_template)

    s = sub.add_parser("schema", help="print the JSON Schema of scenario (or model) files")
    s.add_argument("--model", action="store_true", help="the schema of model files instead")
    s.set_defaults(handler=run_schema)


def load_any(path: str):
    """The scenario in ``path``: a scenario workbook (``.xlsx``) or a YAML/JSON file, validated alike."""
    if Path(path).suffix.lower() in (".xlsx", ".xlsm"):
        from ..workbook import read_scenario_workbook

        return read_scenario_workbook(path)
    return load_scenario(path)


def _mapping_with(path: str, key: str) -> dict | None:
    """The scenario mapping when the (small) scenario file has the top-level ``key``, else ``None``."""
    p = Path(path)
    if p.suffix.lower() not in (".yaml", ".yml", ".json") or not p.is_file() or p.stat().st_size > 1_000_000:
        return None
    from ..spec.loader import read_mapping

    data = read_mapping(p)
    return data if isinstance(data, dict) and key in data else None


def _cells_mapping(path: str) -> dict | None:
    """The scenario mapping when the scenario file takes its cells from a table (``cells: PATH``)."""
    return _mapping_with(path, "cells")


def _is_dynamic(path: str) -> bool:
    """Whether the file is a multi-period scenario (a ``periods`` key, ``extends`` resolved): allocator.dynamic."""
    from ..dynamic.spec import is_dynamic_file

    return is_dynamic_file(path)


def _run_table_plan(args, data: dict) -> int:
    from ..tables import run_table_scenario

    plan = run_table_scenario(args.scenario, data, args.out, args.solver, args.tolerance, args.format or "parquet")
    if not args.quiet:
        s = plan.summary
        print(f"{s['cells']:,} cells: net value {s['net_value']:,.2f}, spend {s['total_spend']:,.2f}, "
              f"solver {s['solver']}, status {s['status']}, gap {s['optimality_gap']:.2e}")
    s = plan.summary
    return _exit_for_status(s["status"], s["optimality_gap"], s["optimality_check"])


def run_plan(args) -> int:
    from ..io import default_out_dir, write_plan_files

    table_scenario = _cells_mapping(args.scenario)
    if table_scenario is not None:
        return _run_table_plan(args, table_scenario)
    if _is_dynamic(args.scenario):
        from ..dynamic.cli import run_plan as run_dynamic_plan

        return run_dynamic_plan(args)
    sc = load_any(args.scenario)
    problem = compile_scenario(sc)
    plan = make_plan(problem, args.solver or sc.solver.name,
                     args.tolerance if args.tolerance is not None else sc.solver.tolerance)
    out = Path(args.out) if args.out else default_out_dir(sc.name)
    extra: dict[str, bytes | str] = {}
    if args.xlsx or args.html:
        from ..workbook import plan_workbook, scenario_hash

        meta = {"scenario_hash": scenario_hash(sc)}
        if args.xlsx:
            extra["plan.xlsx"] = plan_workbook(plan, meta)
        if args.html:
            from ..report import plan_report

            extra["report.html"] = plan_report(plan, sc, meta=meta)
    if getattr(args, "format", None) == "parquet":
        extra["plan.parquet"] = _parquet_bytes(plan.table)
    paths = write_plan_files(plan, out, extra)
    if args.json:
        print(json.dumps(plan_json(plan), indent=2))
    elif not args.quiet:
        print(render(plan, explain=args.explain, wide=args.wide))
        print("\nwrote " + ", ".join(str(p) for p in paths))
    return _exit_for_status(plan.summary.status, plan.summary.optimality_gap, plan.summary.optimality_check)


def _parquet_bytes(table: pd.DataFrame) -> bytes:
    import io

    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    return buf.getvalue()


#: statuses a user can accept with exit 0: certified, or stopped by the time limit the user set
ACCEPTED_STATUSES = ("optimal", "time_limit")


def _exit_for_status(status: str, gap: float, check: dict) -> int:
    """0 for a certified plan (or one the user's time limit stopped); else 4, saying why on stderr.

    The files are written either way (their status field says what they are), but a script
    must never take an uncertified plan for an optimal one.
    """
    import sys

    if status in ACCEPTED_STATUSES:
        if status == "time_limit":
            print(f"warning: stopped by solver.time_limit with certified gap {gap:.2e}", file=sys.stderr)
        return 0
    why = "; ".join(check.get("violations", [])[:3]) or (
        f"certified gap {gap:.2e} above the tolerance" if status == "gap_limit" else status)
    print(f"error: the plan is not certified optimal (status {status}): {why}", file=sys.stderr)
    return 4


def run_template(args) -> int:
    from ..io import atomic_write, default_out_dir
    from ..workbook import scenario_workbook

    sc = load_any(args.scenario)
    path = Path(args.out) if args.out else default_out_dir(sc.name) / "scenario.xlsx"
    atomic_write({path: scenario_workbook(sc)})
    print(f"wrote {path}: sheets Cells, Rules, Budget, Settings; plan it with `allocator plan {path}`")
    return 0


def plan_json(plan: Plan) -> dict:
    """``{"summary": summary.json's content, "cells": plan.csv's rows}`` (non-finite numbers as null)."""
    # column by column with numpy (``tolist`` gives Python numbers), then one dict per row: the
    # frame's ``astype(object).where(...).to_dict("records")`` cost more than solving the plan;
    # a plan whose table is not built yet is read from its arrays (building the frame cost more still)
    unbuilt = plan._unbuilt_columns()
    columns = None if unbuilt is None else _array_columns(unbuilt)
    if columns is None:
        columns = _frame_columns(plan.table)
    names = list(columns)
    cells = [dict(zip(names, row)) for row in zip(*columns.values())]
    return {"summary": plan.summary.to_dict(), "cells": cells}


def _frame_columns(table: pd.DataFrame) -> dict[str, list]:
    """Each column of ``table`` as a list of JSON-ready values (missing and non-finite numbers as ``None``)."""
    from ..plan import _jsonable

    out = {}
    for c in table.columns:
        col = table[c]
        values = col.to_numpy()
        if values.dtype.kind == "f":
            out[str(c)] = _float_list(values)
        elif values.dtype.kind in "iub":
            out[str(c)] = values.tolist()
        else:
            missing = col.isna().to_numpy()
            out[str(c)] = [None if m else _jsonable(v) for v, m in zip(values.tolist(), missing.tolist())]
    return out


def _array_columns(arrays: dict[str, np.ndarray]) -> dict[str, list] | None:
    """:func:`_frame_columns` of ``pandas.DataFrame(arrays)``, read off the arrays; ``None`` when unsure.

    The frame keeps numeric arrays as they are and holds text arrays as strings, so numbers and
    all-``str`` object arrays give the frame's values; anything else (a missing text, a mixed
    object column, another dtype) is left to the frame.
    """
    out: dict[str, list | None] = {}
    floats = []  # float64 columns, converted together below
    for name, values in arrays.items():
        if type(values) is not np.ndarray or values.ndim != 1:
            return None
        kind = values.dtype.kind
        if values.dtype == np.float64:
            out[str(name)] = None
            floats.append((str(name), values))
        elif kind == "f":
            out[str(name)] = _float_list(values)
        elif kind in "iub":
            out[str(name)] = values.tolist()
        elif kind == "O":
            items = values.tolist()
            if not all(type(v) is str for v in items):
                return None
            out[str(name)] = items
        else:
            return None
    if floats:
        if len({len(v) for _, v in floats}) != 1:
            return None
        # one 2-D array for the float columns: a call per column (tolist, isfinite) cost more than the values
        block = np.array([v for _, v in floats])
        lists = block.tolist()
        bad = ~np.isfinite(block)
        if bad.any():
            for j, i in zip(*np.nonzero(bad)):
                lists[j][i] = None
        for (name, _), values in zip(floats, lists):
            out[name] = values
    return out  # type: ignore[return-value]


def _float_list(values: np.ndarray) -> list:
    """``values`` as Python floats, non-finite ones as ``None``."""
    out = values.tolist()
    bad = ~np.isfinite(values)
    if bad.any():
        for i in np.flatnonzero(bad).tolist():
            out[i] = None
    return out


def run_validate(args) -> int:
    if _is_dynamic(args.scenario):
        from ..dynamic.cli import run_validate as run_dynamic_validate

        return run_dynamic_validate(args)
    sc = load_any(args.scenario)
    problem = compile_scenario(sc)
    budget = "none (profit-maximizing)" if problem.budget is None else f"{problem.budget:,.0f}"
    # a large file read through the columns counts its segments without building them
    segments = sc.segment_count() if hasattr(sc, "segment_count") else len(sc.segments or [])
    print(f"{args.scenario}: valid; {segments} segments, {problem.n} cells, budget {budget}")
    return 0


def run_schema(args) -> int:
    from ..spec.models import ModelFile, Scenario

    print(json.dumps((ModelFile if args.model else Scenario).model_json_schema(), indent=2))
    return 0


def render(plan: Plan, explain: bool = False, wide: bool = False, width: int | None = None) -> str:
    """A readable view of a plan for the terminal; every sentence comes from the plan's decomposition.

    The table is drawn by ``rich``: money rounded to the currency's minor unit by largest remainder
    (so the spend column adds up to the total row, and to the budget when it binds), thousands
    separators, units in the headers, never scientific notation. The default columns fit a
    100-character terminal; ``wide`` adds pool, spend per member, successes, net value and change.
    """
    from ..explain import headline

    s = plan.summary
    cur = s.currency or ""
    lines = [f"Plan for scenario '{s.scenario}' ({s.solver} solver, status {s.status})", "",
             plan_table_text(plan, wide=wide, width=width), ""]
    if explain:
        for r in plan.table.itertuples():
            lines.append(f"  ({r.segment}, {r.task}): {r.reason}")
        lines.append("")
    budget = "none" if s.budget is None else f"{s.budget:,.0f} {cur}".strip()
    act = f" - activation costs {s.activation_cost:,.0f}" if s.activation_cost else ""
    lines.append(f"total spend {s.total_spend:,.0f}{' ' + cur if cur else ''} of budget {budget}; "
                 f"value {s.total_value:,.0f}{act}; "
                 f"net value {s.net_value:,.0f}")
    lines += headline(plan.problem, plan.report.decomposition, s)
    lines.append(f"largest KKT deviation {s.kkt_max_deviation:.2e}; optimality gap {s.optimality_gap:.2e}")
    for b in s.binding_constraints:
        if b["kind"] in ("unit", "activation", "min_spend", "max_spend", "min_active") or b["name"] == "budget.total":
            continue
        price = b.get("shadow_price")
        what = "" if price is None else f" (shadow price {price:.4f} per {cur or 'unit'}" + (
            ", raising it" if b.get("direction") == "raise" else ", lowering it" if b.get("direction") == "lower"
            else "") + ")"
        lines.append(f"binding: {b['rule']}{what}")
    shares = ", ".join(f"{k} {v:.1%}" for k, v in s.allocation_ratio.items())
    lines.append(f"allocation across tasks: {shares}")
    if s.baseline:
        b = s.baseline
        lines.append(f"baseline: spend {b['spend']:,.0f}, net value {b['net_value']:,.0f}; the plan's net value "
                     f"{b['plan_net_value']:,.0f} is {abs(b['net_value_gained']):,.0f} "
                     f"{'above' if b['net_value_gained'] >= 0 else 'below'} it")
    if s.status != "optimal":
        lines.append(f"status {s.status}: " + ("; ".join(s.optimality_check.get("violations", [])[:3])
                                               or s.optimality_check.get("note", "")))
    return "\n".join(lines)


def _money(v: float, d: int) -> str:
    return "" if v is None or not np.isfinite(v) else f"{v:,.{d}f}"


MAX_ROWS = 100
"""Cells printed in the terminal table; the total row and the files cover all of them."""


def plan_table_text(plan: Plan, wide: bool = False, width: int | None = None) -> str:
    """The plan's cells as a ``rich`` table (plain text), with a total row that adds up exactly."""
    from ..rounding import minor_unit, rounded_table

    s = plan.summary
    d = minor_unit(s.currency)
    unit = f" {s.currency}" if s.currency else ""
    t = rounded_table(plan, d)
    has_cur = "current_spend" in t
    cols: list[tuple[str, list[str], str]] = [
        ("segment", list(t["segment"]), "total" if len(t) <= MAX_ROWS else f"total, {len(t):,} cells"),
        ("task", list(t["task"]), ""),
    ]
    if wide:
        cols.append(("pool", [f"{v:,.0f}" for v in t["pool"]], f"{t['pool'].sum():,.0f}"))
    cols.append((f"spend{unit}", [_money(v, d) for v in t["spend"]], _money(t["spend"].sum(), d)))
    if has_cur:
        cols.append((f"current{unit}", [_money(v, d) for v in t["current_spend"]],
                     _money(t["current_spend"].sum(), d)))
    if wide:
        cols.append((f"per member{unit}", [f"{v:,.2f}" for v in t["spend_per_member"]], ""))
        if has_cur:
            cols.append((f"change{unit}", [_money(v, d) for v in t["spend_change"]],
                         _money(t["spend_change"].sum(), d)))
    if wide:
        cols.append(("response", [f"{v:.2%}" for v in t["response_rate"]], ""))
        cols.append(("successes", [f"{v:,.1f}" for v in t["expected_successes"]],
                     f"{t['expected_successes'].sum():,.1f}"))
    cols.append((f"value{unit}", [_money(v, d) for v in t["expected_value"]], _money(t["expected_value"].sum(), d)))
    if wide:
        cols.append((f"net value{unit}", [_money(v, d) for v in t["net_value"]], _money(t["net_value"].sum(), d)))
    cols += [("marginal", [f"{v:.3f}" for v in t["marginal_return"]], ""),
             ("required", ["" if pd.isna(v) else f"{v:.3f}" for v in t["required_return"]], ""),
             ("bound", list(t["bound"]), "")]
    if wide:
        cols.append(("binding rules", [str(v) for v in t["binding_rules"]], ""))
    width = width or (220 if wide else 100)
    # never let a number be cut short: drop whole columns (least needed first) until the table fits
    optional = [f"current{unit}", f"value{unit}"]
    while _table_width(cols) > width and optional:
        drop = optional.pop(0)
        cols = [c for c in cols if c[0] != drop]
    more = len(t) - MAX_ROWS
    if more > 0:
        # a terminal shows a few screens, not thousands of rows; the total row still covers every cell
        cols = [(h, cells[:MAX_ROWS], total) for h, cells, total in cols]
    text = rich_table(cols, width=max(width, _table_width(cols)))
    return text + (f"\n... and {more:,} more cells (all cells are in plan.csv)" if more > 0 else "")


def _table_width(cols: list[tuple[str, list[str], str]]) -> int:
    """Characters per line of :func:`rich_table` for these columns (one space between columns)."""
    return sum(max(len(h), max((len(x) for x in cells), default=0), len(total)) for h, cells, total in cols) \
        + len(cols) - 1


def rich_table(cols: list[tuple[str, list[str], str]], width: int = 100, footer: bool = True) -> str:
    """Columns ``(header, cells, total)`` as a plain-text ``rich`` table: text left, numbers right, a total row.

    One space between columns and no outer border, so :func:`_table_width` is exact.
    """
    import io

    from rich import box
    from rich.console import Console
    from rich.table import Table

    import sys

    # a terminal that cannot show the box-drawing rule gets ASCII (same widths: one divider character)
    utf = "utf" in (getattr(sys.stdout, "encoding", None) or "utf-8").lower()
    table = Table(box=box.SIMPLE_HEAD if utf else box.ASCII2, show_edge=False, pad_edge=False, padding=(0, 0),
                  show_footer=footer and any(c[2] for c in cols))
    for i, (head, cells, total) in enumerate(cols):
        numeric = any(ch.isdigit() for ch in "".join(cells[:3])) and i > 1
        table.add_column(head, footer=total, justify="right" if numeric else "left", no_wrap=True)
    for row in zip(*(c[1] for c in cols)):
        table.add_row(*row)
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False, legacy_windows=False)
    console.print(table)
    return "\n".join(line.rstrip() for line in console.file.getvalue().rstrip("\n").splitlines())
