"""Breakpoints of the global solver: the piecewise values over them, and where to add more.

Between rounds the global solver (:mod:`.global_milp`) adds breakpoints where the
bound is loose: at the plans (the MILP's, where the bound's slack sits, and the
polished one), halfway to their neighbouring breakpoints, and where a cell's
marginal return falls to its price. Only cells carrying the slack are refined,
so concave and settled cells keep their few breakpoints.
"""

from __future__ import annotations

import numpy as np

from ..problem import CompiledProblem
from . import envelope as env
from .milp_model import Cells

BISECTIONS = 40
# cells are refined, largest slack first, until the slack left on the others is below this
# share of the tolerance
SLACK_LEFT = 0.2


def piecewise_values(problem: CompiledProblem, T: np.ndarray, bnd: dict, sign: float):
    """Breakpoints and values of the curves over (``sign`` +1) or under (-1) the true ones.

    Concave cells: tangents over, chords under, both exact by concavity. Others: chords
    lifted or sagged by the certified per-segment bounds (:mod:`.envelope`).
    """
    concave = problem.concave
    if sign > 0:
        V = env.shifted_values(bnd["E"], bnd["lift"], +1.0)
        Tt, Vt = env.tangent_overestimate(problem, T, bnd["E"], concave)
        Tp = np.concatenate([T, T[:, -1:]], axis=1)
        Vp = np.concatenate([V, V[:, -1:]], axis=1)
        c = concave[:, None]
        return np.where(c, Tt, Tp), np.where(c, Vt, Vp)
    V = np.where(concave[:, None], bnd["E"], env.shifted_values(bnd["E"], bnd["sag"], -1.0))
    return T, V


def interp_rows(T: np.ndarray, V: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Row-wise linear interpolation of (T, V) at x (T rows non-decreasing, may repeat)."""
    n, K = T.shape
    if K == 1:
        return V[:, 0]
    # the segment ending at or after x: rows repeat their top point as padding, and a plan at
    # the top must read the value of the first copy (the one the model uses, lifted), not of
    # a padding copy, whose shift is 0 (reading that one hid the slack of plans at their caps)
    k = np.clip((T < x[:, None]).sum(axis=1) - 1, 0, K - 2)
    rows = np.arange(n)
    t0, t1 = T[rows, k], T[rows, k + 1]
    v0, v1 = V[rows, k], V[rows, k + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(t1 > t0, (x - t0) / np.where(t1 > t0, t1 - t0, 1.0), 0.0)
    return v0 + np.clip(f, 0.0, 1.0) * (v1 - v0)


def slack(problem: CompiledProblem, cells: Cells, T: np.ndarray, V: np.ndarray, spend: np.ndarray,
          weight: np.ndarray) -> np.ndarray:
    """Per cell, how far the piecewise curve ``(T, V)`` is from the true one at ``spend`` (weighted)."""
    pl = cells.pl & ~cells.off & (~cells.act | (spend > 0))
    approx = interp_rows(T, V, spend)
    true = env.evaluate(problem, spend[:, None], "value")[:, 0]
    return np.where(pl, np.abs(approx - true) * weight, 0.0)


def refine(problem: CompiledProblem, cells: Cells, T: np.ndarray, bnd: dict, state: dict, tol: float,
           weight: np.ndarray) -> np.ndarray:
    """The breakpoints of the next round."""
    c = cells
    spend = state["spend"]
    cell_slack = state["slack"]
    total = max(abs(state["lower"]), abs(state["upper"]), 1e-12)
    order = np.argsort(-cell_slack)
    cum = np.cumsum(cell_slack[order])
    # refine the cells carrying the slack until what is left is well below the tolerance
    keep_n = int(np.searchsorted(cum, cum[-1] - SLACK_LEFT * tol * total) + 1) if cum[-1] > 0 else 0
    pick = np.zeros(problem.n, dtype=bool)
    pick[order[:keep_n]] = True
    pick &= cell_slack > 0
    pick |= state["off"]
    pick &= c.pl
    # the plans (the MILP's, where the bound's slack sits, and the polished one) and the
    # midpoints to their neighbours, and where the marginal return meets the price
    parts = [around(T, state["milp_spend"]), around(T, spend),
             price_points(problem, bnd, state["prices"], weight)[:, None]]
    new = np.concatenate(parts, axis=1)
    new[~pick] = np.nan
    return env.compact_rows(np.concatenate([T, new], axis=1), c.a, c.curve_end)


def around(T: np.ndarray, spend: np.ndarray) -> np.ndarray:
    """``spend`` and the midpoints between it and its neighbouring breakpoints."""
    eps = 1e-8 * np.maximum(T[:, -1], 1.0)
    below = np.where(T < (spend - eps)[:, None], T, -np.inf).max(axis=1)
    above = np.where(T > (spend + eps)[:, None], T, np.inf).min(axis=1)
    left = np.where(np.isfinite(below), 0.5 * (below + spend), np.nan)
    right = np.where(np.isfinite(above), 0.5 * (spend + above), np.nan)
    return np.stack([spend, left, right], axis=1)


def price_points(problem: CompiledProblem, bnd: dict, prices: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Where each cell's marginal return ``weight * E'`` falls to its price (on the falling side)."""
    grid, D = bnd["grid"], bnd["Dr"]
    with np.errstate(divide="ignore", invalid="ignore"):
        level = np.where(weight > 0, prices / weight, np.nan)
    Dn = np.where(np.isfinite(D), D, -np.inf)
    mask = Dn >= level[:, None]
    G = D.shape[1]
    hit = mask.any(axis=1) & ~mask[:, -1] & np.isfinite(level)
    j = np.clip(G - 1 - np.argmax(mask[:, ::-1], axis=1), 0, G - 2)
    rows = np.arange(problem.n)
    lo = grid[rows, j].copy()
    hi = grid[rows, j + 1].copy()
    cells = np.flatnonzero(hit)
    if len(cells) == 0:
        return np.full(problem.n, np.nan)
    lo_c, hi_c, lv = lo[cells], hi[cells], level[cells]
    for _ in range(BISECTIONS):
        mid = 0.5 * (lo_c + hi_c)
        d = env.evaluate(problem, mid[:, None], "slope", cells)[:, 0]
        above = d >= lv
        lo_c = np.where(above, mid, lo_c)
        hi_c = np.where(above, hi_c, mid)
    out = np.full(problem.n, np.nan)
    out[cells] = 0.5 * (lo_c + hi_c)
    return out


def widen(problem: CompiledProblem, cells: Cells, T: np.ndarray, cells_mask: np.ndarray,
          reach: np.ndarray | None = None) -> np.ndarray:
    """Quadruple the artificial caps of ``cells_mask`` (at least twice ``reach``, the spend a plan
    took past them; at most the hard caps); breakpoints for the new range."""
    c = cells
    want = c.b * 4.0 if reach is None else np.maximum(c.b * 4.0, 2.0 * reach)
    newb = np.where(cells_mask, np.minimum(want, c.hard), c.b)
    c.artificial = c.artificial & (newb < c.hard)
    grow = newb > c.b
    c.b = newb
    extra = np.full((problem.n, 3), np.nan)
    extra[grow, 0] = newb[grow]
    extra[grow, 1] = 0.5 * newb[grow]
    extra[grow, 2] = 0.75 * newb[grow]
    return env.compact_rows(np.concatenate([T, extra], axis=1), c.a, c.curve_end)
