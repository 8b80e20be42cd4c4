"""The dynamic optimality check: equal marginal returns, period by period, with success values from the state values.

For a plan and the budget prices ``lam`` of its certificate, every (period, segment,
task) spend level ``x`` the plan uses must satisfy today's condition with the value of
a success taken from the solved state values (``delta``, :mod:`allocator.dynamic.bellman`):

* marginal return ``delta_t p'(x) / disc_t`` (value returned by the next currency unit
  of period t, in period-t money) equals the required return
  ``(disc_t + lam . W[:, t]) / disc_t = 1 + shadow price / disc_t`` where the cell is
  strictly inside its bounds (at a kink of a tabulated curve: the required return lies
  between the right and the left marginal return);
* at its lower bound (usually 0) the next unit returns no more than required;
* at its upper bound the last unit returned at least what is required.

Budgets must hold, and member counts stay non-negative. The check reads only the plan's
spend levels, the prices and the state values; it does not trust the solver's choices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .bellman import oneoff
from .model import TASK_OF_STATE, DynamicProblem
from .solve import DynamicResult

NEGLIGIBLE_SHARE = 1e-6


@dataclass
class DynamicCheck:
    """Result of :func:`check_dynamic`."""

    ok: bool
    feasible: bool
    max_deviation: float
    marginal_return: np.ndarray
    required_return: np.ndarray
    bound: np.ndarray
    violations: list[str] = field(default_factory=list)
    #: the plan mixes policies optimal at prices other than the certificate's (see ``reduced_cost``)
    mixed_prices: bool = False
    #: sum over used levels of members x per-member loss against the best response at the certificate's
    #: prices and values, plus the prices times the budgets' slack, relative to |customer equity|
    #: (= the duality gap, by the performance-difference identity); the condition for mixed plans
    reduced_cost: float = 0.0
    #: largest marginal-return deviation of a level (information when ``mixed_prices``)
    marginal_deviation: float = 0.0
    #: mixed plans: the largest relative distance of a used policy's prices from the certificate's,
    #: and the largest deviation of a level from the conditions at its own policy's prices and values
    price_spread: float = 0.0
    own_deviation: float = 0.0


def _deviation(problem: DynamicProblem, x: np.ndarray, d0: np.ndarray, cost: np.ndarray, on: np.ndarray,
               disc: np.ndarray):
    """Per (t, s, k): marginal return, required return, bound label and the relative deviation.

    A success at spend ``x`` is worth ``d0 + disc_t * value * v(x)`` (present value; ``v = 1``
    without a value curve), so the marginal return of spend is
    ``(d0 + disc_t value v(x)) p'(x) + p(x) disc_t value v'(x)``. Dividing by ``disc_t``
    states it, like ``cost``, in the money of its own period.
    """
    T = x.shape[0]
    mr = np.full(x.shape, np.nan)
    mr_left = np.full(x.shape, np.nan)
    for t in range(T):
        for k in range(3):
            xk = x[t, :, k]
            d = d0[t, :, k] + disc[t] * problem.success_value(k, xk)
            p = problem.response(k, xk)
            mr[t, :, k] = (d * problem.slope(k, xk) + p * disc[t] * problem.success_value_slope(k, xk)) / disc[t]
            mr_left[t, :, k] = (d * problem.slope(k, xk, "left")
                                + p * disc[t] * problem.success_value_slope(k, xk, "left")) / disc[t]
    req = np.broadcast_to((cost / disc)[:, None, None], x.shape).copy()
    hi = np.where(np.isfinite(problem.hi), problem.hi, np.inf)[None]
    at_lo = x <= problem.lo[None] + 1e-9 * np.maximum(1.0, problem.lo[None])
    at_hi = x >= hi - 1e-9 * np.maximum(1.0, np.where(np.isfinite(hi), hi, 0.0))
    bound = np.where(~on, "off", np.where(at_lo, "lower", np.where(at_hi, "upper", "none")))
    rel = np.zeros(x.shape)
    interior = on & ~at_lo & ~at_hi
    # a kink (tabulated curves) is interior when the required return lies between its two slopes
    rel = np.where(interior, np.maximum(np.maximum(mr - req, req - mr_left), 0.0) / req, rel)
    rel = np.where(on & at_lo & ~at_hi, np.maximum(mr - req, 0.0) / req, rel)
    rel = np.where(on & at_hi & ~at_lo, np.maximum(req - mr_left, 0.0) / req, rel)
    return mr, req, bound, np.where(np.isfinite(rel), rel, 0.0)


def check_dynamic(problem: DynamicProblem, result: DynamicResult, rtol: float = 1e-6) -> DynamicCheck:
    """Run the dynamic optimality check on ``result`` (every used policy against the certificate's prices)."""
    best = result.best.policy
    on = problem.allowed & problem.has_task[None]
    disc = np.array([problem.disc(t) for t in range(1, problem.T + 1)])
    d0 = best.delta - disc[:, None, None] * np.stack([oneoff(problem, best.x[t]) for t in range(problem.T)])
    violations: list[str] = []
    marginal: list[str] = []
    worst = 0.0
    mr_out = req_out = bound_out = None
    lost = 0.0
    mixed = False
    spread = own = 0.0
    own_violations: list[str] = []
    for col, w in zip(result.columns, result.weights):
        # every level's members, however few, count in the reduced cost
        if w > 0:
            lost += w * _reduced_cost(problem, col, result.best.policy, d0, disc, on)
        # a policy followed by a negligible share of members (the master meeting a budget to the
        # last cent) carries no marginal condition
        if w <= NEGLIGIBLE_SHARE:
            continue
        if col.price is not result.best.price and (col.price.shape != result.best.price.shape or not np.allclose(
                col.price, result.best.price, rtol=1e-9, atol=1e-12)):
            mixed = True
            if np.all(np.isfinite(col.price)) and np.any(col.policy.cost != 0):
                ref = np.maximum(np.abs(result.best.price), 1e-12)
                spread = max(spread, float(np.max(np.abs(col.price - result.best.price) / ref, initial=0.0)))
                d0_own = col.policy.delta - disc[:, None, None] * np.stack(
                    [oneoff(problem, col.policy.x[t]) for t in range(problem.T)])
                live_own = on & (col.outcome.n[:-1] > 1e-12)
                mr_o, req_o, bound_o, rel_o = _deviation(problem, col.policy.x, d0_own, col.policy.cost, live_own,
                                                         disc)
                own = max(own, float(rel_o.max(initial=0.0)))
                for t, s, k in zip(*np.nonzero(rel_o > rtol)):
                    if len(own_violations) < 20:
                        own_violations.append(f"period {t + 1}, cell ({problem.segment[s]}, {TASK_OF_STATE[k]}): "
                                              f"marginal return {mr_o[t, s, k]:.6g} vs {req_o[t, s, k]:.6g} "
                                              f"required at its own policy's prices ({bound_o[t, s, k]})")
        # only cells with members in this part of the population carry a condition
        live = on & (col.outcome.n[:-1] > 1e-12)
        mr, req, bound, rel = _deviation(problem, col.policy.x, d0, best.cost, live, disc)
        if mr_out is None or w >= max(result.weights) - 1e-15:
            mr_out, req_out, bound_out = mr, req, bound
        worst = max(worst, float(rel.max(initial=0.0)))
        for t, s, k in zip(*np.nonzero(rel > rtol)):
            if len(marginal) < 20:
                marginal.append(f"period {t + 1}, cell ({problem.segment[s]}, {TASK_OF_STATE[k]}): marginal "
                                  f"return {mr[t, s, k]:.6g} vs required {req[t, s, k]:.6g} ({bound[t, s, k]})")
    feasible = True
    if result.rows is not None:
        Wm, B = result.rows
        spend = sum(w * c.outcome.spend for c, w in zip(result.columns, result.weights))
        over = Wm @ spend - B
        size = np.maximum(np.maximum(np.abs(B), np.abs(Wm) @ spend), 1.0)
        for r in np.flatnonzero(over > 1e-9 * size):
            feasible = False
            violations.append(f"budget row {r}: spend {float((Wm @ spend)[r]):,.2f} above {B[r]:,.2f}")
        eq = problem.budget_equal
        for r in np.flatnonzero(eq & (-over > 1e-9 * size)):
            feasible = False
            violations.append(f"budget row {r} (use_all): spend {float((Wm @ spend)[r]):,.2f} below {B[r]:,.2f}")
    if result.steady is not None:
        st = result.steady
        x = st.x[None]
        mr, req, bound, rel = _deviation(problem, x, (st.delta - oneoff(problem, st.x))[None], np.ones(1),
                                         problem.steady_allowed[None] & problem.has_task[None], np.ones(1))
        worst = max(worst, float(rel.max(initial=0.0)))
        for _, s, k in zip(*np.nonzero(rel > rtol)):
            violations.append(f"steady state, cell ({problem.segment[s]}, {TASK_OF_STATE[k]}): marginal return "
                              f"{mr[0, s, k]:.6g} vs required {req[0, s, k]:.6g}")
    slack = 0.0
    if result.rows is not None and len(result.price):
        Wm, B = result.rows
        spend = sum(w * c.outcome.spend for c, w in zip(result.columns, result.weights))
        slack = float(result.price @ (B - Wm @ spend))
    reduced = (lost + slack) / max(abs(result.primal), 1.0)
    if mixed:
        # levels optimal at nearby prices: each must lose (in total) no more than the tolerance
        # against the best response at the certificate's prices; marginal deviations are information
        violations += own_violations
        ok = feasible and reduced <= max(rtol, 1e-9) and not violations
        if reduced > max(rtol, 1e-9):
            violations.append(f"mixed plan: members x reduced cost at the certificate's prices, plus the "
                              f"budgets' priced slack, is {reduced:.3g} of customer equity (> {rtol:g})")
        return DynamicCheck(ok=ok, feasible=feasible, max_deviation=reduced, marginal_return=mr_out,
                            required_return=req_out, bound=bound_out, violations=violations, mixed_prices=True,
                            reduced_cost=reduced, marginal_deviation=worst, price_spread=spread,
                            own_deviation=own)
    violations = marginal + violations
    return DynamicCheck(ok=feasible and worst <= rtol, feasible=feasible, max_deviation=worst,
                        marginal_return=mr_out, required_return=req_out, bound=bound_out, violations=violations,
                        reduced_cost=reduced, marginal_deviation=worst)


def _reduced_cost(problem: DynamicProblem, col, best, d0: np.ndarray, disc: np.ndarray, on: np.ndarray) -> float:
    """Members x per-member loss of ``col``'s levels against the best response at the certificate's prices.

    At prices ``lam`` with values ``V`` (the certificate's backward pass), a member of state k in
    period t treated at ``x`` gains ``p(x) (d0 + disc_t value v(x)) - cost_t x`` over failing;
    the best response ``best.x`` gains the most. The performance-difference identity gives
    ``D(lam) - L(policy, lam) = sum_t sum_k n_t(k) loss_t(k)`` for the policy's own counts ``n``.
    """
    total = 0.0
    n = col.outcome.n[:-1]
    for t in range(problem.T):
        c = float(best.cost[t])
        for k in range(3):
            def gain(x: np.ndarray) -> np.ndarray:
                return problem.response(k, x) * (d0[t, :, k] + disc[t] * problem.success_value(k, x)) - c * x

            loss = gain(best.x[t, :, k]) - gain(col.policy.x[t, :, k])
            total += float((n[t, :, k] * np.where(on[t, :, k], loss, 0.0)).sum())
    return total
