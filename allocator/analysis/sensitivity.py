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

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..money import money_of
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
    net = money_of(problem, spend).net_value
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
    """Every binding thing of the plan once, with its price (from the plan's one decomposition).

    Columns: ``constraint`` (name), ``kind`` (budget, spend, share, ratio, efficiency.*, lock,
    min_spend, max_spend, min_active), ``side``, ``shadow_price`` (net value gained per currency
    unit the thing is relaxed, >= 0; under a target, spend saved), ``d_net_value_d_bound`` (the
    derivative of the optimal net value with respect to the number in the rule: ``+price`` for an
    upper end, ``-price`` for a lower end, the signed price of a lock's spend), ``segment``,
    ``task`` and ``note``. Integer choices (cells switched off, the spend unit) carry no price.
    """
    rows: list[dict[str, Any]] = []
    for b in plan.summary.binding_constraints:
        price = b.get("shadow_price")
        if price is None or b["kind"] in ("activation", "unit"):
            continue
        if b["kind"] == "lock":
            deriv = price if b.get("direction") == "raise" else -price
        elif b["side"] == "lower":
            deriv = -price
        else:
            deriv = price
        rows.append({"constraint": b["name"], "kind": b["kind"], "side": b["side"], "shadow_price": price,
                     "d_net_value_d_bound": deriv, "segment": b.get("segment"), "task": b.get("task"),
                     "note": b.get("note")})
    return pd.DataFrame(rows, columns=["constraint", "kind", "side", "shadow_price", "d_net_value_d_bound",
                                       "segment", "task", "note"])


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


# the what-if of a move lives with the rules it must keep; re-exported here for older imports
from .whatif import InfeasibleMoveError, MoveResult, what_if_move  # noqa: E402,F401
