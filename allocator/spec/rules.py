"""Rules between fields, checked after the schema, every message naming its cell."""

from __future__ import annotations

from ..curves import FAMILIES
from ..errors import Problem
from .models import Scenario


def cell_name(segment: str, task: str) -> str:
    return f"({segment}, {task})"


def check_scenario(sc: Scenario, solver_names: tuple[str, ...] | None = None) -> list[Problem]:
    """Return every rule the (schema-valid) scenario breaks; empty when it is sound."""
    problems: list[Problem] = []
    if sc.segments is None:
        problems.append(Problem("segments", "the scenario has neither `segments` nor a `model` file"))
        return problems
    seen: set[str] = set()
    for seg in sc.segments:
        if seg.id in seen:
            problems.append(Problem("segments.id", f"segment ids must be unique; '{seg.id}' appears twice"))
        seen.add(seg.id)
        for task, cell in seg.tasks.items():
            name = cell_name(seg.id, task)
            family_name = cell.curve.get("family")
            if not isinstance(family_name, str):
                problems.append(Problem("curve.family", f"is required (one of {', '.join(sorted(FAMILIES))})", name))
            elif family_name not in FAMILIES:
                problems.append(Problem("curve.family", f"unknown curve family '{family_name}'; "
                                                        f"known: {', '.join(sorted(FAMILIES))}", name))
            else:
                raw = {k: v for k, v in cell.curve.items() if k != "family"}
                for param, msg in FAMILIES[family_name].check(raw):
                    problems.append(Problem(f"curve.{param}", msg, name))
            if cell.max_spend is not None and cell.max_spend < cell.min_spend:
                problems.append(Problem("max_spend", f"must be >= min_spend ({cell.min_spend:g}); "
                                                     f"got {cell.max_spend:g}", name))
            if not isinstance(cell.value, float | int):
                clv = cell.value.clv
                if clv.discount == 0 and clv.retention == 1 and clv.horizon is None:
                    problems.append(Problem("value.clv", "retention 1 with discount 0 and no horizon gives an "
                                                         "infinite lifetime value; set a horizon or a discount", name))
            elif cell.value < 0:
                problems.append(Problem("value", f"must be >= 0; got {cell.value:g}", name))
    from ..constraints import check_constraints  # late import: the compiler imports this package

    problems.extend(check_constraints(sc))
    if solver_names is not None and sc.solver.name not in solver_names:
        problems.append(Problem("solver.name", f"unknown solver '{sc.solver.name}'; known: {', '.join(solver_names)}"))
    return problems
