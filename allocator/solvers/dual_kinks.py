"""The dual method where spend jumps: tabulated (piecewise-linear) response curves.

On a tabulated curve a cell's maximizer of ``W E(s) - P s`` jumps from one table
point to the next when its slope level ``P / W`` crosses a segment's slope, so the
dual function ``D`` of :mod:`.dual_rules` is piecewise linear in the multipliers
there and Newton's method has no curvature to work with. This module minimizes
``D`` by cutting planes (Kelley 1960) in a box trust region, one small LP in
HiGHS per evaluation (the multipliers are few), and recovers a plan by an LP over
the cells' sets of maximizers (Lagrangian complementarity): at the final
multipliers each cell may spend anywhere between its maximizers just above and
just below its level (a whole segment where the level equals the segment's slope,
a point elsewhere), and the LP picks the spends in those ranges that satisfy the
rows and gain the most. The Lagrangian bound at the same multipliers certifies
the plan, as for smooth curves.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

MAX_CUTS = 300
BRACKET = 1e-7          # relative move of the slope level that brackets a cell's maximizers


def minimize_dual(run, z0: np.ndarray, tol: float) -> tuple[np.ndarray, dict, int]:
    """Cutting-plane minimization of ``run``'s dual from ``z0``; returns the best point, its state, cuts used."""
    D, st = run.evaluate(z0)
    if st is None:
        return z0, None, 0
    best = (D, z0, st)
    Z, Dv, G = [z0], [D], [st["g"]]
    radius = 1.0 + np.abs(z0).max(initial=0.0)
    nz = len(z0)
    k = 0
    for k in range(1, MAX_CUTS + 1):
        Db, zb, _ = best
        lo = np.maximum(run.lb, zb - radius)
        hi = zb + radius
        # min t  s.t.  t >= D_k + g_k (z - z_k)
        Gm = np.array(G)
        A = np.hstack([Gm, -np.ones((len(G), 1))])
        b = np.array([g @ z - d for g, z, d in zip(G, Z, Dv)])
        res = linprog(np.r_[np.zeros(nz), 1.0], A_ub=A, b_ub=b,
                      bounds=list(zip(lo, hi)) + [(None, None)], method="highs")
        if res.status != 0:
            break
        z_new, model = res.x[:nz], res.x[-1]
        inside = np.all((z_new > lo + 1e-12) | (lo <= run.lb)) and np.all(z_new < hi - 1e-12)
        if Db - model <= 0.1 * tol * max(abs(Db), 1.0) and inside:
            break
        D_new, st_new = run.evaluate(z_new)
        if st_new is None:
            radius *= 0.5
            continue
        Z.append(z_new)
        Dv.append(D_new)
        G.append(st_new["g"])
        if D_new < Db:
            best = (D_new, z_new, st_new)
            radius *= 2.0 if not inside else 1.0
        elif not inside:
            radius *= 0.7
    return best[1], best[2], k


def recover_lp(run, st: dict) -> np.ndarray | None:
    """Spends within each cell's set of maximizers at ``st`` that satisfy every rule and gain the most."""
    z = st["z"]
    s_lo, *_ = run.inner(z, bump=BRACKET)        # a higher level: the least maximizer
    s_hi, *_ = run.inner(z, bump=-BRACKET)       # a lower level: the most
    lo, hi = np.minimum(s_lo, s_hi), np.maximum(s_lo, s_hi)
    lo, hi = np.minimum(lo, st["s"]), np.maximum(hi, st["s"])
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        return None
    p = run.p
    mid = 0.5 * (lo + hi)
    slope = _secant(p, lo, hi)
    gain = run.w * slope - run.rate
    A_ub, b_ub = [], []
    for r in run.rows:
        row = sp.csr_matrix((r.coef, (np.zeros(len(r.index), int), r.index)), shape=(1, p.n))
        if np.isfinite(r.upper):
            A_ub.append(row)
            b_ub.append(r.upper)
        if np.isfinite(r.lower):
            A_ub.append(-row)
            b_ub.append(-r.lower)
    E_mid = p.pool * p.response(mid)
    for k in range(run.K):
        # sum(u E(s) - b s) >= constant, with E linear on the cell's range (exact for table segments)
        u, b = run.U.getrow(k).toarray().ravel(), run.Bk.getrow(k).toarray().ravel()
        idx = np.flatnonzero((u != 0) | (b != 0))
        coef = u[idx] * slope[idx] - b[idx]
        const = float(np.sum(u[idx] * (E_mid[idx] - slope[idx] * mid[idx])))
        A_ub.append(sp.csr_matrix((-coef, (np.zeros(len(idx), int), idx)), shape=(1, p.n)))
        b_ub.append(const - run.const[k])
    if not A_ub:
        return np.where(gain > 0, hi, lo)
    res = linprog(-gain, A_ub=sp.vstack(A_ub).tocsr(), b_ub=np.array(b_ub), bounds=np.c_[lo, hi],
                  method="highs")
    if res.status != 0:
        return None
    return np.minimum(np.maximum(res.x, p.lower), p.upper)


def _secant(p, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Slope of ``E`` between ``lo`` and ``hi`` (the slope at ``lo`` where they meet)."""
    width = hi - lo
    E_lo, E_hi = p.pool * p.response(lo), p.pool * p.response(hi)
    x = lo / p.pool
    point = np.empty(p.n)
    for b in p.blocks:
        point[b.index] = b.family.slope(x[b.index], b.params)
    with np.errstate(divide="ignore", invalid="ignore"):
        sec = np.where(width > 1e-12 * np.maximum(hi, 1.0), (E_hi - E_lo) / np.where(width > 0, width, 1.0), point)
    return np.nan_to_num(sec, nan=0.0, posinf=0.0)
