"""Response curves from aggregates: past campaigns as (spend per member, response rate, group size).

Each row is a group of ``size`` members who all received spend ``spend`` per
member, of whom a share ``rate`` (or a count ``successes``) responded. The
groups are binomial observations, so the fit is the same maximum likelihood as
for individual records; held-out error is computed over folds of groups and the
bootstrap is parametric (each group's successes redrawn from its binomial).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import Problem, SpecError
from .cells import CalibratedCell
from .diagnostics import CurveFit, binned_table, crossvalidate, family_aic, fit_warnings
from .likelihood import BinomialData, fit_binomial, fit_choice_problems, parametric_resample, refit
from .tables import Checker

log = logging.getLogger(__name__)


@dataclass
class AggregatesSpec:
    """What to fit from a table of groups.

    Parameters
    ----------
    spend, size : str
        Columns: spend per member and members in the group.
    rate, successes : str
        Exactly one: the response rate in [0, 1] or the number who responded.
    value : float
        Value of one success.
    pool : float, optional
        Members in the cell (default: the largest group).
    """

    task: str
    spend: str
    size: str
    value: float
    rate: str | None = None
    successes: str | None = None
    family: str = "exponential"
    segment: str | None = None
    segment_name: str = "all"
    pool: float | None = None
    fixed: dict[str, float] = field(default_factory=dict)
    folds: int = 5
    bootstrap: int = 200
    seed: int = 0
    level: float = 0.95
    min_groups: int = 3
    compare_families: bool = True


def prepare(df: pd.DataFrame, spec: AggregatesSpec, source: str | None = None) -> dict[str, BinomialData]:
    """Check the table; return the binomial data per segment (errors name the column and row)."""
    problems = fit_choice_problems(spec.task, spec.family, spec.fixed)
    if (spec.rate is None) == (spec.successes is None):
        problems.append(Problem("rate", "give exactly one of a rate column and a successes column"))
    if problems:
        raise SpecError(problems, source=source)
    ck = Checker(df, source)
    if not ck.require(spec.spend, spec.size, spec.rate, spec.successes, spec.segment):
        ck.raise_if_any()
    x = ck.numeric(spec.spend, lower=0.0)
    n = ck.numeric(spec.size, lower=0.0, positive=True)
    if spec.rate is not None:
        r = ck.numeric(spec.rate, lower=0.0, upper=1.0)
        k = r * n
    else:
        k = ck.numeric(spec.successes, lower=0.0)
        over = np.flatnonzero(np.isfinite(k) & np.isfinite(n) & (k > n))
        if len(over):
            ck._bad(spec.successes, over, f"must be <= the group size (column '{spec.size}')",
                    df[spec.successes].to_numpy()[over])
    seg = ck.labels(spec.segment) if spec.segment else np.full(len(df), spec.segment_name, dtype=object)
    ck.raise_if_any()
    out: dict[str, BinomialData] = {}
    for name in sorted(set(seg)):
        m = seg == name
        if m.sum() < spec.min_groups:
            ck.add(f"segment '{name}'" if spec.segment else "rows",
                   f"has {int(m.sum())} groups; a fit needs at least {spec.min_groups} spend levels")
            continue
        if k[m].sum() <= 0 or k[m].sum() >= n[m].sum():
            ck.add(f"segment '{name}'" if spec.segment else "rows", "has no variation in the outcome "
                                                                    "(all or none responded)")
            continue
        out[str(name)] = BinomialData(x[m], k[m], n[m])
    ck.raise_if_any()
    return out


def fit_aggregates(df: pd.DataFrame, spec: AggregatesSpec, source: str | None = None) -> list[CalibratedCell]:
    """Fit every segment of an aggregates table; see :class:`AggregatesSpec`."""
    parts = prepare(df, spec, source)
    rng = np.random.default_rng(spec.seed)
    cells = []
    for name, d in parts.items():
        fixed = dict(spec.fixed) or None
        mle = fit_binomial(spec.family, d, fixed, level=spec.level)
        bins = binned_table(spec.family, mle.params, d, bins=len(d.spend))
        heldout, baseline, folds = (crossvalidate(spec.family, d, fixed, spec.folds, rng)
                                    if spec.folds and len(d.spend) >= 4 else (math.nan, math.nan, 0))
        comparison = family_aic(d, spec.fixed.get("floor")) if spec.compare_families else {}
        warns = fit_warnings(mle, d, bins, heldout, baseline, comparison)
        draws: dict[str, np.ndarray] = {}
        if spec.bootstrap:
            params = [refit(mle, parametric_resample(d, rng)) for _ in range(spec.bootstrap)]
            draws = {k: np.array([p[k] for p in params]) for k in mle.params}
        fit = CurveFit(name, spec.task, mle, d, bins, heldout, baseline, folds, comparison, warns, draws,
                       "parametric bootstrap over groups" if draws else "")
        for w in warns:
            log.info("(%s, %s): %s", name, spec.task, w)
        pool = float(spec.pool) if spec.pool is not None else float(d.trials.max())
        diag = {"source": "aggregates", **fit.to_dict(),
                "pool_from": "given" if spec.pool is not None else "largest group"}
        cells.append(CalibratedCell(name, spec.task, pool, float(spec.value), fit.curve, None, diag, draws, None))
    return cells
