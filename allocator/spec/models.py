"""The scenario and model file schema (pydantic v2, strict: unknown keys are errors).

Only structure and per-field ranges live here; rules between fields and the
curve parameters (which depend on the family) are checked in
:mod:`allocator.spec.rules`, so that every message can name its cell.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .constraints import Constraint, NamedBudget, NetValueObjective, Objective

TASKS: tuple[str, ...] = ("acquisition", "retention", "winback")
Task = Literal["acquisition", "retention", "winback"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class CLVSpec(_Strict):
    """Lifetime value from margin, retention and discount (see :mod:`allocator.value.clv`)."""

    margin: float = Field(description="margin per period, currency")
    retention: float = Field(ge=0.0, le=1.0, description="probability of staying one more period")
    discount: float = Field(ge=0.0, description="discount rate per period")
    horizon: float | None = Field(default=None, ge=1.0, description="periods counted; absent = infinite")
    timing: Literal["gupta_lehmann", "margin_now", "end_of_period"] = Field(
        default="gupta_lehmann", description="when margins are collected; see the docs for the formulas")


class CLVValue(_Strict):
    clv: CLVSpec


class TaskSpec(_Strict):
    """One (segment, task) cell."""

    pool: float = Field(gt=0.0, description="members who can respond (prospects, customers, lapsed customers)")
    value: float | CLVValue = Field(description="value of one success: a number or {clv: {...}}")
    curve: dict[str, Any] = Field(description="response curve: {family: NAME, <parameters>}")
    value_curve: dict[str, Any] | None = Field(
        default=None, description="value of a success as a function of spend per member: value * w(x), "
                                  "w any registered family {family: NAME, <parameters>} (absent: w = 1)")
    min_spend: float = Field(default=0.0, ge=0.0, description="least total spend on the cell")
    max_spend: float | None = Field(default=None, ge=0.0, description="most total spend on the cell")
    current_spend: float | None = Field(default=None, ge=0.0, description="today's spend, shown beside the plan")
    min_active_spend: float | None = Field(default=None, gt=0.0,
                                           description="spend 0 or at least this much (minimum if active)")
    activation_cost: float = Field(default=0.0, ge=0.0, description="fixed cost paid when the cell spends > 0")


class SegmentSpec(_Strict):
    id: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list, description="labels that constraints can select")
    description: str | None = None
    tasks: dict[Task, TaskSpec] = Field(min_length=1)


class BudgetSpec(_Strict):
    total: float | None = Field(default=None, ge=0.0, description="the most that may be spent over all cells "
                                                                   "(absent: no cap on the total)")
    use_all: bool = Field(default=False, description="spend exactly `total`, even below a marginal return of 1")
    unit: float | None = Field(default=None, gt=0.0, description="every cell spends a whole multiple of this")


class CellSamples(_Strict):
    """Parameter draws for one cell: each list has ``count`` entries, draw k across lists belongs together."""

    segment: str
    task: Task
    curve: dict[str, list[float]] = Field(default_factory=dict,
                                          description="per curve parameter, its draws (same family as the cell)")
    value: list[float] | None = Field(default=None, description="draws of the value of one success")
    pool: list[float] | None = Field(default=None, description="draws of the pool size")


class SamplesSpec(_Strict):
    """Joint parameter samples (bootstrap or posterior) carried from calibration to scenario analysis."""

    method: str = Field(description="how the draws were made, e.g. bootstrap or posterior")
    count: int = Field(ge=1, description="number of draws per list")
    seed: int | None = None
    cells: list[CellSamples] = Field(min_length=1)


class ModelFile(_Strict):
    """A calibrated response-and-value model shared by several scenarios."""

    name: str | None = None
    description: str | None = None
    currency: str | None = None
    segments: list[SegmentSpec] = Field(min_length=1)
    provenance: dict[str, Any] | None = Field(default=None, description="how the model was made")
    diagnostics: dict[str, Any] | None = Field(default=None, description="fit diagnostics")
    samples: SamplesSpec | None = Field(default=None, description="parameter samples for uncertainty")


class SolverOptions(_Strict):
    name: str = Field(default="auto", description="auto, exact, pyomo_highs or global")
    tolerance: float | None = Field(default=None, gt=0.0, description="relative optimality gap")
    formulation: Literal["incremental", "sos2"] = Field(
        default="incremental", description="piecewise formulation of the global solver")
    breakpoints: int = Field(default=16, ge=4, le=512, description="initial breakpoints per curve (global solver)")
    time_limit: float | None = Field(default=None, gt=0.0, description="seconds for the global solver")
    partial_targeting: bool = Field(default=False, description="envelope solver: a cell may treat a share of its "
                                                               "members at the tangent spend (the plan is then "
                                                               "exactly optimal; the share is reported)")


class Scenario(_Strict):
    """A planning scenario: a budget, cells (inline or from a model file) and solver choice."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$",
                      description="identifier; also the default output folder name")
    description: str | None = None
    currency: str | None = None
    budget: BudgetSpec | None = None
    model: str | None = Field(default=None, description="path of a model file, relative to this file")
    segments: list[SegmentSpec] | None = None
    cells: str | None = Field(default=None, description="path of a cells table (.parquet or .csv), one row per "
                                                        "cell, relative to this file; in place of segments")
    solver: SolverOptions = Field(default_factory=SolverOptions)
    budgets: list[NamedBudget] = Field(default_factory=list, description="named pots, each covering a group")
    constraints: list[Constraint] = Field(default_factory=list, description="planning rules (see the README, 'The constraint language')")
    objective: Objective = Field(default_factory=NetValueObjective,
                                 description="net_value (default), target or hurdle")
    # scenario analysis (resolved by the loader: ``extends`` and ``overrides`` are applied and dropped)
    extends: str | None = Field(default=None, description="base scenario file this one builds on (relative path)")
    overrides: dict[str, Any] | None = Field(default=None, description="dotted path -> value applied to the base")
    variants: "VariantsSpec | None" = Field(default=None, description="variants run by `allocator sweep`")
    samples: SamplesSpec | None = Field(default=None, description="parameter samples (filled from the model file)")
    uncertainty: "UncertaintySpec | None" = Field(default=None, description="parameter distributions, risk measure")


