"""Response curves from managers' stated judgments (decision calculus), in closed form.

Two-point calibration of the exponential curve (Blattberg and Deighton 1996,
"Manage marketing by the customer equity test", HBR 74(4)). A manager states
today's spend per member ``x0`` with today's response rate ``p0``, and the
ceiling rate ``c`` that unlimited spend would reach (optionally the floor ``f``
reached with no spend, 0 in the original). Solving
``p0 = f + (c - f)(1 - exp(-r x0))`` for the rate gives

    r = -ln(1 - (p0 - f) / (c - f)) / x0,        requires  f < p0 < c,  x0 > 0.

Four-point calibration of the hill curve (Little 1970, "Models and managers:
the concept of a decision calculus", Management Science 16(8); ADBUDG). A
manager states the response with no spend (floor ``f``), with saturating spend
(ceiling ``c``), at today's spend ``x0`` (``p1``) and at ``m`` times today's
spend (``p2``; Little's question is m = 1.5, "+50%"). With ``y = (p - f)/(c - f)``
the curve ``y = x^k / (h^k + x^k)`` is linear in log-odds,
``ln(y / (1 - y)) = k ln x - k ln h``, so with ``L1, L2`` the log-odds of the
two stated points

    k = (L2 - L1) / ln m,     h = x0 exp(-L1 / k),
    requires  f < p1 < p2 < c,  x0 > 0,  m > 1.

Both reproduce their input points exactly (up to rounding).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import Problem, SpecError
from ..spec.models import CLVValue, Task


def two_point(spend: float, rate: float, ceiling: float, floor: float = 0.0, where: str | None = None) -> dict:
    """Blattberg-Deighton two-point calibration of the exponential curve.

    Parameters
    ----------
    spend : float
        Today's spend per member (> 0).
    rate : float
        Today's response rate.
    ceiling : float
        Response rate at unlimited spend.
    floor : float, default 0
        Response rate with no spend.
    where : str, optional
        The cell, for error messages.

    Returns
    -------
    dict
        ``{"family": "exponential", "floor", "ceiling", "rate"}``.

    Examples
    --------
    >>> c = two_point(spend=10.0, rate=0.3, ceiling=0.6)
    >>> round(c["rate"], 6)   # ln 2 / 10
    0.069315
    """
    problems = []
    if not (spend > 0 and math.isfinite(spend)):
        problems.append(Problem("spend", f"today's spend per member must be > 0; got {spend:g}", where))
    if not 0.0 <= floor < rate < ceiling <= 1.0:
        problems.append(Problem("rate", f"needs 0 <= floor < rate < ceiling <= 1; got floor {floor:g}, "
                                        f"rate {rate:g}, ceiling {ceiling:g}", where))
    if problems:
        raise SpecError(problems)
    r = -math.log1p(-(rate - floor) / (ceiling - floor)) / spend
    return {"family": "exponential", "floor": float(floor), "ceiling": float(ceiling), "rate": float(r)}


def four_point(spend: float, at_spend: float, at_more: float, floor: float, ceiling: float,
               multiple: float = 1.5, where: str | None = None) -> dict:
    """Little's four-point ADBUDG calibration of the hill curve.

    Parameters
    ----------
    spend : float
        Today's spend per member (> 0).
    at_spend : float
        Response rate at today's spend.
    at_more : float
        Response rate at ``multiple`` times today's spend.
    floor, ceiling : float
        Response rate with no spend and with saturating spend.
    multiple : float, default 1.5
        The second spend level as a multiple of today's (Little's +50%).

    Returns
    -------
    dict
        ``{"family": "hill", "floor", "ceiling", "half_saturation", "shape"}``.

    Examples
    --------
    >>> c = four_point(spend=10.0, at_spend=0.5, at_more=0.6, floor=0.0, ceiling=1.0)
    >>> round(c["half_saturation"], 6), round(c["shape"], 6)   # y=1/2 at x0; k = ln 1.5 / ln 1.5
    (10.0, 1.0)
    """
    problems = []
    if not (spend > 0 and math.isfinite(spend)):
        problems.append(Problem("spend", f"today's spend per member must be > 0; got {spend:g}", where))
    if not multiple > 1:
        problems.append(Problem("multiple", f"the second spend level must exceed today's (> 1); got {multiple:g}",
                                where))
    if not 0.0 <= floor < at_spend < at_more < ceiling <= 1.0:
        problems.append(Problem("at_spend", f"needs 0 <= floor < at_spend < at_more < ceiling <= 1; got floor "
                                            f"{floor:g}, at_spend {at_spend:g}, at_more {at_more:g}, "
                                            f"ceiling {ceiling:g}", where))
    if problems:
        raise SpecError(problems)
    y1 = (at_spend - floor) / (ceiling - floor)
    y2 = (at_more - floor) / (ceiling - floor)
    l1, l2 = math.log(y1 / (1 - y1)), math.log(y2 / (1 - y2))
    k = (l2 - l1) / math.log(multiple)
    h = spend * math.exp(-l1 / k)
    if k > 50:
        raise SpecError(Problem("at_more", f"the stated points imply a step-like curve (shape {k:.3g} > 50); "
                                           f"state a smaller rise between today's spend and {multiple:g}x", where))
    return {"family": "hill", "floor": float(floor), "ceiling": float(ceiling),
            "half_saturation": float(h), "shape": float(k)}


# ---- judgment files -------------------------------------------------------------------------------

DATA = "data"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class TwoPointJudgment(_Strict):
    """Blattberg-Deighton: today's spend and rate, and the ceiling (optionally the floor)."""

    method: Literal["two_point"]
    spend: float = Field(gt=0.0, description="today's spend per member")
    rate: float | Literal["data"] = Field(description="today's response rate, or `data` to take it from the data")
    ceiling: float = Field(ge=0.0, le=1.0, description="response rate at unlimited spend")
    floor: float = Field(default=0.0, ge=0.0, le=1.0, description="response rate with no spend")


