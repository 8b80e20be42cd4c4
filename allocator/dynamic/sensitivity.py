"""Derivatives of a multi-period plan's customer equity, by the envelope theorem, without re-solving.

At the optimum, the derivative of the optimal customer equity ``CE*`` with respect to a
parameter ``theta`` equals the partial derivative of the Lagrangian at the optimal plan and
prices (envelope theorem; for the LP over shares of members treated at each spend level this
is LP sensitivity with the basis held):

    dCE*/dtheta = d/dtheta [ sum_j w_j (value_j(theta) - lam . W spend_j(theta)) + lam . B ]

with the policies' spend per member and the shares ``w_j`` held. The inner derivative is
taken by central differences of the fixed plan (:mod:`allocator.dynamic.evaluation`), which
is smooth in every parameter, and segments are independent once the spend per member is
fixed, so one pair of passes gives the derivative for every segment at once. A budget row's
derivative is its price ``lam_r`` (customer equity, present value, per nominal currency unit).

Parameters covered: ``margin.<state>``, ``members.<state>``, ``terminal.<state>`` (finite
horizons), ``arrivals`` (a shift of every period's new prospects), and per task its
``value``, ``curve.<parameter>`` and ``value_curve.<parameter>``; and every budget row.
The derivatives hold where the plan's set of levels does not change (a kink of the frontier
has left and right derivatives; this gives the one of the plan at hand).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .evaluation import FixedPlan, fixed_plan, follow_plan
from .model import TASK_OF_STATE, DynamicProblem, StateBlock
from .solve import DynamicResult
from .spec import STATES

REL_STEP = 1e-6


@dataclass
class DynamicSensitivity:
    """``parameters``: one row per (parameter, segment[, task]); ``shadow_prices``: one row per budget row."""

    customer_equity: float
    parameters: pd.DataFrame
    shadow_prices: pd.DataFrame

    def top(self, n: int = 10) -> pd.DataFrame:
        """The ``n`` parameters with the largest elasticity (in absolute value)."""
        order = self.parameters["elasticity"].abs().sort_values(ascending=False, kind="stable").index
        return self.parameters.loc[order[:n]].reset_index(drop=True)


def _blocks_shifted(blocks: tuple[StateBlock, ...], name: str, h: np.ndarray) -> tuple[StateBlock, ...]:
    out = []
    for b in blocks:
        if name in b.params and np.ndim(b.params[name]) == 1:
            params = dict(b.params)
            params[name] = params[name] + h[b.index]
            b = dataclasses.replace(b, params=params)
        out.append(b)
    return tuple(out)


def shifted(problem: DynamicProblem, key: tuple, h: np.ndarray) -> DynamicProblem:
    """``problem`` with parameter ``key`` of every segment s raised by ``h[s]``.

    ``key`` is ``("margin" | "members" | "terminal" | "value", k)``, ``("arrivals",)`` or
    ``("curve" | "value_curve", k, name)``.
    """
    kind = key[0]
    if kind in ("margin", "members", "terminal", "value"):
        arr = getattr(problem, kind).copy()
        arr[:, key[1]] += h
        return dataclasses.replace(problem, **{kind: arr})
    if kind == "arrivals":
        arr = problem.arrivals.copy()
        arr[2:] += h[None]
        steady = None if problem.steady_arrivals is None else problem.steady_arrivals + h
        return dataclasses.replace(problem, arrivals=arr, steady_arrivals=steady)
    k, name = key[1], key[2]
    field = "blocks" if kind == "curve" else "value_blocks"
    blocks = list(getattr(problem, field))
    blocks[k] = _blocks_shifted(blocks[k], name, h)
    return dataclasses.replace(problem, **{field: tuple(blocks)})


def _parameters(problem: DynamicProblem) -> list[tuple[tuple, str, np.ndarray, np.ndarray]]:
    """Every parameter: (key, label, nominal value per segment, applies per segment)."""
    S = problem.S
    every = np.ones(S, bool)
    out = []
    for k, st in enumerate(STATES):
        out.append((("margin", k), f"margin.{st}", problem.margin[:, k], every))
    for k, st in enumerate(STATES):
        out.append((("members", k), f"members.{st}", problem.members[:, k], every))
    if not problem.steady_state:
        for k, st in enumerate(STATES):
            out.append((("terminal", k), f"terminal.{st}", problem.terminal[:, k], every))
    if problem.T >= 2 or problem.steady_state:
        nominal = problem.steady_arrivals if problem.steady_state else problem.arrivals[2:].mean(axis=0)
        out.append((("arrivals",), "arrivals", nominal, every))
    for k in range(3):
        out.append((("value", k), "value", problem.value[:, k], problem.has_task[:, k]))
        for field, label in (("blocks", "curve"), ("value_blocks", "value_curve")):
            names: dict[str, None] = {}
            for b in getattr(problem, field)[k]:
                names.update({n: None for n, v in b.params.items() if np.ndim(v) == 1})
            for name in names:
                nominal = np.full(S, np.nan)
                for b in getattr(problem, field)[k]:
                    if name in b.params and np.ndim(b.params[name]) == 1:
                        nominal[b.index] = b.params[name]
                out.append(((label, k, name), f"{label}.{name}", nominal, np.isfinite(nominal)))
    return out


def lagrangian_by_segment(problem: DynamicProblem, plan: FixedPlan, shadow: np.ndarray) -> np.ndarray:
    """Per segment: the fixed plan's objective minus the priced spend, ``value_s - shadow . spend_s``.

    The objective is customer equity, less ``(rate - 1)`` times the discounted spend under a hurdle rate.
    """
    o = follow_plan(problem, plan)
    disc = np.array([problem.disc(t) for t in range(1, problem.T + 1)])
    return o.value - ((problem.spend_weight - 1.0) * disc + shadow) @ o.spend


def dynamic_sensitivity(problem: DynamicProblem, result: DynamicResult) -> DynamicSensitivity:
    """Derivatives of the optimal customer equity of ``result`` (see the module docstring)."""
    plan = fixed_plan(result)
    rows = result.rows
    price = result.price if rows is not None else np.zeros(0)
    shadow = rows[0].T @ price if rows is not None else np.zeros(problem.T)
    ce = float(result.primal)   # the objective (customer equity, or its hurdle form)
    records = []
    for key, label, nominal, applies in _parameters(problem):
        if not applies.any():
            continue
        h = REL_STEP * np.maximum(np.abs(np.nan_to_num(nominal)), 1e-2)
        up = lagrangian_by_segment(shifted(problem, key, h), plan, shadow)
        down = lagrangian_by_segment(shifted(problem, key, -h), plan, shadow)
        deriv = (up - down) / (2.0 * h)
        task = TASK_OF_STATE[key[1]] if key[0] in ("value", "curve", "value_curve") else ""
        for s in np.flatnonzero(applies):
            theta = float(nominal[s])
            records.append({"parameter": label, "segment": str(problem.segment[s]), "task": task,
                            "value": theta, "derivative": float(deriv[s]),
                            "elasticity": theta * float(deriv[s]) / ce if ce else 0.0})
    spend = follow_plan(problem, plan).spend.sum(axis=1)
    prices = []
    if rows is not None:
        used = rows[0] @ spend
        for name, cap, u, lam in zip(problem.budget_names, rows[1], used, price):
            prices.append({"constraint": name, "cap": float(cap), "spend": float(u), "shadow_price": float(lam),
                           "binding": bool(lam != 0)})
            records.append({"parameter": name, "segment": "", "task": "", "value": float(cap),
                            "derivative": float(lam), "elasticity": float(cap) * float(lam) / ce if ce else 0.0})
    return DynamicSensitivity(customer_equity=ce, parameters=pd.DataFrame(records),
                              shadow_prices=pd.DataFrame(prices, columns=["constraint", "cap", "spend",
                                                                          "shadow_price", "binding"]))
