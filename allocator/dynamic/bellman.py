"""Per-member Bellman recursion and the forward pass of member counts.

The dynamics are linear in member counts and the objective is linear in them, so
the value ``V_t(k)`` of one member in state ``k`` at the start of period ``t``
(present value, period-1 money) obeys, with ``c_t`` the price of one currency unit
spent in period ``t`` (its discount factor plus the budgets' shadow prices),

    G_t(j)   = disc_t * margin(j) + V_{t+1}(j)              (being in j at the end of t)
    fail_k   = keep_k * G_t(F(k))                           (a failed member's value)
    delta_k  = disc_t * value_k + G_t(A) - fail_k           (the value of a success)
    V_t(k)   = fail_k + max_x [ p_k(x) * delta_k - c_t * x ]

and the inner maximization is today's equal-marginal-return condition
``delta_k * p_k'(x) = c_t``. It is solved vectorized over segments: concave curves
through their family's inverse marginal (``spend_rule``), clipped to the bounds;
other curves by a global one-dimensional maximization (a grid, then golden-section
refinement around the best point; for tables, their breakpoints). With partial
targeting the per-member value is the concave envelope of ``p``, and the global
maximum of ``p * delta - c * x`` is attained at a point of it, so a single level is
optimal for fixed prices; mixing two levels is needed only at ties, where the
multiplier search mixes whole policies (see :mod:`allocator.dynamic.solve`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import A, FAIL_DEST, DynamicProblem, StateBlock

_GRID = np.concatenate([[0.0], np.geomspace(1e-7, 1.0, 400)])
_GOLD = (np.sqrt(5.0) - 1.0) / 2.0


@dataclass
class Policy:
    """A policy and its priced state values (all arrays indexed ``[t - 1, segment, state]``).

    ``V`` has ``T + 1`` rows: ``V[t - 1]`` is the value at the start of period t and
    ``V[T]`` the end value it was solved against.
    """

    x: np.ndarray
    p: np.ndarray
    delta: np.ndarray
    V: np.ndarray
    cost: np.ndarray


@dataclass
class Outcome:
    """A policy followed forward from the starting members.

    ``n[t - 1]`` are the members at the start of period t (row T: after the last period,
    before arrivals); ``spend`` nominal spend per period; ``value`` the discounted net value.
    """

    n: np.ndarray
    successes: np.ndarray
    spend: np.ndarray
    value: float


def best_spend(block: StateBlock, delta: np.ndarray, cost: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Spend per member maximizing ``p(x) * delta - cost * x`` on ``[lo, hi]``, per cell of ``block``."""
    fam, P = block.family, block.params
    n = len(delta)
    x = lo.copy()
    pos = delta > 0
    if not pos.any():
        return x
    conc = block.concave
    if conc.all():
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            rule = fam.spend_rule(P, np.where(pos, delta, 0.0), np.ones(n))
            x = np.clip(rule(cost), lo, hi)
        return np.where(pos, x, lo)
    if conc.any():
        sub = np.flatnonzero(conc)
        x[sub] = best_spend(_sub(block, sub), delta[sub], cost, lo[sub], hi[sub])
    rest = np.flatnonzero(~conc & pos)
    if len(rest):
        x[rest] = _global_best(_sub(block, rest), delta[rest], cost, lo[rest], hi[rest])
    return x


def _sub(block: StateBlock, where: np.ndarray) -> StateBlock:
    return StateBlock(block.family, block.index[where], {k: v[where] for k, v in block.params.items()},
                      block.concave[where], block.domain_max[where])


