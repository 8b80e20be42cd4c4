"""Plans under parameter uncertainty: evaluate across samples, optimize a risk measure.

Samples come from a model file (``samples:`` written by calibration, carried into the scenario by
the loader) or from distributions the scenario declares (``uncertainty.distributions``). A
sample k gives every cell its own curve parameters, value and pool, so a plan's net value is a
random variable ``N_k(s) = sum_i f_ki(s_i) - sum_i s_i``.

Optimizing
----------
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

The quantile is not concave in the plan; it is optimized over the CVaR-optimal plans at tail
shares ``alpha, 2 alpha, 4 alpha, ...`` and the risk-neutral plan, taking the best (a heuristic,
reported as such; its quantile is at least the CVaR at ``alpha`` of the CVaR plan).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import NumericalError, Problem, SolverUnavailableError, SpecError
from ..problem import CompiledProblem

logger = logging.getLogger(__name__)

DEFAULT_SAMPLES = 1000
# HiGHS options. Primal simplex: measured 3-6x faster than dual simplex or IPM on these LPs
# (1,000 dense sample rows), and the natural choice after adding columns, since the last basis stays
# primal feasible; presolve only helps the first solve.
LP_OPTIONS: dict[str, Any] = {"simplex_strategy": 4}


# ------------------------------------------------------------------------------------------ samples

@dataclass
class ParameterSamples:
    """Joint draws of every cell's parameters.

    Attributes
    ----------
    value, pool : ndarray, shape (S, n)
    params : list of dict
        Per problem block (same order as ``problem.blocks``): parameter name -> array of shape
        (S, cells in block); table curves keep their nominal 2-D arrays (not sampled).
    method : str
    """

    value: np.ndarray
    pool: np.ndarray
    params: list[dict[str, np.ndarray]]
    method: str = "nominal"
    fixed: list[set[str]] = field(default_factory=list)  # per block: parameters kept nominal (table curves)

    @property
    def count(self) -> int:
        return self.value.shape[0]

    def rows(self, k: np.ndarray) -> "ParameterSamples":
        """The draws ``k`` only."""
        return ParameterSamples(self.value[k], self.pool[k],
                                [{nm: (a if nm in fx else a[k]) for nm, a in P.items()}
                                 for P, fx in zip(self.params, self.fixed)], self.method, self.fixed)


def nominal_samples(problem: CompiledProblem, count: int) -> ParameterSamples:
    """``count`` copies of the nominal parameters (the starting point for drawing)."""
    params, fixed = [], []
    for b in problem.blocks:
        params.append({nm: (np.tile(a, (count, 1)) if a.ndim == 1 else a) for nm, a in b.params.items()})
        fixed.append({nm for nm, a in b.params.items() if a.ndim != 1})
    return ParameterSamples(np.tile(problem.value, (count, 1)), np.tile(problem.pool, (count, 1)), params,
                            fixed=fixed)


def _locate(problem: CompiledProblem) -> tuple[dict[tuple[str, str], int], np.ndarray, np.ndarray]:
    """(segment, task) -> cell; cell -> block number; cell -> position inside its block."""
    where = {(str(s), str(t)): i for i, (s, t) in enumerate(zip(problem.segment, problem.task))}
    blk = np.empty(problem.n, int)
    pos = np.empty(problem.n, int)
    for j, b in enumerate(problem.blocks):
        blk[b.index] = j
        pos[b.index] = np.arange(len(b.index))
    return where, blk, pos


def _check_draws(problem: CompiledProblem, out: ParameterSamples, source: str) -> None:
    problems = []
    for arr, name, lo in ((out.value, "value", 0.0), (out.pool, "pool", 0.0)):
        bad = ~np.isfinite(arr) | (arr < lo) | ((arr <= 0) if name == "pool" else False)
        for i in np.flatnonzero(bad.any(axis=0))[:10]:
            k = int(np.flatnonzero(bad[:, i])[0])
            problems.append(Problem(f"samples.{name}", f"draw {k} is {arr[k, i]:g}; must be "
                                    f"{'> 0' if name == 'pool' else '>= 0'} and finite", problem.label(i)))
    for b, P in zip(problem.blocks, out.params):
        for prm in b.family.params:
            a = P[prm.name]
            bad = ~np.isfinite(a) | (a < prm.lower) | (a > prm.upper)
            for j in np.flatnonzero(bad.any(axis=0))[:10]:
                k = int(np.flatnonzero(bad[:, j])[0])
                problems.append(Problem(f"samples.curve.{prm.name}", f"draw {k} is {a[k, j]:g}; must be in "
                                        f"[{prm.lower:g}, {prm.upper:g}]", problem.label(int(b.index[j]))))
    if problems:
        raise SpecError(problems, source=source)


def samples_from_spec(problem: CompiledProblem, spec: Any) -> ParameterSamples:
    """Parameter draws from a ``samples:`` block (:class:`~allocator.spec.models.SamplesSpec`).

    Cells without draws keep their nominal parameters in every sample.

    Raises
    ------
    SpecError
        Naming the cell and field when a cell is unknown, a parameter does not belong to the cell's
        curve family, a list has the wrong length, or a draw is out of range.
    """
    count = spec.count
    out = nominal_samples(problem, count)
    out.method = spec.method
    where, blk, pos = _locate(problem)
    problems = []
    for cs in spec.cells:
        name = f"({cs.segment}, {cs.task})"
        i = where.get((cs.segment, cs.task))
        if i is None:
            problems.append(Problem("samples.cells", "no such cell in the scenario", name))
            continue
        fam = problem.blocks[blk[i]].family
        lists = {f"curve.{k}": v for k, v in cs.curve.items()}
        if cs.value is not None:
            lists["value"] = cs.value
        if cs.pool is not None:
            lists["pool"] = cs.pool
        for key, draws in lists.items():
            if len(draws) != count:
                problems.append(Problem(f"samples.{key}", f"has {len(draws)} draws; samples.count is {count}", name))
                continue
            arr = np.asarray(draws, float)
            if key == "value":
                out.value[:, i] = arr
            elif key == "pool":
                out.pool[:, i] = arr
            else:
                prm = key.split(".", 1)[1]
                P = out.params[blk[i]]
                if prm not in P or prm in out.fixed[blk[i]]:
                    known = ", ".join(p.name for p in fam.params) or "none"
                    problems.append(Problem(f"samples.{key}", f"is not a parameter of family '{fam.name}' "
                                                              f"(sampled parameters: {known})", name))
                    continue
                P[prm][:, pos[i]] = arr
    if problems:
        raise SpecError(problems, source="samples")
    _check_draws(problem, out, "samples")
    return out


def samples_from_distributions(problem: CompiledProblem, distributions: list, count: int, seed: int | None = None,
                               base: ParameterSamples | None = None) -> ParameterSamples:
    """Draw parameters from declared distributions (:class:`~allocator.spec.models.DistributionSpec`).

    ``lognormal`` multiplies the nominal value by ``exp(N(0, sigma))``; ``normal`` adds ``N(0, sd)``;
    ``uniform`` draws ``U(low, high)``. Draws of curve parameters are clipped to the family's
    allowed range (e.g. a ceiling stays <= 1). ``shared: true`` uses one draw for all matching cells.
    """
    out = base if base is not None else nominal_samples(problem, count)
    if base is None:
        out.method = "distributions"
    rng = np.random.default_rng(seed)
    where, blk, pos = _locate(problem)
    problems = []
    for k, d in enumerate(distributions):
        tag = f"uncertainty.distributions[{k}]"
        need = {"lognormal": ("sigma",), "normal": ("sd",), "uniform": ("low", "high")}[d.dist]
        missing = [f for f in need if getattr(d, f) is None]
        if missing:
            problems.append(Problem(tag, f"dist {d.dist} needs {', '.join(missing)}"))
            continue
        if d.dist == "uniform" and d.high < d.low:
            problems.append(Problem(tag, f"high must be >= low ({d.low:g}); got {d.high:g}"))
            continue
        cells = [i for (s, t), i in where.items() if d.segment in ("*", s) and d.task in ("*", t)]
        if d.param.startswith("curve."):
            prm = d.param.split(".", 1)[1]
            cells = [i for i in cells if prm in out.params[blk[i]] and prm not in out.fixed[blk[i]]]
        if not cells:
            problems.append(Problem(tag, f"matches no cell with parameter {d.param} "
                                         f"(segment {d.segment}, task {d.task})"))
            continue
        z = rng.standard_normal(count if d.shared else (count, len(cells)))
        u = rng.random(count if d.shared else (count, len(cells)))
        if d.shared:
            z = np.repeat(z[:, None], len(cells), axis=1)
            u = np.repeat(u[:, None], len(cells), axis=1)
        cells_a = np.array(cells)
        if d.param == "value":
            cur = out.value[:, cells_a]
        elif d.param == "pool":
            cur = out.pool[:, cells_a]
        else:
            cur = np.column_stack([out.params[blk[i]][prm][:, pos[i]] for i in cells])
        if d.dist == "lognormal":
            new = cur * np.exp(d.sigma * z)
        elif d.dist == "normal":
            new = cur + d.sd * z
        else:
            new = d.low + (d.high - d.low) * u
        if d.param == "value":
            out.value[:, cells_a] = np.maximum(new, 0.0)
        elif d.param == "pool":
            out.pool[:, cells_a] = np.maximum(new, 1e-9)
        else:
            for c, i in enumerate(cells):
                fam_param = next(p for p in problem.blocks[blk[i]].family.params if p.name == prm)
                out.params[blk[i]][prm][:, pos[i]] = np.clip(new[:, c], fam_param.lower, fam_param.upper)
    if problems:
        raise SpecError(problems, source="uncertainty")
    _check_draws(problem, out, "uncertainty")
    return out


def draw_samples(scenario: Any, count: int | None = None, seed: int | None = None) -> ParameterSamples:
    """The scenario's parameter samples: the model's draws and/or its declared distributions.

    Raises
    ------
    SpecError
        When the scenario has neither samples nor distributions.
    """
    from ..compile import compile_scenario
    from .common import as_scenario

    sc = as_scenario(scenario)
    problem = compile_scenario(sc)
    unc = sc.uncertainty
    dists = list(unc.distributions) if unc else []
    if sc.samples is None and not dists:
        raise SpecError(Problem("uncertainty", "the scenario has no parameter samples (from its model file) and "
                                               "declares no `uncertainty.distributions`"), source=sc.name)
    if sc.samples is not None:
        base = samples_from_spec(problem, sc.samples)
        if count is not None and count != base.count:
            raise SpecError(Problem("samples", f"the model carries {base.count} draws; cannot use {count}"),
                            source=sc.name)
        if dists:
            base.method += " + distributions"
            return samples_from_distributions(problem, dists, base.count, seed if seed is not None else unc.seed, base)
        return base
    n = count or unc.samples or DEFAULT_SAMPLES
    return samples_from_distributions(problem, dists, n, seed if seed is not None else unc.seed)


# ------------------------------------------------------------------------------------------ evaluation

class SampledCurves:
    """Per-sample cell values and marginal returns at a plan, vectorized over samples and cells."""

    def __init__(self, problem: CompiledProblem, samples: ParameterSamples, rows: np.ndarray | None = None):
        self.problem = problem
        sm = samples if rows is None else samples.rows(rows)
        self.S = sm.count
        self.value, self.pool = sm.value, sm.pool
        self.blocks = []
        for b, P, fx in zip(problem.blocks, sm.params, sm.fixed):
            flat = {nm: (np.tile(a, (self.S, 1)) if nm in fx else a.ravel()) for nm, a in P.items()}
            self.blocks.append((b.family, b.index, flat))

    def concave(self) -> bool:
        return all(bool(np.all(fam.is_concave(P))) for fam, _, P in self.blocks)

    def _per_cell(self, method: str, spend: np.ndarray) -> np.ndarray:
        """``method`` (response or slope) at spend per member, shape (S, n)."""
        x = np.broadcast_to(np.asarray(spend, float), (self.S, self.problem.n)) / self.pool
        out = np.empty((self.S, self.problem.n))
        for fam, idx, P in self.blocks:
            out[:, idx] = getattr(fam, method)(x[:, idx].ravel(), P).reshape(self.S, len(idx))
        return out

    def values(self, spend: np.ndarray) -> np.ndarray:
        """Expected value per sample and cell: ``pool * value * p(spend / pool)``."""
        return self.pool * self.value * self._per_cell("response", spend)

    def marginals(self, spend: np.ndarray) -> np.ndarray:
        """Marginal return per sample and cell: ``value * p'(spend / pool)`` (right derivative)."""
        return self.value * self._per_cell("slope", spend)

    def net(self, spend: np.ndarray) -> np.ndarray:
        """Net value per sample."""
        return self.values(spend).sum(axis=1) - float(np.sum(spend))


