"""Risk-neutral and CVaR plans for any sampled curves (S-shaped, tables), with a certified gap.

The column-generation LP of :mod:`.risk_lp` needs concave curves: over points of a non-concave
curve it lets a cell mix spends (partial targeting) and its plan is no longer the plan it values.
Here every cell gets breakpoints ``t_i0 < ... < t_iK`` shared by all samples, and the problem

    max  t - 1/(alpha S) sum_k u_k   s.t.  u_k >= t - N_k,   N_k = sum_ij lam_ij U_kij - spend - activation,
         s_i = sum_j lam_ij t_ij,  sum_j lam_ij = 1,  lam on one segment per non-concave cell (binaries),
         budget, rules, bounds, min_active / activation cost (a binary per cell), spend units (integers)

is one MILP in HiGHS (``alpha = 1``: the mean, with no sample rows at all). ``U_kij`` is sample k's
value at ``t_ij`` lifted by a certified bound on how far the curve rises above its chord on the
two neighbouring segments (:func:`allocator.solvers.envelope.excess_bound`, computed from sampled
values and slopes of every draw; for the mean, of the mean curve, which is tighter). On each segment
the lifted chord lies above every sampled curve, so for any feasible plan the MILP has a solution at
least as good: HiGHS's proven dual bound is an upper bound on the true optimum. Its plan ``s`` is
feasible (rules are linear in ``s``) and is evaluated on the true curves, which gives the lower
bound. Breakpoints are then added at the plan and in the middle of both segments next to every
breakpoint the MILP used, until ``(upper - lower) / |lower| <= tolerance``. The best plan so far
(seeded with the nominal optimum) is passed to HiGHS as a start. Curves that peak (``logistic_quadratic``) are replaced
by their running maximum for the bound (a curve above the truth), never for the evaluation.

The bound assumes, as the global solver's does, that a sampled curve's slope does not turn twice
between two sampled points (every registered family, sampled on 8 points per segment).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..errors import NumericalError, SolverUnavailableError
from ..problem import CompiledProblem
from ..solvers import envelope as env
from .evaluation import SampledCurves, cvar
from .risk_model import SampledModel
from .samples import ParameterSamples

logger = logging.getLogger(__name__)

SUBSAMPLES = 8           # sampled points per segment for the lift bound
# few initial breakpoints: refinement puts them where the plan is (measured on b2b_calibrated, 200
# draws, CVaR: 32 initial points 15 s, 8 points 1.6 s, same gap)
INITIAL_BREAKPOINTS = 8
MAX_GRID = 4_000_000     # (samples x cells x points) evaluated at once


def unsupported_reason(problem: CompiledProblem, concave: np.ndarray | None = None) -> str | None:
    """What the sampled MILP cannot express, naming the objective, rules and cells; ``None`` if it can.

    ``concave`` (per cell, concave in every sample) adds the S-shaped cells to the message, so a
    reader knows which cells sent the problem here.
    """
    why = None
    obj = problem.objective
    if obj.kind != "net_value" or obj.rate != 1.0:
        why = (f"the objective is {obj.kind}" + (f" (rate {obj.rate:g})" if obj.kind == "hurdle" else "")
               + "; across samples only net value (value - spend - activation cost) is optimized; "
                 "set `objective: {type: net_value}` or use --evaluate-only")
    elif problem.efficiency:
        parts = [f"'{e.name}' on cell(s) {_labels(problem, e.index)}" for e in problem.efficiency]
        why = (f"efficiency rule(s) {'; '.join(parts)} are nonlinear in spend and not optimized across samples; "
               f"drop them or use --evaluate-only")
    if why and concave is not None and not concave.all():
        why += f" (S-shaped or non-concave in some sample: cell(s) {_labels(problem, np.flatnonzero(~concave))})"
    return why


def _labels(problem: CompiledProblem, cells: np.ndarray, most: int = 10) -> str:
    cells = list(cells)
    text = ", ".join(problem.label(int(i)) for i in cells[:most])
    return text + (f" and {len(cells) - most} more" if len(cells) > most else "")


def spend_caps(problem: CompiledProblem, curves: SampledCurves) -> np.ndarray:
    """Finite spend caps containing an optimum of any measure that rises with every sample's net value.

    The budget and rows with positive coefficients cap their cells. An open cap is doubled until,
    in every sample, the marginal return is below 1/2 and falling (past an S-curve's steep part):
    beyond it more spend lowers every ``N_k``.
    """
    lo, hi = problem.lower, problem.upper.copy()
    for c in problem.rows():
        if np.isfinite(c.upper) and np.all(c.coef > 0):
            room = (c.upper - (c.coef * lo[c.index]).sum()) / c.coef + lo[c.index]
            hi[c.index] = np.minimum(hi[c.index], np.maximum(room, lo[c.index]))
    open_ = ~np.isfinite(hi)
    if open_.any():
        cap = np.maximum(np.maximum(lo, problem.pool), 1.0)
        for _ in range(200):
            m1, m2 = curves.marginals(cap), curves.marginals(2.0 * cap)
            grow = open_ & ((m2.max(axis=0) >= 0.5) | (m2 > m1).any(axis=0))
            if not grow.any():
                break
            cap = np.where(grow, cap * 2.0, cap)
        hi = np.where(open_, 2.0 * cap, hi)
    return np.maximum(hi, lo)


class _Lifts:
    """Breakpoint values of the (hull) sampled curves and certified lifts above their chords."""

    def __init__(self, curves: SampledCurves, mean: bool):
        self.c = curves
        self.mean = mean
        self.kinky = any(env.has_kinks(fam) for fam, *_ in curves.blocks)
        conc = np.ones((curves.S, curves.problem.n), dtype=bool)
        for fam, idx, P, _ in curves.blocks:
            conc[:, idx] = np.asarray(fam.is_concave(P), bool).reshape(curves.S, len(idx))
        self.concave = conc

    def upper_values(self, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(E, U)``: values at ``T`` (samples x cells x K, or 1 x cells x K for the mean) and lifted values."""
        S, (n, K) = self.c.S, T.shape
        G = (K - 1) * SUBSAMPLES + 1
        chunk = max(1, MAX_GRID // max(S * G, 1))
        rows = 1 if self.mean else S
        E = np.empty((rows, n, K))
        U = np.empty((rows, n, K))
        for c0 in range(0, n, chunk):
            cells = np.arange(c0, min(c0 + chunk, n))
            E[:, cells], U[:, cells] = self._chunk(T[cells], cells)
        return E, U

    def _chunk(self, T: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nc, K = T.shape
        m = SUBSAMPLES
        frac = np.arange(m) / m
        W = np.diff(T, axis=1)
        R = (T[:, :-1, None] + W[:, :, None] * frac[None, None, :]).reshape(nc, -1)
        flat = np.concatenate([R, T[:, -1:]], axis=1)                       # (nc, G)
        F = self.c.grid(flat, "value", cells)                               # (S, nc, G)
        Dr = self.c.grid(flat, "slope", cells)
        Dl = self.c.grid(flat, "slope_left", cells) if self.kinky else Dr
        conc = self.concave[:, cells]
        if self.mean:
            F, Dr, Dl = F.mean(axis=0)[None], Dr.mean(axis=0)[None], Dl.mean(axis=0)[None]
            conc = conc.all(axis=0)[None]
        rows = F.shape[0]
        G = flat.shape[1]
        F2, Dr2, Dl2 = (a.reshape(rows * nc, G) for a in (F, Dr, Dl))
        # infinite slopes (hill with shape < 1 at 0): the bound falls back on monotonicity there
        Dr2 = np.where(np.isfinite(Dr2), Dr2, np.nan)
        Dl2 = np.where(np.isfinite(Dl2), Dl2, np.nan)
        certain = env.monotone_slope_mask(np.nan_to_num(Dr2, nan=np.inf), conc.reshape(-1))
        certain &= np.isfinite(Dr2[:, :-1]) & np.isfinite(Dl2[:, 1:])
        Ev = F2[:, ::m]                                                      # values at T
        Tt = np.tile(T, (rows, 1))
        Wt = np.diff(Tt, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            sigma = np.where(Wt > 0, np.diff(Ev, axis=1) / np.where(Wt > 0, Wt, 1.0), 0.0)
        line0 = Ev[:, :-1] - sigma * Tt[:, :-1]
        up = env.excess_bound(np.tile(flat, (rows, 1)), F2, np.nan_to_num(Dr2), np.nan_to_num(Dl2),
                              np.repeat(line0, m, axis=1), np.repeat(sigma, m, axis=1), certain)
        up = np.maximum(up, 0.0).reshape(rows * nc, K - 1, m).max(axis=2)
        up = np.where(Wt > 0, up, 0.0)
        Uv = env.shifted_values(Ev, up, +1.0)
        return Ev.reshape(rows, nc, K), Uv.reshape(rows, nc, K)


def initial_breakpoints(problem: CompiledProblem, curves: SampledCurves, lo: np.ndarray, hi: np.ndarray,
                        extra: list[np.ndarray], k: int | None = None) -> np.ndarray:
    """Per cell: an even spread, equal steps of the mean curve's rise (dense where S-curves climb),
    table kinks and the given plans (nominal, baseline, ``min_active`` thresholds)."""
    n = problem.n
    k = k or INITIAL_BREAKPOINTS
    grid = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, 400)[None, :]
    Ebar = curves.grid(grid, "value").mean(axis=0)
    levels = Ebar[:, :1] + (Ebar[:, -1:] - Ebar[:, :1]) * (np.arange(1, k) / k)[None, :]
    idx = np.clip((Ebar[:, None, :] < levels[:, :, None]).sum(axis=2), 0, grid.shape[1] - 1)
    picks = [lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, k)[None, :],
             grid[np.arange(n)[:, None], idx]]
    for cells, X in env.table_kinks(problem):
        full = np.full((n, X.shape[1]), np.nan)
        full[cells] = X
        picks.append(full)
    picks.extend(np.asarray(e, float)[:, None] for e in extra)
    return env.compact_rows(np.concatenate(picks, axis=1), lo, hi)


def _refine(T: np.ndarray, lam: np.ndarray, spend: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Add the plan's spend and split both segments next to every breakpoint the MILP used.

    A breakpoint's lifted value carries the lift of both its segments, so the bound is loose
    wherever the MILP leans on a point next to a wide segment, not only at the plan itself.
    """
    n, K = T.shape
    used = lam > 1e-9
    left = np.full((n, K), np.nan)
    right = np.full((n, K), np.nan)
    left[:, 1:] = np.where(used[:, 1:], 0.5 * (T[:, :-1] + T[:, 1:]), np.nan)
    right[:, :-1] = np.where(used[:, :-1], 0.5 * (T[:, :-1] + T[:, 1:]), np.nan)
    return env.compact_rows(np.concatenate([T, spend[:, None], left, right], axis=1), lo, hi)


def optimize_sampled_milp(prob: CompiledProblem, samples: ParameterSamples, alpha: float, objective: str,
                          tol: float = 1e-4, max_rounds: int = 60, time_limit: float | None = 120.0,
                          candidates: list[np.ndarray] | None = None):
    """Maximize the mean (``alpha = 1``) or CVaR of net value across samples for any curves.

    Parameters
    ----------
    prob : CompiledProblem
        Budget, rules, bounds, ``min_active``, activation costs and spend units are kept.
    samples : ParameterSamples
    alpha : float
        Tail share of CVaR; 1 gives the mean.
    tol : float
        Relative certified gap at which refinement stops.
    candidates : list of ndarray, optional
        Feasible plans (e.g. the nominal optimum) whose objective seeds the lower bound.

    Returns
    -------
    RiskPlan

    Raises
    ------
    SolverUnavailableError
        Naming the objective or rules the MILP cannot express.
    """
    from ..solvers import check_bounds_feasible
    from .risk_lp import RiskPlan

    t0 = time.perf_counter()
    truth = SampledCurves(prob, samples)
    hull = SampledCurves(prob, samples, monotone=True)
    why = unsupported_reason(prob, hull.concave_cells())
    if why:
        raise SolverUnavailableError(f"risk optimization across samples is not available: {why}")
    check_bounds_feasible(prob)
    lo = prob.lower.copy()
    hi = spend_caps(prob, hull)
    n = prob.n
    ma = prob.min_active if prob.min_active is not None else np.zeros(n)
    cost = prob.activation_cost if prob.activation_cost is not None else np.zeros(n)
    onoff = ((ma > 0) | (cost > 0)) & (lo <= 0)
    lo = np.where(lo > 0, np.maximum(lo, ma), lo)
    hi = np.maximum(hi, lo)

    def measure(spend: np.ndarray) -> float:
        net = truth.net(spend)
        return float(net.mean()) if alpha >= 1 else cvar(net, alpha)

    def feasible(spend: np.ndarray) -> bool:
        # to the MILP's own feasibility tolerance, relative to the total spend
        s = np.asarray(spend, float)
        eps = 1e-8 * max(float(np.abs(s).sum()), 1.0)
        ok = np.all(s >= prob.lower - eps) and np.all(s <= prob.upper + eps)
        ok &= all(c.lower - eps <= c.activity(s) <= c.upper + eps for c in prob.rows())
        on = s > 0
        ok &= bool(np.all(~on | (s >= ma * (1 - 1e-12))))
        if prob.unit is not None:
            ok &= bool(np.allclose(s / prob.unit, np.round(s / prob.unit), atol=1e-6))
        return bool(ok)

    extra = [np.where(onoff, ma, lo)] + [np.clip(c, lo, hi) for c in (candidates or [])]
    T = initial_breakpoints(prob, hull, lo, hi, extra)
    sos = ~hull.concave_cells()
    lifts = _Lifts(hull, mean=alpha >= 1)
    lb, ub, best = -np.inf, np.inf, None
    for c in candidates or []:
        if feasible(c):
            v = measure(c)
            if v > lb:
                lb, best = v, np.asarray(c, float).copy()
    rounds, gap = 0, np.inf
    for rounds in range(1, max_rounds + 1):
        E, U = lifts.upper_values(T)
        left = None if time_limit is None else time_limit - (time.perf_counter() - t0)
        # early rounds are limited by the lifts, not by HiGHS: solve them only as tightly as they can pay
        mip_gap = max(tol / 3, 0.1 * gap) if np.isfinite(gap) else max(tol / 3, 1e-4)
        model = SampledModel(prob, T, E, U, min(alpha, 1.0), sos, onoff, mip_gap=mip_gap, time_limit=left, start=best)
        spend, bound = model.result()
        # HiGHS works to 1e-9 feasibility (set below); pad the bound by 1e-8 so round-off cannot
        # put it below a plan's true value
        ub = min(ub, bound + 1e-8 * max(abs(bound), abs(lb) if np.isfinite(lb) else 0.0, 1.0))
        if feasible(spend):
            v = measure(spend)
            if v > lb:
                lb, best = v, spend
        gap = (ub - lb) / max(abs(lb), 1e-12)
        logger.debug("sampled MILP round %d: %d breakpoints, lb %.10g ub %.10g gap %.3g", rounds, T.shape[1],
                     lb, ub, gap)
        if gap <= tol or (left is not None and time.perf_counter() - t0 > time_limit):
            break
        T = _refine(T, model.weights(), spend, lo, hi)
    if best is None:
        raise NumericalError("the sampled MILP found no plan that satisfies the rules on the true curves")
    gap = max((ub - lb) / max(abs(lb), 1e-12), 0.0)
    if gap > tol:
        logger.warning("risk optimization (%s) stopped at certified gap %.3g > %.3g after %d rounds",
                       objective, gap, tol, rounds)
    note = (f"sampled MILP: {int(sos.sum())} non-concave cell(s) on one segment each, "
            f"{T.shape[1]} breakpoints per cell; bound from curves lifted above every draw")
    return RiskPlan(spend=best, objective=objective, alpha=alpha, value=lb, upper_bound=ub, gap=gap, rounds=rounds,
                    columns=int(T.shape[1] * n), seconds=time.perf_counter() - t0, note=note)


__all__ = ["optimize_sampled_milp", "spend_caps", "unsupported_reason"]
