"""One huge concave problem on Dask: a cells table partitioned in a ``dask.dataframe``.

The multiplier method needs only the total spend over all cells for each trial multiplier,
so each partition is validated and compiled once on its worker (the compiled arrays stay
there as futures) and each trial is a map-reduce: ``sum_p S_p(lam)``. The driver runs the
bisection on ``log lam``; the final plan interpolates between the two bracketing spends (as
:class:`~allocator.solvers.exact.ExactSolver` does) and each partition writes its own part of
the plan (``plan/part-00000.parquet`` ...). The same driver runs without a cluster on a list of
pandas partitions (:func:`solve_partitions`), which is how the tests check Dask against local.

Scope: concave curves, one budget (``budget.total``, optionally ``use_all`` when the profit
optimum exceeds it), no pots or rules: the problems the exact solver handles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from .errors import NumericalError, SolverUnavailableError, SpecError


def _compile_part(df: pd.DataFrame, offset: int, source: str):
    """A partition compiled without a budget (rows numbered globally from ``offset``)."""
    from .tables import _Columns, _validate, compile_cells

    cols = _Columns.read(df.reset_index(drop=True))
    problems = _validate(cols, source)
    if problems:
        problems = [type(p)(**{**p.__dict__, "row": p.row + offset}) for p in problems]
        raise SpecError(problems, source=source)
    prob = compile_cells(cols)
    if not prob.concave.all():
        raise SolverUnavailableError("the Dask route needs concave curves (S-curves: solver 'envelope' locally)")
    rules = [(b.index, b.family.spend_rule(b.params, prob.value[b.index], prob.pool[b.index])) for b in prob.blocks]
    return prob, rules


def _spend(part, lam: float) -> np.ndarray:
    prob, rules = part
    s = np.empty(prob.n)
    for idx, rule in rules:
        s[idx] = rule(lam)
    return np.minimum(np.maximum(s, prob.lower), prob.upper)


def _spend_sum(part, lam: float) -> float:
    return float(_spend(part, lam).sum())


def _write_part(part, lam_a: float, lam_b: float, theta: float, path: str | None) -> dict[str, float]:
    """The partition's plan at the final bracket; written to ``path`` (Parquet) when given; its totals."""
    from .tables import plan_columns, write_plan_table

    prob, _ = part
    sa, sb = _spend(part, lam_a), _spend(part, lam_b)
    s = sb + theta * (sa - sb)
    cols = plan_columns(prob, s)
    if path:
        write_plan_table(cols, path)
    return {"cells": prob.n, "spend": float(s.sum()), "value": float(cols["expected_value"].sum()),
            "checksum": float(np.dot(s, np.arange(1, prob.n + 1) % 97))}


@dataclass
class ScalePlan:
    """Totals of a partitioned solve: multiplier, spend, value, gap and per-partition figures."""

    marginal_return: float
    total_spend: float
    net_value: float
    optimality_gap: float
    trials: int
    parts: list[dict[str, float]]


def multiplier_search(spend_sum: Callable[[float], float], budget: float | None, use_all: bool = False,
                      rel: float = 1e-13) -> tuple[float, float, float, float, float, int]:
    """Bisection/regula falsi on ``log lam`` over a map-reduce ``spend_sum``.

    Returns ``(log lam_a, log lam_b, S_a, S_b, theta, trials)``: the final plan is
    ``s_b + theta (s_a - s_b)`` per cell.
    """
    trials = 1
    S1 = spend_sum(1.0)
    if budget is None or (not use_all and S1 <= budget):
        return 0.0, 0.0, S1, S1, 0.0, trials
    if S1 < budget:
        raise SolverUnavailableError("use_all below the profit optimum is not handled on Dask; solve locally")
    a, Sa, b = 0.0, S1, math.log(2.0)
    Sb = spend_sum(2.0)
    trials += 1
    while Sb > budget:
        a, Sa, b = b, Sb, b * 2
        if b > 700:
            raise NumericalError("could not bracket the budget multiplier")
        Sb = spend_sum(math.exp(b))
        trials += 1
    fa, fb, side, it = Sa - budget, Sb - budget, 0, 0
    tol = rel * max(budget, 1.0)
    while Sa - Sb > tol and b - a > 1e-15 * max(1.0, abs(a)):
        it += 1
        if it > 400:
            raise NumericalError("multiplier search did not converge")
        c = b - fb * (b - a) / (fb - fa) if fb != fa else 0.5 * (a + b)
        if not (a < c < b) or it % 8 == 0:
            c = 0.5 * (a + b)
        Sc = spend_sum(math.exp(c))
        trials += 1
        fc = Sc - budget
        if abs(fc) <= tol:
            a = b = c
            Sa = Sb = Sc
            break
        if fc > 0:
            a, fa, Sa = c, fc, Sc
            if side == -1:
                fb *= 0.5
            side = -1
        else:
            b, fb, Sb = c, fc, Sc
            if side == 1:
                fa *= 0.5
            side = 1
    theta = 0.0 if Sa == Sb else (budget - Sb) / (Sa - Sb)
    return a, b, Sa, Sb, theta, trials


