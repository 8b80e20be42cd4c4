"""An independent reference for smooth problems with linear rules: the same problem as a direct cyipopt model.

Ipopt (interior point, through the ``cyipopt-wheels`` package, which bundles Ipopt 3.14 and MUMPS)
maximizes the net value ``sum(pool * value * p(s / pool)) - sum(s)`` subject to every linear row of
``CompiledProblem.rows()`` (budget, pots, floors/caps, shares, ratios) and the box bounds. Unlike
``cvx_reference`` it needs no DCP form, so hill curves of any shape are accepted (on S-shaped curves
Ipopt returns a local optimum only).

The model, with ``s = scale * y`` and ``scale = budget / n`` (as in ``cvx_reference``):

* objective ``-(net value) / scale``; value and gradient from the families' own vectorized
  ``response`` and ``slope``; the second derivative ``p''`` is written here per family
  (:data:`CURVATURE`), as the families do not expose one;
* constraints ``A y`` in ``[lower / scale, upper / scale]``, one sparse row per rule; the Jacobian is
  the constant ``A`` (its values and sparsity pattern handed over once);
* Hessian of the Lagrangian: diagonal and exact, ``obj_factor * value * scale / pool * p''(x)``
  (linear rows add nothing);
* start: a feasible plan found without the code under test (HiGHS LP through scipy: the cheapest plan
  meeting every row and bound); ``bound_relax_factor = 0`` keeps the iterates inside the bounds, where
  hill curves with shape < 1 have a finite slope;
* MUMPS with ``mumps_permuting_scaling = 0`` (its default scaling is cubic here, SOLVER-NOTES),
  ``mu_strategy adaptive``, ``tol 1e-8``, a wall-clock cap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

#: Ipopt's ApplicationReturnStatus codes, mapped to short names (Ipopt 3.14, ``IpReturnCodes_inc.h``)
STATUS = {
    0: "solved", 1: "solved to acceptable level", 2: "infeasible problem detected",
    3: "search direction becomes too small", 4: "diverging iterates", 5: "user requested stop",
    6: "feasible point found", -1: "maximum iterations exceeded", -2: "restoration failed",
    -3: "error in step computation", -4: "maximum cpu time exceeded", -5: "maximum wall time exceeded",
    -10: "not enough degrees of freedom", -11: "invalid problem definition", -12: "invalid option",
    -13: "invalid number detected", -100: "unrecoverable exception", -101: "non-Ipopt exception thrown",
    -102: "insufficient memory", -199: "internal error",
}
SUCCESS = (0, 1)
INF = 1e20          # beyond Ipopt's nlp_{lower,upper}_bound_inf (1e19): no bound


def _exponential_curvature(x: np.ndarray, P) -> np.ndarray:
    """p''(x) of ``floor + (ceiling - floor) (1 - exp(-rate x))``: ``-(ceiling - floor) rate^2 exp(-rate x)``."""
    return -(P["ceiling"] - P["floor"]) * P["rate"] ** 2 * np.exp(-P["rate"] * x)


def _hill_curvature(x: np.ndarray, P) -> np.ndarray:
    """p''(x) of ``floor + (ceiling - floor) z^k / (1 + z^k)``, ``z = x / h``.

    ``(ceiling - floor) k z^(k-2) ((k - 1) - (k + 1) z^k) / (h^2 (1 + z^k)^3)``.
    """
    h, k = P["half_saturation"], P["shape"]
    z = np.asarray(x, float) / h
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        zk = np.power(z, k)
        d2 = k * np.power(z, k - 2.0) * ((k - 1.0) - (k + 1.0) * zk) / (h ** 2 * (1.0 + zk) ** 3)
        d2 = np.where(np.isinf(zk), 0.0, d2)
    return (P["ceiling"] - P["floor"]) * d2


#: second derivative of the response per spend per member, by family name
CURVATURE = {"exponential": _exponential_curvature, "hill": _hill_curvature}


@dataclass(frozen=True)
class IpoptResult:
    """What Ipopt returned: the plan, why it stopped, and the checks made on it."""

    spend: np.ndarray
    status: int
    message: str
    net_value: float
    seconds: float           # start point + Ipopt, wall clock
    iterations: int
    max_row_violation: float  # largest row violation / max(1, |bound|, sum |coef * spend|)
    max_bound_violation: float  # largest bound violation / max(1, |bound|)

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCESS

    @property
    def status_text(self) -> str:
        return STATUS.get(self.status, f"status {self.status}")

    def feasible(self, rtol: float = 1e-6) -> bool:
        return self.max_row_violation <= rtol and self.max_bound_violation <= rtol


def row_matrix(p):
    """The rows of ``p`` as (CSR matrix over spend, lower, upper)."""
    import scipy.sparse as sps

    rows = p.rows()
    if not rows:
        return sps.csr_matrix((0, p.n)), np.zeros(0), np.zeros(0)
    A = sps.csr_matrix((np.concatenate([r.coef for r in rows]),
                        (np.concatenate([np.full(len(r.index), k) for k, r in enumerate(rows)]),
                         np.concatenate([r.index for r in rows]))), shape=(len(rows), p.n))
    return A, np.array([r.lower for r in rows], float), np.array([r.upper for r in rows], float)


def violations(p, spend: np.ndarray) -> tuple[float, float]:
    """(largest relative row violation, largest relative bound violation) of ``spend``."""
    A, lo, hi = row_matrix(p)
    act = A @ spend
    size = np.maximum.reduce([np.ones(len(act)), np.abs(abs(A) @ np.abs(spend)),
                              np.where(np.isfinite(lo), np.abs(lo), 0.0), np.where(np.isfinite(hi), np.abs(hi), 0.0)])
    rows = np.maximum(lo - act, act - hi) / size
    with np.errstate(invalid="ignore"):
        bounds = np.maximum(p.lower - spend, np.where(np.isfinite(p.upper), spend - p.upper, 0.0))
    bounds = bounds / np.maximum(1.0, np.maximum(np.abs(p.lower), np.where(np.isfinite(p.upper), np.abs(p.upper), 0)))
    return float(np.max(rows, initial=0.0)), float(np.max(bounds, initial=0.0))


def feasible_start(p) -> np.ndarray:
    """The cheapest plan meeting every row and bound (HiGHS LP through scipy), independent of allocator."""
    import scipy.sparse as sps
    from scipy.optimize import linprog

    A, lo, hi = row_matrix(p)
    ub_rows, b_ub = [], []
    if np.isfinite(hi).any():
        ub_rows.append(A[np.flatnonzero(np.isfinite(hi))])
        b_ub.append(hi[np.isfinite(hi)])
    if np.isfinite(lo).any():
        ub_rows.append(-A[np.flatnonzero(np.isfinite(lo))])
        b_ub.append(-lo[np.isfinite(lo)])
    res = linprog(np.ones(p.n), A_ub=sps.vstack(ub_rows).tocsr() if ub_rows else None,
                  b_ub=np.concatenate(b_ub) if b_ub else None,
                  bounds=np.column_stack([p.lower, np.where(np.isfinite(p.upper), p.upper, None)]), method="highs")
    if res.status != 0:
        raise ValueError(f"no feasible start: HiGHS says {res.message}")
    return np.asarray(res.x, float)


class _Model:
    """The cyipopt callbacks (minimization form) over the scaled variable ``y = spend / scale``."""

    def __init__(self, p, scale: float, A):
        self.p, self.scale, self.A = p, scale, A.tocsr()
        coo = A.tocoo()
        self._jac_rows, self._jac_cols, self._jac_vals = coo.row, coo.col, coo.data.copy()
        self._diag = np.arange(p.n)
        self.iterations = 0

    def objective(self, y):
        return -self.p.net_value(self.scale * y) / self.scale

    def gradient(self, y):
        return -(self.p.marginal_return(self.scale * y) - 1.0)

    def constraints(self, y):
        return self.A @ y

    def jacobianstructure(self):
        return self._jac_rows, self._jac_cols

    def jacobian(self, y):
        return self._jac_vals

    def hessianstructure(self):
        return self._diag, self._diag

    def hessian(self, y, lagrange, obj_factor):
        p = self.p
        x = self.scale * y / p.pool
        d2 = np.empty(p.n)
        for b in p.blocks:
            d2[b.index] = CURVATURE[b.family.name](x[b.index], b.params)
        return -obj_factor * p.value * self.scale / p.pool * d2

    def intermediate(self, *args):
        self.iterations = int(args[1])
        return True


def ipopt_solve(p, tol: float = 1e-8, time_limit: float = 600.0, print_level: int = 0,
                options: dict | None = None) -> IpoptResult:
    """Maximize the net value of ``p`` (linear rows, box bounds) with Ipopt; see the module docstring.

    ``options`` are further Ipopt options (they override the ones set here).
    """
    import cyipopt

    unsupported = [f.name for f in (b.family for b in p.blocks) if f.name not in CURVATURE]
    if unsupported:
        raise ValueError(f"no second derivative written for families {sorted(set(unsupported))}; "
                         f"add one to ipopt_reference.CURVATURE")
    if p.objective.kind != "net_value" or p.objective.rate != 1.0 or p.efficiency or p.integer_features:
        raise ValueError("ipopt_solve handles the plain net-value objective with linear rules only")
    t0 = time.perf_counter()
    scale = (p.budget or 1.0) / p.n
    A, lo, hi = row_matrix(p)
    start = feasible_start(p)
    model = _Model(p, scale, A)
    nlp = cyipopt.Problem(
        n=p.n, m=A.shape[0], problem_obj=model,
        lb=p.lower / scale, ub=np.where(np.isfinite(p.upper), p.upper / scale, INF),
        cl=np.where(np.isfinite(lo), lo / scale, -INF), cu=np.where(np.isfinite(hi), hi / scale, INF))
    for key, val in [("tol", tol), ("mu_strategy", "adaptive"), ("linear_solver", "mumps"),
                     ("mumps_permuting_scaling", 0), ("print_level", print_level), ("sb", "yes"),
                     ("max_wall_time", float(time_limit)), ("max_iter", 3000), ("bound_relax_factor", 0.0),
                     ("jac_c_constant", "yes"), ("jac_d_constant", "yes"), *(options or {}).items()]:
        nlp.add_option(key, val)
    y, info = nlp.solve(start / scale)
    spend = np.asarray(y, float) * scale
    seconds = time.perf_counter() - t0
    rows, bounds = violations(p, spend)
    msg = info["status_msg"]
    return IpoptResult(spend=spend, status=int(info["status"]),
                       message=msg.decode() if isinstance(msg, bytes) else str(msg),
                       net_value=p.net_value(spend), seconds=seconds, iterations=model.iterations,
                       max_row_violation=rows, max_bound_violation=bounds)
