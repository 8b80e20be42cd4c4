"""Shared problem builders for the tests (one place, not copied between files)."""

from __future__ import annotations

from typing import Any

import numpy as np

from allocator.compile import compile_scenario
from allocator.curves import get_family
from allocator.problem import CompiledProblem, CurveBlock
from allocator.spec import scenario_from_dict


def exp_cell(pool: float, value: float, ceiling: float, rate: float, floor: float = 0.0, **extra: Any) -> dict:
    """A scenario cell with an exponential curve."""
    return {"pool": pool, "value": value,
            "curve": {"family": "exponential", "ceiling": ceiling, "rate": rate, "floor": floor}, **extra}


def scenario(cells: dict[tuple[str, str], dict], budget: float | None = None, use_all: bool = False,
             name: str = "test", **extra: Any) -> dict:
    """A scenario mapping from ``{(segment, task): cell}``."""
    segs: dict[str, dict] = {}
    for (seg, task), cell in cells.items():
        segs.setdefault(seg, {"id": seg, "tasks": {}})["tasks"][task] = cell
    data: dict[str, Any] = {"name": name, "segments": list(segs.values()), **extra}
    if budget is not None:
        data["budget"] = {"total": budget, "use_all": use_all}
    return data


def compiled(cells: dict[tuple[str, str], dict], **kw: Any) -> CompiledProblem:
    return compile_scenario(scenario_from_dict(scenario(cells, **kw)))


def random_problem(n: int, seed: int = 0, families: tuple[str, ...] = ("exponential",),
                   bounds: bool = True, budget_share: float | None = 0.5, use_all: bool = False) -> CompiledProblem:
    """A random concave problem built directly as arrays.

    ``budget_share`` is the budget as a share of the unconstrained optimum's spend
    (approximated by the spend where marginal return is 1); ``None`` = no budget.
    """
    rng = np.random.default_rng(seed)
    pool = rng.uniform(100, 10_000, n)
    value = rng.uniform(50, 2_000, n)
    blocks = []
    cells = np.arange(n)
    groups = np.array_split(rng.permutation(cells), len(families))
    for fam_name, idx in zip(families, groups):
        idx = np.sort(idx)
        fam = get_family(fam_name)
        m = len(idx)
        if fam_name == "exponential":
            c = rng.uniform(0.02, 0.6, m)
            P = {"ceiling": c, "floor": rng.uniform(0, 0.5, m) * c, "rate": rng.uniform(0.005, 0.5, m)}
        elif fam_name == "hill":
            c = rng.uniform(0.02, 0.6, m)
            P = {"ceiling": c, "floor": np.zeros(m), "half_saturation": rng.uniform(1, 100, m),
                 "shape": rng.uniform(0.5, 1.0, m)}
        else:
            raise ValueError(fam_name)
        blocks.append(CurveBlock(fam, idx, P))
    lower = np.zeros(n)
    upper = np.full(n, np.inf)
    if bounds:
        k = rng.random(n)
        lower = np.where(k < 0.1, rng.uniform(0, 2, n) * pool, 0.0)
        upper = np.where(k > 0.8, lower + rng.uniform(0.5, 20, n) * pool, np.inf)
    prob = CompiledProblem(name="random", segment=np.array([f"s{i}" for i in range(n)], dtype=object),
                           task=np.array(["acquisition"] * n, dtype=object), pool=pool, value=value,
                           lower=lower, upper=upper, current_spend=np.full(n, np.nan), blocks=tuple(blocks))
    if budget_share is None:
        return prob
    from allocator.solvers import solve

    free = solve(prob, "exact").spend.sum()
    budget = float(lower.sum() + budget_share * max(free - lower.sum(), 1.0))
    return CompiledProblem(**{**prob.__dict__, "budget": budget, "use_all": use_all})


# ---- calibration builders -------------------------------------------------------------------------

