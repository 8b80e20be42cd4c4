"""Global solver: a piecewise-linear MILP in HiGHS (highspy arrays), refined until certified.

Each cell's expected successes ``E(s)`` is replaced on its spend range by a
piecewise-linear function whose breakpoint values are *lifted* by certified
bounds on the curve's rise above each chord (:mod:`.envelope`). That function
lies above ``E`` everywhere, so the MILP over it is a relaxation of the true
problem: HiGHS's proven dual bound is a valid upper bound ``UB`` on the true
optimum, while the MILP's plan is feasible (all constraints are linear in
spend) and its true objective is a lower bound ``LB``. Breakpoints are then
added where the plan sits, halfway to its neighbours, and where each cell's
marginal return equals its price from the LP duals, and the MILP is solved
again, until ``(UB - LB) / |LB| <= tolerance`` (1e-4 by default) and the interior
cells' marginal returns agree with their prices.

Two formulations, chosen by name (``solver.formulation``):

``incremental`` (default; Markowitz and Manne 1957, the "delta" method)
    one bounded column per segment, ``s = a + sum(delta_k)``; ordering binaries
    ``z_k`` (``delta_k >= w_k z_k``, ``delta_{k+1} <= w_{k+1} z_k``) only where the
    lifted slopes rise again (S-curves), so concave cells need none: an LP.
``sos2`` (the convex-combination or "lambda" method, Dantzig 1960)
    one weight per breakpoint, ``sum(lambda) = 1``, ``s = sum(t_k lambda_k)``, with
    one segment binary per segment of non-concave cells (HiGHS has no native SOS2).

Integer features: ``budget.unit`` makes ``s = unit * q`` with ``q`` integer;
minimum-if-active and activation costs add one binary ``y`` per cell
(``s - b y <= 0``, the curve starting at ``min_active_spend``).

Objectives: ``net_value`` and ``hurdle`` maximize ``sum(value * E) - rate * spend -
activation``. ``target`` minimizes spend plus activation subject to
``sum(weight * E) >= target``: then two MILPs are solved per round, one with the
lifted curves in the target row (a relaxation: its dual bound is a lower bound on
the least spend) and one with curves *sagged* below the true ones (a restriction:
its plan truly reaches the target).

Cells whose range has no finite cap get an artificial cap where the slope has
fallen below 1e-4 of its peak; a plan sitting at such a cap has it doubled and
is solved again.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..errors import InfeasibleError, NumericalError, SolverUnavailableError
from ..problem import CompiledProblem
from . import envelope as env
from .base import SolveResult, Solver

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 1e-4
KKT_TOL = 1e-4
MAX_ROUNDS = 40
SAMPLES = 8


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


def _highs():
    try:
        import highspy
    except ImportError as exc:  # pragma: no cover - a dependency
        raise SolverUnavailableError(f"the global solver needs highspy: {exc}") from None
    return highspy


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
                rows_active: list | None = None, objective: bool = True):
    """The MILP over breakpoints ``T`` with breakpoint values ``V`` (both cells x K).

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
    s_hi = np.where(cells.off, 0.0, np.where(pl, cells.b, cells.hard))
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
    # activation: s <= b y (and s >= a y for cells without a curve in the model)
    if len(act_idx):
        r = B.rows(-np.inf, 0.0, len(act_idx))
        B.entries(r, s[act_idx], 1.0)
        B.entries(r, y[act_idx], -np.where(np.isfinite(s_hi[act_idx]), s_hi[act_idx], 1e12))
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
        r = B.rows(c.lower, c.upper)
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
                       "unit_cols": unit_cols, "delta": delta_map, "z": z_map, "T": T,
                       "size": {"columns": B.ncol, "rows": B.nrow, "integer_columns": int(integ.sum()),
                                "ordering_binaries": int(order_bins)}}


