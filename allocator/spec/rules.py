"""Rules between fields, checked after the schema, every message naming its cell."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..curves import FAMILIES
from ..errors import Problem
from ..value.clv import lifetime_value
from .constraints import LockConstraint, SpendConstraint
from .models import Scenario, TaskSpec


MAX_MONEY = 1e15
"""Largest amount of money accepted in any field (spend, value, budget, activation cost): beyond it
the solvers' arithmetic loses every digit of a cent, and overflows near 1e308."""
MAX_POOL = 1e12
"""Largest pool of members in one cell."""
MAX_PARAM = 1e12
"""Largest magnitude of a curve parameter."""
MIN_UNIT = 1e-6
"""Smallest spend unit; also the budget may hold at most :data:`MAX_UNITS` units."""
MAX_UNITS = 1e12

_NUMBER = (float, int)


def cell_name(segment: str, task: str) -> str:
    return f"({segment}, {task})"


def _too_large(field: str, value: float | None, limit: float, cell: str | None, what: str) -> list[Problem]:
    if value is None or abs(value) <= limit:
        return []
    return [Problem(field, f"is too large: at most {limit:.0e} in magnitude ({what}); got {value:.3g}", cell)]


def check_magnitudes(sc: Scenario) -> list[Problem]:
    """Every number within the range the solvers compute with, each problem naming field and cell."""
    problems: list[Problem] = []
    money = "rescale the currency, e.g. to thousands"
    if sc.budget is not None:
        problems += _too_large("budget.total", sc.budget.total, MAX_MONEY, None, money)
        unit = sc.budget.unit
        if unit is not None:
            problems += _too_large("budget.unit", unit, MAX_MONEY, None, money)
            if unit < MIN_UNIT:
                problems.append(Problem("budget.unit", f"is too small: at least {MIN_UNIT:g}; got {unit:.3g}"))
            elif sc.budget.total is not None and sc.budget.total / unit > MAX_UNITS:
                problems.append(Problem("budget.unit", f"gives {sc.budget.total / unit:.3g} units in budget.total "
                                                       f"(at most {MAX_UNITS:.0e}); use a larger unit"))
    for seg in sc.segments or []:
        for task, cell in seg.tasks.items():
            if not _in_range(cell):
                problems += _cell_magnitudes(cell_name(seg.id, task), cell, money)
    for b in sc.budgets:
        problems += _too_large(f"budgets.{b.name}.total", b.total, MAX_MONEY, None, money)
    for c in sc.constraints:
        for k, v in c.model_dump().items():
            if isinstance(v, float | int) and not isinstance(v, bool):
                problems += _too_large(f"constraints.{getattr(c, 'name', '?')}.{k}", float(v), MAX_MONEY, None,
                                       money)
    return problems


def _in_range(cell: TaskSpec) -> bool:
    """True when :func:`_cell_magnitudes` surely finds nothing in ``cell``: a screen of its numbers.

    The magnitudes of each kind (pool, money, curve parameters) are summed: when a sum is within its
    limit every term is (a nan or an infinity makes the sum fail), so a sound cell costs no Problem
    and no message. False only sends the cell to the loop that words its problems.
    """
    value = cell.value
    money = (abs(cell.min_spend) + abs(cell.max_spend or 0.0) + abs(cell.current_spend or 0.0)
             + abs(cell.min_active_spend or 0.0) + abs(cell.activation_cost)
             + abs(value if isinstance(value, _NUMBER) else value.clv.margin))
    params = 0.0
    # bools too (the loop skips them): the screen may only be stricter than the loop
    for v in cell.curve.values():
        if isinstance(v, _NUMBER):
            params += abs(v)
    if cell.value_curve:
        for v in cell.value_curve.values():
            if isinstance(v, _NUMBER):
                params += abs(v)
    return abs(cell.pool) <= MAX_POOL and money <= MAX_MONEY and params <= MAX_PARAM


def _cell_magnitudes(name: str, cell: TaskSpec, money: str) -> list[Problem]:
    """The numbers of one cell out of range, each problem naming field and cell."""
    problems = _too_large("pool", cell.pool, MAX_POOL, name, "members in the cell")
    for f in ("min_spend", "max_spend", "current_spend", "min_active_spend", "activation_cost"):
        problems += _too_large(f, getattr(cell, f), MAX_MONEY, name, money)
    if isinstance(cell.value, float | int):
        problems += _too_large("value", float(cell.value), MAX_MONEY, name, money)
    else:
        problems += _too_large("value.clv.margin", cell.value.clv.margin, MAX_MONEY, name, money)
    for k, v in cell.curve.items():
        if isinstance(v, float | int) and not isinstance(v, bool):
            problems += _too_large(f"curve.{k}", float(v), MAX_PARAM, name, "rescale the spend unit")
    for k, v in (cell.value_curve or {}).items():
        if isinstance(v, float | int) and not isinstance(v, bool):
            problems += _too_large(f"value_curve.{k}", float(v), MAX_PARAM, name, "rescale the spend unit")
    return problems


