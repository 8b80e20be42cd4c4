"""Retention of contract customers from cohort data: the shifted-beta-geometric (sBG) model.

Fader and Hardie (2007), "How to project customer retention", Journal of
Interactive Marketing 21(1). Each customer churns at the end of a period with
probability theta, constant for the customer; theta varies across customers as
Beta(alpha, beta). Then, for a period t = 1, 2, ...

    P(churn at t) = B(alpha + 1, beta + t - 1) / B(alpha, beta),
    S(t)          = B(alpha, beta + t) / B(alpha, beta)          (still a customer after t),
    r(t)          = S(t) / S(t - 1) = (beta + t - 1) / (alpha + beta + t - 1),

so retention rises with tenure as the customers prone to leave leave first: a
constant-rate estimate understates the value of long-standing customers.

Data (``sbg_cohorts.csv``): one row per customer with ``recency`` and ``T``; a
customer with ``recency < T`` churned at period ``recency``, one with
``recency == T`` was still a customer after ``T - 1`` periods (censored). The
fit maximizes

    l = sum_churned ln P(churn at recency) + sum_alive ln S(T - 1)

over (ln alpha, ln beta); intervals come from the observed information.
The simpler estimator beside it is the period-by-period survivor ratio
``S_t / S_{t-1}``, which needs no model but cannot project beyond the data.

Values build on the discounted expected residual lifetime (Fader and Hardie
2010, "Customer-base valuation in a contractual setting", Marketing Science
29(1)) of a customer who has renewed ``n`` times,

    R(n) = sum_{t>=1} [S(n + t) / S(n)] / (1 + d)^t

(:meth:`SBGFit.residual_value_multiple`); see
:func:`allocator.calibration.assemble.renewal_multiple` for the value of one
more renewal and ``new_contract_multiple`` for a new or won-back contract.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln
from scipy.stats import norm

from ..errors import Problem, SpecError
from .tables import Checker


@dataclass
class SBGFit:
    """sBG estimates for one cohort."""

    cohort: str
    alpha: float
    beta: float
    ci: dict[str, tuple[float, float]]
    loglik: float
    customers: int
    alive: int
    periods: int
    table: pd.DataFrame        # per period: observed survivors and retention, fitted survival and retention
    cov_log: np.ndarray        # covariance of (ln alpha, ln beta) from the observed information

    def draws(self, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(alpha, beta) draws from the asymptotic normal of (ln alpha, ln beta)."""
        z = rng.multivariate_normal([math.log(self.alpha), math.log(self.beta)], self.cov_log, size=count)
        return np.exp(z[:, 0]), np.exp(z[:, 1])

    def with_params(self, alpha: float, beta: float) -> "SBGFit":
        return SBGFit(self.cohort, alpha, beta, self.ci, self.loglik, self.customers, self.alive, self.periods,
                      self.table, self.cov_log)

    def survival(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, float)
        return np.exp(betaln(self.alpha, self.beta + t) - betaln(self.alpha, self.beta))

    def retention(self, t: np.ndarray) -> np.ndarray:
        """r(t): probability a customer who reached period t - 1 renews at t."""
        t = np.asarray(t, float)
        return (self.beta + t - 1) / (self.alpha + self.beta + t - 1)

    def residual_value_multiple(self, renewals: int, discount: float, tol: float = 1e-10) -> float:
        """sum_{t>=1} S(n+t)/S(n)/(1+d)^t for a customer who has renewed ``renewals`` times."""
        s_n = self.survival(np.array([renewals]))[0]
        total, t, block = 0.0, 1, 4096
        while True:
            ts = np.arange(t, t + block)
            terms = self.survival(ts + renewals) / s_n / (1 + discount) ** ts
            total += float(terms.sum())
            if terms[-1] < tol or t > 1e6:
                return total
            t += block


