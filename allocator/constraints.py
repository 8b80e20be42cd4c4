"""Compile the constraint language (:mod:`allocator.spec.constraints`) into arrays.

Every group rule becomes one or two :class:`~allocator.problem.LinearConstraint`
rows ``lower <= sum(coef * spend[index]) <= upper`` over total spend per cell:

* ``spend``:  ``min <= sum_G s <= max`` (one ranged row);
* ``share``:  ``sum_G s - min * sum_R s >= 0`` and ``sum_G s - max * sum_R s <= 0``;
* ``ratio``:  ``sum_N s - min * sum_D s >= 0`` and ``sum_N s - max * sum_D s <= 0``;
* named budgets: ``sum_G s <= total`` (``= total`` with ``use_all``).

Average-efficiency rules are not linear; each becomes one
:class:`~allocator.problem.EfficiencyConstraint`
``sum_G (weight_i * pool_i * p_i(x_i) - rate * s_i) >= 0``:

* ``min_roi``: ``sum_G value_i * pool_i * p_i - min_roi * sum_G s_i >= 0``;
* ``max_cost_per_success``: ``target * sum_G pool_i * p_i - sum_G s_i >= 0``.

The ratio form (value / spend) is undefined when the group spends nothing; the
constraint form is what is enforced, so a group that spends nothing satisfies it.

Locks and minimum-if-active rules are per cell and become arrays. Each row
carries a sentence with its numbers (``text``) for reports and infeasibility
messages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InfeasibleError, Problem
from .problem import EfficiencyConstraint, LinearConstraint, ObjectiveSpec
from .spec.constraints import EfficiencyConstraint as EfficiencyRule
from .spec.constraints import (LockConstraint, MinActiveConstraint, RatioConstraint, Selector, ShareConstraint,
                               SpendConstraint, TargetObjective, HurdleObjective)
from .spec.models import Scenario, TaskSpec

TOTAL_BUDGET_ROW = "budget.total"


@dataclass(frozen=True)
class CellLabels:
    """What selectors can match: segment id, task and the segment's tags, per cell."""

    segment: np.ndarray
    task: np.ndarray
    tags: tuple[frozenset[str], ...]

    @classmethod
    def from_scenario(cls, sc: Scenario) -> "CellLabels":
        seg, task, tags = [], [], []
        for s in sc.segments or []:
            for t in s.tasks:
                seg.append(s.id)
                task.append(t)
                tags.append(frozenset(s.tags))
        return cls(np.array(seg, dtype=object), np.array(task, dtype=object), tuple(tags))


def select(selector: Selector, cells: CellLabels) -> np.ndarray:
    """Boolean mask of the cells matched by ``selector`` (AND across keys, OR within a list)."""
    keep = np.ones(len(cells.segment), dtype=bool)
    if selector.tasks:
        keep &= np.isin(cells.task, list(selector.tasks))
    if selector.segments:
        keep &= np.isin(cells.segment, list(selector.segments))
    if selector.tags:
        wanted = set(selector.tags)
        keep &= np.array([bool(t & wanted) for t in cells.tags], dtype=bool)
    return keep


def _fmt(x: float) -> str:
    """A currency amount for messages: whole numbers with thousands separators, others to 6 digits."""
    if math.isfinite(x) and float(x).is_integer() and abs(x) < 1e15:
        return f"{x:,.0f}"
    return f"{x:,.6g}"


# ---------------------------------------------------------------- semantic checks

def check_constraints(sc: Scenario) -> list[Problem]:
    """Rules of the constraint language: known names in selectors, non-empty groups, min <= max, unique names."""
    problems: list[Problem] = []
    if sc.segments is None:
        return problems
    if sc.budgets or sc.constraints or isinstance(sc.objective, TargetObjective):  # rules that select cells
        with np.errstate(all="ignore"):  # a number too large is reported by check_magnitudes, not as a warning
            _check_rules(sc, problems)
    if sc.budget is not None and sc.budget.use_all and sc.budget.total is None:
        problems.append(Problem("budget.use_all", "needs budget.total"))
    return problems


