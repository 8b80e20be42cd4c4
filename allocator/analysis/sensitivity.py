"""First-order sensitivities of the optimal net value, without re-solving (envelope theorem).

At an optimum ``s*`` with multiplier ``lam``, the derivative of the optimal net value
``V(theta) = max_s [sum_i f_i(s_i; theta) - sum_i s_i]`` (subject to the budget and bounds, which do
not depend on the curve parameters, values or pools) is the partial derivative of the objective
at ``s*``, holding the plan fixed:

* curve parameter ``theta`` of cell i:  ``pool_i * value_i * dp_i/dtheta (s_i / pool_i)``;
* value of one success:                 ``pool_i * p_i(x_i)``;
* pool (spend held fixed, so spend per member falls as the pool grows):
  ``value_i * (p_i(x_i) - x_i * p_i'(x_i))``.

Shadow prices of binding constraints come from the same multipliers: the budget's is ``lam - 1``
(net value per extra currency unit of budget), a binding ``max_spend`` of cell i is worth
``value_i * p_i'(upper-) - lam`` per unit it is raised, and a binding ``min_spend`` costs
``lam - value_i * p_i'(lower+)`` per unit it is raised (reported with a negative sign). General
linear constraints report the duals their solver returned.

These are exact derivatives where the optimal plan moves smoothly; at a point where a cell is
just switching on, or sits on a kink of a tabulated curve, they are one-sided.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import Problem, SpecError
from ..optimality import BOUND_LOWER, BOUND_UPPER
from ..plan import Plan
from ..problem import CompiledProblem


@dataclass
class Sensitivity:
    """Envelope-theorem derivatives of a plan.

    Attributes
    ----------
    parameters : pandas.DataFrame
        One row per (cell, parameter): ``segment``, ``task``, ``parameter`` (``value``, ``pool`` or
        ``curve.<name>``), ``current`` (its value), ``derivative`` (net value per unit of the
        parameter) and ``elasticity`` (% change of net value per 1% change of the parameter).
    shadow_prices : pandas.DataFrame
        One row per binding constraint: ``constraint``, ``kind``, ``shadow_price`` (net value per
        unit the constraint is relaxed), ``segment``, ``task``.
    net_value : float
    """

    parameters: pd.DataFrame
    shadow_prices: pd.DataFrame
    net_value: float

    def top(self, k: int = 10) -> pd.DataFrame:
        """The ``k`` parameters whose 1% change moves the net value most."""
        order = np.argsort(-np.abs(self.parameters["elasticity"].to_numpy()), kind="stable")
        return self.parameters.iloc[order[:k]].reset_index(drop=True)


def _param_derivatives(family: Any, x: np.ndarray, P: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``name -> (current values, dp/dtheta at x)`` per scalar parameter, by central differences.

    Response functions are smooth in their parameters, so a central difference with a step of
    1e-5 of the parameter's size is accurate to about 1e-10 relative; it works for every family,
    including ones registered later. Table curves (2-D parameters) report dp/dp_j of their points.
    """
    out = {}
    for name, arr in P.items():
        if arr.ndim == 1:
            h = 1e-5 * np.maximum(np.abs(arr), 1e-3)
            up, dn = dict(P), dict(P)
            up[name], dn[name] = arr + h, arr - h
            out[name] = (arr, (family.response(x, up) - family.response(x, dn)) / (2 * h))
        elif name == "p":  # table curve: sensitivity to each table point's response level
            for j in range(arr.shape[1]):
                real = np.isfinite(P["x"][:, j])
                if not real.any():
                    continue
                h = 1e-6
                up, dn = dict(P), dict(P)
                up[name], dn[name] = arr.copy(), arr.copy()
                up[name][:, j] += h
                dn[name][:, j] -= h
                # the padding repeats the last point: move the copies with it
                if j + 1 < arr.shape[1]:
                    pad = ~np.isfinite(P["x"][:, j + 1:]) & real[:, None]
                    up[name][:, j + 1:][pad] += h
                    dn[name][:, j + 1:][pad] -= h
                d = (family.response(x, up) - family.response(x, dn)) / (2 * h)
                out[f"points[{j}].p"] = (np.where(real, arr[:, j], np.nan), np.where(real, d, np.nan))
    return out


