"""Each cell's required return, decomposed into the prices of what binds, and its verification.

At an optimum of ``max sum_i W_i E_i(s_i) - c sum_i s_i`` (``W`` the value of a success;
under a ``target`` objective the target's weights with ``c`` replaced by the unknown
common marginal return ``lam``) under linear rows ``lo_j <= a_j . s <= hi_j`` (budget,
pots, spend rules, shares, ratios) and efficiency rules
``g_k(s) = sum_{i in G_k} (w_ki E_i(s_i) - b_k s_i) >= 0``, there are multipliers
``y_j`` (``>= 0`` at a row's upper end, ``<= 0`` at its lower end, 0 when slack) and
``mu_k >= 0`` (0 when slack) such that every cell meets its **required return**

    r_i = (c + sum_j y_j a_ji + sum_k mu_k b_k) / (1 + sum_k mu_k alpha_ki),   alpha_ki = w_ki / W_i,

as ``m_i = W_i p_i'(x_i) = r_i`` strictly inside its bounds, ``m_i(next unit) <= r_i`` at a
lower bound or at zero, ``m_i(last unit) >= r_i`` at an upper bound. A lock holds its cell
at a given spend: its price is ``m_i - r_i`` (what one more currency unit on the cell would
gain). A cell bound's price is how far the cell's marginal return is from its required one.
A cell switched off by a minimum-if-active rule or its activation cost is off because running
it at its best spend would not pay at its required return (computed, not assumed).

With a spend unit, marginal returns are those of the next and of the last whole unit. These
are exact statements about the plan's true curves: the check verifies them, so a wrong
explanation fails the check whatever solver produced the plan.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..problem import CompiledProblem
from .patterns import LabelMasks, label_masks
from .prices import (BOUND_LOCKED, BOUND_LOWER, BOUND_NONE, BOUND_OFF, BOUND_UPPER, BOUND_ZERO, Prices,
                     _cap, _capped_at, activation_floor, curve_slopes, objective_weights)


@dataclass
class Decomposition:
    """The explanation of a plan, cell by cell, and the checks it passes.

    Attributes
    ----------
    bound : ndarray of str
        ``none``, ``zero``, ``lower``, ``upper``, ``locked`` or ``off``.
    required : ndarray
        Required return per cell in the objective's marginal units (value per currency unit;
        under a successes target, successes per currency unit).
    right, left : ndarray
        Marginal return of the next and of the last unit (same units).
    terms : sequence of list of (str, float, float)
        Per cell, ``(name, coefficient, price)`` of each priced row acting on it (built when asked
        for, see :class:`CellTerms`); efficiency rules appear in ``efficiency_terms`` as
        ``(name, mu_k, b_k, alpha_ki)``.
    cell_price : ndarray
        Price of what holds the cell (lock, bound, activation floor): value gained per currency
        unit the cell is let move in the direction it wants; 0 for interior cells.
    deviation : ndarray
        Relative violation of the cell's condition (0 when met).
    violations : list of str
        Dual feasibility, complementarity and marginal conditions that fail beyond ``rtol``.
    """

    prices: Prices
    bound: np.ndarray
    required: np.ndarray
    right: np.ndarray
    left: np.ndarray
    terms: Sequence[list[tuple[str, float, float]]]
    efficiency_terms: Sequence[list[tuple[str, float, float, float]]]
    cell_price: np.ndarray
    deviation: np.ndarray
    kkt_max_deviation: float
    violations: list[str] = field(default_factory=list)
    off_net: np.ndarray | None = None
    off_spend: np.ndarray | None = None
    unit_steps: bool = False
    to_value: np.ndarray | None = None
    #: ``mask(label)`` -> ``bound == label`` (one factorization of ``bound``, shared by every reader)
    bound_masks: Callable[[str], np.ndarray] | None = field(default=None, repr=False, compare=False)

    def is_bound(self, label: str) -> np.ndarray:
        """Cells whose ``bound`` is ``label``."""
        if self.bound_masks is None:
            self.bound_masks = label_masks(self.bound)
        return self.bound_masks(label)

    def cells_with(self, label: str) -> np.ndarray:
        """Indices of the cells whose ``bound`` is ``label`` (no mask made when no cell has it)."""
        if self.bound_masks is None:
            self.bound_masks = label_masks(self.bound)
        masks = self.bound_masks
        if isinstance(masks, LabelMasks) and label not in masks:
            return np.empty(0, np.intp)
        # (nonzero()[0]: np.flatnonzero's answer on a 1-D mask, without its wrapper)
        return masks(label).nonzero()[0]

    def required_value(self) -> np.ndarray:
        """Required return in value per currency unit (the unit of ``marginal_return`` in plan.csv)."""
        return self.required if self.to_value is None else self.required * self.to_value

    def names_on(self, i: int) -> list[str]:
        """Names of the priced rules acting on cell ``i`` (rows and efficiency rules)."""
        return [t[0] for t in self.terms[i] if t[2] != 0] + [t[0] for t in self.efficiency_terms[i] if t[1] != 0]


def _row_matrix(problem: CompiledProblem, names: list[str]) -> np.ndarray:
    A = np.zeros((problem.n, len(names)))
    if not names:
        return A
    rows = {r.name: r for r in problem.rows()}
    for j, name in enumerate(names):
        r = rows[name]
        A[r.index, j] += r.coef
    return A


class CellTerms(Sequence):
    """Per cell, the ``(name, coefficient, price)`` of each priced row acting on it, built on demand.

    A list of lists held a tuple per cell and row: at a million cells that was most of the time
    of a plan, while sentences need the terms of only one cell per distinct pattern.
    """

    def __init__(self, names: list[str], A: np.ndarray, y: np.ndarray):
        self.names, self.A, self.y = names, A, y

    def __len__(self) -> int:
        return len(self.A)

    def __getitem__(self, i):
        if not isinstance(i, (int, np.integer)):
            return [self[k] for k in range(len(self))[i]]
        # tolist: a few rows per cell, where numpy calls per element cost more than the loop
        return [(name, a, y) for name, a, y in zip(self.names, self.A[i].tolist(), self.y.tolist()) if a != 0]


class CellEfficiencyTerms(Sequence):
    """Per cell, ``(name, mu, b, alpha)`` of each priced efficiency rule acting on it, built on demand."""

    def __init__(self, n: int, rules: list[tuple[str, float, float, np.ndarray, np.ndarray]]):
        # rules: (name, mu, rate, index, alpha); position[i] is the cell's place in index (-1: not in it)
        self.n, self.rules = n, rules
        self.position = []
        for _, _, _, index, _ in rules:
            pos = np.full(n, -1)
            pos[index] = np.arange(len(index))
            self.position.append(pos)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if not isinstance(i, (int, np.integer)):
            return [self[k] for k in range(len(self))[i]]
        return [(name, float(mu), float(rate), float(alpha[pos[i]]))
                for (name, mu, rate, _, alpha), pos in zip(self.rules, self.position) if pos[i] >= 0]


def required_returns(problem: CompiledProblem, prices: Prices) -> tuple[np.ndarray, Sequence, Sequence]:
    """Required return per cell from ``prices``, with the terms that make it up."""
    n = problem.n
    names = list(prices.rows)
    if not prices.efficiency and not problem.constraints and (
            not names or (names == ["budget.total"] and problem.budget is not None)):
        # the single budget (or nothing) prices every cell alike: its row is all ones (the matrix
        # _row_matrix builds: 0 + 1 per cell), and num / 1 is num, so no division either
        A = np.ones((n, 1)) if names else np.zeros((n, 0))
        y = np.array([prices.rows[k] for k in names], float)
        num = np.full(n, float(prices.base)) + (A @ y if names else 0.0)
        return num, CellTerms(names, A, y), CellEfficiencyTerms(n, [])
    A = _row_matrix(problem, names)
    y = np.array([prices.rows[k] for k in names], float)
    num = np.full(n, float(prices.base)) + (A @ y if names else 0.0)
    den = np.ones(n)
    W = objective_weights(problem)
    rules = []
    by_name = {e.name: e for e in problem.efficiency}
    for name, mu in prices.efficiency.items():
        e = by_name[name]
        w = W[e.index]
        alpha = np.where(w != 0, e.weight / np.where(w != 0, w, 1.0), 0.0)
        num[e.index] += mu * e.rate
        den[e.index] += mu * alpha
        rules.append((name, mu, e.rate, np.asarray(e.index), alpha))
    if any(len(np.unique(r[3])) < len(r[3]) for r in rules):
        # a rule listing a cell twice (not made by the compiler) keeps the eager lists, one entry per listing
        eff_terms: Sequence = [[] for _ in range(n)]
        for name, mu, rate, index, alpha in rules:
            for i, a in zip(index, alpha):
                eff_terms[i].append((name, float(mu), float(rate), float(a)))
    else:
        eff_terms = CellEfficiencyTerms(n, rules)
    return num / den, CellTerms(names, A, y), eff_terms


def _best_running(problem: CompiledProblem, cells: np.ndarray, required: np.ndarray,
                  points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """For cells that are off: their best net gain when running, at their required return, and that spend.

    ``max_{s >= floor} W E(s) - r s - activation`` on a grid over the cell's range (the
    continuous relaxation of the on/off choice at the plan's prices).
    """
    W = objective_weights(problem)
    floor = activation_floor(problem)
    act = problem.activation_cost if problem.activation_cost is not None else np.zeros(problem.n)
    gain = np.full(problem.n, np.nan)
    at = np.full(problem.n, np.nan)
    for i in np.flatnonzero(cells):
        lo = max(floor[i], problem.lower[i])
        hi = problem.upper[i] if np.isfinite(problem.upper[i]) else max(lo, 1.0) * 1e3
        grid = np.unique(np.concatenate([np.linspace(lo, hi, points), np.geomspace(max(lo, 1.0), max(hi, 1.0),
                                                                                   points)]))
        grid = grid[(grid >= lo) & (grid <= hi)]
        if problem.unit is not None:
            grid = np.unique(np.ceil(grid / problem.unit - 1e-9) * problem.unit)
            grid = grid[grid <= hi + 1e-9]
        if not len(grid) or grid[0] <= 0:
            grid = grid[grid > 0]
        if not len(grid):
            continue
        x = grid / problem.pool[i]
        p = np.empty(len(grid))
        for b in problem.blocks:
            k = np.flatnonzero(b.index == i)
            if len(k):
                p = b.family.response(x, {n_: v[k[0]] * np.ones(len(x)) for n_, v in b.params.items()})
        net = W[i] * problem.pool[i] * p - required[i] * grid - act[i]
        j = int(np.argmax(net))
        gain[i], at[i] = float(net[j]), float(grid[j])
    return gain, at


def decompose(problem: CompiledProblem, spend: np.ndarray, prices: Prices, binding: dict[str, str],
              bound: np.ndarray, rtol: float = 1e-6, unit_steps: bool = False,
              slopes: tuple[np.ndarray, np.ndarray] | None = None) -> Decomposition:
    """Required returns from ``prices`` and the checks of every cell against them.

    Parameters
    ----------
    problem : CompiledProblem
    spend : ndarray
    prices : Prices
        Multipliers of the binding rows and efficiency rules.
    binding : dict
        Which end each binding row (or efficiency rule) sits at: ``upper``, ``lower`` or ``equal``.
    bound : ndarray of str
        Cell classes from :func:`~allocator.explain.prices.classify_cells`.
    rtol : float
        Relative tolerance of the marginal conditions.
    unit_steps : bool
        Use whole-unit marginal returns (problems with a spend unit).
    slopes : tuple of ndarray, optional
        ``curve_slopes(problem, spend, unit_steps)`` when the caller has them already.
    """
    s = np.asarray(spend, float)
    W = objective_weights(problem)
    pr, pl = curve_slopes(problem, s, unit_steps) if slopes is None else slopes
    wr = W * pr
    cap = _cap(wr)  # capped(a, W * pr) for both sides: one cap
    right = _capped_at(wr, cap)
    left = _capped_at(W * pl, cap)
    req, terms, eff_terms = required_returns(problem, prices)
    floor = activation_floor(problem)
    is_ = label_masks(bound)
    # The cell classes as boolean masks. A class no cell has, and the floors of a problem without
    # minimum-if-active rules (all 0, so no cell is held at one), are left out of the expressions:
    # x & ~False and x | False are x, so the masks are the full expressions' (a few calls each on
    # a small plan, where the calls are the cost)
    none = is_(BOUND_NONE)
    locked = is_(BOUND_LOCKED) if BOUND_LOCKED in is_ else None
    at_floor = (floor > 0) & none & (s <= floor * (1 + 1e-9)) if problem.min_active is not None else None
    fixed = problem.upper <= problem.lower
    if locked is not None:
        fixed &= ~locked
    not_fixed = ~fixed
    interior = none & not_fixed
    lower_side = is_(BOUND_LOWER) | is_(BOUND_ZERO)
    if at_floor is not None:
        interior &= ~at_floor
        lower_side |= at_floor
    lower_side &= not_fixed
    upper_side = is_(BOUND_UPPER) & not_fixed
    base_scale = 1e-12 if prices.target else 1.0
    scale = np.maximum(np.maximum(np.abs(right), np.abs(left)), np.maximum(np.abs(req), base_scale))
    dev_hi = np.maximum(right - req, 0.0) / scale
    dev_lo = np.maximum(req - left, 0.0) / scale
    dev = np.where(interior, np.maximum(dev_hi, dev_lo),
                   np.where(lower_side, dev_hi, np.where(upper_side, dev_lo, 0.0)))
    cell_price = np.zeros(problem.n)
    cell_price = np.where(lower_side | fixed, np.maximum(req - right, 0.0), cell_price)
    cell_price = np.where(upper_side, np.maximum(left - req, 0.0), cell_price)
    if locked is not None:
        mid = np.where(interior, 0.5 * (right + left), right)
        cell_price = np.where(locked, mid - req, cell_price)
    # (np.max's reduction, without its wrapper)
    kkt = float(np.maximum.reduce(np.where(interior, dev, 0.0), initial=0.0))
    v: list[str] = []
    bad = dev > rtol
    if bad.any():
        for i in np.flatnonzero(interior & bad):
            v.append(f"cell {problem.label(i)} is inside its bounds with marginal return {right[i]:.6g} (next unit), "
                     f"{left[i]:.6g} (last unit) against its required return {req[i]:.6g}")
        for i in np.flatnonzero(lower_side & bad):
            v.append(f"cell {problem.label(i)} sits at its lower bound with marginal return {right[i]:.6g} > "
                     f"its required return {req[i]:.6g}")
        for i in np.flatnonzero(upper_side & bad):
            v.append(f"cell {problem.label(i)} sits at its upper bound with marginal return {left[i]:.6g} < "
                     f"its required return {req[i]:.6g}")
    v += _dual_feasibility(prices, binding, rtol)
    off_net, off_spend = (None, None)
    if BOUND_OFF in is_:
        # an on/off choice is not a marginal condition: prices are local, a switch is a step, so what
        # running would add at the plan's prices is reported, and the certified gap is the evidence
        off_net, off_spend = _best_running(problem, is_(BOUND_OFF), req)
    to_value = None
    if problem.objective.kind == "target":
        w = np.asarray(problem.objective.weight, float)
        to_value = np.where(w != 0, problem.value / np.where(w != 0, w, 1.0), np.nan)
    return Decomposition(prices=prices, bound=bound, required=req, right=right, left=left, terms=terms,
                         efficiency_terms=eff_terms, cell_price=cell_price, deviation=dev, kkt_max_deviation=kkt,
                         violations=v, off_net=off_net, off_spend=off_spend, unit_steps=unit_steps,
                         to_value=to_value, bound_masks=is_)


def _dual_feasibility(prices: Prices, binding: dict[str, str], rtol: float) -> list[str]:
    """Signs of the multipliers, and no price on a rule that does not bind (complementarity)."""
    out = []
    tol = 1e-9 + rtol * max(1.0, abs(prices.base))
    for name, y in prices.rows.items():
        side = binding.get(name)
        if side is None and abs(y) > tol:
            out.append(f"'{name}' does not bind but carries a price {y:.6g}")
        elif side == "upper" and y < -tol:
            out.append(f"'{name}' binds at its upper end but its price {y:.6g} is negative")
        elif side == "lower" and y > tol:
            out.append(f"'{name}' binds at its lower end but its price {y:.6g} is positive")
    for name, mu in prices.efficiency.items():
        if mu < -tol:
            out.append(f"efficiency rule '{name}' has a negative price {mu:.6g}")
        elif binding.get(name) is None and abs(mu) > tol:
            out.append(f"efficiency rule '{name}' does not bind but carries a price {mu:.6g}")
    if prices.target and prices.base < -tol:
        out.append(f"the target's marginal return {prices.base:.6g} is negative")
    return out


def binding_things(problem: CompiledProblem, spend: np.ndarray, d: Decomposition, binding: dict[str, str],
                   activity: dict[str, float], solver_duals: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Everything that binds, once each, with its price per currency unit of relaxation.

    Rows (budget, pots, spend, share, ratio), efficiency rules, locks, cell bounds
    (``min_spend``/``max_spend``), minimum-if-active floors and cells switched off.
    ``shadow_price`` is net value (under a target: spend saved) gained per currency unit
    the thing is relaxed, from the same prices that make up the required returns.
    """
    s = np.asarray(spend, float)
    P = d.prices
    out: list[dict[str, Any]] = []
    duals = solver_duals or {}
    rows = {r.name: r for r in problem.rows()}
    integer = bool(problem.integer_features)
    note = ("price of the continuous relaxation with the plan's on/off choices and whole units fixed"
            if integer else None)
    for name, side in binding.items():
        if name in rows:
            r = rows[name]
            out.append({"name": name, "kind": r.kind or "rule", "rule": r.text or name, "side": side,
                        "activity": activity.get(name, r.activity(s)),
                        "bound": r.upper if side != "lower" else r.lower,
                        "shadow_price": P.money(P.rows.get(name, 0.0)), "solver_dual": duals.get(name),
                        "note": note})
    for e in problem.efficiency:
        if e.name in binding:
            mu = P.efficiency.get(e.name, 0.0)
            group_spend = float(s[e.index].sum())
            successes = float((problem.pool[e.index] * problem.response(s)[e.index]).sum())
            per_target = mu * (group_spend if e.kind == "min_roi" else successes)
            out.append({"name": e.name, "kind": f"efficiency.{e.kind}", "rule": e.text or e.name, "side": "lower",
                        "activity": e.activity(problem, s), "bound": 0.0, "shadow_price": P.money(mu),
                        "price_per_target_unit": P.money(per_target), "solver_dual": duals.get(e.name),
                        "note": note})
    lock_names = _lock_names(problem)
    for i in d.cells_with(BOUND_LOCKED):
        pi = float(d.cell_price[i])
        out.append({"name": lock_names.get(i, f"lock {problem.label(i)}"), "kind": "lock",
                    "rule": f"lock: cell {problem.label(i)} spends {s[i]:,.0f}", "side": "upper" if pi >= 0 else "lower",
                    "activity": float(s[i]), "bound": float(s[i]), "segment": str(problem.segment[i]),
                    "task": str(problem.task[i]), "shadow_price": P.money(pi), "direction": "raise" if pi >= 0
                    else "lower", "note": note})
    floor = activation_floor(problem)
    for i in d.cells_with(BOUND_LOWER):
        out.append({"name": f"min_spend {problem.label(i)}", "kind": "min_spend",
                    "rule": f"min_spend of cell {problem.label(i)} = {problem.lower[i]:,.0f}", "side": "lower",
                    "activity": float(s[i]), "bound": float(problem.lower[i]), "segment": str(problem.segment[i]),
                    "task": str(problem.task[i]), "shadow_price": P.money(d.cell_price[i]), "note": note})
    upper = d.cells_with(BOUND_UPPER)
    caps = _curve_caps(problem) if len(upper) else None
    for i in upper:
        if problem.upper[i] >= caps[i] * (1 - 1e-12):
            continue  # a response peak: the curve itself stops there, no rule binds
        out.append({"name": f"max_spend {problem.label(i)}", "kind": "max_spend",
                    "rule": f"max_spend of cell {problem.label(i)} = {problem.upper[i]:,.0f}", "side": "upper",
                    "activity": float(s[i]), "bound": float(problem.upper[i]), "segment": str(problem.segment[i]),
                    "task": str(problem.task[i]), "shadow_price": P.money(d.cell_price[i]), "note": note})
    # (without minimum-if-active rules every floor is 0: no cell is held at one)
    on_floor = (floor > 0) & d.is_bound(BOUND_NONE) & (s <= floor * (1 + 1e-9)) if problem.min_active is not None \
        else np.zeros(0, bool)
    for i in on_floor.nonzero()[0]:
        out.append({"name": f"min_active {problem.label(i)}", "kind": "min_active",
                    "rule": f"cell {problem.label(i)} spends 0 or at least {floor[i]:,.0f}", "side": "lower",
                    "activity": float(s[i]), "bound": float(floor[i]), "segment": str(problem.segment[i]),
                    "task": str(problem.task[i]), "shadow_price": P.money(max(d.required[i] - d.right[i], 0.0)),
                    "note": note})
    for i in d.cells_with(BOUND_OFF):
        gain = None if d.off_net is None else float(d.off_net[i])
        out.append({"name": f"off {problem.label(i)}", "kind": "activation",
                    "rule": f"cell {problem.label(i)} is switched off (minimum-if-active spend "
                            f"{floor[i]:,.0f}, activation cost "
                            f"{(problem.activation_cost[i] if problem.activation_cost is not None else 0):,.0f})",
                    "side": "off", "activity": 0.0, "bound": 0.0, "segment": str(problem.segment[i]),
                    "task": str(problem.task[i]), "shadow_price": 0.0, "best_running_net": gain,
                    "note": "integer choice: no price; best_running_net is what running the cell would add "
                            "at its required return"})
    if problem.unit is not None:
        out.append({"name": "budget.unit", "kind": "unit", "rule": f"every cell spends whole units of "
                    f"{problem.unit:,.6g}", "side": "equal", "activity": None, "bound": problem.unit,
                    "shadow_price": None, "note": "integer rule: marginal returns are those of whole units; "
                                                  "prices are the continuous relaxation's"})
    return out


def _lock_names(problem: CompiledProblem) -> dict[int, str]:
    names = getattr(problem, "lock_names", None)
    if names is None:
        return {}
    return {i: str(n) for i, n in enumerate(names) if n}


def _curve_caps(problem: CompiledProblem) -> np.ndarray:
    out = np.full(problem.n, np.inf)
    for b in problem.blocks:
        out[b.index] = problem.pool[b.index] * b.family.domain_max(b.params)
    return out