def _check_rules(sc: Scenario, problems: list[Problem]) -> None:
    """The problems of the named budgets, constraints and target objective of ``sc``, into ``problems``."""
    cells = CellLabels.from_scenario(sc)
    seg_ids = set(cells.segment.tolist())
    all_tags = set().union(*cells.tags) if cells.tags else set()

    def check_selector(sel: Selector, field: str) -> np.ndarray | None:
        bad = False
        for seg in sel.segments or []:
            if seg not in seg_ids:
                problems.append(Problem(field, f"unknown segment '{seg}'; known: {', '.join(sorted(seg_ids))}"))
                bad = True
        for tag in sel.tags or []:
            if tag not in all_tags:
                known = ", ".join(sorted(all_tags)) or "(no segment has tags)"
                problems.append(Problem(field, f"unknown tag '{tag}'; known: {known}"))
                bad = True
        if bad:
            return None
        mask = select(sel, cells)
        if not mask.any():
            problems.append(Problem(field, f"selects no cell ({sel.describe()})"))
            return None
        return mask

    def check_range(lo: float | None, hi: float | None, field: str, what: str) -> None:
        if lo is None and hi is None:
            problems.append(Problem(field, f"give `min`, `max` or both ({what})"))
        elif lo is not None and hi is not None and lo > hi:
            problems.append(Problem(f"{field}.max", f"must be >= min ({_fmt(lo)}); got {_fmt(hi)}"))

    names: dict[str, str] = {}
    for b in sc.budgets:
        field = f"budgets.{b.name}"
        if b.name in names or b.name == TOTAL_BUDGET_ROW:
            problems.append(Problem(field, f"names must be unique; '{b.name}' is already used"))
        names[b.name] = field
        check_selector(b.select, f"{field}.select")
    for c in sc.constraints:
        field = f"constraints.{c.name}"
        if c.name in names or c.name == TOTAL_BUDGET_ROW:
            problems.append(Problem(field, f"names must be unique; '{c.name}' is already used"))
        names[c.name] = field
        if isinstance(c, SpendConstraint):
            check_selector(c.select, f"{field}.select")
            check_range(c.min, c.max, field, "a floor and/or a cap on the group's spend")
        elif isinstance(c, ShareConstraint):
            check_selector(c.select, f"{field}.select")
            check_selector(c.of, f"{field}.of")
            check_range(c.min, c.max, field, "fractions of total spend")
        elif isinstance(c, RatioConstraint):
            num = check_selector(c.numerator, f"{field}.numerator")
            den = check_selector(c.denominator, f"{field}.denominator")
            check_range(c.min, c.max, field, "bounds on spend(numerator) / spend(denominator)")
            if num is not None and den is not None and np.array_equal(num, den):
                problems.append(Problem(field, "numerator and denominator select the same cells"))
        elif isinstance(c, LockConstraint):
            mask = check_selector(c.select, f"{field}.select")
            if mask is not None and c.spend == "current":
                current = {(s.id, t): cell.current_spend for s in sc.segments for t, cell in s.tasks.items()}
                missing = [f"({s}, {t})" for s, t in zip(cells.segment[mask], cells.task[mask])
                           if current[(s, t)] is None]
                if missing:
                    problems.append(Problem(f"{field}.spend", "'current' needs current_spend on every selected "
                                                              f"cell; missing on {', '.join(missing)}"))
            elif isinstance(c.spend, float | int) and c.spend < 0:
                problems.append(Problem(f"{field}.spend", f"must be >= 0; got {_fmt(c.spend)}"))
        elif isinstance(c, MinActiveConstraint):
            check_selector(c.select, f"{field}.select")
        elif isinstance(c, EfficiencyRule):
            check_selector(c.select, f"{field}.select")
            given = [k for k in ("min_roi", "max_cost_per_success") if getattr(c, k) is not None]
            if len(given) != 1:
                problems.append(Problem(field, "give exactly one of `min_roi` and `max_cost_per_success`; got "
                                               + (" and ".join(f"`{k}`" for k in given) or "neither")))
    if isinstance(sc.objective, TargetObjective):
        check_selector(sc.objective.select, "objective.select")


# ---------------------------------------------------------------- compilation

@dataclass(frozen=True)
class CompiledConstraints:
    """The array form of a scenario's rules, merged into :class:`~allocator.problem.CompiledProblem`."""

    rows: tuple[LinearConstraint, ...]
    locked: np.ndarray
    min_active: np.ndarray
    activation_cost: np.ndarray
    unit: float | None
    objective: ObjectiveSpec
    #: average-efficiency rules, merged into ``CompiledProblem.efficiency``
    efficiency: tuple[EfficiencyConstraint, ...] = ()


