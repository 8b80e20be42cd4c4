"""Multi-period plans as tables: ``plan.csv``, ``flows.csv`` and ``summary.json``.

``plan.csv`` has one row per (period, segment, task) with a ``period`` column first
(for an infinite horizon the periods before the policy is stationary, then one
``steady`` row per cell), today's plan columns and ``share_treated``. Money columns
are in the money of their own period (undiscounted); ``discount_factor`` converts them
to present value. ``flows.csv`` follows the members: per period, segment and state,
those at the start, moved by the state's task, lapsed, lost and at the end.
``summary.json`` holds ``customer_equity`` (discounted net value, the objective),
``by_period``, the state values (the customers' lifetime values as the plan makes
them, and the priced values behind the marginal returns) and the fields of today's
summary.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..plan import _jsonable
from .bellman import evaluate, oneoff
from .check import DynamicCheck, check_dynamic
from .model import TASK_OF_STATE, DynamicProblem
from .solve import DynamicResult, end_values, solve_dynamic
from .spec import STATES

PLAN_COLUMNS = ["period", "segment", "task", "pool", "share_treated", "spend", "spend_per_member",
                "spend_per_treated", "response_rate", "expected_successes", "value_per_success", "expected_value",
                "marginal_return", "required_return", "bound", "levels", "discount_factor"]


@dataclass
class DynamicPlan:
    """A solved multi-period plan: ``table`` (plan.csv), ``flows`` (flows.csv), ``summary`` (summary.json)."""

    table: pd.DataFrame
    flows: pd.DataFrame
    summary: dict[str, Any]
    problem: DynamicProblem
    result: DynamicResult
    check: DynamicCheck

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write the three files into ``out_dir`` atomically; return their paths."""
        from ..io import atomic_write

        out = Path(out_dir)
        return atomic_write({
            out / "plan.csv": self.table.to_csv(index=False, float_format="%.10g"),
            out / "flows.csv": self.flows.to_csv(index=False, float_format="%.10g"),
            out / "summary.json": json.dumps(_jsonable(self.summary), indent=2) + "\n",
        })


def _mixture(problem: DynamicProblem, result: DynamicResult):
    """Aggregate the plan's policies: members, spend, successes per (t, s, k), and each level's share."""
    used = [(c, w) for c, w in zip(result.columns, result.weights) if w > 1e-12]
    n = sum(w * c.outcome.n for c, w in used)
    spend = sum(w * c.outcome.n[:-1] * c.policy.x for c, w in used)
    succ = sum(w * c.outcome.successes for c, w in used)
    treated = sum(w * c.outcome.n[:-1] * (c.policy.x > 0) for c, w in used)
    one_off = sum(w * np.stack([oneoff(problem, c.policy.x[t]) for t in range(problem.T)]) * c.outcome.successes
                  for c, w in used)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.stack([np.where(n[:-1] > 0, w * c.outcome.n[:-1] / n[:-1], 1.0 / len(used)) for c, w in used])
    xs = np.stack([c.policy.x for c, _ in used])
    levels = np.ones(n[:-1].shape, int)
    if len(used) > 1:
        distinct = np.abs(xs - xs[:1]) > 1e-9 * np.maximum(1.0, np.abs(xs[:1]))
        levels += (distinct & (shares > 1e-6)).any(axis=0).astype(int)
    return n, spend, succ, treated, shares, xs, levels, one_off


