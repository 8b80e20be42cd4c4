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
from bisect import bisect_left, bisect_right
from typing import ClassVar, Mapping

import numpy as np

from .base import CurveFamily, Params, SpendRule

# keys of what Piecewise.prepare derives (never in packed parameters)
SLOPES = "_slopes"
"""The segment slopes (cells x points, 0 on the flat tail)."""
CONCAVE = "_concave"
""":meth:`Piecewise.is_concave` of the tables."""
ROWS = "_rows"
"""Small blocks only: per cell, its points, responses and slopes as Python lists (see :data:`SMALL`)."""

SMALL = 16
"""Up to this many cells a prepared block is evaluated cell by cell in Python floats.

A segment is found by bisection on the cell's sorted points (the count of points ``<=`` or ``<``
the spend, which numpy takes by comparing the whole row) and the curve is one multiply and add:
the same IEEE operations on the same numbers as the vectorized formulas, without a dozen numpy
calls that cost more than a few cells' arithmetic. Larger blocks take the vectorized formulas.
"""


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

    def prepare(self, P: Params) -> dict[str, np.ndarray]:
        """``P`` with the segment slopes, which every evaluation reads (a plan evaluates a curve a dozen
        times), and for a small block its concavity and the tables as Python lists (see :data:`SMALL`)."""
        out = {**P, SLOPES: self._slopes(P)}
        X, Y = P["x"], P["p"]
        if (X.ndim == 2 and len(X) <= SMALL and X.shape == Y.shape and X.dtype == Y.dtype == np.float64):
            # (a large block may be prepared on every call, see CurveBlock.prepared: no concavity there)
            out[CONCAVE] = self.is_concave(out)
            xs = X.tolist()
            if all(_sorted_points(r) for r in xs):
                out[ROWS] = list(zip(xs, Y.tolist(), out[SLOPES].tolist()))
        return out

    @staticmethod
    def _slopes(P: Params) -> np.ndarray:
        cached = P.get(SLOPES)
        if cached is not None:
            return cached
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

    @staticmethod
    def _small_segments(x, P: Params, left: bool) -> tuple[list, list, list] | None:
        """Of a prepared small block: (rows, spends as floats, segment per cell), as :meth:`_segment`
        finds them; None for anything else (the vectorized route)."""
        rows = P.get(ROWS)
        if rows is None:
            return None
        x = np.asarray(x, dtype=float)
        if x.shape != (len(rows),):
            return None
        xs = x.tolist()
        find = bisect_left if left else bisect_right
        # points <= x (< x for the left side) minus one, at least 0; a NaN spend compares false
        # everywhere (0 points), which bisection would not say
        return rows, xs, [max(find(r[0], v) - 1, 0) if v == v else 0 for r, v in zip(rows, xs)]

    def _segment(self, x, P, left: bool):
        X = P["x"]
        x = np.asarray(x, dtype=float)
        if x.shape != (len(X),):
            x = np.broadcast_to(x, (len(X),))
        cmp = X < x[:, None] if left else X <= x[:, None]
        k = np.maximum(cmp.sum(axis=1) - 1, 0)
        return x, k

    def response(self, x, P):
        small = self._small_segments(x, P, left=False)
        if small is not None:
            rows, xs, ks = small
            return np.array([p[k] + d[k] * (v - t[k]) for (t, p, d), v, k in zip(rows, xs, ks)], dtype=float)
        x, k = self._segment(x, P, left=False)
        rows = np.arange(len(k))
        xk = P["x"][rows, k]
        return P["p"][rows, k] + self._slopes(P)[rows, k] * (x - xk)

    def slope(self, x, P):
        return self._slope(x, P, left=False)

    def slope_left(self, x, P):
        return self._slope(x, P, left=True)

    def _slope(self, x, P, left: bool):
        small = self._small_segments(x, P, left)
        if small is not None:
            rows, _, ks = small
            return np.array([r[2][k] for r, k in zip(rows, ks)], dtype=float)
        x, k = self._segment(x, P, left)
        return self._slopes(P)[np.arange(len(k)), k]

    def is_concave(self, P):
        cached = P.get(CONCAVE)
        if cached is not None:
            return cached.copy()
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
            # the ufunc's reduction is the method's, without its wrapper (called once per multiplier trial)
            return pool * np.maximum.reduce(np.where(good, ends, 0.0), axis=1)

        if ROWS not in P or len(value) != len(X) or len(pool) != len(X):
            return rule
        # a small block cell by cell (see SMALL): the row's largest good end, else the 0.0 of np.where.
        # Its points are sorted from x >= 0, so every end is > 0: no signed zero can tie with that 0.0
        cells = list(zip(marg.tolist(), ends.tolist(), np.asarray(pool, float).tolist()))

        def small_rule(lam: float) -> np.ndarray:
            if not isinstance(lam, float):
                return rule(lam)  # an array of levels (per-cell rules) or another type: the vectorized rule
            out = []
            for margs, row_ends, size in cells:
                best = 0.0
                for m, e in zip(margs, row_ends):
                    if m > lam and e > best:  # (a NaN end, beyond the last point, is never > best)
                        best = e
                out.append(size * best)
            return np.array(out, dtype=float)

        return small_rule


def _sorted_points(row: list[float]) -> bool:
    """A table row bisection reads as numpy's comparisons do: from x >= 0, strictly increasing, no NaN,
    then only the padding's infinities."""
    return bool(row) and row[0] >= 0.0 and all(a < b or (b == math.inf and a == a) for a, b in zip(row, row[1:]))
