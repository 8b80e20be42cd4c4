"""What each endpoint computes: the library's own functions on a validated request, as JSON data.

Each operation takes the validated ``payload`` (``scenario`` as plain data plus the request's
options) and returns JSON-ready data; it runs in the request's worker thread for small solves and
in a job process for long ones (:func:`needs_job`), with the same code either way, so the service's
answer is the library's answer.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from typing import Any, Callable

import pandas as pd

from ..errors import Problem, SpecError
from ..plan import _jsonable

Progress = Callable[[dict[str, Any]], None]

JOB_ONLY = ("sweep", "uncertainty")
"""Operations that always run as jobs (many solves)."""


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of ``df`` as JSON-ready dicts (NaN and infinity as null)."""
    return _jsonable(df.astype(object).where(df.notna(), None).to_dict("records"))


def _scenario(payload: dict[str, Any]):
    from ..solvers import AUTO, SOLVERS
    from ..spec import scenario_from_dict

    # a payload's scenario is the service's own dump of a validated scenario: walked once already
    return scenario_from_dict(payload["scenario"], source="request", solver_names=(AUTO, *SOLVERS), allow_files=False,
                              check_values=False)


def solver_for(sc, solver: str | None = None, problem=None) -> str:
    """The backend a plan of ``sc`` runs on (``auto`` resolved); SolverUnavailableError when none can."""
    from ..compile import compile_scenario
    from ..solvers import AUTO, choose_solver

    name = solver or sc.solver.name
    return choose_solver(problem if problem is not None else compile_scenario(sc)).name if name == AUTO else name


LONG_SOLVERS = ("global", "envelope")
"""Backends that can run for long: the global MILP, and the envelope route (which falls back to it)."""


def needs_job(kind: str, sc, options: dict[str, Any], problem=None) -> bool:
    """True when the request can take longer than a request should: the global solver (or a route that
    can fall back to it: any S-shaped curve), sweeps, uncertainty. ``problem``: ``sc`` compiled, if at hand."""
    from ..compile import compile_scenario

    if kind in JOB_ONLY:
        return True
    problem = problem if problem is not None else compile_scenario(sc)
    if kind == "frontier":
        from ..analysis.frontier import path_supported

        if options.get("method") != "resolve" and path_supported(problem) is None:
            return False
    if not bool(problem.concave.all()):
        return True
    return solver_for(sc, options.get("solver"), problem) in LONG_SOLVERS


def run_plan(payload: dict[str, Any], progress: Progress | None = None) -> dict[str, Any]:
    """``{"summary", "cells"}`` of the plan, exactly as ``allocator plan --json`` prints it."""
    from ..compile import compile_scenario

    sc = _scenario(payload)
    return plan_of(sc, compile_scenario(sc), payload.get("solver"), payload.get("tolerance"), progress)


def plan_of(sc, problem, solver: str | None = None, tolerance: float | None = None,
            progress: Progress | None = None) -> dict[str, Any]:
    """:func:`run_plan` of a scenario already validated and compiled (a request's direct plan does both once)."""
    from ..cli.plan_cmd import plan_json
    from ..plan import make_plan

    if progress is not None:
        progress({"stage": "solving", "cells": int(problem.n)})
        problem = replace(problem, options={**(problem.options or {}), "progress": lambda d: progress(
            {"stage": "solving", **_jsonable(d)})})
    plan = make_plan(problem, solver or sc.solver.name, tolerance if tolerance is not None else sc.solver.tolerance)
    return plan_json(plan)


def run_frontier(payload: dict[str, Any], progress: Progress | None = None) -> dict[str, Any]:
    from ..analysis.frontier import budget_frontier

    f = budget_frontier(_scenario(payload), payload["start"], payload["stop"], payload["points"],
                        method=payload.get("method", "auto"))
    return {"method": f.method, "table": records(f.table), "events": records(f.events)}


def run_sensitivity(payload: dict[str, Any], progress: Progress | None = None) -> dict[str, Any]:
    import allocator

    s = allocator.sensitivity(allocator.plan(_scenario(payload)))
    params = s.top(payload["top"]) if payload.get("top") else s.parameters
    return {"net_value": s.net_value, "parameters": records(params), "shadow_prices": records(s.shadow_prices)}


def run_whatif(payload: dict[str, Any], progress: Progress | None = None) -> dict[str, Any]:
    import allocator

    plan = allocator.plan(_scenario(payload))
    move = allocator.what_if_move(plan, payload["amount"], payload["from_cell"], payload["to_cell"],
                                  resolve=payload.get("resolve", False))
    return move.to_dict()


def run_sweep(payload: dict[str, Any], progress: Progress | None = None) -> dict[str, Any]:
    from ..scenarios import Sweep
    from ..scenarios import run_sweep as library_sweep

    sweep = Sweep(_scenario(payload), grid=payload.get("grid"), cases=payload.get("cases"))
    total = len(sweep.variants)
    if progress is not None:
        progress({"stage": "solving", "variants_done": 0, "variants": total})
    tick = None if progress is None else (lambda done, n: progress({"stage": "solving", "variants_done": done,
                                                                     "variants": n}))
    with tempfile.TemporaryDirectory(prefix="allocator-sweep-") as out:
        res = library_sweep(sweep, out, executor="serial", progress=tick, chunksize=1)
    return {"variants": total, "summary": records(res.summary), "cells": records(res.cells)}


def run_uncertainty(payload: dict[str, Any], progress: Progress | None = None) -> dict[str, Any]:
    from ..analysis.uncertainty import compare_risk

    cmp = compare_risk(_scenario(payload), objective=payload.get("objective"), alpha=payload.get("alpha"),
                       optimize=payload.get("optimize", True), on_refusal="skip")
    return {"table": records(cmp.table), "plans": records(cmp.plans), "refused": cmp.refused}


OPERATIONS: dict[str, Callable[[dict[str, Any], Progress | None], dict[str, Any]]] = {
    "plan": run_plan, "frontier": run_frontier, "sensitivity": run_sensitivity, "whatif": run_whatif,
    "sweep": run_sweep, "uncertainty": run_uncertainty,
}


def refuse_file_keys(obj: Any, where: str) -> None:
    """Refuse sweep axes and overrides that would set ``model``, ``extends`` or ``cells`` (file references)."""
    from .requests import REFUSED_KEYS

    stack = [(obj, where)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                head = str(k).split(".", 1)[0]
                if head in REFUSED_KEYS:
                    raise SpecError(Problem(f"{path}.{k}", "file references are not accepted by the service; "
                                                           "vary inline fields only"), source="request")
                stack.append((v, f"{path}.{k}"))
        elif isinstance(node, list):
            stack.extend((v, f"{path}.{i}") for i, v in enumerate(node))
