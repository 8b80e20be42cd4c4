"""The piecewise-linear MILP of the global solver, built as arrays and solved by HiGHS.

Two formulations, chosen by name (``solver.formulation``):

``incremental`` (default; Markowitz and Manne 1957, the "delta" method)
    one bounded column per segment, ``s = a + sum(delta_k)``; ordering binaries
    ``z_k`` (``delta_k >= w_k z_k``, ``delta_{k+1} <= w_{k+1} z_k``) only where the
    lifted slopes rise again (S-curves), so concave cells need none: an LP.
``sos2`` (the convex-combination or "lambda" method, Dantzig 1960)
    one weight per breakpoint, ``sum(lambda) = 1``, ``s = sum(t_k lambda_k)``, with
    one segment binary per segment of non-concave cells (HiGHS has no native SOS2).

Tails: a cell whose breakpoints stop at an artificial cap ``b`` (no finite cap of its
own) keeps its true spend range; spend past ``b`` goes into a tail column valued at most
``E'(b)`` per unit and at most the curve's remaining rise (see :func:`build_model`), so
the model is a relaxation of the true problem however narrow the breakpoints' range.

Integer features: ``budget.unit`` makes ``s = unit * q`` with ``q`` integer;
minimum-if-active and activation costs add one binary ``y`` per cell
(``s - b y <= 0``, the curve starting at ``min_active_spend``).

The model is passed to HiGHS once as a column-wise sparse matrix (highspy), and
the answer read back as arrays (:mod:`.milp_run`); :mod:`.global_milp` drives the refinement.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..problem import CompiledProblem
from .highs_quiet import highspy as _highs

logger = logging.getLogger(__name__)
# the big-M of an activation row on a cell without any finite cap (spend above it is not modelled)
BIG_M = 1e12

@dataclass
class Cells:
    """Per-cell data of one run: ranges, weights and activation structure."""

    a: np.ndarray          # start of the curve's range (>= min_active for activation cells)
    b: np.ndarray          # end of the range (cap, possibly artificial)
    hard: np.ndarray       # hard cap (inf when none)
    artificial: np.ndarray  # b is an artificial cap
    act: np.ndarray        # cell may be off (binary y)
    off: np.ndarray        # cell forced off (min_active above its cap)
    pl: np.ndarray         # cell has a curve in the model
    w_obj: np.ndarray      # weight of E in the objective
    w_row: np.ndarray | None  # weight of E in the target row
    cost: np.ndarray       # activation cost
    E0: np.ndarray         # E(0)

    @property
    def curve_end(self) -> np.ndarray:
        """End of the range the breakpoints cover: ``b`` for cells with a curve in the model, else ``a``."""
        return np.where(self.pl & ~self.off, self.b, self.a)


@dataclass
class ModelSolution:
    status: str
    spend: np.ndarray
    objective: float = math.nan      # HiGHS objective (minimization form, with offset)
    dual_bound: float = math.nan     # proven bound (minimization form)
    row_duals: dict[str, float] = field(default_factory=dict)
    target_dual: float = 0.0
    seconds: float = 0.0
    size: dict = field(default_factory=dict)
    milp_spend: np.ndarray | None = None   # HiGHS's own incumbent, when ``spend`` is a better one on the true curves


# ---------------------------------------------------------------- model building

class _Builder:
    """Collects columns and rows as arrays; produces a HighsLp."""

    def __init__(self) -> None:
        self.cost: list[np.ndarray] = []
        self.clo: list[np.ndarray] = []
        self.chi: list[np.ndarray] = []
        self.cint: list[np.ndarray] = []
        self.ncol = 0
        self.rlo: list[np.ndarray] = []
        self.rhi: list[np.ndarray] = []
        self.nrow = 0
        self.ri: list[np.ndarray] = []
        self.ci: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.offset = 0.0

    def cols(self, cost, lo, hi, integer=False) -> np.ndarray:
        cost = np.asarray(cost, float)
        k = len(cost)
        self.cost.append(cost)
        self.clo.append(np.broadcast_to(np.asarray(lo, float), (k,)).copy())
        self.chi.append(np.broadcast_to(np.asarray(hi, float), (k,)).copy())
        self.cint.append(np.full(k, bool(integer)))
        ids = np.arange(self.ncol, self.ncol + k)
        self.ncol += k
        return ids

    def rows(self, lo, hi, count: int | None = None) -> np.ndarray:
        lo = np.atleast_1d(np.asarray(lo, float))
        hi = np.atleast_1d(np.asarray(hi, float))
        k = max(len(lo), len(hi)) if count is None else count
        self.rlo.append(np.broadcast_to(lo, (k,)).copy())
        self.rhi.append(np.broadcast_to(hi, (k,)).copy())
        ids = np.arange(self.nrow, self.nrow + k)
        self.nrow += k
        return ids

    def entries(self, r, c, v) -> None:
        r, c, v = np.broadcast_arrays(np.asarray(r), np.asarray(c), np.asarray(v, float))
        keep = v != 0
        self.ri.append(r[keep].ravel())
        self.ci.append(c[keep].ravel())
        self.v.append(v[keep].ravel())

    def lp(self):
        hs = _highs()
        lp = hs.HighsLp()
        lp.num_col_ = self.ncol
        lp.num_row_ = self.nrow
        lp.col_cost_ = np.concatenate(self.cost) if self.cost else np.zeros(0)
        lp.col_lower_ = np.concatenate(self.clo)
        lp.col_upper_ = np.concatenate(self.chi)
        lp.row_lower_ = np.concatenate(self.rlo) if self.rlo else np.zeros(0)
        lp.row_upper_ = np.concatenate(self.rhi) if self.rhi else np.zeros(0)
        if self.ri:
            A = sp.csc_matrix((np.concatenate(self.v), (np.concatenate(self.ri), np.concatenate(self.ci))),
                              shape=(self.nrow, self.ncol))
        else:
            A = sp.csc_matrix((self.nrow, self.ncol))
        A.sum_duplicates()
        lp.a_matrix_.format_ = hs.MatrixFormat.kColwise
        lp.a_matrix_.start_ = A.indptr
        lp.a_matrix_.index_ = A.indices
        lp.a_matrix_.value_ = A.data
        lp.offset_ = float(self.offset)
        integ = np.concatenate(self.cint)
        if integ.any():
            lp.integrality_ = [hs.HighsVarType.kInteger if i else hs.HighsVarType.kContinuous for i in integ]
        return lp, integ


def _needs_order(S: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Links (k, k+1) between segments that need an ordering binary.

    The LP fills a later segment before an earlier one only if some later slope beats
    some earlier one; where no later slope exceeds the smallest slope so far, order
    comes for free.
    """
    n, K1 = S.shape
    if K1 < 2:
        return np.zeros((n, 0), dtype=bool)
    Sv = np.where(valid, S, np.nan)
    pre_min = np.fmin.accumulate(np.where(valid, S, np.inf), axis=1)
    suf_max = np.fmax.accumulate(np.where(valid, S, -np.inf)[:, ::-1], axis=1)[:, ::-1]
    scale = np.nanmax(np.abs(np.where(np.isfinite(Sv), Sv, 0.0)), axis=1, keepdims=True) + 1e-300
    need = suf_max[:, 1:] > pre_min[:, :-1] + 1e-9 * scale
    need &= valid[:, :-1] & valid[:, 1:]
    # once one link is ordered, every link up to the last needed one must be: a closed
    # segment would otherwise let the LP skip to a later one (segments after the last
    # needed link are gated separately by its binary)
    first = np.argmax(need, axis=1)
    last = need.shape[1] - 1 - np.argmax(need[:, ::-1], axis=1)
    k = np.arange(need.shape[1])[None, :]
    has = need.any(axis=1)[:, None]
    return has & (k >= first[:, None]) & (k <= last[:, None]) & valid[:, :-1] & valid[:, 1:]