def build_dynamic_plan(problem: DynamicProblem, result: DynamicResult, seconds: float = 0.0) -> DynamicPlan:
    """Assemble tables and summary of ``result``, running the dynamic optimality check."""
    chk = check_dynamic(problem, result)
    T, S = problem.T, problem.S
    n, spend, succ, treated, shares, xs, levels, one_off = _mixture(problem, result)
    disc = np.array([problem.disc(t) for t in range(1, T + 1)])
    delta = result.best.policy.delta / disc[:, None, None]
    pool = n[:-1]
    on = problem.has_task[None] & np.ones((T, 1, 1), bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(pool > 0, succ / pool, np.nan)
        per_member = np.where(pool > 0, spend / pool, 0.0)
        per_treated = np.where(treated > 0, spend / treated, 0.0)
        share = np.where(pool > 0, treated / pool, 0.0)
    tt, ss, kk = np.nonzero(on)
    df = pd.DataFrame({
        "period": (tt + 1).astype(object), "segment": problem.segment[ss],
        "task": np.array(TASK_OF_STATE, dtype=object)[kk], "pool": pool[tt, ss, kk],
        "share_treated": share[tt, ss, kk], "spend": spend[tt, ss, kk],
        "spend_per_member": per_member[tt, ss, kk], "spend_per_treated": per_treated[tt, ss, kk],
        "response_rate": rate[tt, ss, kk], "expected_successes": succ[tt, ss, kk],
        "value_per_success": delta[tt, ss, kk], "expected_value": succ[tt, ss, kk] * delta[tt, ss, kk],
        "marginal_return": chk.marginal_return[tt, ss, kk], "required_return": chk.required_return[tt, ss, kk],
        "bound": chk.bound[tt, ss, kk], "levels": levels[tt, ss, kk], "discount_factor": disc[tt]})
    V_end, _, _ = (end_values(problem) if result.steady is None else
                   ((1 + problem.discount) ** -T * result.steady.W, None, 0.0))
    U = evaluate(problem, xs, V_end, shares) / np.append(disc, disc[-1] / (1 + problem.discount))[:, None, None]
    Vp = result.best.policy.V / np.append(disc, disc[-1] / (1 + problem.discount))[:, None, None]
    if result.steady is not None:
        df = pd.concat([df, _steady_rows(problem, result, n[-1])], ignore_index=True)
    flows = _flows(problem, n, succ)
    summary = _summary(problem, result, chk, df, spend, one_off, n, U, Vp, seconds)
    return DynamicPlan(table=df[PLAN_COLUMNS + [c for c in df.columns if c not in PLAN_COLUMNS]],
                       flows=flows, summary=summary, problem=problem, result=result, check=chk)


def _steady_rows(problem: DynamicProblem, result: DynamicResult, start: np.ndarray) -> pd.DataFrame:
    """One ``steady`` row per cell: the stationary policy, applied to the members entering period T + 1."""
    st = result.steady
    ss, kk = np.nonzero(problem.has_task)
    start = start.copy()
    start[:, 0] += problem.steady_arrivals
    x, p = st.x[ss, kk], st.p[ss, kk]
    mr = st.delta[ss, kk] * np.array([problem.slope(k, st.x[:, k])[s] for s, k in zip(ss, kk)])
    pool = start[ss, kk]
    on = problem.steady_allowed[ss, kk]
    return pd.DataFrame({
        "period": "steady", "segment": problem.segment[ss], "task": np.array(TASK_OF_STATE, dtype=object)[kk],
        "pool": pool, "share_treated": np.where(x > 0, 1.0, 0.0), "spend": pool * x, "spend_per_member": x,
        "spend_per_treated": x, "response_rate": p, "expected_successes": pool * p,
        "value_per_success": st.delta[ss, kk], "expected_value": pool * p * st.delta[ss, kk],
        "marginal_return": mr, "required_return": 1.0,
        "bound": np.where(~on, "off", np.where(x <= problem.lo[ss, kk], "lower", "none")), "levels": 1,
        "discount_factor": (1 + problem.discount) ** -problem.T})


def _flows(problem: DynamicProblem, n: np.ndarray, succ: np.ndarray) -> pd.DataFrame:
    T, S = problem.T, problem.S
    rows = []
    for t in range(T):
        cur = n[t]
        failed = cur - succ[t]
        lost = failed * (1.0 - problem.keep)
        end = np.zeros((S, 3))
        end[:, 1] = succ[t].sum(axis=1)
        end[:, 0] += failed[:, 0] - lost[:, 0]
        end[:, 2] += failed[:, 1] + failed[:, 2] - lost[:, 2]
        arrivals = problem.arrivals[t + 1] if t >= 1 else np.zeros(S)
        for k, state in enumerate(STATES):
            rows.append(pd.DataFrame({
                "period": t + 1, "segment": problem.segment, "state": state, "start": cur[:, k],
                "arrived": arrivals if k == 0 else 0.0,
                "moved_to_active": succ[t][:, k] if k != 1 else 0.0,
                "stayed_active": succ[t][:, k] if k == 1 else 0.0,
                "lapsed": failed[:, 1] if k == 1 else 0.0, "lost": lost[:, k],
                "end": end[:, k]}))
    df = pd.concat(rows, ignore_index=True)
    return df.sort_values(["period", "segment", "state"], key=lambda c: c.map(
        {s: i for i, s in enumerate(STATES)}) if c.name == "state" else c, kind="stable").reset_index(drop=True)


def _summary(problem, result, chk, df, spend, one_off, n, U, Vp, seconds) -> dict[str, Any]:
    T = problem.T
    disc = np.array([problem.disc(t) for t in range(1, T + 1)])
    period_spend = spend.sum(axis=(1, 2))
    # members at the end of period t before the next period's arrivals
    margin_t = np.array([float((problem.margin * (n[t + 1] - _arrivals_at(problem, t + 2))).sum())
                         for t in range(T)])
    oneoff_t = one_off.sum(axis=(1, 2))
    price = result.price if result.rows is not None else np.zeros(0)
    shadow = (result.rows[0].T @ price) if result.rows is not None else np.zeros(T)
    by_period = [{"period": t + 1, "spend": float(period_spend[t]),
                  "budget": None if problem.budget_per_period is None else float(problem.budget_per_period[t]),
                  "budget_shadow_price": float(shadow[t]),
                  "required_return": float(problem.spend_weight + shadow[t] / disc[t]),
                  "margin": float(margin_t[t]), "one_off_value": float(oneoff_t[t]),
                  "net_value": float(margin_t[t] + oneoff_t[t] - period_spend[t]),
                  "discount_factor": float(disc[t]),
                  "members_start": {s: float(n[t][:, k].sum()) for k, s in enumerate(STATES)}}
                 for t in range(T)]
    values = [{"segment": str(problem.segment[s]), "period": t + 1,
               **{f"lifetime_value_{st}": float(U[t, s, k]) for k, st in enumerate(STATES)},
               **{f"priced_value_{st}": float(Vp[t, s, k]) for k, st in enumerate(STATES)}}
              for t in range(T) for s in range(problem.S)]
    cells = df[df["period"] != "steady"]
    by_task = {k: {"spend": float(g["spend"].sum()), "expected_successes": float(g["expected_successes"].sum())}
               for k, g in cells.groupby("task", sort=False)}
    total = sum(v["spend"] for v in by_task.values())
    by_segment = {str(k): {"spend": float(g["spend"].sum())} for k, g in cells.groupby("segment", sort=False)}
    # the solver maximizes value - rate * spend (rate 1: customer equity; a hurdle rate otherwise)
    equity = result.primal + (problem.spend_weight - 1.0) * float(period_spend @ disc)
    out = {
        "scenario": problem.name, "status": "optimal" if result.termination == "optimal" and chk.ok
        else (result.termination if result.termination != "optimal" else "suboptimal"),
        "currency": problem.currency, "periods": "infinite" if problem.steady_state else T,
        "discount": problem.discount, "customer_equity": equity, "net_value": equity,
        "objective": {"type": "net_value"} if problem.spend_weight == 1.0 else
        {"type": "hurdle", "rate": problem.spend_weight, "value": result.primal},
        # money in present value: net_value = total_value - discounted_spend (total_spend is nominal)
        "total_value": equity + float(period_spend @ disc), "activation_cost": 0.0,
        "total_spend": float(period_spend.sum()), "discounted_spend": float(period_spend @ disc),
        "budget": {"total": problem.budget_total,
                   "per_period": None if problem.budget_per_period is None else problem.budget_per_period.tolist()},
        "budget_binds": bool(result.info.get("budget_binds", False)),
        "budget_shadow_price": price.tolist(), "by_period": by_period,
        "budget_rows": [{"name": name, "cap": float(cap), "spend": float(used), "shadow_price": float(pr)}
                        for name, cap, used, pr in zip(problem.budget_names, *(
                            (result.rows[1], result.rows[0] @ period_spend, price) if result.rows is not None
                            else ((), (), ())))],
        "kkt_max_deviation": chk.max_deviation,
        "optimality_check": {"ok": chk.ok, "feasible": chk.feasible, "violations": chk.violations,
                             "mixed_prices": chk.mixed_prices, "reduced_cost": chk.reduced_cost,
                             "marginal_deviation": chk.marginal_deviation, "price_spread": chk.price_spread,
                             "own_price_deviation": chk.own_deviation},
        "solver": "dynamic", "optimality_gap": result.gap, "upper_bound": result.upper_bound,
        "bound_method": "Lagrangian dual of the budgets (per-member backward induction at the prices)",
        "solve_seconds": seconds, "iterations": result.iterations, "passes": result.passes,
        "by_task": by_task, "by_segment": by_segment,
        "allocation_ratio": {t: (by_task.get(t, {}).get("spend", 0.0) / total if total > 0 else 0.0)
                             for t in TASK_OF_STATE},
        "state_values": values, "solver_info": result.info, "treatment": problem.treatment,
    }
    if result.steady is not None:
        st = result.steady
        out["steady_state"] = {
            "starts_after_period": T, "policy_iterations": st.iterations, "bellman_residual": st.residual,
            "arrivals_value": result.tail_value,
            "values": [{"segment": str(problem.segment[s]), **{st_: float(st.W[s, k]) for k, st_ in
                                                                enumerate(STATES)}} for s in range(problem.S)]}
    return out


def _arrivals_at(problem: DynamicProblem, t: int) -> np.ndarray:
    """New prospects joining at the start of period t, as a (S, 3) array (prospects column)."""
    out = np.zeros((problem.S, 3))
    if 2 <= t <= problem.T:
        out[:, 0] = problem.arrivals[t]
    return out


def plan_dynamic(problem: DynamicProblem, tolerance: float | None = None) -> DynamicPlan:
    """Solve ``problem`` and build its plan (timed)."""
    t0 = time.perf_counter()
    if problem.treatment == "uniform":
        from .uniform import solve_uniform

        result = solve_uniform(problem, tolerance)
    else:
        result = solve_dynamic(problem, tolerance)
    return build_dynamic_plan(problem, result, seconds=time.perf_counter() - t0)