class FourPointJudgment(_Strict):
    """Little's ADBUDG: response at no spend, saturation, today's spend and `multiple` x today's spend."""

    method: Literal["four_point"]
    spend: float = Field(gt=0.0, description="today's spend per member")
    at_spend: float | Literal["data"] = Field(description="response at today's spend, or `data`")
    at_more: float = Field(ge=0.0, le=1.0, description="response at `multiple` x today's spend")
    floor: float = Field(ge=0.0, le=1.0, description="response with no spend")
    ceiling: float = Field(ge=0.0, le=1.0, description="response at saturating spend")
    multiple: float = Field(default=1.5, gt=1.0, description="second spend level / today's (Little: 1.5)")


Judgment = Annotated[Union[TwoPointJudgment, FourPointJudgment], Field(discriminator="method")]


class JudgedCell(_Strict):
    judgment: Judgment
    pool: float | None = Field(default=None, gt=0.0, description="members; from the data when absent")
    value: float | CLVValue | None = Field(default=None, description="value of one success; from the data when absent")
    current_spend: float | None = Field(default=None, ge=0.0, description="default: pool x judgment.spend")
    note: str | None = Field(default=None, description="who said so and why")


class JudgedSegment(_Strict):
    id: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    description: str | None = None
    margin: float | None = Field(default=None, description="margin per period (cohort data carry no money)")
    tasks: dict[Task, JudgedCell] = Field(min_length=1)


class JudgmentFile(_Strict):
    """Stated judgments per (segment, task): the input of `allocator calibrate judgment|transactions|cohorts`."""

    name: str | None = None
    description: str | None = None
    currency: str | None = None
    segments: list[JudgedSegment] = Field(min_length=1)


def load_judgments(path) -> JudgmentFile:
    """Read and validate a judgment file (errors name the field and the cell)."""
    from ..spec.loader import _problems_from_validation, read_mapping

    data = read_mapping(path)
    try:
        jf = JudgmentFile.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_problems_from_validation(exc, data), source=str(path)) from None
    seen = set()
    for s in jf.segments:
        if s.id in seen:
            raise SpecError(Problem("segments.id", f"segment ids must be unique; '{s.id}' appears twice"),
                            source=str(path))
        seen.add(s.id)
    return jf


def curve_from_judgment(j: TwoPointJudgment | FourPointJudgment, data_rate: float | None = None,
                        where: str | None = None) -> dict[str, Any]:
    """The curve a judgment implies; ``rate: data`` / ``at_spend: data`` take ``data_rate``."""
    stated = j.rate if isinstance(j, TwoPointJudgment) else j.at_spend
    if stated == DATA:
        if data_rate is None:
            raise SpecError(Problem("judgment", "`data` needs a data source (use `allocator calibrate "
                                                "transactions` or `cohorts`); give a number here", where))
        stated = float(data_rate)
    if isinstance(j, TwoPointJudgment):
        return two_point(j.spend, stated, j.ceiling, j.floor, where=where)
    return four_point(j.spend, stated, j.at_more, j.floor, j.ceiling, j.multiple, where=where)


def judgment_inputs(j: TwoPointJudgment | FourPointJudgment, data_rate: float | None) -> dict[str, Any]:
    """The stated points as plain data, for the model file's diagnostics."""
    out = j.model_dump()
    if data_rate is not None:
        out["data_rate"] = float(data_rate)
    return out
