"""`treatment: uniform` (every member of a state gets the same spend in a period).

Truth: SLSQP on the direct formulation, which is uniform by construction; the partial-targeting
dual bound, which bounds uniform plans too.
"""

from __future__ import annotations

import numpy as np
import pytest

from allocator.dynamic import compile_dynamic, dynamic_from_dict, plan_dynamic
from allocator.dynamic.direct import solve_direct
from allocator.dynamic.examples import random_scenario
from allocator.errors import NumericalError


@pytest.mark.parametrize("budget", ["per_period", "total"])
def test_uniform_equals_partial_with_concave_curves_and_matches_slsqp(budget):
    data = random_scenario(1, 3, seed=11, budget=budget, tightness=0.4)
    partial = plan_dynamic(compile_dynamic(dynamic_from_dict(data)), tolerance=1e-10)
    data["treatment"] = "uniform"
    problem = compile_dynamic(dynamic_from_dict(data))
    uniform = plan_dynamic(problem, tolerance=1e-10)
    s = uniform.summary
    assert s["status"] == "optimal" and s["treatment"] == "uniform"
    # both within their certified gap (1e-10) of the same bound
    assert s["customer_equity"] == pytest.approx(partial.summary["customer_equity"], rel=2e-10)
    assert (uniform.table.levels == 1).all()
    ref = max(solve_direct(problem, x0=np.full((3, 1, 3), x0)).value for x0 in (0.0, 10.0, 40.0))
    assert s["customer_equity"] == pytest.approx(ref, rel=1e-6)
    assert s["customer_equity"] >= ref - 1e-7 * abs(ref)


def test_uniform_with_s_curves_is_certified_or_refused_with_a_reason():
    """S-curves and per-period budgets: the result is a single policy under the bound, or a clear refusal."""
    outcomes = set()
    for seed in range(6):
        data = random_scenario(3, 3, seed=seed, budget="per_period", tightness=0.5, s_curves=0.6)
        data["treatment"] = "uniform"
        problem = compile_dynamic(dynamic_from_dict(data))
        try:
            plan = plan_dynamic(problem)
        except NumericalError as exc:
            assert "treatment: uniform: S-curves make this plan non-convex" in str(exc)
            assert "use treatment: partial" in str(exc)
            outcomes.add("refused")
            continue
        s = plan.summary
        assert (plan.table.levels == 1).all()
        assert s["customer_equity"] <= s["upper_bound"] * (1 + 1e-12)
        assert s["optimality_gap"] <= 1e-6
        Wm, B = problem.budgets
        assert np.all(Wm @ np.array([b["spend"] for b in s["by_period"]]) <= B * (1 + 1e-9))
        outcomes.add("certified")
    assert "certified" in outcomes
