"""What-if moves on a multi-period plan: spend moved between two (period, segment, task) cells.

Convention: the amount is taken from one cell and added to the other, spread evenly over the
cell's members (every spend level of a mixed cell moves by the same amount per member). Every
other cell keeps its nominal spend (``hold="spend"``, the default, like the static what-if;
its spend per member follows the member counts the move leaves), or its spend per member
(``hold="per_member"``; its spend then follows the counts, so a move in an early period also
changes what later periods spend). Both moved cells change by exactly ``amount``. The moved
plan is valued by following it forward (:mod:`allocator.dynamic.evaluation`). A move is refused
(:class:`InfeasibleMoveError`, exit code 3) when it takes more than a cell spends or leaves a
cell outside its spend bounds, or when the moved plan breaks a budget or rule row (a ``use_all``
row also when it spends less); the message names the row, its cap and the spend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InfeasibleError, Problem, SpecError
from .evaluation import FixedPlan, fixed_plan, follow, follow_plan
from .model import TASK_OF_STATE, DynamicProblem
from .solve import DynamicResult


class InfeasibleMoveError(InfeasibleError):
    """The move breaks a budget or a cell's bounds; ``conflict`` lists what breaks."""


@dataclass
class DynamicMove:
    """The plan before and after a move; money in present value except ``spend_*`` (nominal, by period)."""

    amount: float
    from_cell: tuple[int, str, str]
    to_cell: tuple[int, str, str]
    customer_equity_before: float
    customer_equity_after: float
    budgets: pd.DataFrame
    periods: pd.DataFrame
    hold: str = "spend"
    #: the moved plan: spend per member of each policy (J, T, S, 3) and the policies' shares
    x: np.ndarray | None = None
    weights: np.ndarray | None = None

    @property
    def value_lost(self) -> float:
        return self.customer_equity_before - self.customer_equity_after

    def to_dict(self) -> dict:
        return {"status": "moved", "amount": self.amount, "hold": self.hold, "from": list(self.from_cell),
                "to": list(self.to_cell),
                "customer_equity_before": self.customer_equity_before,
                "customer_equity_after": self.customer_equity_after, "value_lost": self.value_lost,
                "budgets": self.budgets.to_dict("records"), "periods": self.periods.to_dict("records")}


def parse_cell(problem: DynamicProblem, text: str, field: str) -> tuple[int, int, int]:
    """``PERIOD/SEGMENT/TASK`` -> (t index, segment index, state index); a SpecError names what is wrong."""
    parts = str(text).split("/")
    if len(parts) != 3:
        raise SpecError(Problem(field, f"a multi-period cell is PERIOD/SEGMENT/TASK, e.g. 2/enterprise/retention; "
                                       f"got {text!r}"))
    per, seg, task = parts
    try:
        t = int(per)
    except ValueError:
        t = 0
    if not 1 <= t <= problem.T:
        raise SpecError(Problem(field, f"period must be a whole number from 1 to {problem.T}; got {per!r}"))
    segs = [str(s) for s in problem.segment]
    if seg not in segs:
        raise SpecError(Problem(field, f"no segment '{seg}'; segments: {', '.join(segs[:10])}"))
    if task not in TASK_OF_STATE:
        raise SpecError(Problem(field, f"no task '{task}'; tasks: {', '.join(TASK_OF_STATE)}"))
    s, k = segs.index(seg), TASK_OF_STATE.index(task)
    if not (problem.has_task[s, k] and problem.allowed[t - 1, s, k]):
        raise SpecError(Problem(field, f"the task does not spend in period {t}", f"({seg}, {task})"))
    return t - 1, s, k


