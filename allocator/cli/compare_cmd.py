"""``allocator compare A.yaml B.yaml [...]``: plans side by side, printed and written."""

from __future__ import annotations

from pathlib import Path

from ..compile import compile_scenario
from ..plan import make_plan


def register(sub) -> None:
    c = sub.add_parser("compare", help="plan several scenarios and show them side by side",
                       description="Plan each SCENARIO and write DIR/compare.csv, DIR/compare.xlsx (and with "
                                   "--html DIR/report.html): net value, spend by task and segment, required "
                                   "returns, what binds, and the cells whose spend differs most.")
    c.add_argument("scenarios", nargs="+", metavar="SCENARIO",
                   help="scenario files (.yaml, .json or .xlsx), two or more")
    c.add_argument("--out", metavar="DIR", help="output folder (default: out/compare/)")
    c.add_argument("--top", type=int, default=10, help="cells listed whose spend differs most (default 10)")
    c.add_argument("--html", action="store_true", help="also write DIR/report.html")
    c.add_argument("--quiet", action="store_true", help="print nothing on success")
    c.set_defaults(handler=run_compare)


def _names(scenarios, paths: list[str]) -> list[str]:
    """Scenario names as column labels; where two clash, the file names instead."""
    names = [sc.name for sc in scenarios]
    if len(set(names)) < len(names):
        names = [Path(p).stem if names.count(n) > 1 else n for n, p in zip(names, paths)]
    if len(set(names)) < len(names):
        names = [f"{n} ({k + 1})" for k, n in enumerate(names)]
    return names


def run_compare(args) -> int:
    from ..errors import Problem, SpecError
    from ..io import atomic_write, csv_text
    from ..report.compare import compare_plans, comparison_report
    from ..workbook import comparison_workbook
    from .plan_cmd import load_any

    if len(args.scenarios) < 2:
        raise SpecError(Problem("scenarios", f"compare needs two or more scenario files; got {len(args.scenarios)}"))
    scenarios = [load_any(p) for p in args.scenarios]
    plans = [make_plan(compile_scenario(sc), sc.solver.name, sc.solver.tolerance) for sc in scenarios]
    comp = compare_plans(plans, _names(scenarios, args.scenarios), top=args.top)
    out = Path(args.out) if args.out else Path("out") / "compare"
    files: dict[Path, str | bytes] = {
        out / "compare.csv": csv_text(comp.table, float_format="%.10g"),
        out / "compare.xlsx": comparison_workbook(comp),
    }
    if args.html:
        files[out / "report.html"] = comparison_report(comp)
    paths = atomic_write(files)
    if not args.quiet:
        print(render_comparison(comp))
        print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0


def render_comparison(comp, width: int = 100) -> str:
    """The comparison as two ``rich`` tables: side by side, then the cells whose spend differs most."""
    from ..rounding import minor_unit
    from .plan_cmd import rich_table

    d = max(minor_unit(p.summary.currency) for p in comp.plans)

    def cell(v, unit: str) -> str:
        if v is None or isinstance(v, float) and v != v:
            return ""
        if isinstance(v, str):
            return v
        return f"{v:,.4f}" if unit == "per unit" else f"{v:,.{d}f}"

    from .plan_cmd import _table_width

    # what binds is a list of names: printed under the table, where it need not fit a column
    tab = comp.table[comp.table["item"] != "binds"]
    cols = [("item", list(tab["item"]), ""), ("unit", list(tab["unit"]), "")]
    cols += [(n, [cell(v, u) for v, u in zip(tab[n], tab["unit"])], "") for n in comp.names]
    binds = comp.table.loc[comp.table["item"] == "binds", comp.names].iloc[0]
    diff = [("segment", list(comp.differing["segment"]), ""), ("task", list(comp.differing["task"]), "")]
    diff += [(n, [cell(v, "") for v in comp.differing[n]], "") for n in [*comp.names, "spread"]]
    return "\n".join([f"Comparison of {', '.join(comp.names)}", "",
                      rich_table(cols, width=max(width, _table_width(cols)), footer=False), "",
                      *(f"binds in {n}: {binds[n]}" for n in comp.names), "",
                      f"cells whose spend differs most ({comp.currency or 'currency'})", "",
                      rich_table(diff, width=max(width, _table_width(diff)), footer=False)])
