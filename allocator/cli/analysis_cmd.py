"""``allocator frontier``, ``sensitivity``, ``whatif`` and ``uncertainty``."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd

from ..io import csv_text, default_out_dir, write_unit

FLOAT = "%.12g"


def register(sub) -> None:
    f = sub.add_parser("frontier", help="optimal plan as a function of the budget (multiplier path)",
                       description="Net value, value and spend by task, and the common marginal return for "
                                   "budgets from A to B; writes DIR/frontier.csv and DIR/frontier_events.csv "
                                   "(the budgets at which cells switch on or reach their caps).")
    f.add_argument("scenario")
    f.add_argument("--from", dest="start", type=float, required=True, metavar="A", help="smallest budget")
    f.add_argument("--to", dest="stop", type=float, required=True, metavar="B", help="largest budget")
    f.add_argument("--points", type=int, default=50, help="number of budgets (default 50)")
    f.add_argument("--method", choices=("auto", "path", "resolve"), default="auto",
                   help="auto (multiplier path where it applies), path, or resolve every budget")
    f.add_argument("--out", metavar="DIR", help="output folder (default: out/<scenario name>/)")
    f.add_argument("--xlsx", action="store_true", help="also write DIR/frontier.xlsx (Frontier and Events sheets)")
    f.add_argument("--html", action="store_true",
                   help="also write DIR/report.html (the frontier chart and its table; one file, opens offline)")
    f.add_argument("--quiet", action="store_true")
    f.set_defaults(handler=run_frontier)

    s = sub.add_parser("sensitivity", help="d(net value)/d(parameter) and shadow prices, without re-solving",
                       description="Solve the scenario, then write DIR/sensitivity.csv (every cell's curve "
                                   "parameters, value and pool: derivative and elasticity of the optimal net "
                                   "value) and DIR/shadow_prices.csv (binding budget, bounds, constraints).")
    s.add_argument("scenario")
    s.add_argument("--top", type=int, default=10, help="parameters to print (default 10)")
    s.add_argument("--out", metavar="DIR", help="output folder (default: out/<scenario name>/)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(handler=run_sensitivity)

    w = sub.add_parser("whatif", help="move spend between two cells of the optimal plan: value lost",
                       description="Solve the scenario, move AMOUNT from one cell to another, and report the "
                                   "net value lost (exact) beside its first-order estimate. A move that breaks "
                                   "a rule (budgets, shares, ratios, spend and efficiency rules, locks, "
                                   "minimum-if-active spends, the spend unit, cell bounds) is refused with "
                                   "exit code 3, naming the rules; --resolve re-optimizes the other cells "
                                   "with the move forced instead.")
    w.add_argument("scenario")
    w.add_argument("--move", type=float, required=True, metavar="AMOUNT")
    w.add_argument("--from", dest="from_cell", required=True, metavar="SEGMENT/TASK")
    w.add_argument("--to", dest="to_cell", required=True, metavar="SEGMENT/TASK")
    w.add_argument("--resolve", action="store_true",
                   help="fix the two cells at their moved spends and re-optimize the other cells")
    w.add_argument("--hold", choices=("spend", "per_member"),
                   help="multi-period scenarios (cells PERIOD/SEGMENT/TASK): what the other cells keep when "
                        "spend moves (default spend)")
    w.add_argument("--json", action="store_true", help="print JSON only (a refused move too, with exit code 3)")
    w.set_defaults(handler=run_whatif)

    u = sub.add_parser("uncertainty", help="plans across parameter samples: risk-neutral vs robust",
                       description="Draw parameters (the model's samples and/or the scenario's "
                                   "`uncertainty.distributions`), optimize the expected value and a risk "
                                   "measure with a certified gap (S-shaped curves, tables, spend units and "
                                   "minimum-if-active rules included), and compare them with the nominal plan, "
                                   "the baseline and any --plan. Writes DIR/risk.csv (one row per plan) and "
                                   "DIR/risk_plans.csv; a refused optimization (hurdle/target objective, "
                                   "efficiency rules) still writes the evaluated plans, then exits 4.")
    u.add_argument("scenario")
    u.add_argument("--samples", type=int, help="number of draws from distributions (default: scenario, else 1000); "
                                               "with a model's draws, its first N")
    u.add_argument("--seed", type=int, help="random seed (default: scenario's)")
    u.add_argument("--alpha", type=float, help="tail share for CVaR and the quantile (default: scenario, else 0.1)")
    u.add_argument("--objective", choices=("mean", "cvar", "quantile"), help="robust plan's measure (default cvar)")
    u.add_argument("--tolerance", type=float, default=1e-6, help="relative optimality gap (default 1e-6)")
    u.add_argument("--plan", dest="plan_files", action="append", default=[], metavar="CSV",
                   help="also evaluate this plan (columns segment, task, spend, e.g. a plan.csv); repeatable")
    u.add_argument("--evaluate-only", action="store_true",
                   help="evaluate the baseline, nominal and --plan plans on every sample; optimize nothing")
    u.add_argument("--out", metavar="DIR", help="output folder (default: out/<scenario name>/)")
    u.add_argument("--quiet", action="store_true")
    u.set_defaults(handler=run_uncertainty)


def _out(args, name: str) -> Path:
    return Path(args.out) if args.out else default_out_dir(name)


def _fmt(df: pd.DataFrame) -> str:
    with pd.option_context("display.width", 220, "display.max_columns", 30, "display.float_format",
                           "{:,.6g}".format):
        return df.to_string(index=False)


def _run_dynamic_frontier(args) -> int:
    """A multi-period scenario's frontier over its total budget: each budget re-solved and certified."""
    import numpy as np

    from ..dynamic import compile_dynamic, load_dynamic
    from ..dynamic.analysis import dynamic_frontier

    if getattr(args, "html", False):
        from ..errors import Problem, SpecError

        raise SpecError(Problem("--html", "is not available for multi-period frontiers yet; use --xlsx, or "
                                          "`allocator plan SCENARIO --html` for the plan's report"))
    dsc = load_dynamic(args.scenario)
    table = dynamic_frontier(compile_dynamic(dsc), np.linspace(args.start, args.stop, args.points))
    out = _out(args, dsc.name)
    unit: dict[str, str | bytes] = {"frontier.csv": csv_text(table, float_format=FLOAT)}
    if getattr(args, "xlsx", False):
        from ..workbook.plan_book import frontier_formats
        from ..workbook.sheets import new_workbook, to_bytes, write_table

        wb = new_workbook()
        write_table(wb.create_sheet("Frontier"), table, frontier_formats(table, dsc.currency))
        unit["frontier.xlsx"] = to_bytes(wb)
    files = write_unit(out, unit)
    if not args.quiet:
        print(table.to_string(index=False))
        print("\nwrote " + ", ".join(str(p) for p in files))
    return 0


