"""Piecewise-linear envelopes of response curves, with certified error bounds.

The global solver replaces each cell's expected successes ``E(s) = pool * p(s / pool)``
on its spend range ``[a, b]`` by a piecewise-linear function through breakpoints
``t_0 < ... < t_K``. To certify an optimum it needs, on every segment, a bound on how
far ``E`` rises above the chord (``lift``; chords lifted by it over-estimate ``E``)
or falls below it (``sag``). Those bounds are computed from ``m`` samples per
segment, using only the family's ``response`` and ``slope``:

* on a sub-interval ``[r, r']`` where the slope ``E'`` is monotone, ``E'`` lies
  between its end values, so ``E(s) - line(s)`` is below both lines
  ``g(r) + (M - c)(s - r)`` and ``g(r') + (c - m)(r' - s)`` (``M``, ``m`` the larger
  and smaller end slope, ``c`` the line's slope); the bound is the peak of the
  smaller of the two, exact to second order in the sub-interval width;
* on a sub-interval where the sampled slopes turn (a slope extremum such as an
  S-curve's inflection may lie inside), and at the ends of a non-concave cell's
  range, only monotonicity of ``E`` is used: ``E(s) <= max(E(r), E(r'))``.

So the bound is valid for any curve that is monotone in spend and whose slope
does not turn twice between sampled turning points: every smooth family with
finitely many inflections, sampled finely enough. Concave cells (``is_concave``)
have a monotone slope everywhere, so their bound is exact. Tabulated curves get
their table points as breakpoints, where the chord *is* the curve.
"""

from __future__ import annotations

import numpy as np

from ..curves.base import CurveFamily
from ..problem import CompiledProblem

GRID_POINTS = 200          # samples per cell used to place the initial breakpoints
MAX_CAP_DOUBLINGS = 200


# ---------------------------------------------------------------- evaluation on (cells x points) grids

def evaluate(problem: CompiledProblem, spend: np.ndarray, what: str, cells: np.ndarray | None = None) -> np.ndarray:
    """``E``, ``E'`` (right) or ``E'`` (left) at a (cells x points) grid of total spend.

    ``what`` is ``value`` (expected successes ``pool * p``), ``slope`` or ``slope_left``
    (derivatives of ``E`` with respect to spend, i.e. ``p'(spend / pool)``).
    ``cells`` restricts the rows to those cells (``spend`` then has one row per listed cell).
    """
    spend = np.asarray(spend, float)
    rows = np.arange(problem.n) if cells is None else np.asarray(cells)
    out = np.empty_like(spend)
    width = spend.shape[1]
    where = -np.ones(problem.n, dtype=int)
    where[rows] = np.arange(len(rows))
    for b in problem.blocks:
        take = where[b.index] >= 0
        if not take.any():
            continue
        idx = b.index[take]
        r = where[idx]
        P = {k: np.repeat(v[take], width, axis=0) for k, v in b.params.items()}
        x = (spend[r] / problem.pool[idx, None]).ravel()
        if what == "value":
            vals = b.family.response(x, P) * np.repeat(problem.pool[idx], width)
        elif what == "slope":
            vals = b.family.slope(x, P)
        else:
            vals = b.family.slope_left(x, P)
        out[r] = np.asarray(vals, float).reshape(len(idx), width)
    return out


def has_kinks(family: CurveFamily) -> bool:
    """Families whose left and right slopes differ somewhere (they override ``slope_left``)."""
    return type(family).slope_left is not CurveFamily.slope_left


