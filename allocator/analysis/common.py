"""Shared input handling for the analysis functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..problem import CompiledProblem


def as_scenario(obj: Any):
    """A validated Scenario from a path, mapping or Scenario (``None`` for plans and compiled problems)."""
    from ..spec import Scenario, load_scenario, scenario_from_dict

    if isinstance(obj, (str, Path)):
        return load_scenario(obj)
    if isinstance(obj, Scenario):
        return obj
    if isinstance(obj, dict):
        return scenario_from_dict(obj)
    return None


def as_problem(obj: Any) -> CompiledProblem:
    """A CompiledProblem from a path, mapping, Scenario, Plan or CompiledProblem."""
    from ..compile import compile_scenario
    from ..plan import Plan

    if isinstance(obj, CompiledProblem):
        return obj
    if isinstance(obj, Plan):
        return obj.problem
    sc = as_scenario(obj)
    if sc is None:
        raise TypeError(f"expected a scenario path, mapping, Scenario, Plan or CompiledProblem; got {type(obj).__name__}")
    return compile_scenario(sc)


def non_separable_reason(problem: CompiledProblem) -> str | None:
    """Why ``problem`` is not the plain net-value problem (integer features, another objective), or ``None``.

    The multiplier path and the risk optimizer work on ``max sum f_i(s_i) - sum s_i`` under linear
    rows and bounds; scenarios using the constraint language's integer features or a target/hurdle
    objective are handled by the regular solvers instead.
    """
    features = list(getattr(problem, "integer_features", []) or [])
    if features:
        return f"it uses {', '.join(features)}"
    obj = getattr(problem, "objective", None)
    if obj is not None and (getattr(obj, "kind", "net_value") != "net_value" or getattr(obj, "rate", 1.0) != 1.0):
        return f"its objective is {getattr(obj, 'kind', '?')}, not net value"
    return None
