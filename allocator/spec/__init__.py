"""Scenario and model specifications: schema, rules, loading."""

from .loader import load_model, load_scenario, read_mapping, scenario_from_dict
from .models import TASKS, BudgetSpec, canonical_data, CLVSpec, ModelFile, Scenario, SegmentSpec, SolverOptions, TaskSpec

__all__ = ["TASKS", "BudgetSpec", "CLVSpec", "ModelFile", "Scenario", "SegmentSpec", "SolverOptions",
           "TaskSpec", "canonical_data", "load_model", "load_scenario", "read_mapping", "scenario_from_dict"]
