"""Risk-neutral and CVaR plans for concave sampled curves: column generation on the Rockafellar-Uryasev LP.

``mean`` (risk-neutral), ``cvar`` (the mean of the worst ``alpha`` share of samples) and
``quantile`` (the ``alpha``-quantile) are offered. Mean and CVaR are concave in the plan and are
solved exactly with the Rockafellar-Uryasev linear program (mean = CVaR with ``alpha = 1``)

    max  t - 1/(alpha S) sum_k u_k   s.t.  u_k >= t - N_k(s),  u_k >= 0,  budget, bounds, constraints,

by column generation (Dantzig-Wolfe) on the cells: cell i's spend is a convex combination of
points ``g_ij`` (``s_i = sum_j lam_ij g_ij``, ``sum_j lam_ij = 1``), and sample k's value of it is
``sum_j lam_ij f_ki(g_ij)``. Because every ``f_ki`` is concave and the objective rises with every
``N_k``, the LP over a set of points equals the problem with each curve replaced by its chords
between those points, so its plan is feasible and its true CVaR is a lower bound. The LP's duals
give the sample weights ``q_k`` and the spend prices; pricing a cell is a one-dimensional concave
maximization (``sum_k q_k f_ki(s) - c_i s``), solved by bisection on its derivative, and its
optimum is both the next point to add and, summed over cells, a certified upper bound
(Lagrangian/Dantzig-Wolfe bound). Points are added until the relative gap is below the tolerance.
Everything is passed to HiGHS as arrays (highspy), and each round warm-starts from the last basis.

S-shaped (non-concave) sampled curves and integer features go to :mod:`.risk_global` (a MILP
over sampled curves lifted above the truth). The quantile is not concave in the plan; it is
optimized over the CVaR-optimal plans at tail shares ``alpha, 2 alpha, 4 alpha, ...`` and the
risk-neutral plan, taking the best (a heuristic, reported as such).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import NumericalError, Problem, SolverUnavailableError, SpecError
from ..problem import CompiledProblem
from .evaluation import SampledCurves, cvar, quantile
from .samples import ParameterSamples

logger = logging.getLogger(__name__)

# HiGHS options. Primal simplex: measured 3-6x faster than dual simplex or IPM on these LPs
# (1,000 dense sample rows), and the natural choice after adding columns, since the last basis stays
# primal feasible; presolve only helps the first solve.
LP_OPTIONS: dict[str, Any] = {"simplex_strategy": 4}

@dataclass
class RiskPlan:
    """A plan optimized for a risk measure, with its certificate.

    Attributes
    ----------
    spend : ndarray
    objective : str
        ``mean``, ``cvar`` or ``quantile``.
    alpha : float
    value : float
        The objective at ``spend`` (evaluated exactly on the samples).
    upper_bound : float or None
        Certified upper bound on the optimum (``None`` for the quantile heuristic).
    gap : float or None
        ``(upper_bound - value) / |value|``.
    rounds : int
        Column-generation rounds.
    columns : int
        Points per cell used in the end (total over cells).
    seconds : float
    """

    spend: np.ndarray
    objective: str
    alpha: float
    value: float
    upper_bound: float | None
    gap: float | None
    rounds: int
    columns: int
    seconds: float
    note: str = ""


def _effective_upper(problem: CompiledProblem, curves: SampledCurves) -> np.ndarray:
    """Finite spend caps containing an optimum of any measure that rises with every sample's net value."""
    lo, hi = problem.lower, problem.upper.copy()
    if problem.budget is not None:
        room = problem.budget - (lo.sum() - lo)
        hi = np.minimum(hi, np.maximum(room, lo))
    open_ = ~np.isfinite(hi)
    if open_.any():
        # past the point where every sample's marginal return is below 1/2, more spend lowers every N_k
        cap = np.maximum(lo, problem.pool)
        for _ in range(200):
            grow = open_ & (curves.marginals(cap).max(axis=0) >= 0.5)
            if not grow.any():
                break
            cap = np.where(grow, cap * 2.0, cap)
        hi = np.where(open_, cap, hi)
    return hi


