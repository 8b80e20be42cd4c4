"""The shared base of response-curve families.

A family is a set of pure functions of spend per member ``x`` and a dict of
parameter arrays ``P`` (one entry per cell of a block), so that every evaluation
is vectorized over cells. Families declare their parameters with allowed ranges
(scikit-learn style), check a single cell's parameters in one place, and pack many
cells' parameters into arrays once, when the problem is compiled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar, Mapping

import numpy as np

Params = Mapping[str, np.ndarray]
SpendRule = Callable[[float], np.ndarray]


@dataclass(frozen=True)
class Param:
    """A declared scalar parameter of a curve family.

    Parameters
    ----------
    name : str
        Key in the scenario file.
    default : float or None
        Value used when the key is absent; ``None`` makes the parameter required.
    lower, upper : float
        Inclusive allowed range.
    doc : str
        One line for the docs and the JSON Schema.
    """

    name: str
    default: float | None = None
    lower: float = -math.inf
    upper: float = math.inf
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is None


class CurveFamily:
    """Base of a response-curve family: p(x), p'(x), concavity, inverse marginal.

    Subclasses set ``name`` and ``params`` and implement :meth:`response` and
    :meth:`slope`. Families whose curves can be concave also get
    :meth:`spend_rule`, the inverse of the marginal return, used by the exact
    multiplier solver; the default here is a vectorized bisection, which closed
    forms override.
    """

    name: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    description: ClassVar[str] = ""
    #: parameter sets (as written in scenario files) that the common tests run on
    examples: ClassVar[tuple[dict, ...]] = ()
    #: each cell's response and slopes are its own parameters' formula, computed elementwise, so a
    #: caller may stack several spends per cell in one call (parameters repeated alike)
    elementwise: ClassVar[bool] = False

    # ---- single-cell validation (pure python, used by the spec layer) ----
    def check(self, raw: Mapping[str, object]) -> list[tuple[str, str]]:
        """Return ``(parameter, message)`` pairs for everything wrong with one cell's parameters."""
        problems: list[tuple[str, str]] = []
        known = {p.name for p in self.params}
        for key in raw:
            if key not in known:
                problems.append((key, f"unknown parameter for family '{self.name}'; "
                                      f"allowed: {', '.join(sorted(known))}"))
        for p in self.params:
            if p.name not in raw:
                if p.required:
                    problems.append((p.name, f"is required by family '{self.name}'"))
                continue
            value = raw[p.name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append((p.name, f"must be a number; got {value!r}"))
                continue
            if not math.isfinite(value):
                problems.append((p.name, f"must be finite; got {value}"))
            elif value < p.lower or value > p.upper:
                problems.append((p.name, f"must be in [{p.lower:g}, {p.upper:g}]; got {value:g}"))
        if not problems:
            problems.extend(self.check_relations({k: float(v) for k, v in raw.items()}))  # type: ignore[arg-type]
        return problems

    def check_relations(self, values: Mapping[str, float]) -> list[tuple[str, str]]:
        """Rules between parameters (e.g. ceiling >= floor); overridden by families."""
        return []

    def ceiling_above_floor(self, values: Mapping[str, float]) -> list[tuple[str, str]]:
        """The rule of saturating families with ``floor`` and ``ceiling``: ceiling >= floor."""
        floor = values.get("floor", 0.0)
        if values["ceiling"] < floor:
            return [("ceiling", f"must be >= floor ({floor:g}); got {values['ceiling']:g}")]
        return []

    def pack(self, raws: list[Mapping[str, object]]) -> dict[str, np.ndarray]:
        """Stack many cells' (already checked) parameters into arrays, defaults filled in."""
        return {
            p.name: np.array([float(r.get(p.name, p.default)) for r in raws], dtype=float)  # type: ignore[arg-type]
            for p in self.params
        }

    def unpack(self, P: Params, i: int) -> dict[str, object]:
        """One cell's parameters back as a plain dict (round trip of :meth:`pack`)."""
        return {name: float(arr[i]) for name, arr in P.items()}

    def prepare(self, P: Params) -> Params:
        """``P`` with any arrays derived from it that the family's formulas would otherwise recompute.

        The formulas accept either; a caller evaluating one block many times prepares it once
        (:attr:`allocator.problem.CurveBlock.prepared`). The default derives nothing and returns ``P``.
        """
        return P

    # ---- maths, vectorized over cells ----
    def response(self, x: np.ndarray, P: Params) -> np.ndarray:
        """Probability p(x) that one member responds at spend per member ``x``."""
        raise NotImplementedError

    def slope(self, x: np.ndarray, P: Params) -> np.ndarray:
        """Right derivative p'(x+)."""
        raise NotImplementedError

    def slope_left(self, x: np.ndarray, P: Params) -> np.ndarray:
        """Left derivative p'(x-); equal to :meth:`slope` for smooth curves."""
        return self.slope(x, P)

    def is_concave(self, P: Params) -> np.ndarray:
        """Per-cell flag: is p concave on [0, inf)?"""
        raise NotImplementedError

    def domain_max(self, P: Params) -> np.ndarray:
        """Largest useful spend per member (e.g. a response peak); inf when the curve never falls."""
        return np.full(len(next(iter(P.values()))), np.inf)

    def spend_rule(self, P: Params, value: np.ndarray, pool: np.ndarray) -> SpendRule:
        """Return ``rule(lam)``: total spend ``pool * x`` where ``value * p'(x) = lam``.

        Only meaningful for concave cells. Where even the first currency unit
        returns less than ``lam`` the rule gives 0; it never exceeds
        :meth:`domain_max`. The default is a vectorized bisection on log x;
        families with a closed form override it.
        """
        xmax = np.minimum(self.domain_max(P), 1e12)
        n = len(value)

        def rule(lam: float) -> np.ndarray:
            target = lam / value
            lo = np.full(n, -40.0)
            hi = np.log(np.maximum(xmax, 1e-300))
            for _ in range(80):
                mid = 0.5 * (lo + hi)
                above = self.slope(np.exp(mid), P) >= target
                lo = np.where(above, mid, lo)
                hi = np.where(above, hi, mid)
            x = np.exp(0.5 * (lo + hi))
            x = np.where(self.slope(np.zeros(n), P) <= target, 0.0, x)
            x = np.where(self.slope(xmax, P) >= target, xmax, x)
            return pool * x

        return rule