def parameter_sensitivities(problem: CompiledProblem, spend: np.ndarray) -> pd.DataFrame:
    """d(optimal net value)/d(parameter) for every cell's curve parameters, value and pool."""
    spend = np.asarray(spend, float)
    x = spend / problem.pool
    p = problem.response(spend)
    slope = problem.marginal_return(spend, "right") / np.where(problem.value != 0, problem.value, 1.0)
    net = problem.net_value(spend)
    seg, task = problem.segment, problem.task
    frames = [
        pd.DataFrame({"segment": seg, "task": task, "parameter": "value", "current": problem.value,
                      "derivative": problem.pool * p}),
        pd.DataFrame({"segment": seg, "task": task, "parameter": "pool", "current": problem.pool,
                      "derivative": problem.value * (p - x * slope)}),
    ]
    for b in problem.blocks:
        idx = b.index
        for name, (cur, dp) in _param_derivatives(b.family, x[idx], b.params).items():
            keep = np.isfinite(cur)
            frames.append(pd.DataFrame({
                "segment": seg[idx][keep], "task": task[idx][keep], "parameter": f"curve.{name}",
                "current": cur[keep], "derivative": (problem.pool[idx] * problem.value[idx] * dp)[keep]}))
    df = pd.concat(frames, ignore_index=True)
    df["elasticity"] = df["derivative"] * df["current"] / net if net != 0 else np.nan
    # cell order, then parameter
    order = {(s, t): i for i, (s, t) in enumerate(zip(seg, task))}
    df["_k"] = [order[(s, t)] for s, t in zip(df["segment"], df["task"])]
    return df.sort_values(["_k"], kind="stable").drop(columns="_k").reset_index(drop=True)


def shadow_prices(plan: Plan) -> pd.DataFrame:
    """Shadow prices of the budget, of binding cell bounds and of general constraints."""
    problem, s, rep = plan.problem, plan.spend, plan.report
    lam = rep.marginal_return
    rows: list[dict[str, Any]] = []
    if problem.budget is not None and rep.budget_binds:
        rows.append({"constraint": "budget", "kind": "budget", "shadow_price": lam - 1.0, "segment": None,
                     "task": None})
    left = problem.marginal_return(s, "left")
    right = problem.marginal_return(s, "right")
    peak_cap = _curve_caps(problem)
    for i in np.flatnonzero(rep.bound == BOUND_UPPER):
        if problem.upper[i] > problem.lower[i] and problem.upper[i] < peak_cap[i] * (1 - 1e-12):
            rows.append({"constraint": f"max_spend {problem.label(i)}", "kind": "max_spend",
                         "shadow_price": max(float(left[i] - lam), 0.0), "segment": problem.segment[i],
                         "task": problem.task[i]})
    for i in np.flatnonzero(rep.bound == BOUND_LOWER):
        rows.append({"constraint": f"min_spend {problem.label(i)}", "kind": "min_spend",
                     "shadow_price": min(float(right[i] - lam), 0.0), "segment": problem.segment[i],
                     "task": problem.task[i]})
    binding = getattr(plan.summary, "binding_constraints", None)
    duals = dict(plan.result.constraint_duals or {})
    if isinstance(binding, list) and binding:
        for c in binding:
            if isinstance(c, dict) and "name" in c:
                price = c.get("shadow_price", duals.get(c["name"]))
                rows.append({"constraint": c["name"], "kind": "constraint", "shadow_price": price,
                             "segment": None, "task": None})
                duals.pop(c["name"], None)
    for name, d in duals.items():
        if abs(d) > 1e-12:
            rows.append({"constraint": name, "kind": "constraint", "shadow_price": float(d), "segment": None,
                         "task": None})
    return pd.DataFrame(rows, columns=["constraint", "kind", "shadow_price", "segment", "task"])


def _curve_caps(problem: CompiledProblem) -> np.ndarray:
    """Spend caps that come from the curves themselves (a response peak), not from ``max_spend``."""
    out = np.full(problem.n, np.inf)
    for b in problem.blocks:
        out[b.index] = problem.pool[b.index] * b.family.domain_max(b.params)
    return out


