"""The multi-period scenario contract (pydantic v2, strict) and its validation.

A dynamic scenario follows customers of each segment through three states,
``prospects``, ``active`` and ``lapsed``, over ``periods`` periods (or an
``infinite`` horizon). Its tasks are transitions (acquisition: prospects to
active; retention: active stay active, the rest lapse; win-back: lapsed to
active), each driven by spend per member of its source state. The conventions
(timing of margins, discounting, terminal values) are stated in
:mod:`allocator.dynamic.model`.

Validation happens once, here: the schema (unknown keys, types, ranges) and the
rules between fields (task periods inside the horizon, curve parameters, budget
lengths). Every problem becomes a :class:`~allocator.errors.Problem` naming the
field and the segment (``(enterprise)``) or cell (``(enterprise, acquisition)``);
all of them are raised together as one :class:`~allocator.errors.SpecError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..curves import FAMILIES
from ..errors import Problem, SpecError
from ..spec.models import CLVValue, Task
from ..spec.rules import check_value_curve

STATES: tuple[str, ...] = ("prospects", "active", "lapsed")
#: the state each task draws its members from
SOURCE: dict[str, str] = {"acquisition": "prospects", "retention": "active", "winback": "lapsed"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class Members(_Strict):
    """Members of each state at the start of period 1."""

    prospects: float = Field(default=0.0, ge=0.0)
    active: float = Field(default=0.0, ge=0.0)
    lapsed: float = Field(default=0.0, ge=0.0)


class StateMargins(_Strict):
    """Margin per member per period, by the state the member is in at the end of the period."""

    prospects: float = 0.0
    active: float = 0.0
    lapsed: float = 0.0


class StateValues(_Strict):
    """Terminal value per member by state at the end of the horizon: a number or ``{clv: {...}}``."""

    prospects: float | CLVValue = 0.0
    active: float | CLVValue = 0.0
    lapsed: float | CLVValue = 0.0


class DynamicTask(_Strict):
    """One task of a segment: a transition driven by spend per member of its source state."""

    curve: dict[str, Any] = Field(description="probability of the move per period at spend x per member")
    periods: list[int] | None = Field(default=None, description="periods the task runs in (absent: every period); "
                                                                "elsewhere it moves members at its base rate p(0)")
    value: float | CLVValue = Field(default=0.0, description="one-off value per success, earned in the period "
                                                             "(on top of the state values)")
    value_curve: dict[str, Any] | None = Field(
        default=None, description="the one-off value per success as a function of spend per member: "
                                  "value * v(x), v any registered family (e.g. deeper offers, cheaper customers)")
    min_spend_per_member: float = Field(default=0.0, ge=0.0)
    max_spend_per_member: float | None = Field(default=None, ge=0.0)


class DynamicSegment(_Strict):
    id: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    description: str | None = None
    members: Members = Field(default_factory=Members)
    margin: float | StateMargins = Field(default=0.0, description="per active customer per period, or per state")
    terminal: StateValues | None = Field(default=None, description="value per state at the end of a finite horizon")
    prospects_stay: float = Field(default=1.0, ge=0.0, le=1.0,
                                  description="share of unacquired prospects still prospects next period")
    unreachable: float = Field(default=0.0, ge=0.0, le=1.0,
                               description="share of lapsed members not won back who are lost each period")
    arrivals: float | list[float] = Field(default=0.0, description="new prospects at the start of each period "
                                                                   "after the first (a number or one per period 2..T)")
    tasks: dict[Task, DynamicTask] = Field(default_factory=dict)


class DynamicBudget(_Strict):
    total: float | None = Field(default=None, ge=0.0, description="most spent over all periods (nominal)")
    per_period: list[float] | None = Field(default=None, description="most spent in each period (nominal)")
    use_all: bool = Field(default=False, description="spend `total` and every `per_period` entry exactly, even "
                                                     "below a return of 1 (the rows become equalities)")


class PotSpec(_Strict):
    """A named pot: the most spent (nominal) over the listed periods."""

    name: str = Field(min_length=1)
    total: float = Field(ge=0.0)
    periods: list[int] = Field(min_length=1, description="the periods the pot pays for")
    use_all: bool = Field(default=False, description="spend `total` exactly over the pot's periods")


class PeriodSelector(_Strict):
    """Which periods a rule covers (absent or empty: every period)."""

    periods: list[int] | None = Field(default=None, description="the periods the rule covers")


class PeriodRule(_Strict):
    """A rule on per-period spend: ``spend`` of the selected periods, or their ``share`` of all spend."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    type: Literal["spend", "share"]
    select: PeriodSelector = Field(default_factory=PeriodSelector)
    min: float | None = Field(default=None, ge=0.0, description="floor (currency, or a fraction for share)")
    max: float | None = Field(default=None, ge=0.0, description="cap (currency, or a fraction for share)")


