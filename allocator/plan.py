"""Plans: the solved allocation as a table and a summary, with the optimality evidence.

A :class:`Plan` is what users see: ``plan.table`` (a pandas DataFrame, one row
per cell) and ``plan.summary`` (a :class:`PlanSummary`, serializable to JSON).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .explain.patterns import factorize_text
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
        # _jsonable builds fresh dicts and lists, so the deep copy of dataclasses.asdict is not needed
        # (it cost more than the rest of the plan on a small scenario)
        return _jsonable({name: getattr(self, name) for name in _SUMMARY_FIELDS})


_SUMMARY_FIELDS = tuple(f.name for f in fields(PlanSummary))
"""Field names of :class:`PlanSummary`, in order (``dataclasses.fields`` costs a call per summary)."""


def _jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars as Python numbers, tuples as lists and non-finite floats as ``None``."""
    t = type(obj)
    # exact-type fast paths first: a summary of a million cells holds millions of plain floats
    if t is float:
        return obj if math.isfinite(obj) else None
    if t is str or t is int or t is bool or obj is None:
        return obj
    if t is dict:
        # finite floats and text, the bulk of a large summary, are kept without a call each
        return {str(k): v if (type(v) is float and v - v == 0) or type(v) is str else _jsonable(v)
                for k, v in obj.items()}
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
    if is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(asdict(obj))
    return obj


class PlanColumns:
    """A plan table not yet built: its columns as arrays, in order (see :attr:`Plan.table`)."""

    __slots__ = ("columns",)

    def __init__(self, columns: dict[str, np.ndarray]):
        self.columns = columns


@dataclass
class Plan:
    """A solved plan.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per cell; the first columns are ``PLAN_COLUMNS``. It may be given as
        :class:`PlanColumns`, and is then built on first access.
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

    def _unbuilt_columns(self) -> dict[str, np.ndarray] | None:
        """The table's columns while the DataFrame is not built yet (``None`` once it is)."""
        return self.__dict__.get("_columns")


def _get_table(plan: Plan) -> pd.DataFrame:
    columns = plan.__dict__.get("_columns")
    if columns is not None:
        plan.__dict__["_table"] = pd.DataFrame(columns)
        plan.__dict__["_columns"] = None
    return plan.__dict__["_table"]


def _set_table(plan: Plan, table: pd.DataFrame | PlanColumns) -> None:
    if isinstance(table, PlanColumns):
        plan.__dict__.update(_table=None, _columns=table.columns)
    else:
        plan.__dict__.update(_table=table, _columns=None)


# The frame is built on first access: building a DataFrame of a small plan cost more than solving it,
# and a service answering with JSON never needs it. Set after the dataclass is made, so that the
# generated __init__, repr, eq and dataclasses.replace all go through the property.
Plan.table = property(_get_table, _set_table, doc="One row per cell (a pandas DataFrame, built on first access).")


_TOTAL_COLUMNS = ("spend", "expected_value", "expected_successes", "activation_cost")