def cvar(net: np.ndarray, alpha: float) -> float:
    """Mean of the worst ``alpha`` share of outcomes (fractional sample at the boundary included)."""
    x = np.sort(np.asarray(net, float))
    m = alpha * len(x)
    k = int(math.floor(m + 1e-12))
    tail = x[:k].sum() + (m - k) * (x[k] if k < len(x) else 0.0)
    return float(tail / m)


def quantile(net: np.ndarray, alpha: float) -> float:
    """The ``alpha``-quantile of the outcomes (lower empirical quantile: the value at rank ceil(alpha S))."""
    x = np.sort(np.asarray(net, float))
    return float(x[max(int(math.ceil(alpha * len(x) - 1e-12)) - 1, 0)])


@dataclass
class PlanRisk:
    """The distribution of one plan's net value across samples."""

    name: str
    mean: float
    std: float
    p5: float
    p95: float
    cvar: float
    quantile: float
    alpha: float
    prob_beats_baseline: float | None
    net: np.ndarray = field(repr=False)

    def row(self) -> dict[str, Any]:
        return {"plan": self.name, "mean": self.mean, "std": self.std, "p5": self.p5, "p95": self.p95,
                f"cvar_{self.alpha:g}": self.cvar, f"quantile_{self.alpha:g}": self.quantile,
                "prob_beats_baseline": self.prob_beats_baseline}


