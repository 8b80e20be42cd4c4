"""The sampled MILP of :mod:`.risk_global`, built as arrays and solved by HiGHS.

Columns: breakpoint weights ``lam`` (cells x K); for CVaR the level ``t`` and the shortfalls
``u_k``; one binary per segment of each non-concave cell (``z``); an on/off binary per cell with
``min_active`` or an activation cost; an integer count of spend units per cell. Rows: one per
sample (CVaR only: ``u_k - t + N_k >= 0``), the budget and rules on spend ``s_i = sum_j lam_ij t_ij``,
convexity, one segment per non-concave cell, the on/off and spend-unit links. Built column-wise
(highspy, as the global solver does) and passed once.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import InfeasibleError, NumericalError
from ..problem import CompiledProblem


class SampledModel:
    """The MILP over breakpoints ``T`` (cells x K), built as arrays and solved by HiGHS."""

    def __init__(self, problem: CompiledProblem, T: np.ndarray, E: np.ndarray, U: np.ndarray, alpha: float,
                 sos: np.ndarray, onoff: np.ndarray, mip_gap: float, time_limit: float | None,
                 start: np.ndarray | None = None):
        self.p, self.T, self.alpha = problem, T, alpha
        n, K = T.shape
        S = U.shape[0]
        cols_lo, cols_hi, cost, integ = [], [], [], []
        entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        row_lo: list[np.ndarray] = []
        row_hi: list[np.ndarray] = []
        ncol = [0]
        nrow = [0]

        def cols(c, lo, hi, kind=0):
            c = np.atleast_1d(np.asarray(c, float))
            k0 = ncol[0]
            ncol[0] += len(c)
            cost.append(c)
            cols_lo.append(np.broadcast_to(np.asarray(lo, float), c.shape).copy())
            cols_hi.append(np.broadcast_to(np.asarray(hi, float), c.shape).copy())
            integ.append(np.full(len(c), kind))
            return np.arange(k0, k0 + len(c))

        def rows(lo, hi, count):
            r0 = nrow[0]
            nrow[0] += count
            row_lo.append(np.broadcast_to(np.asarray(lo, float), (count,)).copy())
            row_hi.append(np.broadcast_to(np.asarray(hi, float), (count,)).copy())
            return np.arange(r0, r0 + count)

        def add(r, c, v):
            r, c, v = np.broadcast_arrays(np.asarray(r), np.asarray(c), np.asarray(v, float))
            entries.append((r.ravel(), c.ravel(), v.ravel()))

        dup = np.zeros((n, K), dtype=bool)
        dup[:, 1:] = ~(np.diff(T, axis=1) > 0)
        mean = alpha >= 1.0
        act_cost = problem.activation_cost if problem.activation_cost is not None else np.zeros(n)
        # spend columns lam (cells x K): cost is minus the mean net value for alpha = 1, else in sample rows
        lam_cost = -(U[0] - T) if mean else np.zeros((n, K))
        lam = cols(lam_cost.ravel(), 0.0, np.where(dup, 0.0, 1.0).ravel()).reshape(n, K)
        if not mean:
            t = cols([-1.0], -np.inf, np.inf)
            u = cols(np.full(S, 1.0 / (alpha * S)), 0.0, np.inf)
            r_s = rows(0.0, np.inf, S)
            add(r_s, t[0], -1.0)
            add(r_s, u, 1.0)
            add(np.repeat(r_s, n * K), np.tile(lam.ravel(), S), (U - T[None]).reshape(S, -1).ravel())
        # linear rows on spend s_i = sum_j lam_ij t_ij
        for c in problem.rows():
            r = rows(c.lower, c.upper, 1)
            add(r[0], lam[c.index].ravel(), (c.coef[:, None] * T[c.index]).ravel())
        r_cvx = rows(1.0, 1.0, n)
        add(np.repeat(r_cvx, K), lam.ravel(), 1.0)
        # one segment per non-concave cell: lam_ij <= z_i,j-1 + z_ij, sum_j z_ij = 1
        cells = np.flatnonzero(sos & (K > 1))
        if len(cells):
            # empty (padding) segments are closed, except the first: a locked cell has only that one
            closed = dup[cells, 1:].copy()
            closed[:, 0] = False
            z = cols(np.zeros(len(cells) * (K - 1)), 0.0, np.where(closed, 0.0, 1.0).ravel(), 1)
            z = z.reshape(len(cells), K - 1)
            r_one = rows(1.0, 1.0, len(cells))
            add(np.repeat(r_one, K - 1), z.ravel(), 1.0)
            r_adj = rows(-np.inf, 0.0, len(cells) * K).reshape(len(cells), K)
            add(r_adj, lam[cells], 1.0)
            add(r_adj[:, :-1], z, -1.0)
            add(r_adj[:, 1:], z, -1.0)
        # on/off cells: s = 0 or s >= min_active (activation cost paid when on)
        self.on_cells = np.flatnonzero(onoff)
        if len(self.on_cells):
            oc = self.on_cells
            ma = problem.min_active[oc] if problem.min_active is not None else np.zeros(len(oc))
            on = cols(act_cost[oc] if mean else np.zeros(len(oc)), 0.0, 1.0, 1)
            if not mean:
                add(np.repeat(r_s, len(oc)), np.tile(on, S), np.tile(-act_cost[oc], S))
            r_min = rows(0.0, np.inf, len(oc))
            add(np.repeat(r_min, K), lam[oc].ravel(), T[oc].ravel())
            add(r_min, on, -ma)
            r_max = rows(-np.inf, 0.0, len(oc))
            add(np.repeat(r_max, K), lam[oc].ravel(), T[oc].ravel())
            add(r_max, on, -T[oc, -1])
            self.on = on
        # spend units: s_i = unit * m_i with m_i integer
        if problem.unit is not None:
            lo_m = np.ceil(T[:, 0] / problem.unit - 1e-9)
            hi_m = np.floor(T[:, -1] / problem.unit + 1e-9)
            mcol = cols(np.zeros(n), lo_m, hi_m, 1)
            r_u = rows(0.0, 0.0, n)
            add(np.repeat(r_u, K), lam.ravel(), T.ravel())
            add(r_u, mcol, -problem.unit)
        self.lam = lam
        self.integer = bool(np.concatenate(integ).any())
        x0 = None
        if start is not None and self.integer:
            # the best plan so far as a MIP start: HiGHS prunes against it from the first node
            x0 = np.zeros(ncol[0])
            w = _weights_at(T, start)
            x0[lam] = w
            if len(cells):
                x0[z[np.arange(len(cells)), _segment_of(T[cells], w[cells])]] = 1.0
            if len(self.on_cells):
                x0[self.on] = (start[self.on_cells] > 0).astype(float)
            if problem.unit is not None:
                x0[mcol] = np.round(start / problem.unit)
            if not mean:
                N = (w[None] * (U - T[None])).sum(axis=(1, 2)) - np.where(start > 0, act_cost, 0.0).sum()
                var = np.sort(N)[max(int(np.ceil(alpha * S - 1e-12)) - 1, 0)]
                x0[t] = var
                x0[u] = np.maximum(var - N, 0.0)
        r_all, c_all, v_all = (np.concatenate(a) for a in zip(*entries))
        A = sp.csc_matrix((v_all, (r_all, c_all)), shape=(nrow[0], ncol[0]))
        A.sum_duplicates()
        self.h = _solve(A, np.concatenate(cost), np.concatenate(cols_lo), np.concatenate(cols_hi),
                        np.concatenate(row_lo), np.concatenate(row_hi), np.concatenate(integ), mip_gap,
                        time_limit, x0)

    def weights(self) -> np.ndarray:
        """The breakpoint weights ``lam`` (cells x K) of the MILP's solution."""
        return np.asarray(self.h.getSolution().col_value)[self.lam]

    def result(self) -> tuple[np.ndarray, float]:
        """The plan (spend per cell) and the certified upper bound on the objective."""
        import highspy

        h = self.h
        status = h.getModelStatus()
        ok = (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kTimeLimit,
              highspy.HighsModelStatus.kInterrupt)
        if status == highspy.HighsModelStatus.kInfeasible:
            raise InfeasibleError("infeasible: the budget, rules and integer features cannot hold together",
                                  conflict=[c.name for c in self.p.rows()])
        if status not in ok or h.getInfo().primal_solution_status != 2:
            raise NumericalError(f"HiGHS stopped with {h.modelStatusToString(status)} on the sampled MILP")
        x = np.asarray(h.getSolution().col_value)
        lam = np.clip(x[self.lam], 0.0, None)
        s = (lam * self.T).sum(axis=1) / np.maximum(lam.sum(axis=1), 1e-300)
        if len(self.on_cells):
            s[self.on_cells] = np.where(x[self.on] > 0.5, s[self.on_cells], 0.0)
        if self.p.unit is not None:
            s = np.round(s / self.p.unit) * self.p.unit
        s = np.clip(s, self.T[:, 0], self.T[:, -1])
        info = h.getInfo()
        bound = -(info.mip_dual_bound if self.integer else info.objective_function_value)
        return s, float(bound)


