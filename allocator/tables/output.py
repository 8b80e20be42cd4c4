"""Plans from arrays: the plan columns, Parquet/CSV writing, and the table route end to end."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..problem import CompiledProblem
from .columns import load_cells_table
from .compile import _scenario_without_cells, compile_table


def plan_columns(problem: CompiledProblem, spend: np.ndarray, info: Mapping[str, Any] | None = None
                 ) -> dict[str, np.ndarray]:
    """The plan table's numeric columns (the first ones of :data:`allocator.plan.PLAN_COLUMNS`), as arrays.

    With the envelope solver's partial targeting (``info["treated_cells"]``), a treated cell's
    response is that of its treated share at the tangent spend plus the rest at the lower bound,
    and a ``treated_share`` column says which share of its members is treated.
    """
    from ..explain.prices import classify_cells

    rate = problem.response(spend)
    treated = np.zeros(problem.n)
    if info and info.get("treated_cells"):
        idx = np.asarray(info["treated_cells"], int)
        share = np.asarray(info["treated_shares"], float)
        at_t = np.array(problem.lower, float)
        at_t[idx] = np.asarray(info["treated_spends"], float)
        rate[idx] = share * problem.response(at_t)[idx] + (1 - share) * problem.response(problem.lower)[idx]
        treated[idx] = share
    succ = problem.pool * rate
    ev = succ * problem.value
    cols = {"segment": problem.segment, "task": problem.task, "pool": problem.pool, "spend": spend,
            "spend_per_member": spend / problem.pool, "response_rate": rate, "expected_successes": succ,
            "expected_value": ev, "marginal_return": problem.marginal_return(spend),
            "bound": classify_cells(problem, spend), "value_per_success": problem.value,
            "net_value": ev - spend, "min_spend": problem.lower, "max_spend": problem.upper}
    if info and info.get("treated_cells"):
        cols["treated_share"] = treated
    if not np.all(np.isnan(problem.current_spend)):
        cols["current_spend"] = problem.current_spend
        cols["spend_change"] = spend - np.where(np.isnan(problem.current_spend), problem.lower,
                                                problem.current_spend)
    return cols


def explanation(problem: CompiledProblem, result: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``required_return``, ``binding_rules`` and ``reason`` of a solved table plan, as in plan.csv,
    and the summary fields of the check behind them.

    They come from the plan's optimality check and its decomposition, exactly as a YAML plan's
    (:func:`allocator.plan.plan_check`, :func:`allocator.explain.explanation_columns`); the
    sentences are categories (a million cells share a few thousand distinct ones). The summary
    fields are summary.json's: ``status`` (``suboptimal`` when the check fails),
    ``kkt_max_deviation`` and ``optimality_check``.
    """
    from ..explain import binding_things, explanation_columns
    from ..plan import _status, plan_check

    report = plan_check(problem, result)
    d = report.decomposition
    things = binding_things(problem, result.spend, d, report.binding, report.activity, result.constraint_duals)
    check = {"status": _status(report, result), "kkt_max_deviation": report.kkt_max_deviation,
             "optimality_check": {"ok": report.ok, "feasible": report.feasible, "note": report.note,
                                  "violations": report.feasibility_violations + report.complementarity_violations}}
    return explanation_columns(problem, d, result.spend, things, categorical=True), check