def table_kinks(problem: CompiledProblem) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(cells, spend points)`` of tabulated curves: the kinks where their chords are exact.

    The piecewise family keeps its table in parameters ``x`` (spend per member) and ``p``;
    any family with that layout is treated the same way.
    """
    out = []
    for b in problem.blocks:
        if has_kinks(b.family) and "x" in b.params and np.ndim(b.params["x"]) == 2:
            X = b.params["x"] * problem.pool[b.index, None]
            out.append((b.index, np.where(np.isfinite(X), X, np.nan)))
    return out


# ---------------------------------------------------------------- the certified excess bound

def excess_bound(R: np.ndarray, F: np.ndarray, Dr: np.ndarray, Dl: np.ndarray, line0: np.ndarray,
                 line_slope: np.ndarray, certain_slopes: np.ndarray) -> np.ndarray:
    """Upper bound on ``max F(s) - line(s)`` over every sub-interval ``[R[.., j], R[.., j+1]]``.

    Parameters
    ----------
    R : ndarray (..., G)
        Sample points, non-decreasing along the last axis.
    F : ndarray (..., G)
        A monotone function at ``R``.
    Dr, Dl : ndarray (..., G)
        Its right and left derivatives at ``R``.
    line0, line_slope : ndarray (..., 1) or (..., G-1)
        The line ``line0 + line_slope * s``.
    certain_slopes : ndarray of bool (..., G-1)
        Sub-intervals on which ``F'`` is known to be monotone (the tight bound applies);
        elsewhere only monotonicity of ``F`` is used.

    Returns
    -------
    ndarray (..., G-1)
    """
    r0, r1 = R[..., :-1], R[..., 1:]
    h = r1 - r0
    c0 = line0 + line_slope * r0
    c1 = line0 + line_slope * r1
    g0 = F[..., :-1] - c0
    g1 = F[..., 1:] - c1
    # monotone F: F(s) <= max(F(r), F(r')), line(s) >= min(line(r), line(r'))
    loose = np.maximum(F[..., :-1], F[..., 1:]) - np.minimum(c0, c1)
    d0, d1 = Dr[..., :-1], Dl[..., 1:]
    hi = np.maximum(d0, d1)
    lo = np.minimum(d0, d1)
    alpha = hi - line_slope          # g' <= alpha
    beta = line_slope - lo           # -g' <= beta
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ab = alpha + beta
        t = np.where(ab > 0, (g1 - g0 + beta * h) / np.where(ab > 0, ab, 1.0), 0.0)
        t = np.clip(t, 0.0, h)
        at_t = np.minimum(g0 + alpha * t, g1 + beta * (h - t))
        at_0 = np.minimum(g0, g1 + beta * h)
        at_1 = np.minimum(g0 + alpha * h, g1)
        tight = np.maximum(np.maximum(at_t, at_0), at_1)
    ok = certain_slopes & np.isfinite(tight) & np.isfinite(alpha) & np.isfinite(beta)
    out = np.where(ok, np.minimum(tight, loose), loose)
    return np.maximum(out, np.maximum(g0, g1))  # never below what the samples show


def monotone_slope_mask(D: np.ndarray, concave: np.ndarray, rel: float = 1e-12) -> np.ndarray:
    """Sub-intervals of a (cells x G) sample row on which the slope is taken as monotone.

    A sub-interval is uncertain when the sampled slopes turn next to it (a slope
    extremum may hide inside) or when it is the first or last of a non-concave
    cell's row (nothing is known beyond the samples). Concave cells are certain
    everywhere: their slope never rises.
    """
    n, G = D.shape
    scale = np.nanmax(np.abs(np.where(np.isfinite(D), D, 0.0)), axis=1, keepdims=True) + 1e-300
    dd = np.diff(D, axis=1)
    sgn = np.where(dd > rel * scale, 1, np.where(dd < -rel * scale, -1, 0))
    sgn = np.where(np.isfinite(dd), sgn, 2)  # an infinite slope: uncertain
    pos = np.zeros((n, G + 1), dtype=bool)
    neg = np.zeros((n, G + 1), dtype=bool)
    bad = np.zeros((n, G + 1), dtype=bool)
    pos[:, 1:G] = sgn == 1
    neg[:, 1:G] = sgn == -1
    bad[:, 1:G] = sgn == 2
    # sub-interval j (between samples j, j+1) looks at sign changes j-1, j, j+1
    # (pos/neg are padded by one on each side, so window [j, j+3) covers them)
    def window(a: np.ndarray) -> np.ndarray:
        return a[:, 0:G - 1] | a[:, 1:G] | a[:, 2:G + 1]
    turn = (window(pos) & window(neg)) | window(bad)
    certain = ~turn
    edge = ~concave
    certain[edge, 0] = False
    certain[edge, -1] = False
    return certain | (concave[:, None] & np.isfinite(dd))


# ---------------------------------------------------------------- breakpoints

def compact_rows(T: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sort each row, clip to ``[lo, hi]``, drop near-duplicates and pad with ``hi``; rows start at ``lo``."""
    T = np.concatenate([lo[:, None], T, hi[:, None]], axis=1)
    T = np.where(np.isfinite(T), T, np.nan)
    T = np.clip(T, lo[:, None], hi[:, None])
    T = np.sort(T, axis=1)  # nan last
    scale = np.maximum(np.abs(hi), 1.0)[:, None]
    dup = np.zeros_like(T, dtype=bool)
    # points closer than 1e-8 of the range are one point: thinner segments only breed round-off
    dup[:, 1:] = ~(np.diff(T, axis=1) > 1e-8 * scale)
    dup |= np.isnan(T)
    T = np.where(dup, np.inf, T)
    T = np.sort(T, axis=1)
    count = np.isfinite(T).sum(axis=1)
    width = max(int(count.max()), 2)   # at least one (possibly empty) segment per row
    T = T[:, :width]
    T = np.where(np.isfinite(T), T, hi[:, None])
    # the top point must be hi itself (a near-duplicate of hi may have been kept instead)
    T[np.arange(len(T)), count - 1] = hi
    return T


