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

    @property
    def prepared(self) -> dict[str, np.ndarray]:
        """``params`` with the arrays its family derives from them (:meth:`CurveFamily.prepare`), made once.

        A plan evaluates each curve a dozen times; a tabulated curve's slopes, made each time, cost
        more than the evaluation. The block is frozen but its arrays could still be written in place,
        so what was derived is kept with the parameters' bytes and made again when they changed; a
        large block derives its arrays on every call, as the formulas did before.
        """
        P = self.params
        memo = self.__dict__.get("_prepared")
        if memo is not None and memo[0] is P and (memo[1] is None or _unchanged(P, memo[1])):
            return memo[2]
        prepared = self.family.prepare(P)
        if prepared is P:
            snapshot = None  # nothing derived: nothing can go stale
        else:
            snapshot = _snapshot(P)
            if snapshot is None:
                return prepared
            for v in prepared.values():
                if isinstance(v, np.ndarray) and all(v is not w for w in P.values()):
                    v.setflags(write=False)  # shared by every later evaluation
        object.__setattr__(self, "_prepared", (P, snapshot, prepared))
        return prepared


PREPARED_MAX = 4096
"""Parameter values up to which a block keeps its derived arrays (:attr:`CurveBlock.prepared`)."""


def _snapshot(P: dict[str, np.ndarray]) -> tuple | None:
    """Each parameter array with its shape, dtype and bytes (None when too large or not all arrays)."""
    out = []
    size = 0
    for v in P.values():
        if type(v) is not np.ndarray:
            return None
        size += v.size
        out.append((v, v.shape, v.dtype, v.tobytes()))
    return tuple(out) if size <= PREPARED_MAX else None


def _unchanged(P: dict[str, np.ndarray], snapshot: tuple) -> bool:
    """Whether ``P`` holds the same arrays, of the same shapes, dtypes and bytes, as when ``snapshot`` was taken."""
    if len(P) != len(snapshot):
        return False
    for v, (w, shape, dtype, raw) in zip(P.values(), snapshot):
        if v is not w or v.shape != shape or v.dtype != dtype or v.tobytes() != raw:
            return False
    return True


@dataclass(frozen=True)
class LinearConstraint:
    """``lower <= sum(coef * spend[index]) <= upper``.

    ``text`` is a sentence with the rule's numbers (for reports and infeasibility
    messages), ``kind`` its type (budget, spend, share, ratio) and ``source`` the
    name of the scenario rule it came from (a share with min and max gives two rows).
    """

    name: str
    index: np.ndarray
    coef: np.ndarray
    lower: float = -np.inf
    upper: float = np.inf
    text: str = ""
    kind: str = ""
    source: str = ""

    def activity(self, spend: np.ndarray) -> float:
        return float(np.dot(self.coef, np.asarray(spend, float)[self.index]))


@dataclass(frozen=True)
class EfficiencyConstraint:
    """An average-efficiency rule over a group of cells, ``sum_G (weight_i * pool_i * p_i(x_i) - rate * s_i) >= 0``.

    * ``min_roi`` (value of the group >= ``target`` x its spend): ``weight = value``, ``rate = target``;
    * ``max_cost_per_success`` (spend of the group <= ``target`` x its expected successes):
      ``weight = target``, ``rate = 1``.

    For concave curves the left-hand side is concave in spend, so the rule keeps the problem
    convex. Its gradient in cell ``i`` is ``weight_i * p_i'(x_i) - rate``; a cell's marginal
    return ``m_i = value_i * p_i'`` enters as ``(weight_i / value_i) * m_i - rate``.
    Activation costs are not part of the rule (it is about spend on the curves).
    """

    name: str
    index: np.ndarray
    weight: np.ndarray
    rate: float
    kind: str
    target: float
    text: str = ""
    source: str = ""

    def activity(self, problem: "CompiledProblem", spend: np.ndarray) -> float:
        """The rule's left-hand side at ``spend`` (>= 0 when it holds)."""
        s = np.asarray(spend, float)
        p = problem.response(s)[self.index]
        return float(np.sum(self.weight * problem.pool[self.index] * p - self.rate * s[self.index]))

    def gradient_factor(self, problem: "CompiledProblem") -> np.ndarray:
        """``weight_i / value_i`` per cell of ``index``: the factor on the cell's marginal return."""
        v = problem.value[self.index]
        return np.where(v != 0, self.weight / np.where(v != 0, v, 1.0), 0.0)


