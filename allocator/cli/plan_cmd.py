"""``allocator plan``, ``allocator validate`` and ``allocator schema``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..compile import compile_scenario
from ..plan import Plan, make_plan
from ..spec import load_scenario


def register(sub) -> None:
    p = sub.add_parser("plan", help="solve a scenario and write plan.csv and summary.json",
                       description="Solve SCENARIO and write DIR/plan.csv and DIR/summary.json "
                                   "(default DIR: out/<scenario name>/).")
    p.add_argument("scenario", help="scenario file (.yaml or .json)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: out/<scenario name>/)")
    p.add_argument("--solver", help="auto (default), exact, pyomo_highs or global; overrides the scenario")
    p.add_argument("--tolerance", type=float, help="relative optimality gap for approximate solvers")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(handler=run_plan)

    v = sub.add_parser("validate", help="check a scenario file without solving")
    v.add_argument("scenario")
    v.set_defaults(handler=run_validate)

    s = sub.add_parser("schema", help="print the JSON Schema of scenario (or model) files")
    s.add_argument("--model", action="store_true", help="the schema of model files instead")
    s.set_defaults(handler=run_schema)


def run_plan(args) -> int:
    sc = load_scenario(args.scenario)
    problem = compile_scenario(sc)
    plan = make_plan(problem, args.solver or sc.solver.name,
                     args.tolerance if args.tolerance is not None else sc.solver.tolerance)
    out = Path(args.out) if args.out else Path("out") / sc.name
    paths = plan.write(out)
    if not args.quiet:
        print(render(plan))
        print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0


def run_validate(args) -> int:
    sc = load_scenario(args.scenario)
    problem = compile_scenario(sc)
    budget = "none (profit-maximizing)" if problem.budget is None else f"{problem.budget:,.0f}"
    print(f"{args.scenario}: valid; {len(sc.segments or [])} segments, {problem.n} cells, budget {budget}")
    return 0


def run_schema(args) -> int:
    from ..spec.models import ModelFile, Scenario

    print(json.dumps((ModelFile if args.model else Scenario).model_json_schema(), indent=2))
    return 0


def render(plan: Plan) -> str:
    """A readable plain-text view of a plan for the terminal."""
    s = plan.summary
    cur = s.currency or ""
    t = plan.table
    view = pd.DataFrame({
        "segment": t["segment"], "task": t["task"],
        "pool": t["pool"].map("{:,.0f}".format),
        "spend": t["spend"].map("{:,.0f}".format),
        "per member": t["spend_per_member"].map("{:,.2f}".format),
        "response": t["response_rate"].map("{:.2%}".format),
        "successes": t["expected_successes"].map("{:,.1f}".format),
        "value": t["expected_value"].map("{:,.0f}".format),
        "marginal": t["marginal_return"].map("{:.3f}".format),
        "bound": t["bound"],
    })
    if "current_spend" in t:
        view.insert(4, "current", t["current_spend"].map(lambda v: "" if pd.isna(v) else f"{v:,.0f}"))
    lines = [f"Plan for scenario '{s.scenario}' ({s.solver} solver, status {s.status})", "",
             view.to_string(index=False), ""]
    budget = "none" if s.budget is None else f"{s.budget:,.0f} {cur}".strip()
    lines.append(f"total spend {s.total_spend:,.0f} {cur} of budget {budget}; value {s.total_value:,.0f}; "
                 f"net value {s.net_value:,.0f}")
    rules = [b for b in s.binding_constraints if b["name"] != "budget.total"]
    lines.append(f"{'base' if rules else 'common'} marginal return {s.marginal_return:.6f}"
                 + (f" (budget binds: shadow price {s.budget_shadow_price:.6f} per {cur or 'unit'})"
                    if s.budget_binds else " (budget slack: spend stops where a unit returns a unit)")
                 + ("; cells in a binding rule's group differ from it by the rule's shadow price"
                    if rules else ""))
    lines.append(f"largest KKT deviation {s.kkt_max_deviation:.2e}; optimality gap {s.optimality_gap:.2e}")
    for b in rules:
        lines.append(f"binding: {b['rule']} (shadow price {b['shadow_price']:.4f} per {cur or 'unit'})")
    shares = ", ".join(f"{k} {v:.1%}" for k, v in s.allocation_ratio.items())
    lines.append(f"allocation across tasks: {shares}")
    if s.baseline:
        b = s.baseline
        lines.append(f"baseline: spend {b['spend']:,.0f}, net value {b['net_value']:,.0f}; "
                     f"the plan gains {b['net_value_gained']:,.0f} net value on the same cells")
    return "\n".join(lines)
