"""What-if: move money between two cells of a solved plan, honouring every rule of the scenario.

A move of ``amount`` from cell ``a`` to cell ``b`` changes two spends and nothing else. It is checked
against every rule the plan had to keep: the linear rows (``budget.total``, named budgets, group
floors and caps, shares, ratios), efficiency rules, a target objective, and the rules of the two
cells themselves (their bounds, a lock, a minimum-if-active spend, the spend unit). A move that
breaks any of them is refused with :class:`InfeasibleMoveError` (exit code 3 on the command line),
naming every rule broken with its numbers; it is never reported as an ordinary move.

With ``resolve=True`` the two cells are fixed at their moved spends (as locks) and the other cells
are re-optimized by the regular solver: the best plan that makes this move. Rules of the two cells
themselves cannot be repaired that way and are still refused.

Money (value, spend, activation cost, net value) before and after comes from
:func:`allocator.money.money_of`, like the plan's own totals.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..constraints import _fmt
from ..errors import InfeasibleError, NumericalError, Problem, SpecError
from ..money import activation_per_cell, money_of
from ..plan import Plan
from ..problem import CompiledProblem

MOVED, RESOLVED = "moved", "resolved"
#: rules that belong to one cell: re-optimizing the other cells cannot repair them
CELL_RULES = ("lock", "min_spend", "max_spend", "min_active", "unit")


@dataclass(frozen=True)
class BrokenRule:
    """One rule a move breaks: ``kind`` (budget, spend, share, ratio, efficiency, target, lock, min_spend,
    max_spend, min_active, unit), the rule's ``name`` and a sentence with its numbers."""

    kind: str
    name: str
    text: str


class InfeasibleMoveError(InfeasibleError):
    """A move breaks rules of the scenario; ``broken`` lists them (also in ``conflict``, as text)."""

    def __init__(self, message: str, broken: list[BrokenRule]):
        self.broken = list(broken)
        super().__init__(message, conflict=[b.text for b in broken])


