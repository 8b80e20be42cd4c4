"""Prices for problems with several constraints, integer features or other objectives.

The conditions an optimal plan meets are stated in :mod:`allocator.explain.decompose`:
every cell meets its required return ``r_i = (c + sum_j y_j a_ji + sum_k mu_k b_k) /
(1 + sum_k mu_k alpha_ki)`` (equal inside its bounds, at most at a lower bound, at least
at an upper bound). Multiplied out, each condition is *linear* in the multipliers
``(y, mu)`` (and in ``lam``, the common marginal return of a ``target`` objective).

The check does not trust the solver's duals: it finds the multipliers that make the
plan's *true* marginal returns most nearly satisfy these conditions (a small LP:
minimize the largest relative deviation ``t``) and reports ``t``. For concave curves
a plan with ``t = 0`` is optimal; for S-curves it is a necessary condition (the
certified gap is the global evidence). Cells switched off by a minimum-if-active rule
and locked cells take no part in the fit (their prices are read off afterwards). With a
spend unit, whole-unit spends are not stationary points: the plan's check uses the
marginal returns of whole units (``unit_steps``); the solvers' own calls keep the old
behaviour and leave such problems to the certified gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .explain.decompose import Decomposition, decompose
from .explain.prices import (BOUND_LOCKED, BOUND_LOWER, BOUND_NONE, BOUND_UPPER, BOUND_ZERO, Prices,
                             activation_floor, bound_violations, capped, classify_cells, curve_slopes,
                             objective_weights)
from .problem import CompiledProblem


@dataclass
class GeneralCheck:
    feasible: bool
    feasibility_violations: list[str]
    complementarity_violations: list[str]
    kkt_max_deviation: float
    base_price: float
    shadow_prices: dict[str, float]
    binding: dict[str, str]
    bound: np.ndarray
    price: np.ndarray
    deviation: np.ndarray
    applicable: bool = True
    note: str = ""
    activity: dict[str, float] = field(default_factory=dict)
    decomposition: Decomposition | None = None
    prices: Prices | None = None


def needs_general(problem: CompiledProblem) -> bool:
    """Whether ``problem`` has anything beyond one budget, cell bounds and the net-value objective."""
    return (bool(problem.constraints) or bool(problem.efficiency) or bool(problem.integer_features)
            or problem.objective.kind != "net_value")


def feasibility(problem: CompiledProblem, spend: np.ndarray, rtol: float) -> tuple[list[str], dict, dict]:
    """Violated rules, which end each binding row or efficiency rule sits at, and every rule's activity."""
    s = np.asarray(spend, float)
    feas = bound_violations(problem, s, rtol)
    total = max(float(np.abs(s).sum()), 1.0)
    binding: dict[str, str] = {}
    activity: dict[str, float] = {}
    for r in problem.rows():
        a = r.activity(s)
        activity[r.name] = a
        tol = 1e-7 * total + rtol * max(abs(r.lower) if np.isfinite(r.lower) else 0.0,
                                        abs(r.upper) if np.isfinite(r.upper) else 0.0)
        if a > r.upper + tol or a < r.lower - tol:
            feas.append(f"{r.text or r.name} does not hold: {a:,.10g}")
        at_hi = np.isfinite(r.upper) and a >= r.upper - tol
        at_lo = np.isfinite(r.lower) and a <= r.lower + tol
        if at_hi and at_lo:
            binding[r.name] = "equal"
        elif at_hi:
            binding[r.name] = "upper"
        elif at_lo:
            binding[r.name] = "lower"
    for e in problem.efficiency:
        a = e.activity(problem, s)
        activity[e.name] = a
        group = max(float(s[e.index].sum()) * max(e.rate, 1.0), 1.0)
        tol = 1e-7 * total + rtol * group
        if a < -tol:
            feas.append(f"{e.text or e.name} does not hold: {a:,.10g}")
        if a <= tol and float(s[e.index].sum()) > 0:
            binding[e.name] = "lower"
    if problem.min_active is not None:
        for i in np.flatnonzero((s > 1e-9) & (s < problem.min_active * (1 - 1e-9))):
            feas.append(f"cell {problem.label(i)} spends {s[i]:.6g}, between 0 and its min_active_spend "
                        f"{problem.min_active[i]:.6g}")
    if problem.unit is not None:
        q = s / problem.unit
        for i in np.flatnonzero(np.abs(q - np.round(q)) > 1e-6):
            feas.append(f"cell {problem.label(i)} spends {s[i]:.10g}, not a whole number of units of "
                        f"{problem.unit:g}")
    obj = problem.objective
    if obj.kind == "target":
        reached = float((objective_weights(problem) * problem.pool * problem.response(s)).sum())
        if reached < obj.target * (1 - max(rtol, 1e-9)):
            feas.append(f"{obj.text or 'target'} not reached: {reached:,.10g}")
    return feas, binding, activity


