"""Sentences of a plan, generated from its one decomposition (:mod:`allocator.explain.decompose`).

Nothing here computes a price: every number in a sentence is read off the
:class:`~allocator.explain.decompose.Decomposition`, so the words cannot disagree
with the check that verified it.
"""

from __future__ import annotations

import numpy as np

from ..problem import CompiledProblem
from .decompose import Decomposition
from .prices import BOUND_LOCKED, BOUND_LOWER, BOUND_NONE, BOUND_OFF, BOUND_UPPER, BOUND_ZERO, activation_floor


def _n(x: float) -> str:
    return f"{x:.4g}"


def _money(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.4g}"


def base_label(problem: CompiledProblem, d: Decomposition) -> str:
    """The objective's own rate as it starts every formula."""
    kind = problem.objective.kind
    if kind == "hurdle":
        return f"{_n(d.prices.base)} (hurdle)"
    if kind == "target":
        return f"{_n(d.prices.base)} (target)"
    return "1"


def formula(problem: CompiledProblem, d: Decomposition, i: int) -> str:
    """``required = base + coef x price (rule) ...``, divided by the efficiency factor where one acts."""
    parts = [base_label(problem, d)]
    for name, coef, y in d.terms[i]:
        amount = coef * y
        if abs(amount) < 1e-12:
            continue
        sign = "+" if amount > 0 else "-"
        parts.append(f"{sign} {_n(abs(y))} ({name})" if abs(abs(coef) - 1.0) < 1e-12
                     else f"{sign} {_n(abs(coef))} x {_n(abs(y))} ({name})")
    eff = [t for t in d.efficiency_terms[i] if abs(t[1]) > 1e-12]
    for name, mu, b, _ in eff:
        parts.append(f"+ {_n(mu)} x {_n(b)} ({name})")
    text = " ".join(parts)
    if eff:
        den = " ".join(f"+ {_n(mu)} x {_n(a)} ({name})" for name, mu, _, a in eff)
        text = f"({text}) / (1 {den})"
    return text


def cell_reason(problem: CompiledProblem, d: Decomposition, spend: np.ndarray, i: int, currency: str,
                floor: np.ndarray | None = None) -> str:
    """One sentence on why cell ``i`` sits where it does, with its required return's decomposition."""
    floor = activation_floor(problem) if floor is None else floor
    b = d.bound[i]
    req = d.required[i]
    f = formula(problem, d, i)
    step = "whole unit" if d.unit_steps else "unit"
    cur = currency or "unit"
    if problem.objective.kind == "target":
        # under a target, returns are in the target's metric per currency unit
        step = f"{step} ({problem.objective.metric} per {cur})"
    if b == BOUND_NONE:
        if floor[i] > 0 and spend[i] <= floor[i] * (1 + 1e-9):
            return (f"held at its minimum-if-active spend {_money(floor[i])}: the next {step} returns "
                    f"{_n(d.right[i])} <= required {_n(req)} = {f}")
        if d.unit_steps:
            return (f"interior (whole units): the next unit returns {_n(d.right[i])} and the last "
                    f"{_n(d.left[i])}; required {_n(req)} = {f}")
        return f"interior: returns {_n(0.5 * (d.right[i] + d.left[i]))} = required {f}"
    if b == BOUND_ZERO:
        return f"priced out: the first {step} returns {_n(d.right[i])} <= required {_n(req)} = {f}"
    if b == BOUND_LOWER:
        return (f"held at min_spend {_money(problem.lower[i])}: the next {step} returns {_n(d.right[i])} <= "
                f"required {_n(req)} = {f}; lowering min_spend by 1 {cur} would gain {_n(d.cell_price[i])}")
    if b == BOUND_UPPER:
        return (f"at its cap {_money(problem.upper[i])}: the last {step} returns {_n(d.left[i])} >= "
                f"required {_n(req)} = {f}; raising the cap by 1 {cur} would gain {_n(d.cell_price[i])}")
    if b == BOUND_LOCKED:
        pi = d.cell_price[i]
        where = "raising" if pi >= 0 else "lowering"
        return (f"locked at {_money(spend[i])}: returns {_n(d.right[i])} against required {_n(req)} = {f}; "
                f"the lock is worth {_n(abs(pi))} per {cur} ({where} it would gain that)")
    if b == BOUND_OFF:
        act = problem.activation_cost[i] if problem.activation_cost is not None else 0.0
        best = ""
        if d.off_net is not None and np.isfinite(d.off_net[i]):
            gain = d.off_net[i]
            best = (f"; at required {_n(req)} its best running spend {_money(d.off_spend[i])} would add "
                    f"{_money(gain)}" + ("" if gain <= 0 else
                                         " to first order, less than making room for it costs (an integer "
                                         "choice, certified by the optimality gap)"))
        return f"off: running needs at least {_money(floor[i])} and an activation cost of {_money(act)}{best}"
    return ""


