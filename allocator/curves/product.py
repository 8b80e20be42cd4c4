"""A response curve scaled by a value curve: the composite family of ``value_curve`` cells.

A static cell with ``value_curve`` earns ``pool * value * p(x) * w(x)`` at spend per member
``x`` (issue 9, "Value that depends on spend"): ``p`` is the cell's response curve and ``w``
its value curve, any registered family, with the convention of the multi-period engine
(:meth:`allocator.dynamic.model.DynamicProblem.success_value`): the value of a success at
spend ``x`` is ``value * w(x)``, ``w`` being the family's response evaluated as written (no
rescaling). The compiled problem then sees one curve ``q(x) = p(x) w(x)`` with the cell's
``value``, so every solver, check and report works unchanged:

    q'(x) = p'(x) w(x) + p(x) w'(x)            (product rule, right and left derivatives)

Range: spend past the peak of ``q`` is never useful, so :meth:`domain_max` cuts the response's
range at the (sampled) highest point of ``q``, and concavity is judged on ``[0, domain_max]``,
as for the logistic-quadratic family.

Concavity: ``q`` is concave when ``p`` is concave and non-decreasing and ``w`` is concave
and non-increasing (every term of ``q'' = p'' w + 2 p' w' + p w''`` is <= 0). Otherwise the
slope ``q'`` is sampled densely on ``[0, domain_max]`` (a log grid, both one-sided slopes) and
the cell counts as concave only if the sampled slope never rises; an S-shaped or kinked
product therefore goes to the global route. A sampled check can miss a rise narrower than the
grid (points about 1% apart from 1e-6 to 1e12, plus both sides of every tabulated breakpoint),
which the smooth registered families do not do.

The inverse of the marginal return (exact solver) is the base class's vectorized bisection.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .base import CurveFamily, Params

#: sample points of the sampled concavity check: 1e-6 .. 1e12 at about 1% spacing
_GRID = 4001


class ProductFamily(CurveFamily):
    """``q(x) = p(x) * w(x)``: response family ``p`` times value family ``w``.

    Parameters are packed under ``p.<name>`` and ``w.<name>``; :meth:`pack` takes, per cell,
    ``{"curve": {...}, "value_curve": {...}}`` (each without ``family``).
    """

    params = ()

    def __init__(self, response: CurveFamily, value: CurveFamily):
        self.response_family = response
        self.value_family = value
        self.name = f"{response.name}*{value.name}"
        self.description = f"{response.name} response times a {value.name} value curve"

    # ---- parameters ----
    def check(self, raw: Mapping[str, object]) -> list[tuple[str, str]]:
        out = [(f"curve.{k}", m) for k, m in self.response_family.check(raw.get("curve", {}))]  # type: ignore[arg-type]
        out += [(f"value_curve.{k}", m) for k, m in self.value_family.check(raw.get("value_curve", {}))]  # type: ignore[arg-type]
        return out

    def pack(self, raws):
        Pp = self.response_family.pack([r["curve"] for r in raws])
        Pw = self.value_family.pack([r["value_curve"] for r in raws])
        return {**{f"p.{k}": v for k, v in Pp.items()}, **{f"w.{k}": v for k, v in Pw.items()}}

    def unpack(self, P: Params, i: int) -> dict[str, object]:
        Pp, Pw = self.split(P)
        return {"curve": self.response_family.unpack(Pp, i), "value_curve": self.value_family.unpack(Pw, i)}

    @staticmethod
    def split(P: Params) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The response's and the value curve's parameter dicts."""
        return ({k[2:]: v for k, v in P.items() if k.startswith("p.")},
                {k[2:]: v for k, v in P.items() if k.startswith("w.")})

    # ---- maths ----
    def value_factor(self, x: np.ndarray, P: Params) -> np.ndarray:
        """``w(x)``: the share of ``value`` one success is worth at spend per member ``x``."""
        return self.value_family.response(x, self.split(P)[1])

    def response(self, x, P):
        Pp, Pw = self.split(P)
        return self.response_family.response(x, Pp) * self.value_family.response(x, Pw)

    def _slope(self, x, P, side: str):
        Pp, Pw = self.split(P)
        fp, fw = self.response_family, self.value_family
        dp = fp.slope(x, Pp) if side == "right" else fp.slope_left(x, Pp)
        dw = fw.slope(x, Pw) if side == "right" else fw.slope_left(x, Pw)
        return dp * fw.response(x, Pw) + fp.response(x, Pp) * dw

    def slope(self, x, P):
        return self._slope(x, P, "right")

    def slope_left(self, x, P):
        return self._slope(x, P, "left")

    def _grid(self, P: Params, xmax: np.ndarray) -> np.ndarray:
        """Per cell, sorted sample spends: 0, a log grid of absolute spends (about 1% apart, 1e-6 to
        1e12) and both sides of every tabulated breakpoint, clipped to ``xmax``."""
        n = len(xmax)
        X = np.broadcast_to(np.concatenate([[0.0], np.logspace(-6, 12, _GRID - 1)]), (n, _GRID))
        kinks = [v for v in P.values() if np.ndim(v) == 2]
        if kinks:
            K = np.concatenate(kinks, axis=1)
            K = np.where(np.isfinite(K), K, 0.0)
            X = np.sort(np.concatenate([X, K * (1 - 1e-9), K * (1 + 1e-9)], axis=1), axis=1)
        return np.minimum(X, xmax[:, None])

    def _rows(self, P: Params, G: int) -> dict[str, np.ndarray]:
        return {k: np.repeat(v, G, axis=0) for k, v in P.items()}

    def domain_max(self, P):
        """Largest useful spend per member: the response's own range, cut at the sampled peak of ``p w``.

        Past the highest point of ``q`` on the sample grid (taken one grid point later, so the true
        peak is inside) more spend buys a smaller expected value, so no objective wants it. When
        the sampled maximum is the last grid point the response's range is kept.
        """
        Pp, _ = self.split(P)
        own = np.asarray(self.response_family.domain_max(Pp), float)
        X = self._grid(P, np.minimum(own, 1e12))
        n, G = X.shape
        q = self.response(X.ravel(), self._rows(P, G)).reshape(n, G)
        j = np.argmax(q, axis=1)
        peak = X[np.arange(n), np.minimum(j + 1, G - 1)]
        return np.where(j >= G - 1, own, np.minimum(own, peak))

    def is_concave(self, P):
        """Per cell: is ``q`` concave on ``[0, domain_max]``? (closed form, else the sampled slopes)."""
        Pp, Pw = self.split(P)
        X = self._grid(P, np.minimum(self.domain_max(P), 1e12))
        n, G = X.shape
        Pw_rows, Pp_rows = self._rows(Pw, G), self._rows(Pp, G)
        x = X.ravel()
        w_slope = self.value_family.slope(x, Pw_rows).reshape(n, G)
        w_slope_left = self.value_family.slope_left(x, Pw_rows).reshape(n, G)
        closed = self.response_family.is_concave(Pp) & self.value_family.is_concave(Pw) & np.all(
            (w_slope[:, 1:] <= 0) & (w_slope_left[:, 1:] <= 0), axis=1) & (w_slope[:, 0] <= 0)
        rows = {**{f"p.{k}": v for k, v in Pp_rows.items()}, **{f"w.{k}": v for k, v in Pw_rows.items()}}
        right = self.slope(x, rows).reshape(n, G)
        left = self.slope_left(x, rows).reshape(n, G)
        scale = np.maximum(np.max(np.abs(right), axis=1, keepdims=True), 1e-300)
        tol = 1e-9 * scale
        # slopes never rise: right slope at each point <= left slope there <= right slope before
        falls = np.all(right[:, 1:] <= left[:, 1:] + tol, axis=1) & np.all(left[:, 1:] <= right[:, :-1] + tol, axis=1)
        return closed | falls
