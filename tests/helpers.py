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
