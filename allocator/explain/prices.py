"""Prices of a plan's constraints and the marginal returns they are compared with.

The explanation of a plan rests on one object, :class:`Prices`: the objective's own
rate (1 for net value, the hurdle rate, or under a ``target`` the common marginal
return of the counted cells), a signed price per binding linear row and a price per
binding efficiency rule. From them every cell's *required return* follows
(:mod:`allocator.explain.decompose`). This module also classifies where each cell
sits (inside its bounds, at a bound, locked, switched off) and computes the one-sided
marginal returns, per currency unit or, with a spend unit, per whole unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..curves.base import CurveFamily
from ..problem import CompiledProblem

BOUND_NONE, BOUND_LOWER, BOUND_UPPER, BOUND_ZERO = "none", "lower", "upper", "zero"
BOUND_LOCKED, BOUND_OFF = "locked", "off"


@dataclass
class Prices:
    """Multipliers of the binding constraints, in units of the objective's marginal return.

    Attributes
    ----------
    base : float
        The objective's own rate: 1 (net value), the hurdle rate, or under a ``target``
        objective the common marginal return ``lam`` of the counted cells.
    rows : dict
        Signed price ``y`` per binding linear row (``>= 0`` at its upper end, ``<= 0`` at
        its lower end); a cell's required return gains ``y * coef``.
    efficiency : dict
        Price ``mu >= 0`` per binding efficiency rule.
    target : bool
        Whether the objective is a target (least spend reaching it).
    """

    base: float
    rows: dict[str, float] = field(default_factory=dict)
    efficiency: dict[str, float] = field(default_factory=dict)
    target: bool = False

    def money(self, price: float) -> float:
        """A multiplier as net value (or, under a target, spend saved) per currency unit of relaxation."""
        if self.target:
            return abs(price) / self.base if self.base > 0 else float("nan")
        return abs(price)


def objective_weights(problem: CompiledProblem) -> np.ndarray:
    """What one expected success is worth to the objective: the value, or the target's weight."""
    if problem.objective.kind == "target":
        return np.asarray(problem.objective.weight, float)
    return problem.value


def _slopes(problem: CompiledProblem, spend: np.ndarray, side: str) -> np.ndarray:
    x = np.asarray(spend, float) / problem.pool
    out = np.empty(problem.n)
    for b in problem.blocks:
        out[b.index] = getattr(b.family, "slope" if side == "right" else "slope_left")(x[b.index], b.prepared)
    return out


