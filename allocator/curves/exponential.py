"""Exponential (modified exponential) response curve.

p(x) = floor + (ceiling - floor) * (1 - exp(-rate * x)),

the form of Blattberg and Deighton (1996), "Manage marketing by the customer
equity test", Harvard Business Review 74(4): the response rises from ``floor``
at zero spend towards ``ceiling`` at unlimited spend. Always concave.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import CurveFamily, Param, Params, SpendRule


class Exponential(CurveFamily):
    name = "exponential"
    elementwise = True
    description = "floor + (ceiling - floor) * (1 - exp(-rate * x)); concave (Blattberg-Deighton)"
    examples: ClassVar[tuple[dict, ...]] = (
        {"ceiling": 0.3, "rate": 0.02},
        {"ceiling": 0.9, "rate": 0.5, "floor": 0.6},
    )

    params = (
        Param("ceiling", lower=0.0, upper=1.0, doc="response rate at unlimited spend per member"),
        Param("rate", lower=0.0, doc="speed of saturation, per currency unit per member"),
        Param("floor", default=0.0, lower=0.0, upper=1.0, doc="response rate at zero spend"),
    )

    check_relations = CurveFamily.ceiling_above_floor

    def response(self, x, P):
        return P["floor"] + (P["ceiling"] - P["floor"]) * -np.expm1(-P["rate"] * x)

    def slope(self, x, P):
        return (P["ceiling"] - P["floor"]) * P["rate"] * np.exp(-P["rate"] * x)

    def is_concave(self, P):
        return np.ones(len(P["rate"]), dtype=bool)

    def spend_rule(self, P: Params, value: np.ndarray, pool: np.ndarray) -> SpendRule:
        # value * p'(x) = lam  <=>  pool*x = pool*(ln(value*(c-f)*r) - ln lam)/r: one multiply-add
        # per cell per multiplier trial, the solver's hot loop.
        amp = value * (P["ceiling"] - P["floor"]) * P["rate"]
        live = amp > 0
        if live.all():
            # the masks below select everything (the usual case): the same numbers in a third of the calls,
            # and nothing divides by zero (rate > 0 where amp > 0)
            inv_rate = 1.0 / P["rate"]
            intercept = pool * (np.log(amp) * inv_rate)
        else:
            with np.errstate(divide="ignore"):
                inv_rate = np.where(live, 1.0 / np.where(live, P["rate"], 1.0), 0.0)
                intercept = pool * np.where(live, np.log(np.where(live, amp, 1.0)) * inv_rate, -1.0)
        inv_rate = pool * inv_rate

        def rule(lam: float) -> np.ndarray:
            s = inv_rate * -np.log(lam)
            s += intercept
            return np.maximum(s, 0.0, out=s)

        return rule
