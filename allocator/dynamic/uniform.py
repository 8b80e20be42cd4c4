"""Uniform treatment: every member of a state gets the same spend in a period (``treatment: uniform``).

Partial targeting (the default) lets a plan treat shares of a state's members at different
spend levels; its problem is the linear program solved, with a certificate, by
:mod:`allocator.dynamic.solve`. Uniform treatment restricts that LP to plans with a single
level per (period, segment, task), so

* the LP's dual bound is also a bound for uniform plans, and
* a partial-targeting optimum that uses one level in every cell *is* a uniform optimum.

With concave curves this is the usual case: at the certificate's prices every cell has one
best level, and the plan is one policy. With S-curves (or value curves) several budget rows
can leave cells mixing a "treat" and a "don't treat" level; the uniform problem is then
non-convex. This module then takes the best budget-feasible single policy among those the
solver evaluated (each is a uniform plan) and certifies it against the same dual bound; when
that gap exceeds the tolerance, it refuses with a message saying so. It does not branch over
the mixed cells (a global search over 2^(mixed cells) restricted problems would need per-period
spend bounds, which the compiled problem does not have yet).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import NumericalError
from .model import DynamicProblem
from .solve import DynamicResult, solve_dynamic


def is_uniform(result: DynamicResult, share: float = 1e-9) -> bool:
    """Does the plan use one spend level in every cell that has members?"""
    used = [c for c, w in zip(result.columns, result.weights) if w > share]
    ref = used[0]
    for c in used[1:]:
        live = (ref.outcome.n[:-1] > 1e-12) | (c.outcome.n[:-1] > 1e-12)
        if np.any(live & (np.abs(c.policy.x - ref.policy.x) > 1e-9 * np.maximum(1.0, np.abs(ref.policy.x)))):
            return False
    return True


def solve_uniform(problem: DynamicProblem, tolerance: float | None = None) -> DynamicResult:
    """The uniform-treatment optimum of ``problem``, certified against the partial-targeting dual bound.

    Raises
    ------
    NumericalError
        When no single evaluated policy is feasible and within the tolerance of the bound
        (S-curves with several binding budget rows: the message gives the gap found).
    """
    tol = problem.tolerance if tolerance is None else tolerance
    res = solve_dynamic(problem, tol)
    if is_uniform(res):
        res.info["treatment"] = "uniform (the partial-targeting optimum uses one level per cell)"
        return res
    feasible = []
    for c in res.columns:
        if not np.isfinite(c.outcome.value) or res.rows is None:
            continue
        Wm, B = res.rows
        used = Wm @ c.outcome.spend
        size = np.maximum(np.maximum(np.abs(B), np.abs(Wm) @ c.outcome.spend), 1.0)
        ok = np.all(used <= B + 1e-9 * size) and np.all(np.abs(used - B)[problem.budget_equal] <= 1e-9 * size[
            problem.budget_equal])
        if ok:
            feasible.append(c)
    best = max(feasible, key=lambda c: c.outcome.value, default=None)
    gap = np.inf if best is None else max(res.upper_bound - best.outcome.value, 0.0) / max(
        abs(best.outcome.value), 1.0)
    if best is None or gap > tol:
        found = "no single policy meets the budgets" if best is None else (
            f"the best single policy found is {gap:.2e} below the bound")
        raise NumericalError(
            f"treatment: uniform: S-curves make this plan non-convex (the partial-targeting optimum mixes "
            f"spend levels in some cells) and {found} (tolerance {tol:.1e}); the global search for uniform "
            f"multi-period plans is not available: use treatment: partial (certified), or loosen "
            f"solver.tolerance")
    weights = np.array([1.0 if c is best else 0.0 for c in res.columns])
    return dataclasses.replace(res, weights=weights, primal=best.outcome.value, gap=gap,
                               termination="optimal",
                               info={**res.info, "treatment": "uniform (best single policy, certified "
                                                              "against the partial-targeting bound)"})