def curve_slopes(problem: CompiledProblem, spend: np.ndarray, unit_steps: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``p'`` of the next and of the last currency unit per cell (per whole unit with ``unit_steps``).

    Slopes are taken a hair away from the plan as well, so that a cell a rounding error past a
    kink of a tabulated curve is still seen at the kink. With a spend unit ``u`` and
    ``unit_steps``, whole-unit plans are not stationary points, so the slopes are the average
    slopes of the next and of the last whole unit: ``(p(x + u/pool) - p(x)) * pool / u``.
    """
    s = np.asarray(spend, float)
    if unit_steps and problem.unit is not None:
        u = float(problem.unit)
        p0 = problem.response(s)
        up = np.minimum(s + u, np.where(np.isfinite(problem.upper), np.maximum(problem.upper, s), s + u))
        down = np.maximum(s - u, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            fwd = (problem.response(up) - p0) * problem.pool / (up - s)
            bwd = (p0 - problem.response(down)) * problem.pool / (s - down)
        right = np.where(up > s, fwd, _slopes(problem, s, "right"))
        left = np.where(s > down, bwd, _slopes(problem, s, "left"))
        return right, left
    right, left, _ = nudged_slopes(problem, s)
    return right, left


def nudged_slopes(problem: CompiledProblem, spend: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`curve_slopes` (per currency unit), and ``p'(x+)`` at the plan itself.

    The third array is the right slope at ``spend`` exactly, the one
    ``problem.marginal_return(spend) / problem.value`` takes, computed on the way anyway.
    """
    s = np.asarray(spend, float)
    nudge = 1e-9 * np.maximum(s, 1.0)
    pool = problem.pool
    # one pass over the blocks for all four evaluations (four passes cost four times the gathers)
    x0, x_up, x_down = s / pool, (s + nudge) / pool, np.maximum(s - nudge, 0.0) / pool
    n = problem.n
    r0, r1, l0, l1 = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    for b in problem.blocks:
        fam, idx, P = b.family, b.index, b.prepared
        smooth = type(fam).slope_left is CurveFamily.slope_left
        if smooth and fam.elementwise and len(idx) <= STACK_MAX and _stackable(P, len(idx)):
            # a few cells of a smooth family: its three slopes from one call on the three spends side by
            # side (see STACK_MAX)
            m = len(idx)
            a = fam.slope(np.concatenate((x0[idx], x_up[idx], x_down[idx])),
                          {k: np.concatenate((v, v, v)) for k, v in P.items()})
            r0[idx] = l0[idx] = a[:m]
            r1[idx] = a[m:2 * m]
            l1[idx] = a[2 * m:]
            continue
        a = fam.slope(x0[idx], P)
        r0[idx] = a
        r1[idx] = fam.slope(x_up[idx], P)
        # a smooth family's left slope is its slope (the base class's slope_left): computed once
        l0[idx] = a if smooth else fam.slope_left(x0[idx], P)
        l1[idx] = fam.slope_left(x_down[idx], P)
    return np.minimum(r0, r1), np.maximum(l0, l1), r0


STACK_MAX = 16
"""Up to this many cells, a smooth :attr:`~allocator.curves.base.CurveFamily.elementwise` family's slopes at,
above and below the plan are one call on the three spends side by side (its parameters repeated): each
cell's number is the formula's on its own inputs, wherever it sits in the array, and one call on a few
cells costs what three cost in numpy's overhead. Larger blocks take three calls (no copies)."""


def _stackable(P, m: int) -> bool:
    """Every parameter is an array with one row per cell (so repeating it three times lines up)."""
    return all(type(v) is np.ndarray and v.ndim >= 1 and len(v) == m for v in P.values())


def capped(a: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Replace infinite marginal returns (a hill curve with shape < 1 at 0) by a large finite number."""
    return _capped_at(a, _cap(reference))


def _cap(reference: np.ndarray) -> float:
    """The finite stand-in for an infinite marginal return: 1e9 times the largest finite one (at least 1)."""
    return 1e9 * max(float(np.max(np.where(np.isfinite(reference), np.abs(reference), 0.0), initial=1.0)), 1.0)


def _capped_at(a: np.ndarray, cap: float) -> np.ndarray:
    """:func:`capped` with the reference's :func:`_cap` taken already (two sides share one cap)."""
    out = np.minimum(a, cap)
    if np.isfinite(out).all():
        # no NaN nor -inf in ``a``: nan_to_num below would change nothing but +inf, which this capped
        return out
    return np.minimum(np.nan_to_num(a, nan=0.0, posinf=cap), cap)


def bound_violations(problem: CompiledProblem, spend: np.ndarray, rtol: float) -> list[str]:
    """One message per cell spending outside its [lower, upper] bounds (relative tolerance ``rtol``)."""
    slack = 1e-9 + rtol * np.maximum(np.abs(spend), 1.0)
    # (nonzero()[0]: np.flatnonzero's answer on a 1-D mask, without its wrapper's cost)
    out = [f"cell {problem.label(i)} spends {spend[i]:.6g} below its minimum {problem.lower[i]:.6g}"
           for i in (spend < problem.lower - slack).nonzero()[0]]
    out += [f"cell {problem.label(i)} spends {spend[i]:.6g} above its maximum {problem.upper[i]:.6g}"
            for i in (spend > problem.upper + slack).nonzero()[0]]
    return out


def classify_bounds(problem: CompiledProblem, spend: np.ndarray, rtol: float = 1e-7) -> np.ndarray:
    """Per cell: ``zero``, ``lower``, ``upper`` or ``none`` (strictly inside its bounds)."""
    capped = np.isfinite(problem.upper)
    scale = np.maximum(np.maximum(np.abs(problem.lower), np.where(capped, problem.upper, 0)),
                       np.maximum(spend, 1.0))
    # spend below a billionth of the plan's total is zero in currency terms, whatever the curve
    # does there (a hill curve with shape < 1 has an infinite first marginal return)
    # (the plan's own total, not the budget: a budget of 1e12 made every cell under 1,000 "zero")
    total = float(np.add.reduce(spend, axis=None))
    eps = rtol * scale + 1e-9 * max(total, 1.0)
    # never more than a quarter of the cell's own range: a cell capped at 800 (or at 1e-300) that
    # spends its cap is at its upper bound, not at zero
    width = problem.upper - problem.lower
    eps = np.where(np.isfinite(width) & (width > 0), np.minimum(eps, 0.25 * width), eps)
    at_lo = spend <= problem.lower + eps
    at_hi = capped & (spend >= problem.upper - eps)
    out = np.full(problem.n, BOUND_NONE, dtype=object)
    out[at_hi] = BOUND_UPPER
    out[at_lo & (problem.lower <= eps)] = BOUND_ZERO
    out[at_lo & (problem.lower > eps)] = BOUND_LOWER
    return out


def classify_cells(problem: CompiledProblem, spend: np.ndarray, bounds: np.ndarray | None = None) -> np.ndarray:
    """:func:`classify_bounds` plus ``locked`` (a lock rule) and ``off`` (switched off by an activation rule).

    ``bounds`` is ``classify_bounds(problem, spend)`` when the caller has it already (not modified).
    """
    s = np.asarray(spend, float)
    out = classify_bounds(problem, s) if bounds is None else np.array(bounds, dtype=object)
    if problem.min_active is not None or problem.activation_cost is not None:
        ma = problem.min_active if problem.min_active is not None else np.zeros(problem.n)
        ac = problem.activation_cost if problem.activation_cost is not None else np.zeros(problem.n)
        may_off = ((ma > 0) | (ac > 0)) & (problem.lower <= 0)
        out[may_off & (s <= 1e-9)] = BOUND_OFF
    if problem.locked is not None:
        out[~np.isnan(problem.locked)] = BOUND_LOCKED
    return out


def activation_floor(problem: CompiledProblem) -> np.ndarray:
    """Per cell: the least spend of a running cell under minimum-if-active rules (0 where none)."""
    return problem.min_active if problem.min_active is not None else np.zeros(problem.n)