def risk_of(name: str, net: np.ndarray, alpha: float, baseline_net: np.ndarray | None = None) -> PlanRisk:
    """Summary statistics of sampled net values (paired with the baseline's, sample by sample)."""
    beats = None if baseline_net is None else float(np.mean(net > baseline_net))
    return PlanRisk(name=name, mean=float(net.mean()), std=float(net.std(ddof=1)) if len(net) > 1 else 0.0,
                    p5=float(np.percentile(net, 5)), p95=float(np.percentile(net, 95)), cvar=cvar(net, alpha),
                    quantile=quantile(net, alpha), alpha=alpha, prob_beats_baseline=beats, net=net)


def evaluate_plan(problem: Any, spend: Any, samples: ParameterSamples, alpha: float = 0.1, name: str = "plan",
                  baseline: bool = True) -> PlanRisk:
    """Distribution of a plan's net value across ``samples`` (mean, 5th/95th percentiles, CVaR, ...).

    Parameters
    ----------
    problem : CompiledProblem, Plan, Scenario or path
    spend : ndarray or Plan
    samples : ParameterSamples
    alpha : float
        Tail share for CVaR and the quantile.
    baseline : bool
        Also give the probability of beating the baseline (current spend), where one is given.
    """
    from ..plan import Plan
    from .baseline import baseline_spend, has_baseline
    from .common import as_problem

    prob = as_problem(problem)
    s = spend.spend if isinstance(spend, Plan) else np.asarray(spend, float)
    sc = SampledCurves(prob, samples)
    base = sc.net(baseline_spend(prob)) if baseline and has_baseline(prob) else None
    return risk_of(name, sc.net(s), alpha, base)