class HurdleObjective(_Strict):
    """Spend while a currency unit returns at least ``rate``: maximize value - rate * spend (discounted)."""

    type: Literal["hurdle"]
    rate: float = Field(gt=0.0, description="least marginal return worth paying for, e.g. 1.3")


class NetValueObjective(_Strict):
    type: Literal["net_value"] = "net_value"


class DynamicSolver(_Strict):
    tolerance: float = Field(default=1e-6, gt=0.0, description="certified relative gap to reach")
    max_iterations: int = Field(default=200, ge=1)


_PARAM = r"^(margin(\.(prospects|active|lapsed))?|members\.(prospects|active|lapsed)|arrivals|value|" \
         r"(curve|value_curve)\.[A-Za-z_][A-Za-z0-9_]*)$"


class DynamicDistribution(_Strict):
    """A distribution for one parameter of the matching segments (and tasks)."""

    segment: str = Field(default="*", description="segment id or *")
    task: str = Field(default="*", description="task or * (task parameters only)")
    param: str = Field(pattern=_PARAM, description="margin[.<state>], members.<state>, arrivals, value, "
                                                   "curve.<parameter> or value_curve.<parameter>")
    dist: Literal["lognormal", "normal", "uniform"]
    sigma: float | None = Field(default=None, gt=0.0)
    sd: float | None = Field(default=None, gt=0.0)
    low: float | None = None
    high: float | None = None
    shared: bool = False


class DynamicUncertainty(_Strict):
    samples: int | None = Field(default=None, ge=2, le=100_000)
    seed: int | None = None
    alpha: float = Field(default=0.1, gt=0.0, le=1.0)
    objective: Literal["mean", "cvar", "quantile"] = "cvar"
    distributions: list[DynamicDistribution] = Field(default_factory=list)


