"""Baseline (current spend) beside an optimized plan: value gained and where the money moved.

One baseline everywhere (plan summary, frontier, sweep): each cell spends its ``current_spend``
where given and its lower bound elsewhere, over all cells, and pays its activation cost when it
spends anything. Its money comes from :func:`allocator.money.money_of`, like the plan's, so
``gain = plan net value - baseline net value`` compares like with like.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..money import Money, activation_per_cell, money_of
from ..problem import CompiledProblem


def baseline_spend(problem: CompiledProblem) -> np.ndarray:
    """Today's spend per cell: ``current_spend`` where given, the cell's lower bound elsewhere."""
    return np.where(np.isnan(problem.current_spend), problem.lower, problem.current_spend)


def has_baseline(problem: CompiledProblem) -> bool:
    return bool((~np.isnan(problem.current_spend)).any())


def baseline_money(problem: CompiledProblem) -> Money:
    """Value, spend, activation cost and net value of the baseline (see the module docstring)."""
    return money_of(problem, baseline_spend(problem))


def money_moves(problem: CompiledProblem, spend: np.ndarray, top: int | None = None) -> pd.DataFrame:
    """Per cell: current and planned spend and value, sorted by the size of the change (largest first).

    Parameters
    ----------
    problem : CompiledProblem
    spend : ndarray
        The optimized plan.
    top : int, optional
        Keep only the ``top`` largest increases and ``top`` largest cuts.

    Returns
    -------
    pandas.DataFrame
        ``net_value_change`` includes the activation cost a cell starts or stops paying, so the
        column sums to the plan's gain over the baseline.
    """
    cur = baseline_spend(problem)
    spend = np.asarray(spend, float)
    df = pd.DataFrame({
        "segment": problem.segment, "task": problem.task, "current_spend": cur, "plan_spend": spend,
        "spend_change": spend - cur,
        "current_value": problem.expected_value(cur), "plan_value": problem.expected_value(spend),
    })
    act_change = activation_per_cell(problem, spend) - activation_per_cell(problem, cur)
    df["net_value_change"] = (df["plan_value"] - df["current_value"]) - df["spend_change"] - act_change
    df = df.iloc[np.argsort(-np.abs(df["spend_change"].to_numpy()), kind="stable")].reset_index(drop=True)
    if top is not None:
        inc = df[df["spend_change"] > 0].head(top)
        cut = df[df["spend_change"] < 0].head(top)
        df = pd.concat([inc, cut], ignore_index=True)
    return df


def baseline_summary(problem: CompiledProblem, spend: np.ndarray) -> dict:
    """Money of the baseline and of the plan, the gain, and the largest increases and cuts."""
    base, plan = baseline_money(problem), money_of(problem, spend)
    moves = money_moves(problem, spend, top=3)
    return {"baseline_spend": base.spend, "baseline_value": base.value,
            "baseline_activation_cost": base.activation_cost, "baseline_net_value": base.net_value,
            "plan_net_value": plan.net_value, "net_value_gained": plan.net_value - base.net_value,
            "largest_increases": moves[moves["spend_change"] > 0][["segment", "task", "spend_change"]]
            .to_dict("records"),
            "largest_cuts": moves[moves["spend_change"] < 0][["segment", "task", "spend_change"]].to_dict("records")}
