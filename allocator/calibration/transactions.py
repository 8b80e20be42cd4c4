"""Customer values and pools from a transaction log (customer, date, amount), e.g. CDNOW.

Time is cut into periods of ``period_months`` months from the month of the first
transaction; a customer is *active* in a period when they bought in it. Per
segment, with sums over the segment's customers and over periods that have a
next period in the window:

* margin per period ``m = margin_rate * revenue / active customer-periods``
  (the stated gross margin times revenue per active customer per period);
* retention ``r = #(active in q and in q+1) / #(active in q)``, the period-to-period
  repeat rate. In a non-contractual business a customer who skips a period and
  comes back counts as not retained in that period; the rate is the base rate
  that retention spend works on;
* reactivation ``w = #(inactive in q after an earlier purchase, active in q+1) /
  #(inactive in q after an earlier purchase)``, the base rate of win-back;
* retention after a return: the repeat rate of customers in the period they came
  back, used for a won-back customer's "second lifetime value" (the segment's
  ``r`` when fewer than 30 such returns are seen);
* lifetime values with the stated annual discount rate turned into a per-period
  ``d = (1 + annual)^(months/12) - 1`` (timings of :mod:`allocator.value.clv`):
  a *retained* customer buys next period for certain and then repeats at rate
  ``r``: ``m / (1 + d - r)`` (``end_of_period``); a *won-back* customer likewise
  with the retention after a return; a *new* customer brings the first margin
  now: ``m (1 + d) / (1 + d - r)`` (``margin_now``).

Every rate is a ratio of sums of per-customer counts, so the bootstrap over
customers (resampling a segment's customers with replacement) is a matrix
product of multinomial weights with those counts.

Caveat: segments are formed on the same window whose repeat rates they report
(a customer in the top tier bought often by construction), so the rates describe
the tiers in sample; a hold-out window would be needed to forecast new customers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import Problem, SpecError
from ..value import lifetime_value
from .segmentation import pools, recency_status, relationship_stage, value_pyramid
from .tables import Checker


MIN_RETURNS = 30


@dataclass
class TransactionsSpec:
    """Columns and stated economics of a transaction log."""

    customer: str = "customer_id"
    date: str = "date"
    amount: str = "dollar_value"
    date_format: str = "%Y%m%d"
    period_months: int = 3
    margin_rate: float = 0.30
    discount: float = 0.10
    active_days: float = 182.0
    lapsed_days: float = 365.0
    recent_periods: int = 2
    bootstrap: int = 200
    seed: int = 0


def load_transactions(df: pd.DataFrame, spec: TransactionsSpec, source: str | None = None) -> pd.DataFrame:
    """Checked ``customer``, ``date``, ``amount`` columns (errors name the column and the row)."""
    ck = Checker(df, source)
    if not ck.require(spec.customer, spec.date, spec.amount):
        ck.raise_if_any()
    cust = ck.labels(spec.customer)
    amount = ck.numeric(spec.amount, lower=0.0)
    text = df[spec.date].astype(str).str.strip()
    dates = pd.to_datetime(text, format=spec.date_format, errors="coerce")
    bad = np.flatnonzero(dates.isna().to_numpy())
    if len(bad):
        ck._bad(spec.date, bad, f"must be a date in the format {spec.date_format}", text.to_numpy()[bad])
    ck.raise_if_any()
    if not 0 < spec.margin_rate <= 1:
        raise SpecError(Problem("margin_rate", f"must be in (0, 1]; got {spec.margin_rate:g}"))
    if spec.discount < 0:
        raise SpecError(Problem("discount", f"must be >= 0; got {spec.discount:g}"))
    return pd.DataFrame({"customer": cust, "date": dates.to_numpy(), "amount": amount})


@dataclass
class CustomerBase:
    """Per-customer summary and the per-period activity of a transaction log."""

    customers: pd.DataFrame          # indexed by customer
    active: np.ndarray               # customers x periods, bool
    revenue: np.ndarray              # customers x periods
    period_start: list[pd.Timestamp]
    end: pd.Timestamp
    spec: TransactionsSpec

    @property
    def periods(self) -> int:
        return self.active.shape[1]

    @property
    def discount_per_period(self) -> float:
        return (1.0 + self.spec.discount) ** (self.spec.period_months / 12.0) - 1.0


def customer_base(tx: pd.DataFrame, spec: TransactionsSpec) -> CustomerBase:
    """Summarize the log per customer; segment by value pyramid, stage and recency status.

    Current value is the revenue of the last ``recent_periods`` periods. Potential
    value is the revenue the customer's own history projects over the next
    ``recent_periods`` periods: purchases per period over their tenure times their
    mean purchase, times ``exp(-rate * gap)``, the chance that a customer buying at
    that rate would have gone as long as they have without buying (a simple
    proxy for still being a customer).
    """
    start = tx["date"].min().to_period("M").to_timestamp()
    end = tx["date"].max()
    months = (tx["date"].dt.year - start.year) * 12 + (tx["date"].dt.month - start.month)
    period = (months // spec.period_months).to_numpy()
    n_periods = int(period.max()) + 1
    codes, uniques = pd.factorize(tx["customer"], sort=True)
    n = len(uniques)
    revenue = np.zeros((n, n_periods))
    np.add.at(revenue, (codes, period), tx["amount"].to_numpy())
    active = np.zeros((n, n_periods), dtype=bool)
    active[codes, period] = True
    g = tx.assign(c=codes).groupby("c")
    first, last = g["date"].min().to_numpy(), g["date"].max().to_numpy()
    purchases = g["date"].nunique().to_numpy()
    total = revenue.sum(axis=1)
    tenure_days = (end - pd.to_datetime(first)).days.to_numpy() + 1.0
    recency = (end - pd.to_datetime(last)).days.to_numpy().astype(float)
    period_days = spec.period_months * 365.25 / 12
    rate = purchases / (tenure_days / period_days)                      # purchases per period
    mean_purchase = total / purchases
    alive = np.exp(-rate * recency / period_days)
    customers = pd.DataFrame({
        "revenue": total, "purchases": purchases, "first": first, "last": last, "recency_days": recency,
        "current_value": revenue[:, -spec.recent_periods:].sum(axis=1),
        "potential_value": rate * mean_purchase * spec.recent_periods * alive,
    }, index=pd.Index(uniques, name="customer"))
    customers["tier"] = value_pyramid(customers["revenue"])
    customers["stage"] = relationship_stage(customers["current_value"], customers["potential_value"])
    customers["status"] = recency_status(customers["recency_days"], spec.active_days, spec.lapsed_days)
    starts = [start + pd.DateOffset(months=spec.period_months * q) for q in range(n_periods)]
    return CustomerBase(customers, active, revenue, starts, end, spec)


def _counts(base: CustomerBase) -> dict[str, np.ndarray]:
    """Per-customer numerators and denominators of every segment rate."""
    A = base.active
    now, nxt = A[:, :-1], A[:, 1:]
    bought_before = np.cumsum(A, axis=1) - A > 0                        # a purchase in an earlier period
    lapsed = ~A & bought_before
    prev = np.concatenate([np.zeros((len(A), 1), bool), A[:, :-1]], axis=1)
    returned = A & ~prev & np.concatenate([np.zeros((len(A), 1), bool), bought_before[:, :-1]], axis=1)
    return {
        "revenue": base.revenue.sum(axis=1), "active_periods": A.sum(axis=1).astype(float),
        "ret_num": (now & nxt).sum(axis=1).astype(float), "ret_den": now.sum(axis=1).astype(float),
        "react_num": (lapsed[:, :-1] & nxt).sum(axis=1).astype(float),
        "react_den": lapsed[:, :-1].sum(axis=1).astype(float),
        "rar_num": (returned[:, :-1] & nxt).sum(axis=1).astype(float),
        "rar_den": returned[:, :-1].sum(axis=1).astype(float),
    }


def _rates(W: np.ndarray, c: dict[str, np.ndarray], margin_rate: float) -> dict[str, np.ndarray]:
    """Segment rates for each row of customer weights ``W`` (draws x customers)."""
    s = {k: W @ v for k, v in c.items()}
    with np.errstate(invalid="ignore", divide="ignore"):
        retention = s["ret_num"] / s["ret_den"]
        rar = np.where(s["rar_den"] >= MIN_RETURNS, s["rar_num"] / s["rar_den"], retention)
        return {"margin": margin_rate * s["revenue"] / s["active_periods"], "retention": retention,
                "reactivation": s["react_num"] / s["react_den"], "retention_after_return": rar,
                "returns_seen": s["rar_den"]}


def _values(rates: dict, d: float) -> dict[str, float]:
    m = rates["margin"]
    return {"retained_value": lifetime_value(m, rates["retention"], d, timing="end_of_period"),
            "winback_value": lifetime_value(m, rates["retention_after_return"], d, timing="end_of_period"),
            "new_customer_value": lifetime_value(m, rates["retention"], d, timing="margin_now")}


def segment_economics(base: CustomerBase, segment: pd.Series | None = None) -> tuple[pd.DataFrame, dict]:
    """Per segment: customers, pools, margin, retention, reactivation and lifetime values, with draws.

    Parameters
    ----------
    base : CustomerBase
    segment : Series, optional
        Segment label per customer (default: the value-pyramid tier).

    Returns
    -------
    table : DataFrame
        One row per segment.
    draws : dict
        ``draws[segment][name]``: bootstrap draws (customers resampled within
        the segment) of ``margin``, ``retention``, ``reactivation``,
        ``retention_after_return``, ``retained_value``, ``winback_value`` and ``new_customer_value``.
    """
    spec = base.spec
    seg = base.customers["tier"] if segment is None else segment
    c = _counts(base)
    d = base.discount_per_period
    rng = np.random.default_rng(spec.seed)
    rows, draws = [], {}
    pool_table = pools(seg, base.customers["status"])
    for name in pool_table.index:
        idx = np.flatnonzero((seg == name).to_numpy())
        sub = {k: v[idx] for k, v in c.items()}
        point = {k: float(v[0]) for k, v in _rates(np.ones((1, len(idx))), sub, spec.margin_rate).items()}
        rows.append({"segment": name, **pool_table.loc[name].to_dict(),
                     "revenue": float(sub["revenue"].sum()), **point, **_values(point, d)})
        if spec.bootstrap:
            W = rng.multinomial(len(idx), np.full(len(idx), 1.0 / len(idx)), size=spec.bootstrap).astype(float)
            r = _rates(W, sub, spec.margin_rate)
            vals = [_values({k: v[b] for k, v in r.items()}, d) for b in range(spec.bootstrap)]
            r.update({k: np.array([v[k] for v in vals]) for k in vals[0]})
            draws[name] = r
    table = pd.DataFrame(rows).set_index("segment")
    table["discount_per_period"] = d
    return table, draws


def whole_base(base: CustomerBase) -> dict[str, float]:
    """The same rates over all customers (the value of an average new customer)."""
    c = _counts(base)
    point = {k: float(v[0]) for k, v in _rates(np.ones((1, len(base.customers))), c, base.spec.margin_rate).items()}
    point.update(_values(point, base.discount_per_period))
    return point


def pyramid_summary(base: CustomerBase) -> pd.DataFrame:
    """Customers, revenue share and value range per tier, with stage and status counts."""
    cu = base.customers
    g = cu.groupby("tier", sort=False)
    table = pd.DataFrame({"customers": g.size(), "revenue": g["revenue"].sum(),
                          "min_revenue": g["revenue"].min(), "max_revenue": g["revenue"].max(),
                          "mean_revenue": g["revenue"].mean()})
    table["revenue_share"] = table["revenue"] / table["revenue"].sum()
    stages = pd.crosstab(cu["tier"], cu["stage"])
    status = pd.crosstab(cu["tier"], cu["status"])
    order = [t for t in ("top_1pct", "next_4pct", "next_15pct", "rest_80pct") if t in table.index]
    return table.join(stages).join(status).reindex(order).fillna(0)


def check_rate(value: float, what: str, segment: str) -> float:
    if not math.isfinite(value):
        raise SpecError(Problem(what, "cannot be computed from the data (no customer-periods to count)",
                                f"({segment})"))
    return value
