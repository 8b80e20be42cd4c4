"""Expanding a scenario's ``variants`` into concrete, validated scenarios.

Each variant is the base scenario with a set of overrides applied (dotted paths, see
:mod:`allocator.spec.overrides`); it carries the values that define it (``params``), which become
the "varied parameter" columns of the sweep tables.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..errors import Problem, SpecError
from ..spec import Scenario, scenario_from_dict
from ..spec.overrides import apply_overrides, parse_path
from ..spec.reading import check_plain, excerpt

RANGE_KEYS = {"from", "to", "steps", "spacing"}
MAX_VARIANTS = 100_000
"""Most variants in one sweep (grid combinations plus cases): each is a solve and a line of the log."""


@dataclass(frozen=True)
class Variant:
    """One member of a scenario set.

    Attributes
    ----------
    id : str
        ``v0000``, ``v0001``, ... in the order of the grid (first axis slowest) then the cases.
    params : dict
        Column name -> value: a path axis gives the value, a labelled axis its label, a case its name.
    overrides : dict
        Dotted path -> value applied to the base scenario.
    """

    id: str
    params: dict[str, Any]
    overrides: dict[str, Any] = field(default_factory=dict)


def _axis_values(name: str, spec: Any) -> list[tuple[Any, dict[str, Any]]]:
    """``[(label, overrides)]`` for one grid axis."""
    where = f"variants.grid.{name}"
    if isinstance(spec, list):
        if not spec:
            raise SpecError(Problem(where, "lists no values"))
        if len(spec) > MAX_VARIANTS:
            raise SpecError(Problem(where, f"lists {len(spec):,} values; at most {MAX_VARIANTS:,}"))
        parse_path(name)
        return [(v, {name: v}) for v in spec]
    if isinstance(spec, Mapping) and spec and set(spec) <= RANGE_KEYS and {"from", "to", "steps"} <= set(spec):
        parse_path(name)
        a, b, n = spec["from"], spec["to"], spec["steps"]
        spacing = spec.get("spacing", "linear")
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in (a, b)):
            raise SpecError(Problem(where, f"`from` and `to` must be finite numbers; got {excerpt(a)}, {excerpt(b)}"))
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise SpecError(Problem(where, f"`steps` must be a whole number >= 1; got {excerpt(n)}"))
        if n > MAX_VARIANTS:
            raise SpecError(Problem(where, f"`steps` must be at most {MAX_VARIANTS:,} (the most variants in one "
                                           f"sweep); got {n:,}"))
        if spacing not in ("linear", "log"):
            raise SpecError(Problem(where, f"`spacing` must be linear or log; got {spacing!r}"))
        if spacing == "log" and (a <= 0 or b <= 0):
            raise SpecError(Problem(where, f"log spacing needs positive `from` and `to`; got {a:g}, {b:g}"))
        with np.errstate(all="ignore"):
            vals = np.geomspace(a, b, n) if spacing == "log" else np.linspace(a, b, n)
        if not np.isfinite(vals).all():
            raise SpecError(Problem(where, f"the range from {a:g} to {b:g} is too wide to divide into steps"))
        return [(float(v), {name: float(v)}) for v in vals]
    if isinstance(spec, Mapping) and spec:
        out = []
        for label, ov in spec.items():
            if ov is None:
                ov = {}
            if not isinstance(ov, Mapping):
                raise SpecError(Problem(f"{where}.{label}", f"must be a mapping of path -> value; got {excerpt(ov)}"))
            for p in ov:
                parse_path(p)
            out.append((str(label), dict(ov)))
        return out
    raise SpecError(Problem(where, "must be a list of values, a range {from, to, steps[, spacing]}, or "
                                   f"labelled options {{label: {{path: value}}}}; got {excerpt(spec)}"))


def expand_variants(variants: Any) -> list[Variant]:
    """The concrete variants of a ``variants`` block (a :class:`~allocator.spec.models.VariantsSpec` or mapping)."""
    if variants is None:
        return []
    if hasattr(variants, "model_dump"):
        variants = variants.model_dump()
    grid = variants.get("grid") or {}
    cases = variants.get("cases") or []
    out: list[Variant] = []
    if len(cases) > MAX_VARIANTS:
        raise SpecError(Problem("variants.cases", f"lists {len(cases):,} variants; at most {MAX_VARIANTS:,}"))
    if grid:
        axes = [(name, _axis_values(name, spec)) for name, spec in grid.items()]
        count = math.prod(len(vals) for _, vals in axes) + len(cases)
        if count > MAX_VARIANTS:
            sizes = " x ".join(f"{len(vals):,}" for _, vals in axes)
            raise SpecError(Problem("variants.grid", f"crosses to {count:,} variants ({sizes}"
                                                     f"{f' + {len(cases)} cases' if cases else ''}); at most "
                                                     f"{MAX_VARIANTS:,} run in one sweep: use fewer steps, or "
                                                     f"split the sweep into several files"))
        for combo in itertools.product(*[vals for _, vals in axes]):
            params, ov = {}, {}
            for (name, _), (label, o) in zip(axes, combo):
                params[name] = label
                ov.update(o)
            out.append(Variant(f"v{len(out):04d}", params, ov))
    seen = set()
    for case in cases:
        name = case["name"]
        if name in seen:
            raise SpecError(Problem("variants.cases.name", f"variant names must be unique; '{name}' appears twice"))
        seen.add(name)
        for p in case.get("set", {}):
            parse_path(p)
        params = {k: None for k in grid} | {"case": name}
        out.append(Variant(f"v{len(out):04d}", params, dict(case.get("set", {}))))
    return out


def base_mapping(scenario: Scenario) -> dict[str, Any]:
    """The resolved scenario as a plain mapping (cells inline), without its variants."""
    return scenario.model_dump(mode="python", exclude={"variants", "model", "extends", "overrides"},
                               exclude_none=True)


def variant_scenario(base: Mapping[str, Any], variant: Variant, solver_names: tuple[str, ...] | None = None
                     ) -> Scenario:
    """Validate ``base`` with ``variant``'s overrides applied; errors name the variant."""
    try:
        check_plain(dict(variant.overrides))  # the base was checked when it was loaded
        data = apply_overrides(base, variant.overrides)
        return scenario_from_dict(data, solver_names=solver_names, check_values=False)
    except SpecError as exc:
        label = ", ".join(f"{k}={v}" for k, v in variant.params.items() if v is not None)
        raise SpecError(exc.problems, source=f"variant {variant.id} ({label})") from None


def param_value(v: Any) -> Any:
    """A varied value as it should appear in a table cell."""
    if isinstance(v, float) and math.isfinite(v) and v == int(v) and abs(v) < 1e15:
        return int(v)
    return v
