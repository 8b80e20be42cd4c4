"""Polish a piecewise plan to exact stationarity, and a Lagrangian upper bound.

**Polish.** The MILP fixes the combinatorial part of the plan (which cells run,
which side of an S-curve they sit on). With that fixed, the rest is a concave
problem: every free cell spends where its marginal return ``w E'(s)`` equals its
price ``c + sum_j y_j a_ji``, and the multipliers ``y`` of the binding rows make
those rows hold. The polish solves this system by Newton's method on ``y``
(an active-set loop adds violated rows and drops rows whose multiplier changes
sign), each cell's spend found by bisection on its falling slope. It is the
exact solver's water-filling with several rows. The polished plan replaces the
MILP's when it is feasible and at least as good.

**Lagrangian bound.** For any multipliers with the right signs,

    L(y) = sum_i max_{s in S_i} [w_i E_i(s) - price_i s - cost_i 1(s > 0)] + sum_j y_j bound_j

is an upper bound on the optimum (weak duality), where ``S_i`` is the cell's own
range (with its off option, spend units relaxed). Each inner maximum is found
exactly for concave cells (bisection on the slope, certified by the tangent at
the end of the bracket) and bounded from the sampled grid for the others
(:func:`.envelope.excess_bound`). For concave problems ``L`` at the polished
multipliers equals the optimum to round-off; for S-curves it is the bound of the
convexified problem, which the MILP bound complements.
"""

from __future__ import annotations

import logging

import numpy as np

from ..problem import CompiledProblem
from . import envelope as env

logger = logging.getLogger(__name__)
BISECTIONS = 60


