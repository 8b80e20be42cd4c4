"""The certified multi-period solver: prices on the budgets, backward induction, and a master LP over policies.

Why this route
--------------
Members of one state in one period are interchangeable and move independently, so
the problem with partial targeting is a linear program over "members of state k in
period t treated at spend x" (the LP the issue names). Its Lagrangian with prices
``lam`` on the budget rows decomposes per member into the Bellman recursion of
:mod:`allocator.dynamic.bellman`; the dual function

    D(lam) = max_policy [ value(policy) - lam . (W spend(policy) - B) ]

is convex, its gradient is ``B - W spend(lam)`` and every ``D(lam)`` is an upper bound
on the optimum (weak duality). The search:

1. projected Newton on ``D`` over the free prices, with the Jacobian of period spends by
   finite differences (``R + 1`` backward/forward passes per step, ``R`` budget rows),
   a backtracking line search on ``D`` itself;
2. after every step a *master LP* (Dantzig-Wolfe restricted master) mixes all policies
   evaluated so far (each a column: its spend per period and value) into the best
   budget-feasible mixture. A mixture of whole-population policies is a partial-targeting
   plan (in each period and state, shares of members at different spend levels), and by
   linearity its value is the weighted sum, so the master's optimum is a feasible plan's
   true value: the lower bound. Budgets hold exactly;
3. when Newton cannot improve ``D`` (kinks: tabulated or S-shaped curves, value curves),
   the policies at the best prices with near-tied threshold cells switched to their other
   branch join the master (partial targeting at a tie), and the master's duals price the
   next column (Dantzig-Wolfe);
4. at the end the plan is, where the gap allows, a mixture of policies at the certificate's
   own prices (or within 1e-7 of them), so that its marginal returns match those prices;
   with one budget the two policies bracketing a kink are first brought together by
   bisection on the price (spend falls as the price rises).

The certificate is ``gap = (min D - master value) / |master value|``. Without budgets
the prices are 0 and one backward pass is exact. An infinite horizon first solves the
stationary policy (:mod:`allocator.dynamic.steady`) and uses its values as the end values
of the periods before the policy turns stationary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog

from ..errors import InfeasibleError, NumericalError
from .bellman import Outcome, Policy, backward, forward, other_branch
from .model import DynamicProblem
from .steady import Stationary, stationary

log = logging.getLogger(__name__)


@dataclass
class Column:
    """One evaluated policy: its prices, priced Bellman solution and its outcome from the starting members."""

    price: np.ndarray
    policy: Policy
    outcome: Outcome
    dual: float


@dataclass
class DynamicResult:
    """What the solver has: a mixture of policies (the plan), prices, bounds and why it stopped.

    ``columns`` and ``weights`` give the plan: share ``weights[j]`` of every state's members
    follows ``columns[j].policy``. ``best`` is the column whose dual value is the upper bound;
    its prices and state values drive the optimality check.
    """

    columns: list[Column]
    weights: np.ndarray
    best: Column
    primal: float
    upper_bound: float
    gap: float
    price: np.ndarray
    rows: tuple[np.ndarray, np.ndarray] | None
    iterations: int
    passes: int
    termination: str
    steady: Stationary | None = None
    tail_value: float = 0.0
    info: dict = field(default_factory=dict)


def end_values(problem: DynamicProblem) -> tuple[np.ndarray, Stationary | None, float]:
    """Values at the start of period T + 1 (PV), the stationary solution if any, and the arrivals' tail value."""
    if not problem.steady_state:
        return problem.disc(problem.T) * problem.terminal, None, 0.0
    st = stationary(problem, problem.max_iterations)
    d, T = problem.discount, problem.T
    after = (1.0 + d) ** -T
    # prospects arriving at the start of every period T+1, T+2, ...: sum_j (1+d)^-(j-1) = (1+d)^-T (1+d)/d
    tail = float((problem.steady_arrivals * st.W[:, 0]).sum()) * after * (1.0 + d) / d
    return after * st.W, st, tail


