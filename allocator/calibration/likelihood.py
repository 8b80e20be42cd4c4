"""Maximum-likelihood fits of response curves to binomial data.

Every source of spend-response data reduces to binomial observations: at spend
per member ``x_i``, ``k_i`` of ``n_i`` members responded (individual records
have ``n_i = 1``, past campaigns larger groups). The log-likelihood of a curve
p(x; theta) is

    l(theta) = sum_i k_i log p(x_i) + (n_i - k_i) log(1 - p(x_i)).

It is maximized with SLSQP and the analytic gradient over a box-constrained
reparameterization ``theta`` in which every allowed curve is reachable (see
:func:`reparam`: e.g. ``floor = t0`` in [0, 1], ``ceiling = floor + (1 - floor) t1``
with t1 in [0, 1], ``rate = exp(t2) / scale``), from several starting points.
Spend is scaled by its median so that all of theta is of order one.

Standard errors come from the observed information: the Hessian of ``-l`` in
theta (central differences), inverted, carried to the curve's own parameters
with the delta method (``cov = J H^-1 J'``, J the Jacobian of the
reparameterization). Wald intervals are ``estimate +/- z se``, clipped to the
parameter's allowed range; a parameter whose estimate sits on a bound of its
range gets no Wald interval (the bootstrap is then the honest alternative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logit
from scipy.stats import norm

from ..curves import get_family


FITTABLE = ("exponential", "hill", "logistic_quadratic")
MONOTONE = ("exponential", "hill")
_EPS = 1e-12
_THETA_BOX = 30.0  # |log-scale theta| bound: keeps exp finite; a fit on the box is reported "at bound"
_LQ_BOX = 500.0  # logistic-quadratic coefficients on the scaled spend: generous, only separation reaches it


@dataclass(frozen=True)
class BinomialData:
    """Binomial observations: ``events[i]`` of ``trials[i]`` members responded at spend per member ``spend[i]``."""

    spend: np.ndarray
    events: np.ndarray
    trials: np.ndarray

    def __post_init__(self):
        for name in ("spend", "events", "trials"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=float))

    @property
    def total_events(self) -> float:
        return float(self.events.sum())

    @property
    def total_trials(self) -> float:
        return float(self.trials.sum())

    def take(self, idx: np.ndarray) -> "BinomialData":
        return BinomialData(self.spend[idx], self.events[idx], self.trials[idx])


@dataclass(frozen=True)
class Reparam:
    """How one family's free parameters are reached from a box-constrained vector theta.

    ``box[i]`` is the allowed range of ``theta[i]``; an estimate on the edge of
    its box is a boundary MLE (e.g. floor = 0) and is held fixed when the
    standard errors of the others are computed.
    """

    family: str
    free: tuple[str, ...]
    fixed: dict[str, float]
    scale: float
    to_natural: Callable[[np.ndarray], dict[str, float]]
    starts: Callable[[BinomialData], list[np.ndarray]]
    box: tuple[tuple[float, float], ...] = ()


def reparam(family: str, scale: float, fixed: dict[str, float] | None = None) -> Reparam:
    """The reparameterization of ``family`` with spend scale ``scale`` and ``fixed`` parameters held.

    ``logistic_quadratic``: ``b0 = t0, b1 = t1 / scale, b2 = t2 / scale^2``.
    ``exponential`` and ``hill``: ``floor = t_f`` in [0, 1], ``ceiling = floor +
    (1 - floor) t_c`` with t_c in [0, 1], ``rate = exp(t_r) / scale``,
    ``half_saturation = exp(t_h) scale``, ``shape = exp(t_s)`` with shape <= 50.
    """
    fixed = dict(fixed or {})
    if family not in FITTABLE:
        raise ValueError(f"family '{family}' cannot be fitted; fittable: {', '.join(FITTABLE)}")
    unknown = set(fixed) - {p.name for p in get_family(family).params}
    if unknown:
        raise ValueError(f"cannot fix {', '.join(sorted(unknown))}: not a parameter of family '{family}'")

    if family == "logistic_quadratic":
        names: tuple[str, ...] = ("b0", "b1", "b2")
        power = {"b0": 0, "b1": 1, "b2": 2}
        free = tuple(n for n in names if n not in fixed)

        def to_nat(t):
            out = dict(fixed)
            for n, v in zip(free, t):
                out[n] = float(v) / scale ** power[n]
            return {n: out[n] for n in names}

        def starts(d: BinomialData):
            r = float(np.clip(d.total_events / d.total_trials, 0.01, 0.99))
            cands = ({"b0": float(logit(r)), "b1": 0.0, "b2": 0.0},
                     {"b0": float(logit(r)) - 1.0, "b1": 2.0, "b2": -0.8})
            return [np.array([c[n] for n in free]) for c in cands]

        return Reparam(family, free, fixed, scale, to_nat, starts, tuple((-_LQ_BOX, _LQ_BOX) for _ in free))

    names = ("floor", "ceiling", "rate") if family == "exponential" else ("floor", "ceiling", "half_saturation", "shape")
    free = tuple(n for n in names if n not in fixed)
    boxes = {"floor": (0.0, 1.0), "ceiling": (0.0, 1.0), "rate": (-_THETA_BOX, _THETA_BOX),
             "half_saturation": (-_THETA_BOX, _THETA_BOX), "shape": (math.log(1e-6), math.log(50.0))}

    def to_nat(t):
        raw = dict(zip(free, (float(v) for v in t)))
        floor = fixed["floor"] if "floor" in fixed else raw["floor"]
        ceiling = fixed["ceiling"] if "ceiling" in fixed else floor + (1.0 - floor) * raw["ceiling"]
        out = {"floor": floor, "ceiling": ceiling}
        if family == "exponential":
            out["rate"] = fixed["rate"] if "rate" in fixed else math.exp(raw["rate"]) / scale
        else:
            out["half_saturation"] = (fixed["half_saturation"] if "half_saturation" in fixed
                                      else math.exp(raw["half_saturation"]) * scale)
            out["shape"] = fixed["shape"] if "shape" in fixed else math.exp(raw["shape"])
        return out

    def starts(d: BinomialData):
        # floor and ceiling from the response at the lowest and highest thirds of spend, kept strictly
        # inside their boxes (SLSQP fails to start on a bound); a few speeds / shapes
        order = np.argsort(d.spend, kind="stable")
        third = max(len(order) // 3, 1)
        lo_idx, hi_idx = order[:third], order[-third:]
        r_lo = d.events[lo_idx].sum() / max(d.trials[lo_idx].sum(), 1e-9)
        r_hi = d.events[hi_idx].sum() / max(d.trials[hi_idx].sum(), 1e-9)
        c0 = float(np.clip(max(r_lo, r_hi) * 1.05, 0.03, 0.99))
        f0 = float(np.clip(min(r_lo, r_hi) * 0.5, 0.005, c0 - 0.02))
        u = float(np.clip((c0 - f0) / (1 - f0), 0.02, 0.98))
        if family == "exponential":
            grid = [{"rate": tr} for tr in (0.0, math.log(3.0), math.log(0.3))]
        else:
            grid = [{"half_saturation": th, "shape": ts}
                    for th, ts in ((0.0, 0.0), (0.0, math.log(3.0)), (math.log(0.5), math.log(0.7)))]
        return [np.array([{"floor": f0, "ceiling": u, **g}[n] for n in free]) for g in grid]

    return Reparam(family, free, fixed, scale, to_nat, starts, tuple(boxes[n] for n in free))


def param_gradient(family: str, x: np.ndarray, nat: dict[str, float]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``p(x)`` and its partial derivatives in each natural parameter (closed forms)."""
    x = np.asarray(x, float)
    if family == "logistic_quadratic":
        p = expit(nat["b0"] + x * (nat["b1"] + nat["b2"] * x))
        w = p * (1 - p)
        return p, {"b0": w, "b1": w * x, "b2": w * x * x}
    f, c = nat["floor"], nat["ceiling"]
    if family == "exponential":
        e = np.exp(-nat["rate"] * x)
        g = 1.0 - e
        return f + (c - f) * g, {"floor": e, "ceiling": g, "rate": (c - f) * x * e}
    h, k = nat["half_saturation"], nat["shape"]
    z = x / h
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        lz = np.where(z > 0, np.log(np.where(z > 0, z, 1.0)), -np.inf)
        g = np.where(z > 0, expit(k * lz), 0.0)  # z^k / (1 + z^k), overflow-free
        gg = g * (1 - g)
        dk = np.where(z > 0, gg * np.where(z > 0, lz, 0.0), 0.0)
    return f + (c - f) * g, {"floor": 1 - g, "ceiling": g, "half_saturation": -(c - f) * k * gg / h,
                             "shape": (c - f) * dk}


