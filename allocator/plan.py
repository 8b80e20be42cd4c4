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

from .optimality import OptimalityReport, check_optimality
from .problem import CompiledProblem
from .solvers import SolveResult
from .spec.models import TASKS

PLAN_COLUMNS = ["segment", "task", "pool", "spend", "spend_per_member", "response_rate",
                "expected_successes", "expected_value", "marginal_return", "bound"]


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
    g = df.groupby(key, sort=False)[["spend", "expected_value", "expected_successes"]].sum()
    g["net_value"] = g["expected_value"] - g["spend"]
    total = g["spend"].sum()
    g["spend_share"] = g["spend"] / total if total > 0 else 0.0
    return {str(k): {c: float(v) for c, v in row.items()} for k, row in g.iterrows()}


def bound_reasons(problem: CompiledProblem, spend: np.ndarray, report: OptimalityReport) -> np.ndarray:
    """One sentence per cell on why it sits where it does, in terms of its marginal return."""
    lam = report.marginal_return
    right = problem.marginal_return(spend, "right")
    left = problem.marginal_return(spend, "left")
    out = np.empty(problem.n, dtype=object)
    for i, b in enumerate(report.bound):
        if b == "none":
            out[i] = f"interior: marginal return {right[i]:.4g} equals the common {lam:.4g}"
        elif b == "zero":
            out[i] = f"priced out: the first unit returns {right[i]:.4g} < {lam:.4g}"
        elif b == "lower":
            out[i] = (f"held at min_spend {problem.lower[i]:,.0f}: the next unit returns {right[i]:.4g} "
                      f"{'<' if right[i] <= lam else '>'} {lam:.4g}")
        else:
            peak = np.isfinite(problem.upper[i]) and problem.upper[i] < spend[i] * (1 + 1e-9) and left[i] <= 1e-12
            out[i] = (f"at its cap {problem.upper[i]:,.0f}: the last unit returns {left[i]:.4g} "
                      f"{'>=' if left[i] >= lam else '<'} {lam:.4g}" + (" (curve peak)" if peak else ""))
    return out


def build_plan(problem: CompiledProblem, result: SolveResult, seconds: float = 0.0) -> Plan:
    """Assemble the table and summary for ``result``, running the shared optimality check."""
    s = result.spend
    # approximate solvers declare the resolution they refine marginal returns to
    report = check_optimality(problem, s, rtol=max(1e-6, float(result.info.get("kkt_tolerance", 0.0))))
    rate = problem.response(s)
    ev = problem.pool * problem.value * rate
    df = pd.DataFrame({
        "segment": problem.segment, "task": problem.task, "pool": problem.pool, "spend": s,
        "spend_per_member": s / problem.pool, "response_rate": rate,
        "expected_successes": problem.pool * rate, "expected_value": ev,
        "marginal_return": problem.marginal_return(s), "bound": report.bound,
    })
    df["reason"] = bound_reasons(problem, s, report)
    df["value_per_success"] = problem.value
    df["net_value"] = ev - s
    df["min_spend"] = problem.lower
    df["max_spend"] = problem.upper
    baseline = None
    has_cur = ~np.isnan(problem.current_spend)
    if has_cur.any():
        cur = np.where(has_cur, problem.current_spend, np.nan)
        cur_ev = problem.expected_value(np.where(has_cur, cur, 0.0))
        df["current_spend"] = cur
        df["current_expected_value"] = np.where(has_cur, cur_ev, np.nan)
        df["current_marginal_return"] = np.where(has_cur, problem.marginal_return(np.where(has_cur, cur, 0.0)),
                                                 np.nan)
        df["spend_change"] = s - cur
        df["value_change"] = ev - df["current_expected_value"]
        # compare like with like: cells without a baseline are left out of both sides
        base_spend = float(np.nansum(cur))
        base_value = float(cur_ev[has_cur].sum())
        plan_spend = float(s[has_cur].sum())
        plan_value = float(ev[has_cur].sum())
        moved = df.loc[has_cur, ["segment", "task", "spend_change"]].sort_values("spend_change")
        baseline = {
            "cells_with_baseline": int(has_cur.sum()),
            "spend": base_spend, "value": base_value, "net_value": base_value - base_spend,
            "plan_spend_same_cells": plan_spend, "plan_value_same_cells": plan_value,
            "net_value_gained": (plan_value - plan_spend) - (base_value - base_spend),
            "largest_increases": [{"segment": r.segment, "task": r.task, "spend_change": r.spend_change}
                                  for r in moved.iloc[::-1].head(3).itertuples() if r.spend_change > 0],
            "largest_cuts": [{"segment": r.segment, "task": r.task, "spend_change": r.spend_change}
                             for r in moved.head(3).itertuples() if r.spend_change < 0],
        }
    total_spend = float(s.sum())
    by_task = _totals(df, "task")
    lam = report.marginal_return
    activation = problem.activation_paid(s)
    if problem.activation_cost is not None:
        df["activation_cost"] = np.where(s > 0, problem.activation_cost, 0.0)
        df["net_value"] = df["net_value"] - df["activation_cost"]
    binding = binding_constraints(problem, s, report, result)
    if report.shadow_prices or report.binding:
        budget_price = abs(report.shadow_prices.get("budget.total", 0.0) if report.applicable
                           else result.constraint_duals.get("budget.total", 0.0))
        budget_price = budget_price if report.budget_binds else 0.0
    else:
        budget_price = (lam - 1.0) if report.budget_binds else 0.0
    summary = PlanSummary(
        scenario=problem.name, status="optimal" if report.ok else "suboptimal", currency=problem.currency,
        net_value=float(ev.sum() - total_spend) - activation, total_value=float(ev.sum()), total_spend=total_spend,
        budget=problem.budget, use_all=problem.use_all, budget_binds=report.budget_binds,
        marginal_return=lam, budget_shadow_price=budget_price,
        kkt_max_deviation=report.kkt_max_deviation,
        optimality_check={"ok": report.ok, "feasible": report.feasible,
                          "violations": report.feasibility_violations + report.complementarity_violations},
        solver=result.solver, optimality_gap=result.optimality_gap, upper_bound=result.upper_bound,
        solve_seconds=seconds, iterations=result.iterations,
        by_task=by_task, by_segment=_totals(df, "segment"),
        allocation_ratio={t: by_task.get(t, {}).get("spend_share", 0.0) for t in TASKS},
        baseline=baseline,
        solver_info={k: v for k, v in {**result.info, "passes": result.passes,
                                        "solver_multiplier": result.marginal_return}.items()},
        binding_constraints=binding,
        bound_method=result.info.get("bound_method") or result.info.get("lp_bound_method")
        or ("exact multiplier solution: the Lagrangian dual at the common marginal return"
            if result.solver == "exact" else None),
        objective=_objective_summary(problem, s),
        activation_cost=activation,
    )
    return Plan(table=df, summary=summary, problem=problem, result=result, report=report)


