"""The static model as the one-period special case, both ways.

Static -> dynamic: each static cell ``(segment, task)`` with ``pool`` members and a
value per success becomes the members of the task's source state (acquisition:
prospects; retention: active; win-back: lapsed) and the task's one-off ``value`` per
success, with no margins and no terminal values, ``periods: 1``. Per-cell spend
bounds become bounds per member (``min_spend / pool``); the period-1 pool is known, so
this is exact. The one-period problem is then term by term today's problem: the value
of a success is the cell's value, the budget the same, so plans must agree.

Dynamic -> static: a one-period dynamic scenario becomes a static one whose cell
values are the values of a success, ``value + G(active) - keep * G(failure state)``
with ``G(j) = margin(j) + terminal(j)``; the two objectives differ by the constant
value of the members who do not respond.
"""

from __future__ import annotations

import math
from typing import Any

from ..compile import cell_value
from ..errors import Problem, SpecError
from ..spec import scenario_from_dict
from ..spec.models import Scenario
from .model import FAIL_DEST, compile_dynamic
from .spec import SOURCE, DynamicScenario, dynamic_from_dict

_UNSUPPORTED = {"constraints": "planning rules", "budgets": "named pots", "variants": "variants",
                "uncertainty": "uncertainty settings"}


def dynamic_from_static(sc: Scenario) -> DynamicScenario:
    """The one-period multi-period scenario equivalent to the static scenario ``sc``.

    Raises
    ------
    SpecError
        When ``sc`` uses a feature the multi-period contract does not carry yet (rules, pots,
        ``use_all``, spend units, activation costs or minimum active spend, other objectives).
    """
    problems = []
    for key, what in _UNSUPPORTED.items():
        if getattr(sc, key, None):
            problems.append(Problem(key, f"{what} are not carried to a multi-period scenario yet"))
    if sc.budget is not None and (sc.budget.use_all or sc.budget.unit is not None):
        problems.append(Problem("budget", "use_all and unit are not carried to a multi-period scenario yet"))
    if sc.objective.type != "net_value":
        problems.append(Problem("objective", "only the net_value objective is carried to a multi-period scenario"))
    segments: list[dict[str, Any]] = []
    for seg in sc.segments or []:
        members: dict[str, float] = {}
        tasks: dict[str, Any] = {}
        for task, cell in seg.tasks.items():
            name = f"({seg.id}, {task})"
            if cell.activation_cost or cell.min_active_spend:
                problems.append(Problem("activation_cost", "fixed costs are not carried to a multi-period "
                                                           "scenario yet", name))
            members[SOURCE[task]] = cell.pool
            spec: dict[str, Any] = {"curve": dict(cell.curve), "value": cell_value(cell),
                                    "min_spend_per_member": cell.min_spend / cell.pool}
            if cell.max_spend is not None:
                spec["max_spend_per_member"] = cell.max_spend / cell.pool
            tasks[task] = spec
        segments.append({"id": seg.id, "tags": list(seg.tags), "members": members, "tasks": tasks})
    if problems:
        raise SpecError(problems)
    data: dict[str, Any] = {"name": sc.name, "currency": sc.currency, "periods": 1, "discount": 0.0,
                            "segments": segments}
    if sc.budget is not None and sc.budget.total is not None:
        data["budget"] = {"total": sc.budget.total}
    return dynamic_from_dict(data)


def static_from_dynamic(sc: DynamicScenario) -> Scenario:
    """The static scenario whose plan is the one-period dynamic plan of ``sc`` (``periods`` must be 1)."""
    if sc.periods != 1:
        raise SpecError(Problem("periods", f"only a one-period scenario has a static equivalent; got {sc.periods}"))
    problem = compile_dynamic(sc)
    if any(problem.value_blocks):
        raise SpecError(Problem("value_curve", "a static scenario has no value curves yet; drop them to compare"))
    G = problem.margin + problem.terminal
    segments = []
    for i, seg in enumerate(sc.segments):
        tasks = {}
        for task, spec in seg.tasks.items():
            k = ("prospects", "active", "lapsed").index(SOURCE[task])
            pool = problem.members[i, k]
            if pool <= 0:
                continue
            success = problem.value[i, k] + G[i, 1] - problem.keep[i, k] * G[i, FAIL_DEST[k]]
            cell: dict[str, Any] = {"pool": pool, "value": max(success, 0.0), "curve": dict(spec.curve),
                                    "min_spend": spec.min_spend_per_member * pool}
            if spec.max_spend_per_member is not None and math.isfinite(spec.max_spend_per_member):
                cell["max_spend"] = spec.max_spend_per_member * pool
            if spec.periods is not None and 1 not in spec.periods:
                cell["max_spend"] = 0.0
            tasks[task] = cell
        if tasks:
            segments.append({"id": seg.id, "tasks": tasks})
    data: dict[str, Any] = {"name": sc.name, "segments": segments}
    if sc.currency:
        data["currency"] = sc.currency
    if sc.budget is not None:
        caps = [c for c in (sc.budget.total, (sc.budget.per_period or [None])[0]) if c is not None]
        if caps:
            data["budget"] = {"total": min(caps)}
    return scenario_from_dict(data)
