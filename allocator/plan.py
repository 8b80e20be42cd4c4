"""Plans: the solved allocation as a table and a summary, with the optimality evidence.

A :class:`Plan` is what users see: ``plan.table`` (a pandas DataFrame, one row
per cell) and ``plan.summary`` (a :class:`PlanSummary`, serializable to JSON).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .money import Money, activation_per_cell, money_of
from .optimality import OptimalityReport, check_optimality
from .problem import CompiledProblem
from .solvers import SolveResult
from .spec.models import TASKS

PLAN_COLUMNS = ["segment", "task", "pool", "spend", "spend_per_member", "response_rate",
                "expected_successes", "expected_value", "marginal_return", "bound", "required_return",
                "binding_rules"]


@dataclass
class PlanSummary:
    """Totals and optimality evidence of a plan (the content of ``summary.json``)."""

    scenario: str
    status: str
    currency: str | None
    net_value: float
    total_value: float
    total_spend: float
    budget: float | None
    use_all: bool
    budget_binds: bool
    marginal_return: float
    budget_shadow_price: float
    kkt_max_deviation: float
    optimality_check: dict[str, Any]
    solver: str
    optimality_gap: float
    upper_bound: float | None
    solve_seconds: float
    iterations: int
    by_task: dict[str, dict[str, float]]
    by_segment: dict[str, dict[str, float]]
    allocation_ratio: dict[str, float]
    baseline: dict[str, Any] | None = None
    solver_info: dict[str, Any] = field(default_factory=dict)
    # constraints (issue 3): every binding rule with its shadow price (value per currency unit of
    # relaxing it), how the upper bound behind optimality_gap was obtained, the objective, and
    # activation costs paid (already subtracted from net_value)
    binding_constraints: list[dict[str, Any]] = field(default_factory=list)
    bound_method: str | None = None
    objective: dict[str, Any] = field(default_factory=dict)
    activation_cost: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if np.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


@dataclass
class Plan:
    """A solved plan.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per cell; the first columns are ``PLAN_COLUMNS``.
    summary : PlanSummary
    problem : CompiledProblem
    result : SolveResult
    report : OptimalityReport
    """

    table: pd.DataFrame
    summary: PlanSummary
    problem: CompiledProblem
    result: SolveResult
    report: OptimalityReport

    @property
    def spend(self) -> np.ndarray:
        return self.result.spend

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write ``plan.csv`` and ``summary.json`` into ``out_dir`` atomically; return their paths."""
        from .io import write_plan_files

        return write_plan_files(self, Path(out_dir))


def _totals(df: pd.DataFrame, key: str) -> dict[str, dict[str, float]]:
    cols = ["spend", "expected_value", "expected_successes", "activation_cost"]
    g = df.groupby(key, sort=False)[[c for c in cols if c in df]].sum()
    if "activation_cost" not in g:
        g["activation_cost"] = 0.0
    g["net_value"] = g["expected_value"] - g["spend"] - g["activation_cost"]
    total = g["spend"].sum()
    g["spend_share"] = g["spend"] / total if total > 0 else 0.0
    return {str(k): {c: float(v) for c, v in row.items()} for k, row in g.to_dict("index").items()}


def value_factors(problem: CompiledProblem, spend: np.ndarray) -> np.ndarray:
    """Per cell, the value curve's factor ``w(x)`` on the value of a success (1 without a value curve)."""
    out = np.ones(problem.n)
    x = np.asarray(spend, float) / problem.pool
    for b in problem.blocks:
        vf = getattr(b.family, "value_factor", None)
        if vf is not None:
            w = np.asarray(vf(x[b.index], b.params), float)
            # a factor of 0 leaves p undetermined from p w: show the response curve's own value there
            out[b.index] = np.where(w != 0, w, 1.0)
    return out


def _status(report: OptimalityReport, result: SolveResult) -> str:
    """``optimal``, or why not: the solver's own termination (``time_limit``) or a failed check."""
    if result.termination not in ("optimal", "", None):
        return str(result.termination)
    return "optimal" if report.ok else "suboptimal"


def _baseline(problem: CompiledProblem, cur: np.ndarray, plan: Money, df: pd.DataFrame) -> dict[str, Any]:
    """The plan beside today's spend ``cur`` over all cells (no baseline given: the cell's minimum)."""
    has_cur = ~np.isnan(problem.current_spend)
    base = money_of(problem, cur)
    moved = df[["segment", "task", "spend_change"]].sort_values("spend_change")
    return {
        "cells_with_baseline": int(has_cur.sum()), "cells": int(problem.n),
        "spend": base.spend, "value": base.value, "activation_cost": base.activation_cost,
        "net_value": base.net_value, "plan_net_value": plan.net_value,
        "net_value_gained": plan.net_value - base.net_value,
        "largest_increases": [{"segment": r.segment, "task": r.task, "spend_change": r.spend_change}
                              for r in moved.iloc[::-1].head(3).itertuples() if r.spend_change > 0],
        "largest_cuts": [{"segment": r.segment, "task": r.task, "spend_change": r.spend_change}
                         for r in moved.head(3).itertuples() if r.spend_change < 0],
    }