def reasons(problem: CompiledProblem, d: Decomposition, spend: np.ndarray) -> np.ndarray:
    """:func:`cell_reason` for every cell."""
    cur = problem.currency or ""
    floor = activation_floor(problem)
    return np.array([cell_reason(problem, d, spend, i, cur, floor) for i in range(problem.n)], dtype=object)


def binding_rules(d: Decomposition, binding_things: list[dict], problem: CompiledProblem) -> np.ndarray:
    """Per cell, the names of the priced rules acting on it (``;``-separated), locks and bounds included."""
    out = [list(d.names_on(i)) for i in range(problem.n)]
    where = {(s, t): i for i, (s, t) in enumerate(zip(problem.segment, problem.task))}
    for t in binding_things:
        if "segment" in t and t["kind"] in ("lock", "min_spend", "max_spend", "min_active", "activation"):
            i = where.get((t["segment"], t["task"]))
            if i is not None:
                out[i].append(t["name"])
    return np.array(["; ".join(dict.fromkeys(x)) for x in out], dtype=object)


def headline(problem: CompiledProblem, d: Decomposition, summary) -> list[str]:
    """The lines under the totals that state what the plan's marginal returns must be, per objective."""
    cur = problem.currency or "unit"
    obj = problem.objective
    priced_rows = [k for k, v in d.prices.rows.items() if k != "budget.total"] + list(d.prices.efficiency)
    lines = []
    if obj.kind == "target":
        o = summary.objective
        rule = (o.get("rule") or "target").removeprefix("objective target: ")
        lines.append(f"target: {rule}; reached {o['reached']:,.6g} "
                     f"({'met' if o['reached'] >= o['target'] * (1 - 1e-9) else 'NOT met'}) at least spend "
                     f"{o['spend_plus_activation']:,.0f} {cur} (spend plus activation costs)")
        lam = d.prices.base
        unit, one = ("successes", "success") if obj.metric == "successes" else ("value", f"{cur} of value")
        cost = (1.0 / lam) if lam > 0 else float("inf")
        lines.append(f"every funded counted cell returns {_n(lam)} {unit} per {cur} (plus the prices of what "
                     f"binds on it): one more {one} costs about {cost:,.4g} {cur}")
    elif obj.kind == "hurdle":
        lines.append(f"hurdle rate {_n(obj.rate)}: every funded cell returns {_n(obj.rate)} per {cur}"
                     + (f" plus the budget's price {summary.budget_shadow_price:.6f}" if summary.budget_binds
                        else " (budget slack)")
                     + (" plus the prices of the rules acting on it" if priced_rows else ""))
    elif priced_rows:
        budget = (f"+ the budget's price {summary.budget_shadow_price:.6f} " if summary.budget_binds
                  else "(budget slack) ")
        lines.append(f"required returns differ by cell: 1 {budget}+ the prices of the rules acting on each cell "
                     f"(column `required`; `reason` in plan.csv and --explain show the sum)")
    else:
        lines.append(f"common marginal return {summary.marginal_return:.6f}"
                     + (f" (budget binds: shadow price {summary.budget_shadow_price:.6f} per {cur})"
                        if summary.budget_binds else " (budget slack: spend stops where a unit returns a unit)"))
    return lines