def start_point(maps, problem: CompiledProblem, cells: Cells, spend: np.ndarray, ncol: int) -> np.ndarray | None:
    """Column values of the incremental model for a known plan (a MIP start), or ``None``."""
    if maps.get("delta") is None:
        return None
    T = maps["T"]
    x = np.zeros(ncol)
    x[maps["s"]] = spend
    y = maps["y"]
    on = spend > 0
    x[y[y >= 0]] = on[y >= 0].astype(float)
    ci, ki, d = maps["delta"]
    W = np.diff(T, axis=1)
    x[d] = np.clip(spend[ci] - T[ci, ki], 0.0, W[ci, ki])
    if maps["z"] is not None:
        zi, zk, z = maps["z"]
        full = np.zeros(T.shape[0] * max(W.shape[1], 1), dtype=bool).reshape(T.shape[0], -1)
        full[ci, ki] = x[d] >= W[ci, ki] * (1 - 1e-12)
        x[z] = full[zi, zk].astype(float)
    if problem.unit is not None and len(maps["unit_cols"]):
        x[maps["unit_cols"]] = np.round(spend / problem.unit)
    return x


def run_model(lp, integ, maps, problem: CompiledProblem, cells: Cells, tol: float, time_limit: float | None,
              want_duals: bool = True, start: np.ndarray | None = None) -> ModelSolution:
    """Solve with HiGHS; read spend, objective, bound and (with integers fixed) row duals."""
    hs = _highs()
    h = hs.Highs()
    h.setOptionValue("output_flag", False)
    # the MILP's own gap is a part of the certified gap: a quarter of the tolerance
    h.setOptionValue("mip_rel_gap", max(tol * 0.25, 1e-9))
    h.setOptionValue("mip_abs_gap", 0.0)
    # HiGHS's default feasibility tolerances: tighter ones made large piecewise MILPs fail
    # ("Solve error"); the plan is polished and evaluated exactly afterwards anyway
    # measured: on these piecewise models HiGHS's presolve costs more than it saves
    # (10,000 concave cells: LP 0.48 s without, 0.84 s with; 4 S-cells: 0.05 s against 0.21 s)
    h.setOptionValue("presolve", "off")
    # the plan is polished afterwards and the bound comes from the root: sub-MIP heuristics
    # (RINS, RENS, root reduced-cost fixing) spent ~2/3 of the time for the same answer
    # (300 S-curves: 3.05 s -> 1.14 s)
    for heuristic in ("mip_heuristic_run_rins", "mip_heuristic_run_rens", "mip_heuristic_run_root_reduced_cost"):
        h.setOptionValue(heuristic, False)
    if time_limit is not None:
        h.setOptionValue("time_limit", float(time_limit))
    t0 = time.perf_counter()
    h.passModel(lp)
    if start is not None and integ.any():
        x0 = start_point(maps, problem, cells, start, lp.num_col_)
        if x0 is not None:
            h.setSolution(lp.num_col_, np.arange(lp.num_col_, dtype=np.int32), x0)
    h.run()
    status = h.getModelStatus()
    name = h.modelStatusToString(status)
    info = h.getInfo()
    if status == hs.HighsModelStatus.kInfeasible:
        return ModelSolution("infeasible", np.zeros(problem.n), seconds=time.perf_counter() - t0, size=maps["size"])
    if status == hs.HighsModelStatus.kUnbounded or status == hs.HighsModelStatus.kUnboundedOrInfeasible:
        return ModelSolution("unbounded_or_infeasible", np.zeros(problem.n), size=maps["size"])
    sol = h.getSolution()
    if not sol.value_valid:
        raise NumericalError(f"HiGHS stopped with '{name}' and no plan (time limit too short?)")
    x = np.asarray(sol.col_value)
    obj = float(info.objective_function_value)
    mip = bool(integ.any())
    bound = float(info.mip_dual_bound) if mip else obj
    if status != hs.HighsModelStatus.kOptimal:
        logger.warning("HiGHS stopped with '%s'; the reported gap uses its proven bound", name)
    spend = _read_spend(x, maps, problem, cells)
    out = ModelSolution("optimal" if status == hs.HighsModelStatus.kOptimal else name, spend, obj, bound,
                        seconds=0.0, size=maps["size"])
    if want_duals:
        if mip:
            # duals of the LP with the binary decisions fixed (spend units relaxed): the prices of
            # the chosen configuration
            ids = np.flatnonzero(integ)
            h.changeColsIntegrality(len(ids), ids, np.array([hs.HighsVarType.kContinuous] * len(ids)))
            fix = np.setdiff1d(ids, maps["unit_cols"])
            vals = np.round(x[fix])
            if len(fix):
                h.changeColsBounds(len(fix), fix, vals, vals)
            h.run()
            if h.getModelStatus() != hs.HighsModelStatus.kOptimal:
                h = None
        if h is not None:
            rd = np.asarray(h.getSolution().row_dual)
            out.row_duals = {k: float(rd[r]) for k, r in maps["rows"].items()}
            if maps["target_row"] >= 0:
                out.target_dual = float(rd[maps["target_row"]])
    out.seconds = time.perf_counter() - t0
    return out