def _weights_at(T: np.ndarray, spend: np.ndarray) -> np.ndarray:
    """Breakpoint weights (cells x K) that put each cell at ``spend`` (interpolating inside its segment)."""
    n, K = T.shape
    rows = np.arange(n)
    j = np.clip((T <= spend[:, None] * (1 + 1e-14)).sum(axis=1) - 1, 0, K - 1)
    nxt = np.minimum(j + 1, K - 1)
    width = T[rows, nxt] - T[rows, j]
    frac = np.where(width > 0, (spend - T[rows, j]) / np.where(width > 0, width, 1.0), 0.0)
    frac = np.clip(frac, 0.0, 1.0)
    w = np.zeros((n, K))
    w[rows, j] = 1.0 - frac
    w[rows, nxt] += frac
    return w


def _segment_of(T: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The segment (of positive width) holding the weights ``w`` of each row."""
    K = T.shape[1]
    first = np.argmax(w > 0, axis=1)
    real = (np.diff(T, axis=1) > 0).sum(axis=1)     # segments of positive width come first
    return np.clip(np.minimum(first, np.maximum(real - 1, 0)), 0, K - 2)


def _solve(A, cost, col_lo, col_hi, row_lo, row_hi, integ, mip_gap: float, time_limit: float | None,
           start: np.ndarray | None = None):
    import highspy

    from ..solvers.highs_quiet import new_highs

    h = new_highs()  # no banner or log: the library logs through `logging`
    # spend is sum(lam * t) with t up to ~1e6: HiGHS's default 1e-7 on lam would move it by ~0.1
    h.setOptionValue("primal_feasibility_tolerance", 1e-9)
    inf = highspy.kHighsInf
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = A.shape[1], A.shape[0]
    lp.col_cost_ = cost
    lp.col_lower_ = np.where(np.isfinite(col_lo), col_lo, -inf)
    lp.col_upper_ = np.where(np.isfinite(col_hi), col_hi, inf)
    lp.row_lower_ = np.where(np.isfinite(row_lo), row_lo, -inf)
    lp.row_upper_ = np.where(np.isfinite(row_hi), row_hi, inf)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = A.indptr.astype(np.int32)
    lp.a_matrix_.index_ = A.indices.astype(np.int32)
    lp.a_matrix_.value_ = A.data
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = A.shape[1], A.shape[0]
    if integ.any():
        lp.integrality_ = [highspy.HighsVarType.kInteger if k else highspy.HighsVarType.kContinuous
                           for k in integ]
        h.setOptionValue("mip_rel_gap", mip_gap)
        # the sub-MIP heuristics (RINS, RENS) cost most of the time on the dense sample rows and add
        # little once the best plan so far is passed as a start: measured 26 s -> 6 s on the
        # constrained scenario's last round (200 samples)
        h.setOptionValue("mip_heuristic_run_rins", False)
        h.setOptionValue("mip_heuristic_run_rens", False)
    if time_limit is not None:
        h.setOptionValue("time_limit", float(max(time_limit, 1.0)))
    h.passModel(lp)
    if start is not None:
        sol = highspy.HighsSolution()
        sol.col_value = list(start)
        sol.value_valid = True
        h.setSolution(sol)
    h.run()
    return h