def solve_dynamic(problem: DynamicProblem, tolerance: float | None = None) -> DynamicResult:
    """Solve ``problem`` to a certified relative gap of ``tolerance`` (default: the scenario's).

    Raises
    ------
    InfeasibleError
        When even the least spend (every task at its ``min_spend_per_member``) breaks a budget.
    """
    tol = problem.tolerance if tolerance is None else tolerance
    V_end, st, tail = end_values(problem)
    # the price of a currency unit of period t in the objective: its discount factor (times a hurdle rate)
    disc = problem.spend_weight * np.array([problem.disc(t) for t in range(1, problem.T + 1)])
    rows = problem.budgets
    eq = problem.budget_equal if rows is not None else None
    passes = 0
    least: list[Column] = []

    def column(price: np.ndarray) -> Column:
        nonlocal passes
        passes += 1
        cost = disc + (rows[0].T @ price if rows is not None else 0.0)
        if np.any(cost <= 1e-12 * disc):
            # a negative price (use_all) that makes spend free: the dual is +inf there
            return Column(price=price, policy=least[0].policy, outcome=least[0].outcome, dual=np.inf)
        pol = backward(problem, cost, V_end)
        out = forward(problem, pol.x, pol.p, V_end)
        out.value += tail
        slack = 0.0 if rows is None else float(price @ (rows[1] - rows[0] @ out.spend))
        return Column(price=price, policy=pol, outcome=out, dual=out.value + slack)

    first = column(np.zeros(0 if rows is None else len(rows[1])))
    if rows is not None:
        least.append(_least_spend_column(problem, V_end, tail, rows))
    if rows is None or (np.all(rows[0] @ first.outcome.spend <= rows[1] + 1e-12 * _row_scale(rows, [first]) + 1e-9)
                        and _balanced(first, *rows, eq, zero_ok=False)):
        return DynamicResult(columns=[first], weights=np.ones(1), best=first, primal=first.outcome.value,
                             upper_bound=first.dual, gap=0.0, price=first.price, rows=rows, iterations=0,
                             passes=passes, termination="optimal", steady=st, tail_value=tail,
                             info={"budget_binds": False})
    Wm, B = rows
    cols = [first, least[0]]
    passes += 1
    best = first
    master = _master(cols, rows, eq=eq)
    it = 0
    newton_ok = True
    tied_at: Column | None = None
    while it < problem.max_iterations:
        it += 1
        gap = (best.dual - master.value) / max(abs(master.value), 1.0)
        # Newton converges fast where it works: take it well below the tolerance, so that the
        # plan is one policy at the certificate's prices; at kinks the tolerance is the target
        if gap <= (1e-3 * tol if newton_ok else tol) and (not newton_ok or _balanced(best, Wm, B, eq)):
            break
        current = min(cols, key=lambda c: c.dual) if newton_ok else None
        step_col = _newton_step(current, column, Wm, B, cols, eq) if newton_ok else None
        if step_col is None:
            if newton_ok or tied_at is not best:
                # stuck at a kink: mix the tied branches of threshold curves at the best prices
                tied_at = best
                cols.extend(_tie_columns(problem, best, V_end, tail))
                master = _master(cols, rows, eq=eq)
                if (best.dual - master.value) / max(abs(master.value), 1.0) <= tol:
                    newton_ok = False
                    continue
            newton_ok = False
            nxt = column(np.where(eq, master.duals, np.maximum(master.duals, 0.0)))   # Dantzig-Wolfe
            cols.append(nxt)
        if min(c.dual for c in cols) < best.dual:
            best = min(cols, key=lambda c: c.dual)
        master = _master(cols, rows, eq=eq)
    # prefer a plan mixing only policies at the certificate's prices (its marginal returns then match them)
    mixed = any(w > 1e-6 for c, w in zip(cols, master.weights) if c.price is not best.price)
    if mixed:
        same = [c for c in cols if c is best or (c.dual == np.inf and c.price is best.price)]
        if tied_at is not best:
            same += _tie_columns(problem, best, V_end, tail)
        local = _master(same, rows, strict=False, eq=eq) if len(same) > 1 else None
        # or policies at prices within 1e-7 of the certificate's (Newton's finite-difference steps)
        near = [c for c in cols if np.all(np.isfinite(c.price)) and
                float(np.max(np.abs(c.price - best.price), initial=0.0)) <= 1e-7 * max(1.0, float(best.price.max()))]
        local_near = _master(near, rows, strict=False, eq=eq) if len(near) > 1 else None
        if local is not None and (best.dual - local.value) / max(abs(local.value), 1.0) <= tol:
            cols, master = same, local
        elif local_near is not None and (best.dual - local_near.value) / max(abs(local_near.value), 1.0) <= tol:
            cols, master = near, local_near
        elif np.count_nonzero(best.price > 0) == 1 and not eq.any():
            cols, master, best = _bisect_kink(cols, master, best, column, rows, int(np.argmax(best.price)))
    if master.violation > 1e-8:
        names = [n for n, e in zip(problem.budget_names, eq | np.any(Wm < 0, axis=1)) if e]
        raise InfeasibleError("infeasible: no plan found that spends the `use_all` budgets exactly and meets the "
                              "floors of the rules (within the spend bounds of the cells)", conflict=names)
    gap = max(best.dual - master.value, 0.0) / max(abs(master.value), 1.0)
    termination = "optimal" if gap <= tol else "iteration_limit"
    if termination != "optimal":
        log.warning("multi-period solve stopped at a certified gap of %.3g (tolerance %.3g)", gap, tol)
    return DynamicResult(columns=cols, weights=master.weights, best=best, primal=master.value,
                         upper_bound=best.dual, gap=gap, price=best.price, rows=rows, iterations=it,
                         passes=passes, termination=termination, steady=st, tail_value=tail,
                         info={"budget_binds": True, "columns": len(cols),
                               "method": "newton" if newton_ok else "newton, then Dantzig-Wolfe"})