def _totals(key: np.ndarray, columns: dict[str, np.ndarray],
            values: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Per value of ``key`` (in order of first appearance): spend, value, successes, activation cost,
    net value and spend share.

    The sums are those of ``DataFrame.groupby(key, sort=False).sum()`` to the last bit
    (:func:`group_sums`), without building a DataFrame: on a small plan the frame cost more than
    the arithmetic. ``values`` is ``_total_columns(columns)`` when the caller has it already.
    """
    codes, uniques = factorize_text(np.asarray(key, dtype=object))
    sums = group_sums(codes, len(uniques), _total_columns(columns) if values is None else values)
    # one value per group: the net value and share in Python floats, the same IEEE operations as numpy's
    # elementwise ones ((value - spend) - activation, spend / total), without a call per column
    spend, value, successes, act = sums.T.tolist()
    total = float(sums[:, 0].sum())
    share = [a / total for a in spend] if total > 0 else [0.0] * len(uniques)
    return {str(k): {"spend": a, "expected_value": b, "expected_successes": c, "activation_cost": d,
                     "net_value": b - a - d, "spend_share": f}
            for k, a, b, c, d, f in zip(uniques, spend, value, successes, act, share)}


def _total_columns(columns: dict[str, np.ndarray]) -> np.ndarray:
    """The columns :func:`_totals` adds up, stacked (columns x cells): made once for both keys."""
    return np.array([columns[c] for c in _TOTAL_COLUMNS], dtype=float)


def group_sums(codes: np.ndarray, groups: int, values: np.ndarray) -> np.ndarray:
    """Sums of ``values`` (columns x cells) per group code, bit for bit as ``DataFrame.groupby().sum()``.

    Plans have always printed pandas' totals, and pandas sums in two ways: ``np.add.reduceat`` when
    every group's rows are contiguous (pandas >= 3.1) and a compensated (Kahan) loop otherwise;
    ``np.bincount`` would change last digits. Both are called here directly, without a frame (on a
    small plan the frame cost more than the arithmetic); ``tests/test_plan_speed_equivalence.py``
    pins the result to pandas' own. Returns groups x columns.
    """
    values = np.ascontiguousarray(values, dtype=float)
    codes = np.asarray(codes, np.intp)
    n = len(codes)
    if n == 0 or groups == 0:
        return np.zeros((groups, len(values)))
    if n <= _SMALL_GROUPS and _PANDAS_REDUCEAT:
        # the runs of a few codes found in Python: when they are the groups 0, 1, ... in order (sorted
        # codes, no group empty) the reduceat below fills every column of ``out`` in order, so its
        # result is ``out`` itself
        c = codes.tolist()
        starts = [0] + [i for i in range(1, n) if c[i] != c[i - 1]]
        if [c[i] for i in starts] == list(range(groups)) and not np.isnan(values).any():
            return np.add.reduceat(values, starts, axis=1).T
    if _PANDAS_REDUCEAT and (codes[1:] >= codes[:-1]).all() and not np.isnan(values).any():
        starts = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]]))
        out = np.zeros((len(values), groups))
        out[:, codes[starts]] = np.add.reduceat(values, starts, axis=1)
        return out.T
    try:
        from pandas._libs.groupby import group_sum

        out = np.zeros((groups, len(values)))
        group_sum(out=out, counts=np.zeros(groups, np.int64), values=values.T, labels=codes, mask=None,
                  result_mask=None, min_count=0, is_datetimelike=False)
        return out
    except (ImportError, TypeError, ValueError):  # a pandas without that kernel: the public route
        frame = pd.DataFrame(values.T)
        return frame.groupby(codes, sort=True).sum().reindex(range(groups), fill_value=0.0).to_numpy()


_SMALL_GROUPS = 256
"""Up to this many cells :func:`group_sums` looks for sorted codes in Python."""


def _pandas_reduceat() -> bool:
    try:
        from pandas.core.groupby.ops import BaseGrouper
    except ImportError:
        return False
    return hasattr(BaseGrouper, "_reduceat_aggregate")


_PANDAS_REDUCEAT = _pandas_reduceat()


def _has_value_curves(problem: CompiledProblem) -> bool:
    """Whether any block's family has a value curve (``value_factor``); else every factor is 1."""
    return any(getattr(b.family, "value_factor", None) is not None for b in problem.blocks)


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


def _baseline(problem: CompiledProblem, cur: np.ndarray, plan: Money, change: np.ndarray,
              cur_ev: np.ndarray | None = None, has_cur: np.ndarray | None = None) -> dict[str, Any]:
    """The plan beside today's spend ``cur`` over all cells (no baseline given: the cell's minimum).

    ``cur_ev`` is ``problem.expected_value(cur)`` and ``has_cur`` ``~np.isnan(problem.current_spend)``
    when the caller has them already.
    """
    has_cur = ~np.isnan(problem.current_spend) if has_cur is None else has_cur
    base = money_of(problem, cur, expected_value=cur_ev)
    # the order of DataFrame.sort_values (numpy's quicksort, NaN last), so ties list the same cells;
    # without NaN, the finite cells are all cells in order and their argsort is the whole array's
    finite = ~np.isnan(change)
    if finite.all():
        order = np.argsort(change, kind="quicksort")
    else:
        idx = np.flatnonzero(finite)
        order = np.concatenate([idx[np.argsort(change[finite], kind="quicksort")], np.flatnonzero(~finite)])

    def cell(i: int) -> dict[str, Any]:
        return {"segment": problem.segment[i], "task": problem.task[i], "spend_change": float(change[i])}

    return {
        "cells_with_baseline": int(has_cur.sum()), "cells": int(problem.n),
        "spend": base.spend, "value": base.value, "activation_cost": base.activation_cost,
        "net_value": base.net_value, "plan_net_value": plan.net_value,
        "net_value_gained": plan.net_value - base.net_value,
        "largest_increases": [cell(i) for i in order[::-1][:3] if change[i] > 0],
        "largest_cuts": [cell(i) for i in order[:3] if change[i] < 0],
    }


def plan_check(problem: CompiledProblem, result: SolveResult) -> OptimalityReport:
    """The shared optimality check of a solved plan, at the tolerance its solver declares."""
    # approximate solvers declare the resolution they refine marginal returns to
    return check_optimality(problem, result.spend, rtol=max(1e-6, float(result.info.get("kkt_tolerance", 0.0))))


def build_plan(problem: CompiledProblem, result: SolveResult, seconds: float = 0.0,
               response: np.ndarray | None = None) -> Plan:
    """Assemble the table and summary for ``result``, running the shared optimality check.

    Every explanation (``required_return``, ``binding_rules``, ``reason``, ``bound``, the
    binding constraints and their prices) is read off the check's one decomposition; every
    total comes from :func:`allocator.money.money_of`. ``response`` is
    ``problem.response(result.spend)`` when the caller has it already.
    """
    from .analysis.baseline import baseline_spend
    from .explain import binding_things, explanation_columns

    s = result.spend
    report = plan_check(problem, result)
    d = report.decomposition
    resp = problem.response(s) if response is None else response
    if _has_value_curves(problem):
        # with a value curve the compiled response is p(x) w(x); the table shows p and the value of a success
        factor = value_factors(problem, s)
        rate = resp / factor
        ev = problem.pool * problem.value * rate * factor
        ev_money = problem.pool * problem.value * resp
        value_per_success = problem.value * factor
    else:
        # every factor is 1: rate = resp / 1 and ev = pool * value * rate * 1 are resp and pool * value * resp
        # to the bit (x / 1 and x * 1 are x), the value one success is worth is the value itself
        rate = resp
        ev = ev_money = problem.pool * problem.value * resp
        value_per_success = problem.value.copy()
    act = activation_per_cell(problem, s)
    things = binding_things(problem, s, d, report.binding, report.activity, result.constraint_duals)
    marginal = report.marginal_at_plan if report.marginal_at_plan is not None else problem.marginal_return(s)
    # the table is assembled as arrays and becomes a DataFrame when first read (Plan.table): adding
    # columns one by one to a frame cost more than everything else on a small plan. Arrays shared
    # with the problem, the result or the report are copied, so the table is this moment's plan.
    cols: dict[str, Any] = {
        "segment": _own(problem.segment), "task": _own(problem.task), "pool": _own(problem.pool), "spend": _own(s),
        "spend_per_member": s / problem.pool, "response_rate": rate,
        "expected_successes": problem.pool * rate, "expected_value": ev,
        "marginal_return": marginal, "bound": _own(d.bound),
        **explanation_columns(problem, d, s, things),
        "value_per_success": value_per_success,
        "activation_cost": act,
        # (ev - s) - 0 is ev - s to the bit, -0.0 included: no activation costs, one subtraction
        "net_value": ev - s - act if problem.activation_cost is not None else ev - s,
        "min_spend": _own(problem.lower),
        "max_spend": _own(problem.upper),
    }
    cols["required_return"] = _own(cols["required_return"])  # may be the decomposition's own array
    money = money_of(problem, s, expected_value=ev_money)
    baseline = None
    has_cur = ~np.isnan(problem.current_spend)
    if has_cur.any():
        cur = baseline_spend(problem)
        cols["current_spend"] = np.where(has_cur, problem.current_spend, np.nan)
        cur_resp, cur_slope = problem.response_and_slope(cur)
        # problem.expected_value(cur) and problem.marginal_return(cur), from one pass over the blocks
        cols["current_expected_value"] = cur_ev = problem.pool * problem.value * cur_resp
        cols["current_marginal_return"] = problem.value * cur_slope
        cols["spend_change"] = change = s - cur
        cols["value_change"] = ev - cur_ev
        baseline = _baseline(problem, cur, money, change, cur_ev, has_cur)
    totals_of = _total_columns(cols)
    by_task = _totals(problem.task, cols, totals_of)
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
        by_task=by_task, by_segment=_totals(problem.segment, cols, totals_of),
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
    return Plan(table=PlanColumns(cols), summary=summary, problem=problem, result=result, report=report)


def _own(a: Any) -> Any:
    """A copy of the array ``a`` (anything else as it is)."""
    return a.copy() if isinstance(a, np.ndarray) else a


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
    from .solvers import solve_with_response

    t0 = time.perf_counter()
    # the backend's response at its plan, when it computed one on its way, fills the table's columns
    result, response = solve_with_response(problem, solver, tolerance)
    return build_plan(problem, result, seconds=time.perf_counter() - t0, response=response)
