"""Tabulated response curve with linear interpolation.

``points: [[x0, p0], [x1, p1], ...]`` with x0 = 0 and x strictly increasing; p is
interpolated linearly between points and held flat beyond the last one. The
curve is concave when the segment slopes do not increase.

Cells are packed into padded 2-D arrays (cells x points); the padding repeats the
last point at x = inf so that every row has the same width and the flat tail
falls out of the same formulas.
"""

from __future__ import annotations

import math
from typing import ClassVar, Mapping

import numpy as np

from .base import CurveFamily, Params, SpendRule


class Piecewise(CurveFamily):
    name = "piecewise"
    description = "linear interpolation of points [[x, p], ...] from x = 0, flat beyond the last point"
    params = ()
    examples: ClassVar[tuple[dict, ...]] = (
        {"points": [[0, 0.0], [10, 0.1], [30, 0.2], [100, 0.25]]},
        {"points": [[0, 0.05], [5, 0.06], [15, 0.2], [40, 0.3]]},
    )

    def check(self, raw: Mapping[str, object]) -> list[tuple[str, str]]:
        extra = [k for k in raw if k != "points"]
        if extra:
            return [(k, "unknown parameter for family 'piecewise'; allowed: points") for k in extra]
        pts = raw.get("points")
        if not isinstance(pts, (list, tuple)) or len(pts) < 2:
            return [("points", f"must be a list of at least two [x, p] pairs; got {pts!r}")]
        for j, pt in enumerate(pts):
            if (not isinstance(pt, (list, tuple)) or len(pt) != 2
                    or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in pt)):
                return [(f"points[{j}]", f"must be a pair [x, p] of numbers; got {pt!r}")]
            if not all(math.isfinite(v) for v in pt):
                return [(f"points[{j}]", f"must be finite; got {list(pt)}")]
            if not 0.0 <= pt[1] <= 1.0:
                return [(f"points[{j}]", f"response p must be a probability in [0, 1]; got {pt[1]:g}")]
        if pts[0][0] != 0:
            return [("points[0]", f"the table must start at spend 0; got x = {pts[0][0]:g}")]
        for j in range(1, len(pts)):
            if pts[j][0] <= pts[j - 1][0]:
                return [(f"points[{j}]", f"x must increase strictly; got {pts[j][0]:g} after {pts[j - 1][0]:g}")]
        return []

    def pack(self, raws):
        width = max(len(r["points"]) for r in raws)
        X = np.full((len(raws), width), np.inf)
        Y = np.empty((len(raws), width))
        for i, r in enumerate(raws):
            pts = np.asarray(r["points"], dtype=float)
            X[i, : len(pts)] = pts[:, 0]
            Y[i, : len(pts)] = pts[:, 1]
            Y[i, len(pts):] = pts[-1, 1]
        return {"x": X, "p": Y}

    def unpack(self, P, i):
        keep = np.isfinite(P["x"][i])
        return {"points": [[float(a), float(b)] for a, b in zip(P["x"][i][keep], P["p"][i][keep])]}

    @staticmethod
    def _slopes(P: Params) -> np.ndarray:
        X, Y = P["x"], P["p"]
        # the last column stays 0: the flat tail beyond the last point. Written in place (the
        # differences are np.diff's): this runs on every evaluation, where a handful of cells made
        # the calls' overhead the cost
        out = np.zeros(np.shape(X))
        s = out[:, :-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            np.divide(Y[:, 1:] - Y[:, :-1], X[:, 1:] - X[:, :-1], out=s)
        s[~np.isfinite(s)] = 0.0
        return out

    def _segment(self, x, P, left: bool):
        X = P["x"]
        x = np.asarray(x, dtype=float)
        if x.shape != (len(X),):
            x = np.broadcast_to(x, (len(X),))
        cmp = X < x[:, None] if left else X <= x[:, None]
        k = np.maximum(cmp.sum(axis=1) - 1, 0)
        return x, k

    def response(self, x, P):
        x, k = self._segment(x, P, left=False)
        rows = np.arange(len(k))
        xk = P["x"][rows, k]
        return P["p"][rows, k] + self._slopes(P)[rows, k] * (x - xk)

    def slope(self, x, P):
        x, k = self._segment(x, P, left=False)
        return self._slopes(P)[np.arange(len(k)), k]

    def slope_left(self, x, P):
        x, k = self._segment(x, P, left=True)
        return self._slopes(P)[np.arange(len(k)), k]

    def is_concave(self, P):
        s = self._slopes(P)
        finite = np.isfinite(P["x"])
        # compare consecutive real segments only (the padding repeats the last point)
        return np.all(~finite[:, 1:] | (s[:, 1:] <= s[:, :-1] + 1e-15), axis=1)

    def spend_rule(self, P: Params, value: np.ndarray, pool: np.ndarray) -> SpendRule:
        # On a concave table the optimal spend per member at multiplier lam is the
        # end of the last segment whose marginal return value*slope exceeds lam.
        X = np.where(np.isfinite(P["x"]), P["x"], np.nan)
        ends = np.concatenate([X[:, 1:], np.full((len(X), 1), np.nan)], axis=1)
        marg = self._slopes(P) * value[:, None]
        real = np.isfinite(ends)  # once, not per multiplier trial

        def rule(lam: float) -> np.ndarray:
            good = (marg > lam) & real
            return pool * np.where(good, ends, 0.0).max(axis=1)

        return rule