# ---- scenario analysis: sets of scenarios and parameter uncertainty (issue 5) ----

class VariantCase(_Strict):
    """One listed variant: a name and the overrides that make it."""

    name: str = Field(min_length=1, description="label of the variant (the `case` column of sweep tables)")
    set: dict[str, Any] = Field(default_factory=dict,
                                description="overrides: dotted path -> value, {scale: k} or {add: d}")


class VariantsSpec(_Strict):
    """Variants of a scenario, run by ``allocator sweep``.

    ``grid`` crosses its axes: an axis named by a dotted path takes a list of values or a range
    ``{from, to, steps, spacing: linear|log}``; any other axis name takes labelled options, each a set
    of overrides. ``cases`` lists variants one by one. Both may be given (grid first).
    """

    grid: dict[str, Any] | None = Field(default=None, description="axis -> values, range, or {label: overrides}")
    cases: list[VariantCase] | None = Field(default=None, description="explicit variants")


class DistributionSpec(_Strict):
    """A distribution for one parameter of the matching cells (``*`` matches every segment or task)."""

    segment: str = Field(default="*", description="segment id or *")
    task: str = Field(default="*", description="task or *")
    param: str = Field(pattern=r"^(value|pool|curve\.[A-Za-z_][A-Za-z0-9_]*)$",
                       description="value, pool or curve.<parameter>")
    dist: Literal["lognormal", "normal", "uniform"] = Field(
        description="lognormal: nominal * exp(N(0, sigma)); normal: nominal + N(0, sd); uniform: U(low, high)")
    sigma: float | None = Field(default=None, gt=0.0)
    sd: float | None = Field(default=None, gt=0.0)
    low: float | None = None
    high: float | None = None
    shared: bool = Field(default=False, description="one draw shared by all matching cells (a common shock)")


class UncertaintySpec(_Strict):
    """How ``allocator uncertainty`` draws parameters and which risk measure it optimizes."""

    samples: int | None = Field(default=None, ge=2, description="number of draws (default: the model's "
                                                                 "sample count, else 1000)")
    seed: int | None = Field(default=None, description="random seed of the draws")
    alpha: float = Field(default=0.1, gt=0.0, le=1.0, description="tail share for CVaR and the quantile")
    objective: Literal["mean", "cvar", "quantile"] = Field(default="cvar", description="risk measure optimized")
    distributions: list[DistributionSpec] = Field(default_factory=list)


Scenario.model_rebuild()


def canonical_data(sc: Scenario) -> dict[str, Any]:
    """A validated scenario as plain JSON data: what is planned, hashed and stored with a plan.

    The loader has applied the files it named (``model``, ``extends``) and its ``overrides`` already,
    so those keys are left out, as is every field left unset: two files that plan the same thing
    give the same data.
    """
    return sc.model_dump(mode="json", exclude_none=True, exclude={"model", "extends", "overrides"})
