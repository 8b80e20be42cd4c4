"""Scenario analysis of multi-period plans: the frontier over the total budget.

Each budget is solved afresh by :func:`allocator.dynamic.solve.solve_dynamic` (certified at each
point); the multiplier path of the static frontier has no multi-period counterpart yet.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from .model import DynamicProblem
from .solve import solve_dynamic


def dynamic_frontier(problem: DynamicProblem, budgets: np.ndarray, tolerance: float | None = None) -> pd.DataFrame:
    """Customer equity, spend, shadow price and certified gap at each total budget in ``budgets``.

    Per-period budgets, if any, stay in force beside the total.
    """
    rows = []
    for b in np.asarray(budgets, float):
        res = solve_dynamic(dataclasses.replace(problem, budget_total=float(b)), tolerance)
        spend = sum(w * c.outcome.spend for c, w in zip(res.columns, res.weights))
        price = float(res.price[-1]) if res.rows is not None and len(res.price) else 0.0
        rows.append({"budget": float(b), "customer_equity": res.primal, "total_spend": float(np.sum(spend)),
                     "budget_shadow_price": price, "optimality_gap": res.gap, "status": res.termination})
    return pd.DataFrame(rows)