def negloglik(rp: Reparam, theta: np.ndarray, d: BinomialData) -> float:
    """``-l(theta)`` of the binomial data under family ``rp.family``."""
    p, _ = param_gradient(rp.family, d.spend, rp.to_natural(theta))
    p = np.clip(p, _EPS, 1 - _EPS)
    return float(-(d.events * np.log(p) + (d.trials - d.events) * np.log1p(-p)).sum())


def negloglik_and_grad(rp: Reparam, theta: np.ndarray, d: BinomialData) -> tuple[float, np.ndarray]:
    """``-l(theta)`` and its gradient (chain rule through the reparameterization)."""
    nat = rp.to_natural(theta)
    p, dp = param_gradient(rp.family, d.spend, nat)
    p = np.clip(p, _EPS, 1 - _EPS)
    fail = d.trials - d.events
    value = float(-(d.events * np.log(p) + fail * np.log1p(-p)).sum())
    w = -(d.events / p - fail / (1 - p))
    g_nat = np.array([float(w @ dp[n]) for n in rp.free])
    J = _jacobian(rp, theta, rp.free)
    return value, g_nat @ J


def mean_logloss(family: str, params: dict[str, float], d: BinomialData) -> float:
    """Log-loss per member of ``d`` under a curve (natural parameters)."""
    fam = get_family(family)
    p = np.clip(fam.response(d.spend, {k: np.array([v]) for k, v in params.items()}), _EPS, 1 - _EPS)
    return float(-(d.events * np.log(p) + (d.trials - d.events) * np.log1p(-p)).sum() / d.total_trials)


