"""The common output of every calibration source: one calibrated (segment, task) cell."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class CalibratedCell:
    """A (segment, task) cell ready for a model file.

    Attributes
    ----------
    value : float or dict
        Value of one success: a number or ``{"clv": {margin, retention, discount, ...}}``.
    curve : dict
        ``{"family": NAME, <parameters>}``.
    diagnostics : dict
        How the curve and value were obtained (fit report, judgment inputs, data summaries).
    curve_draws, value_draws :
        Joint uncertainty draws (bootstrap), aligned by index; empty when the cell has none.
    """

    segment: str
    task: str
    pool: float
    value: float | dict[str, Any]
    curve: dict[str, Any]
    current_spend: float | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    curve_draws: dict[str, np.ndarray] = field(default_factory=dict)
    value_draws: np.ndarray | None = None

    @property
    def label(self) -> str:
        return f"({self.segment}, {self.task})"

    @property
    def draw_count(self) -> int:
        if self.curve_draws:
            return len(next(iter(self.curve_draws.values())))
        return 0 if self.value_draws is None else len(self.value_draws)
