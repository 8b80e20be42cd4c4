"""The constraint language and objectives of scenario files (pydantic v2, strict).

Planning rules are written as a list under ``constraints:``; each has a ``name``
(used in reports, shadow prices and infeasibility messages) and a ``type``:

========== ==================================================================
type       meaning
========== ==================================================================
spend      floor and/or cap on the total spend of a group of cells
share      a group's spend between ``min`` and ``max`` fractions of total spend
ratio      spend(numerator) / spend(denominator) between ``min`` and ``max``
lock       every selected cell spends exactly ``spend`` (or its current spend)
min_active every selected cell spends 0 or at least ``spend``; optional fixed
           ``activation_cost`` per cell that runs
efficiency the group's average return: value / spend >= ``min_roi``, or
           spend / expected successes <= ``max_cost_per_success``
========== ==================================================================

Groups are chosen with a :class:`Selector` by task, segment id and segment tag;
named pots of money are ``budgets:``. Structure and ranges live here; rules
between fields and references to segments and tags are checked in
:mod:`allocator.constraints` so that every message names its constraint.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

Task = Literal["acquisition", "retention", "winback"]
NAME_PATTERN = r"^[A-Za-z0-9_.\-]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class Selector(_Strict):
    """A group of cells. Criteria combine with AND; the entries of one list with OR; empty = every cell."""

    tasks: list[Task] | None = Field(default=None, description="cells of these tasks")
    segments: list[str] | None = Field(default=None, description="cells of these segment ids")
    tags: list[str] | None = Field(default=None, description="cells of segments carrying any of these tags")

    def describe(self) -> str:
        parts = [f"{k} [{', '.join(v)}]" for k, v in (("tasks", self.tasks), ("segments", self.segments),
                                                        ("tags", self.tags)) if v]
        return "all cells" if not parts else " and ".join(parts)


class _Named(_Strict):
    name: str = Field(min_length=1, pattern=NAME_PATTERN, description="identifier used in reports")
    description: str | None = None


class SpendConstraint(_Named):
    """Floor and/or cap on a group's total spend (currency)."""

    type: Literal["spend"]
    select: Selector = Field(default_factory=Selector)
    min: float | None = Field(default=None, ge=0.0, description="least total spend of the group")
    max: float | None = Field(default=None, ge=0.0, description="most total spend of the group")


class ShareConstraint(_Named):
    """A group's spend as a fraction of the spend of ``of`` (default: all cells)."""

    type: Literal["share"]
    select: Selector
    of: Selector = Field(default_factory=Selector, description="the reference group (default: all cells)")
    min: float | None = Field(default=None, ge=0.0, le=1.0, description="least share, a fraction in [0, 1]")
    max: float | None = Field(default=None, ge=0.0, le=1.0, description="largest share, a fraction in [0, 1]")


class RatioConstraint(_Named):
    """``min <= spend(numerator) / spend(denominator) <= max``, written linearly."""

    type: Literal["ratio"]
    numerator: Selector
    denominator: Selector
    min: float | None = Field(default=None, ge=0.0)
    max: float | None = Field(default=None, ge=0.0)


class LockConstraint(_Named):
    """Every selected cell spends exactly ``spend``; ``current`` takes each cell's ``current_spend``."""

    type: Literal["lock"]
    select: Selector
    spend: float | Literal["current"] = Field(description="spend per selected cell, or 'current'")


class MinActiveConstraint(_Named):
    """Every selected cell spends 0 or at least ``spend``, paying ``activation_cost`` when it runs."""

    type: Literal["min_active"]
    select: Selector = Field(default_factory=Selector)
    spend: float = Field(gt=0.0, description="least spend of a cell that runs")
    activation_cost: float = Field(default=0.0, ge=0.0, description="fixed cost of running a cell")


class EfficiencyConstraint(_Named):
    """An average-efficiency rule over a group: give exactly one of ``min_roi`` and ``max_cost_per_success``.

    Written as a constraint that is concave in spend for concave curves, so it keeps such
    problems convex: ``value(G) - min_roi * spend(G) >= 0`` or
    ``max_cost_per_success * successes(G) - spend(G) >= 0``. A group that spends nothing
    satisfies it (its average is undefined; the constraint form is what is enforced).
    """

    type: Literal["efficiency"]
    select: Selector = Field(default_factory=Selector)
    min_roi: float | None = Field(default=None, gt=0.0,
                                  description="least expected value of the group per currency unit it spends")
    max_cost_per_success: float | None = Field(default=None, gt=0.0,
                                               description="most spend of the group per expected success")


Constraint = Annotated[Union[SpendConstraint, ShareConstraint, RatioConstraint, LockConstraint,
                             MinActiveConstraint, EfficiencyConstraint], Field(discriminator="type")]


class NamedBudget(_Strict):
    """A pot of money covering a group of cells, besides or instead of ``budget.total``."""

    name: str = Field(min_length=1, pattern=NAME_PATTERN)
    total: float = Field(ge=0.0, description="the most the group may spend")
    select: Selector = Field(default_factory=Selector)
    use_all: bool = Field(default=False, description="spend exactly `total` on the group")


class NetValueObjective(_Strict):
    """Maximize expected value minus spend (the default)."""

    type: Literal["net_value"] = "net_value"


class TargetObjective(_Strict):
    """The least spend (plus activation costs) reaching ``target`` expected successes or value."""

    type: Literal["target"]
    metric: Literal["successes", "value"] = Field(description="expected successes or expected value")
    target: float = Field(gt=0.0)
    select: Selector = Field(default_factory=Selector, description="cells counted towards the target")


class HurdleObjective(_Strict):
    """Spend while a currency unit returns at least ``rate`` (maximize value - rate * spend)."""

    type: Literal["hurdle"]
    rate: float = Field(gt=0.0, description="least marginal return worth paying for, e.g. 1.3")


Objective = Annotated[Union[NetValueObjective, TargetObjective, HurdleObjective], Field(discriminator="type")]

__all__ = ["Constraint", "EfficiencyConstraint",
           "HurdleObjective", "LockConstraint", "MinActiveConstraint", "NamedBudget",
           "NetValueObjective", "Objective", "RatioConstraint", "Selector", "ShareConstraint",
           "SpendConstraint", "TargetObjective"]
