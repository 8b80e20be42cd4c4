"""Budget frontiers: the optimal plan, its money and its common marginal return over a range of budgets.

Concave, separable problems with one budget follow the multiplier path
(:mod:`allocator.analysis.multiplier_path`): every budget in closed form, no re-solve. Problems
the path does not cover (general linear constraints, efficiency rules, integer features such as
spend units or activation costs, other objectives, non-concave curves) fall back to solving each
budget from scratch with the scenario's own solver settings. The ``method`` column of the table
says which was used for each budget: ``multiplier_path`` or ``resolve:<solver>``.

Money per budget comes from :func:`allocator.money.money_rows`, the same function as the plan's
totals, so ``net_value = total_value - total_spend - activation_cost`` and the frontier at the
scenario's own budget shows the plan's own figures.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InfeasibleError, NumericalError, Problem, SpecError
from ..money import money_rows
from ..problem import CompiledProblem
from ..spec.models import TASKS
from .common import as_scenario, non_separable_reason
from .multiplier_path import MultiplierPath, path_events

logger = logging.getLogger(__name__)

MAX_POINTS = 100_000
"""Most budgets on one frontier (``--points``)."""
MAX_FRONTIER_VALUES = 20_000_000
"""Most budgets x cells held in memory (the frontier's spend array)."""
METHOD_PATH = "multiplier_path"
METHOD_RESOLVE = "resolve"


@dataclass
class Frontier:
    """A budget frontier.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per budget: ``budget``, ``marginal_return`` (the common multiplier), ``budget_binds``,
        ``net_value``, ``total_value``, ``total_spend``, ``activation_cost`` (``net_value =
        total_value - total_spend - activation_cost``), ``spend_<task>``, ``value_<task>``,
        ``cells_funded`` (cells above their lower bound), with a baseline ``baseline_net_value`` and
        ``net_value_gained``, and ``method`` (``multiplier_path`` or ``resolve:<solver>``).
    events : pandas.DataFrame
        The budgets (within the range) at which a cell switches on, reaches its cap, or moves to the
        next point of its table: ``budget``, ``budget_to`` (equal to ``budget`` except for table
        jumps), ``marginal_return``, ``segment``, ``task``, ``event``. Empty when every budget was
        re-solved.
    spend : ndarray
        Optimal spend per budget and cell, shape (points, cells).
    method : str
        The distinct values of the ``method`` column, comma-separated.
    seconds : float
    """

    table: pd.DataFrame
    events: pd.DataFrame
    spend: np.ndarray
    problem: CompiledProblem
    method: str
    seconds: float = 0.0


def path_supported(problem: CompiledProblem) -> str | None:
    """``None`` when the multiplier path applies; else why not."""
    if problem.constraints:
        return "the problem has general linear constraints"
    if problem.efficiency:
        return "the problem has efficiency rules"
    other = non_separable_reason(problem)
    if other:
        return other
    if not problem.concave.all():
        return "some response curves are not concave"
    return None


def _problem_and_solver(scenario: Any) -> tuple[CompiledProblem, str, float | None]:
    """The compiled problem and the solver name and tolerance its plan would use."""
    from ..compile import compile_scenario
    from ..plan import Plan

    if isinstance(scenario, CompiledProblem):
        return scenario, "auto", None
    if isinstance(scenario, Plan):
        return scenario.problem, "auto", None
    sc = as_scenario(scenario)
    if sc is None:
        raise TypeError("expected a scenario path, mapping, Scenario, Plan or CompiledProblem; "
                        f"got {type(scenario).__name__}")
    return compile_scenario(sc), sc.solver.name, sc.solver.tolerance


def budget_frontier(scenario: Any, start: float, stop: float, points: int = 50,
                    budgets: np.ndarray | None = None, method: str = "auto") -> Frontier:
    """Optimal net value, value and spend by task, and the common marginal return over a budget range.

    Parameters
    ----------
    scenario : path, Scenario, mapping, Plan or CompiledProblem
        Scenarios re-solve with their own ``solver`` settings (name and tolerance).
    start, stop : float
        The budget range (inclusive).
    points : int
        Number of evenly spaced budgets (ignored when ``budgets`` is given).
    budgets : array, optional
        Explicit budgets.
    method : str
        ``auto`` (the multiplier path where it applies), ``path`` or ``resolve``.

    Returns
    -------
    Frontier

    Raises
    ------
    SpecError
        For a bad range, or ``method='path'`` on a problem the path does not cover.
    InfeasibleError
        When a budget lies below the sum of the cells' minimum spend, or the rules cannot hold at it.
    """
    problem, solver_name, tolerance = _problem_and_solver(scenario)
    problems = []
    for name, v in (("from", start), ("to", stop)):
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            problems.append(Problem(f"--{name}", f"must be a budget >= 0; got {v!r}"))
    if budgets is None and (isinstance(points, bool) or not isinstance(points, int) or points < 1):
        problems.append(Problem("--points", f"must be a whole number >= 1; got {points!r}"))
    elif budgets is None and points > MAX_POINTS:
        problems.append(Problem("--points", f"must be at most {MAX_POINTS:,}; got {points:,}"))
    elif (len(budgets) if budgets is not None else points) * problem.n > MAX_FRONTIER_VALUES:
        problems.append(Problem("--points", f"{points:,} budgets of {problem.n:,} cells exceed "
                                            f"{MAX_FRONTIER_VALUES:,} spends; ask for at most "
                                            f"{MAX_FRONTIER_VALUES // problem.n:,} points"))
    if not problems and stop < start:
        problems.append(Problem("--to", f"must be >= --from ({start:,.6g}); got {stop:,.6g}"))
    if problems:
        raise SpecError(problems)
    B = np.sort(np.asarray(budgets, float)) if budgets is not None else np.linspace(start, stop, points)
    floor = float(problem.lower.sum())
    if B[0] < floor * (1 - 1e-12) - 1e-9:
        raise InfeasibleError(f"infeasible: budget {B[0]:,.6g} is below the cells' min_spend total {floor:,.6g}",
                              conflict=[f"budget = {B[0]:,.6g}", f"sum of min_spend = {floor:,.6g}"])
    why = path_supported(problem)
    if method == "path" and why is not None:
        raise SpecError(Problem("method", f"the multiplier path does not apply: {why}"))
    use_path = method != "resolve" and why is None
    t0 = time.perf_counter()
    S = np.empty((len(B), problem.n))
    lam = np.empty(len(B))
    binds = np.empty(len(B), dtype=bool)
    how = np.full(len(B), METHOD_PATH, dtype=object)
    events = pd.DataFrame(columns=["budget", "budget_to", "marginal_return", "segment", "task", "event"])
    from ..solvers import solve

    if use_path:
        path = MultiplierPath(problem)
        g = 0
        for k, b in enumerate(B):
            if b <= floor * (1 + 1e-15):
                S[k], lam[k], binds[k] = problem.lower, _floor_multiplier(problem), True
                continue
            try:
                S[k], lam[k], binds[k], g = path.plan_for(float(b), problem.use_all, g)
            except NumericalError:
                # use_all beyond what the curves absorb at any positive multiplier (flat tails):
                # the solver's rule for the zero-value remainder applies
                res = solve(dataclasses.replace(problem, budget=float(b)), "exact")
                S[k], lam[k], binds[k] = res.spend, res.marginal_return or 0.0, True
                how[k] = f"{METHOD_RESOLVE}:{res.solver}"
        events = path_events(path, problem, float(B[0]), float(B[-1]))
    else:
        logger.info("frontier: re-solving each budget (%s)", why or "asked for")
        previous = None
        for k, b in enumerate(B):
            # the previous budget's plan is a good first incumbent for the global solver's MILP
            options = problem.options if previous is None else {**problem.options, "warm_start": previous}
            res = solve(dataclasses.replace(problem, budget=float(b), options=options), solver_name, tolerance)
            previous = res
            S[k] = res.spend
            binds[k] = float(res.spend.sum()) >= b * (1 - 1e-9)
            lam[k] = res.marginal_return if res.marginal_return is not None else np.nan
            how[k] = f"{METHOD_RESOLVE}:{res.solver}"
    table = frontier_table(problem, B, S, lam, binds, how)
    return Frontier(table=table, events=events, spend=S, problem=problem, method=", ".join(dict.fromkeys(how)),
                    seconds=time.perf_counter() - t0)


def _floor_multiplier(problem: CompiledProblem) -> float:
    room = problem.upper > problem.lower
    m = problem.marginal_return(problem.lower, "right")[room]
    return float(max(m.max(initial=1.0), 1.0))


def frontier_table(problem: CompiledProblem, budgets: np.ndarray, S: np.ndarray, lam: np.ndarray,
                   binds: np.ndarray, method: np.ndarray | str = METHOD_PATH) -> pd.DataFrame:
    """Totals per budget from the spend matrix ``S`` (points x cells), money by :func:`money_rows`."""
    # money by task, the totals their sums: every cell's curve is evaluated once per budget
    by_task = {t: money_rows(problem.subset(sel), S[:, sel]) for t in TASKS if (sel := problem.task == t).any()}
    money = {k: np.sum([m[k] for m in by_task.values()], axis=0) for k in ("value", "spend", "activation_cost")}
    out = {"budget": budgets, "marginal_return": lam, "budget_binds": binds,
           "net_value": money["value"] - money["spend"] - money["activation_cost"], "total_value": money["value"],
           "total_spend": money["spend"], "activation_cost": money["activation_cost"]}
    for t, m in by_task.items():
        out[f"spend_{t}"] = m["spend"]
        out[f"value_{t}"] = m["value"]
    out["cells_funded"] = (S > problem.lower * (1 + 1e-12) + 1e-9).sum(axis=1)
    from .baseline import baseline_money, has_baseline

    if has_baseline(problem):
        base = baseline_money(problem).net_value
        out["baseline_net_value"] = np.full(len(budgets), base)
        out["net_value_gained"] = out["net_value"] - base
    out["method"] = np.broadcast_to(np.asarray(method, dtype=object), (len(budgets),))
    return pd.DataFrame(out)