def simulate_records(family: str, params: dict, spend: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """0/1 outcomes drawn from ``family`` with ``params`` at the given spends: ``(spend, outcome)``."""
    fam = get_family(family)
    p = fam.response(np.asarray(spend, float), {k: np.array([v]) for k, v in params.items()})
    # a stream of its own: callers often draw the spends from a generator with the same seed
    y = (np.random.default_rng((seed, 0x5EED)).random(len(spend)) < p).astype(float)
    return np.asarray(spend, float), y


def write_csv(path, columns: dict[str, list | np.ndarray]) -> str:
    """Write a CSV with a header line from ``{column: values}``; returns the path as a string."""
    import pandas as pd

    pd.DataFrame(columns).to_csv(path, index=False)
    return str(path)


# ---- builders for constraints, S-curves and the global solver (issue 3) ----

def hill_cell(pool: float, value: float, ceiling: float, half_saturation: float, shape: float,
              floor: float = 0.0, **extra: Any) -> dict:
    """A scenario cell with a hill curve (S-shaped when ``shape > 1``)."""
    return {"pool": pool, "value": value, "curve": {"family": "hill", "ceiling": ceiling,
                                                    "half_saturation": half_saturation, "shape": shape,
                                                    "floor": floor}, **extra}


def s_curve_problem(n: int, seed: int = 0, budget_share: float | None = 0.4, shape: tuple = (1.5, 3.0),
                    value: tuple = (20.0, 200.0)) -> CompiledProblem:
    """A random problem of S-shaped hill cells built as arrays.

    ``budget_share`` is the budget as a share of the spend at which every cell's
    marginal return falls to 1 (its profit-maximizing spend if run); ``None`` = no budget.
    """
    rng = np.random.default_rng(seed)
    pool = rng.uniform(100, 5_000, n)
    val = rng.uniform(*value, n)
    P = {"ceiling": rng.uniform(0.05, 0.6, n), "floor": np.zeros(n),
         "half_saturation": rng.uniform(1, 20, n), "shape": rng.uniform(*shape, n)}
    fam = get_family("hill")
    prob = CompiledProblem(name="scurves", segment=np.array([f"s{i}" for i in range(n)], dtype=object),
                           task=np.array(["acquisition"] * n, dtype=object), pool=pool, value=val,
                           lower=np.zeros(n), upper=np.full(n, np.inf), current_spend=np.full(n, np.nan),
                           blocks=(CurveBlock(fam, np.arange(n), P),))
    if budget_share is None:
        return prob
    # spend where the marginal return falls back to 1 on the concave side (or 0 if never above 1)
    x = np.geomspace(1e-3, 1e4, 4000)[None, :] * P["half_saturation"][:, None]
    Pm = {k: np.repeat(v, x.shape[1]) for k, v in P.items()}
    marg = (val[:, None] * fam.slope(x.ravel(), Pm).reshape(x.shape))
    last = np.where((marg >= 1).any(axis=1), x.shape[1] - 1 - np.argmax((marg >= 1)[:, ::-1], axis=1), 0)
    free = np.where((marg >= 1).any(axis=1), x[np.arange(n), last] * pool, 0.0)
    return CompiledProblem(**{**prob.__dict__, "budget": float(budget_share * free.sum())})


def brute_force_dp(problem: CompiledProblem, budget: float, steps: int = 2000, rate: float = 1.0,
                   min_active: np.ndarray | None = None,
                   activation_cost: np.ndarray | None = None, use_all: bool = False) -> tuple[float, np.ndarray]:
    """Best ``sum(value * E) - rate * spend`` over a grid of ``steps`` spend units of ``budget / steps``.

    Dynamic programming over cells: exact on the grid, independent of every solver.
    Cell bounds are rounded to the grid (lower up, upper down).
    """
    d = budget / steps
    grid = np.arange(steps + 1) * d
    best = np.zeros(steps + 1)
    choice = []
    for i in range(problem.n):
        spend = np.zeros(problem.n)
        vals = np.empty(steps + 1)
        for k, g in enumerate(grid):
            spend[i] = g
            vals[k] = problem.value[i] * problem.pool[i] * problem.response(spend)[i] - rate * g
        ok = (grid >= problem.lower[i] - 1e-9) & (grid <= problem.upper[i] + 1e-9)
        if min_active is not None:
            ok &= (grid == 0) | (grid >= min_active[i] - 1e-9)
        if activation_cost is not None:
            vals = vals - np.where(grid > 0, activation_cost[i], 0.0)
        vals = np.where(ok, vals, -np.inf)
        # new[t] = max_k best[t - k] + vals[k]
        t = np.arange(steps + 1)[:, None]
        k = np.arange(steps + 1)[None, :]
        cand = np.where(k <= t, best[np.clip(t - k, 0, steps)] + vals[None, :], -np.inf)
        arg = np.argmax(cand, axis=1)
        choice.append(arg)
        best = cand[np.arange(steps + 1), arg]
    t = steps if use_all else int(np.argmax(best))
    value = float(best[t])
    plan = np.zeros(problem.n)
    for i in range(problem.n - 1, -1, -1):
        k = choice[i][t]
        plan[i] = k * d
        t -= k
    return value, plan


# ---- scenario analysis (issue 5) ----

def write_yaml(path, data: dict):
    """Write ``data`` as YAML to ``path`` (a pathlib.Path) and return the path."""
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def sample_model(count: int = 8, seed: int = 0) -> dict:
    """A two-segment model file mapping that carries parameter ``samples`` (bootstrap-like draws)."""
    rng = np.random.default_rng(seed)
    cells = {("b2b", "acquisition"): exp_cell(500, 3000, 0.6, 0.004),
             ("b2b", "retention"): exp_cell(400, 5000, 0.95, 0.01, floor=0.8),
             ("web", "winback"): {"pool": 2000, "value": 60,
                                  "curve": {"family": "hill", "ceiling": 0.3, "half_saturation": 8.0, "shape": 1.0}}}
    model = scenario(cells)
    model.pop("name")
    model["name"] = "sampled"
    model["samples"] = {
        "method": "bootstrap", "count": count, "seed": seed,
        "cells": [
            {"segment": "b2b", "task": "acquisition",
             "curve": {"rate": (0.004 * rng.lognormal(0, 0.3, count)).tolist(),
                       "ceiling": np.clip(0.6 * rng.lognormal(0, 0.1, count), 0, 1).tolist()},
             "value": (3000 * rng.lognormal(0, 0.2, count)).tolist()},
            {"segment": "web", "task": "winback",
             "curve": {"half_saturation": (8.0 * rng.lognormal(0, 0.3, count)).tolist()},
             "pool": (2000 * rng.lognormal(0, 0.1, count)).tolist()},
        ]}
    return model