def build_model(problem: CompiledProblem, cells: Cells, T: np.ndarray, V: np.ndarray, formulation: str,
                rows_active: list | None = None, objective: bool = True,
                tail: tuple[np.ndarray, np.ndarray] | None = None):
    """The MILP over breakpoints ``T`` with breakpoint values ``V`` (both cells x K).

    ``tail`` is ``(sigma, delta)`` per cell (:func:`.envelope.tail_bounds`): a cell whose
    range stops at an artificial cap ``b < hard`` may spend past it, up to its hard cap,
    through a tail column ``t`` (``s = a + sum(delta_k) + t``) whose value ``v`` obeys
    ``v <= sigma t`` and ``v <= delta``. With ``tail`` the spend columns keep their true
    ranges, so the MILP is a relaxation of the true problem (its bound is a bound) whatever
    the cap; without it (the restricted model of a target) a tail adds no value, which
    keeps that model a restriction.

    Returns the HighsLp, the integrality mask, and index maps needed to read the answer.
    """
    n = problem.n
    kind = problem.objective.kind
    rate = problem.objective.rate if kind != "target" else 1.0
    B = _Builder()
    pl = cells.pl & ~cells.off
    act = cells.act & ~cells.off
    # spend columns
    s_lo = np.where(act | cells.off, 0.0, np.where(pl, cells.a, problem.lower))
    tails = pl & cells.artificial & (cells.b < cells.hard)
    s_hi = np.where(cells.off, 0.0, np.where(pl & ~tails, cells.b, cells.hard))
    s = B.cols(np.full(n, rate) if objective else np.zeros(n), s_lo, s_hi)
    W = np.diff(T, axis=1)
    valid = (W > 0) & pl[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        S = np.where(valid, np.diff(V, axis=1) / np.where(W > 0, W, 1.0), 0.0)
    V0 = V[:, 0]
    w_obj = cells.w_obj if objective else np.zeros(n)
    # activation binaries
    y = -np.ones(n, dtype=int)
    act_idx = np.flatnonzero(act)
    # value an active cell adds over being off, on top of its segment/lambda columns: incremental
    # columns start at V0 (the range start); sos2 lambdas carry the whole value
    inc = formulation == "incremental"
    delta_map = z_map = None
    if len(act_idx):
        base = np.where(pl[act_idx], V0[act_idx] if inc else 0.0, cells.E0[act_idx])
        ycost = (cells.cost[act_idx] if objective else 0.0) - w_obj[act_idx] * (base - cells.E0[act_idx])
        y[act_idx] = B.cols(ycost, 0.0, 1.0, integer=True)
    # constant part of the objective: value at the range start (or at 0 for cells that may be off)
    start_val = np.where(act, cells.E0, np.where(pl & inc, V0, 0.0))
    forced_on_cost = np.where(~act & ~cells.off & (cells.cost > 0), cells.cost, 0.0)
    B.offset = float(-(w_obj * start_val).sum() + (forced_on_cost.sum() if objective else 0.0))
    target_terms = []  # (col ids, coefs) of the target row
    const_target = 0.0
    if cells.w_row is not None:
        const_target = float((cells.w_row * np.where(act, cells.E0, np.where(pl, V0, 0.0))).sum())
    if formulation == "incremental":
        ci, ki = np.nonzero(valid)
        d = B.cols(-w_obj[ci] * S[ci, ki], 0.0, W[ci, ki])
        curve_cols = (ci, d)
        delta_map = (ci, ki, d)
        dmap = -np.ones(valid.shape, dtype=int)
        dmap[ci, ki] = d
        # link: s - sum(delta) - a*y = a (no activation) or 0
        pcells = np.flatnonzero(pl)
        link = B.rows(np.where(act[pcells], 0.0, cells.a[pcells]), np.where(act[pcells], 0.0, cells.a[pcells]))
        lrow = -np.ones(n, dtype=int)
        lrow[pcells] = link
        B.entries(link, s[pcells], 1.0)
        B.entries(lrow[ci], d, -1.0)
        pa = pcells[act[pcells]]
        if len(pa):
            B.entries(lrow[pa], y[pa], -cells.a[pa])
        span = np.zeros(n)
        np.add.at(span, ci, W[ci, ki])
        tail_map = _tail(B, problem, cells, tails, lrow, w_obj, tail, target_terms, (ci, d, span))
        # ordering: only non-concave curves need it. For a concave curve the LP may take the
        # concave envelope of the lifted points, which still lies above the curve (the bound
        # stays valid) and the plan is evaluated on the true curve anyway
        need = _needs_order(S, valid) & ~problem.concave[:, None]
        zi, zk = np.nonzero(need)
        if len(zi):
            z = B.cols(np.zeros(len(zi)), 0.0, 1.0, integer=True)
            z_map = (zi, zk, z)
            r1 = B.rows(0.0, np.inf, len(zi))     # delta_k - w_k z >= 0
            B.entries(r1, dmap[zi, zk], 1.0)
            B.entries(r1, z, -W[zi, zk])
            r2 = B.rows(-np.inf, 0.0, len(zi))    # delta_{k+1} - w_{k+1} z <= 0
            B.entries(r2, dmap[zi, zk + 1], 1.0)
            B.entries(r2, z, -W[zi, zk + 1])
            # segments after the last ordered link open only with its binary
            zmap = -np.ones(need.shape, dtype=int)
            zmap[zi, zk] = z
            last = need.shape[1] - 1 - np.argmax(need[:, ::-1], axis=1)
            gated = need.any(axis=1)
            after = valid & (np.arange(valid.shape[1])[None, :] >= (last + 2)[:, None]) & gated[:, None]
            gi, gk = np.nonzero(after)
            if len(gi):
                gcells = np.unique(gi)
                gr = -np.ones(n, dtype=int)
                gr[gcells] = B.rows(np.full(len(gcells), -np.inf), np.zeros(len(gcells)))
                B.entries(gr[gi], dmap[gi, gk], 1.0)
                tot = np.zeros(n)
                np.add.at(tot, gi, W[gi, gk])
                B.entries(gr[gcells], zmap[gcells, last[gcells]], -tot[gcells])
        if cells.w_row is not None:
            target_terms.append((d, cells.w_row[ci] * S[ci, ki]))
        order_bins = len(zi)
    else:  # sos2 / lambda
        K = T.shape[1]
        pvalid = np.zeros(T.shape, dtype=bool)
        pvalid[:, 0] = pl
        pvalid[:, 1:] = valid
        ci, ki = np.nonzero(pvalid)
        lam = B.cols(-w_obj[ci] * V[ci, ki], 0.0, 1.0)
        curve_cols = (ci, lam)
        lmap = -np.ones(T.shape, dtype=int)
        lmap[ci, ki] = lam
        pcells = np.flatnonzero(pl)
        conv = B.rows(np.where(act[pcells], 0.0, 1.0), np.where(act[pcells], 0.0, 1.0))
        crow = -np.ones(n, dtype=int)
        crow[pcells] = conv
        B.entries(crow[ci], lam, 1.0)
        pa = pcells[act[pcells]]
        if len(pa):
            B.entries(crow[pa], y[pa], -1.0)
        link = B.rows(np.zeros(len(pcells)), np.zeros(len(pcells)))
        lrow = -np.ones(n, dtype=int)
        lrow[pcells] = link
        B.entries(link, s[pcells], 1.0)
        B.entries(lrow[ci], lam, -T[ci, ki])
        # the tail opens only from the last breakpoint (its lambda at 1)
        K_last = T.shape[1] - 1 - np.argmax(pvalid[:, ::-1], axis=1)
        at_last = ki == K_last[ci]
        tail_map = _tail(B, problem, cells, tails, lrow, w_obj, tail, target_terms,
                         (ci[at_last], lam[at_last], np.ones(n)))
        nonconc = pl & ~problem.concave & _needs_order(S, valid).any(axis=1)
        si, sk = np.nonzero(valid & nonconc[:, None])
        order_bins = len(si)
        if len(si):
            z = B.cols(np.zeros(len(si)), 0.0, 1.0, integer=True)
            zmap = -np.ones(valid.shape, dtype=int)
            zmap[si, sk] = z
            ncells = np.flatnonzero(nonconc)
            one = B.rows(np.where(act[ncells], 0.0, 1.0), np.where(act[ncells], 0.0, 1.0))
            orow = -np.ones(n, dtype=int)
            orow[ncells] = one
            B.entries(orow[si], z, 1.0)
            na = ncells[act[ncells]]
            if len(na):
                B.entries(orow[na], y[na], -1.0)
            # lambda_k <= z_{k-1} + z_k
            li, lk = np.nonzero(pvalid & nonconc[:, None])
            adj = B.rows(np.full(len(li), -np.inf), np.zeros(len(li)))
            B.entries(adj, lmap[li, lk], 1.0)
            left = lk - 1
            okl = left >= 0
            B.entries(adj[okl], zmap[li[okl], left[okl]], -1.0)
            okr = lk < K - 1
            zr = np.where(okr, zmap[li, np.minimum(lk, K - 2)], -1)
            okr &= zr >= 0
            B.entries(adj[okr], zr[okr], -1.0)
        if cells.w_row is not None:
            target_terms.append((lam, cells.w_row[ci] * V[ci, ki]))
            const_target = float((cells.w_row * np.where(act, cells.E0, 0.0)).sum())
    if cells.w_row is not None and len(act_idx):
        base = np.where(pl[act_idx], V0[act_idx] if inc else 0.0, cells.E0[act_idx])
        # incremental: an active cell adds V0 - E0; sos2: an active cell loses E0 (the lambdas carry V)
        coef = cells.w_row[act_idx] * (base - cells.E0[act_idx])
        target_terms.append((y[act_idx], coef))
    # activation: s <= b y (and s >= a y for cells without a curve in the model); a cell with a
    # tail: s - t <= b y and t <= (hard - b) y, which keeps the first row as tight as without
    if len(act_idx):
        r = B.rows(-np.inf, 0.0, len(act_idx))
        B.entries(r, s[act_idx], 1.0)
        big = np.where(tails[act_idx], cells.b[act_idx], s_hi[act_idx])
        B.entries(r, y[act_idx], -np.where(np.isfinite(big), big, BIG_M))
        if tail_map is not None:
            tidx, tcols = tail_map[0], tail_map[1]
            on = act[tidx]
            if on.any():
                rt = B.rows(np.full(int(on.sum()), -np.inf), np.zeros(int(on.sum())))
                B.entries(r[np.searchsorted(act_idx, tidx[on])], tcols[on], -1.0)
                B.entries(rt, tcols[on], 1.0)
                width = cells.hard[tidx[on]] - cells.b[tidx[on]]
                B.entries(rt, y[tidx[on]], -np.where(np.isfinite(width), width, BIG_M))
        nopl = act_idx[~pl[act_idx]]
        if len(nopl):
            r = B.rows(0.0, np.inf, len(nopl))
            B.entries(r, s[nopl], 1.0)
            B.entries(r, y[nopl], -cells.a[nopl])
    # spend units
    unit_cols = np.zeros(0, dtype=int)
    if problem.unit is not None:
        u = problem.unit
        qlo = np.ceil(s_lo / u - 1e-9)
        qhi = np.floor(np.where(np.isfinite(s_hi), s_hi, 1e15) / u + 1e-9)
        q = B.cols(np.zeros(n), qlo, qhi, integer=True)
        unit_cols = q
        r = B.rows(np.zeros(n), np.zeros(n))
        B.entries(r, s, 1.0)
        B.entries(r, q, -u)
    # linear rows
    row_ids: dict[str, int] = {}
    for c in (problem.rows() if rows_active is None else rows_active):
        r = B.rows(*unit_row_bounds(c, problem.unit))
        B.entries(np.full(len(c.index), r[0]), s[c.index], c.coef)
        row_ids[c.name] = int(r[0])
    target_row = -1
    if cells.w_row is not None:
        r = B.rows(problem.objective.target - const_target, np.inf)
        for ids, coef in target_terms:
            B.entries(np.full(len(ids), r[0]), ids, coef)
        target_row = int(r[0])
    lp, integ = B.lp()
    return lp, integ, {"s": s, "y": y, "rows": row_ids, "target_row": target_row, "curve_cols": curve_cols,
                       "unit_cols": unit_cols, "delta": delta_map, "z": z_map, "T": T, "tail": tail_map,
                       "size": {"columns": B.ncol, "rows": B.nrow, "integer_columns": int(integ.sum()),
                                "ordering_binaries": int(order_bins)}}


def _tail(B: _Builder, problem: CompiledProblem, cells: Cells, tails: np.ndarray, lrow: np.ndarray,
          w_obj: np.ndarray, tail: tuple[np.ndarray, np.ndarray] | None, target_terms: list, fill):
    """Tail columns ``t`` (spend past the artificial cap) and ``v`` (their value) of the cells ``tails``.

    ``fill`` is ``(cell, column, full)``: the curve columns of each cell, whose sum reaches
    ``full[cell]`` when the range is used up to its cap. Where the tail's slope bound may
    exceed the curve's (non-concave cells, or no slope bound), a binary ``z`` opens the tail
    only with the range full (``t <= width z``, ``sum >= full z``); without it the model
    would still be a relaxation, but could value a spend ``s`` at the lifted curve's best
    point below ``s``, a looser bound that refinement never closes.
    """
    idx = np.flatnonzero(tails)
    if len(idx) == 0:
        return None
    width = cells.hard[idx] - cells.b[idx]
    t = B.cols(np.zeros(len(idx)), 0.0, width)
    B.entries(lrow[idx], t, -1.0)
    if tail is None:
        return (idx, t, None, None, None, None)
    sigma, delta = tail[0][idx], tail[1][idx]
    v = B.cols(-w_obj[idx], 0.0, delta)
    if cells.w_row is not None:
        target_terms.append((v, cells.w_row[idx]))
    lim = np.isfinite(sigma)
    if lim.any():
        r = B.rows(-np.inf, 0.0, int(lim.sum()))      # v - sigma t <= 0
        B.entries(r, v[lim], 1.0)
        B.entries(r, t[lim], -sigma[lim])
    gate = ~problem.concave[idx] | ~lim
    zc = -np.ones(problem.n, dtype=int)
    if gate.any():
        g = idx[gate]
        z = B.cols(np.zeros(len(g)), 0.0, 1.0, integer=True)
        zc[g] = z
        r1 = B.rows(np.full(len(g), -np.inf), np.zeros(len(g)))     # t - width z <= 0
        B.entries(r1, t[gate], 1.0)
        B.entries(r1, z, -np.where(np.isfinite(width[gate]), width[gate], BIG_M))
        r2 = B.rows(np.zeros(len(g)), np.full(len(g), np.inf))      # sum(curve cols) - full z >= 0
        rr = -np.ones(problem.n, dtype=int)
        rr[g] = r2
        cell, col, full = fill
        on = zc[cell] >= 0
        B.entries(rr[cell[on]], col[on], 1.0)
        B.entries(r2, z, -full[g])
        if not lim.all():
            r3 = B.rows(np.full(int((~lim).sum()), -np.inf), np.zeros(int((~lim).sum())))  # v - delta z <= 0
            B.entries(r3, v[~lim], 1.0)
            B.entries(r3, zc[idx[~lim]], -delta[~lim])
    return (idx, t, v, sigma, delta, zc[idx])


def unit_row_bounds(row, unit: float | None) -> tuple[float, float]:
    """A row's bounds, rounded inwards to what whole spend units can reach.

    With ``s = unit * q`` (``q`` integer) a row whose coefficients are all integer
    multiples of one ``g`` (budgets, pots and spend bands: all 1) moves in steps of
    ``g * unit``, so ``sum(coef * s) <= U`` holds exactly when it holds for
    ``floor(U / (g unit)) g unit``. The integer plans are the same; the LP relaxation is
    not: with an unaligned budget (1,139,394 in units of 1,000) it could spend the last
    394 that no integer plan can, and HiGHS branched for ~25 s (against 0.2 s aligned) to
    close that sliver of bound.
    """
    lower, upper = float(row.lower), float(row.upper)
    if unit is None or len(row.coef) == 0:
        return lower, upper
    g = float(np.min(np.abs(row.coef)))
    if g <= 0 or not np.allclose(row.coef / g, np.round(row.coef / g), rtol=0.0, atol=1e-12):
        return lower, upper
    step = g * float(unit)
    # a hair of slack keeps bounds that are already multiples (in floating point) where they are
    if np.isfinite(upper):
        upper = math.floor(upper / step + 1e-9) * step
    if np.isfinite(lower):
        lower = math.ceil(lower / step - 1e-9) * step
    return lower, upper
