"""Pyomo + HiGHS solver: an outer (tangent-cut) piecewise-linear LP, refined until certified.

For a concave cell value ``f(s) = pool * value * p(s / pool)`` every tangent
``f(t) + f'(t) (s - t)`` lies above ``f``, so the LP

    max  sum(v) - sum(s)
    s.t. v_i <= f_i(t) + f_i'(t) (s_i - t)   for the tangent points t of cell i
         budget row, bounds, and the general linear constraints of the problem

over-estimates the true problem: its optimum is an upper bound ``UB`` on the
true optimum, and its plan ``s*`` is feasible, so the true objective at ``s*`` is
a lower bound ``LB``. Each round adds, for every cell still loose, a tangent at
``s*`` (Kelley's cutting-plane step) and a tangent where the cell's true marginal
return equals its LP price ``1 + sum(dual_k * a_ki)`` (found by bisection on the
curve's slope: the cut a dual/Benders step adds, which converges much faster
than Kelley alone). It stops when ``(UB - LB) / |LB|`` is below the tolerance
(default 1e-6) and every interior cell's true marginal return is within
``KKT_TOL`` of its LP price; an objective gap alone leaves cells of little weight
loose, since the objective is flat at the optimum.

The LP is solved in normalized units (each cell's spend range and value range
mapped to [0, 1], rows scaled to unit size), which keeps HiGHS well conditioned
as near-parallel cuts accumulate; duals are mapped back to currency units.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from ..errors import InfeasibleError, NumericalError, SolverUnavailableError
from ..problem import CompiledProblem
from .base import SolveResult, Solver, check_bounds_feasible
from .highs_quiet import absorb_banner

logger = logging.getLogger(__name__)
INITIAL_TANGENTS = 8
MAX_ROUNDS = 100
KKT_TOL = 1e-4          # refinement target: relative deviation of a marginal return from its LP price
# What the shared optimality check may expect of this route: near the optimum the
# objective is flat, and HiGHS's feasibility tolerance (1e-9 in normalized units)
# limits how finely the LP places each cell, measured at 1e-5..1.1e-3 on random instances
# (the largest where use_all drives the common marginal return down to 0.1).
KKT_RESOLUTION = 2e-3
MAX_NORMAL_SLOPE = 1e7  # tangents steeper than this (in normalized units) are not added


def spend_at_price(problem: CompiledProblem, price: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                   cells: np.ndarray) -> np.ndarray:
    """Spend in [lo, hi] where each cell's marginal return equals ``price`` (bisection, vectorized).

    Uses only the curves' slopes, so the LP route stays independent of the exact
    solver's closed-form spend rules.
    """
    sub = problem.subset(np.isin(np.arange(problem.n), cells))
    a, b, target = lo[cells].copy(), hi[cells].copy(), price[cells]
    for _ in range(100):
        mid = 0.5 * (a + b)
        above = sub.marginal_return(mid) > target
        a = np.where(above, mid, a)
        b = np.where(above, b, mid)
    return 0.5 * (a + b)


def effective_upper(problem: CompiledProblem) -> np.ndarray:
    """Finite spend caps for the LP: the bound itself, the budget, or where marginal return < 1/2.

    Without a budget, a concave cell never spends past the point where its marginal
    return falls below 1, so capping where it is below 1/2 loses nothing.
    """
    hi = problem.upper.copy()
    if problem.budget is not None:
        return np.minimum(hi, np.maximum(problem.budget, problem.lower))
    open_ = ~np.isfinite(hi)
    if open_.any():
        cap = np.maximum(problem.lower, problem.pool * 1.0)
        for _ in range(200):
            grow = open_ & (problem.marginal_return(cap) >= 0.5)
            if not grow.any():
                break
            cap = np.where(grow, cap * 2.0, cap)
        hi = np.where(open_, cap, hi)
    return hi


class PyomoHighsSolver(Solver):
    name = "pyomo_highs"
    handles_constraints = True
    description = "Pyomo model, HiGHS LP with tangent cuts refined to a certified gap; concave curves"

    def solve(self, problem: CompiledProblem, tolerance: float | None = None) -> SolveResult:
        try:
            import pyomo.environ as pyo
            from pyomo.contrib.solver.solvers.highs import Highs
        except ImportError as exc:  # pragma: no cover - both are dependencies
            raise SolverUnavailableError(f"pyomo_highs needs pyomo and highspy: {exc}") from None
        check_bounds_feasible(problem)
        tol = 1e-6 if tolerance is None else tolerance
        t0 = time.perf_counter()
        n = problem.n
        lo, hi = problem.lower, effective_upper(problem)
        width = hi - lo
        f_lo = problem.expected_value(lo)
        f_range = np.maximum(problem.expected_value(hi) - f_lo, 1e-12 * np.maximum(1.0, np.abs(f_lo)))
        obj_scale = float(f_range.sum() + width.sum()) or 1.0

        # normalized variables: s = lo + width * y, v = f(lo) + f_range * w, with y, w in [0, 1]
        m = pyo.ConcreteModel(name=problem.name)
        m.I = pyo.RangeSet(0, n - 1)
        m.y = pyo.Var(m.I, bounds=lambda _, i: (0.0, 1.0 if width[i] > 0 else 0.0))
        m.w = pyo.Var(m.I, bounds=(None, 1.0))  # f is non-decreasing up to hi: f(s) <= f(hi)
        m.obj = pyo.Objective(expr=sum((float(f_range[i]) * m.w[i] - float(width[i]) * m.y[i]) / obj_scale
                                       for i in m.I), sense=pyo.maximize)
        rows: list[tuple[str, object, float]] = []  # (name, constraint, row scale)
        if problem.budget is not None:
            rhs = problem.budget - float(lo.sum())
            scale = max(abs(problem.budget), 1.0)
            expr = sum(float(width[i] / scale) * m.y[i] for i in m.I)
            m.budget = pyo.Constraint(expr=(expr == rhs / scale) if problem.use_all else (expr <= rhs / scale))
            rows.append(("budget", m.budget, scale))
        m.general = pyo.ConstraintList()
        for c in problem.constraints:
            if math.isinf(c.lower) and math.isinf(c.upper):
                continue  # a rule with no finite side constrains nothing
            base = float(np.dot(c.coef, lo[c.index]))
            scale = max(float(np.abs(c.coef * width[c.index]).sum()), 1.0)
            expr = sum(float(a * width[i] / scale) * m.y[int(i)] for i, a in zip(c.index, c.coef))
            lower = None if math.isinf(c.lower) else (c.lower - base) / scale
            upper = None if math.isinf(c.upper) else (c.upper - base) / scale
            rows.append((c.name, m.general.add(pyo.inequality(lower, expr, upper)), scale))
        m.cuts = pyo.ConstraintList()
        tangents: list[list[float]] = [[] for _ in range(n)]

        def add_cuts(points: np.ndarray, cells: np.ndarray) -> None:
            full = lo.copy()
            full[cells] = points
            fv, gv = problem.expected_value(full), problem.marginal_return(full)
            for i in cells:
                if width[i] <= 0:
                    continue
                y_t = (full[i] - lo[i]) / width[i]
                slope = gv[i] * width[i] / f_range[i]
                # near-duplicate or near-vertical tangents only degrade HiGHS's numerics
                if not np.isfinite(slope) or slope > MAX_NORMAL_SLOPE or \
                        any(abs(y_t - u) <= 1e-9 for u in tangents[i]):
                    continue
                tangents[i].append(y_t)
                w_t = (fv[i] - f_lo[i]) / f_range[i]
                m.cuts.add(m.w[int(i)] <= float(w_t) + float(slope) * (m.y[int(i)] - float(y_t)))

        for frac in np.concatenate([[0.0], np.geomspace(1e-4, 1.0, INITIAL_TANGENTS - 1)]):
            add_cuts(lo + frac * width, np.arange(n))
        # a cell whose every grid tangent was too steep still needs one cut to bound it
        for i in range(n):
            if width[i] > 0 and not tangents[i]:
                add_cuts(np.array([hi[i]]), np.array([i]))

        # Pyomo builds its own highspy objects; it captured their output in our runs (pyomo 6.10),
        # but spending HiGHS's once-per-process stdout banner here first keeps it so whatever
        # Pyomo does (see .highs_quiet)
        absorb_banner()

        def fresh_highs() -> Highs:
            # a new instance per round: pyomo's persistent HiGHS interface loses track of
            # dual indices after rows are added incrementally (pyomo 6.10)
            opt = Highs()
            opt.config.load_solutions = False
            opt.config.raise_exception_on_nonoptimal_result = False
            opt.config.solver_options = {"primal_feasibility_tolerance": 1e-9, "dual_feasibility_tolerance": 1e-9}
            return opt

        best = None
        previous = None
        rounds = 0
        for rounds in range(1, MAX_ROUNDS + 1):
            res = fresh_highs().solve(m)
            status = str(res.termination_condition)
            if "infeasible" in status.lower():
                raise InfeasibleError("infeasible: the constraints cannot hold together (HiGHS)",
                                      conflict=[name for name, _, _ in rows])
            if "convergenceCriteriaSatisfied" not in status:
                if best is not None:  # numerical trouble after many cuts: keep the last good round
                    logger.warning("HiGHS stopped with %s in round %d; reporting the previous round", status, rounds)
                    break
                raise NumericalError(f"HiGHS stopped with {status}")
            res.solution_loader.load_vars()
            y = np.array([pyo.value(m.y[i]) for i in range(n)])
            w = np.array([pyo.value(m.w[i]) for i in range(n)])
            spend = np.clip(lo + width * y, lo, hi)
            ub = float(np.sum(f_lo + f_range * w) - np.sum(spend))
            lb = problem.net_value(spend)
            gap = max(ub - lb, 0.0) / max(abs(lb), 1e-12)
            raw = res.solution_loader.get_duals()
            duals = {name: float(raw.get(con) or 0.0) * obj_scale / scale for name, con, scale in rows}
            price = np.ones(n)
            if problem.budget is not None:
                price += duals["budget"]
            for c in problem.constraints:
                price[c.index] += duals.get(c.name, 0.0) * c.coef
            best = (spend, ub, gap, duals)
            interior = (y > 1e-9) & (y < 1 - 1e-9)
            marg = problem.marginal_return(spend)
            tol_p = KKT_TOL * np.abs(price)
            # interior cells must meet their price; a cell held at a bound must not want to move
            # (its first unit beyond the LP's steepest usable tangent may return more than the price)
            off = (interior & (np.abs(marg - price) > tol_p)) | ((y <= 1e-9) & (width > 0) & (marg > price + tol_p))
            if gap <= tol and not off.any():
                break
            loose = (f_lo + f_range * w) - problem.expected_value(spend) > 1e-12 * f_range
            refine = np.flatnonzero(loose | off)
            stalled = previous is not None and np.array_equal(spend, previous)
            if len(refine) == 0 or stalled:  # the LP's own tolerances are the limit; reported as is
                logger.warning("pyomo_highs stopped at gap %.3g (target %.3g), %d cells off their price",
                               gap, tol, int(off.sum()))
                break
            previous = spend
            priced = np.flatnonzero(off & (price > 0))
            if len(priced):
                add_cuts(spend_at_price(problem, price, lo, hi, priced), priced)
            add_cuts(spend[refine], refine)
        else:
            logger.warning("pyomo_highs reached %d rounds at gap %.3g (target %.3g)", MAX_ROUNDS, gap, tol)
        spend, ub, gap, duals = best
        budget_dual = duals.get("budget", 0.0)
        return SolveResult(
            spend=spend, solver=self.name, marginal_return=1.0 + budget_dual,
            optimality_gap=gap, upper_bound=ub, iterations=rounds,
            info={"cuts": len(m.cuts), "kkt_tolerance": KKT_RESOLUTION, "seconds": time.perf_counter() - t0,
                  "bound_method": "outer tangent-cut LP (valid upper bound for concave curves)"},
            constraint_duals={k: v for k, v in duals.items() if k != "budget"})
