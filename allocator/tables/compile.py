"""A validated cells table and a scenario's rules compiled into a CompiledProblem (no per-cell objects)."""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..curves import get_family
from ..errors import Problem, SpecError
from ..problem import CompiledProblem, CurveBlock
from .columns import CLV_COLUMNS, _Columns, _points, _tags_of, _text
from .validate import _validate


def _values(cols: _Columns) -> np.ndarray:
    value = cols.num["value"].copy()
    clv = np.isnan(value)
    if clv.any():
        from ..value import lifetime_value

        timing = _text(cols.raw, "clv_timing", cols.n)
        keys = pd.DataFrame({c: cols.num[c][clv] for c in CLV_COLUMNS[:4]})
        keys["clv_timing"] = [t or "gupta_lehmann" for t in timing[clv]]
        inverse = keys.groupby(list(keys.columns), dropna=False, sort=False).ngroup().to_numpy()
        first = pd.Series(np.arange(len(keys))).groupby(inverse).first().to_numpy()
        lv = np.array([lifetime_value(keys.iloc[j, 0], keys.iloc[j, 1], keys.iloc[j, 2],
                                      math.inf if np.isnan(keys.iloc[j, 3]) else keys.iloc[j, 3], keys.iloc[j, 4])
                       for j in first])
        value[clv] = lv[inverse]
    return value


def compile_cells(cols: _Columns, name: str = "cells", budget: float | None = None, use_all: bool = False,
                  currency: str | None = None) -> CompiledProblem:
    """The cell arrays of a (validated) table, without rules: bounds, curves by family, value."""
    n, g = cols.n, cols.num
    pool = g["pool"].astype(float)
    lower = np.where(np.isnan(g["min_spend"]), 0.0, g["min_spend"])
    upper = np.where(np.isnan(g["max_spend"]), np.inf, g["max_spend"])
    blocks = []
    fam_codes, fam_names = pd.factorize(cols.raw["family"])
    for code, fname in enumerate(fam_names):
        f = get_family(str(fname))
        idx = np.flatnonzero(fam_codes == code)
        if f.name == "piecewise":
            pts = _text(cols.raw, "points", n)
            params = f.pack([{"points": _points(pts[i])} for i in idx])
        else:
            params = {p.name: (np.where(np.isnan(g[p.name][idx]), p.default, g[p.name][idx])
                               if p.default is not None else g[p.name][idx].copy()) for p in f.params}
        blocks.append(CurveBlock(f, idx, params))
        upper[idx] = np.minimum(upper[idx], pool[idx] * f.domain_max(params))
    upper = np.maximum(upper, lower)
    return CompiledProblem(name=name, segment=cols.segment, task=cols.task, pool=pool, value=_values(cols),
                           lower=lower, upper=upper, current_spend=g["current_spend"], blocks=tuple(blocks),
                           budget=budget, use_all=use_all, currency=currency)


def _scenario_without_cells(scenario: Mapping[str, Any] | Any):
    """The scenario's own part (budget, pots, rules, objective, solver) as a validated ``Scenario``."""
    from pydantic import ValidationError

    from ..spec.loader import _problems_from_validation
    from ..spec.models import Scenario

    if isinstance(scenario, Scenario):
        return scenario.model_copy(update={"segments": None})
    data = {k: v for k, v in dict(scenario).items() if k not in ("cells", "segments", "model")}
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_problems_from_validation(exc, data)) from None


def _rules_problems(sc, labels) -> list[Problem]:
    """Selector checks of the YAML path (unknown segment or tag, selects no cell) against the table's labels."""
    from ..constraints import select
    from ..spec.constraints import (EfficiencyConstraint, LockConstraint, MinActiveConstraint, RatioConstraint,
                                   ShareConstraint, SpendConstraint, TargetObjective)

    problems: list[Problem] = []
    seg_ids = set(pd.unique(labels.segment).tolist())
    all_tags = set().union(*set(labels.tags)) if labels.tags else set()

    def check(sel, fld: str) -> None:
        for s in sel.segments or []:
            if s not in seg_ids:
                problems.append(Problem(fld, f"unknown segment '{s}'"))
                return
        for t in sel.tags or []:
            if t not in all_tags:
                problems.append(Problem(fld, f"unknown tag '{t}'; known: {', '.join(sorted(all_tags)) or '(no segment has tags)'}"))
                return
        if not select(sel, labels).any():
            problems.append(Problem(fld, f"selects no cell ({sel.describe()})"))

    for b in sc.budgets:
        check(b.select, f"budgets.{b.name}.select")
    for c in sc.constraints:
        fld = f"constraints.{c.name}"
        if isinstance(c, RatioConstraint):
            check(c.numerator, f"{fld}.numerator")
            check(c.denominator, f"{fld}.denominator")
        elif isinstance(c, ShareConstraint):
            check(c.select, f"{fld}.select")
            check(c.of, f"{fld}.of")
        elif isinstance(c, (SpendConstraint, LockConstraint, MinActiveConstraint, EfficiencyConstraint)):
            check(c.select, f"{fld}.select")
    if isinstance(sc.objective, TargetObjective):
        check(sc.objective.select, "objective.select")
    return problems