def _row(name: str, source: str, kind: str, coef_full: np.ndarray, lower: float, upper: float,
         text: str) -> LinearConstraint:
    idx = np.flatnonzero(coef_full != 0)
    return LinearConstraint(name=name, index=idx, coef=coef_full[idx], lower=lower, upper=upper,
                            text=text, kind=kind, source=source)


def compile_constraints(sc: Scenario, cells: CellLabels, value: np.ndarray,
                        current: np.ndarray) -> CompiledConstraints:
    """Turn budgets, constraints, per-cell activation rules and the objective into arrays.

    Raises
    ------
    InfeasibleError
        When a lock falls outside its cell's own ``min_spend``/``max_spend``.
    """
    n = len(cells.segment)
    rows: list[LinearConstraint] = []
    for b in sc.budgets:
        mask = select(b.select, cells).astype(float)
        rel = "=" if b.use_all else "<="
        rows.append(_row(b.name, b.name, "budget", mask, b.total if b.use_all else -math.inf, b.total,
                         f"budget '{b.name}': spend of {b.select.describe()} {rel} {_fmt(b.total)}"))
    locked = np.full(n, np.nan)
    min_active = np.zeros(n)
    activation = np.zeros(n)
    lock_source = None  # per cell, the first lock rule holding it (made with the first lock)
    efficiency: list[EfficiencyConstraint] = []
    for c in sc.constraints:
        if isinstance(c, SpendConstraint):
            mask = select(c.select, cells).astype(float)
            lo = -math.inf if c.min is None else c.min
            hi = math.inf if c.max is None else c.max
            rel = (f">= {_fmt(lo)}" if c.max is None else f"<= {_fmt(hi)}" if c.min is None
                   else f"between {_fmt(lo)} and {_fmt(hi)}")
            rows.append(_row(c.name, c.name, "spend", mask, lo, hi,
                             f"'{c.name}': spend of {c.select.describe()} {rel}"))
        elif isinstance(c, ShareConstraint):
            g = select(c.select, cells).astype(float)
            r = select(c.of, cells).astype(float)
            of = "total spend" if not (c.of.tasks or c.of.segments or c.of.tags) else f"spend of {c.of.describe()}"
            both = c.min is not None and c.max is not None
            if c.min is not None:
                rows.append(_row(f"{c.name}.min" if both else c.name, c.name, "share", g - c.min * r, 0.0, math.inf,
                                 f"'{c.name}': spend of {c.select.describe()} >= {c.min:.4g} x {of}"))
            if c.max is not None:
                rows.append(_row(f"{c.name}.max" if both else c.name, c.name, "share", g - c.max * r, -math.inf, 0.0,
                                 f"'{c.name}': spend of {c.select.describe()} <= {c.max:.4g} x {of}"))
        elif isinstance(c, RatioConstraint):
            num = select(c.numerator, cells).astype(float)
            den = select(c.denominator, cells).astype(float)
            both = c.min is not None and c.max is not None
            what = f"spend of {c.numerator.describe()}"
            if c.min is not None:
                rows.append(_row(f"{c.name}.min" if both else c.name, c.name, "ratio", num - c.min * den, 0.0,
                                 math.inf, f"'{c.name}': {what} >= {c.min:.4g} x spend of {c.denominator.describe()}"))
            if c.max is not None:
                rows.append(_row(f"{c.name}.max" if both else c.name, c.name, "ratio", num - c.max * den, -math.inf,
                                 0.0, f"'{c.name}': {what} <= {c.max:.4g} x spend of {c.denominator.describe()}"))
        elif isinstance(c, LockConstraint):
            mask = select(c.select, cells)
            new = np.where(mask, current if c.spend == "current" else float(c.spend), np.nan)
            if lock_source is None:
                lock_source = np.full(n, "", dtype=object)
            _check_lock_clash(cells, locked, lock_source, new, c.name)
            first = mask & np.isnan(locked)
            locked[mask] = new[mask]
            lock_source[first] = c.name
        elif isinstance(c, MinActiveConstraint):
            mask = select(c.select, cells)
            min_active[mask] = np.maximum(min_active[mask], c.spend)
            activation[mask] = np.maximum(activation[mask], c.activation_cost)
        elif isinstance(c, EfficiencyRule):
            efficiency.append(_efficiency(c, select(c.select, cells), value))
    # per-cell fields of the spec (a cost of 0 leaves the rules' value, itself >= 0, as max() would)
    specs = [cell for s in sc.segments or [] for cell in s.tasks.values()]
    for i, cell in enumerate(specs):
        if cell.min_active_spend is not None:
            min_active[i] = max(min_active[i], cell.min_active_spend)
        if cell.activation_cost:
            activation[i] = max(activation[i], cell.activation_cost)
    objective = ObjectiveSpec()
    if isinstance(sc.objective, HurdleObjective):
        objective = ObjectiveSpec(kind="hurdle", rate=sc.objective.rate)
    elif isinstance(sc.objective, TargetObjective):
        mask = select(sc.objective.select, cells).astype(float)
        weight = mask if sc.objective.metric == "successes" else mask * value
        objective = ObjectiveSpec(kind="target", target=sc.objective.target, metric=sc.objective.metric,
                                  weight=weight, text=f"objective target: expected {sc.objective.metric} of "
                                                      f"{sc.objective.select.describe()} >= "
                                                      f"{_fmt(sc.objective.target)}")
    unit = sc.budget.unit if sc.budget is not None else None
    if lock_source is not None:
        _check_locks(specs, cells, locked, lock_source, unit)
    return CompiledConstraints(rows=tuple(rows), locked=locked, min_active=min_active, activation_cost=activation,
                               unit=unit, objective=objective, efficiency=tuple(efficiency))


