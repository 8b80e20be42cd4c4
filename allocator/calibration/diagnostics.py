"""What a fitted curve is reported with: intervals, held-out error, observed-vs-fitted table, warnings.

The same :class:`CurveFit` comes out of individual records and aggregates, so
that the model file and the terminal show every fit the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..curves import get_family
from .likelihood import (FITTABLE, MONOTONE, BinomialData, MLEFit, constant_logloss, fit_binomial,
                         mean_logloss)

MIN_EVENTS_PER_PARAM = 10
SATURATION_SHARE = 0.8


@dataclass
class CurveFit:
    """One fitted (segment, task) curve with everything finance will ask about.

    Attributes
    ----------
    mle : MLEFit
        Estimates, standard errors and Wald intervals.
    bins : DataFrame
        Plot-ready: per spend bin, members, spend range and mean, observed rate
        (with its binomial standard error) and the mean fitted rate.
    heldout_logloss, baseline_logloss : float
        Mean log-loss per member on held-out folds for the curve and for a
        constant rate fitted on the same training folds (nan when too few groups).
    comparison : dict
        AIC of every fittable family on the same data.
    warnings : list of str
        Reasons to distrust the fit.
    draws : dict
        Bootstrap draws of every curve parameter (and ``value``), aligned by index.
    """

    segment: str
    task: str
    mle: MLEFit
    data: BinomialData
    bins: pd.DataFrame
    heldout_logloss: float
    baseline_logloss: float
    folds: int
    comparison: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    draws: dict[str, np.ndarray] = field(default_factory=dict)
    draw_method: str = ""

    @property
    def family(self) -> str:
        return self.mle.family

    @property
    def params(self) -> dict[str, float]:
        return self.mle.params

    @property
    def curve(self) -> dict[str, object]:
        """The curve as a model-file entry."""
        return {"family": self.family, **{k: float(v) for k, v in self.params.items()}}

    def to_dict(self) -> dict[str, object]:
        """Diagnostics as plain data for the model file."""
        d = self.data
        out: dict[str, object] = {
            "family": self.family,
            "estimates": {k: _num(v) for k, v in self.params.items()},
            "fixed": sorted(set(self.params) - set(self.mle.free)),
            "std_errors": {k: _num(v) for k, v in self.mle.se.items()},
            "ci95": {k: (None if v is None else [_num(v[0]), _num(v[1])]) for k, v in self.mle.ci.items()},
            "at_bound": list(self.mle.at_bound),
            "members": _num(d.total_trials), "events": _num(d.total_events),
            "spend_range": [_num(d.spend.min()), _num(d.spend.max())],
            "loglik": _num(-self.mle.negloglik),
            "aic": _num(2 * self.mle.negloglik + 2 * len(self.mle.free)),
            "heldout_logloss": _num(self.heldout_logloss),
            "baseline_logloss": _num(self.baseline_logloss),
            "heldout_folds": self.folds,
            "family_aic": {k: _num(v) for k, v in self.comparison.items()},
            "bins": [{k: _num(v) for k, v in row.items()} for row in self.bins.to_dict(orient="records")],
            "warnings": list(self.warnings),
        }
        fam = get_family(self.family)
        P = {k: np.array([v]) for k, v in self.params.items()}
        dm = float(fam.domain_max(P)[0])
        if math.isfinite(dm):
            out["peak_spend_per_member"] = _num(dm)
        out["concave"] = bool(fam.is_concave(P)[0])
        if self.draws:
            out["bootstrap"] = {"method": self.draw_method, "count": len(next(iter(self.draws.values()))),
                                "percentile_ci95": {k: [_num(np.percentile(v, 2.5)), _num(np.percentile(v, 97.5))]
                                                    for k, v in self.draws.items()}}
        return out


def _num(v) -> float | None:
    """A JSON/YAML-safe float (None for nan/inf), rounded to 10 significant digits."""
    if v is None:
        return None
    v = float(v)
    if not math.isfinite(v):
        return None
    return float(f"{v:.10g}")


def binned_table(family: str, params: dict[str, float], d: BinomialData, bins: int) -> pd.DataFrame:
    """Observed rate against the mean fitted rate per spend bin (quantile bins of individual records,
    one row per group for aggregates)."""
    fam = get_family(family)
    fitted = fam.response(d.spend, {k: np.array([v]) for k, v in params.items()})
    frame = pd.DataFrame({"x": d.spend, "k": d.events, "n": d.trials, "pn": fitted * d.trials})
    if bool(np.all(d.trials == 1)):
        q = min(bins, max(int(len(d.spend) // 10), 1))
        frame["bin"] = pd.qcut(frame["x"].rank(method="first"), q=q, labels=False)
    else:
        frame["bin"] = np.argsort(np.argsort(frame["x"].to_numpy(), kind="stable"), kind="stable")
    g = frame.groupby("bin", sort=True)
    n = g["n"].sum()
    rate = g["k"].sum() / n
    table = pd.DataFrame({
        "spend_low": g["x"].min(), "spend_high": g["x"].max(),
        "spend_mean": g.apply(lambda t: float((t["x"] * t["n"]).sum() / t["n"].sum()), include_groups=False),
        "members": n, "events": g["k"].sum(), "observed_rate": rate,
        "observed_se": np.sqrt(rate * (1 - rate) / n), "fitted_rate": g["pn"].sum() / n,
    }).reset_index(drop=True)
    return table


def crossvalidate(family: str, d: BinomialData, fixed: dict[str, float] | None, folds: int,
                  rng: np.random.Generator) -> tuple[float, float, int]:
    """Mean held-out log-loss per member of the family and of a constant rate over ``folds`` folds."""
    m = len(d.spend)
    folds = min(folds, m)
    if folds < 2:
        return math.nan, math.nan, 0
    assign = rng.permutation(m) % folds
    ll_fit = ll_base = members = 0.0
    for f in range(folds):
        train, test = d.take(np.flatnonzero(assign != f)), d.take(np.flatnonzero(assign == f))
        if test.total_trials <= 0 or train.total_trials <= 0:
            continue
        fit = fit_binomial(family, train, fixed)
        w = test.total_trials
        ll_fit += mean_logloss(family, fit.params, test) * w
        ll_base += constant_logloss(train.total_events / train.total_trials, test) * w
        members += w
    return ll_fit / members, ll_base / members, folds


def family_aic(d: BinomialData, fixed_floor: float | None) -> dict[str, float]:
    """AIC of every fittable family on ``d`` (the smaller, the better supported)."""
    out = {}
    for fam in FITTABLE:
        fixed = {"floor": fixed_floor} if (fixed_floor is not None and fam in MONOTONE) else None
        fit = fit_binomial(fam, d, fixed)
        out[fam] = 2 * fit.negloglik + 2 * len(fit.free)
    return out


def fit_warnings(fit: MLEFit, d: BinomialData, bins: pd.DataFrame, heldout: float, baseline: float,
                 comparison: dict[str, float]) -> list[str]:
    """Reasons the data may not support the fitted family."""
    out: list[str] = []
    k = len(fit.free)
    events, nonevents = d.total_events, d.total_trials - d.total_events
    if min(events, nonevents) < MIN_EVENTS_PER_PARAM * k:
        out.append(f"too few events: {events:g} responses and {nonevents:g} non-responses for {k} parameters "
                   f"(rule of thumb: at least {MIN_EVENTS_PER_PARAM} of each per parameter); estimates are unstable")
    if fit.family in MONOTONE and len(bins) >= 3:
        r = bins["observed_rate"].to_numpy()
        se = bins["observed_se"].to_numpy()
        top = int(np.argmax(r))
        later = np.arange(top + 1, len(r))
        drop = later[r[later] < r[top] - 3 * np.sqrt(se[later] ** 2 + se[top] ** 2 + 1e-300)]
        if len(drop):
            j = int(drop[-1])
            out.append(f"observed response falls at high spend (bin {j + 1}: {r[j]:.1%} against {r[top]:.1%} "
                       f"in bin {top + 1}); the monotone family '{fit.family}' cannot follow it; "
                       f"consider logistic_quadratic")
    spend = d.spend
    lo, hi = float(np.percentile(spend, 5)), float(np.percentile(spend, 95))
    mid = float(np.median(spend))
    if mid > 0 and (hi - lo) / mid < 0.2:
        out.append(f"spend range too narrow (5%-95%: {lo:g} to {hi:g}) to see the shape of the curve")
    fam = get_family(fit.family)
    P = {kk: np.array([v]) for kk, v in fit.params.items()}
    if fit.family in MONOTONE:
        f, c = fit.params["floor"], fit.params["ceiling"]
        if c - f > 1e-9:
            share = (float(fam.response(np.array([spend.max()]), P)[0]) - f) / (c - f)
            if share < SATURATION_SHARE:
                out.append(f"no saturation in the data: at the largest spend ({spend.max():g}) the fitted curve "
                           f"has reached {share:.0%} of its lift, so the ceiling ({c:.3g}) is extrapolated")
    else:
        b2 = fit.params["b2"]
        if b2 >= 0:
            out.append("the fitted curve has no peak (b2 >= 0); a monotone family may describe the data better")
        else:
            peak = float(fam.domain_max(P)[0])
            if peak > spend.max():
                out.append(f"the fitted peak ({peak:g} per member) lies beyond the largest observed spend "
                           f"({spend.max():g}); the fall after it is extrapolated")
    if fit.at_bound:
        out.append(f"estimate on the edge of its allowed range: {', '.join(fit.at_bound)} "
                   f"(held there; no Wald interval; see the bootstrap interval)")
    if not fam.is_concave(P)[0]:
        out.append("the fitted curve is S-shaped (convex at low spend); the exact solver refuses it and "
                   "a global (non-concave) solver is needed")
    if math.isfinite(heldout) and heldout >= baseline:
        out.append(f"held-out log-loss {heldout:.4f} is no better than a constant rate ({baseline:.4f}): "
                   f"the data show no effect of spend")
    if comparison:
        best = min(comparison, key=comparison.get)
        if best != fit.family and comparison[fit.family] - comparison[best] > 10:
            out.append(f"the data favour family '{best}' (AIC {comparison[best]:.1f} against "
                       f"{comparison[fit.family]:.1f})")
    if not fit.converged:
        out.append("the optimizer did not report convergence")
    return out
