"""Scenario analysis on solved problems: budget frontiers, sensitivities, uncertainty, baselines."""

from .baseline import baseline_spend, baseline_summary, money_moves
from .frontier import Frontier, MultiplierPath, budget_frontier

__all__ = ["Frontier", "MultiplierPath", "baseline_spend", "baseline_summary", "budget_frontier", "money_moves"]