def constant_logloss(rate: float, d: BinomialData) -> float:
    """Log-loss per member of ``d`` under the constant response ``rate``."""
    r = min(max(rate, _EPS), 1 - _EPS)
    return float(-(d.events * math.log(r) + (d.trials - d.events) * math.log1p(-r)).sum() / d.total_trials)


def maximize(rp: Reparam, d: BinomialData, starts: list[np.ndarray] | None = None) -> tuple[np.ndarray, float, bool]:
    """Best ``(theta, -l, converged)`` over the starting points.

    SLSQP with the analytic gradient and the box as bounds; L-BFGS-B only as a
    fallback (on a busy machine its many small BLAS calls are slow when
    threaded, while SLSQP's are not).
    """
    best = None
    for t0 in starts if starts is not None else rp.starts(d):
        res = minimize(lambda t: negloglik_and_grad(rp, t, d), t0, jac=True, method="SLSQP", bounds=rp.box,
                       options={"maxiter": 500, "ftol": 1e-12})
        if not res.success or not np.isfinite(res.fun):
            res = minimize(lambda t: negloglik_and_grad(rp, t, d), t0, jac=True, method="L-BFGS-B",
                           bounds=rp.box, options={"maxiter": 1000})
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None
    return np.clip(np.asarray(best.x, float), [b[0] for b in rp.box], [b[1] for b in rp.box]), \
        float(best.fun), bool(best.success)


def _steps(rp: Reparam, t: np.ndarray, h: float) -> np.ndarray:
    """Difference steps that stay inside the box (a fraction of the distance to the nearer edge)."""
    lo = np.array([b[0] for b in rp.box])
    hi = np.array([b[1] for b in rp.box])
    return np.minimum(h, 0.45 * np.minimum(t - lo, hi - t))


def _hessian(f: Callable[[np.ndarray], float], t: np.ndarray, steps: np.ndarray, idx: list[int]) -> np.ndarray:
    """Central-difference Hessian of ``f`` in the coordinates ``idx`` of ``t``."""
    k = len(idx)
    H = np.empty((k, k))
    f0 = f(t)
    for a, i in enumerate(idx):
        ei = np.zeros(len(t))
        ei[i] = steps[i]
        H[a, a] = (f(t + ei) - 2 * f0 + f(t - ei)) / steps[i] ** 2
        for b, j in enumerate(idx[:a]):
            ej = np.zeros(len(t))
            ej[j] = steps[j]
            H[a, b] = H[b, a] = ((f(t + ei + ej) - f(t + ei - ej) - f(t - ei + ej) + f(t - ei - ej))
                                 / (4 * steps[i] * steps[j]))
    return H


def _jacobian(rp: Reparam, t: np.ndarray, names: tuple[str, ...], h: float = 1e-6) -> np.ndarray:
    """d natural / d theta by central differences (steps kept inside the box)."""
    steps = np.maximum(_steps(rp, t, h), 1e-12)
    J = np.empty((len(names), len(t)))
    for j in range(len(t)):
        e = np.zeros(len(t))
        e[j] = steps[j]
        up, dn = rp.to_natural(t + e), rp.to_natural(t - e)
        J[:, j] = [(up[n] - dn[n]) / (2 * steps[j]) for n in names]
    return J


@dataclass
class MLEFit:
    """A maximum-likelihood fit: estimates, standard errors and Wald intervals of the free parameters."""

    family: str
    params: dict[str, float]
    free: tuple[str, ...]
    se: dict[str, float]
    ci: dict[str, tuple[float, float] | None]
    negloglik: float
    converged: bool
    at_bound: tuple[str, ...]
    theta: np.ndarray
    reparam: Reparam