def sensitivity(plan: Plan | Any) -> Sensitivity:
    """Envelope-theorem sensitivities and shadow prices of a solved plan (no re-solve).

    Parameters
    ----------
    plan : Plan, or anything :func:`allocator.plan` accepts (solved first)

    Returns
    -------
    Sensitivity
    """
    if not isinstance(plan, Plan):
        from .. import plan as make

        plan = make(plan)
    return Sensitivity(parameters=parameter_sensitivities(plan.problem, plan.spend),
                       shadow_prices=shadow_prices(plan), net_value=float(plan.summary.net_value))


@dataclass
class MoveResult:
    """What moving ``amount`` from one cell to another does to a plan (no re-solve; plan otherwise held)."""

    amount: float
    from_cell: tuple[str, str]
    to_cell: tuple[str, str]
    net_value_before: float
    net_value_after: float
    value_lost: float
    first_order_estimate: float
    marginal_return_from: float
    marginal_return_to: float
    cells: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items() if k != "cells"}


def _cell_index(problem: CompiledProblem, cell: Any, what: str) -> int:
    if isinstance(cell, str):
        parts = cell.replace(":", "/").split("/")
        cell = tuple(parts) if len(parts) == 2 else (cell,)
    if not isinstance(cell, (tuple, list)) or len(cell) != 2:
        raise SpecError(Problem(what, f"name a cell as segment/task; got {cell!r}"))
    seg, task = map(str, cell)
    hit = np.flatnonzero((problem.segment == seg) & (problem.task == task))
    if not len(hit):
        raise SpecError(Problem(what, f"no cell ({seg}, {task}) in the scenario"))
    return int(hit[0])


def what_if_move(plan: Plan, amount: float, from_cell: Any, to_cell: Any) -> MoveResult:
    """Move ``amount`` of spend from ``from_cell`` to ``to_cell`` and report the net value lost.

    Parameters
    ----------
    plan : Plan
    amount : float
        Currency moved (> 0).
    from_cell, to_cell : (segment, task) or "segment/task"

    Raises
    ------
    SpecError
        When a cell is unknown or the move breaks a cell's bounds (the message says how much can move).
    """
    problem, s = plan.problem, plan.spend
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not np.isfinite(amount) or amount <= 0:
        raise SpecError(Problem("amount", f"must be a positive amount; got {amount!r}"))
    a = _cell_index(problem, from_cell, "from")
    b = _cell_index(problem, to_cell, "to")
    if a == b:
        raise SpecError(Problem("to", f"must differ from the source cell {problem.label(a)}"))
    room_a = s[a] - problem.lower[a]
    room_b = problem.upper[b] - s[b]
    problems = []
    if amount > room_a * (1 + 1e-12) + 1e-9:
        problems.append(Problem("amount", f"cell {problem.label(a)} spends {s[a]:,.2f} with min_spend "
                                          f"{problem.lower[a]:,.2f}: at most {room_a:,.2f} can move out; got {amount:,.2f}"))
    if amount > room_b * (1 + 1e-12) + 1e-9:
        problems.append(Problem("amount", f"cell {problem.label(b)} spends {s[b]:,.2f} with max spend "
                                          f"{problem.upper[b]:,.2f}: at most {room_b:,.2f} can move in; got {amount:,.2f}"))
    if problems:
        raise SpecError(problems)
    new = s.copy()
    new[a] -= amount
    new[b] += amount
    before, after = problem.net_value(s), problem.net_value(new)
    ev0, ev1 = problem.expected_value(s), problem.expected_value(new)
    ma = float(problem.marginal_return(s, "left")[a])
    mb = float(problem.marginal_return(s, "right")[b])
    cells = pd.DataFrame({"segment": problem.segment[[a, b]], "task": problem.task[[a, b]],
                          "spend_before": s[[a, b]], "spend_after": new[[a, b]],
                          "value_before": ev0[[a, b]], "value_after": ev1[[a, b]]})
    return MoveResult(amount=float(amount), from_cell=(str(problem.segment[a]), str(problem.task[a])),
                      to_cell=(str(problem.segment[b]), str(problem.task[b])), net_value_before=before,
                      net_value_after=after, value_lost=before - after, first_order_estimate=amount * (ma - mb),
                      marginal_return_from=ma, marginal_return_to=mb, cells=cells)
