"""The money of a plan, computed in one place: value, spend, activation cost and net value.

Every surface that prints or writes totals (plan, baseline line, frontier, sweep, what-if,
uncertainty) calls :func:`money_of` or :func:`money_rows`, so the identity

    net_value = value - spend - activation_cost

holds everywhere by construction. ``activation_cost`` is the fixed cost paid by every cell
that spends anything (``min_active`` rules and per-cell ``activation_cost``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .problem import CompiledProblem


@dataclass(frozen=True)
class Money:
    """Totals of one plan (or of a subset of its cells)."""

    value: float
    spend: float
    activation_cost: float
    net_value: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def activation_per_cell(problem: CompiledProblem, spend: np.ndarray) -> np.ndarray:
    """Activation cost paid per cell at ``spend`` (0 for cells that spend nothing)."""
    spend = np.asarray(spend, float)
    if problem.activation_cost is None:
        return np.zeros(spend.shape)
    return np.where(spend > 0, problem.activation_cost, 0.0)


def money_of(problem: CompiledProblem, spend: np.ndarray, cells: np.ndarray | None = None,
             expected_value: np.ndarray | None = None) -> Money:
    """Value, spend, activation cost and net value of ``spend`` (over the boolean mask ``cells``).

    ``expected_value`` is ``problem.expected_value(spend)`` when the caller has it already.
    """
    spend = np.asarray(spend, float)
    ev = problem.expected_value(spend) if expected_value is None else expected_value
    act = activation_per_cell(problem, spend)
    if cells is not None:
        ev, spend, act = ev[cells], spend[cells], act[cells]
    value, total, activation = float(ev.sum()), float(spend.sum()), float(act.sum())
    return Money(value=value, spend=total, activation_cost=activation, net_value=value - total - activation)


def money_rows(problem: CompiledProblem, S: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`money_of` for many plans at once: ``S`` has one plan per row (plans x cells)."""
    S = np.atleast_2d(np.asarray(S, float))
    x = S / problem.pool
    p = np.empty_like(S)
    for b in problem.blocks:
        p[:, b.index] = np.vstack([b.family.response(x[k, b.index], b.params) for k in range(len(S))]) \
            if len(S) else np.empty((0, len(b.index)))
    value = (p * (problem.pool * problem.value)).sum(axis=1)
    spend = S.sum(axis=1)
    act = (np.where(S > 0, problem.activation_cost, 0.0).sum(axis=1) if problem.activation_cost is not None
           else np.zeros(len(S)))
    return {"value": value, "spend": spend, "activation_cost": act, "net_value": value - spend - act}