class DynamicScenario(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str | None = None
    currency: str | None = None
    periods: int | Literal["infinite"] = Field(description="number of periods, or infinite")
    discount: float = Field(default=0.0, gt=-1.0, description="discount rate per period (> -1)")
    budget: DynamicBudget | None = None
    budgets: list[PotSpec] = Field(default_factory=list, description="named pots, each over some periods")
    solver: DynamicSolver = Field(default_factory=DynamicSolver)
    segments: list[DynamicSegment] = Field(min_length=1)
    constraints: list[PeriodRule] = Field(default_factory=list, description="rules on per-period spend")
    treatment: Literal["partial", "uniform"] = Field(
        default="partial", description="partial: a plan may treat shares of a state's members at different "
                                       "spend levels (exact); uniform: every member of a state gets the same "
                                       "spend in a period (see allocator.dynamic.uniform)")
    objective: NetValueObjective | HurdleObjective | None = Field(default=None, description="net_value (default) "
                                                                                            "or hurdle")
    uncertainty: DynamicUncertainty | None = Field(default=None, description="parameter distributions for "
                                                                             "`allocator uncertainty`")
    variants: dict[str, Any] | None = Field(default=None, description="variants for `allocator sweep` "
                                                                      "(grid and cases, as for static scenarios)")

    @property
    def infinite(self) -> bool:
        return self.periods == "infinite"


def is_dynamic(data: Mapping[str, Any]) -> bool:
    """Does a scenario mapping use the multi-period contract? (It has a top-level ``periods``.)"""
    return isinstance(data, Mapping) and "periods" in data


# ---------------------------------------------------------------- validation

_UNION_LABELS = {"float", "int", "str", "bool", "CLVValue", "StateMargins", "StateValues", "list[float]",
                 "literal['infinite']", "list[int]"}


def segment_field(field: str, segment: str) -> str:
    """A segment-level field as it is printed: ``members.prospects of segment 'ent'``."""
    return f"{field} of segment '{segment}'"


def _where(loc: list, data: Mapping[str, Any]) -> tuple[list, str | None]:
    """Strip ``segments, i[, tasks, task]`` off ``loc``; return the rest and the segment or cell label.

    The label is ``(segment, task)`` for a task's field and ``'segment'`` (quoted) for a segment's.
    """
    if len(loc) >= 2 and loc[0] == "segments" and isinstance(loc[1], int):
        try:
            seg = data["segments"][loc[1]].get("id", f"#{loc[1]}")
        except (KeyError, IndexError, TypeError, AttributeError):
            seg = f"#{loc[1]}"
        if len(loc) >= 4 and loc[2] == "tasks":
            return loc[4:], f"({seg}, {loc[3]})"
        return loc[2:], f"'{seg}'"
    return loc, None


def _missing_periods(periods: list[int], T: int | None, field: str, cell: str | None = None) -> list[Problem]:
    """A problem naming the first of ``periods`` outside the horizon ``1..T`` (``T`` None: infinite)."""
    bad = [p for p in periods if p < 1 or (T is not None and p > T)]
    if not bad:
        return []
    horizon = f"1..{T}" if T is not None else "1, 2, ..."
    return [Problem(field, f"period {bad[0]} does not exist (the horizon is {horizon}); got {periods}", cell)]


def _problem(field: str, message: str, where: str | None) -> Problem:
    """A task's problem names its cell; a segment's names the segment in the field."""
    if where is not None and where.startswith("'"):
        return Problem(segment_field(field, where.strip("'")), message)
    return Problem(field, message, where)


def _schema_problems(exc: ValidationError, data: Mapping[str, Any]) -> list[Problem]:
    """One problem per offending field: union branches (a number or a mapping) are merged into one line."""
    seen: dict[tuple[str, str | None], Problem] = {}
    errors = exc.errors()
    locs = [tuple(str(p) for p in e["loc"] if str(p) not in _UNION_LABELS) for e in errors]
    for err, mine in zip(errors, locs):
        # a union reports each branch: keep the branch that got furthest into the input
        if any(len(o) > len(mine) and o[:len(mine)] == mine for o in locs):
            continue
        loc, cell = _where(list(err["loc"]), data)
        if cell and loc == ["[key]"]:
            p = _problem("tasks", f"unknown task '{err['input']}'; allowed: acquisition, retention, winback", cell)
            seen[(f"tasks.{err['input']}", cell)] = p
            continue
        loc = [p for p in loc if str(p) not in _UNION_LABELS]
        field = ".".join(str(p) for p in loc) or "(top level)"
        head = loc[0] if loc else None
        state_map = head in ("members", "margin", "terminal") and len(loc) == 2
        if err["type"] == "extra_forbidden" and state_map:
            msg = f"unknown state '{loc[1]}'; allowed: {', '.join(STATES)}"
            field = str(head)
        elif err["type"] == "extra_forbidden" and head == "constraints" and "select" in loc:
            msg = ("a multi-period rule selects periods only (`select: {periods: [...]}`); groups of "
                   "segments, tasks or tags are not supported yet")
        elif err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling)"
        elif err["type"] == "missing":
            msg = "is required"
        elif field in ("margin", "arrivals") or (head in ("margin", "terminal") and len(loc) <= 2):
            what = {"margin": "a number or a mapping of state -> number",
                    "arrivals": "a number or a list of numbers, one per period after the first"}.get(
                field, "a number or {clv: {...}}")
            msg = f"must be {what}; got {err.get('input')!r}"
        elif field == "discount":
            msg = f"must be a number > -1 (a rate per period, 0.025 is 2.5%); got {err.get('input')!r}"
        elif field == "periods":
            msg = f"must be a whole number >= 1 or 'infinite'; got {err.get('input')!r}"
        else:
            msg = f"{err['msg']}; got {err.get('input')!r}"
        key = (field, cell)
        if key not in seen:   # a union reports each branch; the first (merged) line is enough
            seen[key] = _problem(field, msg, cell)
    return list(seen.values())


