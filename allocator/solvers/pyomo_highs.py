"""Pyomo + HiGHS solver: an outer (tangent-cut) piecewise-linear LP, refined until certified.

For a concave cell value ``f(s) = pool * value * p(s / pool)`` every tangent
``f(t) + f'(t) (s - t)`` lies above ``f``, so the LP

    max  sum(v) - sum(s)
    s.t. v_i <= f_i(t) + f_i'(t) (s_i - t)   for the tangent points t of cell i
         budget row, bounds, and the general linear constraints of the problem

over-estimates the true problem: its optimum is an upper bound ``UB`` on the
true optimum, and its plan ``s*`` is feasible, so the true objective at ``s*`` is
a lower bound ``LB``. Cuts are added at ``s*`` (Kelley's cutting-plane method)
until ``(UB - LB) / |LB|`` is below the tolerance (default 1e-6). The model is
kept in a persistent HiGHS instance so each round only adds rows.

The Pyomo model is the one the general constraint language extends; for very
large plain problems the exact solver is the fast path.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from ..errors import NumericalError, SolverUnavailableError
from ..problem import CompiledProblem
from .base import SolveResult, Solver, check_bounds_feasible

logger = logging.getLogger(__name__)
INITIAL_TANGENTS = 8
MAX_ROUNDS = 200


def _cell_value_and_slope(problem: CompiledProblem, spend: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return problem.expected_value(spend), problem.marginal_return(spend, side="right")


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
            m = problem.marginal_return(cap)
            grow = open_ & (m >= 0.5)
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

        m = pyo.ConcreteModel(name=problem.name)
        m.I = pyo.RangeSet(0, n - 1)
        m.s = pyo.Var(m.I, bounds=lambda _, i: (float(lo[i]), float(hi[i])))
        m.v = pyo.Var(m.I)
        m.obj = pyo.Objective(expr=sum(m.v[i] - m.s[i] for i in m.I), sense=pyo.maximize)
        if problem.budget is not None:
            total = sum(m.s[i] for i in m.I)
            m.budget = pyo.Constraint(expr=(total == problem.budget) if problem.use_all
                                      else (total <= problem.budget))
        m.general = pyo.ConstraintList()
        general = []
        for c in problem.constraints:
            expr = sum(float(a) * m.s[int(i)] for i, a in zip(c.index, c.coef))
            general.append((c.name, m.general.add(
                pyo.inequality(None if math.isinf(c.lower) else c.lower, expr,
                               None if math.isinf(c.upper) else c.upper))))
        m.cuts = pyo.ConstraintList()

        def add_cuts(points: np.ndarray, cells: np.ndarray) -> None:
            full = np.zeros(n)
            full[cells] = points
            fv, gv = _cell_value_and_slope(problem, full)
            for i in cells:
                m.cuts.add(m.v[int(i)] <= float(fv[i]) + float(gv[i]) * (m.s[int(i)] - float(full[i])))

        grid = np.linspace(0.0, 1.0, INITIAL_TANGENTS)
        all_cells = np.arange(n)
        for frac in grid:
            add_cuts(lo + frac * (hi - lo), all_cells)

        opt = Highs()
        opt.config.load_solutions = False
        ub = lb = math.nan
        spend = lo.copy()
        rounds = 0
        for rounds in range(1, MAX_ROUNDS + 1):
            res = opt.solve(m)
            status = str(res.termination_condition)
            if "infeasible" in status.lower():
                from ..errors import InfeasibleError
                raise InfeasibleError("infeasible: the constraints cannot hold together (HiGHS)",
                                      conflict=[name for name, _ in general] + (["budget"] if problem.budget is not None else []))
            if "convergenceCriteriaSatisfied" not in status:
                raise NumericalError(f"HiGHS stopped with {status}")
            res.solution_loader.load_vars()
            spend = np.clip(np.array([pyo.value(m.s[i]) for i in range(n)]), lo, hi)
            vhat = np.array([pyo.value(m.v[i]) for i in range(n)])
            ub = float(res.incumbent_objective)
            lb = problem.net_value(spend)
            gap = (ub - lb) / max(abs(lb), 1e-12)
            if gap <= tol:
                break
            fv = problem.expected_value(spend)
            loose = np.flatnonzero(vhat - fv > 0.0)
            if len(loose) == 0:  # the LP's own tolerances are the limit; the gap is reported as is
                logger.warning("pyomo_highs stopped at gap %.3g > %.3g: no cut improves the LP", gap, tol)
                break
            add_cuts(spend[loose], loose)
        else:
            raise NumericalError(f"pyomo_highs did not reach gap {tol:g} in {MAX_ROUNDS} rounds (gap {gap:.3g})")
        duals = res.solution_loader.get_duals()
        budget_dual = abs(float(duals.get(m.budget, 0.0))) if problem.budget is not None else 0.0
        constraint_duals = {name: float(duals.get(con, 0.0)) for name, con in general}
        return SolveResult(
            spend=spend, solver=self.name, marginal_return=1.0 + budget_dual if not problem.use_all else None,
            optimality_gap=max(gap, 0.0), upper_bound=ub, iterations=rounds,
            info={"cuts": len(m.cuts), "seconds": time.perf_counter() - t0, "lp_bound_method":
                  "outer tangent-cut LP (valid upper bound for concave curves)"},
            constraint_duals=constraint_duals)
