"""Plans evaluated across parameter samples: net value per sample, CVaR, quantiles, summaries.

Sample k's net value of a plan is ``N_k(s) = sum_i f_ki(s_i) - sum_i s_i - activation(s)``, with
``f_ki(s) = pool_ki * value_ki * p_ki(s / pool_ki)``. Evaluation works for every curve family
(concave, S-shaped, tables); only the optimizers care about shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import Problem, SpecError
from ..money import activation_per_cell
from ..problem import CompiledProblem
from .samples import ParameterSamples

class SampledCurves:
    """Per-sample cell values and marginal returns, vectorized over samples and cells.

    Parameters
    ----------
    problem : CompiledProblem
    samples : ParameterSamples
    rows : ndarray, optional
        Use only these draws.
    monotone : bool
        Evaluate every sampled curve at ``min(x, domain_max)`` (its running maximum): a curve that
        peaks (``logistic_quadratic`` with ``b2 < 0``) stays flat past its peak. The optimizers over
        non-concave curves use this hull, which lies on or above the truth and rises with spend, so
        their bounds stay valid when a draw peaks inside the nominal spend range; plans are always
        evaluated on the true curves (``monotone=False``).
    """

    def __init__(self, problem: CompiledProblem, samples: ParameterSamples, rows: np.ndarray | None = None,
                 monotone: bool = False):
        self.problem = problem
        sm = samples if rows is None else samples.rows(rows)
        self.S = sm.count
        self.value, self.pool = sm.value, sm.pool
        self.monotone = monotone
        self.blocks = []
        for b, P, fx in zip(problem.blocks, sm.params, sm.fixed):
            flat = {nm: (np.tile(a, (self.S, 1)) if nm in fx else a.ravel()) for nm, a in P.items()}
            peak = (np.asarray(b.family.domain_max(flat), float).reshape(self.S, len(b.index)) if monotone
                    else None)
            self.blocks.append((b.family, b.index, flat, peak))

    def concave_cells(self) -> np.ndarray:
        """Per cell: is its curve concave in every sample?"""
        out = np.ones(self.problem.n, dtype=bool)
        for fam, idx, P, _ in self.blocks:
            out[idx] = np.asarray(fam.is_concave(P), bool).reshape(self.S, len(idx)).all(axis=0)
        return out

    def concave(self) -> bool:
        return bool(self.concave_cells().all())

    def _eval(self, fam, P: dict, peak: np.ndarray | None, x: np.ndarray, method: str) -> np.ndarray:
        """``method`` of one block at spend per member ``x`` of shape (S, cells, G)."""
        S, nb, G = x.shape
        if peak is not None:
            past = x >= peak[:, :, None]
            x = np.minimum(x, peak[:, :, None])
        PP = P if G == 1 else {nm: np.repeat(a, G, axis=0) for nm, a in P.items()}
        out = np.asarray(getattr(fam, method)(x.ravel(), PP), float).reshape(S, nb, G)
        if peak is not None and method != "response":
            out = np.where(past, 0.0, out)
        return out

    def grid(self, spend: np.ndarray, what: str = "value", cells: np.ndarray | None = None) -> np.ndarray:
        """Value (``pool * value * p``) or marginal return (``slope``) on a (cells x G) spend grid.

        Returns an array of shape (S, cells, G); ``cells`` (default: all) lists the rows of ``spend``.
        """
        spend = np.asarray(spend, float)
        n = self.problem.n
        rows = np.arange(n) if cells is None else np.asarray(cells)
        where = -np.ones(n, dtype=int)
        where[rows] = np.arange(len(rows))
        out = np.empty((self.S, len(rows), spend.shape[1]))
        method = "response" if what == "value" else what
        for fam, idx, P, peak in self.blocks:
            take = where[idx] >= 0
            if not take.any():
                continue
            r = where[idx[take]]
            pool = self.pool[:, idx[take]]
            x = spend[r][None, :, :] / pool[:, :, None]
            if take.all():
                Pt, pk = P, peak
            else:
                sel = np.flatnonzero(np.tile(take, self.S))  # flat parameters are ordered (sample, cell)
                Pt, pk = {nm: a[sel] for nm, a in P.items()}, (None if peak is None else peak[:, take])
            vals = self._eval(fam, Pt, pk, x, method)
            scale = (pool * self.value[:, idx[take]]) if what == "value" else self.value[:, idx[take]]
            out[:, r, :] = vals * scale[:, :, None]
        return out

    def values(self, spend: np.ndarray) -> np.ndarray:
        """Expected value per sample and cell: ``pool * value * p(spend / pool)``."""
        s = np.broadcast_to(np.asarray(spend, float), (self.problem.n,))
        return self.grid(s[:, None], "value")[:, :, 0]

    def marginals(self, spend: np.ndarray) -> np.ndarray:
        """Marginal return per sample and cell: ``value * p'(spend / pool)`` (right derivative)."""
        s = np.broadcast_to(np.asarray(spend, float), (self.problem.n,))
        return self.grid(s[:, None], "slope")[:, :, 0]

    def net(self, spend: np.ndarray) -> np.ndarray:
        """Net value per sample: value - spend - activation cost (the identity of :mod:`allocator.money`)."""
        s = np.asarray(spend, float)
        return self.values(s).sum(axis=1) - float(s.sum()) - float(activation_per_cell(self.problem, s).sum())


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
    if s.shape != (prob.n,):
        raise SpecError(Problem("spend", f"needs one amount per cell ({prob.n} cells); got shape {s.shape}"))
    sc = SampledCurves(prob, samples)
    base = sc.net(baseline_spend(prob)) if baseline and has_baseline(prob) else None
    return risk_of(name, sc.net(s), alpha, base)