def _global_best(block: StateBlock, delta: np.ndarray, cost: float, lo: np.ndarray, hi: np.ndarray,
                 interior: bool = False) -> np.ndarray:
    """Global maximum of ``delta * p(x) - cost * x`` on ``[lo, hi]`` for curves that are not concave.

    With ``interior`` the best point above ``lo`` is returned even where ``lo`` is better
    (the other branch of a threshold curve, for mixing at a tie).

    Spend beyond ``lo + delta / cost`` can never pay (the response gains at most 1), so the
    search runs on ``[lo, min(hi, lo + delta / cost)]``.
    """
    fam, P = block.family, block.params
    up = np.minimum(hi, lo + delta / cost)

    def gain(x: np.ndarray, params, dl: np.ndarray) -> np.ndarray:
        return dl * fam.response(x, params) - cost * x

    if fam.name == "piecewise":
        # the maximum of a piecewise-linear curve minus a line is at a breakpoint or a bound
        X = np.clip(np.where(np.isfinite(P["x"]), P["x"], lo[:, None]), lo[:, None], up[:, None])
        cand = np.concatenate([lo[:, None], X, up[:, None]], axis=1)
        vals = np.column_stack([gain(cand[:, j], P, delta) for j in range(cand.shape[1])])
        return cand[np.arange(len(delta)), np.argmax(vals, axis=1)]
    P2 = {k: v[:, None] for k, v in P.items()}
    grid = lo[:, None] + (up - lo)[:, None] * _GRID[None, :]
    rows = np.arange(len(delta))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        vals = gain(grid, P2, delta[:, None])
        j = np.argmax(vals, axis=1)
        a = grid[rows, np.maximum(j - 1, 0)]
        b = grid[rows, np.minimum(j + 1, len(_GRID) - 1)]
        # golden-section refinement inside the bracket of the best grid point
        c = b - _GOLD * (b - a)
        d = a + _GOLD * (b - a)
        fc, fd = gain(c, P, delta), gain(d, P, delta)
        for _ in range(40):
            left = fc >= fd
            a, b = np.where(left, a, c), np.where(left, d, b)
            c_new = np.where(left, b - _GOLD * (b - a), d)
            d_new = np.where(left, c, a + _GOLD * (b - a))
            fc_new = np.where(left, gain(c_new, P, delta), fd)
            fd_new = np.where(left, fc, gain(d_new, P, delta))
            c, d, fc, fd = c_new, d_new, fc_new, fd_new
        best = 0.5 * (a + b)
        # polish: where the bracket of grid neighbours changes the sign of delta p' - cost, bisect
        # on it to full precision, so that spend moves smoothly with the prices (Newton needs that)
        a0 = grid[rows, np.maximum(j - 1, 0)]
        b0 = grid[rows, np.minimum(j + 1, len(_GRID) - 1)]
        sign = (delta * fam.slope(a0, P) > cost) & (delta * fam.slope(b0, P) < cost)
        if sign.any():
            for _ in range(64):
                mid = 0.5 * (a0 + b0)
                up_ = delta * fam.slope(mid, P) > cost
                a0, b0 = np.where(up_, mid, a0), np.where(up_, b0, mid)
            polished = 0.5 * (a0 + b0)
            better = sign & (gain(polished, P, delta) >= gain(best, P, delta) - 1e-12 * np.abs(delta))
            best = np.where(better, polished, best)
        x_grid = grid[rows, j]
        f_best, f_grid, f_lo = gain(best, P, delta), vals[rows, j], gain(lo, P, delta)
    x = np.where(f_best >= f_grid, best, x_grid)
    if interior:
        return x
    return np.where(np.maximum(f_best, f_grid) > f_lo, x, lo)


