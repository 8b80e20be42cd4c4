"""allocator: marketing resource allocation across acquisition, retention and win-back.

Typical use::

    import allocator
    plan = allocator.plan("scenarios/example.yaml")
    plan.table          # pandas DataFrame, one row per (segment, task) cell
    plan.summary        # totals, common marginal return, optimality evidence
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .compile import compile_scenario
from .errors import AllocatorError, InfeasibleError, NumericalError, SolverUnavailableError, SpecError
from .optimality import check_optimality
from .plan import Plan, PlanSummary, build_plan, make_plan
from .problem import CompiledProblem
from .solvers import SOLVERS, solve
from .spec import Scenario, load_model, load_scenario, scenario_from_dict
from .value import lifetime_value

__version__ = "0.1.0"


def plan(scenario: str | Path | Scenario | Mapping[str, Any], solver: str | None = None,
         tolerance: float | None = None) -> Plan:
    """Solve a scenario and return its :class:`Plan`.

    Parameters
    ----------
    scenario : path, Scenario or mapping
        A scenario file, a validated :class:`Scenario`, or a dict with the file's content.
    solver : str, optional
        ``auto`` (default: the scenario's ``solver.name``), ``exact`` or ``pyomo_highs``.
    tolerance : float, optional
        Relative optimality gap for approximate solvers.

    Returns
    -------
    Plan
        ``plan.table`` (DataFrame) and ``plan.summary``.

    Examples
    --------
    >>> p = plan({"name": "two", "budget": {"total": 100.0}, "segments": [{"id": "a", "tasks": {
    ...     "acquisition": {"pool": 100, "value": 50, "curve": {"family": "exponential",
    ...                     "ceiling": 0.5, "rate": 1.0}}}}]})
    >>> round(p.summary.total_spend, 6)
    100.0
    """
    if isinstance(scenario, (str, Path)):
        sc = load_scenario(scenario)
    elif isinstance(scenario, Scenario):
        sc = scenario
    else:
        sc = scenario_from_dict(scenario, solver_names=("auto", *SOLVERS))
    problem = compile_scenario(sc)
    return make_plan(problem, solver or sc.solver.name, tolerance if tolerance is not None else sc.solver.tolerance)


# constraints and the global solver (issue 3)
from .infeasibility import find_conflict  # noqa: E402
from .problem import LinearConstraint, ObjectiveSpec  # noqa: E402
from .solvers.global_milp import GlobalSolver  # noqa: E402
from .spec.constraints import (HurdleObjective, LockConstraint, MinActiveConstraint, NamedBudget,  # noqa: E402
                               NetValueObjective, RatioConstraint, Selector, ShareConstraint, SpendConstraint,
                               TargetObjective)

# scenario analysis (issue 5): frontiers, sensitivities, uncertainty, sweeps
from .analysis import budget_frontier, money_moves  # noqa: E402
from .analysis.sensitivity import sensitivity, what_if_move  # noqa: E402
from .analysis.uncertainty import (compare_risk, draw_samples, evaluate_plan,  # noqa: E402
                                   optimize_risk)
from .scenarios import Sweep, run_sweep, with_overrides  # noqa: E402
from .dynamic import DynamicPlan, compile_dynamic, load_dynamic, plan_dynamic  # noqa: E402
from .analysis.whatif import InfeasibleMoveError  # noqa: E402
from .spec.constraints import EfficiencyConstraint  # noqa: E402

frontier = budget_frontier

__all__ = [
    "GlobalSolver", "HurdleObjective", "LinearConstraint", "LockConstraint", "MinActiveConstraint", "NamedBudget",
    "NetValueObjective", "ObjectiveSpec", "RatioConstraint", "Selector", "ShareConstraint", "SpendConstraint",
    "TargetObjective", "find_conflict", "EfficiencyConstraint", "InfeasibleMoveError",
    "DynamicPlan", "compile_dynamic", "load_dynamic", "plan_dynamic",
    "Sweep", "budget_frontier", "compare_risk", "draw_samples", "evaluate_plan", "frontier", "money_moves",
    "optimize_risk", "run_sweep", "sensitivity", "what_if_move", "with_overrides",
    "AllocatorError", "CompiledProblem", "InfeasibleError", "NumericalError", "Plan", "PlanSummary",
    "Scenario", "SolverUnavailableError", "SpecError", "build_plan", "check_optimality", "compile_scenario",
    "lifetime_value", "load_model", "load_scenario", "make_plan", "plan", "scenario_from_dict", "solve",
]