def _read_spend(x: np.ndarray, maps, problem: CompiledProblem, cells: Cells) -> np.ndarray:
    s = x[maps["s"]].copy()
    y = maps["y"]
    on = y >= 0
    if on.any():
        s[on] = np.where(x[y[on]] > 0.5, s[on], 0.0)
    if problem.unit is not None:
        s = problem.unit * np.round(s / problem.unit)
    s = np.where(cells.off, 0.0, s)
    active = s > 0
    lo = np.where(cells.act & ~active, 0.0, problem.lower)
    return np.clip(s, lo, problem.upper)


# ---------------------------------------------------------------- the solver

class GlobalSolver(Solver):
    name = "global"
    handles_nonconcave = True
    handles_constraints = True
    handles_integer = True
    objectives = ("net_value", "hurdle", "target")
    description = ("piecewise-linear MILP in HiGHS with certified breakpoint refinement; any monotone curves, "
                   "constraints, integer features, target and hurdle objectives")

    def solve(self, problem: CompiledProblem, tolerance: float | None = None) -> SolveResult:
        return _Run(problem, tolerance).solve()


class _Run:
    def __init__(self, problem: CompiledProblem, tolerance: float | None):
        self.p = problem
        opts = dict(getattr(problem, "options", None) or {})
        self.tol = DEFAULT_TOLERANCE if tolerance is None else float(tolerance)
        self.formulation = opts.get("formulation", "incremental")
        if self.formulation not in ("incremental", "sos2"):
            raise SolverUnavailableError(f"unknown formulation '{self.formulation}'; use incremental or sos2")
        self.k0 = int(opts.get("breakpoints", 16))
        self.time_limit = opts.get("time_limit")
        self.t_start = time.perf_counter()
        self.last_plan: np.ndarray | None = None
        self.cells = self._cells()

    # ---- per-cell setup
    def _cells(self) -> Cells:
        p = self.p
        n = p.n
        kind = p.objective.kind
        w_obj = p.value.copy() if kind != "target" else np.zeros(n)
        w_row = p.objective.weight if kind == "target" else None
        pl = (w_obj > 0) | (w_row > 0 if w_row is not None else False)
        # caps implied by rows with positive coefficients (a budget caps each of its cells); the
        # curve's range goes a little past them so that the row, not the column bound, carries
        # the shadow price when it binds
        row_cap = np.full(n, np.inf)
        for c in p.rows():
            if np.isfinite(c.upper) and np.all(c.coef > 0):
                row_cap[c.index] = np.minimum(row_cap[c.index], c.upper / c.coef)
        hard = np.maximum(np.minimum(p.upper, 1.25 * row_cap + 1.0), p.lower)
        ma = p.min_active if p.min_active is not None else np.zeros(n)
        cost = p.activation_cost if p.activation_cost is not None else np.zeros(n)
        act = ((ma > 0) | (cost > 0)) & (p.lower <= 0) & (hard > 0)
        a = np.where(p.lower > 0, np.maximum(p.lower, ma), np.where(act, ma, p.lower))
        off = act & (ma > hard * (1 + 1e-12))
        forced = (p.lower > 0) & (ma > hard * (1 + 1e-12))
        if forced.any():
            i = int(np.flatnonzero(forced)[0])
            raise InfeasibleError(f"infeasible: cell {p.label(i)} must spend but cannot reach its min_active_spend",
                                  conflict=[f"min_spend of cell {p.label(i)} = {p.lower[i]:,.6g}",
                                            f"min_active_spend of cell {p.label(i)} = {ma[i]:,.6g}",
                                            f"max spend of cell {p.label(i)} = {hard[i]:,.6g}"])
        cap = env.marginal_caps(p, np.maximum(a, 0.0))
        b = np.where(pl, np.minimum(hard, np.maximum(cap, a)), hard)
        artificial = pl & (b < hard)
        b = np.maximum(b, a)
        E0 = env.evaluate(p, np.zeros((n, 1)), "value")[:, 0]
        return Cells(a=a, b=b, hard=hard, artificial=artificial, act=act, off=off, pl=pl, w_obj=w_obj,
                     w_row=w_row, cost=cost, E0=E0)

    def _weight(self) -> np.ndarray:
        c = self.cells
        return c.w_obj if c.w_row is None else c.w_row

    # ---- main loop
    def solve(self) -> SolveResult:
        p, c = self.p, self.cells
        price = p.objective.rate if p.objective.kind != "target" else None
        T = env.initial_breakpoints(p, c.a, c.curve_end, self.k0, self._weight(), price)
        history = []
        kkts: list[float] = []
        best = None
        rounds = 0
        for rounds in range(1, MAX_ROUNDS + 1):
            bnd = env.segment_bounds(p, T, SAMPLES)
            state = self._round(T, bnd)
            history.append({k: state[k] for k in ("lower", "upper", "gap", "kkt", "seconds")} |
                           {"breakpoints": int(T.shape[1])})
            logger.info("global round %d: gap %.3g, kkt %.3g, %d breakpoints, %.2fs", rounds, state["gap"],
                        state["kkt"], T.shape[1], state["seconds"])
            if state.get("widen") is not None:
                if not self.cells.artificial.any():
                    raise NumericalError("the global model is infeasible but the constraints are not: "
                                         "numerical trouble in HiGHS")
                T = self._widen(T, state["widen"])
                best = None
                continue
            if best is None or state["gap"] <= best["gap"]:
                best = state
            done = state["gap"] <= self.tol and (state["kkt"] <= KKT_TOL or p.unit is not None)
            kkts.append(state["kkt"])
            stalled = (not done and state["gap"] <= self.tol and len(kkts) > 3
                       and min(kkts[-3:]) >= min(kkts[:-3]) * 0.9)
            if stalled:
                logger.warning("global solver: marginal returns stay %.3g off their prices; stopping at the "
                               "certified gap %.3g", state["kkt"], state["gap"])
            if done or stalled or self._out_of_time():
                break
            T = self._refine(T, bnd, state)
        else:
            logger.warning("global solver stopped after %d rounds at gap %.3g (target %.3g)", rounds,
                           best["gap"], self.tol)
        if best is None:
            best = state
        if best["gap"] > self.tol:
            logger.warning("global solver: certified gap %.3g is above the tolerance %.3g", best["gap"], self.tol)
        return self._result(best, rounds, history)

    def _out_of_time(self) -> bool:
        return self.time_limit is not None and time.perf_counter() - self.t_start > self.time_limit

    def _remaining(self) -> float | None:
        if self.time_limit is None:
            return None
        return max(self.time_limit - (time.perf_counter() - self.t_start), 1.0)

    def _values(self, T: np.ndarray, bnd: dict, sign: float) -> tuple[np.ndarray, np.ndarray]:
        """Breakpoints and values of the curves over (``sign`` +1) or under (-1) the true ones.

        Concave cells: tangents over, chords under, both exact by concavity. Others: chords
        lifted or sagged by the certified per-segment bounds.
        """
        return piecewise_values(self.p, T, bnd, sign)

    def _solve_model(self, TV, objective=True, start: np.ndarray | None = None) -> ModelSolution:
        T, V = TV
        lp, integ, maps = build_model(self.p, self.cells, T, V, self.formulation, objective=objective)
        sol = run_model(lp, integ, maps, self.p, self.cells, self.tol, self._remaining(), start=start)
        if sol.status in ("infeasible", "unbounded_or_infeasible"):
            self._diagnose()
        return sol

    def _diagnose(self) -> None:
        from ..infeasibility import find_conflict

        conflict = find_conflict(self.p)
        if conflict is None:
            # feasible with the hard caps: an artificial cap was too tight; caller widens
            raise _Widen()
        raise InfeasibleError(f"infeasible: these {len(conflict)} rules cannot hold together (dropping any one "
                              f"of them makes the rest feasible)", conflict=conflict)

    def _round(self, T: np.ndarray, bnd: dict) -> dict:
        p, c = self.p, self.cells
        t0 = time.perf_counter()
        try:
            if p.objective.kind == "target":
                relax = self._solve_model(self._values(T, bnd, +1.0), objective=True)
                restr = self._solve_model(self._values(T, bnd, -1.0), objective=True)
                spend = restr.spend
                reached = float((c.w_row * env.evaluate(p, spend[:, None], "value")[:, 0]).sum())
                upper = float(spend.sum()) + p.activation_paid(spend)   # a feasible plan's cost
                lower = max(relax.dual_bound, 0.0)                       # proven least cost of a relaxation
                if reached < p.objective.target * (1 - 1e-9):
                    logger.warning("restricted plan reaches %.10g < target %.10g", reached, p.objective.target)
                gap = (upper - lower) / max(abs(upper), 1.0)
                sol = restr
                milp_spend = relax.spend
                slack_cells = self._slack(T, bnd, relax.spend, +1.0) + self._slack(T, bnd, spend, -1.0)
            else:
                sol = self._solve_model(self._values(T, bnd, +1.0), start=self.last_plan)
                spend = sol.spend
                upper = -sol.dual_bound
                lower = self._objective(spend)
                slack_cells = self._slack(T, bnd, spend, +1.0)
                milp_spend = spend
                spend, lower, upper, method = self._tighten(spend, lower, upper, sol, bnd)
                gap = (upper - lower) / max(abs(lower), 1.0)
        except _Widen:
            return {"widen": self.cells.artificial.copy(), "gap": math.inf, "kkt": math.inf, "lower": math.nan,
                    "upper": math.nan, "seconds": time.perf_counter() - t0}
        self.last_plan = spend
        at_cap = c.artificial & (spend >= c.b * (1 - 1e-9)) & (c.b > 0)
        prices, kkt, off_cells = self._kkt(spend, sol)
        state = {"spend": spend, "sol": sol, "lower": lower, "upper": upper, "gap": max(gap, 0.0),
                 "method": method if p.objective.kind != "target" else "milp", "milp_spend": milp_spend,
                 "duals": getattr(self, "polished_duals", None),
                 "slack": slack_cells, "prices": prices, "kkt": kkt, "off": off_cells,
                 "seconds": time.perf_counter() - t0, "widen": at_cap if at_cap.any() else None}
        return state

    def _tighten(self, spend, lower, upper, sol: ModelSolution, bnd: dict):
        """Polish the plan to exact stationarity; bound with the Lagrangian at its multipliers."""
        from .polish import lagrangian_bound, polish

        p, c = self.p, self.cells
        rate = p.objective.rate
        y = {k: -v for k, v in sol.row_duals.items()}
        self.polished_duals = None
        if p.unit is None:
            free, lo, hi = self._free_cells(spend, bnd)
            try:
                res = polish(p, spend, free, lo, hi, c.w_obj, rate, y0=y)
            except (FloatingPointError, ValueError, np.linalg.LinAlgError):  # pragma: no cover - defensive
                res = None
            if res is not None:
                s2, y2 = res
                s2 = np.clip(s2, p.lower, p.upper)
                val = self._objective(s2)
                if val >= lower - 1e-12 * max(abs(lower), 1.0):
                    spend, lower, y = s2, val, y2
                    self.polished_duals = y2
        method = "milp"
        try:
            lag = lagrangian_bound(p, y, c.w_obj, rate, c.a, c.b, c.hard, c.act, c.off, c.cost, c.E0, bnd)
        except (FloatingPointError, ValueError):  # pragma: no cover - defensive
            lag = np.inf
        if lag < upper:
            upper = lag
            method = "lagrangian_polished" if self.polished_duals is not None else "lagrangian_lp"
        return spend, lower, upper, method

    def _free_cells(self, spend: np.ndarray, bnd: dict):
        """Cells the polish may move, and their ranges (where their slopes fall)."""
        p, c = self.p, self.cells
        on = ~c.act | (spend > 0)
        free = c.pl & ~c.off & on & (c.w_obj > 0) & (c.b > c.a)
        lo, hi = c.a.copy(), c.b.copy()
        nc = ~p.concave
        if nc.any():
            grid, D = bnd["grid"], np.where(np.isfinite(bnd["Dr"]), bnd["Dr"], -np.inf)
            # an S-curve cell is free only on its concave side, past the slope's peak (a sample
            # past it, so the bracket holds falling slopes only)
            j = np.minimum(np.argmax(D, axis=1) + 1, grid.shape[1] - 1)
            past = grid[np.arange(p.n), j]
            lo = np.where(nc, np.maximum(lo, past), lo)
            free &= ~nc | (spend >= past)
        return free, lo, hi

    def _objective(self, spend: np.ndarray) -> float:
        """True objective in maximization form: value - rate * spend - activation."""
        p = self.p
        return float(p.expected_value(spend).sum() - p.objective.rate * spend.sum()) - p.activation_paid(spend)

    def _slack(self, T, bnd, spend, sign) -> np.ndarray:
        """Per cell, how far the shifted piecewise curve is from the true one at ``spend`` (weighted)."""
        T, V = self._values(T, bnd, sign)
        c = self.cells
        pl = c.pl & ~c.off & (~c.act | (spend > 0))
        approx = _interp_rows(T, V, spend)
        true = env.evaluate(self.p, spend[:, None], "value")[:, 0]
        return np.where(pl, np.abs(approx - true) * self._weight(), 0.0)

    def _kkt(self, spend: np.ndarray, sol: ModelSolution):
        """Per-cell prices, the largest relative deviation of interior cells from theirs, and the cells off.

        The prices come from the shared check (:mod:`allocator.kkt`), which fits multipliers
        to the plan's true marginal returns; with spend units (no stationarity) from the duals.
        """
        from ..kkt import check_general

        p = self.p
        g = check_general(p, spend, KKT_TOL)
        if g.applicable:
            return g.price, g.kkt_max_deviation, (g.deviation > 0.5 * KKT_TOL) & (g.bound == "none")
        kind = p.objective.kind
        base = np.full(p.n, p.objective.rate if kind != "target" else 1.0)
        for row in p.rows():
            d = sol.row_duals.get(row.name, 0.0)
            if d:
                base[row.index] += -d * row.coef
        if kind == "target":
            base = base / sol.target_dual if sol.target_dual > 0 else np.full(p.n, np.nan)
        return base, 0.0, np.zeros(p.n, dtype=bool)

    # ---- refinement
    def _refine(self, T: np.ndarray, bnd: dict, state: dict) -> np.ndarray:
        p, c = self.p, self.cells
        spend = state["spend"]
        slack = state["slack"]
        total = max(abs(state["lower"]), abs(state["upper"]), 1e-12)
        order = np.argsort(-slack)
        cum = np.cumsum(slack[order])
        # refine the cells carrying the slack until what is left is well below the tolerance
        keep_n = int(np.searchsorted(cum, cum[-1] - 0.2 * self.tol * total) + 1) if cum[-1] > 0 else 0
        pick = np.zeros(p.n, dtype=bool)
        pick[order[:keep_n]] = True
        pick &= slack > 0
        pick |= state["off"]
        pick &= c.pl
        # the plans (the MILP's, where the bound's slack sits, and the polished one) and the
        # midpoints to their neighbours, and where the marginal return meets the price
        parts = [self._around(T, state["milp_spend"]), self._around(T, spend),
                 self._price_points(bnd, state["prices"])[:, None]]
        new = np.concatenate(parts, axis=1)
        new[~pick] = np.nan
        return env.compact_rows(np.concatenate([T, new], axis=1), c.a, c.curve_end)

    @staticmethod
    def _around(T: np.ndarray, spend: np.ndarray) -> np.ndarray:
        """``spend`` and the midpoints between it and its neighbouring breakpoints."""
        eps = 1e-8 * np.maximum(T[:, -1], 1.0)
        below = np.where(T < (spend - eps)[:, None], T, -np.inf).max(axis=1)
        above = np.where(T > (spend + eps)[:, None], T, np.inf).min(axis=1)
        left = np.where(np.isfinite(below), 0.5 * (below + spend), np.nan)
        right = np.where(np.isfinite(above), 0.5 * (spend + above), np.nan)
        return np.stack([spend, left, right], axis=1)

    def _price_points(self, bnd: dict, prices: np.ndarray) -> np.ndarray:
        """Where each cell's marginal return ``weight * E'`` falls to its price (on the falling side)."""
        p = self.p
        w = self._weight()
        grid, D = bnd["grid"], bnd["Dr"]
        with np.errstate(divide="ignore", invalid="ignore"):
            level = np.where(w > 0, prices / w, np.nan)
        Dn = np.where(np.isfinite(D), D, -np.inf)
        mask = Dn >= level[:, None]
        G = D.shape[1]
        hit = mask.any(axis=1) & ~mask[:, -1] & np.isfinite(level)
        j = np.clip(G - 1 - np.argmax(mask[:, ::-1], axis=1), 0, G - 2)
        rows = np.arange(p.n)
        lo = grid[rows, j].copy()
        hi = grid[rows, j + 1].copy()
        cells = np.flatnonzero(hit)
        if len(cells) == 0:
            return np.full(p.n, np.nan)
        lo_c, hi_c, lv = lo[cells], hi[cells], level[cells]
        for _ in range(40):
            mid = 0.5 * (lo_c + hi_c)
            d = env.evaluate(p, mid[:, None], "slope", cells)[:, 0]
            above = d >= lv
            lo_c = np.where(above, mid, lo_c)
            hi_c = np.where(above, hi_c, mid)
        out = np.full(p.n, np.nan)
        out[cells] = 0.5 * (lo_c + hi_c)
        return out

    def _widen(self, T: np.ndarray, cells_mask: np.ndarray) -> np.ndarray:
        c = self.cells
        newb = np.where(cells_mask, np.minimum(c.b * 4.0, c.hard), c.b)
        c.artificial = c.artificial & (newb < c.hard)
        grow = newb > c.b
        c.b = newb
        extra = np.full((self.p.n, 3), np.nan)
        extra[grow, 0] = newb[grow]
        extra[grow, 1] = 0.5 * newb[grow]
        extra[grow, 2] = 0.75 * newb[grow]
        return env.compact_rows(np.concatenate([T, extra], axis=1), c.a, c.curve_end)

    # ---- result
    def _result(self, state: dict, rounds: int, history: list) -> SolveResult:
        p = self.p
        sol: ModelSolution = state["sol"]
        spend = state["spend"]
        kind = p.objective.kind
        duals = {}
        for row in p.rows():
            d = sol.row_duals.get(row.name)
            if d is not None:
                duals[row.name] = -d if kind != "target" else d
        if state.get("duals"):
            duals = dict(state["duals"])  # exact multipliers of the polished plan
        if kind == "target":
            method = ("MILP relaxation with curves lifted above the true ones (proven HiGHS bound on the least "
                      "spend); plan from the MILP with curves sagged below them")
        elif state.get("method", "").startswith("lagrangian"):
            where = ("the polished plan's shadow prices" if state["method"] == "lagrangian_polished"
                     else "the LP duals with the integer decisions fixed (spend units relaxed)")
            method = (f"Lagrangian dual at {where}; each cell's inner maximum exact for concave curves, "
                      f"bounded from sampled slopes otherwise")
        else:
            method = ("MILP over piecewise-linear curves lifted above the true ones by certified bounds "
                      "(proven HiGHS dual bound), refined at the plan")
        info = {"bound_method": method, "formulation": self.formulation, "rounds": rounds,
                "kkt_tolerance": KKT_TOL if p.unit is None else 0.0, "kkt_deviation": state["kkt"],
                "lower_bound": state["lower"], "model_size": sol.size,
                "seconds": time.perf_counter() - self.t_start, "history": history,
                "prices": None}
        if kind == "target":
            info["target_shadow_price"] = sol.target_dual
        budget_dual = duals.get("budget.total")
        return SolveResult(
            spend=spend, solver="global", termination="optimal" if state["gap"] <= self.tol else "gap_limit",
            marginal_return=(p.objective.rate + budget_dual) if (budget_dual is not None and kind != "target")
            else None,
            optimality_gap=state["gap"], upper_bound=state["upper"] if kind != "target" else state["lower"],
            iterations=rounds, info=info, constraint_duals=duals)