def _rule_problems(sc: DynamicScenario) -> list[Problem]:
    """Rules between fields of a schema-valid scenario."""
    out: list[Problem] = []
    T = None if sc.infinite else int(sc.periods)
    if T is not None and T < 1:
        out.append(Problem("periods", f"must be >= 1 or 'infinite'; got {T}"))
        T = 1
    if sc.discount <= -1:
        out.append(Problem("discount", f"must be > -1 (a rate per period, 0.025 is 2.5%); got {sc.discount:g}"))
    if sc.infinite and sc.discount <= 0:
        out.append(Problem("discount", f"must be > 0 with periods: infinite (else lifetime values are unbounded); "
                                       f"got {sc.discount:g}"))
    if sc.budget is not None:
        if sc.budget.total is None and sc.budget.per_period is None:
            out.append(Problem("budget", "give `total` or `per_period` (or drop `budget` for no cap)"))
        if sc.infinite:
            out.append(Problem("budget", "budgets need a finite horizon: give `periods` a number "
                                         "(the infinite horizon plans without a budget)"))
        pp = sc.budget.per_period
        if pp is not None:
            if T is not None and len(pp) != T:
                out.append(Problem("budget.per_period", f"needs one entry per period ({T}); got {len(pp)}"))
            bad = [v for v in pp if v < 0]
            if bad:
                out.append(Problem("budget.per_period", f"entries must be >= 0; got {bad[0]:g}"))
            if sc.budget.use_all and sc.budget.total is not None and \
                    abs(sum(pp) - sc.budget.total) > 1e-9 * max(sc.budget.total, 1.0):
                out.append(Problem("budget.use_all", f"spends `total` and every `per_period` entry exactly, so "
                                                     f"they must agree: sum of per_period {sum(pp):,.2f} vs total "
                                                     f"{sc.budget.total:,.2f}; drop one of them"))
    names: set[str] = set()
    for pot in sc.budgets:
        where = f"budgets.{pot.name}"
        if pot.name in names:
            out.append(Problem("budgets.name", f"pot names must be unique; '{pot.name}' appears twice"))
        names.add(pot.name)
        if sc.infinite:
            out.append(Problem(where, "pots need a finite horizon: give `periods` a number"))
        out.extend(_missing_periods(pot.periods, T, f"{where}.periods"))
    for i, c in enumerate(sc.constraints):
        where = f"constraints.{c.name}"
        if c.min is None and c.max is None:
            out.append(Problem(where, "give `min` and/or `max`"))
        if c.min is not None and c.max is not None and c.min > c.max:
            out.append(Problem(f"{where}.min", f"must be <= max ({c.max:g}); got {c.min:g}"))
        if c.type == "share" and any(v is not None and v > 1 for v in (c.min, c.max)):
            out.append(Problem(where, f"a share is a fraction in [0, 1]; got min {c.min}, max {c.max}"))
        if sc.infinite:
            out.append(Problem(where, "rules need a finite horizon: give `periods` a number"))
        out.extend(_missing_periods(c.select.periods or [], T, f"{where}.select.periods"))
    if sc.objective is not None and sc.objective.type == "hurdle" and sc.infinite:
        out.append(Problem("objective", "the hurdle objective needs a finite horizon (periods: a number)"))
    seen: set[str] = set()
    for seg in sc.segments:
        where = f"'{seg.id}'"
        if seg.id in seen:
            out.append(Problem("segments.id", f"segment ids must be unique; '{seg.id}' appears twice"))
        seen.add(seg.id)
        if sc.infinite and seg.terminal is not None:
            out.append(_problem("terminal", "an infinite horizon has no terminal values; drop `terminal`", where))
        if isinstance(seg.arrivals, list):
            if T is not None and len(seg.arrivals) != max(T - 1, 0):
                out.append(_problem("arrivals", f"needs one entry per period after the first ({max(T - 1, 0)}); "
                                                f"got {len(seg.arrivals)}", where))
            if sc.infinite:
                out.append(_problem("arrivals", "with periods: infinite give one number (arrivals every period)",
                                    where))
        arr = seg.arrivals if isinstance(seg.arrivals, list) else [seg.arrivals]
        if any(a < 0 for a in arr):
            out.append(_problem("arrivals", f"must be >= 0; got {min(arr):g}", where))
        for task, spec in seg.tasks.items():
            cell = f"({seg.id}, {task})"
            fam = spec.curve.get("family")
            if not isinstance(fam, str) or fam not in FAMILIES:
                out.append(Problem("curve.family", f"unknown curve family {fam!r}; known: "
                                                   f"{', '.join(sorted(FAMILIES))}", cell))
            else:
                for param, msg in FAMILIES[fam].check({k: v for k, v in spec.curve.items() if k != "family"}):
                    out.append(Problem(f"curve.{param}", msg, cell))
            out.extend(check_value_curve(spec.value_curve, cell))
            if spec.periods is not None:
                out.extend(_missing_periods(spec.periods, T, "periods", cell))
                if not spec.periods:
                    out.append(Problem("periods", "must list at least one period (or drop the task)", cell))
            if spec.max_spend_per_member is not None and spec.max_spend_per_member < spec.min_spend_per_member:
                out.append(Problem("max_spend_per_member", f"must be >= min_spend_per_member "
                                                           f"({spec.min_spend_per_member:g}); "
                                                           f"got {spec.max_spend_per_member:g}", cell))
            if isinstance(spec.value, (int, float)) and spec.value < 0:
                out.append(Problem("value", f"must be >= 0; got {spec.value:g}", cell))
    return out


