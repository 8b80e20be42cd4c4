"""Baseline (current spend) beside an optimized plan: value gained and where the money moved."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..problem import CompiledProblem


def baseline_spend(problem: CompiledProblem) -> np.ndarray:
    """Today's spend per cell: ``current_spend`` where given, the cell's lower bound elsewhere."""
    return np.where(np.isnan(problem.current_spend), problem.lower, problem.current_spend)


def has_baseline(problem: CompiledProblem) -> bool:
    return bool((~np.isnan(problem.current_spend)).any())


def money_moves(problem: CompiledProblem, spend: np.ndarray, top: int | None = None) -> pd.DataFrame:
    """Per cell: current and planned spend and value, sorted by the size of the change (largest first).

    Parameters
    ----------
    problem : CompiledProblem
    spend : ndarray
        The optimized plan.
    top : int, optional
        Keep only the ``top`` largest increases and ``top`` largest cuts.
    """
    cur = baseline_spend(problem)
    spend = np.asarray(spend, float)
    df = pd.DataFrame({
        "segment": problem.segment, "task": problem.task, "current_spend": cur, "plan_spend": spend,
        "spend_change": spend - cur,
        "current_value": problem.expected_value(cur), "plan_value": problem.expected_value(spend),
    })
    df["net_value_change"] = (df["plan_value"] - df["plan_spend"]) - (df["current_value"] - df["current_spend"])
    df = df.iloc[np.argsort(-np.abs(df["spend_change"].to_numpy()), kind="stable")].reset_index(drop=True)
    if top is not None:
        inc = df[df["spend_change"] > 0].head(top)
        cut = df[df["spend_change"] < 0].head(top)
        df = pd.concat([inc, cut], ignore_index=True)
    return df


def baseline_summary(problem: CompiledProblem, spend: np.ndarray) -> dict:
    """Net value of the baseline and of the plan, the gain, and the largest increases and cuts."""
    cur = baseline_spend(problem)
    moves = money_moves(problem, spend, top=3)
    base, plan = problem.net_value(cur), problem.net_value(spend)
    return {"baseline_spend": float(cur.sum()), "baseline_net_value": base, "plan_net_value": plan,
            "net_value_gained": plan - base,
            "largest_increases": moves[moves["spend_change"] > 0][["segment", "task", "spend_change"]]
            .to_dict("records"),
            "largest_cuts": moves[moves["spend_change"] < 0][["segment", "task", "spend_change"]].to_dict("records")}
