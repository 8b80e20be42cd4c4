"""A temporary command line for multi-period scenarios (until ``allocator plan`` dispatches to them).

``python -m allocator.dynamic.cli plan FILE [--out DIR]``, ``... validate FILE`` and ``... frontier FILE
--low L --high H [--points N]`` (total budget); errors map to
the exit codes of ``allocator`` (2: invalid input, 3: infeasible, 4: solver trouble).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import AllocatorError, InfeasibleError, SpecError


def render(plan) -> str:
    """A short terminal view: the period table of spend, then totals and the certificate."""
    s = plan.summary
    cur = s["currency"] or ""
    lines = [f"Plan for scenario '{s['scenario']}' over {s['periods']} periods (dynamic solver, status "
             f"{s['status']})", "", "period      spend   shadow price  required return   margin     net value"]
    for b in s["by_period"]:
        lines.append(f"{b['period']:>6} {b['spend']:>10,.0f} {b['budget_shadow_price']:>14.4f} "
                     f"{b['required_return']:>16.4f} {b['margin']:>8,.0f} {b['net_value']:>13,.0f}")
    lines.append("")
    lines.append(f"customer equity {s['customer_equity']:,.0f} {cur} (discounted net value); total spend "
                 f"{s['total_spend']:,.0f}")
    lines.append(f"largest KKT deviation {s['kkt_max_deviation']:.2e}; optimality gap {s['optimality_gap']:.2e}")
    return "\n".join(lines)


def run_plan(args) -> int:
    from .model import compile_dynamic
    from .plan import plan_dynamic
    from .spec import load_dynamic

    sc = load_dynamic(args.scenario)
    plan = plan_dynamic(compile_dynamic(sc), getattr(args, "tolerance", None))
    out = Path(args.out) if args.out else Path("out") / sc.name
    if getattr(args, "xlsx", False) or getattr(args, "html", False):
        paths = _write_with_extras(plan, sc, out, args)
    else:
        paths = plan.write(out)
    if getattr(args, "json", False):
        import json

        from ..plan import _jsonable

        cells = plan.table.astype(object).where(plan.table.notna(), None).to_dict("records")
        print(json.dumps({"summary": _jsonable(plan.summary), "cells": _jsonable(cells)}, indent=2))
    elif not getattr(args, "quiet", False):
        print(render(plan))
        print("\nwrote " + ", ".join(str(p) for p in paths))
    if plan.summary["status"] != "optimal":
        # as for static plans: files are written, but a script must not take this for a certified optimum
        print(f"error: the plan is not certified optimal (status {plan.summary['status']})", file=sys.stderr)
        return 4
    return 0


def _write_with_extras(plan, sc, out: Path, args) -> list[Path]:
    """plan.csv, flows.csv and summary.json with ``plan.xlsx`` (``--xlsx``) and ``report.html`` (``--html``),
    written as one unit: the workbook and the report always describe the CSVs beside them."""
    import json

    from ..io import write_unit
    from ..plan import _jsonable
    from ..workbook import scenario_hash

    meta = {"scenario_hash": scenario_hash(sc)}
    files: dict[str, str | bytes] = {
        "plan.csv": plan.table.to_csv(index=False, float_format="%.10g"),
        "flows.csv": plan.flows.to_csv(index=False, float_format="%.10g"),
        "summary.json": json.dumps(_jsonable(plan.summary), indent=2) + "\n"}
    if getattr(args, "xlsx", False):
        from ..workbook import period_plan_workbook

        files["plan.xlsx"] = period_plan_workbook(plan, meta)
    if getattr(args, "html", False):
        from ..report import period_plan_report

        files["report.html"] = period_plan_report(plan, meta)
    return write_unit(out, files)


def run_validate(args) -> int:
    from .model import compile_dynamic
    from .spec import load_dynamic

    sc = load_dynamic(args.scenario)
    problem = compile_dynamic(sc)
    print(f"{args.scenario}: valid; {problem.S} segments, {sc.periods} periods, "
          f"{int(problem.has_task.sum())} tasks per period")
    return 0


def run_frontier(args) -> int:
    import numpy as np

    from .analysis import dynamic_frontier
    from .model import compile_dynamic
    from .spec import load_dynamic

    problem = compile_dynamic(load_dynamic(args.scenario))
    table = dynamic_frontier(problem, np.linspace(args.low, args.high, args.points))
    print(table.to_string(index=False))
    return 0


def _out_dir(args, name: str, suffix: str = "") -> Path:
    from ..io import default_out_dir

    return Path(args.out) if getattr(args, "out", None) else default_out_dir(name, suffix)


def _table(df) -> str:
    import pandas as pd

    with pd.option_context("display.width", 220, "display.max_columns", 30, "display.float_format",
                           "{:,.6g}".format):
        return df.to_string(index=False)


def run_sensitivity(args) -> int:
    """``allocator sensitivity`` on a multi-period scenario: envelope-theorem derivatives, budget prices."""
    from ..io import csv_text, write_unit
    from .model import compile_dynamic
    from .sensitivity import dynamic_sensitivity
    from .solve import solve_dynamic
    from .spec import load_dynamic

    sc = load_dynamic(args.scenario)
    problem = compile_dynamic(sc)
    sens = dynamic_sensitivity(problem, solve_dynamic(problem))
    files = write_unit(_out_dir(args, sc.name), {
        "sensitivity.csv": csv_text(sens.parameters, float_format="%.12g"),
        "shadow_prices.csv": csv_text(sens.shadow_prices, float_format="%.12g")})
    if not getattr(args, "quiet", False):
        print(f"sensitivity of the customer equity {sens.customer_equity:,.0f} of '{sc.name}' over "
              f"{sc.periods} periods (envelope theorem)")
        print("\nlargest effects of a 1% change (elasticity = % change of customer equity):")
        print(_table(sens.top(getattr(args, "top", 10))))
        print("\nshadow prices of the budget rows (customer equity, present value, per nominal unit):")
        print(_table(sens.shadow_prices) if len(sens.shadow_prices) else "(no budget)")
        print("wrote " + ", ".join(str(p) for p in files))
    return 0


def run_whatif(args) -> int:
    """``allocator whatif`` on a multi-period scenario: cells are PERIOD/SEGMENT/TASK."""
    import json

    from ..errors import Problem
    from .model import compile_dynamic
    from .solve import solve_dynamic
    from .spec import load_dynamic
    from .whatif import InfeasibleMoveError, move_spend

    if getattr(args, "resolve", False):
        raise SpecError(Problem("--resolve", "is not available for multi-period scenarios yet; drop it "
                                             "(the move is valued with every other cell held)"))
    problem = compile_dynamic(load_dynamic(args.scenario))
    result = solve_dynamic(problem)
    try:
        res = move_spend(problem, result, args.move, args.from_cell, args.to_cell,
                         hold=getattr(args, "hold", None) or "spend")
    except InfeasibleMoveError as exc:
        if not getattr(args, "json", False):
            raise
        print(json.dumps({"status": "refused", "message": str(exc).splitlines()[0],
                          "rules_broken": exc.conflict}, indent=2))
        print(f"error: {exc}", file=sys.stderr)
        return 3
    if getattr(args, "json", False):
        from ..plan import _jsonable

        print(json.dumps(_jsonable(res.to_dict()), indent=2))
        return 0
    (fp, fs, ft), (tp, ts, tt) = res.from_cell, res.to_cell
    print(f"moving {res.amount:,.2f} from period {fp} ({fs}, {ft}) to period {tp} ({ts}, {tt}); the other "
          f"cells keep their {'nominal spend' if res.hold == 'spend' else 'spend per member'}:")
    print(f"  customer equity {res.customer_equity_before:,.2f} -> {res.customer_equity_after:,.2f}: "
          f"{'loses' if res.value_lost >= 0 else 'gains'} {abs(res.value_lost):,.2f}")
    if len(res.budgets):
        print(_table(res.budgets))
    return 0


def run_uncertainty(args) -> int:
    """``allocator uncertainty`` on a multi-period scenario: the plan evaluated across sampled parameters."""
    from ..errors import Problem
    from ..io import csv_text, write_unit
    from .model import compile_dynamic
    from .solve import solve_dynamic
    from .spec import DynamicUncertainty, load_dynamic
    from .uncertainty import evaluate_risk

    bad = []
    if getattr(args, "plan_files", None):
        bad.append(Problem("--plan", "is not available for multi-period scenarios yet"))
    if getattr(args, "alpha", None) is not None and not 0 < args.alpha <= 1:
        bad.append(Problem("--alpha", f"must be in (0, 1]; got {args.alpha:g}"))
    if getattr(args, "samples", None) is not None and not 2 <= args.samples <= 100_000:
        bad.append(Problem("--samples", f"must be between 2 and 100,000; got {args.samples}"))
    if bad:
        raise SpecError(bad)
    sc = load_dynamic(args.scenario)
    problem = compile_dynamic(sc)
    result = solve_dynamic(problem)
    risk = evaluate_risk(problem, result, sc.uncertainty or DynamicUncertainty(), count=args.samples,
                         seed=args.seed, alpha=args.alpha)
    files = write_unit(_out_dir(args, sc.name), {"risk.csv": csv_text(risk.table, float_format="%.12g"),
                                                 "risk_samples.csv": csv_text(risk.samples, float_format="%.12g")})
    if not getattr(args, "quiet", False):
        print(f"'{sc.name}' plan evaluated across {risk.count} parameter samples (alpha {risk.alpha:g}); plan: "
              f"its spend per cell held, plan_per_member: its spend per member held (evaluation only):")
        print(_table(risk.table))
        print("wrote " + ", ".join(str(p) for p in files))
    return 0


def run_sweep(args) -> int:
    """``allocator sweep`` on a multi-period scenario with ``variants``."""
    from .spec import resolved_mapping
    from .sweep import run_dynamic_sweep, write_sweep

    data = resolved_mapping(args.scenario)
    res = run_dynamic_sweep(data)
    files = write_sweep(res, _out_dir(args, str(data.get("name", "sweep")), "-sweep"))
    if not getattr(args, "quiet", False):
        s = res.summary
        counts = ", ".join(f"{n} {k}" for k, n in s["status"].value_counts().items())
        print(f"sweep '{data.get('name')}': {len(s)} variants ({counts}), {res.seconds:.2f} s (serial)")
        cols = ["scenario_id", *res.param_columns, "status"] + [c for c in (
            "customer_equity", "total_spend", "optimality_gap") if c in s]
        print(_table(s[cols].head(30)))
        for r in s[s["status"] != "optimal"].head(5).itertuples():
            print(f"{r.scenario_id}: {r.status}: {r.message}", file=sys.stderr)
        print("wrote " + ", ".join(str(f) for f in files))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m allocator.dynamic.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan")
    p.add_argument("scenario")
    p.add_argument("--out")
    p.add_argument("--tolerance", type=float)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=run_plan)
    v = sub.add_parser("validate")
    v.add_argument("scenario")
    v.set_defaults(handler=run_validate)
    f = sub.add_parser("frontier")
    f.add_argument("scenario")
    f.add_argument("--low", type=float, required=True)
    f.add_argument("--high", type=float, required=True)
    f.add_argument("--points", type=int, default=11)
    f.set_defaults(handler=run_frontier)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except InfeasibleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except AllocatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