def compile_table(scenario: Mapping[str, Any] | Any, table: pd.DataFrame, source: str | None = None,
                  validate: bool = True) -> CompiledProblem:
    """Validate ``table`` and compile it with the rules of ``scenario`` into a :class:`CompiledProblem`.

    ``scenario`` is the scenario mapping (its ``cells``/``segments`` keys are ignored) or a
    ``Scenario``. Budget, named pots, constraints and the objective compile through the same code
    as the YAML path (:func:`allocator.constraints.compile_constraints`).

    Raises
    ------
    SpecError
        Listing every table problem (row, segment, task, column) and every rule problem.
    """
    from ..constraints import CellLabels, compile_constraints
    from ..spec.constraints import LockConstraint

    source = source or table.attrs.get("source", "cells")
    sc = _scenario_without_cells(scenario)
    cols = _Columns.read(table)
    if validate:
        problems = _validate(cols, source)
        if problems:
            raise SpecError(problems, source=source)
    prob = compile_cells(cols, name=sc.name, budget=None if sc.budget is None else sc.budget.total,
                         use_all=bool(sc.budget and sc.budget.use_all), currency=sc.currency)
    if not (sc.budgets or sc.constraints or type(sc.objective).__name__ != "NetValueObjective"
            or (sc.budget is not None and sc.budget.unit is not None)
            or ("min_active_spend" in table and table["min_active_spend"].notna().any())
            or ("activation_cost" in table and (table["activation_cost"].fillna(0) > 0).any())):
        return _with_options(prob, sc)
    empty = frozenset()
    if "tags" in table and table["tags"].notna().any():
        tags = tuple(frozenset(_tags_of(v)) for v in table["tags"].to_numpy(dtype=object))
    else:
        tags = (empty,) * cols.n
    labels = CellLabels(cols.segment, cols.task, tags)
    if validate:
        problems = _rules_problems(sc, labels)
        if problems:
            raise SpecError(problems, source="scenario")
    locks = [c for c in sc.constraints if isinstance(c, LockConstraint)]
    rest = sc.model_copy(update={"constraints": [c for c in sc.constraints if not isinstance(c, LockConstraint)]})
    rules = compile_constraints(rest, labels, prob.value, prob.current_spend)
    min_active = rules.min_active
    activation = rules.activation_cost
    if "min_active_spend" in table:
        min_active = np.fmax(min_active, cols.num["min_active_spend"])
    if "activation_cost" in table:
        activation = np.fmax(activation, cols.num["activation_cost"])
    locked = _apply_locks(locks, labels, prob, sc)
    fixed = ~np.isnan(locked)
    lower = np.where(fixed, locked, prob.lower)
    upper = np.where(fixed, locked, prob.upper)
    integer = rules.unit is not None or bool(np.any(min_active > 0)) or bool(np.any(activation > 0))
    names = None
    if fixed.any():
        from ..constraints import select
        names = np.full(cols.n, "", dtype=object)
        for c in locks:
            names[select(c.select, labels)] = c.name
    return _with_options(CompiledProblem(**{
        **prob.__dict__, "lower": lower, "upper": upper, "constraints": rules.rows,
        "min_active": min_active if integer else None, "activation_cost": activation if integer else None,
        "unit": rules.unit, "locked": locked if fixed.any() else None, "objective": rules.objective,
        "efficiency": rules.efficiency, "lock_names": names}), sc)


def _apply_locks(locks, labels, prob: CompiledProblem, sc) -> np.ndarray:
    """Lock rules as per-cell spends, checked against the cells' bounds like the YAML path."""
    from ..constraints import _check_lock_clash, _fmt, select
    from ..errors import InfeasibleError

    n = prob.n
    locked = np.full(n, np.nan)
    source = np.full(n, "", dtype=object)
    for c in locks:
        mask = select(c.select, labels)
        new = np.where(mask, prob.current_spend if c.spend == "current" else float(c.spend), np.nan)
        _check_lock_clash(labels, locked, source, new, c.name)
        first = mask & np.isnan(locked)
        locked[mask] = new[mask]
        source[first] = c.name
    if not locks:
        return locked
    lo = prob.lower
    unit = sc.budget.unit if sc.budget is not None else None
    for i in np.flatnonzero(~np.isnan(locked)):
        v, name = locked[i], f"({labels.segment[i]}, {labels.task[i]})"
        lock = f"lock '{source[i]}': cell {name} spends {_fmt(v)}"
        if v < lo[i]:
            raise InfeasibleError(f"infeasible: a lock conflicts with the bounds of cell {name}",
                                  conflict=[lock, f"min_spend of cell {name} = {_fmt(lo[i])}"])
        if unit is not None and abs(v / unit - round(v / unit)) > 1e-9:
            raise InfeasibleError(f"infeasible: a lock is not a whole number of spend units in cell {name}",
                                  conflict=[lock, f"budget.unit = {_fmt(unit)}"])
    return locked


def _with_options(prob: CompiledProblem, sc) -> CompiledProblem:
    opts = {"formulation": sc.solver.formulation, "breakpoints": sc.solver.breakpoints,
            "time_limit": sc.solver.time_limit,
            "partial_targeting": bool(getattr(sc.solver, "partial_targeting", False))}
    return CompiledProblem(**{**prob.__dict__, "options": opts})
