"""Response curves from individual records: one row per prospect or customer.

Each row carries the spend on that member and the outcome (acquired 0/1,
retained 0/1 or a duration turned into "retained" by a threshold, won back 0/1),
optionally a segment label. Per segment the chosen family is fitted by maximum
likelihood (:mod:`.likelihood`); the value of one success comes from a number or
from a value column (e.g. lifetime profit); the pool defaults to the number of
rows and today's spend to the rows' total spend.
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
from .likelihood import BinomialData, fit_binomial, fit_choice_problems, refit
from .tables import Checker, parse_where

log = logging.getLogger(__name__)

VALUE_STATS = ("success_mean", "success_minus_failure")


@dataclass
class RecordsSpec:
    """What to fit from a table of individual records.

    Parameters
    ----------
    task : {"acquisition", "retention", "winback"}
    spend, outcome : str
        Column names: spend per member, and the outcome (0/1, or a duration when
        ``retained_if_at_least`` is given: retained = duration >= threshold).
    family : str
        ``exponential``, ``hill`` or ``logistic_quadratic``.
    segment : str, optional
        Column of segment labels; one fit per segment (default: one segment ``segment_name``).
    where : str, optional
        ``COLUMN=VALUE``: fit only these rows (e.g. ``acquisition=1`` for retention).
    value, value_column, value_stat :
        The value of one success: a number, or the mean of ``value_column``
        among successes (``success_mean``) or its difference between successes
        and failures (``success_minus_failure``: what a success adds).
    pool : float, optional
        Members in the cell (default: the segment's number of rows).
    fixed : dict, optional
        Curve parameters held at given values (e.g. ``{"floor": 0}``).
    """

    task: str
    spend: str
    outcome: str
    family: str = "logistic_quadratic"
    segment: str | None = None
    segment_name: str = "all"
    retained_if_at_least: float | None = None
    where: str | None = None
    value: float | None = None
    value_column: str | None = None
    value_stat: str = "success_mean"
    pool: float | None = None
    fixed: dict[str, float] = field(default_factory=dict)
    folds: int = 5
    bins: int = 10
    bootstrap: int = 200
    seed: int = 0
    level: float = 0.95
    min_rows: int = 20
    compare_families: bool = True


def check_spec(spec: RecordsSpec) -> None:
    problems = fit_choice_problems(spec.task, spec.family, spec.fixed)
    if (spec.value is None) == (spec.value_column is None):
        problems.append(Problem("value", "give exactly one of a value per success or a value column"))
    if spec.value_stat not in VALUE_STATS:
        problems.append(Problem("value_stat", f"must be one of {', '.join(VALUE_STATS)}; got {spec.value_stat!r}"))
    if spec.bootstrap < 0 or spec.folds < 0:
        problems.append(Problem("bootstrap", "counts must be >= 0"))
    if problems:
        raise SpecError(problems)


def prepare(df: pd.DataFrame, spec: RecordsSpec, source: str | None = None) -> dict[str, pd.DataFrame]:
    """Check the table and return, per segment, a frame with numeric ``x``, ``y`` and ``v`` columns.

    Raises
    ------
    SpecError
        Naming the column and the row of every bad cell, or the segment that is
        too small to fit.
    """
    check_spec(spec)
    df = parse_where(df, spec.where, source)
    ck = Checker(df, source)
    if not ck.require(spec.spend, spec.outcome, spec.segment, spec.value_column):
        ck.raise_if_any()
    x = ck.numeric(spec.spend, lower=0.0)
    if spec.retained_if_at_least is None:
        y = ck.numeric(spec.outcome, allowed=(0.0, 1.0))
    else:
        y = ck.numeric(spec.outcome, lower=0.0)
    v = ck.numeric(spec.value_column) if spec.value_column else np.full(len(df), math.nan)
    seg = ck.labels(spec.segment) if spec.segment else np.full(len(df), spec.segment_name, dtype=object)
    ck.raise_if_any()
    if spec.retained_if_at_least is not None:
        y = (y >= spec.retained_if_at_least).astype(float)
    frame = pd.DataFrame({"x": x, "y": y, "v": v, "segment": seg}, index=df.index)
    out: dict[str, pd.DataFrame] = {}
    for name, part in frame.groupby("segment", sort=True):
        events = int(part["y"].sum())
        if len(part) < spec.min_rows or events == 0 or events == len(part):
            ck.add(f"segment '{name}'" if spec.segment else "rows",
                   f"has {len(part)} rows with {events} successes; a fit needs at least {spec.min_rows} rows "
                   f"and both outcomes (column '{spec.outcome}')")
            continue
        if spec.value_column and spec.value_stat == "success_minus_failure" and events == len(part):
            ck.add(f"segment '{name}'", "has no failures to compare the value column against")
        out[str(name)] = part
    ck.raise_if_any()
    return out


def _value(part: pd.DataFrame, spec: RecordsSpec) -> float:
    if spec.value is not None:
        return float(spec.value)
    win = part["y"] == 1
    if spec.value_stat == "success_mean":
        return float(part.loc[win, "v"].mean())
    return float(part.loc[win, "v"].mean() - part.loc[~win, "v"].mean())


def fit_segment(part: pd.DataFrame, name: str, spec: RecordsSpec, rng: np.random.Generator) -> CalibratedCell:
    """Fit one segment's curve and value, with diagnostics and bootstrap draws."""
    d = BinomialData(part["x"].to_numpy(), part["y"].to_numpy(), np.ones(len(part)))
    fixed = dict(spec.fixed)
    mle = fit_binomial(spec.family, d, fixed or None, level=spec.level)
    bins = binned_table(spec.family, mle.params, d, spec.bins)
    heldout, baseline, folds = crossvalidate(spec.family, d, fixed or None, spec.folds, rng) if spec.folds else \
        (math.nan, math.nan, 0)
    comparison = family_aic(d, spec.fixed.get("floor")) if spec.compare_families else {}
    warns = fit_warnings(mle, d, bins, heldout, baseline, comparison)
    value = _value(part, spec)
    curve_draws: dict[str, np.ndarray] = {}
    value_draws = None
    if spec.bootstrap:
        # rows are resampled once per draw for the curve and the value alike, so draw k is one joint sample
        values, params = [], []
        for _ in range(spec.bootstrap):
            idx = rng.integers(0, len(part), len(part))
            params.append(refit(mle, d.take(idx)))
            sample = part.iloc[idx]
            has_both = 0 < sample["y"].sum() < len(sample)
            values.append(_value(sample, spec) if (spec.value is not None or has_both) else value)
        curve_draws = {k: np.array([p[k] for p in params]) for k in mle.params}
        value_draws = np.array(values) if spec.value is None else None
    fit = CurveFit(name, spec.task, mle, d, bins, heldout, baseline, folds, comparison, warns,
                   curve_draws, "bootstrap over rows" if curve_draws else "")
    for w in warns:
        log.info("(%s, %s): %s", name, spec.task, w)
    pool = float(spec.pool) if spec.pool is not None else float(len(part))
    current = pool * float(part["x"].mean())
    diag = {"source": "records", **fit.to_dict(),
            "outcome": (f"{spec.outcome} >= {spec.retained_if_at_least:g}" if spec.retained_if_at_least is not None
                        else spec.outcome),
            "spend_column": spec.spend,
            "value_from": (f"{spec.value_stat} of column '{spec.value_column}'" if spec.value_column
                           else "given number"),
            "pool_from": "given" if spec.pool is not None else "rows in the data",
            "current_spend_from": "pool x mean observed spend per member"}
    return CalibratedCell(name, spec.task, pool, value, fit.curve, current, diag, curve_draws, value_draws)


def fit_records(df: pd.DataFrame, spec: RecordsSpec, source: str | None = None) -> list[CalibratedCell]:
    """Fit every segment of a records table.

    Parameters
    ----------
    df : DataFrame
        As read by :func:`allocator.calibration.tables.read_table` (text cells).
    spec : RecordsSpec
    source : str, optional
        File name for error messages.

    Returns
    -------
    list of CalibratedCell
        One per segment, in segment order.
    """
    parts = prepare(df, spec, source)
    rng = np.random.default_rng(spec.seed)
    return [fit_segment(part, name, spec, rng) for name, part in parts.items()]