def _least_spend_column(problem: DynamicProblem, V_end: np.ndarray, tail: float, rows) -> Column:
    """Every task at its least spend: the master's fallback column (feasible if anything is)."""
    x = np.where(problem.allowed, problem.lo[None], 0.0)
    p = np.stack([np.column_stack([problem.response(k, x[t, :, k]) for k in range(3)]) for t in range(problem.T)])
    out = forward(problem, x, p, V_end)
    out.value += tail
    pol = Policy(x=x, p=p, delta=np.zeros_like(x), V=np.zeros((problem.T + 1, problem.S, 3)),
                 cost=np.zeros(problem.T))
    return Column(price=np.full(len(rows[1]), np.nan), policy=pol, outcome=out, dual=np.inf)


def _balanced(col: Column, Wm: np.ndarray, B: np.ndarray, eq: np.ndarray | None = None, rtol: float = 1e-10,
              zero_ok: bool = True) -> bool:
    """Does ``col`` meet its priced budgets to ``rtol`` (and stay within the unpriced ones)?

    Then the plan can be this one policy (mixed at most with negligible shares), and its
    marginal returns match the certificate's prices.
    """
    g = B - Wm @ col.outcome.spend
    tol = rtol * _row_scale((Wm, B), [col])
    tight = (col.price != 0) if zero_ok else np.zeros(len(B), bool)
    if eq is not None:
        tight = tight | eq   # a use_all row is met exactly
    return bool(np.all(np.where(tight, np.abs(g) <= tol, g >= -tol)))


def _bisect_kink(cols: list[Column], master: _Master, best: Column, column, rows, r: int, steps: int = 60):
    """One priced budget row ``r`` at a kink: narrow its price by bisection, then mix the two end policies.

    Spend under row r falls as its price rises (the dual is convex), so an over- and an
    under-spending policy bracket the kink; after ``steps`` halvings the two policies are
    optimal at prices equal to ~1e-15, and their mixture meets the budget exactly. The other
    rows keep the prices of ``best`` (they are not priced, or this does not apply).
    """
    Wm, B = rows

    def excess(c: Column) -> float:
        return float((Wm @ c.outcome.spend)[r] - B[r])

    lo_price, hi_price = 0.0, float(best.price[r])
    under = over = None
    # bracket along row r from best's prices: raise the price until spend fits, lower it until it does not
    trial = best
    while excess(trial) > 0 and hi_price < 1e6:
        over, hi_price = trial, max(2.0 * hi_price, 1e-3)
        p = best.price.copy()
        p[r] = hi_price
        trial = column(p)
    if excess(trial) <= 0:
        under = trial
    if over is None:
        trial = best
        while excess(trial) <= 0 and trial.price[r] > 1e-12:
            under = trial
            p = best.price.copy()
            p[r] = lo_price if trial.price[r] < 1e-9 else 0.5 * trial.price[r]
            trial = column(p)
        if excess(trial) > 0:
            over = trial
    if over is None or under is None:
        return cols, master, best
    a, b = over, under
    for _ in range(steps):
        if b.price[r] - a.price[r] <= 1e-15 * max(1.0, b.price[r]):
            break
        p = a.price.copy()
        p[r] = 0.5 * (a.price[r] + b.price[r])
        mid = column(p)
        if excess(mid) > 0:
            a = mid
        else:
            b = mid
    pair = [a, b]
    m = _master(pair, rows, strict=False, eq=np.zeros(len(B), bool))
    if m is None or (min(a.dual, b.dual) - m.value) / max(abs(m.value), 1.0) > 1e-6:
        return cols, master, best
    # the certificate's prices are those of the pair (the dual is flat at a kink, so nothing is lost)
    return pair, m, min((a, b), key=lambda c: c.dual)