def _check_clv(clv, name: str) -> list[Problem]:
    """A lifetime value that is finite and of a size the solvers handle."""
    if clv.horizon is None and clv.retention / (1.0 + clv.discount) >= 1.0:
        return [Problem("value.clv", f"retention ({clv.retention:g}) must be below 1 + discount "
                                     f"({1.0 + clv.discount:g}) with no horizon, else the lifetime value is "
                                     f"infinite; set a horizon or a larger discount", name)]
    try:
        v = lifetime_value(clv.margin, clv.retention, clv.discount,
                           clv.horizon if clv.horizon is not None else float("inf"), clv.timing)
    except (ZeroDivisionError, OverflowError, ValueError):
        v = float("inf")
    if not abs(v) <= MAX_MONEY:
        return [Problem("value.clv", f"gives a lifetime value of {v:.3g}, above {MAX_MONEY:.0e}; "
                                     f"check retention, discount and horizon", name)]
    return []


def _params(curve: dict) -> dict:
    """The parameters of a curve (its mapping without ``family``), in their order."""
    params = curve.copy()
    params.pop("family", None)
    return params


def check_value_curve(value_curve: dict | None, name: str) -> list[Problem]:
    """The optional value curve of a cell: a registered family with sound parameters."""
    if value_curve is None:
        return []
    family_name = value_curve.get("family")
    if not isinstance(family_name, str) or family_name not in FAMILIES:
        return [Problem("value_curve.family", f"unknown curve family {family_name!r}; "
                                              f"known: {', '.join(sorted(FAMILIES))}", name)]
    return [Problem(f"value_curve.{param}", msg, name)
            for param, msg in FAMILIES[family_name].check(_params(value_curve))]


def check_scenario(sc: Scenario, solver_names: tuple[str, ...] | None = None) -> list[Problem]:
    """Return every rule the (schema-valid) scenario breaks; empty when it is sound."""
    problems: list[Problem] = []
    if solver_names is not None and sc.solver.name not in solver_names:
        problems.append(Problem("solver.name", f"unknown solver '{sc.solver.name}'; known: {', '.join(solver_names)}"))
    if sc.segments is None and getattr(sc, "cells", None) is not None:
        # the table was validated by the loader, row by row; rule selectors are checked when the
        # table is compiled (allocator.tables), with the messages of check_constraints
        return problems + check_magnitudes(sc)
    if sc.segments is None:
        problems.append(Problem("segments", "the scenario has neither `segments` nor a `model` file (nor a `cells` table)"))
        return problems
    if not sc.segments:
        problems.append(Problem("segments", "lists no segments; a scenario needs at least one segment with a task"))
        return problems
    seen: set[str] = set()
    for seg in sc.segments:
        if seg.id in seen:
            problems.append(Problem("segments.id", f"segment ids must be unique; '{seg.id}' appears twice"))
        seen.add(seg.id)
        for task, cell in seg.tasks.items():
            name = cell_name(seg.id, task)
            curve = cell.curve
            family_name = curve.get("family")
            if not isinstance(family_name, str):
                problems.append(Problem("curve.family", f"is required (one of {', '.join(sorted(FAMILIES))})", name))
            elif family_name not in FAMILIES:
                problems.append(Problem("curve.family", f"unknown curve family '{family_name}'; "
                                                        f"known: {', '.join(sorted(FAMILIES))}", name))
            else:
                for param, msg in FAMILIES[family_name].check(_params(curve)):
                    problems.append(Problem(f"curve.{param}", msg, name))
            if cell.value_curve is not None:
                problems.extend(check_value_curve(cell.value_curve, name))
            if cell.max_spend is not None and cell.max_spend < cell.min_spend:
                problems.append(Problem("max_spend", f"must be >= min_spend ({cell.min_spend:g}); "
                                                     f"got {cell.max_spend:g}", name))
            value = cell.value
            if not isinstance(value, _NUMBER):
                clv = value.clv
                if clv.discount == 0 and clv.retention == 1 and clv.horizon is None:
                    problems.append(Problem("value.clv", "retention 1 with discount 0 and no horizon gives an "
                                                         "infinite lifetime value; set a horizon or a discount", name))
                else:
                    problems.extend(_check_clv(clv, name))
            elif value < 0:
                problems.append(Problem("value", f"must be >= 0; got {value:g}", name))
    from ..constraints import check_constraints  # late import: the compiler imports this package

    problems.extend(check_magnitudes(sc))
    problems.extend(check_constraints(sc))
    return problems


# ---------------------------------------------------------------- conflicts visible without solving

@dataclass(frozen=True)
class Conflict:
    """Rules that cannot hold together, found from the bounds alone (no solve).

    ``members`` are written like the solver's irreducible sets (``budget.total: total spend <= 1,000``)
    and form an irreducible set themselves: dropping any one makes the rest feasible.
    """

    kind: str  # "lock" (a lock against its cell's bounds) or "cap" (floors above a cap)
    headline: str
    members: tuple[str, ...]
    field: str
    cell: str | None = None
    detail: str = ""

    def as_problem(self) -> Problem:
        """One line for an input-error listing: field, cell, and the rule it conflicts with."""
        return Problem(self.field, f"infeasible (found before solving): {self.detail or '; '.join(self.members)}",
                       self.cell)


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.6g}"