def other_branch(problem: DynamicProblem, k: int, x: np.ndarray, delta: np.ndarray, cost: float,
                 on: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For curves that are not concave: the runner-up spend and how much per member it loses.

    Where the best spend is above the lower bound the runner-up is the lower bound, and the
    other way round; ``loss`` is ``inf`` for concave curves (a single maximum, no tie).
    """
    alt = x.copy()
    loss = np.full(problem.S, np.inf)
    for b in problem.blocks[k]:
        sub = np.flatnonzero(~b.concave & on[b.index] & (delta[b.index] > 0))
        if not len(sub):
            continue
        idx = b.index[sub]
        lo, hi = problem.lo[idx, k], problem.hi[idx, k]
        inner = _global_best(_sub(b, sub), delta[idx], cost, lo, hi, interior=True)
        alt[idx] = np.where(x[idx] > lo, lo, inner)
        params = {n: v[sub] for n, v in b.params.items()}
        loss[idx] = (delta[idx] * (b.family.response(x[idx], params) - b.family.response(alt[idx], params))
                     - cost * (x[idx] - alt[idx]))
    return alt, loss


def choose(problem: DynamicProblem, k: int, delta: np.ndarray, cost: float, on: np.ndarray) -> np.ndarray:
    """Best spend per member on state k's task, per segment; 0 where the task cannot spend (``on`` False)."""
    x = np.zeros(problem.S)
    for b in problem.blocks[k]:
        live = on[b.index]
        if live.any():
            sub = np.flatnonzero(live)
            idx = b.index[sub]
            x[idx] = best_spend(_sub(b, sub) if len(sub) < len(b.index) else b, delta[idx], cost,
                                problem.lo[idx, k], problem.hi[idx, k])
    return x


def choose_with_values(problem: DynamicProblem, k: int, d0: np.ndarray, dt: float, cost: float,
                       on: np.ndarray) -> np.ndarray:
    """Best spend per member when a success is worth ``d0 + dt * value * v(x)``.

    Without a value curve ``v = 1`` and this is :func:`choose`. With one, the per-member gain
    ``p(x) (d0 + dt value v(x)) - cost x`` is in general not concave, so it is maximized
    globally (grid, then golden section) on ``[lo, lo + (d0 + dt value)^+ / cost]``.
    """
    x = choose(problem, k, d0 + dt * problem.value[:, k], cost, on)
    vc = np.flatnonzero(problem.has_value_curve(k) & on)
    if not len(vc):
        return x
    lo, hi = problem.lo[vc, k], problem.hi[vc, k]
    up = np.minimum(hi, lo + np.maximum(d0[vc] + dt * problem.value[vc, k], 0.0) / cost)
    full = np.zeros(problem.S)

    def gain(z: np.ndarray) -> np.ndarray:
        full[vc] = z
        return (problem.response(k, full) * (d0 + dt * problem.success_value(k, full)))[vc] - cost * z

    grid = lo[:, None] + (up - lo)[:, None] * _GRID[None, :]
    vals = np.column_stack([gain(grid[:, j]) for j in range(len(_GRID))])
    j = np.argmax(vals, axis=1)
    rows = np.arange(len(vc))
    a = grid[rows, np.maximum(j - 1, 0)]
    b = grid[rows, np.minimum(j + 1, len(_GRID) - 1)]
    for _ in range(90):
        c, d = b - _GOLD * (b - a), a + _GOLD * (b - a)
        left = gain(c) >= gain(d)
        a, b = np.where(left, a, c), np.where(left, d, b)
    best = 0.5 * (a + b)
    x[vc] = np.where(gain(best) >= vals[rows, j], best, grid[rows, j])
    return x


def oneoff(problem: DynamicProblem, x: np.ndarray) -> np.ndarray:
    """One-off value per success, ``value * v(x)``, per (segment, state) at spend ``x`` (S, 3)."""
    return np.column_stack([problem.success_value(k, x[:, k]) for k in range(3)])


def backward(problem: DynamicProblem, cost: np.ndarray, V_end: np.ndarray,
             allowed: np.ndarray | None = None) -> Policy:
    """The optimal per-member policy when a currency unit of period t costs ``cost[t - 1]`` (PV).

    Parameters
    ----------
    cost : ndarray (T,)
        ``disc_t`` plus the shadow price of every budget covering period t.
    V_end : ndarray (S, 3)
        Value per member at the start of period T + 1 (PV): ``disc_T * terminal`` for a
        finite horizon, the discounted stationary values for an infinite one.
    """
    T, S = problem.T, problem.S
    allowed = problem.allowed if allowed is None else allowed
    x = np.zeros((T, S, 3))
    p = np.zeros((T, S, 3))
    delta = np.zeros((T, S, 3))
    V = np.zeros((T + 1, S, 3))
    V[T] = V_end
    zeros = np.zeros(S)
    for t in range(T, 0, -1):
        dt = problem.disc(t)
        G = dt * problem.margin + V[t]
        for k in range(3):
            fail = problem.keep[:, k] * G[:, FAIL_DEST[k]]
            d0 = G[:, A] - fail
            xk = choose_with_values(problem, k, d0, dt, float(cost[t - 1]), allowed[t - 1, :, k])
            pk = problem.response(k, xk) if problem.blocks[k] else zeros
            d = d0 + dt * problem.success_value(k, xk)
            x[t - 1, :, k], p[t - 1, :, k], delta[t - 1, :, k] = xk, pk, d
            V[t - 1, :, k] = fail + pk * d - cost[t - 1] * xk
    return Policy(x=x, p=p, delta=delta, V=V, cost=np.asarray(cost, float))


def forward(problem: DynamicProblem, x: np.ndarray, p: np.ndarray, V_end_true: np.ndarray,
            members: np.ndarray | None = None, arrivals: bool = True) -> Outcome:
    """Follow policy ``(x, p)`` from the starting members; value it without prices.

    ``V_end_true`` values the members left after period T (PV, unpriced); arrivals after
    period T are not counted here (the steady state adds them).
    """
    T, S = problem.T, problem.S
    n = np.zeros((T + 1, S, 3))
    n[0] = problem.members if members is None else members
    succ = np.zeros((T, S, 3))
    spend = np.zeros(T)
    value = 0.0
    for t in range(1, T + 1):
        dt = problem.disc(t)
        cur = n[t - 1]
        s = cur * p[t - 1]
        succ[t - 1] = s
        spend[t - 1] = float((cur * x[t - 1]).sum())
        failed = (cur - s) * problem.keep
        nxt = np.zeros((S, 3))
        nxt[:, A] = s.sum(axis=1)
        for k in range(3):
            nxt[:, FAIL_DEST[k]] += failed[:, k]
        value += dt * (float((problem.margin * nxt).sum()) + float((oneoff(problem, x[t - 1]) * s).sum())
                       - problem.spend_weight * spend[t - 1])
        if t < T and arrivals:
            nxt[:, 0] += problem.arrivals[t + 1]
        n[t] = nxt
    value += float((V_end_true * n[T]).sum())
    return Outcome(n=n, successes=succ, spend=spend, value=value)


def arrivals_value(problem: DynamicProblem, V: np.ndarray) -> float:
    """PV of the new prospects of periods 2..T valued at ``V[t - 1, :, prospects]``."""
    return float(sum((problem.arrivals[t] * V[t - 1, :, 0]).sum() for t in range(2, problem.T + 1)))


def evaluate(problem: DynamicProblem, x: np.ndarray, V_end: np.ndarray, weights: np.ndarray | None = None
             ) -> np.ndarray:
    """Unpriced value per member of a (possibly mixed) policy: ``U[t - 1, s, k]``, PV.

    ``x`` has a leading axis of levels when ``weights`` (same shape) gives each level's
    share of the state's members: the lifetime values the plan makes, state by state.
    """
    T, S = problem.T, problem.S
    if weights is None:
        x, weights = x[None], np.ones((1, *x.shape))
    U = np.zeros((T + 1, S, 3))
    U[T] = V_end
    for t in range(T, 0, -1):
        dt = problem.disc(t)
        G = dt * problem.margin + U[t]
        for k in range(3):
            fail = problem.keep[:, k] * G[:, FAIL_DEST[k]]
            d0 = G[:, A] - fail
            acc = np.zeros(S)
            for j in range(len(x)):
                xk = x[j, t - 1, :, k]
                d = d0 + dt * problem.success_value(k, xk)
                acc += weights[j, t - 1, :, k] * (problem.response(k, xk) * d - dt * xk)
            U[t - 1, :, k] = fail + acc
    return U
