"""Scenario sets: variants of a base scenario, solved in parallel, tabulated (``allocator sweep``)."""

from .execution import ProgressBar, SerialExecutor, open_executor
from .sweep import Sweep, SweepResult, run_sweep, solve_variant
from .variants import Variant, expand_variants, variant_scenario


def with_overrides(scenario, overrides):
    """A validated copy of ``scenario`` with dotted-path overrides applied.

    >>> import allocator
    >>> sc = allocator.scenario_from_dict({"name": "s", "budget": {"total": 100.0}, "segments": [{"id": "a",
    ...     "tasks": {"acquisition": {"pool": 100, "value": 50, "curve": {"family": "exponential",
    ...     "ceiling": 0.5, "rate": 1.0}}}}]})
    >>> with_overrides(sc, {"budget.total": {"scale": 2}}).budget.total
    200.0
    """
    from ..spec import scenario_from_dict
    from ..spec.overrides import apply_overrides
    from .variants import base_mapping

    return scenario_from_dict(apply_overrides(base_mapping(scenario), overrides))


__all__ = ["ProgressBar", "SerialExecutor", "Sweep", "SweepResult", "Variant", "expand_variants", "open_executor",
           "run_sweep", "solve_variant", "variant_scenario", "with_overrides"]
