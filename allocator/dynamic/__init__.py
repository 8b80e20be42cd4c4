"""Plans over time: customers flowing between prospects, active and lapsed, period by period (issue 9).

spec (validated scenario) -> model (arrays) -> solve (prices, backward induction, master LP)
-> check (dynamic equal marginal returns) -> plan (plan.csv, flows.csv, summary.json).
"""

from .model import DynamicProblem, compile_dynamic
from .plan import DynamicPlan, build_dynamic_plan, plan_dynamic
from .solve import DynamicResult, solve_dynamic
from .spec import DynamicScenario, dynamic_from_dict, is_dynamic, load_dynamic

__all__ = ["DynamicProblem", "DynamicPlan", "DynamicResult", "DynamicScenario", "build_dynamic_plan",
           "compile_dynamic", "dynamic_from_dict", "is_dynamic", "load_dynamic", "plan_dynamic", "solve_dynamic"]
