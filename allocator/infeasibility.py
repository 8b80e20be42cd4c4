"""Name a small set of rules that cannot hold together (an irreducible infeasible set).

Every rule of a problem is an *item*: each linear row (budgets, group floors and
caps, shares, ratios), each cell's bounds (``min_spend``, max spend, a lock), each
minimum-if-active rule, the spend unit, and a target objective. A deletion
filter (Chinneck and Dravnieks 1991) drops items while the rest stays infeasible;
what is left is irreducible: dropping any one of its items makes the others
feasible. Items are tried in chunks that halve (many cell bounds are usually
irrelevant and go in a few checks), ending with single items. Feasibility is
checked by HiGHS on the linear (or mixed-integer) system; a target row uses
curves lifted above the true ones, so "infeasible" is never claimed wrongly.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .problem import CompiledProblem, ObjectiveSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    """One rule that can be dropped: ``kind`` in row, target, unit, active, lower, upper, lock."""

    kind: str
    key: str | int
    text: str


from .constraints import _fmt  # noqa: E402  (one number format for all rule texts)


def items_of(problem: CompiledProblem) -> list[Item]:
    """Every droppable rule of ``problem``, rows first and cell bounds last."""
    out = [Item("row", r.name, r.text or r.name) for r in problem.rows()]
    if problem.objective.kind == "target":
        out.append(Item("target", "target", problem.objective.text or "objective target"))
    if problem.unit is not None:
        out.append(Item("unit", "unit", f"budget.unit: every cell spends a whole multiple of {_fmt(problem.unit)}"))
    if problem.min_active is not None:
        for i in np.flatnonzero((problem.min_active > 0) & (problem.lower <= 0)):
            out.append(Item("active", int(i), f"min_active_spend of cell {problem.label(i)} = "
                                              f"{_fmt(problem.min_active[i])} (or 0)"))
    locked = problem.locked if problem.locked is not None else np.full(problem.n, np.nan)
    for i in range(problem.n):
        if not np.isnan(locked[i]):
            out.append(Item("lock", i, f"lock: cell {problem.label(i)} spends {_fmt(locked[i])}"))
            continue
        if problem.lower[i] > 0:
            out.append(Item("lower", i, f"min_spend of cell {problem.label(i)} = {_fmt(problem.lower[i])}"))
        if np.isfinite(problem.upper[i]):
            out.append(Item("upper", i, f"max spend of cell {problem.label(i)} = {_fmt(problem.upper[i])} "
                                        f"(max_spend or the curve's peak)"))
    return out


def restrict(problem: CompiledProblem, keep: list[Item]) -> CompiledProblem:
    """``problem`` with only the rules in ``keep`` (dropped bounds become 0 and infinity)."""
    kinds = {(it.kind, it.key) for it in keep}
    lower = problem.lower.copy()
    upper = problem.upper.copy()
    locked = problem.locked if problem.locked is not None else np.full(problem.n, np.nan)
    for i in range(problem.n):
        if not np.isnan(locked[i]):
            if ("lock", i) not in kinds:
                lower[i], upper[i] = 0.0, np.inf
            continue
        if lower[i] > 0 and ("lower", i) not in kinds:
            lower[i] = 0.0
        if np.isfinite(upper[i]) and ("upper", i) not in kinds:
            upper[i] = np.inf
    min_active = problem.min_active
    if min_active is not None:
        min_active = np.array([m if (m <= 0 or lower[i] > 0 or ("active", i) in kinds) else 0.0
                               for i, m in enumerate(min_active)])
    rows = tuple(c for c in problem.constraints if ("row", c.name) in kinds)
    has_budget = problem.budget is not None and ("row", "budget.total") in kinds
    objective = problem.objective if ("target", "target") in kinds or problem.objective.kind != "target" \
        else ObjectiveSpec()
    return dataclasses.replace(problem, lower=lower, upper=upper, constraints=rows,
                               budget=problem.budget if has_budget else None,
                               use_all=problem.use_all and has_budget,
                               unit=problem.unit if ("unit", "unit") in kinds else None,
                               min_active=min_active, objective=objective)


def is_feasible(problem: CompiledProblem) -> bool:
    """Can every rule of ``problem`` hold at once? (HiGHS on the linear or mixed-integer system.)"""
    from .solvers.global_milp import feasibility_status

    return feasibility_status(problem)


def deletion_filter(items: list[Item], infeasible: Callable[[list[Item]], bool]) -> list[Item]:
    """Drop items while the rest stays infeasible; the result is irreducible."""
    keep = list(items)
    chunk = max(len(keep) // 2, 1)
    while True:
        i = 0
        while i < len(keep):
            trial = keep[:i] + keep[i + chunk:]
            if infeasible(trial):
                keep = trial
            else:
                i += chunk
        if chunk == 1:
            return keep
        chunk = max(chunk // 2, 1)


def find_conflict(problem: CompiledProblem) -> list[str] | None:
    """Texts of an irreducible set of conflicting rules, or ``None`` when the rules can all hold.

    Examples
    --------
    A floor of 800 on retention with a total budget of 500 gives
    ``['budget.total: total spend <= 500', "'ret_floor': spend of tasks [retention] >= 800"]``.
    """
    items = items_of(problem)

    def infeasible(keep: list[Item]) -> bool:
        return not is_feasible(restrict(problem, keep))

    if not infeasible(items):
        return None
    # rules first (with every bound in place), then the bounds that still matter
    rules = [it for it in items if it.kind in ("row", "target", "unit", "active")]
    bounds = [it for it in items if it.kind not in ("row", "target", "unit", "active")]
    rules = deletion_filter(rules, lambda keep: infeasible(keep + bounds))
    bounds = deletion_filter(bounds, lambda keep: infeasible(rules + keep))
    conflict = rules + bounds
    logger.info("irreducible infeasible set of %d rules", len(conflict))
    return [it.text for it in conflict]