def initial_breakpoints(problem: CompiledProblem, a: np.ndarray, b: np.ndarray, k: int,
                        weight: np.ndarray, price: float | None) -> np.ndarray:
    """Breakpoints on ``[a, b]`` per cell: equal steps of response and of marginal return.

    Half of the ``k`` points split the rise of ``E`` into equal steps (dense where an
    S-curve climbs); the other half sit where the slope has fallen to geometric
    fractions of its peak, and where ``weight * E'`` equals a few multiples of
    ``price`` (where optima of net-value problems lie). Refinement adds the rest.
    """
    n = problem.n
    phi = np.concatenate([[0.0], np.geomspace(1e-7, 1.0, GRID_POINTS)])
    grid = a[:, None] + (b - a)[:, None] * phi[None, :]
    E = evaluate(problem, grid, "value")
    D = evaluate(problem, grid, "slope")
    D = np.where(np.isfinite(D), D, np.nan)
    rows = np.arange(n)[:, None]
    picks = []
    half = max(k // 2, 2)
    # equal response steps
    levels = E[:, :1] + (E[:, -1:] - E[:, :1]) * (np.arange(1, half) / half)[None, :]
    idx = _rowwise_searchsorted(E, levels)
    picks.append(grid[rows, idx])
    # slope at geometric fractions of its peak, on the falling side
    peak = np.max(np.where(np.isnan(D), -np.inf, D), axis=1, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, np.nan)   # no finite slope at all (an empty range)
    fracs = np.geomspace(0.5, 1e-3, half)
    picks.append(_last_crossing(grid, D, peak * fracs[None, :]))
    if price is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            mult = np.array([0.8, 1.0, 1.25, 1.6, 2.0, 3.0, 5.0])
            lv = np.where(weight[:, None] > 0, price * mult[None, :] / weight[:, None], np.nan)
        picks.append(_last_crossing(grid, D, lv))
    for cells, X in table_kinks(problem):
        extra = np.full((n, X.shape[1]), np.nan)
        extra[cells] = X
        picks.append(extra)
    return compact_rows(np.concatenate(picks, axis=1), a, b)


def _rowwise_searchsorted(E: np.ndarray, levels: np.ndarray) -> np.ndarray:
    # E rows are non-decreasing: count entries below each level
    return np.clip((E[:, None, :] < levels[:, :, None]).sum(axis=2), 0, E.shape[1] - 1)


def _last_crossing(grid: np.ndarray, D: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Per cell and level, the last grid point where the slope is still >= the level (nan if none)."""
    out = np.full(levels.shape, np.nan)
    Dn = np.where(np.isnan(D), -np.inf, D)
    G = D.shape[1]
    for j in range(levels.shape[1]):
        lv = levels[:, j:j + 1]
        mask = Dn >= lv
        anyhit = mask.any(axis=1) & np.isfinite(lv[:, 0])
        last = G - 1 - np.argmax(mask[:, ::-1], axis=1)
        out[:, j] = np.where(anyhit, grid[np.arange(len(grid)), last], np.nan)
    return out


# ---------------------------------------------------------------- spend caps

def marginal_caps(problem: CompiledProblem, start: np.ndarray, frac: float = 1e-4) -> np.ndarray:
    """Spend past which a cell's slope stays below ``frac`` of its peak (an artificial cap).

    Found by doubling from ``max(start, pool)`` until the slope is below ``frac`` of
    the largest slope seen and falling. Beyond it a currency unit buys less than
    ``frac`` of the best unit of that curve; the solver checks its plan never sits at
    such a cap (and doubles it if it does).
    """
    cap = np.maximum(start, problem.pool * 1e-3)
    peak = np.maximum(_slope(problem, cap), 0.0)
    for _ in range(MAX_CAP_DOUBLINGS):
        d = _slope(problem, cap)
        d2 = _slope(problem, 2.0 * cap)
        peak = np.maximum(peak, np.maximum(d, d2))
        grow = (d2 > frac * peak) | (d2 > d)
        if not grow.any():
            break
        cap = np.where(grow, cap * 2.0, cap)
    cap = 2.0 * cap
    for cells, X in table_kinks(problem):
        cap[cells] = np.maximum(cap[cells], np.nanmax(X, axis=1))
    return cap


def concave_from(problem: CompiledProblem) -> np.ndarray:
    """Per cell, a spend past which ``E`` is certainly concave (``inf`` when none is known).

    The tail beyond an artificial cap ``b >= concave_from`` then rises by at most
    ``E'(b)`` per currency unit, which is what makes the cap safe to use in a bound
    (:func:`tail_bounds`). From the families' closed forms: concave curves from 0;
    Hill from its inflection; a table from its last point (flat beyond); a logistic
    quadratic with ``b2 <= 0`` from where ``q = b0 + b1 x + b2 x^2`` turns positive
    (``p >= 1/2``, so ``p'' = p(1-p)[(1-2p) q'^2 + 2 b2] <= 0`` up to the peak). Anything
    else is ``inf``.
    """
    out = np.full(problem.n, np.inf)
    for b in problem.blocks:
        P, pool, name = b.params, problem.pool[b.index], b.family.name
        x = np.full(len(b.index), np.inf)
        if name == "hill":
            x = np.asarray(b.family.inflection(P), float)
        elif name == "piecewise":
            X = np.where(np.isfinite(P["x"]), P["x"], -np.inf)
            x = X.max(axis=1)
        elif name == "logistic_quadratic":
            b0, b1, b2 = (np.asarray(P[k], float) for k in ("b0", "b1", "b2"))
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                disc = b1 * b1 - 4.0 * b2 * b0
                # b2 < 0: the smaller root of q, on its rising side; b2 = 0: -b0 / b1
                quad = (b1 - np.sqrt(np.maximum(disc, 0.0))) / (2.0 * np.abs(np.where(b2 < 0, b2, -1.0)))
                quad = np.where(disc >= 0, quad, np.inf)
                lin = np.where(b1 > 0, -b0 / np.where(b1 > 0, b1, 1.0), np.inf)
                root = np.where(b2 < 0, quad, np.where(b2 == 0, lin, np.inf))
            x = np.where(b0 >= 0, np.where(b2 <= 0, 0.0, np.inf), np.maximum(root, 0.0))
            x = np.where(np.isnan(x), np.inf, x)
        x = np.where(problem.concave[b.index], 0.0, x)
        out[b.index] = pool * x
    return out


def response_sup(problem: CompiledProblem) -> np.ndarray:
    """Per cell, an upper bound on ``E`` over all spend: ``pool`` times the response's supremum.

    ``ceiling`` for exponential and Hill curves, the largest table value for tables, and
    1 (a response is a probability) otherwise.
    """
    out = problem.pool.astype(float).copy()
    for b in problem.blocks:
        P, pool, name = b.params, problem.pool[b.index], b.family.name
        if name in ("exponential", "hill"):
            sup = np.maximum(P["ceiling"], P.get("floor", 0.0))
        elif name == "piecewise":
            sup = np.where(np.isfinite(P["x"]), P["p"], -np.inf).max(axis=1)
        else:
            sup = np.ones(len(b.index))
        out[b.index] = pool * np.minimum(sup, 1.0)
    return out


def tail_bounds(problem: CompiledProblem, b: np.ndarray, tail: np.ndarray,
                concave_start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For cells ``tail`` (ranges cut at an artificial cap ``b``): bounds on the rise past ``b``.

    ``E(b + t) - E(b) <= min(sigma t, delta)`` for every ``t >= 0``: ``sigma`` the larger
    one-sided slope at ``b``, valid where the curve is concave from ``b`` on
    (``b >= concave_start``, see :func:`concave_from`; elsewhere ``sigma`` is ``inf``), and
    ``delta`` the distance to the curve's supremum. Both carry a hair of slack against
    round-off. Cells outside ``tail`` get zeros.
    """
    n = problem.n
    sigma = np.zeros(n)
    delta = np.zeros(n)
    idx = np.flatnonzero(tail)
    if len(idx) == 0:
        return sigma, delta
    bb = b[idx, None]
    d = np.maximum(evaluate(problem, bb, "slope", idx)[:, 0], evaluate(problem, bb, "slope_left", idx)[:, 0])
    Eb = evaluate(problem, bb, "value", idx)[:, 0]
    sup = response_sup(problem)[idx]
    ok = np.isfinite(d) & (b[idx] >= concave_start[idx])
    sigma[idx] = np.where(ok, np.maximum(np.where(ok, d, 0.0), 0.0) * (1 + 1e-9), np.inf)
    delta[idx] = np.maximum(sup - Eb, 0.0) + 1e-12 * np.abs(sup)
    return sigma, delta


def _slope(problem: CompiledProblem, spend: np.ndarray) -> np.ndarray:
    d = evaluate(problem, spend[:, None], "slope")[:, 0]
    return np.where(np.isfinite(d), d, 0.0)


# ---------------------------------------------------------------- per-segment lifts and sags

def segment_bounds(problem: CompiledProblem, T: np.ndarray, samples: int,
                   cells: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Values at breakpoints and certified per-segment lifts and sags.

    Parameters
    ----------
    T : ndarray (cells x K)
        Breakpoints per cell (rows may repeat their last point).
    samples : int
        Sub-intervals per segment.

    Returns
    -------
    dict with ``E`` (cells x K), ``lift`` and ``sag`` (cells x K-1): bounds on
    ``max(E - chord)`` and ``max(chord - E)`` over each segment.
    """
    rows = np.arange(problem.n) if cells is None else cells
    nc, K = T.shape
    m = samples
    frac = np.arange(m + 1) / m
    W = np.diff(T, axis=1)
    R = (T[:, :-1, None] + W[:, :, None] * frac[None, None, :])  # (nc, K-1, m+1)
    R[:, :, -1] = T[:, 1:]
    flat = np.concatenate([R[:, :, :-1].reshape(nc, -1), T[:, -1:]], axis=1)  # (nc, (K-1) m + 1)
    F = evaluate(problem, flat, "value", rows)
    Dr = evaluate(problem, flat, "slope", rows)
    kinky = np.zeros(problem.n, dtype=bool)
    for bl in problem.blocks:
        if has_kinks(bl.family):
            kinky[bl.index] = True
    Dl = Dr.copy()
    if kinky[rows].any():
        sub = np.flatnonzero(kinky[rows])
        Dl[sub] = evaluate(problem, flat[sub], "slope_left", rows[sub])
    concave = problem.concave[rows]
    certain = monotone_slope_mask(Dr, concave)
    Evals = np.concatenate([F[:, :-1].reshape(nc, K - 1, m)[:, :, 0], F[:, -1:]], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma = np.where(W > 0, np.diff(Evals, axis=1) / np.where(W > 0, W, 1.0), 0.0)
    line0 = (Evals[:, :-1] - sigma * T[:, :-1])
    # broadcast each segment's chord over its m sub-intervals
    l0 = np.repeat(line0, m, axis=1)
    ls = np.repeat(sigma, m, axis=1)
    up = excess_bound(flat, F, Dr, Dl, l0, ls, certain)
    down = excess_bound(flat, -F, -Dr, -Dl, -l0, -ls, certain)
    up = np.maximum(up, 0.0).reshape(nc, K - 1, m).max(axis=2)
    down = np.maximum(down, 0.0).reshape(nc, K - 1, m).max(axis=2)
    up = np.where(W > 0, up, 0.0)
    down = np.where(W > 0, down, 0.0)
    return {"E": Evals, "lift": up, "sag": down, "grid": flat, "F": F, "Dr": Dr, "Dl": Dl, "certain": certain}


def shifted_values(E: np.ndarray, excess: np.ndarray, sign: float) -> np.ndarray:
    """Breakpoint values moved by the larger excess of their two segments (``sign`` +1 lifts, -1 sags).

    A chord between two points each moved by at least a segment's excess
    dominates (or is dominated by) the curve on that segment.
    """
    shift = np.zeros_like(E)
    shift[:, :-1] = excess
    shift[:, 1:] = np.maximum(shift[:, 1:], excess)
    return E + sign * shift


def tangent_overestimate(problem: CompiledProblem, T: np.ndarray, E: np.ndarray,
                         concave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For concave cells, the outer approximation ``min_k E(t_k) + E'(t_k)(s - t_k)`` as a piecewise curve.

    Tangents of a concave curve lie above it, so this over-estimate needs no sampling and
    is exact at every breakpoint ``t_k``; its slopes fall, so an LP fills its segments in
    order without binaries. Returns breakpoints and values (cells x K+1); rows of other
    cells are returned unchanged (padded with their last point).
    """
    K = T.shape[1]
    D = evaluate(problem, T, "slope")
    D[:, -1] = evaluate(problem, T[:, -1:], "slope_left")[:, 0]
    Tt, Et = T.copy(), E.copy()
    # a tangent with an infinite slope (hill with shape < 1 at 0) is dropped: the next one stands in
    bad = ~np.isfinite(D)
    for k in range(K - 2, -1, -1):
        fix = bad[:, k]
        if fix.any():
            Tt[fix, k], Et[fix, k], D[fix, k] = Tt[fix, k + 1], Et[fix, k + 1], D[fix, k + 1]
            bad[fix, k] = bad[fix, k + 1]
    D = np.where(np.isfinite(D), D, 0.0)
    d0, d1 = D[:, :-1], D[:, 1:]
    t0, t1 = Tt[:, :-1], Tt[:, 1:]
    e0, e1 = Et[:, :-1], Et[:, 1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.where(d0 - d1 > 1e-15 * np.maximum(np.abs(d0), 1e-300),
                     (e1 - e0 + d0 * t0 - d1 * t1) / np.where(d0 != d1, d0 - d1, 1.0), t0)
    u = np.clip(np.where(np.isfinite(u), u, t0), t0, t1)
    a = T[:, :1]
    b = T[:, -1:]
    Tn = np.concatenate([a, u, b], axis=1)
    Tn = np.maximum.accumulate(Tn, axis=1)
    Vn = np.concatenate([Et[:, :1] + D[:, :1] * (a - Tt[:, :1]), e0 + d0 * (u - t0),
                         Et[:, -1:] + D[:, -1:] * (b - Tt[:, -1:])], axis=1)
    # other cells: unchanged, padded with their last point
    Tp = np.concatenate([T, T[:, -1:]], axis=1)
    Vp = np.concatenate([E, E[:, -1:]], axis=1)
    c = concave[:, None]
    return np.where(c, Tn, Tp), np.where(c, Vn, Vp)