# ------------------------------------------------------------------------------------------ optimization

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
                  tolerance: float = 1e-6, max_rounds: int = 300, initial_points: int = 2) -> RiskPlan:
    """The plan that maximizes a risk measure of net value across ``samples``.

    Parameters
    ----------
    problem : CompiledProblem, Scenario or path
        Budget, bounds and general linear constraints are kept.
    samples : ParameterSamples
    objective : str
        ``mean`` (risk-neutral), ``cvar`` (mean of the worst ``alpha`` share) or ``quantile``.
    alpha : float
        Tail share, in (0, 1].
    tolerance : float
        Relative optimality gap at which column generation stops (mean and cvar).

    Returns
    -------
    RiskPlan

    Raises
    ------
    SolverUnavailableError
        When a sampled curve is not concave.
    NumericalError
        When the gap is not reached in ``max_rounds`` rounds.
    """
    from .common import as_problem

    prob = as_problem(problem)
    if objective not in ("mean", "cvar", "quantile"):
        raise SpecError(Problem("objective", f"must be mean, cvar or quantile; got {objective!r}"))
    if not (0 < alpha <= 1):
        raise SpecError(Problem("alpha", f"must be in (0, 1]; got {alpha!r}"))
    if objective == "quantile":
        return _optimize_quantile(prob, samples, alpha, tolerance)
    return _cvar_column_generation(prob, samples, 1.0 if objective == "mean" else alpha, objective, tolerance,
                                   max_rounds, initial_points)