@dataclass
class MoveResult:
    """What moving ``amount`` from one cell to another does to a plan.

    Attributes
    ----------
    status : str
        ``moved`` (the two cells changed, the plan otherwise held) or ``resolved`` (the two cells
        fixed at their moved spends, the other cells re-optimized).
    rules_broken : list of str
        Rules the plain move would break (only with ``resolved``; a plain move never breaks one).
    net_value_before, net_value_after, value_lost : float
        Net values by :func:`allocator.money.money_of`; ``value_lost = before - after``.
    money_before, money_after : dict
        ``value``, ``spend``, ``activation_cost`` and ``net_value`` of the plan before and after.
    first_order_estimate : float
        ``amount * (m_from - m_to)`` at the plan's marginal returns (of the plain move).
    spend_after : ndarray
        The plan after the move, per cell.
    cells : pandas.DataFrame
        Every cell whose spend changed: spend, value and activation cost before and after.
    """

    amount: float
    from_cell: tuple[str, str]
    to_cell: tuple[str, str]
    status: str
    net_value_before: float
    net_value_after: float
    value_lost: float
    first_order_estimate: float
    marginal_return_from: float
    marginal_return_to: float
    money_before: dict[str, float]
    money_after: dict[str, float]
    rules_broken: list[str] = field(default_factory=list)
    solver: str | None = None
    optimality_gap: float | None = None
    note: str = ""
    spend_after: np.ndarray = field(repr=False, default_factory=lambda: np.array([]))
    cells: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (no NaN or infinity: those become ``None``)."""
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()
               if k not in ("cells", "spend_after")}
        out["cells"] = self.cells.to_dict("records")
        return _jsonable(out)


def _jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars as Python numbers and NaN or infinity as ``None`` (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


def _cell_index(problem: CompiledProblem, cell: Any, what: str) -> int:
    if isinstance(cell, str):
        parts = cell.replace(":", "/").split("/")
        cell = tuple(parts) if len(parts) == 2 else (cell,)
    if not isinstance(cell, (tuple, list)) or len(cell) != 2:
        raise SpecError(Problem(what, f"name a cell as segment/task; got {cell!r}"))
    seg, task = map(str, cell)
    hit = np.flatnonzero((problem.segment == seg) & (problem.task == task))
    if not len(hit):
        raise SpecError(Problem(what, f"no cell ({seg}, {task}) in the scenario"))
    return int(hit[0])


# ---------------------------------------------------------------- the rules

def _cell_rules(problem: CompiledProblem, before: np.ndarray, after: np.ndarray, i: int) -> list[BrokenRule]:
    """Rules of cell ``i`` that its spend ``after[i]`` breaks."""
    s, label, out = float(after[i]), problem.label(i), []
    tol = 1e-9 * max(abs(s), abs(float(before[i])), 1.0)
    locked = np.nan if problem.locked is None else float(problem.locked[i])
    if not np.isnan(locked):
        if abs(s - locked) > tol:
            out.append(BrokenRule("lock", "lock", f"lock: cell {label} spends {_fmt(locked)}; "
                                                  f"the move makes it {_fmt(s)}"))
        return out  # a locked cell's bounds are the lock itself
    lo, hi = float(problem.lower[i]), float(problem.upper[i])
    if s < lo - tol:
        room = max(float(before[i]) - lo, 0.0)
        out.append(BrokenRule("min_spend", "min_spend", f"min_spend of cell {label} = {_fmt(lo)}; the move leaves "
                                                        f"{_fmt(s)} (at most {_fmt(room)} can move out)"))
    if s > hi + tol:
        room = max(hi - float(before[i]), 0.0)
        out.append(BrokenRule("max_spend", "max_spend", f"max spend of cell {label} = {_fmt(hi)} (max_spend or the "
                                                        f"curve's peak); the move makes it {_fmt(s)} (at most "
                                                        f"{_fmt(room)} can move in)"))
    m = 0.0 if problem.min_active is None else float(problem.min_active[i])
    if m > 0 and tol < s < m - tol:
        out.append(BrokenRule("min_active", "min_active", f"min_active_spend of cell {label} = {_fmt(m)} (or 0); "
                                                          f"the move makes it {_fmt(s)}"))
    if problem.unit is not None:
        q = s / problem.unit
        if abs(q - round(q)) > 1e-6:
            out.append(BrokenRule("unit", "budget.unit", f"budget.unit: every cell spends a whole multiple of "
                                                         f"{_fmt(problem.unit)}; the move makes cell {label} "
                                                         f"spend {_fmt(s)}"))
    return out


def _row_violation(lower: float, upper: float, activity: float) -> float:
    return max(lower - activity, activity - upper, 0.0)


def broken_rules(problem: CompiledProblem, before: np.ndarray, after: np.ndarray,
                 cells: np.ndarray | None = None, rtol: float = 1e-9) -> list[BrokenRule]:
    """Every rule that ``after`` breaks and ``before`` kept (or broke by less).

    Parameters
    ----------
    problem : CompiledProblem
    before, after : ndarray
        Spend per cell before and after a change.
    cells : array of int, optional
        The cells whose own rules (bounds, lock, minimum-if-active, unit) are checked (default: the
        cells whose spend changed); group rules are always checked.
    rtol : float
        Relative tolerance on group rules (of total spend plus the rule's bound).
    """
    before, after = np.asarray(before, float), np.asarray(after, float)
    if cells is None:
        cells = np.flatnonzero(before != after)
    out = [r for i in cells for r in _cell_rules(problem, before, after, int(i))]
    # a rule the plan already missed by a rounding error is not the move's doing: only a violation
    # beyond the tolerance and beyond the plan's own counts
    total = max(float(np.abs(after).sum()), 1.0)
    for row in problem.rows():
        a0, a1 = row.activity(before), row.activity(after)
        bound = max((abs(x) for x in (row.lower, row.upper) if np.isfinite(x)), default=0.0)
        tol = rtol * (total + bound)
        v1 = _row_violation(row.lower, row.upper, a1)
        if v1 > tol and v1 > _row_violation(row.lower, row.upper, a0) + tol:
            text = row.text or row.name
            if row.kind in ("budget", "spend"):
                text += f"; the move makes it {_fmt(a1)}"
            else:
                lim = row.lower if a1 < row.lower else row.upper
                text += (f"; the move breaks it by {_fmt(v1)} (the row sum(coef x spend) becomes {_fmt(a1)}, "
                         f"must be {'>=' if a1 < row.lower else '<='} {_fmt(lim)})")
            out.append(BrokenRule(row.kind or "row", row.source or row.name, text))
    for e in problem.efficiency:
        a0, a1 = e.activity(problem, before), e.activity(problem, after)
        tol = rtol * max(float(np.abs(after[e.index]).sum()), 1.0)
        if a1 < -tol and a1 < min(a0, 0.0) - tol:
            out.append(BrokenRule("efficiency", e.source or e.name,
                                  f"{e.text or e.name}; the move leaves it short by {_fmt(-a1)}"))
    obj = problem.objective
    if obj.kind == "target" and obj.weight is not None:
        r0, r1 = (float((obj.weight * problem.pool * problem.response(x)).sum()) for x in (before, after))
        if r1 < obj.target * (1 - 1e-9) and r1 < r0 - 1e-9 * max(obj.target, 1.0):
            out.append(BrokenRule("target", "objective", f"{obj.text or 'objective target'}; the move reaches "
                                                         f"{_fmt(r1)}"))
    return out


# ---------------------------------------------------------------- the move

def _cells_table(problem: CompiledProblem, before: np.ndarray, after: np.ndarray, keep: np.ndarray) -> pd.DataFrame:
    ev0, ev1 = problem.expected_value(before), problem.expected_value(after)
    ac0, ac1 = activation_per_cell(problem, before), activation_per_cell(problem, after)
    return pd.DataFrame({
        "segment": problem.segment[keep], "task": problem.task[keep],
        "spend_before": before[keep], "spend_after": after[keep],
        "value_before": ev0[keep], "value_after": ev1[keep],
        "activation_cost_before": ac0[keep], "activation_cost_after": ac1[keep],
        "net_value_change": ((ev1 - after - ac1) - (ev0 - before - ac0))[keep]})


def _resolve(problem: CompiledProblem, s: np.ndarray, moved: np.ndarray, pair: tuple[int, int]
             ) -> tuple[np.ndarray, str, float | None]:
    """The best plan with the two cells fixed at their moved spends: ``(spend, solver, gap)``."""
    from ..solvers import solve

    locked = np.full(problem.n, np.nan) if problem.locked is None else problem.locked.copy()
    lower, upper = problem.lower.copy(), problem.upper.copy()
    for i in pair:
        locked[i] = lower[i] = upper[i] = moved[i]
    fixed = dataclasses.replace(problem, lower=lower, upper=upper, locked=locked)
    labels = " and ".join(f"{problem.label(i)} at {_fmt(moved[i])}" for i in pair)
    try:
        res = solve(fixed)
    except InfeasibleError as exc:
        conflict = exc.conflict
        if not conflict:
            from ..infeasibility import find_conflict

            conflict = find_conflict(fixed) or []
        raise InfeasibleError(f"infeasible move: with {labels} no plan keeps every rule", conflict=conflict) from None
    # the solver's plan is checked against every rule of the scenario, not trusted (to a solver's
    # feasibility tolerance)
    wrong = broken_rules(problem, s, res.spend, cells=np.arange(problem.n), rtol=1e-7)
    if wrong:
        raise NumericalError("the re-solved plan breaks rules: " + "; ".join(w.text for w in wrong))
    return res.spend, res.solver, res.optimality_gap


def what_if_move(plan: Plan, amount: float, from_cell: Any, to_cell: Any, resolve: bool = False) -> MoveResult:
    """Move ``amount`` of spend from ``from_cell`` to ``to_cell`` and report the net value lost.

    Parameters
    ----------
    plan : Plan
    amount : float
        Currency moved (> 0).
    from_cell, to_cell : (segment, task) or "segment/task"
    resolve : bool
        Fix the two cells at their moved spends and re-optimize the other cells (the best plan that
        makes this move), instead of holding them.

    Returns
    -------
    MoveResult

    Raises
    ------
    SpecError
        When the amount is not positive or a cell is unknown.
    InfeasibleMoveError
        When the move breaks a rule (without ``resolve``), or a rule of one of the two cells
        (bounds, lock, minimum-if-active spend, spend unit) with it; every rule broken is listed.
    InfeasibleError
        With ``resolve``, when no plan keeps every rule with the two cells fixed (a conflict is named).
    """
    problem, s = plan.problem, np.asarray(plan.spend, float)
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not np.isfinite(amount) or amount <= 0:
        raise SpecError(Problem("amount", f"must be a positive amount; got {amount!r}"))
    a = _cell_index(problem, from_cell, "from")
    b = _cell_index(problem, to_cell, "to")
    if a == b:
        raise SpecError(Problem("to", f"must differ from the source cell {problem.label(a)}"))
    moved = s.copy()
    moved[a] -= amount
    moved[b] += amount
    broken = broken_rules(problem, s, moved, cells=np.array([a, b]))
    what = f"moving {_fmt(float(amount))} from {problem.label(a)} to {problem.label(b)}"
    if broken and not resolve:
        raise InfeasibleMoveError(
            f"infeasible move: {what} breaks {len(broken)} rule{'s' if len(broken) != 1 else ''} "
            "(resolve / --resolve re-optimizes the other cells with the move forced)", broken)
    cell_level = [r for r in broken if r.kind in CELL_RULES]
    if cell_level:
        raise InfeasibleMoveError(
            f"infeasible move: {what} breaks rules of the two cells themselves, which re-optimizing the "
            "other cells cannot repair", cell_level)
    status, solver, gap, note, after = MOVED, None, None, "", moved
    if resolve:
        after, solver, gap = _resolve(problem, s, moved, (a, b))
        status = RESOLVED
        if not broken and money_of(problem, moved).net_value > money_of(problem, after).net_value:
            # within the solver's optimality gap the plain move can come out ahead: keep the better
            after, note = moved, "the plain move was at least as good as the re-solved plan (within its gap)"
    m0, m1 = money_of(problem, s), money_of(problem, after)
    ma = float(problem.marginal_return(s, "left")[a])
    mb = float(problem.marginal_return(s, "right")[b])
    changed = np.union1d([a, b], np.flatnonzero(np.abs(after - s) > 1e-9 * np.maximum(np.abs(s), 1.0)))
    return MoveResult(
        amount=float(amount), from_cell=(str(problem.segment[a]), str(problem.task[a])),
        to_cell=(str(problem.segment[b]), str(problem.task[b])), status=status,
        net_value_before=m0.net_value, net_value_after=m1.net_value, value_lost=m0.net_value - m1.net_value,
        first_order_estimate=float(amount) * (ma - mb), marginal_return_from=ma, marginal_return_to=mb,
        money_before=m0.to_dict(), money_after=m1.to_dict(), rules_broken=[r.text for r in broken],
        solver=solver, optimality_gap=gap, note=note, spend_after=after,
        cells=_cells_table(problem, s, after, changed))
