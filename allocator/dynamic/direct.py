"""The direct nonlinear formulation with the flow equations, for comparison (benchmarks and tests).

Variables: spend per member ``x[t, s, k]`` of every cell that can spend, and the member
counts ``n[t, s, k]`` at the start of periods 2..T (period 1 is given). Constraints: the
flow equations of :mod:`allocator.dynamic.model` as equalities, the budgets as
inequalities on ``sum n x``. Objective: the discounted net value. Every member of a
state gets the same spend (uniform treatment), and the problem is non-convex (the
products ``n * x`` and ``n * p(x)``), so a local method (SLSQP, or Ipopt through cyipopt
when it is installed) gives a feasible plan and no certificate. No dependency is added for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from .bellman import oneoff
from .model import A, FAIL_DEST, DynamicProblem


@dataclass
class DirectResult:
    x: np.ndarray
    value: float
    success: bool
    message: str
    iterations: int


def solve_direct(problem: DynamicProblem, x0: np.ndarray | None = None, maxiter: int = 500,
                 ftol: float = 1e-12, method: str = "SLSQP") -> DirectResult:
    """Maximize the discounted net value over ``(x, n)`` locally; finite horizons only.

    ``x0`` (T, S, 3) is the starting spend per member (default: every cell at its lower bound).
    ``method`` is ``SLSQP`` (scipy) or ``ipopt`` (cyipopt's ``minimize_ipopt``, when installed;
    finite-difference gradients and a limited-memory Hessian, like SLSQP's inputs).
    """
    T, S = problem.T, problem.S
    on = problem.allowed & problem.has_task[None]
    ix = np.flatnonzero(on.ravel())
    nx, nn = len(ix), (T - 1) * S * 3
    V_end = problem.disc(T) * problem.terminal
    disc = np.array([problem.disc(t) for t in range(1, T + 1)])

    def unpack(z):
        x = np.zeros(T * S * 3)
        x[ix] = z[:nx]
        x = x.reshape(T, S, 3)
        n = np.empty((T, S, 3))
        n[0] = problem.members
        n[1:] = z[nx:].reshape(T - 1, S, 3)
        return x, n

    def step(t, x, n):
        """Members at the start of period t + 2 (0-based t), spend and value of period t + 1."""
        p = np.column_stack([problem.response(k, x[t, :, k]) for k in range(3)])
        s = n[t] * p
        failed = (n[t] - s) * problem.keep
        nxt = np.zeros((S, 3))
        nxt[:, A] = s.sum(axis=1)
        for k in range(3):
            nxt[:, FAIL_DEST[k]] += failed[:, k]
        spend = float((n[t] * x[t]).sum())
        val = disc[t] * (float((problem.margin * nxt).sum()) + float((oneoff(problem, x[t]) * s).sum())
                         - problem.spend_weight * spend)
        if t + 1 < T:
            nxt[:, 0] += problem.arrivals[t + 2]
        return nxt, spend, val

    def objective(z):
        x, n = unpack(z)
        total = 0.0
        for t in range(T):
            nxt, _, val = step(t, x, n)
            total += val
        return -(total + float((V_end * nxt).sum()))

    def flows(z):
        x, n = unpack(z)
        return np.concatenate([(step(t, x, n)[0] - n[t + 1]).ravel() for t in range(T - 1)]) if T > 1 else np.zeros(0)

    cons = [{"type": "eq", "fun": flows}] if T > 1 else []
    rows = problem.budgets
    if rows is not None:
        Wm, B = rows

        eq = problem.budget_equal

        def budget(z):
            x, n = unpack(z)
            spend = np.array([float((n[t] * x[t]).sum()) for t in range(T)])
            return (B - Wm @ spend) / np.maximum(B, 1.0)

        if (~eq).any():
            cons.append({"type": "ineq", "fun": lambda z: budget(z)[~eq]})
        if eq.any():   # use_all rows: spent exactly
            cons.append({"type": "eq", "fun": lambda z: budget(z)[eq]})
    lo = np.broadcast_to(problem.lo[None], (T, S, 3)).ravel()[ix]
    hi = np.broadcast_to(problem.hi[None], (T, S, 3)).ravel()[ix]
    bounds = [(a, None if not np.isfinite(b) else b) for a, b in zip(lo, hi)] + [(0.0, None)] * nn
    x_start = (np.broadcast_to(problem.lo[None], (T, S, 3)) if x0 is None else x0).ravel()[ix]
    # counts of the starting policy, so that the flow equations hold at the start
    z0 = np.concatenate([x_start, np.zeros(nn)])
    x, n = unpack(z0)
    for t in range(T - 1):
        n[t + 1] = step(t, x, n)[0]
    z0[nx:] = n[1:].ravel()
    scale = max(1.0, abs(objective(z0)))
    if method == "ipopt":
        from cyipopt import minimize_ipopt   # optional: only the benchmark asks for it

        res = minimize_ipopt(lambda z: objective(z) / scale, z0, bounds=bounds, constraints=cons,
                             options={"max_iter": maxiter * 6, "tol": ftol, "print_level": 0, "sb": "yes"})
        res.nit = int(getattr(res, "nit", 0))
    else:
        res = minimize(lambda z: objective(z) / scale, z0, method="SLSQP", bounds=bounds, constraints=cons,
                       options={"maxiter": maxiter, "ftol": ftol})
    x, _ = unpack(res.x)
    return DirectResult(x=x, value=-objective(res.x), success=bool(res.success), message=str(res.message),
                        iterations=int(res.nit))