def _tie_columns(problem: DynamicProblem, best: Column, V_end: np.ndarray, tail: float,
                 most: int = 40) -> list[Column]:
    """Policies at ``best``'s prices with near-tied threshold cells switched to their other branch.

    With partial targeting the optimum at a kink mixes the two branches of the cells whose
    choice flips there. The cells are ordered by how little switching loses (per member,
    at these prices) and switched cumulatively, in up to ``most`` steps: a chain of policies
    that are all (nearly) optimal at these prices, for the master to mix.
    """
    pol = best.policy
    alt = np.empty_like(pol.x)
    loss = np.empty_like(pol.x)
    on = problem.allowed & problem.has_task[None]
    for t in range(problem.T):
        for k in range(3):
            alt[t, :, k], loss[t, :, k] = other_branch(problem, k, pol.x[t, :, k], pol.delta[t, :, k],
                                                        float(pol.cost[t]), on[t, :, k])
    out = []
    # one chain per period, so that the master can meet each period's budget on its own
    for t in range(problem.T):
        flat = np.flatnonzero(np.isfinite(loss[t].ravel()))
        if len(flat):
            out += _chain(problem, best, t, flat[np.argsort(loss[t].ravel()[flat], kind="stable")], alt, V_end,
                          tail, most)
    return out


def _chain(problem: DynamicProblem, best: Column, t: int, order: np.ndarray, alt: np.ndarray, V_end: np.ndarray,
           tail: float, most: int) -> list[Column]:
    """Policies with the first cells of ``order`` (flat (segment, state) indices of period t) switched."""
    pol = best.policy
    cuts = np.unique(np.linspace(1, len(order), min(most, len(order))).round().astype(int))
    out = []
    for c in cuts:
        x = pol.x.copy()
        xt = x[t].ravel()
        xt[order[:c]] = alt[t].ravel()[order[:c]]
        x[t] = xt.reshape(x[t].shape)
        p = pol.p.copy()
        for k in range(3):
            p[t, :, k] = problem.response(k, x[t, :, k])
        outcome = forward(problem, x, p, V_end)
        outcome.value += tail
        out.append(Column(price=best.price, policy=Policy(x=x, p=p, delta=pol.delta, V=pol.V, cost=pol.cost),
                          outcome=outcome, dual=np.inf))
    return out


@dataclass
class _Master:
    value: float
    weights: np.ndarray
    duals: np.ndarray
    #: relative shortfall or excess on the use_all rows (elastic: 0 once the columns can meet them)
    violation: float = 0.0


def _row_scale(rows, cols: list[Column]) -> np.ndarray:
    """Size of each row: its bound, or the spend it weighs (rules with a bound of 0, floors), at least 1."""
    Wm, B = rows
    if np.all(np.abs(B) > 0):
        return np.maximum(np.abs(B), 1.0)
    used = np.max([np.abs(Wm) @ c.outcome.spend for c in cols], axis=0)
    return np.maximum(np.where(np.abs(B) > 0, np.abs(B), used), 1.0)


#: penalty per unit of relative violation of a use_all row in the master (in units of the largest value)
_ELASTIC = 1e4


