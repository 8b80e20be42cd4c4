"""The shared optimality check run on every solver's plan.

For a separable problem with one budget, a plan is optimal (for concave curves;
a necessary condition otherwise) when it is feasible and there is a common
marginal return ``lam`` such that

* every cell strictly inside its bounds has ``value * p'(x) = lam``
  (for a kinked curve: ``p'(x+) <= lam / value <= p'(x-)``);
* a cell at its lower bound (zero or ``min_spend``) has ``value * p'(x+) <= lam``;
* a cell at its upper bound has ``value * p'(x-) >= lam``;
* ``lam = 1`` when the budget does not bind and ``use_all`` is off, and
  ``lam >= 1`` when it binds (``lam - 1`` is the budget's shadow price).

``lam`` is estimated from the plan itself (median interior marginal return), so
the check does not trust the solver's own multiplier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .explain.decompose import Decomposition, decompose
from .explain.prices import (BOUND_LOCKED, BOUND_LOWER, BOUND_NONE, BOUND_OFF, BOUND_UPPER, BOUND_ZERO, Prices,
                             bound_violations, classify_bounds, classify_cells, nudged_slopes)
from .problem import CompiledProblem

__all__ = ["BOUND_LOCKED", "BOUND_LOWER", "BOUND_NONE", "BOUND_OFF", "BOUND_UPPER", "BOUND_ZERO",
           "OptimalityReport", "bound_violations", "check_optimality", "classify_bounds", "classify_cells"]


@dataclass
class OptimalityReport:
    """Outcome of :func:`check_optimality`; ``ok`` summarizes the rest."""

    feasible: bool
    budget_binds: bool
    marginal_return: float
    kkt_max_deviation: float
    complementarity_violations: list[str] = field(default_factory=list)
    feasibility_violations: list[str] = field(default_factory=list)
    bound: np.ndarray = field(default_factory=lambda: np.array([]))
    ok: bool = True
    # several constraints (see :mod:`allocator.kkt`): estimated shadow price per binding row
    # (value per currency unit), which end each binding row sits at, whether the marginal
    # conditions apply, and each cell's required return
    shadow_prices: dict[str, float] = field(default_factory=dict)
    binding: dict[str, str] = field(default_factory=dict)
    applicable: bool = True
    note: str = ""
    price: np.ndarray | None = None
    #: the one explanation of the plan: prices of what binds and every cell's required return
    decomposition: Decomposition | None = None
    activity: dict[str, float] = field(default_factory=dict)
    #: ``problem.marginal_return(spend)`` when the check computed it on the way (one budget), else None
    marginal_at_plan: np.ndarray | None = field(default=None, repr=False, compare=False)


def check_optimality(problem: CompiledProblem, spend: np.ndarray, rtol: float = 1e-6) -> OptimalityReport:
    """Check feasibility, equal marginal returns on interior cells and complementarity at bounds.

    Parameters
    ----------
    problem : CompiledProblem
    spend : ndarray
        Total spend per cell.
    rtol : float
        Relative tolerance on marginal returns and budget.

    Returns
    -------
    OptimalityReport
    """
    spend = np.asarray(spend, float)
    from .kkt import needs_general

    if needs_general(problem):
        return _check_general(problem, spend, rtol)
    feas = bound_violations(problem, spend, rtol)
    total = float(spend.sum())
    B = problem.budget
    budget_binds = False
    if B is not None:
        if total > B * (1 + rtol) + 1e-6:
            feas.append(f"total spend {total:.10g} exceeds budget {B:.10g}")
        if problem.use_all and total < B * (1 - rtol) - 1e-6:
            feas.append(f"total spend {total:.10g} falls short of budget {B:.10g} with use_all")
        budget_binds = total >= B * (1 - 1e-9) - 1e-9
    bound = classify_bounds(problem, spend)
    # one-sided marginal returns a hair away from the plan (see curve_slopes); the median below
    # uses the marginal return at the plan itself
    pr, pl, at_plan = nudged_slopes(problem, spend)
    slopes = (pr, pl)
    right0 = problem.value * at_plan  # problem.marginal_return(spend, "right"), without evaluating it again
    right, left = problem.value * pr, problem.value * pl
    interior = bound == BOUND_NONE
    smooth = interior & _isclose(left, right, 1e-6)

    if not budget_binds and not problem.use_all:
        lam = 1.0
    elif smooth.any():
        lam = _median(right0[smooth])
    elif interior.any():
        lam = float(np.clip(1.0, right[interior].max(), left[interior].min())) if not problem.use_all else \
            float(0.5 * (right[interior].max() + left[interior].min()))
    else:
        # every cell at a bound: any lam between the largest lower-bound marginal and the
        # smallest upper-bound marginal certifies the plan; take the midpoint (at least 1).
        lows = right[(bound == BOUND_LOWER) | (bound == BOUND_ZERO)]
        highs = left[bound == BOUND_UPPER]
        lo_l = lows.max() if lows.size else 0.0
        hi_l = highs.min() if highs.size else max(lo_l, 1.0)
        lam = float(max(lo_l, min(hi_l, max(1.0, lo_l)))) if not problem.use_all else float(0.5 * (lo_l + hi_l))

    binding: dict[str, str] = {}
    rows: dict[str, float] = {}
    if B is not None and (budget_binds or problem.use_all):
        binding["budget.total"] = "equal" if problem.use_all else "upper"
        rows["budget.total"] = lam - 1.0
    prices = Prices(base=1.0, rows=rows)
    cls = classify_cells(problem, spend, bound)
    d = decompose(problem, spend, prices, binding, cls, rtol, slopes=slopes)
    comp = list(d.violations)
    kkt = d.kkt_max_deviation
    ok = not feas and not comp and kkt <= rtol
    activity = {"budget.total": total} if B is not None else {}
    return OptimalityReport(feasible=not feas, budget_binds=budget_binds, marginal_return=lam,
                            kkt_max_deviation=kkt, complementarity_violations=comp,
                            feasibility_violations=feas, bound=cls, ok=ok,
                            shadow_prices={k: abs(v) for k, v in rows.items()}, binding=binding,
                            price=d.required, decomposition=d, activity=activity, marginal_at_plan=right0)


def _isclose(a: np.ndarray, b: np.ndarray, rtol: float) -> np.ndarray:
    """``np.isclose(a, b, rtol=rtol, atol=0)``, its formula without its argument handling (most of its time)."""
    with np.errstate(invalid="ignore"):
        return (np.abs(a - b) <= rtol * np.abs(b)) & np.isfinite(b) | (a == b)


def _median(a: np.ndarray) -> float:
    """``float(np.median(a))`` of a non-empty array; a few finite non-zero values are sorted in Python.

    np.median is the mean of the middle one or two values: ``(x + y) / 2``, as here. Zeros
    (whose sign the mean's sum drops), non-finite values and long arrays go to np.median.
    """
    values = a.tolist() if len(a) <= 64 else None
    if values is None or 0.0 in values or not all(map(math.isfinite, values)):
        return float(np.median(a))
    values.sort()
    m = len(values) // 2
    return values[m] if len(values) % 2 else (values[m - 1] + values[m]) / 2


def _check_general(problem: CompiledProblem, spend: np.ndarray, rtol: float) -> OptimalityReport:
    """Several constraints, integer features or another objective: multipliers from a small LP."""
    from .kkt import check_general

    g = check_general(problem, spend, rtol, unit_steps=True)
    ok = g.feasible and not g.complementarity_violations and g.kkt_max_deviation <= rtol
    if problem.unit is not None:
        # whole-unit plans meet the unit-step conditions only up to the curves' change over one unit
        # between cells; the certified gap is the evidence, so the explanation informs but does not veto
        ok = g.feasible
    budget_side = g.binding.get("budget.total")
    lam = g.base_price + (g.shadow_prices.get("budget.total", 0.0) if problem.objective.kind != "target" else 0.0)
    return OptimalityReport(feasible=g.feasible, budget_binds=budget_side is not None, marginal_return=lam,
                            kkt_max_deviation=g.kkt_max_deviation, complementarity_violations=g.complementarity_violations,
                            feasibility_violations=g.feasibility_violations, bound=g.bound, ok=ok,
                            shadow_prices=g.shadow_prices, binding=g.binding, applicable=g.applicable, note=g.note,
                            price=g.price, decomposition=g.decomposition, activity=g.activity)