def dynamic_from_dict(data: Mapping[str, Any], source: str | None = None) -> DynamicScenario:
    """Validate a multi-period scenario mapping.

    Raises
    ------
    SpecError
        Listing every problem, each naming its field and its segment or cell.
    """
    try:
        sc = DynamicScenario.model_validate(dict(data))
    except ValidationError as exc:
        raise SpecError(_schema_problems(exc, data), source=source) from None
    problems = _rule_problems(sc)
    if problems:
        raise SpecError(problems, source=source)
    return sc


def resolved_mapping(path: str | Path) -> dict[str, Any]:
    """A scenario file as one mapping: ``extends`` and ``overrides`` resolved (as for static scenarios)."""
    from ..spec.loader import read_mapping, resolve_mapping

    path = Path(path)
    return resolve_mapping(read_mapping(path), base_dir=path.parent, source=str(path))


def is_dynamic_file(path: str | Path) -> bool:
    """Is the YAML/JSON file (after ``extends``) a multi-period scenario? False for other or unreadable files."""
    p = Path(path)
    if p.suffix.lower() not in (".yaml", ".yml", ".json") or not p.is_file():
        return False
    try:
        return is_dynamic(resolved_mapping(p))
    except SpecError:
        return False


def load_dynamic(path: str | Path) -> DynamicScenario:
    """Read and validate a multi-period scenario file (YAML or JSON; ``extends`` and ``overrides`` resolved)."""
    path = Path(path)
    return dynamic_from_dict(resolved_mapping(path), source=str(path))