def precheck_conflicts(sc: Scenario, caps: bool = True) -> list[Conflict]:
    """Conflicts between cell bounds, locks and caps that need no solver.

    * a lock outside its cell's ``min_spend``/``max_spend`` or off the spend unit;
    * with ``caps``, cell floors (``min_spend``, or the lock) of a group summing above a cap on
      the group: ``budget.total``, a named budget, or a ``spend`` rule's ``max``. Each is reported
      with the fewest largest floors that exceed the cap, so the set is irreducible.

    The solver's conflict search (:mod:`allocator.infeasibility`) finds every other kind; this
    check runs early so that ``validate`` and input errors can list these too. Selectors naming
    unknown segments or tags simply select nothing here (they are input problems of their own).
    """
    locks = [c for c in sc.constraints if isinstance(c, LockConstraint)]
    if not sc.segments or not (locks or caps):
        return []
    from ..constraints import CellLabels, select  # late import: the compiler imports this package

    cells = CellLabels.from_scenario(sc)
    specs = [c for s in sc.segments for c in s.tasks.values()]
    n = len(specs)

    def name(i: int) -> str:
        return cell_name(cells.segment[i], cells.task[i])

    lock: dict[int, tuple[float, str]] = {}          # cell -> (spend, lock name); the last lock wins
    for c in locks:
        for i in np.flatnonzero(select(c.select, cells)):
            v = specs[i].current_spend if c.spend == "current" else c.spend
            if v is not None:
                lock[int(i)] = (float(v), c.name)
    out: list[Conflict] = []
    unit = sc.budget.unit if sc.budget is not None else None
    for i, (v, by) in sorted(lock.items()):
        cell, nm = specs[i], name(i)
        locked = f"lock '{by}': cell {nm} spends {_fmt(v)}"
        field = f"constraints.{by}"
        if v < cell.min_spend:
            out.append(Conflict("lock", f"a lock conflicts with the bounds of cell {nm}",
                                (locked, f"min_spend of cell {nm} = {_fmt(cell.min_spend)}"), field, nm,
                                f"the lock spends {_fmt(v)}, below the cell's min_spend ({_fmt(cell.min_spend)})"))
        elif cell.max_spend is not None and v > cell.max_spend:
            out.append(Conflict("lock", f"a lock conflicts with the bounds of cell {nm}",
                                (locked, f"max_spend of cell {nm} = {_fmt(cell.max_spend)}"), field, nm,
                                f"the lock spends {_fmt(v)}, above the cell's max_spend ({_fmt(cell.max_spend)})"))
        elif unit is not None and abs(v / unit - round(v / unit)) > 1e-9:
            out.append(Conflict("lock", f"a lock is not a whole number of spend units in cell {nm}",
                                (locked, f"budget.unit = {_fmt(unit)}"), field, nm,
                                f"the lock spends {_fmt(v)}, not a whole number of budget.unit ({_fmt(unit)})"))
    if not caps:
        return out
    floor = np.array([c.min_spend for c in specs], float)
    for i, (v, _) in lock.items():
        floor[i] = v
    groups: list[tuple[str, str, np.ndarray, float]] = []
    if sc.budget is not None and sc.budget.total is not None:
        groups.append(("budget.total", f"budget.total: total spend <= {_fmt(sc.budget.total)}",
                       np.ones(n, bool), sc.budget.total))
    for b in sc.budgets:
        groups.append((f"budgets.{b.name}", f"budget '{b.name}': spend of {b.select.describe()} "
                                            f"{'=' if b.use_all else '<='} {_fmt(b.total)}",
                       select(b.select, cells), b.total))
    for c in sc.constraints:
        if isinstance(c, SpendConstraint) and c.max is not None:
            groups.append((f"constraints.{c.name}", f"'{c.name}': spend of {c.select.describe()} <= {_fmt(c.max)}",
                           select(c.select, cells), c.max))
    for field, text, mask, cap in groups:
        idx = np.flatnonzero(mask & (floor > 0))
        if floor[idx].sum() <= cap * (1 + 1e-12):
            continue
        idx = idx[np.argsort(-floor[idx], kind="stable")]
        k = int(np.searchsorted(np.cumsum(floor[idx]), cap * (1 + 1e-12), side="right")) + 1
        chosen = np.sort(idx[:k])
        members = [f"lock '{lock[i][1]}': cell {name(i)} spends {_fmt(floor[i])}" if i in lock
                   else f"min_spend of cell {name(i)} = {_fmt(floor[i])}" for i in chosen.tolist()]
        out.append(Conflict("cap", f"cell floors sum to {_fmt(floor[chosen].sum())}, above the cap of {_fmt(cap)}",
                            (text, *members), field, None,
                            f"the cap {_fmt(cap)} is below the floors of cells "
                            + ", ".join(f"{name(i)} ({_fmt(floor[i])}{', locked' if i in lock else ''})"
                                        for i in chosen.tolist())))
    return out
