"""Hill (ADBUDG) response curve.

p(x) = floor + (ceiling - floor) * x^shape / (half_saturation^shape + x^shape),

Little's ADBUDG form (Little 1970, "Models and managers: the concept of a decision
calculus", Management Science 16(8)). ``shape <= 1`` gives a concave curve;
``shape > 1`` an S-shaped one, with nothing much happening until spend clears a
threshold.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from .base import CurveFamily, Param, Params, SpendRule


SMALL = 16
"""Up to this many cells the shape-1 spend rule runs in Python floats (see :meth:`Hill.spend_rule`)."""


class Hill(CurveFamily):
    name = "hill"
    elementwise = True
    description = "floor + (ceiling - floor) * x^shape / (half_saturation^shape + x^shape); S-shaped when shape > 1"
    examples: ClassVar[tuple[dict, ...]] = (
        {"ceiling": 0.4, "half_saturation": 50.0, "shape": 1.0},
        {"ceiling": 0.4, "half_saturation": 20.0, "shape": 0.6, "floor": 0.05},
        {"ceiling": 0.5, "half_saturation": 30.0, "shape": 2.5},
    )

    params = (
        Param("ceiling", lower=0.0, upper=1.0, doc="response rate at unlimited spend per member"),
        Param("half_saturation", lower=1e-12, doc="spend per member giving half of the lift"),
        Param("shape", lower=1e-6, upper=50.0, doc="steepness; > 1 is S-shaped"),
        Param("floor", default=0.0, lower=0.0, upper=1.0, doc="response rate at zero spend"),
    )

    check_relations = CurveFamily.ceiling_above_floor

    def _frac(self, x, P):
        z = np.asarray(x, dtype=float) / P["half_saturation"]
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            zk = np.power(z, P["shape"])
            frac = zk / (1.0 + zk)
            if not _all_finite(zk):  # only there: on a few cells the calls, not the arithmetic, are the cost
                frac = np.where(np.isinf(zk), 1.0, frac)
        return z, zk, frac

    def response(self, x, P):
        _, _, frac = self._frac(x, P)
        return P["floor"] + (P["ceiling"] - P["floor"]) * frac

    def slope(self, x, P):
        k, h = P["shape"], P["half_saturation"]
        # one errstate for the whole formula (z as in _frac), and the special cases only where
        # they occur: on a few cells the calls, not the arithmetic, are the cost
        z = np.asarray(x, dtype=float) / h
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            zk = np.power(z, k)
            # d/dx [z^k/(1+z^k)] = k z^(k-1) / (h (1+z^k)^2)
            d = k * np.power(z, k - 1.0) / (h * (1.0 + zk) ** 2)
            if not _all_finite(zk):
                d = np.where(np.isinf(zk), 0.0, d)
            if not _above_zero(z):
                zero = z == 0
                d = np.where(zero, np.where(k < 1, np.inf, np.where(k == 1, 1.0 / h, 0.0)), d)
        return (P["ceiling"] - P["floor"]) * d

    def is_concave(self, P):
        return P["shape"] <= 1.0

    def inflection(self, P: Params) -> np.ndarray:
        """Spend per member where an S-shaped curve turns concave (0 when concave)."""
        k = P["shape"]
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where(k > 1, np.power(np.maximum(k - 1, 0) / (k + 1), 1.0 / k), 0.0)
        return z * P["half_saturation"]

    def spend_rule(self, P: Params, value: np.ndarray, pool: np.ndarray) -> SpendRule:
        if not np.all(P["shape"] == 1.0):
            return super().spend_rule(P, value, pool)
        # shape 1: value*(c-f)*h/(h+x)^2 = lam  <=>  x = sqrt(value*(c-f)*h/lam) - h
        h = P["half_saturation"]
        root = np.sqrt(value * (P["ceiling"] - P["floor"]) * h)

        def rule(lam: float) -> np.ndarray:
            # a float multiplier's root by math.sqrt: IEEE square roots are correctly rounded, so it is
            # np.sqrt's number without a ufunc call per trial (callers may also pass arrays of levels)
            return pool * np.maximum(root / (math.sqrt(lam) if type(lam) is float else np.sqrt(lam)) - h, 0.0)

        if len(h) > SMALL or not (np.asarray(h) > 0).all():
            return rule
        # A few cells in Python floats: a division, a subtraction, max with 0 and a product, the same
        # IEEE operations as the arrays'. With h > 0 the difference is never -0.0, so max(d, 0.0)
        # and np.maximum agree on every input (NaN included: both keep it).
        cells = list(zip(np.asarray(pool, float).tolist(), root.tolist(), h.tolist()))

        def small_rule(lam: float) -> np.ndarray:
            if type(lam) is not float or not lam > 0:
                return rule(lam)  # levels, or a multiplier Python cannot divide by (0, negative, NaN)
            r = math.sqrt(lam)
            return np.array([size * max(q / r - hh, 0.0) for size, q, hh in cells], dtype=float)

        return small_rule


def _all_finite(a: np.ndarray) -> bool:
    """No element is infinite or NaN, by the sum's finiteness: one reduction, where ``isinf(a).any()``
    took two calls (called with overflow ignored).

    A sum that overflows or meets a NaN says no as well; that only sends the caller to its exact
    test, which then finds nothing to change: the fast test may be too cautious, never too bold.
    """
    return math.isfinite(np.add.reduce(a, axis=None))


def _above_zero(a: np.ndarray) -> bool:
    """Every element > 0 (no zero, no NaN): one reduction, where ``(a == 0).any()`` took two calls."""
    return bool(np.minimum.reduce(a, axis=None, initial=np.inf) > 0)
