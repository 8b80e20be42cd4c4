"""Compile a validated :class:`~allocator.spec.Scenario` into a :class:`CompiledProblem`."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from .constraints import CellLabels, compile_constraints
from .curves import get_family
from .curves.product import ProductFamily
from .errors import InfeasibleError
from .problem import CompiledProblem, CurveBlock
from .spec.columnar import ColumnarScenario
from .spec.models import Scenario, TaskSpec
from .spec.rules import precheck_conflicts
from .value import lifetime_value


def cell_value(cell: TaskSpec) -> float:
    """Value of one success of ``cell``: the number given, or its lifetime value."""
    if isinstance(cell.value, (int, float)):
        return float(cell.value)
    c = cell.value.clv
    return lifetime_value(c.margin, c.retention, c.discount,
                          math.inf if c.horizon is None else c.horizon, c.timing)


def compile_scenario(sc: Scenario) -> CompiledProblem:
    """Turn the scenario's cells into arrays, grouping curves by family.

    The spend upper bound of a cell is the smaller of ``max_spend`` and
    ``pool * domain_max`` of its curve (e.g. the peak of a curve that rises then
    falls), so no solver ever spends past a peak.

    A cell with a ``value_curve`` ``w`` gets the composite curve ``p(x) * w(x)``
    (:class:`~allocator.curves.product.ProductFamily`) and keeps its ``value``, so its
    expected value is ``pool * value * p(x) * w(x)``.

    Raises
    ------
    InfeasibleError
        When locks fall outside their cells' bounds or off the spend unit: every such lock is
        named at once (``conflict`` holds the first pair), so one run shows them all.
    """
    if isinstance(sc, ColumnarScenario):
        # a large scenario file read through columns: compiled when it was read (allocator.spec.columnar)
        return sc.compiled()
    cells = getattr(sc, "cells", None)
    if cells is not None:
        # a scenario whose cells come from a table (``cells: PATH``, resolved by the loader)
        from .tables import compile_table, load_cells_table

        return compile_table(sc, load_cells_table(cells))
    _raise_lock_conflicts(sc)
    seg, task, pool, value, lo, hi, cur = [], [], [], [], [], [], []
    # cells without a value curve group by family; with one, by (family, value family)
    by_family: dict[str | tuple[str, str], list[tuple[int, dict]]] = defaultdict(list)
    for s in sc.segments or []:
        for t, cell in s.tasks.items():
            i = len(seg)
            seg.append(s.id)
            task.append(t)
            pool.append(cell.pool)
            value.append(cell_value(cell))
            lo.append(cell.min_spend)
            hi.append(math.inf if cell.max_spend is None else cell.max_spend)
            cur.append(math.nan if cell.current_spend is None else cell.current_spend)
            raw = {k: v for k, v in cell.curve.items() if k != "family"}
            if cell.value_curve is None:
                by_family[cell.curve["family"]].append((i, raw))
            else:
                vraw = {k: v for k, v in cell.value_curve.items() if k != "family"}
                by_family[(cell.curve["family"], cell.value_curve["family"])].append(
                    (i, {"curve": raw, "value_curve": vraw}))
    pool_a = np.array(pool, float)
    upper = np.array(hi, float)
    blocks = []
    for name, items in by_family.items():
        fam = get_family(name) if isinstance(name, str) else ProductFamily(*map(get_family, name))
        idx = np.array([i for i, _ in items], dtype=int)
        params = fam.pack([r for _, r in items])
        blocks.append(CurveBlock(fam, idx, params))
        upper[idx] = np.minimum(upper[idx], pool_a[idx] * fam.domain_max(params))
    lower = np.array(lo, float)
    upper = np.maximum(upper, lower)
    value_a = np.array(value, float)
    current = np.array(cur, float)
    rules = compile_constraints(sc, CellLabels.from_scenario(sc), value_a, current)
    # a lock is a pair of bounds (checked against min_spend/max_spend when compiled); it may
    # exceed a curve peak, which is the planner's call
    fixed = ~np.isnan(rules.locked)
    lower = np.where(fixed, rules.locked, lower)
    upper = np.where(fixed, rules.locked, upper)
    integer = rules.unit is not None or bool(np.any(rules.min_active > 0)) or bool(np.any(rules.activation_cost > 0))
    return CompiledProblem(
        name=sc.name, segment=np.array(seg, dtype=object), task=np.array(task, dtype=object),
        pool=pool_a, value=value_a, lower=lower, upper=upper,
        current_spend=current, blocks=tuple(blocks),
        budget=None if sc.budget is None else sc.budget.total,
        use_all=bool(sc.budget and sc.budget.use_all), currency=sc.currency,
        constraints=rules.rows,
        min_active=rules.min_active if integer else None,
        activation_cost=rules.activation_cost if integer else None,
        unit=rules.unit, locked=rules.locked if fixed.any() else None, objective=rules.objective,
        lock_names=_lock_names(sc) if fixed.any() else None,
        efficiency=rules.efficiency,
        options={"formulation": sc.solver.formulation, "breakpoints": sc.solver.breakpoints,
                 "time_limit": sc.solver.time_limit,
                 # envelope solver: treat a share of a cell's members at the tangent spend (issue 11)
                 "partial_targeting": bool(getattr(sc.solver, "partial_targeting", False))})


def _raise_lock_conflicts(sc: Scenario) -> None:
    """Every lock that its cell's bounds or the spend unit rule out, in one error.

    Floors summing above a cap are left to the solvers, whose conflict search names an
    irreducible set among all rules (a pre-check here would name only the cell floors).
    """
    locks = precheck_conflicts(sc, caps=False)
    if len(locks) == 1:
        raise InfeasibleError(f"infeasible: {locks[0].headline}", conflict=list(locks[0].members))
    if locks:
        raise InfeasibleError(f"infeasible: {len(locks)} locks conflict with their cells' bounds or the spend unit "
                              f"(each lock is listed with the rule it breaks)",
                              conflict=[m for c in locks for m in c.members])


def _lock_names(sc: Scenario) -> np.ndarray:
    """Per cell, the name of the (last) lock rule selecting it, for reports."""
    from .constraints import select
    from .spec.constraints import LockConstraint

    cells = CellLabels.from_scenario(sc)
    out = np.full(len(cells.segment), "", dtype=object)
    for c in sc.constraints:
        if isinstance(c, LockConstraint):
            out[select(c.select, cells)] = c.name
    return out
