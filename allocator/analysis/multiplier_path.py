"""The multiplier path: the optimal plan of a concave, separable problem as a function of its budget.

For a concave, separable problem with one budget, the optimal plan at budget ``B`` is
``s_i(lam) = clip(rule_i(lam), lower_i, upper_i)`` where ``lam`` is the common marginal return and
``S(lam) = sum_i s_i(lam) = B`` (``lam = 1`` once the budget no longer binds). ``S`` changes form only
at *events*: the multiplier at which a cell leaves its lower bound (its marginal return there,
``value * p'(lower+)``: it "switches on"), reaches its upper bound (``value * p'(upper-)``), or, for a
tabulated curve, moves to its next table point. Between two events every cell keeps its regime, and
for the closed-form families the interior spend is affine in a transform of ``lam``:

* exponential: ``s = a + b * (-ln lam)``;
* hill with shape 1: ``s = a + b * lam^(-1/2)``;
* piecewise (tabulated): constant between events, jumping at them.

So the whole path is a handful of running sums over events sorted by ``lam``: sorting the events
once (O(n log n)) gives ``S`` at every event exactly, each budget falls between two events by
binary search, and inside that interval ``S(lam) = B`` is solved in closed form (or with a 1-D root
finder when several transforms or other concave families are mixed). Moving from one budget to the
next reuses everything computed for the previous one: no re-solve. Cells of other concave families
are handled through their ``spend_rule`` (evaluated only where needed).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pandas as pd
from scipy.optimize import brentq

from ..errors import NumericalError
from ..problem import CompiledProblem

# transforms g(lam), increasing as lam falls
_G: dict[str, Callable[[float], float]] = {"log": lambda lam: -math.log(lam), "rsqrt": lambda lam: lam ** -0.5}
_G_INV: dict[str, Callable[[float], float]] = {"log": lambda g: math.exp(-g), "rsqrt": lambda g: g ** -2.0}


class MultiplierPath:
    """The optimal plan of a concave problem as a function of the budget multiplier (see module doc)."""

    def __init__(self, problem: CompiledProblem):
        self.p = problem
        n = problem.n
        lo, hi = problem.lower, problem.upper
        self.lo, self.hi = lo, hi
        self.rules = [(b.index, b.family.spend_rule(b.params, problem.value[b.index], problem.pool[b.index]))
                      for b in problem.blocks]
        # per cell: marginal returns at the bounds (the switch-on and cap multipliers)
        self.lam_on = problem.marginal_return(lo, "right")
        self.lam_cap = np.where(np.isfinite(hi) & (hi > lo), problem.marginal_return(np.where(np.isfinite(hi), hi, lo),
                                                                                   "left"), 0.0)
        self.lam_cap = np.minimum(self.lam_cap, self.lam_on)
        kind = np.full(n, "", dtype=object)
        a = np.zeros(n)
        b = np.zeros(n)
        generic = np.zeros(n, dtype=bool)
        step_cells, step_lam, step_delta = [], [], []
        for blk in problem.blocks:
            idx, P, fam = blk.index, blk.params, blk.family
            v, pool = problem.value[idx], problem.pool[idx]
            if fam.name == "exponential":
                amp = v * (P["ceiling"] - P["floor"]) * P["rate"]
                live = (amp > 0) & (P["rate"] > 0)
                with np.errstate(divide="ignore", invalid="ignore"):
                    b[idx] = np.where(live, pool / P["rate"], 0.0)
                    a[idx] = np.where(live, pool * np.log(np.where(live, amp, 1.0)) / P["rate"], 0.0)
                kind[idx] = np.where(live, "log", "")
            elif fam.name == "hill" and np.all(P["shape"] == 1.0):
                h = P["half_saturation"]
                root = np.sqrt(v * (P["ceiling"] - P["floor"]) * h)
                live = root > 0
                a[idx] = np.where(live, -pool * h, 0.0)
                b[idx] = np.where(live, pool * root, 0.0)
                kind[idx] = np.where(live, "rsqrt", "")
            elif fam.name == "piecewise":
                X = np.where(np.isfinite(P["x"]), P["x"], np.nan)
                ends = np.concatenate([X[:, 1:], np.full((len(X), 1), np.nan)], axis=1)
                marg = fam._slopes(P) * v[:, None]  # the same expression as the family's spend rule
                prev = np.clip(0.0, lo[idx], hi[idx])
                # concave table: segments open in order as lam falls below their marginal return
                for j in range(ends.shape[1]):
                    ok = np.isfinite(ends[:, j]) & (marg[:, j] > 0)
                    nxt = np.where(ok, np.clip(pool * np.nan_to_num(ends[:, j]), lo[idx], hi[idx]), prev)
                    delta = nxt - prev
                    jump = ok & (delta > 0)
                    step_cells.append(idx[jump])
                    step_lam.append(marg[jump, j])
                    step_delta.append(delta[jump])
                    prev = nxt
            else:
                generic[idx] = True
        self.kind, self.a, self.b, self.generic = kind, a, b, generic
        self.kinds = sorted({k for k in kind if k})
        self.generic_idx = np.flatnonzero(generic)
        self.generic_rules = [(np.flatnonzero(generic[blk.index]), blk.index, rule)
                              for blk, (_, rule) in zip(problem.blocks, self.rules) if generic[blk.index].any()]

        # ---- events: (lam, cell, type); sorted by lam descending
        affine = kind != ""
        on_mask = affine & (self.lam_on > 0) & (hi > lo)
        cap_mask = on_mask & np.isfinite(hi)
        ev_lam = [self.lam_on[on_mask], self.lam_cap[cap_mask]]
        ev_cell = [np.flatnonzero(on_mask), np.flatnonzero(cap_mask)]
        ev_type = [np.zeros(on_mask.sum(), int), np.ones(cap_mask.sum(), int)]
        if step_cells:
            sc = np.concatenate(step_cells)
            ev_lam.append(np.concatenate(step_lam))
            ev_cell.append(sc)
            ev_type.append(np.full(len(sc), 2))
        # a generic cell whose first unit has an infinite marginal return (hill shape < 1) is on from
        # the start: no event
        gen_on = generic & (hi > lo) & (self.lam_on > 0) & np.isfinite(self.lam_on)
        gen_cap = gen_on & np.isfinite(hi)
        ev_lam += [self.lam_on[gen_on], self.lam_cap[gen_cap]]
        ev_cell += [np.flatnonzero(gen_on), np.flatnonzero(gen_cap)]
        ev_type += [np.full(gen_on.sum(), 3), np.full(gen_cap.sum(), 4)]
        lam_e = np.concatenate(ev_lam)
        cell_e = np.concatenate(ev_cell)
        type_e = np.concatenate(ev_type)
        delta_e = np.zeros(len(lam_e))
        if step_cells:
            k0 = on_mask.sum() + cap_mask.sum()
            delta_e[k0:k0 + len(sc)] = np.concatenate(step_delta)
        order = np.argsort(-lam_e, kind="stable")
        self.ev_lam, self.ev_cell, self.ev_type, self.ev_delta = lam_e[order], cell_e[order], type_e[order], delta_e[order]

        # ---- running sums after each event: fixed part F, and per transform A, Bk (interior a, b)
        m = len(self.ev_lam)
        t, c = self.ev_type, self.ev_cell
        dF = np.zeros(m)
        dF[t == 0] = -lo[c[t == 0]]
        dF[t == 1] = hi[c[t == 1]]
        dF[t == 2] = self.ev_delta[t == 2]
        self.F0 = float(lo[~generic].sum())
        self.F = self.F0 + np.cumsum(dF)
        self.A, self.Bk = {}, {}
        for kd in self.kinds:
            sel = kind[c] == kd
            dA = np.where(sel & (t == 0), a[c], 0.0) - np.where(sel & (t == 1), a[c], 0.0)
            dB = np.where(sel & (t == 0), b[c], 0.0) - np.where(sel & (t == 1), b[c], 0.0)
            self.A[kd], self.Bk[kd] = np.cumsum(dA), np.cumsum(dB)
        # group events with the same lam: index of the last event of each group
        if m:
            last = np.r_[self.ev_lam[1:] != self.ev_lam[:-1], True]
            self.group_end = np.flatnonzero(last)
        else:
            self.group_end = np.array([], dtype=int)
        self.group_lam = self.ev_lam[self.group_end]
        starts = np.r_[0, self.group_end[:-1] + 1] if m else np.array([], dtype=int)
        self.group_jump = np.add.reduceat(self.ev_delta, starts) if m else np.array([])
        self._s_after: dict[int, float] = {}
        self.S_after: np.ndarray | None = None
        if not len(self.generic_idx):
            # closed form everywhere: total spend just below every event multiplier, all at once
            ge, gl = self.group_end, self.group_lam
            tot = self.F[ge].copy()
            for kd in self.kinds:
                with np.errstate(divide="ignore", over="ignore"):
                    gv = -np.log(gl) if kd == "log" else gl ** -0.5
                tot += self.A[kd][ge] + np.where(self.Bk[kd][ge] != 0, self.Bk[kd][ge] * gv, 0.0)
            self.S_after = tot
        self._s1: np.ndarray | None = None

    # ---- evaluation
    def generic_sum(self, lam: float) -> float:
        tot = 0.0
        for local, idx, rule in self.generic_rules:
            s = rule(lam)[local]
            cells = idx[local]
            tot += float(np.clip(s, self.lo[cells], self.hi[cells]).sum())
        return tot

    def total_in_state(self, j: int, lam: float) -> float:
        """Total spend at ``lam`` with the regimes after event ``j`` (``-1``: before any event)."""
        tot = self.F0 if j < 0 else float(self.F[j])
        if j >= 0:
            for kd in self.kinds:
                tot += float(self.A[kd][j]) + float(self.Bk[kd][j]) * _G[kd](lam)
        if len(self.generic_idx):
            tot += self.generic_sum(lam)
        return tot

    def s_after_group(self, g: int) -> float:
        """Total spend just below the multiplier of event group ``g`` (after its jumps)."""
        if self.S_after is not None:
            return float(self.S_after[g])
        if g not in self._s_after:
            self._s_after[g] = self.total_in_state(int(self.group_end[g]), float(self.group_lam[g]))
        return self._s_after[g]

    def s_before_group(self, g: int) -> float:
        """Total spend just above the multiplier of group ``g`` (before its table jumps)."""
        return self.s_after_group(g) - float(self.group_jump[g])

    def spend_at(self, lam: float) -> np.ndarray:
        """Optimal spend per cell at multiplier ``lam`` (tabulated cells before any jump at exactly ``lam``)."""
        s = np.empty(self.p.n)
        for idx, rule in self.rules:
            s[idx] = rule(lam)
        return np.clip(s, self.lo, self.hi)

    def multiplier_for(self, budget: float, start: int = 0) -> tuple[float, float | None, int]:
        """``(lam, theta, g)``: the multiplier spending ``budget``; ``theta`` in (0, 1] when the budget
        falls inside table jumps at ``lam`` (share of those jumps taken), else ``None``; ``g`` is the
        event group reached (a warm start for the next, larger budget)."""
        G = len(self.group_end)
        # first group whose after-total reaches the budget: gallop from the previous budget's group
        # (budgets come in increasing order), then bisect
        lo_g = hi_g = start
        step = 1
        while hi_g < G and self.s_after_group(hi_g) < budget:
            lo_g = hi_g + 1
            hi_g += step
            step *= 2
        hi_g = min(hi_g, G)
        while lo_g < hi_g:
            mid = (lo_g + hi_g) // 2
            if self.s_after_group(mid) < budget:
                lo_g = mid + 1
            else:
                hi_g = mid
        g = lo_g
        if g < G:
            before = self.s_before_group(g)
            if before < budget:  # inside the jumps at this multiplier
                jump = self.s_after_group(g) - before
                return float(self.group_lam[g]), (budget - before) / jump, g
            lam_lo = float(self.group_lam[g])
        else:
            lam_lo = 0.0
        state = int(self.group_end[g - 1]) if g > 0 else -1
        lam_hi = float(self.group_lam[g - 1]) if g > 0 else math.inf
        return self._root(state, budget, lam_lo, lam_hi), None, g

    def _root(self, state: int, budget: float, lam_lo: float, lam_hi: float) -> float:
        if state >= 0 and not len(self.generic_idx):
            live = [kd for kd in self.kinds if self.Bk[kd][state] > 0]
            if len(live) == 1:
                kd = live[0]
                rest = float(self.F[state]) + sum(float(self.A[k][state]) for k in self.kinds)
                return _G_INV[kd]((budget - rest) / float(self.Bk[kd][state]))
            if not live:
                raise NumericalError(f"no cell can absorb a budget of {budget:,.6g} (every cell is at a cap "
                                     "or on a flat tail)")
        f = lambda ll: self.total_in_state(state, math.exp(ll)) - budget  # noqa: E731 - local root function
        top = math.log(lam_hi) if math.isfinite(lam_hi) else None
        bot = math.log(lam_lo) if lam_lo > 0 else None
        if top is None:
            top = (bot if bot is not None else 0.0) + 1.0
            while f(top) > 0:
                top += 2.0 * (1 + abs(top))
                if top > 700:
                    raise NumericalError("could not bracket the budget multiplier")
        if bot is None:
            bot = top - 1.0
            while f(bot) < 0:
                bot -= 2.0 * (1 + abs(bot))
                if bot < -700:
                    raise NumericalError(f"no plan spends {budget:,.6g}: the cells absorb less at any multiplier")
        return math.exp(brentq(f, bot, top, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500))

    def plan_for(self, budget: float, use_all: bool, start: int = 0) -> tuple[np.ndarray, float, bool, int]:
        """``(spend, lam, binds, g)`` of the optimum at ``budget``."""
        if not use_all:
            if self._s1 is None:
                self._s1 = self.spend_at(1.0)
            if float(self._s1.sum()) <= budget:
                return self._s1.copy(), 1.0, False, start
        lam, theta, g = self.multiplier_for(budget, start)
        s = self.spend_at(lam)
        if theta is not None:
            j = int(self.group_end[g])
            k0 = int(self.group_end[g - 1]) + 1 if g > 0 else 0
            np.add.at(s, self.ev_cell[k0:j + 1], theta * self.ev_delta[k0:j + 1])
        return s, lam, True, g


EVENT_NAMES = {0: "switches_on", 1: "reaches_max", 2: "next_table_point", 3: "switches_on", 4: "reaches_max"}


def path_events(path: MultiplierPath, problem: CompiledProblem, b_lo: float, b_hi: float) -> pd.DataFrame:
    """Events whose budget lies in ``[b_lo, b_hi]`` (where the budget binds)."""
    cols = ["budget", "budget_to", "marginal_return", "segment", "task", "event"]
    G = len(path.group_end)
    if G == 0:
        return pd.DataFrame(columns=cols)
    lam_stop = 0.0 if problem.use_all else 1.0
    live = np.flatnonzero(path.group_lam > lam_stop)
    if path.S_after is not None:
        after = path.S_after[live]
    else:
        # only groups that can be in range are evaluated (S is monotone in the group number)
        after = np.full(len(live), np.nan)
        for j, g in enumerate(live):
            after[j] = path.s_after_group(int(g))
            if after[j] - path.group_jump[g] > b_hi:
                break
    before = after - path.group_jump[live]
    keep = live[(after >= b_lo) & (before <= b_hi)]
    if not len(keep):
        return pd.DataFrame(columns=cols)
    # expand groups to their events
    starts = np.r_[0, path.group_end[:-1] + 1]
    counts = path.group_end[keep] - starts[keep] + 1
    ev = np.repeat(starts[keep], counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    grp = np.repeat(keep, counts)
    s_after = path.S_after[grp] if path.S_after is not None else np.array([path.s_after_group(int(g)) for g in grp])
    cells = path.ev_cell[ev]
    names = np.array([EVENT_NAMES[k] for k in range(5)], dtype=object)
    return pd.DataFrame({"budget": s_after - path.group_jump[grp], "budget_to": s_after,
                         "marginal_return": path.group_lam[grp], "segment": problem.segment[cells],
                         "task": problem.task[cells], "event": names[path.ev_type[ev]]}, columns=cols)
