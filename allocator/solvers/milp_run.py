"""Solving the global solver's MILP with HiGHS, and reading the answer back as arrays.

:func:`run_model` passes a model built by :mod:`.milp_model` to a silent HiGHS
instance (:mod:`.highs_quiet`), optionally with a MIP start and a :class:`MipWatch`
that stops the branch-and-bound as soon as the certificate needs nothing more from
it, and returns a :class:`.milp_model.ModelSolution` (plan, objective, proven bound,
row duals of the chosen configuration).
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from ..errors import NumericalError
from ..problem import CompiledProblem
from .highs_quiet import highspy as _highs
from .highs_quiet import new_highs
from .milp_model import Cells, ModelSolution

logger = logging.getLogger(__name__)


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
    if maps.get("tail") is not None:
        idx, t, v, sigma, delta, z = maps["tail"]
        past = np.maximum(spend[idx] - T[idx, -1], 0.0)
        x[t] = past
        if z is not None:
            x[z[z >= 0]] = (past[z >= 0] > 0).astype(float)
        if v is not None:
            with np.errstate(invalid="ignore"):
                x[v] = np.minimum(np.where(past > 0, sigma * past, 0.0), delta)
    if problem.unit is not None and len(maps["unit_cols"]):
        x[maps["unit_cols"]] = np.round(spend / problem.unit)
    return x


class MipWatch:
    """Watches a MILP run through HiGHS's callbacks: stops it once it can prove no more that is needed.

    Each improving incumbent is evaluated on the *true* curves (``true_objective``,
    maximization form), so at any moment the certified gap of the best incumbent
    against HiGHS's proven bound is known. The run is interrupted when

    * that gap is within ``0.9 * tol`` (``reason = "certified"``): proving the MILP's own
      gap down to ``tol / 4`` would buy nothing the certificate needs; or
    * the MILP's own gap is within ``tol`` but the incumbent's distance between its
      lifted and true objective (the piecewise slack) is larger (``"refine"``): only more
      breakpoints can close the rest, and branching on would prove a bound the next
      round's model replaces anyway. Measured on ``scenarios/constrained.yaml``: with
      budget 1,139,000 one MILP spent 28 s proving its last 2e-5 while the slack was 7e-5;
      with 909,091, 249 s creeping from 8.2e-5 to 7.6e-5 while the slack was 1.8e-4.

    It also reports progress (``on_progress(bound, gap)``) at most every ``every`` seconds.
    """

    def __init__(self, true_objective, tol: float, on_progress=None, every: float = 1.0) -> None:
        self.true_objective = true_objective
        self.tol = tol
        self.on_progress = on_progress
        self.every = every
        self.best_true = -math.inf
        self.best_x: np.ndarray | None = None
        self.inc_milp = math.nan     # the last incumbent's MILP objective (maximization form)
        self.inc_true = math.nan     # and its true objective
        self.reason = ""
        self.read = None             # x -> spend, set by run_model
        self._last = time.perf_counter()

    def improving(self, e) -> None:
        x = np.array(e.data_out.mip_solution, dtype=float)
        value = self.true_objective(self.read(x))
        self.inc_milp = -float(e.data_out.objective_function_value)
        self.inc_true = value
        if value > self.best_true:
            self.best_true, self.best_x = value, x

    def interrupt(self, e) -> None:
        upper = -float(e.data_out.mip_dual_bound)
        if not (math.isfinite(upper) and math.isfinite(self.best_true)):
            return
        scale = max(abs(self.best_true), 1.0)
        gap = (upper - self.best_true) / scale
        now = time.perf_counter()
        if self.on_progress is not None and now - self._last >= self.every:
            self._last = now
            self.on_progress(upper, gap)
        milp_gap = (upper - self.inc_milp) / scale
        slack = (self.inc_milp - self.inc_true) / scale
        if gap <= 0.9 * self.tol:
            self.reason = "certified"
        elif milp_gap <= self.tol and slack > milp_gap:
            self.reason = "refine"
        else:
            return
        e.interrupt()


def run_model(lp, integ, maps, problem: CompiledProblem, cells: Cells, tol: float, time_limit: float | None,
              want_duals: bool = True, start: np.ndarray | None = None,
              watch: MipWatch | None = None) -> ModelSolution:
    """Solve with HiGHS; read spend, objective, bound and (with integers fixed) row duals.

    ``status`` is ``optimal``, ``interrupted`` (stopped by ``watch``: the bound is HiGHS's
    proven bound at that moment), ``time_limit``, ``infeasible`` or
    ``unbounded_or_infeasible``.
    """
    hs = _highs()
    h = new_highs()
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
    mip = bool(integ.any())
    if watch is not None and mip:
        watch.read = lambda x: _read_spend(x, maps, problem, cells)
        h.cbMipImprovingSolution.subscribe(watch.improving)
        h.cbMipInterrupt.subscribe(watch.interrupt)
    if start is not None and mip:
        x0 = start_point(maps, problem, cells, start, lp.num_col_)
        if x0 is not None:
            h.setSolution(lp.num_col_, np.arange(lp.num_col_, dtype=np.int32), x0)
    h.run()
    if watch is not None and mip:
        h.cbMipImprovingSolution.unsubscribe(watch.improving)
        h.cbMipInterrupt.unsubscribe(watch.interrupt)
    status = h.getModelStatus()
    name = h.modelStatusToString(status)
    info = h.getInfo()
    if status == hs.HighsModelStatus.kInfeasible:
        return ModelSolution("infeasible", np.zeros(problem.n), seconds=time.perf_counter() - t0, size=maps["size"])
    if status == hs.HighsModelStatus.kUnbounded or status == hs.HighsModelStatus.kUnboundedOrInfeasible:
        return ModelSolution("unbounded_or_infeasible", np.zeros(problem.n), size=maps["size"])
    sol = h.getSolution()
    if status == hs.HighsModelStatus.kTimeLimit and not sol.value_valid:
        return ModelSolution("time_limit_no_plan", np.zeros(problem.n), seconds=time.perf_counter() - t0,
                             size=maps["size"])
    if not sol.value_valid:
        raise NumericalError(f"HiGHS stopped with '{name}' and no plan")
    x = np.asarray(sol.col_value)
    obj = float(info.objective_function_value)
    bound = float(info.mip_dual_bound) if mip else obj
    if status == hs.HighsModelStatus.kOptimal:
        state = "optimal"
    elif status == hs.HighsModelStatus.kInterrupt and watch is not None and watch.reason:
        state = "interrupted"
        logger.debug("MILP stopped early (%s) after %.2fs", watch.reason, time.perf_counter() - t0)
    elif status == hs.HighsModelStatus.kTimeLimit:
        state = "time_limit"
    else:
        state = name
        logger.warning("HiGHS stopped with '%s'; the reported gap uses its proven bound", name)
    spend = milp_spend = _read_spend(x, maps, problem, cells)
    if watch is not None and watch.best_x is not None and watch.best_true > watch.true_objective(spend):
        # HiGHS keeps the incumbent best on the lifted curves; the certificate wants the best on the true ones
        x = watch.best_x
        spend = _read_spend(x, maps, problem, cells)
    out = ModelSolution(state, spend, obj, bound, seconds=0.0, size=maps["size"], milp_spend=milp_spend)
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
            if time_limit is not None:
                h.setOptionValue("time_limit", max(float(time_limit) - (time.perf_counter() - t0), 1.0))
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
