"""Name a small set of rules that cannot hold together (an irreducible infeasible set).

Every rule of a problem is an *item*: each linear row (budgets, group floors and
caps, shares, ratios), each average-efficiency rule, each cell's bounds (``min_spend``, max spend, a lock), each
minimum-if-active rule, the spend unit, and a target objective. A deletion
filter (Chinneck and Dravnieks 1991) drops items while the rest stays infeasible;
what is left is irreducible: dropping any one of its items makes the others
feasible. Items are tried in chunks that halve (many cell bounds are usually
irrelevant and go in a few checks), ending with single items. Feasibility is
checked by HiGHS on the linear (or mixed-integer) system; a target row uses
curves lifted above the true ones, so "infeasible" is never claimed wrongly.
Efficiency rules ``sum_G (u_i E_i(s_i) - b s_i) >= 0`` are checked after the
linear system by maximizing their smallest slack in an LP where each ``E_i`` is
replaced by tangent cuts (above the concave curve, so again a relaxation);
cuts are added at the LP's plan until its true slack is >= 0 (feasible) or the
relaxed slack is < 0 (infeasible, a proof).
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
    out += [Item("efficiency", e.name, e.text or e.name) for e in problem.efficiency]
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
    efficiency = tuple(e for e in problem.efficiency if ("efficiency", e.name) in kinds)
    has_budget = problem.budget is not None and ("row", "budget.total") in kinds
    objective = problem.objective if ("target", "target") in kinds or problem.objective.kind != "target" \
        else ObjectiveSpec()
    return dataclasses.replace(problem, lower=lower, upper=upper, constraints=rows,
                               budget=problem.budget if has_budget else None,
                               use_all=problem.use_all and has_budget,
                               unit=problem.unit if ("unit", "unit") in kinds else None,
                               min_active=min_active, objective=objective, efficiency=efficiency)


def is_feasible(problem: CompiledProblem) -> bool:
    """Can every rule of ``problem`` hold at once? (HiGHS on the linear or mixed-integer system.)

    With efficiency rules, the system without them is checked first, then the rules by
    :func:`efficiency_feasible` (integer features and a target relaxed there).
    """
    from .solvers.global_milp import feasibility_status

    if not problem.efficiency:
        return feasibility_status(problem)
    if not feasibility_status(dataclasses.replace(problem, efficiency=())):
        return False
    return efficiency_feasible(problem)


def efficiency_feasible(problem: CompiledProblem, rounds: int = 60) -> bool:
    """Can the efficiency rules hold together with the rows and cell bounds? ``False`` is a proof.

    Maximizes ``t`` subject to every rule's ``sum_G (u_i e_i - b s_i) >= t`` with ``e_i`` below
    tangent cuts of ``E_i`` (concave cells: an over-estimate; other cells only ``e_i <= E_i(cap)``,
    also an over-estimate as curves rise). ``t < 0`` proves infeasibility; a plan whose *true*
    slacks are >= 0 proves feasibility; otherwise cuts are added at the plan. Undecided after
    ``rounds`` counts as feasible, so a conflict is never claimed wrongly.
    """
    import scipy.sparse as sp
    from scipy.optimize import linprog

    n, K = problem.n, len(problem.efficiency)
    cells = np.unique(np.concatenate([e.index for e in problem.efficiency]))
    ne = len(cells)
    col = -np.ones(n, dtype=int)
    col[cells] = n + np.arange(ne)
    nv = n + ne + 1
    concave = problem.concave[cells]
    pool = problem.pool[cells]
    lo = problem.lower[cells]
    hi = problem.upper[cells]
    far = np.where(np.isfinite(hi), hi, pool * 1e9)

    def curve(s: np.ndarray) -> np.ndarray:
        full = np.zeros(n)
        full[cells] = s
        return (problem.pool * problem.response(full))[cells]

    cut_r, cut_c, cut_v, cut_b = [], [], [], []
    counter = [0]

    def add_cuts(points: np.ndarray, only: np.ndarray) -> None:
        # e_i - E'(p) s_i <= E(p) - E'(p) p
        E, d = curve(points), _slope(problem, cells, points)
        ok = only & np.isfinite(d) & np.isfinite(E)
        for i in np.flatnonzero(ok):
            r = counter[0]
            counter[0] += 1
            cut_r.extend([r, r])
            cut_c.extend([col[cells[i]], cells[i]])
            cut_v.extend([1.0, -d[i]])
            cut_b.append(E[i] - d[i] * points[i])

    # every cell: e_i <= E_i at its cap (curves rise); concave cells: tangents on a wide grid
    E_far = curve(far)
    for x in (0.0, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0):
        add_cuts(np.clip(lo + pool * x, lo, far), concave)
    rows_lp = list(problem.rows())
    A_rows, lo_rows, hi_rows = [], [], []
    for r in rows_lp:
        A_rows.append(sp.csr_matrix((r.coef, (np.zeros(len(r.index), int), r.index)), shape=(1, nv)))
        lo_rows.append(r.lower)
        hi_rows.append(r.upper)
    eff_rows = []
    scale = np.ones(K)
    for k, e in enumerate(problem.efficiency):
        # -sum(u e) + b sum(s) + t <= 0
        c_idx = np.concatenate([col[e.index], e.index, [nv - 1]])
        c_val = np.concatenate([-e.weight, np.full(len(e.index), e.rate), [scale[k]]])
        eff_rows.append(sp.csr_matrix((c_val, (np.zeros(len(c_idx), int), c_idx)), shape=(1, nv)))
    bounds = [(problem.lower[i], problem.upper[i] if np.isfinite(problem.upper[i]) else None) for i in range(n)]
    bounds += [(None, E_far[i]) for i in range(ne)] + [(None, 1.0)]
    cost = np.zeros(nv)
    cost[-1] = -1.0
    for _ in range(rounds):
        A_cut = sp.csr_matrix((cut_v, (cut_r, cut_c)), shape=(counter[0], nv))
        A_ub = sp.vstack([A_cut, *eff_rows] + [a for a, h in zip(A_rows, hi_rows) if np.isfinite(h)]
                         + [-a for a, lw in zip(A_rows, lo_rows) if np.isfinite(lw)]).tocsr()
        b_ub = np.concatenate([cut_b, np.zeros(K), [h for h in hi_rows if np.isfinite(h)],
                               [-lw for lw in lo_rows if np.isfinite(lw)]])
        res = linprog(cost, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs")
        if res.status == 2:
            return False
        if res.status != 0:
            return True
        s = res.x[:n]
        t = res.x[-1]
        size = [float(np.sum(e.weight * res.x[col[e.index]]) + e.rate * np.sum(s[e.index]))
                for e in problem.efficiency]
        if t < -1e-9 * max(max(size), 1.0):
            return False
        slack = [e.activity(problem, s) for e in problem.efficiency]
        if all(h >= -1e-9 * max(sz, 1.0) for h, sz in zip(slack, size)):
            return True
        add_cuts(np.clip(s[cells], lo, far), concave)
    return True


def _slope(problem: CompiledProblem, cells: np.ndarray, spend: np.ndarray) -> np.ndarray:
    """``E'`` of ``cells`` at ``spend`` straight from the curve families."""
    full = np.zeros(problem.n)
    full[cells] = spend
    x = full / problem.pool
    out = np.empty(problem.n)
    for b in problem.blocks:
        out[b.index] = b.family.slope(x[b.index], b.params)
    return out[cells]


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
    rule_kinds = ("row", "efficiency", "target", "unit", "active")
    rules = [it for it in items if it.kind in rule_kinds]
    bounds = [it for it in items if it.kind not in rule_kinds]
    rules = deletion_filter(rules, lambda keep: infeasible(keep + bounds))
    bounds = deletion_filter(bounds, lambda keep: infeasible(rules + keep))
    conflict = rules + bounds
    logger.info("irreducible infeasible set of %d rules", len(conflict))
    return [it.text for it in conflict]
