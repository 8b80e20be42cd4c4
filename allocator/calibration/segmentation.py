"""Segmenting customers into pools: value pyramid, relationship stage, recency status.

(a) Value pyramid: customers ranked by value (ties kept in input order) are cut
    into the four tiers of CRM practice, top 1%, next 4%, next 15% and the rest
    (Zeithaml, Rust and Lemon 2001, "The customer pyramid", California
    Management Review 43(4)). Tier k ends at rank ``floor(n * cum_share_k + 0.5)``,
    so the tiers always add up to the customer count.
(b) Relationship stage from current against potential value, each split at a
    cut (default: its median; "high" means above the cut):

    ==================  ===============  ================
    current \\ potential  high             low
    ==================  ===============  ================
    high                development      maturity
    low                 identification   decline
    ==================  ===============  ================

    development: buying and still growing (invest); maturity: buying at its
    ceiling (maintain); identification: little bought yet but the potential is
    there (develop the relationship); decline: little now, little ahead.
(c) Recency status: ``active`` when the last purchase is at most
    ``active_days`` old, ``at_risk`` up to ``lapsed_days``, ``lapsed`` beyond.

Pools per segment: active customers are the retention pool, at-risk and lapsed
customers the win-back pool; prospects (acquisition pool) are given as counts
since a customer base holds none.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PYRAMID_SHARES: tuple[float, ...] = (0.01, 0.04, 0.15, 0.80)
PYRAMID_LABELS: tuple[str, ...] = ("top_1pct", "next_4pct", "next_15pct", "rest_80pct")
STAGES = ("identification", "development", "maturity", "decline")
STATUSES = ("active", "at_risk", "lapsed")


def value_pyramid(value: pd.Series, shares: tuple[float, ...] = PYRAMID_SHARES,
                  labels: tuple[str, ...] = PYRAMID_LABELS) -> pd.Series:
    """Tier label per customer (same index as ``value``) by descending value.

    Parameters
    ----------
    value : Series
        Value per customer (e.g. revenue over the observation window).
    shares : tuple of float
        Tier shares from the top, summing to 1.
    labels : tuple of str
        One label per tier.
    """
    if len(shares) != len(labels) or abs(sum(shares) - 1.0) > 1e-9:
        raise ValueError("shares must sum to 1 and match the labels one to one")
    n = len(value)
    order = np.argsort(-value.to_numpy(dtype=float), kind="stable")
    ends = np.floor(n * np.cumsum(shares) + 0.5).astype(int)
    ends[-1] = n
    tier_of_rank = np.searchsorted(ends, np.arange(n), side="right")
    out = np.empty(n, dtype=object)
    out[order] = np.asarray(labels, dtype=object)[tier_of_rank]
    return pd.Series(out, index=value.index, name="tier")


def relationship_stage(current: pd.Series, potential: pd.Series, current_cut: float | None = None,
                       potential_cut: float | None = None) -> pd.Series:
    """Stage per customer from the current-versus-potential value quadrants (see the module docstring)."""
    cc = float(current.median()) if current_cut is None else current_cut
    pc = float(potential.median()) if potential_cut is None else potential_cut
    hi_c = current.to_numpy(dtype=float) > cc
    hi_p = potential.to_numpy(dtype=float) > pc
    stage = np.where(hi_c, np.where(hi_p, "development", "maturity"),
                     np.where(hi_p, "identification", "decline"))
    return pd.Series(stage.astype(object), index=current.index, name="stage")


def recency_status(recency_days: pd.Series, active_days: float, lapsed_days: float) -> pd.Series:
    """``active`` / ``at_risk`` / ``lapsed`` per customer from days since the last purchase."""
    if not 0 <= active_days < lapsed_days:
        raise ValueError(f"need 0 <= active_days < lapsed_days; got {active_days}, {lapsed_days}")
    r = recency_days.to_numpy(dtype=float)
    status = np.where(r <= active_days, "active", np.where(r <= lapsed_days, "at_risk", "lapsed"))
    return pd.Series(status.astype(object), index=recency_days.index, name="status")


def pools(segment: pd.Series, status: pd.Series, prospects: dict[str, float] | None = None) -> pd.DataFrame:
    """Customers and pools per segment.

    Returns
    -------
    DataFrame
        Indexed by segment: ``customers``, ``active``, ``at_risk``, ``lapsed``,
        ``retention_pool`` (= active), ``winback_pool`` (= at risk + lapsed),
        ``acquisition_pool`` (the prospects given for the segment, else 0).
    """
    counts = pd.crosstab(segment, status).reindex(columns=list(STATUSES), fill_value=0)
    out = pd.DataFrame({"customers": counts.sum(axis=1), **{s: counts[s] for s in STATUSES}})
    out["retention_pool"] = out["active"]
    out["winback_pool"] = out["at_risk"] + out["lapsed"]
    prospects = prospects or {}
    out["acquisition_pool"] = [float(prospects.get(s, 0.0)) for s in out.index]
    out.index.name = "segment"
    return out