def _efficiency(c: EfficiencyRule, mask: np.ndarray, value: np.ndarray) -> EfficiencyConstraint:
    """One average-efficiency rule as ``sum_G (weight * E - rate * s) >= 0`` (see the module docstring)."""
    idx = np.flatnonzero(mask)
    group = c.select.describe()
    if c.min_roi is not None:
        return EfficiencyConstraint(
            name=c.name, index=idx, weight=value[idx].astype(float), rate=float(c.min_roi), kind="min_roi",
            target=float(c.min_roi), source=c.name,
            text=f"'{c.name}': value of {group} >= {c.min_roi:.6g} x its spend")
    t = float(c.max_cost_per_success)
    return EfficiencyConstraint(
        name=c.name, index=idx, weight=np.full(len(idx), t), rate=1.0, kind="max_cost_per_success", target=t,
        source=c.name, text=f"'{c.name}': spend of {group} <= {_fmt(t)} per expected success")


def _check_lock_clash(cells: CellLabels, locked: np.ndarray, source: np.ndarray, new: np.ndarray,
                      name: str) -> None:
    """Two locks on one cell must agree (to round-off); otherwise no plan holds both."""
    both = ~np.isnan(locked) & ~np.isnan(new)
    clash = both & ~np.isclose(locked, new, rtol=1e-12, atol=0.0)
    if clash.any():
        i = int(np.flatnonzero(clash)[0])
        cell = f"({cells.segment[i]}, {cells.task[i]})"
        raise InfeasibleError(f"infeasible: two locks set different spends on cell {cell}",
                              conflict=[f"lock '{source[i]}': cell {cell} spends {_fmt(locked[i])}",
                                        f"lock '{name}': cell {cell} spends {_fmt(new[i])}"])


def _check_locks(specs: list[TaskSpec], cells: CellLabels, locked: np.ndarray, source: np.ndarray,
                 unit: float | None) -> None:
    """A lock outside its cell's own bounds (or off the spend unit) is a conflict of two named rules."""
    for i in np.flatnonzero(~np.isnan(locked)):
        cell, v = specs[i], locked[i]
        name = f"({cells.segment[i]}, {cells.task[i]})"
        lock = f"lock '{source[i]}': cell {name} spends {_fmt(v)}"
        if v < cell.min_spend:
            raise InfeasibleError(f"infeasible: a lock conflicts with the bounds of cell {name}",
                                  conflict=[lock, f"min_spend of cell {name} = {_fmt(cell.min_spend)}"])
        if cell.max_spend is not None and v > cell.max_spend:
            raise InfeasibleError(f"infeasible: a lock conflicts with the bounds of cell {name}",
                                  conflict=[lock, f"max_spend of cell {name} = {_fmt(cell.max_spend)}"])
        if unit is not None and abs(v / unit - round(v / unit)) > 1e-9:
            raise InfeasibleError(f"infeasible: a lock is not a whole number of spend units in cell {name}",
                                  conflict=[lock, f"budget.unit = {_fmt(unit)}"])
