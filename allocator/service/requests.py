"""Input from the network: a JSON body into a validated :class:`~allocator.spec.Scenario`, within limits.

The service takes scenarios as JSON only (never YAML) and never with file references: a ``model``,
``extends`` or ``cells`` key is refused (422) before anything is read. The body is parsed by the
same hardened JSON reader as scenario files (duplicate keys, nesting, huge integers, control
characters), then validated by :func:`~allocator.spec.scenario_from_dict` with file references off,
so a bad scenario gets the command line's own messages, field by field and cell by cell.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import Problem, SpecError
from ..spec import Scenario, canonical_data, scenario_from_dict
from ..spec.reading import _Refused, parse_text, syntax_message
from .config import Settings

REFUSED_KEYS = {"model": "a model file", "extends": "a base scenario file", "cells": "a cell table file"}
"""Scenario keys that name files on the server; a request gives its content inline instead."""


def parse_json(raw: bytes) -> Any:
    """``raw`` parsed as JSON within the file reader's limits; a SpecError naming the place otherwise."""
    try:
        return parse_text(raw, json_format=True)
    except _Refused as exc:
        raise SpecError(Problem(exc.where or "(body)", exc.message), source="request body") from None
    except (json.JSONDecodeError, ValueError) as exc:
        msg, where = syntax_message(exc, True)
        raise SpecError(Problem("(body)", f"{msg}{' (' + where + ')' if where else ''}"),
                        source="request body") from None


def count_cells(data: Any) -> int:
    """Cells a scenario mapping asks for (before validation, so a huge request is refused cheaply)."""
    if not isinstance(data, dict) or not isinstance(data.get("segments"), list):
        return 0
    return sum(len(s["tasks"]) for s in data["segments"] if isinstance(s, dict) and isinstance(s.get("tasks"), dict))


def scenario_from_request(data: Any, settings: Settings, field: str = "") -> Scenario:
    """A validated scenario from a request's mapping, its solve time capped by the settings.

    ``data`` comes from :func:`parse_json`, which walked all of it already (nesting, control
    characters, huge numbers): the loader does not walk it again.

    Raises
    ------
    SpecError
        For a refused key (``model``, ``extends``, ``cells``), too many cells, or anything the
        scenario loader refuses (with its own field and cell messages).
    """
    from ..solvers import AUTO, SOLVERS

    prefix = f"{field}." if field else ""
    if not isinstance(data, dict):
        raise SpecError(Problem(field or "(body)", f"must be a scenario object; got {type(data).__name__}"),
                        source="request")
    refused = [Problem(f"{prefix}{k}", f"file references are not accepted by the service (this names {what}); "
                                       f"give the content inline (`segments`)")
               for k, what in REFUSED_KEYS.items() if k in data]
    if refused:
        raise SpecError(refused, source="request")
    n = count_cells(data)
    if n > settings.max_cells:
        raise SpecError(Problem(f"{prefix}segments", f"holds {n:,} cells; the service takes at most "
                                                     f"{settings.max_cells:,} per request"), source="request")
    try:
        sc = scenario_from_dict(data, source="request", solver_names=(AUTO, *SOLVERS), allow_files=False,
                                check_values=False)
    except SpecError as exc:
        if not prefix:
            raise
        raise SpecError([Problem(f"{prefix}{p.field}" if p.field else field, p.message, p.cell)
                         for p in exc.problems], source="request") from None
    return cap_time(sc, settings.max_solve_seconds)


def cap_time(sc: Scenario, seconds: float) -> Scenario:
    """``sc`` with ``solver.time_limit`` at most ``seconds`` (and set to it when absent)."""
    limit = sc.solver.time_limit
    if limit is not None and limit <= seconds:
        return sc
    return sc.model_copy(update={"solver": sc.solver.model_copy(update={"time_limit": float(seconds)})})


def scenario_data(sc: Scenario) -> dict[str, Any]:
    """The validated scenario as plain JSON data (what is stored with a plan, hashed, and sent to job processes)."""
    return canonical_data(sc)


# ---------------------------------------------------------------- options of the analysis requests

class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class PlanOptions(_Options):
    solver: str | None = Field(default=None, description="overrides solver.name: auto, exact, dual, pyomo_highs, "
                                                          "envelope or global")
    tolerance: float | None = Field(default=None, gt=0.0, description="relative optimality gap")


class FrontierOptions(_Options):
    scenario: dict[str, Any]
    start: float = Field(ge=0.0, description="first budget")
    stop: float = Field(ge=0.0, description="last budget")
    points: int = Field(default=50, ge=1, description="evenly spaced budgets (at most ALLOCATOR_MAX_POINTS)")
    method: Literal["auto", "path", "resolve"] = "auto"


class SensitivityOptions(_Options):
    scenario: dict[str, Any]
    top: int | None = Field(default=None, ge=1, description="only the k parameters that move net value most")


class WhatIfOptions(_Options):
    scenario: dict[str, Any]
    amount: float = Field(gt=0.0, description="currency moved")
    from_cell: str = Field(pattern=r"^[^/]+/[^/]+$", description="segment/task the money leaves")
    to_cell: str = Field(pattern=r"^[^/]+/[^/]+$", description="segment/task the money goes to")
    resolve: bool = Field(default=False, description="re-optimize the other cells with the move forced")


class SweepOptions(_Options):
    scenario: dict[str, Any]
    grid: dict[str, Any] | None = Field(default=None, description="axis -> values (as `variants.grid`)")
    cases: list[dict[str, Any]] | None = Field(default=None, description="explicit variants (as `variants.cases`)")


class UncertaintyOptions(_Options):
    scenario: dict[str, Any]
    objective: Literal["mean", "cvar", "quantile"] | None = None
    alpha: float | None = Field(default=None, gt=0.0, le=1.0)
    optimize: bool = True


def options_from(model: type[_Options], data: Any) -> _Options:
    """``data`` validated as ``model``; a SpecError with one problem per field otherwise."""
    if not isinstance(data, dict):
        raise SpecError(Problem("(body)", f"must be a JSON object; got {type(data).__name__}"), source="request")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(body)"
            msg = "is required" if err["type"] == "missing" else \
                "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            if err["type"] not in ("missing", "extra_forbidden") and "input" in err:
                from ..spec.reading import excerpt

                msg = f"{msg}; got {excerpt(err['input'])}"
            problems.append(Problem(where, msg))
        raise SpecError(problems, source="request") from None
