"""The optimality check for problems with several constraints, integer features or other objectives.

At an optimum of ``max sum(w_i E_i(s_i)) - c sum(s_i)`` under rows
``lo_j <= a_j . s <= hi_j`` there are multipliers ``y_j`` (shadow prices: ``y_j >= 0``
for a row at its upper end, ``<= 0`` at its lower end, 0 for a slack row) with, for
every cell,

* strictly inside its bounds: ``w_i E_i'(s_i) = c + sum_j y_j a_ji`` (its price);
* at its lower bound (or at 0): ``w_i E_i'(s_i+) <= price``;
* at its upper bound: ``w_i E_i'(s_i-) >= price``.

For the ``target`` objective (least spend reaching ``sum(w E) >= T``) the same
holds with ``c`` replaced by an unknown common marginal return ``lam >= 0``.

The check does not trust the solver's duals: it finds the multipliers that make
the plan's *true* marginal returns most nearly satisfy these conditions (a small
LP: minimize the largest relative deviation ``t``) and reports ``t``. For concave
curves a plan with ``t = 0`` is optimal; for S-curves it is a necessary condition
(the certified gap is the global evidence). Cells that are switched off by a
minimum-if-active rule and problems with a spend unit (whole-unit spends are
not stationary points) are left out of the marginal conditions; their optimality
rests on the solver's certified gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .optimality import BOUND_LOWER, BOUND_NONE, BOUND_UPPER, BOUND_ZERO, bound_violations, classify_bounds
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


def needs_general(problem: CompiledProblem) -> bool:
    """Whether ``problem`` has anything beyond one budget, cell bounds and the net-value objective."""
    return (bool(problem.constraints) or bool(problem.efficiency) or bool(problem.integer_features)
            or problem.objective.kind != "net_value")


def _weights(problem: CompiledProblem) -> np.ndarray:
    if problem.objective.kind == "target":
        return np.asarray(problem.objective.weight, float)
    return problem.value


def _slopes(problem: CompiledProblem, spend: np.ndarray, side: str) -> np.ndarray:
    x = np.asarray(spend, float) / problem.pool
    out = np.empty(problem.n)
    for b in problem.blocks:
        out[b.index] = getattr(b.family, "slope" if side == "right" else "slope_left")(x[b.index], b.params)
    return out


def check_general(problem: CompiledProblem, spend: np.ndarray, rtol: float = 1e-6,
                  bound: np.ndarray | None = None) -> GeneralCheck:
    """Feasibility of every rule, then the multiplier LP described in the module docstring."""
    from scipy.optimize import linprog

    s = np.asarray(spend, float)
    n = problem.n
    feas = bound_violations(problem, s, rtol)
    rows = problem.rows()
    total = max(float(np.abs(s).sum()), 1.0)
    binding: dict[str, str] = {}
    activity: dict[str, float] = {}
    for r in rows:
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
    w = _weights(problem)
    if obj.kind == "target":
        reached = float((w * problem.pool * problem.response(s)).sum())
        if reached < obj.target * (1 - max(rtol, 1e-9)):
            feas.append(f"{obj.text or 'target'} not reached: {reached:,.10g}")
    if bound is None:

        bound = classify_bounds(problem, s)
    nudge = 1e-9 * np.maximum(s, 1.0)
    right = w * np.minimum(_slopes(problem, s, "right"), _slopes(problem, s + nudge, "right"))
    left = w * np.maximum(_slopes(problem, s, "left"), _slopes(problem, np.maximum(s - nudge, 0.0), "left"))
    # an infinite first marginal return (hill with shape < 1 at 0) is capped so the LP stays sound;
    # such a cell at 0 still shows as a complementarity violation
    cap = 1e9 * max(float(np.max(np.where(np.isfinite(right), np.abs(right), 0.0), initial=1.0)), 1.0)
    right = np.minimum(np.nan_to_num(right, nan=0.0, posinf=cap), cap)
    left = np.minimum(np.nan_to_num(left, nan=0.0, posinf=cap), cap)

    base = obj.rate if obj.kind != "target" else None
    if problem.unit is not None:
        return GeneralCheck(not feas, feas, [], 0.0, base if base is not None else float("nan"), {}, binding,
                            bound, np.full(n, np.nan), np.zeros(n), applicable=False,
                            note="spend units: whole-unit spends are not stationary points; the certified gap "
                                 "is the evidence of optimality", activity=activity)
    # cells taking part in the marginal conditions
    off = np.zeros(n, dtype=bool)
    if problem.min_active is not None or problem.activation_cost is not None:
        ma = problem.min_active if problem.min_active is not None else np.zeros(n)
        ac = problem.activation_cost if problem.activation_cost is not None else np.zeros(n)
        # a cell that may switch off sits at an integer choice when at 0 or at its min_active floor
        may_off = ((ma > 0) | (ac > 0)) & (problem.lower <= 0)
        off = may_off & ((s <= 1e-9) | (s <= ma * (1 + 1e-9)))
    fixed = problem.upper <= problem.lower
    lower_side = ((bound == BOUND_LOWER) | (bound == BOUND_ZERO)) & ~off & ~fixed
    upper_side = (bound == BOUND_UPPER) & ~off & ~fixed
    interior = (bound == BOUND_NONE) & ~off & ~fixed
    names = [r.name for r in rows if r.name in binding]
    brows = [r for r in rows if r.name in binding]
    m = len(brows)
    # variables: [y_1..y_m, (lam), t]
    target = obj.kind == "target"
    nv = m + (1 if target else 0) + 1
    A = np.zeros((n, m))
    for j, r in enumerate(brows):
        A[r.index, j] += r.coef
    # price_i = base + A y   (target: lam + A z)
    P = np.hstack([A, np.ones((n, 1))]) if target else A
    const = np.zeros(n) if target else np.full(n, base)
    scale = np.maximum(np.maximum(np.abs(right), np.abs(left)), 1.0 if not target else 1e-12)
    if not target:
        scale = np.maximum(scale, abs(base))
    ub_rows, ub_rhs = [], []

    def add(mask: np.ndarray, sign: float, marg: np.ndarray) -> None:
        # sign * (marg - price) <= t * scale
        idx = np.flatnonzero(mask)
        if len(idx) == 0:
            return
        block = np.zeros((len(idx), nv))
        block[:, :P.shape[1]] = -sign * P[idx]
        block[:, -1] = -scale[idx]
        ub_rows.append(block)
        ub_rhs.append(-sign * (marg[idx] - const[idx]))

    add(interior, +1.0, right)
    add(interior, -1.0, left)
    add(lower_side, +1.0, right)
    add(upper_side, -1.0, left)
    bounds = []
    for r in brows:
        side = binding[r.name]
        bounds.append((0.0, None) if side == "upper" else (None, 0.0) if side == "lower" else (None, None))
    if target:
        bounds.append((0.0, None))
    bounds.append((0.0, None))
    c = np.zeros(nv)
    c[-1] = 1.0
    if ub_rows:
        res = linprog(c, A_ub=np.vstack(ub_rows), b_ub=np.concatenate(ub_rhs), bounds=bounds, method="highs")
        x = res.x if res.status == 0 else np.zeros(nv)
    else:
        x = np.zeros(nv)
    y = x[:m]
    price = P @ x[:P.shape[1]] + const
    dev_hi = np.maximum(right - price, 0.0) / scale
    dev_lo = np.maximum(price - left, 0.0) / scale
    dev = np.where(interior, np.maximum(dev_hi, dev_lo), np.where(lower_side, dev_hi,
                                                                  np.where(upper_side, dev_lo, 0.0)))
    kkt = float(np.max(np.where(interior, dev, 0.0), initial=0.0))
    comp = []
    for i in np.flatnonzero(lower_side & (dev > rtol)):
        comp.append(f"cell {problem.label(i)} sits at its lower bound with marginal return {right[i]:.6g} > "
                    f"its price {price[i]:.6g}")
    for i in np.flatnonzero(upper_side & (dev > rtol)):
        comp.append(f"cell {problem.label(i)} sits at its upper bound with marginal return {left[i]:.6g} < "
                    f"its price {price[i]:.6g}")
    lam = float(x[m]) if target else float(base)
    shadow = {name: float(v) for name, v in zip(names, y)}
    if target and lam > 0:
        # z = lam * y: per currency unit of the row, in spend saved per unit of marginal return
        shadow = {k: v / lam for k, v in shadow.items()}
    return GeneralCheck(not feas, feas, comp, kkt, lam, shadow, binding, bound, price, dev, activity=activity)
