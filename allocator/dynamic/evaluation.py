"""A solved plan's policy followed under other parameters: per-segment values and spend.

The plan is a mixture of whole-population policies (share ``w_j`` of every state's members
follows policy ``j``, each a spend per member per (period, segment, state)). Holding those
spends per member and shares fixed, the plan's discounted net value and its nominal spend per
period are re-computed for a problem whose parameters (margins, members, curves, values,
terminal values, arrivals) differ from the ones it was solved for. Segments do not interact
once the spend per member is fixed, so every figure is returned per segment: one pass
evaluates a change of the same parameter in every segment at once.

This serves :mod:`allocator.dynamic.sensitivity` (the envelope theorem: the derivative of the
optimum equals the derivative of the Lagrangian at a fixed plan), :mod:`allocator.dynamic.whatif`
(a plan with moved spend) and :mod:`allocator.dynamic.uncertainty` (the plan under sampled
parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bellman import oneoff
from .model import A, FAIL_DEST, DynamicProblem
from .solve import DynamicResult
from .steady import _evaluate


@dataclass
class FixedPlan:
    """The plan's policies: ``x[j]`` (T, S, 3) spend per member, ``weights[j]`` the share following it.

    ``steady_x`` is the stationary spend per member after period T (infinite horizons).
    """

    x: np.ndarray
    weights: np.ndarray
    steady_x: np.ndarray | None = None
    #: optional (J, T, S, 3): hold each policy's nominal spend per cell instead of its spend per member
    cell_spend: np.ndarray | None = None

    def holding_spend(self, problem: DynamicProblem) -> "FixedPlan":
        """The same plan, its nominal spend per cell (as in ``problem``) held instead of its spend per member."""
        cells = np.stack([follow(problem, xj, self.steady_x).n[:-1] * xj for xj in self.x])
        return FixedPlan(self.x, self.weights, self.steady_x, cells)


def fixed_plan(result: DynamicResult, min_share: float = 0.0) -> FixedPlan:
    """The policies and shares of ``result`` (policies with a share above ``min_share``)."""
    used = [(c, w) for c, w in zip(result.columns, result.weights) if w > min_share]
    w = np.array([w for _, w in used])
    return FixedPlan(x=np.stack([c.policy.x for c, _ in used]), weights=w / w.sum(),
                     steady_x=None if result.steady is None else result.steady.x.copy())


@dataclass
class SegmentOutcome:
    """Per segment: discounted net value ``value`` (S,), nominal ``spend`` (T, S) and members ``n`` (T + 1, S, 3).

    ``x`` (T, S, 3) is the spend per member followed (for a single policy).
    """

    value: np.ndarray
    spend: np.ndarray
    n: np.ndarray
    x: np.ndarray | None = None


def follow(problem: DynamicProblem, x: np.ndarray | None, steady_x: np.ndarray | None = None,
           cell_spend: np.ndarray | None = None) -> SegmentOutcome:
    """Follow one policy ``x`` (T, S, 3) forward from the starting members, per segment.

    With ``cell_spend`` (T, S, 3) instead of ``x`` the policy is given as nominal spend per
    cell; the spend per member follows from the members each period brings (0 without members).

    The value counts margins, one-off values and spend of periods 1..T (discounted) and the
    members left after period T at the end values: ``disc_T * terminal`` for a finite horizon;
    for an infinite one the exact values of the stationary policy ``steady_x`` under this
    problem's parameters, plus the new prospects of every later period.
    """
    T, S = problem.T, problem.S
    n = np.zeros((T + 1, S, 3))
    n[0] = problem.members
    spend = np.zeros((T, S))
    value = np.zeros(S)
    x = np.array(x, float) if x is not None else np.zeros((T, S, 3))
    for t in range(1, T + 1):
        dt = problem.disc(t)
        cur = n[t - 1]
        if cell_spend is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                x[t - 1] = np.where(cur > 0, cell_spend[t - 1] / np.where(cur > 0, cur, 1.0), 0.0)
        xt = x[t - 1]
        p = np.column_stack([problem.response(k, xt[:, k]) for k in range(3)])
        succ = cur * p
        failed = (cur - succ) * problem.keep
        nxt = np.zeros((S, 3))
        nxt[:, A] = succ.sum(axis=1)
        for k in range(3):
            nxt[:, FAIL_DEST[k]] += failed[:, k]
        spend[t - 1] = (cur * xt).sum(axis=1)
        value += dt * ((problem.margin * nxt).sum(axis=1) + (oneoff(problem, xt) * succ).sum(axis=1)
                       - spend[t - 1])
        if t < T:
            nxt[:, 0] += problem.arrivals[t + 1]
        n[t] = nxt
    if problem.steady_state:
        assert steady_x is not None
        d = problem.discount
        p = np.column_stack([problem.response(k, steady_x[:, k]) for k in range(3)])
        W = _evaluate(problem, steady_x, p)
        after = (1.0 + d) ** -T
        value += after * (W * n[T]).sum(axis=1)
        value += problem.steady_arrivals * W[:, 0] * after * (1.0 + d) / d
    else:
        value += problem.disc(T) * (problem.terminal * n[T]).sum(axis=1)
    return SegmentOutcome(value=value, spend=spend, n=n, x=x)


def follow_plan(problem: DynamicProblem, plan: FixedPlan) -> SegmentOutcome:
    """The mixture: share-weighted values, spend and members of every policy of ``plan``."""
    value = spend = n = 0.0
    for j, (xj, w) in enumerate(zip(plan.x, plan.weights)):
        o = follow(problem, None if plan.cell_spend is not None else xj, plan.steady_x,
                   None if plan.cell_spend is None else plan.cell_spend[j])
        value, spend, n = value + w * o.value, spend + w * o.spend, n + w * o.n
    return SegmentOutcome(value=np.asarray(value), spend=np.asarray(spend), n=np.asarray(n))