def spend_at_level(problem: CompiledProblem, cells: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                   level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, the spend in ``[lo, hi]`` where the slope ``E'`` (falling there) meets ``level``.

    Returns the spend and the final bracket width (0 where a bound is the answer).
    """
    s = np.empty(len(cells))
    width = np.zeros(len(cells))
    if len(cells) == 0:
        return s, width
    d_lo = env.evaluate(problem, lo[:, None], "slope", cells)[:, 0]
    d_hi = env.evaluate(problem, hi[:, None], "slope_left", cells)[:, 0]
    d_lo = np.where(np.isnan(d_lo), np.inf, d_lo)
    at_lo = d_lo <= level
    at_hi = ~at_lo & (d_hi >= level)
    s[at_lo] = lo[at_lo]
    s[at_hi] = hi[at_hi]
    mid_cells = np.flatnonzero(~at_lo & ~at_hi)
    if len(mid_cells):
        a, b, lv = lo[mid_cells].copy(), hi[mid_cells].copy(), level[mid_cells]
        sub = cells[mid_cells]
        for _ in range(BISECTIONS):
            m = 0.5 * (a + b)
            d = env.evaluate(problem, m[:, None], "slope", sub)[:, 0]
            above = d >= lv
            a = np.where(above, m, a)
            b = np.where(above, b, m)
            if np.all(b - a <= 1e-13 * np.maximum(np.abs(b), 1.0)):
                break
        s[mid_cells] = 0.5 * (a + b)
        width[mid_cells] = b - a
    return s, width


def _matrix(problem: CompiledProblem, rows) -> np.ndarray:
    A = np.zeros((len(rows), problem.n))
    for j, r in enumerate(rows):
        A[j, r.index] += r.coef
    return A


def polish(problem: CompiledProblem, spend: np.ndarray, free: np.ndarray, lo: np.ndarray, hi: np.ndarray,
           weight: np.ndarray, rate: float, y0: dict[str, float] | None = None,
           max_iter: int = 60) -> tuple[np.ndarray, dict[str, float]] | None:
    """Exact stationarity for the ``free`` cells within ``[lo, hi]`` (falling slopes there).

    Returns the polished spend and the multipliers (shadow prices) of the rows, or
    ``None`` when the Newton loop does not reach feasibility (e.g. tabulated curves,
    whose spend jumps at kinks).
    """
    rows = list(problem.rows())
    m = len(rows)
    cells = np.flatnonzero(free)
    if len(cells) == 0:
        return None
    A = _matrix(problem, rows)
    Af = A[:, cells]
    fixed_part = A @ np.where(free, 0.0, spend)
    upper = np.array([r.upper for r in rows]) - fixed_part
    lower = np.array([r.lower for r in rows]) - fixed_part
    total = max(float(np.abs(spend).sum()), 1.0)
    tol = 1e-10 * np.maximum(total, np.maximum(np.where(np.isfinite(upper), np.abs(upper), 0.0),
                                               np.where(np.isfinite(lower), np.abs(lower), 0.0)))
    y = np.zeros(m)
    side = np.array([""] * m, dtype=object)
    act_now = Af @ spend[cells]
    for j, r in enumerate(rows):
        if y0 and r.name in y0 and y0[r.name] != 0:
            y[j] = y0[r.name]
        if np.isfinite(upper[j]) and np.isfinite(lower[j]) and upper[j] - lower[j] <= tol[j]:
            side[j] = "eq"
        elif np.isfinite(upper[j]) and act_now[j] >= upper[j] - 1e-7 * total:
            side[j] = "up"
        elif np.isfinite(lower[j]) and act_now[j] <= lower[j] + 1e-7 * total:
            side[j] = "low"
    y = np.where(side == "", 0.0, y)
    w = weight[cells]
    l_c, h_c = lo[cells], hi[cells]

    def spend_of(yv: np.ndarray) -> np.ndarray:
        price = rate + Af.T @ yv
        with np.errstate(divide="ignore", invalid="ignore"):
            level = np.where(w > 0, price / w, np.inf)
        return spend_at_level(problem, cells, l_c, h_c, level)[0]

    def residual(sv: np.ndarray) -> np.ndarray:
        a = Af @ sv
        target = np.where(side == "up", upper, np.where(side == "low", lower,
                                                         np.where(side == "eq", upper, a)))
        return np.where(side == "", 0.0, a - target)

    s_c = spend_of(y)
    for _ in range(max_iter):
        a = Af @ s_c
        changed = False
        # rows that became violated join; multipliers with the wrong sign leave
        for j in range(m):
            if side[j] == "" and np.isfinite(upper[j]) and a[j] > upper[j] + tol[j]:
                side[j], changed = "up", True
            elif side[j] == "" and np.isfinite(lower[j]) and a[j] < lower[j] - tol[j]:
                side[j], changed = "low", True
            elif side[j] == "up" and y[j] < 0:
                side[j], y[j], changed = "", 0.0, True
            elif side[j] == "low" and y[j] > 0:
                side[j], y[j], changed = "", 0.0, True
        if changed:
            s_c = spend_of(y)
            continue
        r = residual(s_c)
        if np.all(np.abs(r) <= tol):
            break
        act = np.flatnonzero(side != "")
        # d activity / d y = A diag(ds/dprice) A^T, ds/dprice by a forward difference
        price = rate + Af.T @ y
        step = 1e-7 * np.maximum(np.abs(price), 1e-12)
        with np.errstate(divide="ignore", invalid="ignore"):
            level2 = np.where(w > 0, (price + step) / w, np.inf)
        s2 = spend_at_level(problem, cells, l_c, h_c, level2)[0]
        D = (s2 - s_c) / step
        J = (Af[act] * D[None, :]) @ Af[act].T
        J -= 1e-14 * np.eye(len(act)) * max(np.abs(np.diag(J)).max(initial=0.0), 1e-300)
        try:
            dy = np.linalg.solve(J, -r[act])
        except np.linalg.LinAlgError:
            return None
        if not np.all(np.isfinite(dy)):
            return None
        base_norm = np.abs(r).max()
        t = 1.0
        for _ls in range(30):
            y_try = y.copy()
            y_try[act] += t * dy
            s_try = spend_of(y_try)
            if np.abs(residual(s_try)).max() < base_norm or t < 1e-6:
                break
            t *= 0.5
        y, s_c = y_try, s_try
    else:
        return None
    a = Af @ s_c
    if np.any(a > upper + 10 * tol) or np.any(a < lower - 10 * tol):
        return None
    out = spend.copy()
    out[cells] = s_c
    if any((side[j] == "up" and y[j] < -1e-12) or (side[j] == "low" and y[j] > 1e-12) for j in range(m)):
        return None
    return out, {r.name: float(y[j]) for j, r in enumerate(rows)}


def lagrangian_bound(problem: CompiledProblem, y: dict[str, float], weight: np.ndarray, rate: float,
                     a: np.ndarray, b: np.ndarray, hard: np.ndarray, act: np.ndarray, off: np.ndarray,
                     cost: np.ndarray, E0: np.ndarray, bnd: dict, tail_ok: np.ndarray | None = None) -> float:
    """``L(y)``; ``inf`` when some inner maximum is not bounded within the sampled ranges.

    Past an artificial cap ``b < hard`` the inner maximum stays within ``[a, b]`` only when
    the curve is concave from ``b`` on (``tail_ok``) and its slope there is below the price.
    """
    rows = problem.rows()
    price = np.full(problem.n, float(rate))
    const = 0.0
    for r in rows:
        v = y.get(r.name, 0.0)
        if v == 0.0:
            continue
        if v > 0:
            if not np.isfinite(r.upper):
                return np.inf
            const += v * r.upper
        else:
            if not np.isfinite(r.lower):
                return np.inf
            const += v * r.lower
        price[r.index] += v * r.coef
    n = problem.n
    w = weight
    # beyond an artificial cap a cell's slope stays below 1e-4 of its peak: the inner maximum
    # lies within the range when the price exceeds the slope there
    d_b = env.evaluate(problem, b[:, None], "slope_left")[:, 0]
    open_end = (b < hard) & (w * np.nan_to_num(d_b, posinf=np.inf) >= price) & ~off
    if tail_ok is not None:
        open_end |= (b < hard) & ~tail_ok & ~off
    if np.any(open_end & (w > 0)):
        return np.inf
    best = np.full(n, -np.inf)
    concave = problem.concave
    cc = np.flatnonzero(concave & ~off)
    if len(cc):
        with np.errstate(divide="ignore", invalid="ignore"):
            level = np.where(w[cc] > 0, price[cc] / w[cc], np.inf)
        s, width = spend_at_level(problem, cc, a[cc], b[cc], level)
        E = env.evaluate(problem, s[:, None], "value", cc)[:, 0]
        d = np.nan_to_num(env.evaluate(problem, s[:, None], "slope", cc)[:, 0], posinf=0.0)
        h = w[cc] * E - price[cc] * s
        best[cc] = h + np.abs(w[cc] * d - price[cc]) * width
    nc = np.flatnonzero(~concave & ~off)
    if len(nc):
        R, F, Dr, Dl, certain = (bnd[k][nc] for k in ("grid", "F", "Dr", "Dl", "certain"))
        wv = w[nc, None]
        ub = env.excess_bound(R, wv * F, wv * Dr, wv * Dl, np.zeros((len(nc), 1)), price[nc, None], certain)
        best[nc] = np.max(ub, axis=1)
    total = np.where(off, w * E0, best - np.where(act | (cost > 0) & (problem.lower > 0), cost, 0.0))
    total = np.where(act & ~off, np.maximum(total, w * E0), total)
    return float(total.sum() + const)
