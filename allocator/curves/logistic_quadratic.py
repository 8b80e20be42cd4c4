"""Logistic-quadratic response curve: a response that rises, peaks and falls.

p(x) = 1 / (1 + exp(-(b0 + b1 x + b2 x^2))),

a logistic regression on spend and spend squared, the form Kumar and Petersen
fit to B2B acquisition data (spending too much on a prospect annoys them). With
``b2 < 0`` the response peaks at

    x* = -b1 / (2 b2)

and :meth:`LogisticQuadratic.domain_max` returns that peak, so compiling a
scenario caps a cell's spend at ``pool * x*`` and no optimizer spends past it.

Concavity on [0, domain_max]. With ``q(x) = b0 + b1 x + b2 x^2`` and ``s = p(x)``,

    p''(x) = s (1 - s) [ (1 - 2 s) q'(x)^2 + 2 b2 ].

On [0, x*] (``b2 <= 0``, ``b1 > 0``) both ``q'`` >= 0 and ``1 - 2 s`` fall as x
grows, so ``(1 - 2 s) q'^2`` is largest at x = 0 where it is negative or its
factors are both non-negative and falling: the curve is concave on the whole
interval iff ``(1 - 2 p(0)) b1^2 + 2 b2 <= 0``. A curve that starts below 1/2
with a steep rise is therefore S-shaped before its peak, and the exact solver
refuses it. With ``b2 > 0`` the bracket is checked on a grid (such curves have
no peak and are rarely concave).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.special import expit

from .base import CurveFamily, Param


class LogisticQuadratic(CurveFamily):
    name = "logistic_quadratic"
    description = "1 / (1 + exp(-(b0 + b1 x + b2 x^2))); rises then falls when b2 < 0 (spend capped at the peak)"
    examples: ClassVar[tuple[dict, ...]] = (
        {"b0": 0.5, "b1": 0.02, "b2": -5e-5},     # starts above 1/2: concave up to its peak at 200
        {"b0": -2.0, "b1": 0.03, "b2": -5e-5},    # starts low: S-shaped before its peak at 300
        {"b0": 0.2, "b1": 0.01, "b2": 0.0},       # a plain logistic above 1/2: concave, no peak
    )
    params = (
        Param("b0", doc="intercept: log-odds of response at zero spend"),
        Param("b1", doc="linear coefficient of spend per member"),
        Param("b2", doc="quadratic coefficient; < 0 gives a peak at -b1/(2 b2)"),
    )

    @staticmethod
    def _q(x, P):
        x = np.asarray(x, dtype=float)
        return P["b0"] + x * (P["b1"] + P["b2"] * x)

    def response(self, x, P):
        return expit(self._q(x, P))

    def slope(self, x, P):
        x = np.asarray(x, dtype=float)
        s = expit(self._q(x, P))
        return s * (1.0 - s) * (P["b1"] + 2.0 * P["b2"] * x)

    def domain_max(self, P):
        b1, b2 = np.asarray(P["b1"], float), np.asarray(P["b2"], float)
        with np.errstate(divide="ignore", invalid="ignore"):
            peak = np.where(b2 < 0, np.maximum(-b1 / (2.0 * np.where(b2 < 0, b2, -1.0)), 0.0), np.inf)
        # a straight logistic that falls from the start: no spend is useful
        return np.where((b2 == 0) & (b1 <= 0), 0.0, peak)

    def is_concave(self, P):
        b0, b1, b2 = (np.asarray(P[k], float) for k in ("b0", "b1", "b2"))
        s0 = expit(b0)
        at_zero = (1.0 - 2.0 * s0) * b1**2 + 2.0 * b2 <= 1e-15
        ok = np.where(b1 <= 0, b2 <= 0, at_zero)  # b1 <= 0, b2 <= 0: the domain is the single point 0
        pos = b2 > 0
        if pos.any():
            ok[pos] = self._grid_concave({k: np.asarray(P[k], float)[pos] for k in ("b0", "b1", "b2")})
        return ok

    def _grid_concave(self, P) -> np.ndarray:
        # b2 > 0: q grows without bound; check the sign of the bracket until q is far in the flat top
        b0, b1, b2 = P["b0"], P["b1"], P["b2"]
        vertex = np.maximum(-b1 / (2 * b2), 0.0)
        reach = vertex + np.sqrt(np.maximum(40.0 - (b0 + vertex * (b1 + b2 * vertex)), 0.0) / b2) + 1e-9
        t = np.linspace(0.0, 1.0, 4001)[None, :] * reach[:, None]
        q = b0[:, None] + t * (b1[:, None] + b2[:, None] * t)
        s = expit(q)
        bracket = (1 - 2 * s) * (b1[:, None] + 2 * b2[:, None] * t) ** 2 + 2 * b2[:, None]
        return np.all(bracket <= 1e-15, axis=1)
