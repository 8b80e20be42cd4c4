"""Dual solver for concave problems with linear rules and average-efficiency rules.

The problem

    maximize   sum_i w_i E_i(s_i) - c * sum_i s_i
    subject to lo_j <= a_j . s <= hi_j                      (budgets, pots, spend rules, shares, ratios)
               h_k(s) = sum_{i in G_k} (u_ki E_i(s_i) - b_k s_i) >= 0   (efficiency rules)
               lower_i <= s_i <= upper_i

with ``E_i(s) = pool_i * p_i(s / pool_i)`` concave is convex, and its Lagrangian
separates per cell. With multipliers ``y_j`` of the rows (>= 0 at an upper end, <= 0
at a lower end) and ``mu_k >= 0`` of the efficiency rules, every cell maximizes

    W_i E_i(s) - P_i s,   W_i = w_i + sum_k mu_k u_ki,   P_i = c + sum_j y_j a_ji + sum_k mu_k b_k,

whose maximizer is the exact solver's spend rule at the slope ``E_i' = P_i / W_i``
(marginal return ``(price_i + sum_k mu_k b_k) / (1 + sum_k mu_k alpha_ki)`` with
``alpha_ki = u_ki / w_i``), clipped to the cell's bounds. The dual function

    D(y, mu) = sum_i max_s [W_i E_i(s) - P_i s] + sum_j sigma_j(y_j),

``sigma_j(y) = hi_j y`` for ``y > 0`` and ``lo_j y`` for ``y < 0``, is convex in the few
multipliers and an upper bound on the optimum for every (y, mu) with the right signs
(weak duality). Its gradient is the rules' slack at the cells' maximizers (envelope
theorem) and its Hessian ``Q diag(-ds/dlevel / W) Q^T`` comes from one extra pass.
It is minimized by projected Newton with an Armijo line search (Bertsekas 1982):
each ranged row's multiplier is split into an upper-end and a lower-end part, both
>= 0, so the kink of ``sigma`` at 0 becomes a bound. Clipping at cell bounds makes
``D`` piecewise smooth; the line search handles the kinks.

The plan is the cells' maximizers at the final multipliers, corrected by a few
Newton steps along the same directions (moving only interior cells) so that binding
rows hold to round-off. The certificate is ``gap = (D - objective(plan)) / |objective|``.
Tabulated (piecewise-linear) curves make the spend jump and ``D`` piecewise linear;
such problems are handled by cutting planes and an LP over the cells' sets of
maximizers (:mod:`.dual_kinks`).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp

from ..errors import InfeasibleError, NumericalError
from ..problem import CompiledProblem
from . import dual_kinks
from .base import SolveResult, Solver, check_bounds_feasible
from .envelope import has_kinks

logger = logging.getLogger(__name__)
DEFAULT_TOLERANCE = 1e-6
MAX_NEWTON = 200
ARMIJO = 1e-4
FD_STEP = 1e-6          # relative step of the slope level for ds/dlevel


class DualSolver(Solver):
    """Lagrangian dual over the rules' multipliers, each cell at its exact spend rule; see the module docstring.

    Concave curves (smooth or tabulated), linear rules and average-efficiency rules, the
    ``net_value`` and ``hurdle`` objectives; no integer features. ``tolerance`` is the
    certified relative gap (default 1e-6); a result above it has termination ``gap_limit``.
    """

    name = "dual"
    handles_constraints = True
    handles_efficiency = True
    objectives = ("net_value", "hurdle")
    description = ("Lagrangian dual over the rules' multipliers (projected Newton; cutting planes for tables), "
                   "exact spend rule per cell; concave curves, linear and average-efficiency rules; certified gap")

    def solve(self, problem: CompiledProblem, tolerance: float | None = None) -> SolveResult:
        check_bounds_feasible(problem)
        return _DualRun(problem, DEFAULT_TOLERANCE if tolerance is None else float(tolerance)).solve()


class _DualRun:
    """One solve: the arrays of the dual, its evaluation, the Newton loop and the primal recovery."""

    def __init__(self, problem: CompiledProblem, tol: float):
        p = self.p = problem
        self.tol = tol
        self.t0 = time.perf_counter()
        n = p.n
        self.rate = float(p.objective.rate)
        self.w = p.value.astype(float)
        self.rows = p.rows()
        self.eff = p.efficiency
        # concave rows: (index, u, b, constant) for sum(u E - b s) >= constant. A target objective
        # would be one more (constant T, objective -spend), but cells it does not count have no
        # curvature (their spend is undetermined where their price is 0), which Newton cannot
        # handle; targets stay with the global solver for now.
        crows = [(e.index, e.weight, e.rate, 0.0) for e in self.eff]
        m, K = len(self.rows), len(crows)
        self.K = K
        self.const = np.array([c[3] for c in crows], float)
        self.A = _sparse([(r.index, r.coef) for r in self.rows], n)
        self.U = _sparse([(c[0], c[1]) for c in crows], n)
        self.Bk = _sparse([(c[0], np.full(len(c[0]), c[2])) for c in crows], n)
        lo_r = np.array([r.lower for r in self.rows], float)
        hi_r = np.array([r.upper for r in self.rows], float)
        # variables z >= lb: per row an equality part (free) or an upper and/or lower part; per rule one mu
        # (row, sign, linear term of D, lower bound of z)
        parts: list[tuple[int, float, float, float]] = []
        for j in range(m):
            if np.isfinite(hi_r[j]) and np.isfinite(lo_r[j]) and hi_r[j] - lo_r[j] <= 1e-12 * max(abs(hi_r[j]), 1):
                parts.append((j, 1.0, hi_r[j], -np.inf))
                continue
            if np.isfinite(hi_r[j]):
                parts.append((j, 1.0, hi_r[j], 0.0))
            if np.isfinite(lo_r[j]):
                parts.append((j, -1.0, -lo_r[j], 0.0))
        nzy = len(parts)
        owner, sign, lin, lb = (list(col) for col in zip(*parts)) if parts else ([], [], [], [])
        self.owner, self.sign = np.array(owner, int), np.array(sign, float)
        self.nz = nzy + K
        self.lin = np.concatenate([lin, -self.const])
        self.lb = np.concatenate([lb, np.zeros(K)])
        # y = My z[:nzy]; P = c + C^T z; W = w + Cw^T z
        My = sp.csr_matrix((self.sign, (self.owner, np.arange(nzy))), shape=(m, nzy))
        self.My = My
        C_y = (My.T @ self.A) if m else sp.csr_matrix((0, n))
        self.C = sp.vstack([C_y, self.Bk]).tocsr()
        self.Cw = sp.vstack([sp.csr_matrix((nzy, n)), self.U]).tocsr()
        self.lo, self.hi = p.lower.astype(float), p.upper.astype(float)
        # spend rules with value 1: rule(level) is the spend where E'(s) = level
        self.rules = [(b.index, _per_cell_rule(b.family, b.params, p.pool[b.index])) for b in p.blocks]
        self.passes = 0
        self.kinked = any(has_kinks(b.family) for b in p.blocks)

    # ---- the dual function
    def inner(self, z: np.ndarray, bump: float = 0.0):
        """Per-cell maximizers at ``z``: spend, slope level, W, P, and whether the dual is finite.

        ``bump`` moves every slope level by that relative amount (finite differences, and the
        ends of a tabulated cell's set of maximizers).
        """
        self.passes += 1
        P = self.rate + self.C.T @ z
        W = self.w + self.Cw.T @ z
        with np.errstate(divide="ignore", invalid="ignore"):
            level = np.where(W > 0, P / np.where(W > 0, W, 1.0), np.inf) * (1.0 + bump)
        s = np.empty(self.p.n)
        pos = level > 0
        for idx, rule in self.rules:
            lv = level[idx]
            ok = pos[idx] & np.isfinite(lv)
            out = np.where(np.isinf(lv), 0.0, np.inf)      # W = 0: least spend; level <= 0: most spend
            if ok.any():
                out[ok] = rule(np.where(ok, lv, 1.0))[ok]
            s[idx] = out
        s = np.minimum(np.maximum(s, self.lo), self.hi)
        # W = 0 and P > 0: least spend (np.inf level gave 0 before clipping); P <= 0: the most
        s = np.where((W <= 0) & (P <= 0), self.hi, s)
        finite = bool(np.all(np.isfinite(s)))
        return s, level, W, P, finite

    def evaluate(self, z: np.ndarray):
        """``D(z)`` and the state at ``z`` (spend, levels, gradient); ``(inf, None)`` outside the domain."""
        s, level, W, P, finite = self.inner(z)
        if not finite:
            return np.inf, None
        E = self.p.pool * self.p.response(s)
        D = float(np.sum(W * E - P * s) + self.lin @ z)
        g = self.lin - self.C @ s + self.Cw @ E
        return D, {"s": s, "level": level, "W": W, "P": P, "E": E, "g": g, "z": z}

    def hessian(self, st: dict) -> np.ndarray:
        """``Q diag(-ds/dlevel / W) Q^T`` over the interior cells, ds/dlevel by a forward difference."""
        s, level, W = st["s"], st["level"], st["W"]
        interior = (s > self.lo) & (s < self.hi) & np.isfinite(level) & (level > 0) & (W > 0)
        s2, *_ = self.inner(st["z"], bump=FD_STEP)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(interior, (s2 - s) / (level * FD_STEP), 0.0)     # ds/dlevel <= 0
            weight = np.where(interior, -d / np.where(W > 0, W, 1.0), 0.0)
        Q = self.C - self.Cw.multiply(np.where(interior, level, 0.0)[None, :])
        Q = sp.csr_matrix(Q)
        H = (Q.multiply(weight[None, :]) @ Q.T).toarray()
        st["dsdl"], st["interior"], st["Q"] = d, interior, Q
        return H

    # ---- the Newton loop
    def solve(self) -> SolveResult:
        if self.kinked:
            return self._solve_kinked()
        z = np.zeros(self.nz)
        D, st = self.evaluate(z)
        if st is None:
            raise NumericalError("the dual is unbounded at zero multipliers: a cell without a finite cap has "
                                 "no positive price (objective rate <= 0?)")
        spend_scale = max(float(np.abs(st["s"]).sum()), float(np.abs(self.lo).sum()), 1.0)
        best = None
        it = 0
        for it in range(1, MAX_NEWTON + 1):
            g = st["g"]
            at_lb = z <= self.lb + 1e-15
            fixed = at_lb & (g > 0)
            free = ~fixed
            stat = np.abs(np.where(free, g, 0.0)).max(initial=0.0) / spend_scale
            if stat <= 1e-9 or it % 5 == 0:
                cand = self.recover(st)
                if cand is not None and (best is None or cand["gap"] < best["gap"]):
                    best = cand
                if best is not None and best["gap"] <= self.tol and stat <= 1e-7:
                    break
            H = self.hessian(st)
            Hf = H[np.ix_(free, free)]
            reg = 1e-12 * max(float(np.abs(np.diag(Hf)).max(initial=0.0)), 1e-300)
            try:
                step_f = np.linalg.solve(Hf + reg * np.eye(len(Hf)), -g[free])
            except np.linalg.LinAlgError:
                step_f = np.full(len(Hf), np.nan)
            if not np.all(np.isfinite(step_f)):
                # no curvature yet (e.g. a target's multiplier at 0: no cell is priced in): steepest descent
                step_f = -g[free] / max(np.abs(g[free]).max(initial=0.0), 1e-300)
            dz = np.zeros(self.nz)
            dz[free] = step_f
            # a flat direction (every cell of a row at a bound) gives a huge step; cap it
            cap = 10.0 * (abs(self.rate) + np.abs(z).max(initial=0.0) + 1.0)
            big = np.abs(dz).max(initial=0.0)
            if big > cap:
                dz *= cap / big
            t, accepted = 1.0, False
            for _ in range(60):
                zt = np.maximum(z + t * dz, self.lb)
                Dt, stt = self.evaluate(zt)
                if stt is not None and Dt <= D + ARMIJO * float(g @ (zt - z)):
                    accepted = True
                    break
                t *= 0.5
            if not accepted:
                # round-off floor of D reached; try the plan we have
                break
            z, D, st = zt, Dt, stt
            if D < -1e30:
                self._infeasible()
        cand = self.recover(st)
        if cand is not None and (best is None or cand["gap"] < best["gap"]):
            best = cand
        if best is None:
            self._infeasible()
        return self._result(best, it, "projected Newton on the multipliers")

    def _solve_kinked(self) -> SolveResult:
        z, st, cuts = dual_kinks.minimize_dual(self, np.zeros(self.nz), self.tol)
        if st is None:
            self._infeasible()
        self.hessian(st)
        cands = [self.certify(s, st) for s in (dual_kinks.recover_lp(self, st),) if s is not None]
        cands.append(self.recover(st))
        cands = [c for c in cands if c is not None]
        if not cands:
            self._infeasible()
        return self._result(min(cands, key=lambda c: c["gap"]), cuts, "cutting planes on the multipliers, plan "
                                                                        "by an LP over the cells' maximizers")

    def _infeasible(self):
        from ..infeasibility import find_conflict

        conflict = find_conflict(self.p)
        if conflict is not None:
            raise InfeasibleError(f"infeasible: these {len(conflict)} rules cannot hold together (dropping any "
                                  f"one of them makes the rest feasible)", conflict=conflict)
        raise NumericalError("the dual solver could not build a feasible plan from its multipliers (e.g. a cell "
                             "without value that a rule forces to spend has no curvature to price it); "
                             "use solver 'global'")

    # ---- the primal plan
    def _row_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.array([r.lower for r in self.rows], float), np.array([r.upper for r in self.rows], float))

    def objective(self, s: np.ndarray) -> float:
        return float(np.sum(self.w * self.p.pool * self.p.response(s)) - self.rate * s.sum())

    def violations(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row residuals outside ``[lo, hi]`` (signed; 0 when within) and efficiency slacks."""
        a = self.A @ s if len(self.rows) else np.zeros(0)
        lo, hi = self._row_bounds()
        res = np.where(a > hi, a - hi, np.where(a < lo, a - lo, 0.0))
        E = self.p.pool * self.p.response(s)
        h = self.U @ E - self.Bk @ s - self.const if self.K else np.zeros(0)
        return res, h

    def recover(self, st: dict) -> dict | None:
        """A feasible plan near the cells' maximizers, its objective and certified gap (``None`` if none found)."""
        z, s = st["z"], st["s"].copy()
        if "Q" not in st:
            self.hessian(st)
        m = len(self.rows)
        y = self.My @ z[:self.nz - self.K] if m else np.zeros(0)
        mu = z[self.nz - self.K:]
        lo_r, hi_r = self._row_bounds()
        total = max(float(np.abs(s).sum()), 1.0)
        for _ in range(6):
            a = self.A @ s if m else np.zeros(0)
            E = self.p.pool * self.p.response(s)
            h = self.U @ E - self.Bk @ s - self.const if self.K else np.zeros(0)
            # targets: rows with a multiplier sit at their bound; violated rows go back to it
            tgt_r = np.where(y > 0, hi_r, np.where(y < 0, lo_r, np.clip(a, lo_r, hi_r)))
            both = np.isfinite(lo_r) & np.isfinite(hi_r)
            eq = both & (np.where(both, hi_r - lo_r, 1.0) <= 1e-12 * np.maximum(np.where(both, np.abs(hi_r), 1.0), 1))
            tgt_r = np.where(eq, hi_r, tgt_r)
            r_rows = a - tgt_r
            r_eff = np.where(mu > 0, h, np.minimum(h, 0.0))
            tol_r = 1e-11 * np.maximum(total, np.where(np.isfinite(hi_r), np.abs(hi_r), 0.0))
            tol_e = (1e-11 * np.maximum(np.asarray(self.U @ E + self.Bk @ s).ravel() + self.const, 1.0)
                     if self.K else tol_r[:0])
            act_r = np.abs(r_rows) > tol_r
            act_e = np.abs(r_eff) > tol_e
            if not act_r.any() and not act_e.any():
                break
            # move interior cells along ds/dz: the directions the multipliers would move them
            interior = st["interior"] & (s > self.lo) & (s < self.hi)
            dirs = st["Q"].multiply((st["dsdl"] / np.where(st["W"] > 0, st["W"], 1.0) * interior)[None, :]).tocsr()
            # constraint gradients in s: rows a_j; efficiency u E' - b
            Ep = np.where(interior, _slopes(self.p, s), 0.0)   # only interior cells move (and 0 * inf is nan)
            G = sp.vstack([self.A, self.U.multiply(Ep[None, :]) - self.Bk]).tocsr()
            resid = np.concatenate([r_rows, r_eff])
            act = np.concatenate([act_r | (y != 0) | eq, act_e | (mu > 0)])
            # directions are indexed by z; rows by (row, rule): map the row's direction through its owner
            Dz = sp.vstack([self.My @ dirs[:self.nz - self.K] if m else sp.csr_matrix((0, self.p.n)),
                            dirs[self.nz - self.K:]]).tocsr()
            ia = np.flatnonzero(act)
            if len(ia) == 0:
                break
            J = (G[ia] @ Dz[ia].T).toarray()
            try:
                lam = np.linalg.lstsq(J, -resid[ia], rcond=None)[0]
            except np.linalg.LinAlgError:
                break
            s = np.minimum(np.maximum(s + Dz[ia].T @ lam, self.lo), self.hi)
        return self.certify(s, st)

    def certify(self, s: np.ndarray, st: dict) -> dict | None:
        """``s`` with its objective and the certified gap against the dual bound at ``st`` (``None`` if infeasible)."""
        z = st["z"]
        total = max(float(np.abs(s).sum()), 1.0)
        res, h = self.violations(s)
        scale_e = (np.asarray(self.U @ (self.p.pool * self.p.response(s)) + self.Bk @ s).ravel() + self.const
                   if self.K else h)
        if np.any(np.abs(res) > 1e-9 * total) or np.any(h < -1e-9 * np.maximum(scale_e, 1.0)):
            return None
        D = float(np.sum(st["W"] * st["E"] - st["P"] * st["s"]) + self.lin @ z)
        F = self.objective(s)
        gap = max(D - F, 0.0) / max(abs(F), 1e-12)
        K = self.K
        y = self.My @ z[:self.nz - K] if len(self.rows) else np.zeros(0)
        return {"spend": s, "upper": D, "objective": F, "gap": gap, "y": y, "mu": z[self.nz - K:]}

    def _result(self, best: dict, it: int, how: str) -> SolveResult:
        duals = {r.name: float(v) for r, v in zip(self.rows, best["y"])}
        duals.update({e.name: float(v) for e, v in zip(self.eff, best["mu"])})
        budget = duals.get("budget.total")
        term = "optimal" if best["gap"] <= self.tol else "gap_limit"
        if term != "optimal":
            logger.warning("dual solver: certified gap %.3g is above the tolerance %.3g", best["gap"], self.tol)
        info = {"bound_method": "Lagrangian dual of the linear and efficiency rules at the final multipliers; "
                                "each cell's inner maximum by its exact spend rule",
                "method": how, "seconds": time.perf_counter() - self.t0, "lower_bound": best["objective"],
                "budget_binds": bool(budget is not None and budget != 0.0)}
        return SolveResult(spend=best["spend"], solver="dual", termination=term,
                           marginal_return=(self.rate + budget) if budget is not None else None,
                           optimality_gap=best["gap"], upper_bound=best["upper"], iterations=it,
                           passes=self.passes, info=info, constraint_duals=duals)


def _sparse(parts: list[tuple[np.ndarray, np.ndarray]], n: int) -> sp.csr_matrix:
    """Rows ``(index, coef)`` as a sparse (rows x n) matrix."""
    if not parts:
        return sp.csr_matrix((0, n))
    r = np.concatenate([np.full(len(i), j) for j, (i, _) in enumerate(parts)])
    c = np.concatenate([i for i, _ in parts])
    v = np.concatenate([np.asarray(cf, float) for _, cf in parts])
    return sp.csr_matrix((v, (r, c)), shape=(len(parts), n))


def _per_cell_rule(family, params, pool):
    """The family's spend rule (value 1) taking one slope level per cell.

    Rules are written for one multiplier shared by all cells; closed forms and the default
    bisection broadcast over an array of levels as they are, while the table rule compares
    each cell's level with its row of segment slopes, so it takes the levels as a column.
    """
    rule = family.spend_rule(params, np.ones(len(pool)), pool)
    if not has_kinks(family):
        return rule
    return lambda level: np.asarray(rule(np.asarray(level)[:, None])).reshape(-1)


def _slopes(problem: CompiledProblem, s: np.ndarray) -> np.ndarray:
    """``E'(s) = p'(s / pool)`` per cell (right slope)."""
    x = s / problem.pool
    out = np.empty(problem.n)
    for b in problem.blocks:
        out[b.index] = b.family.slope(x[b.index], b.params)
    return out