def _optimize_quantile(prob: CompiledProblem, samples: ParameterSamples, alpha: float, tol: float) -> RiskPlan:
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
        rp = _cvar_column_generation(prob, samples, beta, "cvar", tol, 300, 2)
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
    if not curves.concave():
        raise SolverUnavailableError("risk optimization needs concave response curves in every sample")
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

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
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


# ------------------------------------------------------------------------------------------ side by side

@dataclass
class RiskComparison:
    """Baseline, nominal, risk-neutral and robust plans evaluated on the same samples.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per plan: mean, std, p5, p95, CVaR and quantile at ``alpha``, probability of beating
        the baseline, and the optimizer's certified gap where there is one.
    plans : pandas.DataFrame
        One row per cell: spend under each plan.
    risk : dict
        Plan name -> :class:`PlanRisk` (with the sampled net values).
    optimized : dict
        Plan name -> :class:`RiskPlan`.
    """

    table: pd.DataFrame
    plans: pd.DataFrame
    risk: dict[str, PlanRisk]
    optimized: dict[str, RiskPlan]
    samples: ParameterSamples = field(repr=False)


def compare_risk(scenario: Any, samples: ParameterSamples | None = None, objective: str | None = None,
                 alpha: float | None = None, tolerance: float = 1e-6) -> RiskComparison:
    """Solve the risk-neutral and the robust plan and evaluate them beside the nominal plan and baseline.

    Parameters
    ----------
    scenario : path, Scenario or mapping
        Its ``uncertainty`` block gives the defaults of ``objective`` and ``alpha``.
    samples : ParameterSamples, optional
        Default: :func:`draw_samples` of the scenario.
    objective : str, optional
        The robust plan's measure: ``cvar`` (default) or ``quantile``; ``mean`` gives only the
        risk-neutral plan.
    """
    from ..compile import compile_scenario
    from ..solvers import solve
    from .baseline import baseline_spend, has_baseline
    from .common import as_scenario

    sc = as_scenario(scenario)
    prob = compile_scenario(sc)
    unc = sc.uncertainty
    alpha = alpha if alpha is not None else (unc.alpha if unc else 0.1)
    objective = objective or (unc.objective if unc else "cvar")
    samples = samples if samples is not None else draw_samples(sc)
    curves = SampledCurves(prob, samples)
    base_net = curves.net(baseline_spend(prob)) if has_baseline(prob) else None
    spends: dict[str, np.ndarray] = {}
    optimized: dict[str, RiskPlan] = {}
    if base_net is not None:
        spends["baseline"] = baseline_spend(prob)
    spends["nominal"] = solve(prob).spend
    optimized["risk_neutral"] = optimize_risk(prob, samples, "mean", alpha, tolerance)
    spends["risk_neutral"] = optimized["risk_neutral"].spend
    if objective != "mean":
        name = f"robust_{objective}"
        optimized[name] = optimize_risk(prob, samples, objective, alpha, tolerance)
        spends[name] = optimized[name].spend
    risk = {nm: risk_of(nm, curves.net(s), alpha, base_net) for nm, s in spends.items()}
    rows = []
    for nm, r in risk.items():
        row = r.row()
        row["total_spend"] = float(spends[nm].sum())
        row["certified_gap"] = optimized[nm].gap if nm in optimized else None
        rows.append(row)
    plans = pd.DataFrame({"segment": prob.segment, "task": prob.task, **{f"spend_{k}": v for k, v in spends.items()}})
    return RiskComparison(table=pd.DataFrame(rows), plans=plans, risk=risk, optimized=optimized, samples=samples)