def _master(cols: list[Column], rows, strict: bool = True, eq: np.ndarray | None = None) -> _Master | None:
    """Best budget-feasible mixture of the evaluated policies (HiGHS via scipy).

    Without ``strict`` an infeasible master gives None instead of an error. ``use_all`` rows
    (``eq``) are equalities, made elastic (a penalized shortfall or excess) so that the master
    stays feasible before the columns can meet them; its value then carries the penalty, so
    the gap stays open until they are met.
    """
    Wm, B = rows
    eq = np.zeros(len(B), bool) if eq is None else eq
    spend = np.column_stack([Wm @ c.outcome.spend for c in cols])
    value = np.array([c.outcome.value for c in cols])
    scale = max(1.0, float(np.abs(value).max()))
    J, E = len(cols), int(eq.sum())
    rs = _row_scale(rows, cols)
    A = spend / rs[:, None]
    b = B / rs
    # floors (rows with negative weights) are elastic too: no early column may meet them
    soft = ~eq & np.any(Wm < 0, axis=1)
    F = int(soft.sum())
    c_obj = np.concatenate([-value / scale, np.full(2 * E + F, _ELASTIC)])
    A_ub = np.hstack([A[~eq], np.zeros((int((~eq).sum()), 2 * E)), -np.eye(len(B))[~eq][:, soft]])
    A_eq = np.vstack([np.hstack([A[eq], np.eye(E), -np.eye(E), np.zeros((E, F))]),
                      np.concatenate([np.ones(J), np.zeros(2 * E + F)])[None]])
    res = linprog(c_obj, A_ub=A_ub if len(A_ub) else None, b_ub=b[~eq] if len(A_ub) else None,
                  A_eq=A_eq, b_eq=np.append(b[eq], 1.0), bounds=(0, None), method="highs",
                  options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10})
    if res.status == 2 and not strict:
        return None
    if res.status == 2:
        raise InfeasibleError("infeasible: the least spend of the plan (every task at min_spend_per_member) "
                              "breaks a budget", conflict=[f"budget row {r}: least spend {spend[r, 1]:,.0f} > "
                                                           f"{B[r]:,.0f}" for r in range(len(B))
                                                           if spend[r, 1] > B[r]])
    if res.status != 0:
        raise NumericalError(f"the master LP failed: {res.message}")
    w = np.maximum(res.x[:J], 0.0)
    w /= w.sum()
    viol = float(res.x[J:].sum())
    duals = np.zeros(len(B))
    if len(A_ub):
        duals[~eq] = -np.asarray(res.ineqlin.marginals)
    duals[eq] = -np.asarray(res.eqlin.marginals)[:E]
    duals = duals * scale / rs
    return _Master(value=float(value @ w) - (_ELASTIC * scale * viol if viol > 1e-12 else 0.0), weights=w,
                   duals=duals, violation=viol)


def _newton_step(current: Column, column, Wm: np.ndarray, B: np.ndarray, cols: list[Column],
                 eq: np.ndarray | None = None) -> Column | None:
    """One projected Newton step on the dual from ``current``; the accepted column, or None when stuck.

    The Jacobian of spend by prices is taken by finite differences, first over a tiny step and,
    if that direction does not lower the dual (a threshold cell switching inside the step), over
    a wider one, which averages over nearby kinks.
    """
    for rel in (1e-7, 1e-4):
        c = _newton_try(current, column, Wm, B, cols, rel, np.zeros(len(B), bool) if eq is None else eq)
        if c is not None:
            return c
    return None


def _newton_try(current: Column, column, Wm: np.ndarray, B: np.ndarray, cols: list[Column],
                rel: float, eq: np.ndarray) -> Column | None:
    price = current.price
    g = B - Wm @ current.outcome.spend
    free = (price > 0) | (g < 0) | (eq & (np.abs(g) > 1e-12 * np.maximum(B, 1.0)))
    idx = np.flatnonzero(free)
    if not len(idx):
        return None
    J = np.zeros((len(idx), len(idx)))
    for a, r in enumerate(idx):
        h = rel * max(abs(price[r]), 1e-3)
        trial = price.copy()
        trial[r] += h
        c = column(trial)
        cols.append(c)
        J[:, a] = ((B - Wm @ c.outcome.spend) - g)[idx] / h
    try:
        # least squares: budget rows may be redundant (a total equal to the sum of period caps)
        step = np.linalg.lstsq(J, -g[idx], rcond=1e-10)[0]
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(step)):
        return None
    alpha = 1.0
    for _ in range(20):
        trial = price.copy()
        # prices of caps stay >= 0; those of use_all rows (equalities) take either sign
        trial[idx] = np.where(eq[idx], price[idx] + alpha * step, np.maximum(price[idx] + alpha * step, 0.0))
        c = column(trial)
        cols.append(c)
        if c.dual < current.dual - 1e-15 * abs(current.dual):
            return c
        alpha *= 0.5
    return None
