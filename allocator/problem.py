"""The compiled problem: plain numpy arrays, built once from a scenario, read by every solver.

Spend is in currency per cell (``spend = pool * x``); curves take spend per member.
The objective is ``sum(pool * value * p(spend / pool)) - sum(spend)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .curves import CurveFamily


@dataclass(frozen=True)
class CurveBlock:
    """Cells sharing one curve family: their indices and packed parameter arrays."""

    family: CurveFamily
    index: np.ndarray
    params: dict[str, np.ndarray]


@dataclass(frozen=True)
class LinearConstraint:
    """``lower <= sum(coef * spend[index]) <= upper`` (later issues add these)."""

    name: str
    index: np.ndarray
    coef: np.ndarray
    lower: float = -np.inf
    upper: float = np.inf


@dataclass(frozen=True)
class CompiledProblem:
    """Arrays describing one allocation problem; see the module docstring for the objective.

    Attributes
    ----------
    segment, task : ndarray of str
        Cell labels.
    pool, value : ndarray
        Members per cell and value of one success.
    lower, upper : ndarray
        Bounds on total spend per cell; ``upper`` already includes the curve's
        ``domain_max`` (e.g. a response peak) and may be ``inf``.
    current_spend : ndarray
        Baseline spend, ``nan`` where not given.
    blocks : tuple of CurveBlock
        Curves grouped by family.
    budget : float or None
        Cap on total spend; ``None`` means profit-maximizing without a cap.
    use_all : bool
        Spend exactly ``budget``.
    """

    name: str
    segment: np.ndarray
    task: np.ndarray
    pool: np.ndarray
    value: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    current_spend: np.ndarray
    blocks: tuple[CurveBlock, ...]
    budget: float | None = None
    use_all: bool = False
    currency: str | None = None
    constraints: tuple[LinearConstraint, ...] = field(default_factory=tuple)

    @property
    def n(self) -> int:
        return len(self.pool)

    def label(self, i: int) -> str:
        return f"({self.segment[i]}, {self.task[i]})"

    def _per_cell(self, method: str, x: np.ndarray) -> np.ndarray:
        out = np.empty(self.n)
        for b in self.blocks:
            out[b.index] = getattr(b.family, method)(x[b.index], b.params)
        return out

    def response(self, spend: np.ndarray) -> np.ndarray:
        """Response probability per cell at total spend ``spend``."""
        return self._per_cell("response", np.asarray(spend, float) / self.pool)

    def marginal_return(self, spend: np.ndarray, side: str = "right") -> np.ndarray:
        """value * p'(spend / pool): value returned by the next (``right``) or last (``left``) currency unit."""
        method = "slope" if side == "right" else "slope_left"
        return self.value * self._per_cell(method, np.asarray(spend, float) / self.pool)

    def expected_value(self, spend: np.ndarray) -> np.ndarray:
        return self.pool * self.value * self.response(spend)

    def net_value(self, spend: np.ndarray) -> float:
        """Objective: total expected value minus total spend."""
        spend = np.asarray(spend, float)
        return float(self.expected_value(spend).sum() - spend.sum())

    @property
    def concave(self) -> np.ndarray:
        """Per-cell flag: is the cell's response curve concave?"""
        out = np.empty(self.n, dtype=bool)
        for b in self.blocks:
            out[b.index] = b.family.is_concave(b.params)
        return out

    def subset(self, keep: np.ndarray) -> "CompiledProblem":
        """The problem restricted to cells ``keep`` (a boolean mask); budget unchanged."""
        where = np.flatnonzero(keep)
        remap = -np.ones(self.n, dtype=int)
        remap[where] = np.arange(len(where))
        blocks = []
        for b in self.blocks:
            m = keep[b.index]
            if m.any():
                blocks.append(CurveBlock(b.family, remap[b.index[m]], {k: v[m] for k, v in b.params.items()}))
        return CompiledProblem(
            name=self.name, segment=self.segment[where], task=self.task[where], pool=self.pool[where],
            value=self.value[where], lower=self.lower[where], upper=self.upper[where],
            current_spend=self.current_spend[where], blocks=tuple(blocks), budget=self.budget,
            use_all=self.use_all, currency=self.currency)