def _frontier_extras(args, fr, currency: str | None, budget: float | None) -> dict[str, str | bytes]:
    """``frontier.xlsx`` and ``report.html`` when ``--xlsx`` / ``--html`` ask for them (written with the CSVs)."""
    extra: dict[str, str | bytes] = {}
    if getattr(args, "xlsx", False):
        from ..workbook import frontier_workbook

        extra["frontier.xlsx"] = frontier_workbook(fr, currency)
    if getattr(args, "html", False):
        from ..report import frontier_report

        extra["report.html"] = frontier_report(fr, currency, budget)
    return extra


def run_frontier(args) -> int:
    from ..analysis import budget_frontier
    from ..spec import load_scenario
    from .plan_cmd import _is_dynamic

    if _is_dynamic(args.scenario):
        return _run_dynamic_frontier(args)
    sc = load_scenario(args.scenario)
    fr = budget_frontier(sc, args.start, args.stop, points=args.points, method=args.method)
    out = _out(args, sc.name)
    unit: dict[str, str | bytes] = {"frontier.csv": csv_text(fr.table, float_format=FLOAT),
                                    "frontier_events.csv": csv_text(fr.events, float_format=FLOAT)}
    unit.update(_frontier_extras(args, fr, sc.currency, sc.budget.total if sc.budget is not None else None))
    files = write_unit(out, unit)
    if not args.quiet:
        cols = [c for c in ("budget", "marginal_return", "net_value", "total_value", "activation_cost",
                            "spend_acquisition", "spend_retention", "spend_winback", "cells_funded",
                            "net_value_gained") if c in fr.table and (c != "activation_cost" or fr.table[c].any())]
        print(f"frontier of '{sc.name}': {len(fr.table)} budgets by {fr.method} in {fr.seconds:.3f} s")
        t = fr.table[cols]
        print(_fmt(t if len(t) <= 25 else t.iloc[:: max(1, len(t) // 20)]))
        print(f"{len(fr.events)} events (cells switching on or reaching caps) in the range")
        print("wrote " + ", ".join(str(p) for p in files))
    return 0


def run_sensitivity(args) -> int:
    from ..dynamic.spec import is_dynamic_file

    if is_dynamic_file(args.scenario):   # a multi-period scenario (issue 9)
        from ..dynamic.cli import run_sensitivity as run_dynamic

        return run_dynamic(args)
    from .. import plan as solve_plan
    from ..analysis.sensitivity import sensitivity
    from ..spec import load_scenario

    sc = load_scenario(args.scenario)
    sens = sensitivity(solve_plan(sc))
    out = _out(args, sc.name)
    files = write_unit(out, {"sensitivity.csv": csv_text(sens.parameters, float_format=FLOAT),
                             "shadow_prices.csv": csv_text(sens.shadow_prices, float_format=FLOAT)})
    if not args.quiet:
        print(f"sensitivity of the optimal net value {sens.net_value:,.0f} of '{sc.name}' (envelope theorem)")
        print("\nlargest effects of a 1% change (elasticity = % change of net value):")
        print(_fmt(sens.top(args.top)))
        print("\nshadow prices of binding constraints (net value per unit relaxed):")
        print(_fmt(sens.shadow_prices) if len(sens.shadow_prices) else "(none binding)")
        print("wrote " + ", ".join(str(p) for p in files))
    return 0


def run_whatif(args) -> int:
    from ..dynamic.spec import is_dynamic_file

    if is_dynamic_file(args.scenario):   # a multi-period scenario (issue 9)
        from ..dynamic.cli import run_whatif as run_dynamic

        return run_dynamic(args)
    from .. import plan as solve_plan
    from ..analysis.whatif import InfeasibleMoveError, what_if_move

    plan = solve_plan(args.scenario)
    try:
        res = what_if_move(plan, args.move, args.from_cell, args.to_cell, resolve=args.resolve)
    except InfeasibleMoveError as exc:
        if not args.json:
            raise
        # machine readers get the refusal as JSON too; the message still goes to stderr
        print(json.dumps({"status": "refused", "message": str(exc).splitlines()[0],
                          "rules_broken": [vars(b) for b in exc.broken]}, indent=2, allow_nan=False))
        print(f"error: {exc}", file=sys.stderr)
        from . import EXIT_INFEASIBLE

        return EXIT_INFEASIBLE
    if args.json:
        print(json.dumps(res.to_dict(), indent=2, allow_nan=False))
        return 0
    (fs, ft), (ts, tt) = res.from_cell, res.to_cell
    print(f"moving {res.amount:,.2f} from ({fs}, {ft}) to ({ts}, {tt}):")
    if res.status == "resolved":
        print(f"  re-solved: the two cells fixed at their moved spends, the other cells re-optimized "
              f"({res.solver}, gap {res.optimality_gap or 0.0:.1e})" + (f"; {res.note}" if res.note else ""))
        for text in res.rules_broken:
            print(f"  the plain move would break: {text}")
    else:
        print("  every rule holds; the other cells are held")
    print(f"  net value {res.net_value_before:,.2f} -> {res.net_value_after:,.2f}: "
          f"{'loses' if res.value_lost >= 0 else 'gains'} {abs(res.value_lost):,.2f}")
    print(f"  marginal returns: {res.marginal_return_from:.6g} (from) vs {res.marginal_return_to:.6g} (to); "
          f"first-order estimate of the loss {res.first_order_estimate:,.2f}")
    act = ["activation_cost_before", "activation_cost_after"]
    print(_fmt(res.cells if res.cells[act].to_numpy().any() else res.cells.drop(columns=act)))
    return 0


def _read_plan(path: str, problem) -> "np.ndarray":
    """Spend per cell from a CSV with columns segment, task and spend (or plan_spend); unknown cells are errors."""
    import numpy as np

    from ..errors import Problem, SpecError

    df = pd.read_csv(path)
    col = next((c for c in ("spend", "plan_spend") if c in df.columns), None)
    if col is None or not {"segment", "task"} <= set(df.columns):
        raise SpecError(Problem("--plan", f"{path} needs columns segment, task and spend; got {', '.join(df.columns)}"))
    where = {(str(a), str(b)): i for i, (a, b) in enumerate(zip(problem.segment, problem.task))}
    spend = np.full(problem.n, np.nan)
    problems = []
    for seg, task, val in zip(df["segment"].astype(str), df["task"].astype(str), df[col]):
        i = where.get((seg, task))
        if i is None:
            problems.append(Problem("--plan", f"{path}: no such cell in the scenario", f"({seg}, {task})"))
        else:
            spend[i] = float(val)
    missing = [problem.label(i) for i in np.flatnonzero(np.isnan(spend))]
    if missing:
        problems.append(Problem("--plan", f"{path}: no spend for cell(s) {', '.join(missing[:10])}"))
    if problems:
        raise SpecError(problems)
    return spend


def run_uncertainty(args) -> int:
    from ..dynamic.spec import is_dynamic_file

    if is_dynamic_file(args.scenario):   # a multi-period scenario (issue 9)
        from ..dynamic.cli import run_uncertainty as run_dynamic

        return run_dynamic(args)
    import sys

    from ..analysis.uncertainty import compare_risk, draw_samples
    from ..compile import compile_scenario
    from ..errors import Problem, SpecError
    from ..spec import load_scenario
    from . import EXIT_SOLVER

    if args.alpha is not None and not (0 < args.alpha <= 1):
        raise SpecError(Problem("--alpha", f"must be in (0, 1]; got {args.alpha:g}"))
    from ..analysis.samples import MAX_SAMPLES, check_seed

    bad = []
    if args.samples is not None and not 2 <= args.samples <= MAX_SAMPLES:
        bad.append(Problem("--samples", f"must be between 2 and {MAX_SAMPLES:,}; got {args.samples}"))
    if args.seed is not None:
        bad += check_seed(args.seed, "--seed")
    if not (math.isfinite(args.tolerance) and 0 < args.tolerance < 1):
        bad.append(Problem("--tolerance", f"must be a relative gap in (0, 1), e.g. 1e-6; got {args.tolerance:g}"))
    if bad:
        raise SpecError(bad)
    sc = load_scenario(args.scenario)
    prob = compile_scenario(sc)
    given = {Path(f).stem if len(args.plan_files) == 1 else f"{Path(f).stem}_{k}": _read_plan(f, prob)
             for k, f in enumerate(args.plan_files)}
    samples = draw_samples(sc, count=args.samples, seed=args.seed)
    # a refused optimization still leaves the evaluated plans (baseline, nominal, --plan) to write
    cmp = compare_risk(sc, samples, objective=args.objective, alpha=args.alpha, tolerance=args.tolerance,
                       plans={f"given_{k}": v for k, v in given.items()}, optimize=not args.evaluate_only,
                       on_refusal="skip")
    out = _out(args, sc.name)
    files = write_unit(out, {"risk.csv": csv_text(cmp.table, float_format=FLOAT),
                             "risk_plans.csv": csv_text(cmp.plans, float_format=FLOAT)})
    if not args.quiet:
        print(f"'{sc.name}' across {samples.count} parameter samples ({samples.method}):")
        print(_fmt(cmp.table))
        for name, rp in cmp.optimized.items():
            extra = f"; {rp.note}" if rp.note else ""
            gap = "n/a" if rp.gap is None else f"{rp.gap:.1e}"
            print(f"{name}: {rp.objective} = {rp.value:,.2f} (certified gap {gap}, {rp.rounds} rounds, "
                  f"{rp.seconds:.2f} s){extra}")
        print("wrote " + ", ".join(str(p) for p in files))
    if cmp.refused:
        for name, why in cmp.refused.items():
            print(f"error: {name} not optimized: {why}", file=sys.stderr)
        print(f"(risk.csv holds the evaluated plans: {', '.join(cmp.risk)})", file=sys.stderr)
        return EXIT_SOLVER
    return 0
