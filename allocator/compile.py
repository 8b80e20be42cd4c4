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
from .spec.rules import _params, precheck_conflicts
from .value import lifetime_value


def cell_value(cell: TaskSpec) -> float:
    """Value of one success of ``cell``: the number given, or its lifetime value."""
    if isinstance(cell.value, (int, float)):
        return float(cell.value)
    c = cell.value.clv
    return lifetime_value(c.margin, c.retention, c.discount,
                          math.inf if c.horizon is None else c.horizon, c.timing)


def _values(specs: list[TaskSpec]) -> np.ndarray:
    """:func:`cell_value` of every cell (inlined: a call per cell cost a third of the time)."""
    out = []
    for cell in specs:
        value = cell.value
        if isinstance(value, (int, float)):
            out.append(float(value))
        else:
            c = value.clv
            out.append(lifetime_value(c.margin, c.retention, c.discount,
                                      math.inf if c.horizon is None else c.horizon, c.timing))
    return np.array(out, float)


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
    segments = sc.segments or []
    specs = [cell for s in segments for cell in s.tasks.values()]
    seg = [s.id for s in segments for _ in s.tasks]
    task = [t for s in segments for t in s.tasks]
    # cells without a value curve group by family; with one, by (family, value family)
    by_family: dict[str | tuple[str, str], list[tuple[int, dict]]] = defaultdict(list)
    for i, cell in enumerate(specs):
        raw = _params(cell.curve)
        if cell.value_curve is None:
            by_family[cell.curve["family"]].append((i, raw))
        else:
            by_family[(cell.curve["family"], cell.value_curve["family"])].append(
                (i, {"curve": raw, "value_curve": _params(cell.value_curve)}))
    pool_a = np.array([cell.pool for cell in specs], float)
    # None reads as nan: no bound given (the schema refuses a nan written in the file)
    upper = np.array([cell.max_spend for cell in specs], float)
    upper[np.isnan(upper)] = math.inf
    domain_max = np.empty(len(specs))
    blocks = []
    for name, items in by_family.items():
        fam = get_family(name) if isinstance(name, str) else ProductFamily(*map(get_family, name))
        idx = np.array([i for i, _ in items], dtype=int)
        params = fam.pack([r for _, r in items])
        blocks.append(CurveBlock(fam, idx, params))
        domain_max[idx] = fam.domain_max(params)
    # the blocks partition the cells: one minimum for all of them
    upper = np.minimum(upper, pool_a * domain_max)
    lower = np.array([cell.min_spend for cell in specs], float)
    upper = np.maximum(upper, lower)
    value_a = _values(specs)
    current = np.array([cell.current_spend for cell in specs], float)
    tags = [frozenset(s.tags) for s in segments for _ in s.tasks]
    labels = CellLabels(np.array(seg, dtype=object), np.array(task, dtype=object), tuple(tags))
    rules = compile_constraints(sc, labels, value_a, current)
    # a lock is a pair of bounds (checked against min_spend/max_spend when compiled); it may
    # exceed a curve peak, which is the planner's call
    fixed = ~np.isnan(rules.locked)
    locks = bool(fixed.any())
    if locks:
        lower = np.where(fixed, rules.locked, lower)
        upper = np.where(fixed, rules.locked, upper)
    integer = (rules.unit is not None or bool((rules.min_active > 0).any())
               or bool((rules.activation_cost > 0).any()))
    return CompiledProblem(
        name=sc.name, segment=labels.segment, task=labels.task,
        pool=pool_a, value=value_a, lower=lower, upper=upper,
        current_spend=current, blocks=tuple(blocks),
        budget=None if sc.budget is None else sc.budget.total,
        use_all=bool(sc.budget and sc.budget.use_all), currency=sc.currency,
        constraints=rules.rows,
        min_active=rules.min_active if integer else None,
        activation_cost=rules.activation_cost if integer else None,
        unit=rules.unit, locked=rules.locked if locks else None, objective=rules.objective,
        lock_names=_lock_names(sc, labels) if locks else None,
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


def _lock_names(sc: Scenario, cells: CellLabels) -> np.ndarray:
    """Per cell, the name of the (last) lock rule selecting it, for reports."""
    from .constraints import select
    from .spec.constraints import LockConstraint

    out = np.full(len(cells.segment), "", dtype=object)
    for c in sc.constraints:
        if isinstance(c, LockConstraint):
            out[select(c.select, cells)] = c.name
    return out
