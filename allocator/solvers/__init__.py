"""Solver backends behind one interface, and the automatic choice between them."""

from __future__ import annotations

import numpy as np

from ..errors import NumericalError, SolverUnavailableError
from ..problem import CompiledProblem
from .base import SolveResult, Solver, check_bounds_feasible
from .dual_rules import DualSolver
from .exact import ExactSolver
from .global_milp import GlobalSolver
from .pyomo_highs import PyomoHighsSolver
from .scurve import EnvelopeSolver

SOLVERS: dict[str, Solver] = {s.name: s for s in (ExactSolver(), PyomoHighsSolver(), DualSolver(), EnvelopeSolver(), GlobalSolver())}
AUTO = "auto"
# the automatic choice, fastest first: concave problems with one budget and no integer
# features go to the exact multiplier solver; concave problems with rules (linear or
# average-efficiency) to the dual method, which falls back to the global MILP when it
# cannot certify its tolerance; S-shaped curves under one budget to the envelope solver, which
# likewise falls back to the global MILP when its Lagrangian bound does not certify the tolerance
# (small hard cases); everything else to the global MILP
AUTO_ORDER = ("exact", "dual", "envelope", "global")
#: auto skips a backend on problems with fewer cells: below 100 S-curve cells the MILP answers in
#: about a second and the envelope's repair of its few jump cells is weakest (SOLVER-NOTES)
AUTO_MIN_CELLS = {"envelope": 100}


def choose_solver(problem: CompiledProblem) -> Solver:
    """The fastest backend that can certify an optimum of ``problem``."""
    reasons = []
    for name in AUTO_ORDER:
        if problem.n < AUTO_MIN_CELLS.get(name, 0):
            reasons.append(f"solver '{name}' is used automatically from {AUTO_MIN_CELLS[name]} cells")
            continue
        why = SOLVERS[name].can_solve(problem)
        if why is None:
            return SOLVERS[name]
        reasons.append(why)
    raise SolverUnavailableError("no solver can handle this problem: " + "; ".join(dict.fromkeys(reasons)))


def solve(problem: CompiledProblem, solver: str = AUTO, tolerance: float | None = None) -> SolveResult:
    """Solve ``problem`` with the named backend (``auto`` picks one).

    Raises
    ------
    SolverUnavailableError
        When the named backend cannot handle the problem (e.g. S-shaped curves).
    InfeasibleError
        When bounds, budget and constraints cannot hold together.
    """
    return solve_with_response(problem, solver, tolerance)[0]


def solve_with_response(problem: CompiledProblem, solver: str = AUTO,
                        tolerance: float | None = None) -> tuple[SolveResult, np.ndarray | None]:
    """:func:`solve`, and ``problem.response(result.spend)`` when the backend computed it on its way
    (:meth:`Solver.solve_with_response`; else None)."""
    if solver == AUTO:
        backend = choose_solver(problem)
        if backend.name in ("dual", "envelope") and SOLVERS["global"].can_solve(problem) is None:
            # the dual route must certify its tolerance; otherwise the global MILP answers
            try:
                result = backend.solve(problem, tolerance)
            except NumericalError:
                return SOLVERS["global"].solve(problem, tolerance), None
            return (result if result.termination == "optimal" else SOLVERS["global"].solve(problem, tolerance)), None
    else:
        if solver not in SOLVERS:
            raise SolverUnavailableError(f"unknown solver '{solver}'; known: {', '.join([AUTO, *SOLVERS])}")
        backend = SOLVERS[solver]
        why = backend.can_solve(problem)
        if why is not None:
            raise SolverUnavailableError(why)
    return backend.solve_with_response(problem, tolerance)


__all__ = ["SOLVERS", "AUTO", "GlobalSolver", "SolveResult", "Solver", "check_bounds_feasible", "choose_solver", "solve",
           "solve_with_response"]