@dataclass(frozen=True)
class ObjectiveSpec:
    """What is optimized.

    ``net_value``: maximize ``sum(value * successes) - rate * sum(spend)`` with ``rate = 1``;
    ``hurdle``: the same with ``rate`` the hurdle (spend while a unit returns >= rate);
    ``target``: minimize spend (plus activation costs) subject to
    ``sum(weight * pool * p(x)) >= target`` (weight 1 per counted cell for successes, its value for value).
    """

    kind: str = "net_value"
    rate: float = 1.0
    target: float = 0.0
    metric: str = "value"
    weight: np.ndarray | None = None
    text: str = ""


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
    # integer features and objectives (issue 3); the defaults keep the plain problem
    min_active: np.ndarray | None = None
    activation_cost: np.ndarray | None = None
    unit: float | None = None
    locked: np.ndarray | None = None
    objective: ObjectiveSpec = field(default_factory=ObjectiveSpec)
    #: backend settings from the scenario's ``solver`` section (formulation, breakpoints, time_limit)
    options: dict = field(default_factory=dict)
    #: average-efficiency rules (``type: efficiency``): nonlinear but concave rows
    efficiency: tuple[EfficiencyConstraint, ...] = field(default_factory=tuple)
    #: per cell, the name of the lock rule holding it ("" where none); for reports
    lock_names: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.pool)

    def label(self, i: int) -> str:
        return f"({self.segment[i]}, {self.task[i]})"

    def _per_cell(self, method: str, x: np.ndarray) -> np.ndarray:
        out = np.empty(self.n)
        for b in self.blocks:
            out[b.index] = getattr(b.family, method)(x[b.index], b.prepared)
        return out

    def response(self, spend: np.ndarray) -> np.ndarray:
        """Response probability per cell at total spend ``spend``."""
        return self._per_cell("response", np.asarray(spend, float) / self.pool)

    def marginal_return(self, spend: np.ndarray, side: str = "right") -> np.ndarray:
        """value * p'(spend / pool): value returned by the next (``right``) or last (``left``) currency unit."""
        method = "slope" if side == "right" else "slope_left"
        return self.value * self._per_cell(method, np.asarray(spend, float) / self.pool)

    def response_and_slope(self, spend: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`response` and ``p'(spend / pool)`` (:meth:`marginal_return` over ``value``) in one pass."""
        x = np.asarray(spend, float) / self.pool
        resp, slope = np.empty(self.n), np.empty(self.n)
        for b in self.blocks:
            xb, P = x[b.index], b.prepared
            resp[b.index] = b.family.response(xb, P)
            slope[b.index] = b.family.slope(xb, P)
        return resp, slope

    def expected_value(self, spend: np.ndarray) -> np.ndarray:
        return self.pool * self.value * self.response(spend)

    def activation_paid(self, spend: np.ndarray) -> float:
        """Total activation cost of the cells that spend anything."""
        if self.activation_cost is None:
            return 0.0
        return float(self.activation_cost[np.asarray(spend, float) > 0].sum())

    def net_value(self, spend: np.ndarray) -> float:
        """Total expected value minus total spend (and activation costs, if any)."""
        spend = np.asarray(spend, float)
        return float(self.expected_value(spend).sum() - spend.sum()) - self.activation_paid(spend)

    @property
    def integer_features(self) -> list[str]:
        """Names of the features that make the problem a mixed-integer one (empty for a plain problem)."""
        out = []
        if self.unit is not None:
            out.append("budget.unit")
        if self.min_active is not None and np.any(self.min_active > 0):
            out.append("min_active_spend")
        if self.activation_cost is not None and np.any(self.activation_cost > 0):
            out.append("activation_cost")
        return out

    def rows(self) -> tuple[LinearConstraint, ...]:
        """Every linear row: ``budget.total`` (when there is a budget) followed by ``constraints``."""
        if self.budget is None:
            return self.constraints
        total = LinearConstraint(
            name="budget.total", index=np.arange(self.n), coef=np.ones(self.n),
            lower=self.budget if self.use_all else -np.inf, upper=self.budget, kind="budget", source="budget.total",
            text=f"budget.total: total spend {'=' if self.use_all else '<='} "
                 f"{self.budget:,.0f}" if float(self.budget).is_integer() else
                 f"budget.total: total spend {'=' if self.use_all else '<='} {self.budget:,.6g}")
        return (total, *self.constraints)

    @property
    def concave(self) -> np.ndarray:
        """Per-cell flag: is the cell's response curve concave?"""
        out = np.empty(self.n, dtype=bool)
        for b in self.blocks:
            out[b.index] = b.family.is_concave(b.prepared)
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
        # rows keep their meaning over the kept cells (a group loses the cells left out)
        rows = []
        for c in self.constraints:
            m = keep[c.index]
            if m.any():
                rows.append(LinearConstraint(c.name, remap[c.index[m]], c.coef[m], c.lower, c.upper,
                                             c.text, c.kind, c.source))
        eff = []
        for e in self.efficiency:
            m = keep[e.index]
            if m.any():
                eff.append(EfficiencyConstraint(e.name, remap[e.index[m]], e.weight[m], e.rate, e.kind, e.target,
                                                e.text, e.source))
        obj = self.objective
        if obj.weight is not None:
            obj = ObjectiveSpec(obj.kind, obj.rate, obj.target, obj.metric, obj.weight[where], obj.text)

        def cut(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[where]

        return CompiledProblem(
            name=self.name, segment=self.segment[where], task=self.task[where], pool=self.pool[where],
            value=self.value[where], lower=self.lower[where], upper=self.upper[where],
            current_spend=self.current_spend[where], blocks=tuple(blocks), budget=self.budget,
            use_all=self.use_all, currency=self.currency, constraints=tuple(rows),
            min_active=cut(self.min_active), activation_cost=cut(self.activation_cost), unit=self.unit,
            locked=cut(self.locked), objective=obj, options=self.options, efficiency=tuple(eff),
            lock_names=cut(self.lock_names))
