"""Downloads of a stored plan: ``plan.xlsx`` and ``report.html``, as ``allocator plan --xlsx --html`` writes them.

The writers take an :class:`allocator.Plan`; the store keeps the scenario as validated, the
summary and the cells, not the Python object. The plan is re-derived, never re-solved:

1. the stored scenario is validated again (file references off) and compiled;
2. the stored spend is handed to :func:`allocator.plan.build_plan` as the solver's answer (with the
   stored solver, gap, bound, iterations and solver info), which runs the optimality check and the
   explanation on it: the report's headline and curves need that problem and that check;
3. the result is checked against the store: every cell's value and net value at the stored spend
   must equal the stored ones (``rtol`` 1e-9). A mismatch means the engine now reads the scenario
   differently from the one that stored it (``engine_version``): a 409 says so instead of a
   document whose numbers are not the stored plan's;
4. the table and summary shown are the stored ones (the cells and summary.json as the plan was
   answered), so the documents carry the stored numbers, solve time included.

A re-solve was the other route; it costs a solve (seconds to a minute for the global solver) and
need not land on the same plan when a time limit stopped the first one. Re-deriving costs what
``build_plan`` costs (milliseconds) and is exact by construction.
"""

from __future__ import annotations

import re
from dataclasses import asdict, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from .errors import ApiError

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HTML_TYPE = "text/html; charset=utf-8"
KINDS = {"plan.xlsx": XLSX_TYPE, "report.html": HTML_TYPE}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

#: cell columns whose numbers must be reproduced from the stored scenario at the stored spend
CHECKED = ("pool", "spend", "expected_successes", "expected_value", "activation_cost", "net_value")


def filename(rec: dict[str, Any], kind: str) -> str:
    """``<scenario>-v<version>-plan.xlsx``: safe in a ``Content-Disposition`` header on every system."""
    name = _UNSAFE.sub("_", str(rec["scenario"]))[:80].strip("._") or "plan"
    return f"{name}-v{rec['version']}-{kind}"


def stored_plan(rec: dict[str, Any], sc=None):
    """The :class:`~allocator.plan.Plan` of a stored record (``with_scenario``), re-derived without a solve.

    ``sc``: the stored scenario, validated (done here when not given).

    Raises
    ------
    ApiError
        409 ``not_reproducible`` when the stored scenario no longer gives the stored cells.
    """
    from ..compile import compile_scenario
    from ..plan import PlanSummary, build_plan
    from ..solvers import SolveResult
    from .operations import _scenario

    summary, cells = rec["summary"], pd.DataFrame(rec["cells"])
    problem = compile_scenario(sc if sc is not None else _scenario({"scenario": rec["scenario_data"]}))
    same_cells = (len(cells) == problem.n and list(cells["segment"]) == list(problem.segment)
                  and list(cells["task"]) == list(problem.task))
    if not same_cells:
        raise _not_reproducible(rec, "its cells are not the stored scenario's cells")
    info = dict(summary.get("solver_info") or {})
    result = SolveResult(spend=cells["spend"].to_numpy(float), solver=summary["solver"],
                         termination=info.pop("termination", None) or "optimal",
                         marginal_return=info.pop("solver_multiplier", None),
                         optimality_gap=_num(summary.get("optimality_gap"), np.inf),
                         upper_bound=summary.get("upper_bound"), iterations=int(summary.get("iterations") or 0),
                         passes=int(info.pop("passes", 0) or 0), info=info)
    plan = build_plan(problem, result, seconds=float(summary.get("solve_seconds") or 0.0))
    for col in CHECKED:
        if col in cells:
            got, want = plan.table[col].to_numpy(float), cells[col].to_numpy(float, na_value=np.nan)
            if not np.allclose(got, want, rtol=1e-9, atol=1e-9, equal_nan=True):
                raise _not_reproducible(rec, f"its {col} column differs from the stored plan's")
    # the stored table as answered; null stood for a non-finite number (an unbounded max_spend: inf)
    table = cells.astype({c: float for c in cells.columns if c in plan.table and _numeric(plan.table[c])})
    for col in table.columns:
        if col in plan.table and _numeric(plan.table[col]):
            rebuilt = plan.table[col].to_numpy(float)
            table[col] = np.where(table[col].isna() & np.isinf(rebuilt), rebuilt, table[col])
    mine = asdict(plan.summary)
    kept = {f.name: (summary[f.name] if summary.get(f.name) is not None else mine[f.name])
            for f in fields(PlanSummary)}
    return replace(plan, table=table, summary=PlanSummary(**kept))


def document(rec: dict[str, Any], kind: str) -> bytes:
    """``plan.xlsx`` or ``report.html`` of a stored record (``with_scenario``) as bytes."""
    from .operations import _scenario

    sc = _scenario({"scenario": rec["scenario_data"]})
    plan = stored_plan(rec, sc)
    meta = {"scenario_hash": rec["input_hash"], "version": rec["engine_version"],
            "time": rec["created_at"].replace("T", " ")[:19]}
    if kind == "plan.xlsx":
        from ..workbook import plan_workbook

        return plan_workbook(plan, meta)
    from ..report import plan_report

    # the frontier chart re-solves the plan at every budget: quick on concave curves, a global solve
    # each on S-shaped ones, which a download should not start
    frontier = "auto" if bool(plan.problem.concave.all()) else None
    return plan_report(plan, sc, meta=meta, frontier=frontier).encode()


def _not_reproducible(rec: dict[str, Any], why: str) -> ApiError:
    from .. import __version__

    return ApiError(409, "not_reproducible", f"plan {rec['id']} was stored by engine {rec['engine_version']}; "
                                             f"engine {__version__} cannot re-derive it ({why}); fetch its JSON "
                                             f"or CSV, or plan its scenario again")


def _numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _num(v: Any, default: float) -> float:
    return default if v is None else float(v)
