"""An independent reference for concave problems with linear rules: the same problem in cvxpy (Clarabel).

Exponential curves and hill curves with shape 1 (``c x / (h + x)``) only: both are DCP
(``-exp(-r s / pool)`` and ``-inv_pos(h + s / pool)``). Spend is rescaled to ``budget / n`` per
unit, which Clarabel needs beyond a few thousand cells (SOLVER-NOTES).
"""

from __future__ import annotations

import time

import numpy as np


def cvxpy_solve(p, solver: str = "CLARABEL") -> tuple[np.ndarray, float]:
    """Optimal spend of ``p`` (net value, budget, rows, box bounds) by cvxpy; and the seconds taken."""
    import cvxpy as cp
    import scipy.sparse as sps

    t0 = time.perf_counter()
    n = p.n
    scale = (p.budget or 1.0) / n
    y = cp.Variable(n)
    s = scale * y
    terms = []
    const = 0.0
    for b in p.blocks:
        i = b.index
        pool, val = p.pool[i], p.value[i]
        if b.family.name == "exponential":
            amp = pool * val * (b.params["ceiling"] - b.params["floor"])
            const += float(np.sum(pool * val * b.params["ceiling"]))
            terms.append(-amp @ cp.exp(cp.multiply(-b.params["rate"] * scale / pool, y[i])))
        elif b.family.name == "hill" and np.all(b.params["shape"] == 1):
            h = b.params["half_saturation"]
            amp = pool * val * (b.params["ceiling"] - b.params["floor"])
            # pool*val*c*x/(h+x) = amp - amp*h/(h+x)
            const += float(np.sum(amp + pool * val * b.params["floor"]))
            terms.append(-(amp * h) @ cp.inv_pos(h + cp.multiply(scale / pool, y[i])))
        else:
            raise ValueError(f"no DCP form for family {b.family.name}")
    objective = cp.Maximize(sum(terms) - cp.sum(s))
    cons = [y >= p.lower / scale]
    fin = np.isfinite(p.upper)
    if fin.any():
        cons.append(y[np.flatnonzero(fin)] <= p.upper[fin] / scale)
    rows = p.rows()
    if rows:
        data, ri, ci, lo, hi = [], [], [], [], []
        for k, r in enumerate(rows):
            data.append(r.coef)
            ri.append(np.full(len(r.index), k))
            ci.append(r.index)
            lo.append(r.lower)
            hi.append(r.upper)
        A = sps.csr_matrix((np.concatenate(data), (np.concatenate(ri), np.concatenate(ci))), shape=(len(rows), n))
        lo, hi = np.array(lo), np.array(hi)
        expr = A @ s
        if np.isfinite(hi).any():
            cons.append(expr[np.flatnonzero(np.isfinite(hi))] <= hi[np.isfinite(hi)])
        if np.isfinite(lo).any():
            cons.append(expr[np.flatnonzero(np.isfinite(lo))] >= lo[np.isfinite(lo)])
    prob = cp.Problem(objective, cons)
    prob.solve(solver=solver)
    spend = np.maximum(np.asarray(y.value, float) * scale, p.lower)
    return spend, time.perf_counter() - t0
