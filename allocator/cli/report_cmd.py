"""``allocator report SCENARIO [--out DIR]``: the plan's one-file HTML report."""

from __future__ import annotations

from pathlib import Path

from ..compile import compile_scenario
from ..plan import make_plan


def register(sub) -> None:
    r = sub.add_parser("report", help="write the plan's one-file HTML report (opens offline)",
                       description="Plan SCENARIO and write DIR/report.html (default DIR: out/<scenario name>/): "
                                   "headline, response curves, marginal against required returns, the budget "
                                   "frontier, where the money moved, and the tables.")
    r.add_argument("scenario", help="scenario file (.yaml, .json or .xlsx)")
    r.add_argument("--out", metavar="DIR", help="output folder (default: out/<scenario name>/)")
    r.add_argument("--solver", help="auto (default), exact, dual, pyomo_highs or global; overrides the scenario")
    r.add_argument("--no-frontier", action="store_true", help="leave out the budget frontier (it re-solves "
                                                                "each budget when the multiplier path does not apply)")
    r.add_argument("--quiet", action="store_true", help="print nothing on success")
    r.set_defaults(handler=run_report)


def run_report(args) -> int:
    from ..io import atomic_write
    from ..report import plan_report
    from ..workbook import scenario_hash
    from .plan_cmd import load_any

    sc = load_any(args.scenario)
    plan = make_plan(compile_scenario(sc), args.solver or sc.solver.name, sc.solver.tolerance)
    out = Path(args.out) if args.out else Path("out") / sc.name
    text = plan_report(plan, sc, meta={"scenario_hash": scenario_hash(sc)},
                       frontier=None if args.no_frontier else "auto")
    (path,) = atomic_write({out / "report.html": text})
    if not args.quiet:
        s = plan.summary
        print(f"report for scenario '{s.scenario}': net value {s.net_value:,.0f}; wrote {path}")
    return 0