def estimate_prices(problem: CompiledProblem, spend: np.ndarray, bound: np.ndarray, binding: dict[str, str],
                    unit_steps: bool = False, slopes: tuple[np.ndarray, np.ndarray] | None = None) -> Prices:
    """The multipliers that make the plan's true marginal returns best meet their required returns."""
    from scipy.optimize import linprog

    s = np.asarray(spend, float)
    n = problem.n
    obj = problem.objective
    target = obj.kind == "target"
    W = objective_weights(problem)
    pr, pl = curve_slopes(problem, s, unit_steps) if slopes is None else slopes
    right = capped(W * pr, W * pr)
    left = capped(W * pl, W * pr)
    row_names = [r.name for r in problem.rows() if r.name in binding]
    effs = [e for e in problem.efficiency if e.name in binding]
    m, q = len(row_names), len(effs)
    A = np.zeros((n, m))
    rows = {r.name: r for r in problem.rows()}
    for j, name in enumerate(row_names):
        A[rows[name].index, j] += rows[name].coef
    alpha = np.zeros((n, q))
    b = np.zeros((n, q))
    for k, e in enumerate(effs):
        w = W[e.index]
        alpha[e.index, k] = np.where(w != 0, e.weight / np.where(w != 0, w, 1.0), 0.0)
        b[e.index, k] = e.rate
    floor = activation_floor(problem)
    at_floor = (floor > 0) & (bound == BOUND_NONE) & (s <= floor * (1 + 1e-9))
    fixed = problem.upper <= problem.lower
    interior = (bound == BOUND_NONE) & ~at_floor & ~fixed
    lower_side = ((bound == BOUND_LOWER) | (bound == BOUND_ZERO) | at_floor) & ~fixed
    upper_side = (bound == BOUND_UPPER) & ~fixed
    base = 0.0 if target else float(obj.rate)
    nv = m + q + (1 if target else 0) + 1
    scale = np.maximum(np.maximum(np.abs(right), np.abs(left)), 1e-12 if target else max(1.0, abs(base)))
    ub_rows, ub_rhs = [], []

    def add(mask: np.ndarray, sign: float, marg: np.ndarray) -> None:
        # sign * (marg * (1 + alpha mu) - (base + A y + b mu [+ lam])) <= t * scale
        idx = np.flatnonzero(mask)
        if len(idx) == 0:
            return
        block = np.zeros((len(idx), nv))
        block[:, :m] = -sign * A[idx]
        block[:, m:m + q] = sign * (marg[idx, None] * alpha[idx] - b[idx])
        if target:
            block[:, m + q] = -sign
        block[:, -1] = -scale[idx]
        ub_rows.append(block)
        ub_rhs.append(-sign * (marg[idx] - base))

    add(interior, +1.0, right)
    add(interior, -1.0, left)
    add(lower_side, +1.0, right)
    add(upper_side, -1.0, left)
    bounds = []
    for name in row_names:
        side = binding[name]
        bounds.append((0.0, None) if side == "upper" else (None, 0.0) if side == "lower" else (None, None))
    bounds += [(0.0, None)] * q
    if target:
        bounds.append((0.0, None))
    bounds.append((0.0, None))
    c = np.zeros(nv)
    c[-1] = 1.0
    x = np.zeros(nv)
    if ub_rows:
        res = linprog(c, A_ub=np.vstack(ub_rows), b_ub=np.concatenate(ub_rhs), bounds=bounds, method="highs")
        if res.status == 0:
            x = res.x
    lam = float(x[m + q]) if target else base
    return Prices(base=lam, rows={name: float(v) for name, v in zip(row_names, x[:m])},
                  efficiency={e.name: float(v) for e, v in zip(effs, x[m:m + q])}, target=target)


def check_general(problem: CompiledProblem, spend: np.ndarray, rtol: float = 1e-6,
                  bound: np.ndarray | None = None, unit_steps: bool = False) -> GeneralCheck:
    """Feasibility of every rule, then the multiplier fit and the decomposition it implies.

    Parameters
    ----------
    unit_steps : bool
        With a spend unit, check whole-unit marginal returns (the plan's check) instead of
        declaring the marginal conditions not applicable (the solvers' refinement loop).
    """
    s = np.asarray(spend, float)
    n = problem.n
    feas, binding, activity = feasibility(problem, s, rtol)
    cls = classify_cells(problem, s) if bound is None else _with_locks(problem, s, bound)
    obj = problem.objective
    base = obj.rate if obj.kind != "target" else None
    if problem.unit is not None and not unit_steps:
        return GeneralCheck(not feas, feas, [], 0.0, base if base is not None else float("nan"), {}, binding,
                            cls, np.full(n, np.nan), np.zeros(n), applicable=False,
                            note="spend units: whole-unit spends are not stationary points; the certified gap "
                                 "is the evidence of optimality", activity=activity)
    steps = unit_steps and problem.unit is not None
    slopes = curve_slopes(problem, s, steps)
    prices = estimate_prices(problem, s, cls, binding, unit_steps=steps, slopes=slopes)
    d = decompose(problem, s, prices, binding, cls, rtol, unit_steps=steps, slopes=slopes)
    shadow = {name: prices.money(y) for name, y in prices.rows.items()}
    shadow.update({name: prices.money(mu) for name, mu in prices.efficiency.items()})
    note = ""
    if problem.unit is not None:
        note = ("spend units: marginal returns are those of the next and the last whole unit; prices are the "
                "continuous relaxation's with whole units fixed")
    return GeneralCheck(not feas, feas, d.violations, d.kkt_max_deviation, prices.base, shadow, binding, cls,
                        d.required, d.deviation, activity=activity, decomposition=d, prices=prices, note=note)


def _with_locks(problem: CompiledProblem, spend: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """Cell classes given by a caller, with locks and switched-off cells marked."""
    full = classify_cells(problem, spend)
    out = np.array(bound, dtype=object)
    special = (full == BOUND_LOCKED) | (full == "off")
    out[special] = full[special]
    return out


__all__ = ["GeneralCheck", "check_general", "estimate_prices", "feasibility", "needs_general",
           "BOUND_UPPER", "BOUND_LOWER"]
