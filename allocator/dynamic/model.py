"""The compiled multi-period problem: numpy arrays, built once from a :class:`DynamicScenario`.

Conventions (every solver, check and table reads them from here)
-----------------------------------------------------------------
* **States** ``k = 0, 1, 2``: prospects ``P``, active ``A``, lapsed ``L``. Each state
  has at most one task, the one that draws its members: acquisition on ``P``,
  retention on ``A``, win-back on ``L``.
* **Period t** (1-based). A member in state ``k`` at the start of period ``t`` receives
  spend ``x`` (per member, in period-t currency) and moves with probability ``p_k(x)``
  to ``A`` (success); otherwise it goes to the failure state ``F(k)`` with probability
  ``keep_k`` and is lost otherwise: ``F(P) = P`` with ``keep = prospects_stay``;
  ``F(A) = L`` with ``keep = 1`` (not retained = lapsed); ``F(L) = L`` with
  ``keep = 1 - unreachable``. A task outside its ``periods`` gets no spend and moves
  members at its base rate ``p(0)``; a state without a task moves nobody (``p = 0``:
  without a retention task every active customer lapses, so give one, flat if need be).
* **New prospects** ``arrivals[t]`` join at the start of period ``t >= 2``.
* **Money**: the margin of state ``k`` is earned by the members in ``k`` at the
  *end* of the period; a task's one-off ``value`` per success in the period of the
  success, scaled by its ``value_curve`` ``v(x)`` when it has one (the value of a
  success then depends on the spend that won it). Spend and money of period ``t`` count with the discount factor
  ``disc_t = (1 + d)^-(t-1)``: period 1 is undiscounted. A terminal value per state
  is a value at the end of period ``T``, in the frame of period ``T``'s money, so it
  counts with ``disc_T``.
* **Budgets** are nominal (undiscounted): ``per_period[t]`` caps the spend of period
  ``t``; a named pot the sum over its ``periods``; ``total`` the sum over all periods.
  With ``use_all`` a row is spent exactly (an equality; its price may be negative).

The objective (customer equity) is the discounted net value
``sum_t disc_t (margins_t + one-off values_t - spend_t) + disc_T terminal . n_{T+1}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..curves import CurveFamily, get_family
from ..value import lifetime_value
from .spec import SOURCE, STATES, DynamicScenario

P, A, L = 0, 1, 2
TASK_OF_STATE = ("acquisition", "retention", "winback")
#: where a failed member goes: prospects stay prospects, active lapse, lapsed stay lapsed
FAIL_DEST = (P, L, L)


@dataclass(frozen=True)
class StateBlock:
    """Segments whose task on one state uses one curve family: indices and packed parameters."""

    family: CurveFamily
    index: np.ndarray
    params: dict[str, np.ndarray]
    concave: np.ndarray
    domain_max: np.ndarray


@dataclass(frozen=True)
class DynamicProblem:
    """Arrays of a multi-period problem; see the module docstring for the conventions.

    Attributes
    ----------
    T : int
        Periods solved explicitly. For an infinite horizon, the periods before the
        policy becomes stationary (at least 1); ``steady_state`` is then True.
    members : ndarray (S, 3)
        Members per state at the start of period 1.
    arrivals : ndarray (T + 1, S)
        New prospects joining at the start of period t (row t; rows 0 and 1 are 0).
    margin, value, keep : ndarray (S, 3)
        Margin per member at the end of a period by state; one-off value of a success of
        the state's task; the probability a failed member stays in its failure state.
    terminal : ndarray (S, 3)
        Terminal value per state (period-T frame); zeros for an infinite horizon.
    has_task : ndarray (S, 3) bool
    allowed : ndarray (T, S, 3) bool
        The state's task can spend in period t (row t - 1).
    lo, hi : ndarray (S, 3)
        Bounds on spend per member (hi includes a curve's ``domain_max``).
    blocks : tuple of tuple of StateBlock
        Per state, the curve blocks of the segments having that task.
    budget_total : float or None
    budget_per_period : ndarray (T,) or None
    steady_allowed : ndarray (S, 3) bool or None
        Infinite horizon: the tasks that run in every period after ``T``.
    steady_arrivals : ndarray (S,) or None
        Infinite horizon: new prospects per period after ``T``.
    """

    name: str
    currency: str | None
    segment: np.ndarray
    T: int
    steady_state: bool
    discount: float
    members: np.ndarray
    arrivals: np.ndarray
    margin: np.ndarray
    value: np.ndarray
    keep: np.ndarray
    terminal: np.ndarray
    has_task: np.ndarray
    allowed: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    blocks: tuple[tuple[StateBlock, ...], ...]
    budget_total: float | None = None
    budget_per_period: np.ndarray | None = None
    steady_allowed: np.ndarray | None = None
    steady_arrivals: np.ndarray | None = None
    #: named pots: (name, periods mask (T,) bool, total)
    pots: tuple[tuple[str, np.ndarray, float], ...] = ()
    #: per state, blocks of the value curves v(x) of the tasks that have one (one-off value = value * v(x))
    value_blocks: tuple[tuple[StateBlock, ...], ...] = ((), (), ())
    #: ``use_all``: the rows of ``budget`` (per period and total) and of each pot are spent exactly
    budget_use_all: bool = False
    pot_use_all: tuple[bool, ...] = ()
    #: rules over per-period spend: (name, w (T,), b): row ``w . spend_per_period <= b``
    rules: tuple[tuple[str, np.ndarray, float], ...] = ()
    #: the objective's price of a currency unit spent: 1 (net value) or the hurdle rate
    spend_weight: float = 1.0
    #: ``partial`` (shares of a state's members at different levels) or ``uniform``
    treatment: str = "partial"
    tolerance: float = 1e-6
    max_iterations: int = 200

    @property
    def S(self) -> int:
        return len(self.segment)

    def disc(self, t: int) -> float:
        """Discount factor of period t (1-based): ``(1 + d)^-(t-1)``."""
        return (1.0 + self.discount) ** -(t - 1)

    def response(self, k: int, x: np.ndarray) -> np.ndarray:
        """p_k(x) per segment (0 where the segment has no task on state k)."""
        out = np.zeros(self.S)
        for b in self.blocks[k]:
            out[b.index] = b.family.response(x[b.index], b.params)
        return out

    def slope(self, k: int, x: np.ndarray, side: str = "right") -> np.ndarray:
        out = np.zeros(self.S)
        for b in self.blocks[k]:
            f = b.family.slope if side == "right" else b.family.slope_left
            out[b.index] = f(x[b.index], b.params)
        return out

    def has_value_curve(self, k: int) -> np.ndarray:
        """Per segment: does state k's task scale its one-off value with a value curve?"""
        out = np.zeros(self.S, bool)
        for b in self.value_blocks[k]:
            out[b.index] = True
        return out

    def success_value(self, k: int, x: np.ndarray) -> np.ndarray:
        """One-off value of a success of state k's task at spend per member x: ``value * v(x)``."""
        v = self.value[:, k].copy()
        for b in self.value_blocks[k]:
            v[b.index] *= b.family.response(x[b.index], b.params)
        return v

    def success_value_slope(self, k: int, x: np.ndarray, side: str = "right") -> np.ndarray:
        """d/dx of :meth:`success_value` (0 without a value curve)."""
        out = np.zeros(self.S)
        for b in self.value_blocks[k]:
            f = b.family.slope if side == "right" else b.family.slope_left
            out[b.index] = self.value[b.index, k] * f(x[b.index], b.params)
        return out

    @property
    def budgets(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The budget rows as ``(W, B)``: row r caps ``W[r] . spend_per_period`` at ``B[r]``."""
        rows, caps = [], []
        if self.budget_per_period is not None:
            rows.append(np.eye(self.T))
            caps.append(self.budget_per_period)
        for _, mask, total in self.pots:
            rows.append(mask.astype(float)[None])
            caps.append(np.array([total]))
        for _, w, b in self.rules:
            rows.append(np.asarray(w, float)[None])
            caps.append(np.array([b]))
        if self.budget_total is not None:
            rows.append(np.ones((1, self.T)))
            caps.append(np.array([self.budget_total]))
        if not rows:
            return None
        return np.vstack(rows), np.concatenate(caps)

    @property
    def budget_equal(self) -> np.ndarray:
        """Per row of :attr:`budgets`: is it an equality (``use_all``)?"""
        flags = [self.budget_use_all] * (self.T if self.budget_per_period is not None else 0)
        flags += [bool(u) for u in (self.pot_use_all or (False,) * len(self.pots))]
        flags += [False] * len(self.rules)
        flags += [self.budget_use_all] if self.budget_total is not None else []
        return np.array(flags, bool)

    @property
    def budget_names(self) -> list[str]:
        """Names of the rows of :attr:`budgets`, in order (the total last)."""
        names = [f"budget.per_period[{t}]" for t in range(1, self.T + 1)] if self.budget_per_period is not None \
            else []
        names += [f"budgets.{name}" for name, _, _ in self.pots]
        names += [f"constraints.{name}" for name, _, _ in self.rules]
        return names + (["budget.total"] if self.budget_total is not None else [])


def _value(v) -> float:
    if isinstance(v, (int, float)):
        return float(v)
    c = v.clv
    return lifetime_value(c.margin, c.retention, c.discount, math.inf if c.horizon is None else c.horizon, c.timing)


def _rule_rows(sc: DynamicScenario, T: int) -> tuple[tuple[str, np.ndarray, float], ...]:
    """Rows ``w . spend_per_period <= b`` of the scenario's period rules (a floor is a negated row).

    ``spend``: spend of the selected periods between ``min`` and ``max``; ``share``: the selected
    periods' share of the total spend between ``min`` and ``max`` (``sel - max * all <= 0``).
    """
    out = []
    for c in sc.constraints:
        sel = np.isin(np.arange(1, T + 1), c.select.periods if c.select.periods else np.arange(1, T + 1))
        sel = sel.astype(float)
        if c.type == "spend":
            if c.max is not None:
                out.append((f"{c.name}.max", sel, float(c.max)))
            if c.min is not None:
                out.append((f"{c.name}.min", -sel, -float(c.min)))
        else:
            if c.max is not None:
                out.append((f"{c.name}.max", sel - float(c.max), 0.0))
            if c.min is not None:
                out.append((f"{c.name}.min", float(c.min) - sel, 0.0))
    return tuple(out)


def steady_start(sc: DynamicScenario) -> int:
    """Periods before an infinite horizon turns stationary: the last period any task lists (at least 1)."""
    last = [max(t.periods) for s in sc.segments for t in s.tasks.values() if t.periods]
    return max(last, default=1)


def compile_dynamic(sc: DynamicScenario) -> DynamicProblem:
    """Turn a validated multi-period scenario into arrays."""
    S = len(sc.segments)
    T = steady_start(sc) if sc.infinite else int(sc.periods)
    members = np.zeros((S, 3))
    margin = np.zeros((S, 3))
    value = np.zeros((S, 3))
    terminal = np.zeros((S, 3))
    keep = np.ones((S, 3))
    has = np.zeros((S, 3), bool)
    allowed = np.zeros((T, S, 3), bool)
    steady_allowed = np.zeros((S, 3), bool)
    lo = np.zeros((S, 3))
    hi = np.full((S, 3), np.inf)
    arrivals = np.zeros((T + 1, S))
    raws: list[dict[str, list]] = [dict() for _ in range(3)]
    vraws: list[dict[str, list]] = [dict() for _ in range(3)]
    for i, seg in enumerate(sc.segments):
        members[i] = [getattr(seg.members, s) for s in STATES]
        # a plain number is the margin of an active customer
        margin[i] = ([0.0, float(seg.margin), 0.0] if isinstance(seg.margin, (int, float))
                     else [getattr(seg.margin, s) for s in STATES])
        if seg.terminal is not None:
            terminal[i] = [_value(getattr(seg.terminal, s)) for s in STATES]
        keep[i, P] = seg.prospects_stay
        keep[i, L] = 1.0 - seg.unreachable
        if isinstance(seg.arrivals, list):
            arrivals[2:T + 1, i] = seg.arrivals
        else:
            arrivals[2:, i] = seg.arrivals
        for task, spec in seg.tasks.items():
            k = STATES.index(SOURCE[task])
            has[i, k] = True
            value[i, k] = _value(spec.value)
            lo[i, k] = spec.min_spend_per_member
            if spec.max_spend_per_member is not None:
                hi[i, k] = spec.max_spend_per_member
            if spec.periods is None:
                allowed[:, i, k] = True
                steady_allowed[i, k] = True
            else:
                allowed[[p - 1 for p in spec.periods if p <= T], i, k] = True
            fam = spec.curve["family"]
            raws[k].setdefault(fam, []).append((i, {n: v for n, v in spec.curve.items() if n != "family"}))
            if spec.value_curve is not None:
                vraws[k].setdefault(spec.value_curve["family"], []).append(
                    (i, {n: v for n, v in spec.value_curve.items() if n != "family"}))
    blocks = []
    for k in range(3):
        bk = []
        for fam_name, items in raws[k].items():
            fam = get_family(fam_name)
            idx = np.array([i for i, _ in items], dtype=int)
            params = fam.pack([r for _, r in items])
            dmax = fam.domain_max(params)
            hi[idx, k] = np.minimum(hi[idx, k], np.maximum(dmax, lo[idx, k]))
            bk.append(StateBlock(fam, idx, params, fam.is_concave(params), dmax))
        blocks.append(tuple(bk))
    value_blocks = []
    for k in range(3):
        vb = []
        for fam_name, items in vraws[k].items():
            fam = get_family(fam_name)
            idx = np.array([i for i, _ in items], dtype=int)
            params = fam.pack([r for _, r in items])
            vb.append(StateBlock(fam, idx, params, fam.is_concave(params), fam.domain_max(params)))
        value_blocks.append(tuple(vb))
    budget = sc.budget
    return DynamicProblem(
        name=sc.name, currency=sc.currency, segment=np.array([s.id for s in sc.segments], dtype=object),
        T=T, steady_state=sc.infinite, discount=float(sc.discount), members=members, arrivals=arrivals,
        margin=margin, value=value, keep=keep, terminal=terminal, has_task=has, allowed=allowed, lo=lo, hi=hi,
        blocks=tuple(blocks),
        budget_total=None if budget is None else budget.total,
        budget_per_period=None if budget is None or budget.per_period is None
        else np.asarray(budget.per_period, float),
        steady_allowed=steady_allowed if sc.infinite else None,
        steady_arrivals=np.array([float(s.arrivals) if not isinstance(s.arrivals, list) else 0.0
                                  for s in sc.segments]) if sc.infinite else None,
        tolerance=sc.solver.tolerance, max_iterations=sc.solver.max_iterations,
        value_blocks=tuple(value_blocks),
        pots=tuple((pot.name, np.isin(np.arange(1, T + 1), pot.periods), float(pot.total)) for pot in sc.budgets),
        budget_use_all=bool(budget is not None and budget.use_all),
        rules=_rule_rows(sc, T), treatment=sc.treatment,
        spend_weight=float(sc.objective.rate) if sc.objective is not None and sc.objective.type == "hurdle" else 1.0,
        pot_use_all=tuple(bool(pot.use_all) for pot in sc.budgets))