def _bound(parts_map, lam: float, budget: float | None) -> float:
    def one(part, lam):
        prob, _ = part
        s = _spend(part, lam)
        return float(prob.expected_value(s).sum() - lam * s.sum())

    return float(sum(parts_map(one, lam))) + (lam - 1.0) * (budget or 0.0)


def _solve(parts_map, n_parts: int, budget, use_all, out_dir) -> ScalePlan:
    a, b, Sa, Sb, theta, trials = multiplier_search(lambda lam: float(sum(parts_map(_spend_sum, lam))),
                                                    budget, use_all)
    paths = [str(Path(out_dir) / "plan" / f"part-{i:05d}.parquet") if out_dir else None for i in range(n_parts)]
    totals = parts_map(_write_part, math.exp(a), math.exp(b), theta, paths=paths)
    spend = sum(t["spend"] for t in totals)
    value = sum(t["value"] for t in totals)
    lam = math.exp(0.5 * (a + b))
    ub = _bound(parts_map, lam, budget) if budget is not None else value - spend
    net = value - spend
    return ScalePlan(lam, spend, net, max(ub - net, 0.0) / max(abs(net), 1e-12), trials, totals)


def solve_partitions(scenario: Mapping[str, Any], partitions: list[pd.DataFrame],
                     out_dir: str | Path | None = None) -> ScalePlan:
    """The same solve on local pandas partitions (no cluster): the reference for the Dask route."""
    budget, use_all = _budget(scenario)
    offsets = np.cumsum([0] + [len(p) for p in partitions])[:-1]
    parts = [_compile_part(p, int(o), "cells") for p, o in zip(partitions, offsets)]

    def parts_map(fn, *args, paths=None):
        return [fn(part, *args, *(() if paths is None else (paths[i],))) for i, part in enumerate(parts)]

    return _solve(parts_map, len(parts), budget, use_all, out_dir)


def solve_dask(scenario: Mapping[str, Any], ddf, client, out_dir: str | Path | None = None) -> ScalePlan:
    """Solve the cells of dask dataframe ``ddf`` under ``scenario``'s budget on ``client``'s cluster.

    Each partition is compiled once on a worker and kept there; every multiplier trial is one
    ``client.map`` over the partitions and a sum on the driver.
    """
    budget, use_all = _budget(scenario)
    lengths = ddf.map_partitions(len).compute()
    offsets = np.cumsum([0] + list(lengths))[:-1]
    delayed = ddf.to_delayed()
    frames = client.compute(delayed)
    parts = client.map(_compile_part, frames, [int(o) for o in offsets], ["cells"] * len(frames), pure=False)

    def parts_map(fn, *args, paths=None):
        extra = [[a] * len(parts) for a in args]
        if paths is not None:
            extra.append(paths)
        return client.gather(client.map(fn, parts, *extra, pure=False))

    return _solve(parts_map, len(parts), budget, use_all, out_dir)


def _budget(scenario: Mapping[str, Any]) -> tuple[float | None, bool]:
    from .tables import _scenario_without_cells

    sc = _scenario_without_cells(scenario)
    if sc.budgets or sc.constraints:
        raise SolverUnavailableError("the Dask route handles one budget without pots or rules")
    return (None if sc.budget is None else sc.budget.total), bool(sc.budget and sc.budget.use_all)