def move_spend(problem: DynamicProblem, result: DynamicResult, amount: float, from_cell: str, to_cell: str,
               hold: str = "spend") -> DynamicMove:
    """Move ``amount`` (nominal) of spend from ``from_cell`` to ``to_cell`` (``PERIOD/SEGMENT/TASK``).

    ``hold``: what the other cells keep, their nominal ``spend`` (default; their spend per member
    follows the member counts the move leaves) or their ``per_member`` spend (their spend then
    follows the counts).
    """
    if not np.isfinite(amount) or amount <= 0:
        raise SpecError(Problem("--move", f"must be a positive amount; got {amount:g}"))
    if hold not in ("spend", "per_member"):
        raise SpecError(Problem("hold", f"must be spend or per_member; got {hold!r}"))
    a = parse_cell(problem, from_cell, "--from")
    b = parse_cell(problem, to_cell, "--to")
    if a == b:
        raise SpecError(Problem("--to", "must differ from --from"))
    plan = fixed_plan(result)
    before = follow_plan(problem, plan)
    broken: list[str] = []
    if hold == "spend":
        xs = []
        for xj in plan.x:
            cells = follow(problem, xj, plan.steady_x).n[:-1] * xj
            for (t, s, k), sign in ((a, -1.0), (b, 1.0)):
                cells[t, s, k] += sign * amount
            # a negative spend (a refused move) may overflow the curves of later periods: it is caught below
            with np.errstate(all="ignore"):
                xs.append(follow(problem, None, plan.steady_x, cell_spend=cells).x)
        x = np.stack(xs)
    else:
        x = plan.x.copy()
        for (t, s, k), sign in sorted([(a, -1.0), (b, 1.0)]):
            members = follow_plan(problem, FixedPlan(x, plan.weights, plan.steady_x)).n[t, s, k]
            x[:, t, s, k] += sign * amount / members if members > 0 else 0.0
    for t, s, k in (a, b):
        label = f"period {t + 1}, cell ({problem.segment[s]}, {TASK_OF_STATE[k]})"
        lo, hi = problem.lo[s, k], problem.hi[s, k]
        worst_lo, worst_hi = float(x[:, t, s, k].min()), float(x[:, t, s, k].max())
        if worst_lo < lo - 1e-9 * max(1.0, lo):
            broken.append(f"{label}: spend per member {worst_lo:,.6g} below its least ({lo:,.6g}); the cell "
                          f"spends {_cell_spend(problem, plan, t, s, k):,.2f} in the plan")
        if worst_hi > hi * (1 + 1e-9):
            broken.append(f"{label}: spend per member {worst_hi:,.6g} above its most ({hi:,.6g})")
    if broken:   # a cell outside its bounds: the moved plan is not one to follow
        raise InfeasibleMoveError(f"refused: moving {amount:,.2f} from {from_cell} to {to_cell} breaks "
                                  f"{len(broken)} rule(s) of the scenario", conflict=broken)
    moved = FixedPlan(x, plan.weights, plan.steady_x)
    after = follow_plan(problem, moved)
    budgets = pd.DataFrame(columns=["constraint", "cap", "spend_before", "spend_after"])
    if result.rows is not None:
        Wm, B = result.rows
        used0, used1 = Wm @ before.spend.sum(axis=1), Wm @ after.spend.sum(axis=1)
        budgets = pd.DataFrame({"constraint": problem.budget_names, "cap": B, "spend_before": used0,
                                "spend_after": used1})
        for name, cap, u0, u, eq in zip(problem.budget_names, B, used0, used1, problem.budget_equal):
            # a row the plan already fills to rounding is broken only by a real increase
            if u > max(cap, u0) + 1e-9 * max(cap, 1.0):
                broken.append(f"{name}: spend {u:,.2f} above its cap {cap:,.2f}")
            elif eq and u < min(cap, u0) - 1e-9 * max(cap, 1.0):
                broken.append(f"{name} (use_all): spend {u:,.2f} below {cap:,.2f}")
    if broken:
        raise InfeasibleMoveError(f"refused: moving {amount:,.2f} from {from_cell} to {to_cell} breaks "
                                  f"{len(broken)} rule(s) of the scenario", conflict=broken)
    periods = pd.DataFrame({"period": np.arange(1, problem.T + 1), "spend_before": before.spend.sum(axis=1),
                            "spend_after": after.spend.sum(axis=1)})
    return DynamicMove(amount=float(amount),
                       from_cell=(a[0] + 1, str(problem.segment[a[1]]), TASK_OF_STATE[a[2]]),
                       to_cell=(b[0] + 1, str(problem.segment[b[1]]), TASK_OF_STATE[b[2]]),
                       customer_equity_before=float(before.value.sum()),
                       customer_equity_after=float(after.value.sum()), budgets=budgets, periods=periods,
                       hold=hold, x=x, weights=plan.weights)


def _cell_spend(problem: DynamicProblem, plan: FixedPlan, t: int, s: int, k: int) -> float:
    """Nominal spend of one cell in ``plan`` (every policy's members at its own level)."""
    return float(sum(w * follow(problem, xj, plan.steady_x).n[t, s, k] * xj[t, s, k]
                     for xj, w in zip(plan.x, plan.weights)))
