"""The solver interface: capability flags, a result type, and feasibility pre-checks.

Modelled on cvxpy's reductions/solvers: each backend is one file with one
class declaring what it can do; the problem is compiled once into arrays and
the backend's answer comes back as arrays. Why a solver stopped
(``termination``) is kept apart from what it found (``spend``), as in Pyomo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..errors import InfeasibleError
from ..problem import CompiledProblem


@dataclass
class SolveResult:
    """What a solver returns.

    Attributes
    ----------
    spend : ndarray
        Total spend per cell.
    solver : str
        Name of the backend that produced it.
    termination : str
        ``optimal`` (within ``optimality_gap``), ``time_limit`` (the best plan found when
        ``solver.time_limit`` ran out, with its certified gap) or ``gap_limit`` (the global
        solver's round limit reached before the tolerance; the gap says how far).
    marginal_return : float or None
        The common marginal return (the budget multiplier) the solver found.
    optimality_gap : float
        Relative gap between the plan's objective and a valid upper bound
        on the optimum (0 for the exact solver up to round-off).
    upper_bound : float or None
        That upper bound, when the method produces one.
    iterations : int
        Outer iterations (multiplier trials, cut rounds, refinements).
    passes : int
        Vectorized passes over all cells (exact solver).
    info : dict
        Backend-specific figures (timings, model sizes).
    """

    spend: np.ndarray
    solver: str
    termination: str = "optimal"
    marginal_return: float | None = None
    optimality_gap: float = 0.0
    upper_bound: float | None = None
    iterations: int = 0
    passes: int = 0
    info: dict = field(default_factory=dict)
    constraint_duals: dict[str, float] = field(default_factory=dict)


class Solver:
    """Base class of solver backends."""

    name: ClassVar[str]
    handles_nonconcave: ClassVar[bool] = False
    handles_constraints: ClassVar[bool] = False
    handles_integer: ClassVar[bool] = False
    handles_efficiency: ClassVar[bool] = False
    objectives: ClassVar[tuple[str, ...]] = ("net_value",)
    description: ClassVar[str] = ""

    def can_solve(self, problem: CompiledProblem) -> str | None:
        """``None`` when this backend can solve ``problem``; else the reason it cannot."""
        if not self.handles_nonconcave and not problem.concave.all():
            bad = np.flatnonzero(~problem.concave)
            cells = ", ".join(problem.label(i) for i in bad[:5]) + (" ..." if len(bad) > 5 else "")
            return (f"solver '{self.name}' needs concave response curves; S-shaped or non-concave "
                    f"curves in cell(s) {cells}")
        if not self.handles_constraints and problem.constraints:
            names = ", ".join(c.name for c in problem.constraints[:5]) + (" ..." if len(problem.constraints) > 5 else "")
            return f"solver '{self.name}' does not handle general constraints ({names}); use solver 'global'"
        eff = getattr(problem, "efficiency", ())
        if not self.handles_efficiency and eff:
            names = ", ".join(e.name for e in eff[:5])
            hint = "" if self.name == "global" else "; use solver 'dual' (concave curves)"
            return f"solver '{self.name}' does not handle efficiency rules ({names}){hint}"
        integer = getattr(problem, "integer_features", [])
        if not self.handles_integer and integer:
            return (f"solver '{self.name}' does not handle integer features ({', '.join(integer)}); "
                    f"use solver 'global'")
        kind = getattr(getattr(problem, "objective", None), "kind", "net_value")
        if kind not in self.objectives:
            return f"solver '{self.name}' does not handle the '{kind}' objective; use solver 'global'"
        return None

    def solve(self, problem: CompiledProblem, tolerance: float | None = None) -> SolveResult:
        raise NotImplementedError

    def solve_with_response(self, problem: CompiledProblem,
                            tolerance: float | None = None) -> tuple[SolveResult, np.ndarray | None]:
        """:meth:`solve`, and ``problem.response(result.spend)`` when the backend computed it on its way
        (else None): a plan's table shows it, and need not evaluate every curve again."""
        return self.solve(problem, tolerance), None


def check_bounds_feasible(problem: CompiledProblem) -> None:
    """Raise :class:`InfeasibleError` naming the conflicting parts when bounds and budget cannot hold."""
    B = problem.budget
    if B is None:
        return
    total_min = float(problem.lower.sum())
    if total_min > B * (1 + 1e-12) + 1e-9:
        cells = np.flatnonzero(problem.lower > 0)
        order = cells[np.argsort(-problem.lower[cells])]
        listed = [f"min_spend of cell {problem.label(i)} = {problem.lower[i]:,.6g}" for i in order[:10]]
        if len(order) > 10:
            listed.append(f"... and {len(order) - 10} more cells with min_spend > 0")
        raise InfeasibleError(
            f"infeasible: the cells' min_spend add up to {total_min:,.6g}, more than budget.total = {B:,.6g}",
            conflict=[f"budget.total = {B:,.6g}"] + listed)
    if problem.use_all:
        total_max = float(problem.upper.sum())
        if total_max < B * (1 - 1e-12) - 1e-9:
            cells = np.flatnonzero(np.isfinite(problem.upper))
            listed = [f"max spend of cell {problem.label(i)} = {problem.upper[i]:,.6g}" for i in cells[:10]]
            raise InfeasibleError(
                f"infeasible: budget.use_all asks to spend {B:,.6g} but the cells can absorb at most "
                f"{total_max:,.6g} (max_spend and curve peaks)",
                conflict=[f"budget.total = {B:,.6g} with use_all: true"] + listed)