def with_explanation(columns: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``columns`` with the ``extra`` columns right after ``bound`` (the order of plan.csv)."""
    out: dict[str, Any] = {}
    for k, v in columns.items():
        out[k] = v
        if k == "bound":
            out.update(extra)
    return out


def plan_table_bytes(columns: Mapping[str, np.ndarray], fmt: str = "parquet") -> bytes:
    """Plan columns rendered as a Parquet or CSV file, straight from the arrays via pyarrow."""
    import pyarrow as pa

    arrays = {}
    for k, v in columns.items():
        if isinstance(v, pd.Categorical):  # explanation sentences: codes and distinct texts
            arrays[k] = pa.DictionaryArray.from_arrays(
                pa.array(v.codes.astype(np.int32), mask=v.codes < 0),
                pa.array(np.asarray(v.categories, dtype=object), type=pa.string()))
            if fmt != "parquet":  # the CSV writer takes plain text
                arrays[k] = arrays[k].cast(pa.string())
        elif v.dtype == object:
            arrays[k] = pa.array(v, type=pa.string())
            if k in ("bound", "task") and fmt == "parquet":
                arrays[k] = arrays[k].dictionary_encode()
        else:
            arrays[k] = pa.array(v)
    table = pa.table(arrays)
    sink = pa.BufferOutputStream()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, sink)
    else:
        import pyarrow.csv as pc

        pc.write_csv(table, sink)
    return sink.getvalue().to_pybytes()


def write_plan_table(columns: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """Write plan columns to ``path`` (``.parquet`` or ``.csv``) atomically."""
    from ..io import atomic_write

    p = Path(path)
    atomic_write({p: plan_table_bytes(columns, "parquet" if p.suffix.lower() == ".parquet" else "csv")})
    return p


@dataclass
class TablePlan:
    """A plan solved from a cells table: the compiled problem, the solver's result, the plan columns."""

    problem: CompiledProblem
    result: Any
    columns: dict[str, np.ndarray]
    summary: dict[str, Any]
    timings: dict[str, float]

    @property
    def spend(self) -> np.ndarray:
        return self.result.spend

    def write(self, out_dir: str | Path, fmt: str = "parquet") -> list[Path]:
        """``plan.parquet`` (or ``plan.csv``) and ``summary.json`` in ``out_dir``."""
        from ..io import atomic_write

        out = Path(out_dir)
        # both files in one atomic move: a plan never appears beside another run's summary
        return atomic_write({out / f"plan.{fmt}": plan_table_bytes(self.columns, fmt),
                             out / "summary.json": json.dumps(self.summary, indent=2, default=float) + "\n"})


def plan_from_table(scenario: Mapping[str, Any] | Any, table: pd.DataFrame, solver: str | None = None,
                    tolerance: float | None = None, source: str | None = None) -> TablePlan:
    """Validate, compile and solve the cells ``table`` under ``scenario``'s budget and rules."""
    from ..solvers import solve

    t0 = time.perf_counter()
    problem = compile_table(scenario, table, source)
    t1 = time.perf_counter()
    sc = _scenario_without_cells(scenario)
    result = solve(problem, solver or sc.solver.name, tolerance if tolerance is not None else sc.solver.tolerance)
    t2 = time.perf_counter()
    # the check's temporaries are freed before the plan columns are made: a lower peak at a million cells
    extra, check = explanation(problem, result)
    cols = with_explanation(plan_columns(problem, result.spend, result.info), extra)
    t3 = time.perf_counter()
    net = float(cols["net_value"].sum()) - problem.activation_paid(result.spend)
    summary = {"scenario": problem.name, "status": check["status"], "cells": problem.n,
               "solver": result.solver, "net_value": net, "total_value": float(cols["expected_value"].sum()),
               "total_spend": float(result.spend.sum()), "budget": problem.budget,
               "marginal_return": result.marginal_return, "optimality_gap": result.optimality_gap,
               "upper_bound": result.upper_bound, "iterations": result.iterations, "passes": result.passes,
               "solver_info": {k: v for k, v in result.info.items() if isinstance(v, (int, float, str, bool))},
               "kkt_max_deviation": check["kkt_max_deviation"], "optimality_check": check["optimality_check"],
               "seconds": {"compile": t1 - t0, "solve": t2 - t1, "plan": t3 - t2}}
    return TablePlan(problem, result, cols, summary, summary["seconds"])


def run_table_scenario(path: str | Path, data: Mapping[str, Any], out: str | Path | None = None,
                       solver: str | None = None, tolerance: float | None = None, fmt: str = "parquet") -> TablePlan:
    """The CLI's route for a scenario file with ``cells: PATH``: read, plan, write."""
    path = Path(path)
    table = load_cells_table(data["cells"], path.parent)
    plan = plan_from_table(data, table, solver, tolerance, source=table.attrs.get("source"))
    from ..io import default_out_dir

    plan.write(Path(out) if out else default_out_dir(plan.problem.name), fmt)
    return plan