def piecewise_values(problem: CompiledProblem, T: np.ndarray, bnd: dict, sign: float):
    """See :meth:`_Run._values`."""
    concave = problem.concave
    if sign > 0:
        V = env.shifted_values(bnd["E"], bnd["lift"], +1.0)
        Tt, Vt = env.tangent_overestimate(problem, T, bnd["E"], concave)
        Tp = np.concatenate([T, T[:, -1:]], axis=1)
        Vp = np.concatenate([V, V[:, -1:]], axis=1)
        c = concave[:, None]
        return np.where(c, Tt, Tp), np.where(c, Vt, Vp)
    V = np.where(concave[:, None], bnd["E"], env.shifted_values(bnd["E"], bnd["sag"], -1.0))
    return T, V


class _Widen(Exception):
    """An artificial cap made the model infeasible; widen and try again."""


def _interp_rows(T: np.ndarray, V: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Row-wise linear interpolation of (T, V) at x (T rows non-decreasing, may repeat)."""
    n, K = T.shape
    k = np.clip((T <= x[:, None]).sum(axis=1) - 1, 0, K - 2) if K > 1 else np.zeros(n, dtype=int)
    rows = np.arange(n)
    if K == 1:
        return V[:, 0]
    t0, t1 = T[rows, k], T[rows, k + 1]
    v0, v1 = V[rows, k], V[rows, k + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(t1 > t0, (x - t0) / np.where(t1 > t0, t1 - t0, 1.0), 0.0)
    return v0 + np.clip(f, 0.0, 1.0) * (v1 - v0)


def feasibility_status(problem: CompiledProblem) -> bool:
    """Whether the rules of ``problem`` can hold together (used by the infeasibility diagnosis).

    Cells take their hard caps; a target row uses curves lifted above the true ones
    over a wide range, so a ``False`` is a proof of infeasibility.
    """
    run = _Run.__new__(_Run)
    run.p = problem
    run.tol = DEFAULT_TOLERANCE
    run.formulation = "incremental"
    run.k0 = 8
    run.time_limit = None
    run.t_start = time.perf_counter()
    try:
        cells = run._cells()
    except InfeasibleError:
        return False
    target = problem.objective.kind == "target"
    cells.pl = (cells.w_row > 0) if target else np.zeros(problem.n, dtype=bool)
    if target:
        cap = env.marginal_caps(problem, np.maximum(cells.a, 0.0), frac=1e-9)
        cells.b = np.where(np.isfinite(cells.hard), cells.hard, np.maximum(cap * 8.0, cells.a))
    else:
        cells.b = cells.hard.copy()
    cells.b = np.maximum(cells.b, cells.a)
    run.cells = cells
    T = env.initial_breakpoints(problem, cells.a, cells.curve_end, 8, cells.w_row if target else np.zeros(problem.n), None)
    bnd = env.segment_bounds(problem, T, SAMPLES)
    T, V = piecewise_values(problem, T, bnd, +1.0)
    lp, integ, maps = build_model(problem, cells, T, V, "incremental", objective=False)
    sol = run_model(lp, integ, maps, problem, cells, DEFAULT_TOLERANCE, None, want_duals=False)
    return sol.status not in ("infeasible", "unbounded_or_infeasible")