def _price(curves: SampledCurves, q: np.ndarray, c: np.ndarray, lo: np.ndarray, hi: np.ndarray,
           iters: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, ``argmax`` and ``max`` of ``sum_k q_k f_ki(s) - c_i s`` over ``[lo_i, hi_i]`` (concave)."""
    w = q[:, None]

    def deriv(s):
        return (w * curves.marginals(s)).sum(axis=0) - c

    a, b = lo.copy(), hi.copy()
    d_lo, d_hi = deriv(a), deriv(b)
    at_lo, at_hi = d_lo <= 0, d_hi >= 0
    for _ in range(iters):
        mid = 0.5 * (a + b)
        up = deriv(mid) > 0
        a = np.where(up, mid, a)
        b = np.where(up, b, mid)
        if np.all(b - a <= 1e-13 * np.maximum(np.abs(b), 1.0)):
            break
    s = np.where(at_lo, lo, np.where(at_hi, hi, 0.5 * (a + b)))
    val = (w * curves.values(s)).sum(axis=0) - c * s
    return s, val


def optimize_risk(problem: Any, samples: ParameterSamples, objective: str = "cvar", alpha: float = 0.1,
                  tolerance: float = 1e-6, max_rounds: int = 300, initial_points: int = 2,
                  candidates: list | None = None) -> RiskPlan:
    """The plan that maximizes a risk measure of net value across ``samples``.

    Concave sampled curves without integer features go to the column-generation LP (exact);
    anything else (S-shaped or tabulated curves, ``min_active``, activation costs, spend units)
    to the sampled MILP of :mod:`.risk_global`. Both report a certified gap.

    Parameters
    ----------
    problem : CompiledProblem, Scenario or path
        Budget, bounds, general linear constraints and integer features are kept.
    samples : ParameterSamples
    objective : str
        ``mean`` (risk-neutral), ``cvar`` (mean of the worst ``alpha`` share) or ``quantile``.
    alpha : float
        Tail share, in (0, 1].
    tolerance : float
        Relative certified gap at which the optimizer stops (mean and cvar).
    candidates : list of ndarray, optional
        Feasible plans (e.g. the nominal optimum) that seed the sampled MILP's lower bound.

    Returns
    -------
    RiskPlan

    Raises
    ------
    SolverUnavailableError
        When the objective is not net value (hurdle, target) or efficiency rules are present; the
        message names them.
    NumericalError
        When the gap is not reached in ``max_rounds`` rounds.
    """
    from .common import as_problem

    prob = as_problem(problem)
    if objective not in ("mean", "cvar", "quantile"):
        raise SpecError(Problem("objective", f"must be mean, cvar or quantile; got {objective!r}"))
    if not (0 < alpha <= 1):
        raise SpecError(Problem("alpha", f"must be in (0, 1]; got {alpha!r}"))
    if samples.count < 1:
        raise SpecError(Problem("samples", "need at least one draw"))
    if objective == "quantile":
        return _optimize_quantile(prob, samples, alpha, tolerance, candidates)
    return _optimize_measure(prob, samples, 1.0 if objective == "mean" else alpha, objective, tolerance,
                             max_rounds, initial_points, candidates)


def route(prob: CompiledProblem, samples: ParameterSamples) -> str:
    """``lp`` (column generation, exact for concave curves without integer features) or ``milp``."""
    from .common import non_separable_reason

    concave = SampledCurves(prob, samples).concave()
    return "lp" if concave and non_separable_reason(prob) is None and not prob.efficiency else "milp"


def _optimize_measure(prob: CompiledProblem, samples: ParameterSamples, alpha: float, objective: str, tol: float,
                      max_rounds: int, initial_points: int, candidates: list | None) -> RiskPlan:
    from .risk_global import optimize_sampled_milp

    if route(prob, samples) == "lp":
        return _cvar_column_generation(prob, samples, alpha, objective, tol, max_rounds, initial_points)
    # the scenario's `solver.time_limit` bounds the MILP too; the gap reached is reported either way
    limit = (prob.options or {}).get("time_limit") or 120.0
    return optimize_sampled_milp(prob, samples, alpha, objective, tol, time_limit=float(limit), candidates=candidates)


def _optimize_quantile(prob: CompiledProblem, samples: ParameterSamples, alpha: float, tol: float,
                       candidates: list | None = None) -> RiskPlan:
    t0 = time.perf_counter()
    curves = SampledCurves(prob, samples)
    betas = []
    b = alpha
    while b < 1:
        betas.append(b)
        b *= 2
    betas.append(1.0)
    best = None
    for beta in betas:
        rp = _optimize_measure(prob, samples, beta, "cvar", tol, 300, 2, candidates)
        qv = quantile(curves.net(rp.spend), alpha)
        if best is None or qv > best[0]:
            best = (qv, rp, beta)
    qv, rp, beta = best
    return RiskPlan(spend=rp.spend, objective="quantile", alpha=alpha, value=qv, upper_bound=None, gap=None,
                    rounds=rp.rounds, columns=rp.columns, seconds=time.perf_counter() - t0,
                    note=f"heuristic: best {alpha:g}-quantile among CVaR-optimal plans at tail shares "
                         f"{', '.join(f'{x:g}' for x in betas)} (chosen: {beta:g})")


def _cvar_column_generation(prob: CompiledProblem, samples: ParameterSamples, alpha: float, objective: str,
                            tol: float, max_rounds: int, initial_points: int) -> RiskPlan:
    import highspy

    from ..solvers import check_bounds_feasible, solve
    from .common import non_separable_reason

    t0 = time.perf_counter()
    if samples.count < 1:
        raise SpecError(Problem("samples", "need at least one draw"))
    curves = SampledCurves(prob, samples)
    assert curves.concave(), "the column-generation LP needs concave curves; route() sends others to the MILP"
    other = non_separable_reason(prob)
    if other:
        raise SolverUnavailableError(f"risk optimization handles the net-value objective with linear constraints; "
                                     f"this scenario cannot be optimized across samples: {other}")
    check_bounds_feasible(prob)
    n, S = prob.n, samples.count
    lo = prob.lower
    hi = _effective_upper(prob, curves)
    inf = highspy.kHighsInf

    # starting points: a spread over [lo, hi] and the nominal optimum (feasible for every constraint)
    fracs = np.r_[0.0, np.geomspace(0.01, 1.0, max(initial_points - 1, 1))]
    pts = [lo + f * (hi - lo) for f in fracs]
    try:
        pts.append(np.clip(solve(prob).spend, lo, hi))
    except Exception as exc:  # noqa: BLE001 - the spread alone is a valid start
        logger.info("risk optimization: no nominal start (%s)", exc)

    # rows: S sample rows, [budget], general constraints, n convexity rows
    r_budget = S if prob.budget is not None else None
    r_con0 = S + (1 if prob.budget is not None else 0)
    r_cvx0 = r_con0 + len(prob.constraints)
    m = r_cvx0 + n
    row_lo = np.zeros(m)
    row_hi = np.full(m, inf)
    if r_budget is not None:
        row_lo[r_budget] = prob.budget if prob.use_all else -inf
        row_hi[r_budget] = prob.budget
    con_coef = np.zeros((len(prob.constraints), n))
    for j, c in enumerate(prob.constraints):
        np.add.at(con_coef[j], c.index, c.coef)
        row_lo[r_con0 + j] = c.lower if np.isfinite(c.lower) else -inf
        row_hi[r_con0 + j] = c.upper if np.isfinite(c.upper) else inf
    row_lo[r_cvx0:] = 1.0
    row_hi[r_cvx0:] = 1.0

    from ..solvers.highs_quiet import new_highs

    h = new_highs()   # HiGHS prints a banner on stdout at its first construction; this absorbs it
    for key, val in LP_OPTIONS.items():
        h.setOptionValue(key, val)
    # t (free) and u_k >= 0: minimize -t + 1/(alpha S) sum u
    num0 = 1 + S
    starts = np.r_[0, S + np.arange(S + 1)].astype(np.int32)
    index = np.r_[np.arange(S), np.arange(S)].astype(np.int32)
    value = np.r_[-np.ones(S), np.ones(S)]
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = num0, m
    lp.col_cost_ = np.r_[-1.0, np.full(S, 1.0 / (alpha * S))]
    lp.col_lower_ = np.r_[-inf, np.zeros(S)]
    lp.col_upper_ = np.full(num0, inf)
    lp.row_lower_, lp.row_upper_ = row_lo, row_hi
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = starts, index, value
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = num0, m
    h.passModel(lp)

    col_cell: list[np.ndarray] = []
    col_point: list[np.ndarray] = []

    def add_points(cells: np.ndarray, point: np.ndarray) -> None:
        """One column per (cell, point): sample rows f_ki - s, budget s, constraints a s, convexity 1."""
        full = np.zeros(n)
        full[cells] = point
        F = curves.values(full)[:, cells] - point[None, :]  # (S, len(cells))
        k = len(cells)
        blocks = [F]
        rows = [np.arange(S)]
        if r_budget is not None:
            blocks.append(point[None, :])
            rows.append(np.array([r_budget]))
        if len(prob.constraints):
            blocks.append(con_coef[:, cells] * point[None, :])
            rows.append(r_con0 + np.arange(len(prob.constraints)))
        dense = np.vstack(blocks)  # (rows, k)
        ridx = np.concatenate(rows)
        per = len(ridx) + 1
        idx = np.empty((k, per), np.int32)
        idx[:, :-1] = ridx
        idx[:, -1] = r_cvx0 + cells
        val = np.empty((k, per))
        val[:, :-1] = dense.T
        val[:, -1] = 1.0
        h.addCols(k, np.zeros(k), np.zeros(k), np.full(k, inf), k * per,
                  (np.arange(k) * per).astype(np.int32), idx.ravel(), val.ravel())
        col_cell.append(cells.copy())
        col_point.append(point.copy())

    everyone = np.arange(n)
    for pnt in pts:
        add_points(everyone, np.asarray(pnt, float))

    rounds, lb, ub, best_s = 0, -math.inf, math.inf, None
    cap_price = 1.0 / (alpha * S)
    for rounds in range(1, max_rounds + 1):
        h.run()
        if rounds == 1:
            h.setOptionValue("presolve", "off")  # later rounds warm-start from the last basis
        status = h.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            from ..errors import InfeasibleError

            if status == highspy.HighsModelStatus.kInfeasible:
                raise InfeasibleError("infeasible: the budget and constraints cannot hold together",
                                      conflict=["budget"] + [c.name for c in prob.constraints])
            raise NumericalError(f"HiGHS stopped with {h.modelStatusToString(status)}")
        sol = h.getSolution()
        x = np.asarray(sol.col_value)[num0:]
        y = np.asarray(sol.row_dual)
        cells_all = np.concatenate(col_cell)
        points_all = np.concatenate(col_point)
        s = np.bincount(cells_all, weights=x * points_all, minlength=n)
        s = np.clip(s, lo, hi)
        net = curves.net(s)
        val = cvar(net, alpha) if alpha < 1 else float(net.mean())
        if val > lb:
            lb, best_s = val, s
        lp_val = -float(h.getInfo().objective_function_value)
        # duals -> sample weights q (a point of the CVaR risk envelope) and per-cell spend prices
        q = np.clip(y[:S], 0.0, cap_price)
        q = q / q.sum() if q.sum() > 0 else np.full(S, 1.0 / S)
        price = np.ones(n)
        if r_budget is not None:
            price -= y[r_budget]
        if len(prob.constraints):
            price -= y[r_con0:r_cvx0] @ con_coef
        support = np.flatnonzero(q > 1e-15)
        sub = SampledCurves(prob, samples, support) if len(support) < S else curves
        s_new, phi_val = _price(sub, q[support], price, lo, hi)
        phi = phi_val + y[r_cvx0:]
        ub = min(ub, lp_val + float(np.maximum(phi, 0.0).sum()))
        gap = (ub - lb) / max(abs(lb), 1e-12)
        logger.debug("risk round %d: lp %.10g lb %.10g ub %.10g gap %.3g", rounds, lp_val, lb, ub, gap)
        if gap <= tol:
            break
        # add the priced point where it improves the LP
        improve = phi > 1e-12 * max(abs(lp_val), 1.0)
        if not improve.any():
            logger.warning("risk optimization stopped at gap %.3g > %.3g: no point improves the LP", gap, tol)
            break
        add_points(np.flatnonzero(improve), s_new[improve])
    else:
        raise NumericalError(f"risk optimization did not reach gap {tol:g} in {max_rounds} rounds "
                             f"(gap {(ub - lb) / max(abs(lb), 1e-12):.3g})")
    gap = max((ub - lb) / max(abs(lb), 1e-12), 0.0)
    return RiskPlan(spend=best_s, objective=objective, alpha=alpha, value=lb, upper_bound=ub, gap=gap, rounds=rounds,
                    columns=int(sum(len(c) for c in col_cell)), seconds=time.perf_counter() - t0)