def build_plan(problem: CompiledProblem, result: SolveResult, seconds: float = 0.0) -> Plan:
    """Assemble the table and summary for ``result``, running the shared optimality check.

    Every explanation (``required_return``, ``binding_rules``, ``reason``, ``bound``, the
    binding constraints and their prices) is read off the check's one decomposition; every
    total comes from :func:`allocator.money.money_of`.
    """
    from .analysis.baseline import baseline_spend
    from .explain import binding_rules, binding_things, reasons

    s = result.spend
    # approximate solvers declare the resolution they refine marginal returns to
    report = check_optimality(problem, s, rtol=max(1e-6, float(result.info.get("kkt_tolerance", 0.0))))
    d = report.decomposition
    # with a value curve the compiled response is p(x) w(x); the table shows p and the value of a success
    factor = value_factors(problem, s)
    rate = problem.response(s) / factor
    ev = problem.pool * problem.value * rate * factor
    act = activation_per_cell(problem, s)
    things = binding_things(problem, s, d, report.binding, report.activity, result.constraint_duals)
    df = pd.DataFrame({
        "segment": problem.segment, "task": problem.task, "pool": problem.pool, "spend": s,
        "spend_per_member": s / problem.pool, "response_rate": rate,
        "expected_successes": problem.pool * rate, "expected_value": ev,
        "marginal_return": problem.marginal_return(s), "bound": d.bound,
    })
    df["required_return"] = d.required_value()
    df["binding_rules"] = binding_rules(d, things, problem)
    df["reason"] = reasons(problem, d, s)
    df["value_per_success"] = problem.value * factor
    df["activation_cost"] = act
    df["net_value"] = ev - s - act
    df["min_spend"] = problem.lower
    df["max_spend"] = problem.upper
    money = money_of(problem, s)
    baseline = None
    has_cur = ~np.isnan(problem.current_spend)
    if has_cur.any():
        cur = baseline_spend(problem)
        df["current_spend"] = np.where(has_cur, problem.current_spend, np.nan)
        df["current_expected_value"] = problem.expected_value(cur)
        df["current_marginal_return"] = problem.marginal_return(cur)
        df["spend_change"] = s - cur
        df["value_change"] = ev - df["current_expected_value"]
        baseline = _baseline(problem, cur, money, df)
    by_task = _totals(df, "task")
    lam = report.marginal_return
    budget_price = abs(report.shadow_prices.get("budget.total", 0.0)) if report.budget_binds else 0.0
    summary = PlanSummary(
        scenario=problem.name, status=_status(report, result), currency=problem.currency,
        net_value=money.net_value, total_value=money.value, total_spend=money.spend,
        budget=problem.budget, use_all=problem.use_all, budget_binds=report.budget_binds,
        marginal_return=lam, budget_shadow_price=budget_price,
        kkt_max_deviation=report.kkt_max_deviation,
        optimality_check={"ok": report.ok, "feasible": report.feasible, "note": report.note,
                          "violations": report.feasibility_violations + report.complementarity_violations},
        solver=result.solver, optimality_gap=result.optimality_gap, upper_bound=result.upper_bound,
        solve_seconds=seconds, iterations=result.iterations,
        by_task=by_task, by_segment=_totals(df, "segment"),
        allocation_ratio={t: by_task.get(t, {}).get("spend_share", 0.0) for t in TASKS},
        baseline=baseline,
        solver_info={k: v for k, v in {**result.info, "passes": result.passes,
                                        "solver_multiplier": result.marginal_return,
                                        "termination": result.termination}.items()},
        binding_constraints=things,
        bound_method=result.info.get("bound_method") or result.info.get("lp_bound_method")
        or ("exact multiplier solution: the Lagrangian dual at the common marginal return"
            if result.solver == "exact" else None),
        objective=_objective_summary(problem, s, d),
        activation_cost=money.activation_cost,
    )
    return Plan(table=df, summary=summary, problem=problem, result=result, report=report)


def _objective_summary(problem: CompiledProblem, spend: np.ndarray, d=None) -> dict[str, Any]:
    obj = problem.objective
    if obj.kind == "net_value":
        return {"type": "net_value", "rate": 1.0}
    if obj.kind == "hurdle":
        return {"type": "hurdle", "rate": obj.rate,
                "value_minus_hurdle_cost": float(problem.expected_value(spend).sum() - obj.rate * np.sum(spend))
                - problem.activation_paid(spend)}
    reached = float((np.asarray(obj.weight) * problem.pool * problem.response(spend)).sum())
    lam = None if d is None else float(d.prices.base)
    return {"type": "target", "metric": obj.metric, "target": obj.target, "reached": reached,
            "met": bool(reached >= obj.target * (1 - 1e-9)),
            "spend_plus_activation": float(np.sum(spend)) + problem.activation_paid(spend), "rule": obj.text,
            "marginal_return": lam, "cost_per_unit_of_target": (1.0 / lam) if lam else None}


def make_plan(problem: CompiledProblem, solver: str = "auto", tolerance: float | None = None) -> Plan:
    """Solve ``problem`` and build its plan (timed)."""
    from .solvers import solve

    t0 = time.perf_counter()
    result = solve(problem, solver, tolerance)
    return build_plan(problem, result, seconds=time.perf_counter() - t0)