def sbg_loglik(log_ab: np.ndarray, churn_t: np.ndarray, churn_n: np.ndarray, alive_t: np.ndarray,
               alive_n: np.ndarray) -> float:
    a, b = np.exp(log_ab)
    lb = betaln(a, b)
    ll = churn_n @ (betaln(a + 1, b + churn_t - 1) - lb) + alive_n @ (betaln(a, b + alive_t) - lb)
    return float(ll)


def fit_sbg(recency: np.ndarray, T: np.ndarray, cohort: str = "all", level: float = 0.95) -> SBGFit:
    """Maximum-likelihood sBG fit of one cohort (see the module docstring for the data convention)."""
    recency, T = np.asarray(recency, int), np.asarray(T, int)
    churned = recency < T
    ct, cn = np.unique(recency[churned], return_counts=True)
    at, an = np.unique(T[~churned] - 1, return_counts=True)
    args = (ct.astype(float), cn.astype(float), at.astype(float), an.astype(float))
    res = minimize(lambda v: -sbg_loglik(v, *args), np.zeros(2), method="BFGS")
    v = res.x
    h = 1e-4
    H = np.empty((2, 2))
    f = lambda x: -sbg_loglik(x, *args)  # noqa: E731
    for i in range(2):
        for j in range(2):
            ei, ej = np.eye(2)[i] * h, np.eye(2)[j] * h
            H[i, j] = (f(v + ei + ej) - f(v + ei - ej) - f(v - ei + ej) + f(v - ei - ej)) / (4 * h * h)
    cov = np.linalg.inv(H)
    se = np.sqrt(np.diag(cov))
    z = float(norm.ppf(0.5 + level / 2))
    # intervals on the log scale, mapped back: positive and asymmetric like the likelihood
    ci = {name: (float(math.exp(v[i] - z * se[i])), float(math.exp(v[i] + z * se[i])))
          for i, name in enumerate(("alpha", "beta"))}
    periods = int(T.max() - 1)
    fit = SBGFit(cohort, float(math.exp(v[0])), float(math.exp(v[1])), ci, -float(res.fun), len(recency),
                 int((~churned).sum()), periods, pd.DataFrame(), cov)
    t = np.arange(0, periods + 1)
    # survivors after t periods among customers observed at least t periods
    surv = np.array([int(((recency > tt) | (~churned & (T - 1 >= tt))).sum()) for tt in t])
    observed_ret = np.r_[np.nan, surv[1:] / surv[:-1]]
    fit.table = pd.DataFrame({"period": t, "survivors": surv, "observed_survival": surv / len(recency),
                              "fitted_survival": fit.survival(t), "observed_retention": observed_ret,
                              "fitted_retention": np.r_[np.nan, fit.retention(t[1:])]})
    return fit


def load_cohorts(df: pd.DataFrame, recency: str = "recency", T: str = "T", cohort: str = "cohort",
                 source: str | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Checked (recency, T) per cohort; errors name the column and the row."""
    ck = Checker(df, source)
    if not ck.require(recency, T, cohort):
        ck.raise_if_any()
    r = ck.numeric(recency, lower=1.0)
    t = ck.numeric(T, lower=1.0)
    c = ck.labels(cohort)
    ck.raise_if_any()
    frac = np.flatnonzero((r != np.round(r)) | (t != np.round(t)))
    if len(frac):
        col = recency if r[frac[0]] != round(r[frac[0]]) else T
        ck._bad(col, frac, "must be a whole number of periods", df[col].to_numpy()[frac])
    over = np.flatnonzero(r > t)
    if len(over):
        ck._bad(recency, over, f"must be <= column '{T}'", df[recency].to_numpy()[over])
    ck.raise_if_any()
    out = {}
    for name in sorted(set(c)):
        m = c == name
        if (r[m] < t[m]).sum() == 0:
            raise SpecError(Problem(f"cohort '{name}'", "has no churned customer; the sBG needs some churn"),
                            source=source)
        out[str(name)] = (r[m].astype(int), t[m].astype(int))
    return out