def fit_binomial(family: str, d: BinomialData, fixed: dict[str, float] | None = None,
                 level: float = 0.95, scale: float | None = None) -> MLEFit:
    """Maximum-likelihood fit of ``family`` to binomial data, with Wald intervals.

    Parameters
    ----------
    family : {"exponential", "hill", "logistic_quadratic"}
    d : BinomialData
    fixed : dict, optional
        Parameters held at given values (e.g. ``{"floor": 0.0}``).
    level : float
        Confidence level of the intervals.
    scale : float, optional
        Spend scale of the reparameterization (default: median positive spend).
    """
    if scale is None:
        pos = d.spend[d.spend > 0]
        scale = float(np.median(pos)) if len(pos) else 1.0
    rp = reparam(family, scale, fixed)
    theta, nll, ok = maximize(rp, d)
    return finish_fit(rp, theta, nll, ok, d, level)


def finish_fit(rp: Reparam, theta: np.ndarray, nll: float, ok: bool, d: BinomialData, level: float) -> MLEFit:
    """Standard errors and Wald intervals at the MLE ``theta`` (boundary estimates held fixed)."""
    fam = get_family(rp.family)
    lo_box = np.array([b[0] for b in rp.box])
    hi_box = np.array([b[1] for b in rp.box])
    theta = np.where(theta <= lo_box + 1e-7, lo_box, np.where(theta >= hi_box - 1e-7, hi_box, theta))
    nat = rp.to_natural(theta)
    limits = {p.name: (p.lower, p.upper) for p in fam.params}
    on_box = [n for n, t, (lo, hi) in zip(rp.free, theta, rp.box) if t in (lo, hi)]
    interior = [i for i, n in enumerate(rp.free) if n not in on_box]
    se: dict[str, float] = {n: math.nan for n in rp.free}
    ci: dict[str, tuple[float, float] | None] = {n: None for n in rp.free}
    z = float(norm.ppf(0.5 + level / 2))
    if interior:
        steps = _steps(rp, theta, 1e-4)
        H = _hessian(lambda t: negloglik(rp, t, d), theta, steps, interior)
        good = bool(np.all(np.isfinite(H)))
        if good:
            eig = np.linalg.eigvalsh((H + H.T) / 2)
            good = bool(eig.min() > 1e-10 * max(eig.max(), 1e-300))
        if good:
            cov_t = np.linalg.inv(H)
            J = _jacobian(rp, theta, rp.free)[:, interior]
            cov = J @ cov_t @ J.T
            for i, n in enumerate(rp.free):
                if n in on_box:
                    continue
                s_ = float(math.sqrt(max(cov[i, i], 0.0)))
                se[n] = s_
                lo, hi = limits[n]
                ci[n] = (max(nat[n] - z * s_, lo), min(nat[n] + z * s_, hi))
    return MLEFit(rp.family, nat, rp.free, se, ci, nll, ok, tuple(on_box), theta, rp)


def refit(fit: MLEFit, d: BinomialData) -> dict[str, float]:
    """Natural parameters refitted to ``d`` from the MLE of ``fit`` (one start: for bootstrap draws)."""
    theta, _, _ = maximize(fit.reparam, d, starts=[fit.theta])
    return fit.reparam.to_natural(theta)


def parametric_resample(d: BinomialData, rng: np.random.Generator) -> BinomialData:
    """Each group's events redrawn from Binomial(n_i, observed rate_i) (aggregate bootstrap)."""
    trials = np.round(d.trials)
    rate = np.clip(np.where(d.trials > 0, d.events / np.maximum(d.trials, 1e-12), 0.0), 0.0, 1.0)
    return BinomialData(d.spend, rng.binomial(trials.astype(int), rate).astype(float), trials)


def fit_choice_problems(task: str, family: str, fixed: dict[str, float]) -> list:
    """Problems with the task, family and fixed parameters of a fit request (shared by records and aggregates)."""
    from ..curves import get_family
    from ..errors import Problem
    from ..spec.models import TASKS

    problems = []
    if task not in TASKS:
        problems.append(Problem("task", f"must be one of {', '.join(TASKS)}; got {task!r}"))
    if family not in FITTABLE:
        problems.append(Problem("family", f"must be one of {', '.join(FITTABLE)}; got {family!r}"))
    elif fixed:
        known = {p.name for p in get_family(family).params}
        for k in fixed:
            if k not in known:
                problems.append(Problem("fixed", f"'{k}' is not a parameter of family '{family}'; "
                                                 f"its parameters: {', '.join(sorted(known))}"))
    return problems
