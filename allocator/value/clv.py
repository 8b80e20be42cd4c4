"""Customer lifetime value from margin, retention and discount rate.

With margin ``m`` per period, retention probability ``r`` per period, discount
rate ``d`` per period and ``q = r / (1 + d)``, the three timing conventions are

=======================  =================================  ======================
timing                   sum                                infinite horizon
=======================  =================================  ======================
``gupta_lehmann``        sum_{t=1..T} m r^t / (1+d)^t       m r / (1 + d - r)
``margin_now``           sum_{t=0..T-1} m r^t / (1+d)^t     m (1 + d) / (1 + d - r)
``end_of_period``        sum_{t=1..T} m r^(t-1) / (1+d)^t   m / (1 + d - r)
=======================  =================================  ======================

``gupta_lehmann`` (the default) is the margin multiple of Gupta and Lehmann
(2003), "Customers as assets", Journal of Interactive Marketing 17(1): the first
margin arrives one period from now and only if the customer is still there. In
``margin_now`` the first margin is collected today; in ``end_of_period`` it is
collected at the end of the first period for certain. They differ only in timing:
``margin_now = (1 + d) / r * gupta_lehmann`` and ``end_of_period = gupta_lehmann / r``.
A finite ``horizon`` T counts the margins collected; the finite sums are

    sum_{t=1..T} q^t = q (1 - q^T) / (1 - q).

The same formula gives a won-back customer's "second lifetime value" when fed the
margin and retention of reactivated customers.
"""

from __future__ import annotations

import math

TIMINGS = ("gupta_lehmann", "margin_now", "end_of_period")


def _geometric(q: float, terms: float) -> float:
    """sum_{t=1..terms} q^t, with terms = inf allowed (q < 1)."""
    if math.isinf(terms):
        return q / (1.0 - q)
    if q == 1.0:
        return float(terms)
    return q * (1.0 - q**terms) / (1.0 - q)


def lifetime_value(margin: float, retention: float, discount: float,
                   horizon: float = math.inf, timing: str = "gupta_lehmann") -> float:
    """Expected discounted margin of one customer.

    Parameters
    ----------
    margin : float
        Margin per period (currency).
    retention : float
        Probability of staying from one period to the next, in [0, 1].
    discount : float
        Discount rate per period, >= 0 (and > 0 when retention is 1 and the horizon infinite).
    horizon : float, default inf
        Number of margins counted.
    timing : {"gupta_lehmann", "margin_now", "end_of_period"}
        See the module docstring for the formulas.

    Returns
    -------
    float
        The lifetime value in the margin's currency.

    Examples
    --------
    >>> round(lifetime_value(100, 0.8, 0.1), 6)   # 100 * 0.8 / (1.1 - 0.8)
    266.666667
    """
    if timing not in TIMINGS:
        raise ValueError(f"timing must be one of {', '.join(TIMINGS)}; got {timing!r}")
    q = retention / (1.0 + discount)
    if timing == "gupta_lehmann":
        return margin * _geometric(q, horizon)
    if timing == "margin_now":
        # t = 0..T-1: 1 + sum_{t=1..T-1} q^t
        return margin * (1.0 + _geometric(q, horizon - 1))
    # end_of_period: sum_{t=1..T} r^(t-1)/(1+d)^t = (1/(1+d)) * (1 + sum_{t=1..T-1} q^t)
    return margin / (1.0 + discount) * (1.0 + _geometric(q, horizon - 1))