def binding_constraints(problem: CompiledProblem, spend: np.ndarray, report: OptimalityReport,
                        result: SolveResult) -> list[dict[str, Any]]:
    """Every rule that binds at ``spend``, with its shadow price (``budget.total`` has its own
    summary fields, ``budget_binds`` and ``budget_shadow_price``, and is not repeated here).

    ``shadow_price`` is the value (net value, or spend saved under a target) gained per
    currency unit the rule is relaxed, estimated by the optimality check from the plan's
    true marginal returns; with spend units (no stationarity) it is the solver's dual of
    the rule with the integer decisions fixed. ``solver_dual`` is the solver's own figure.
    """
    out: list[dict[str, Any]] = []
    for row in problem.constraints:
        side = report.binding.get(row.name)
        if side is None:
            continue
        if report.applicable:
            price = report.shadow_prices.get(row.name, 0.0)
        else:
            price = result.constraint_duals.get(row.name, 0.0)
        out.append({"name": row.name, "kind": row.kind, "rule": row.text or row.name, "side": side,
                    "activity": row.activity(spend), "bound": row.upper if side != "lower" else row.lower,
                    "shadow_price": abs(float(price)), "solver_dual": result.constraint_duals.get(row.name)})
    return out


def _objective_summary(problem: CompiledProblem, spend: np.ndarray) -> dict[str, Any]:
    obj = problem.objective
    if obj.kind == "net_value":
        return {"type": "net_value"}
    if obj.kind == "hurdle":
        return {"type": "hurdle", "rate": obj.rate,
                "value_minus_hurdle_cost": float(problem.expected_value(spend).sum() - obj.rate * np.sum(spend))
                - problem.activation_paid(spend)}
    reached = float((np.asarray(obj.weight) * problem.pool * problem.response(spend)).sum())
    return {"type": "target", "metric": obj.metric, "target": obj.target, "reached": reached,
            "spend_plus_activation": float(np.sum(spend)) + problem.activation_paid(spend), "rule": obj.text}


def make_plan(problem: CompiledProblem, solver: str = "auto", tolerance: float | None = None) -> Plan:
    """Solve ``problem`` and build its plan (timed)."""
    from .solvers import solve

    t0 = time.perf_counter()
    result = solve(problem, solver, tolerance)
    return build_plan(problem, result, seconds=time.perf_counter() - t0)
