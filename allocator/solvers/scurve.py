"""Envelope solver: one budget, any monotone curves (S-shaped included), certified by a Lagrangian bound.

Each cell's objective ``f(x) = value * p(x)`` per member on ``[l, u]`` (``l = lower / pool``,
``u = upper / pool``) is replaced by its concave envelope: the chord from ``l`` to the tangent
point ``t`` (where ``f'(t) = (f(t) - f(l)) / (t - l)``, past the inflection) and the curve itself
on ``[t, u]``; when no tangent point lies below ``u`` the envelope is the chord from ``l`` to ``u``.
Maximizing ``env(x) - lam x`` is maximizing ``f(x) - lam x`` (a linear function peaks on the
envelope at a point where it touches the curve), so for every multiplier ``lam`` the rule

* chord slope ``m < lam``: stay at ``l``;  ``m > lam``: spend where ``f'(x) = lam`` on ``[t, u]``

gives each cell's exact maximizer, and ``L(lam) = sum_i max_x [pool f - lam s] + (lam - 1) B``
is a valid upper bound on the optimum (Lagrangian duality; Everett 1963). The multiplier is
found by bisection on ``log lam``; only cells whose chord slope equals ``lam`` can sit between
their two choices, and the repair decides them exactly: the few such "jump" cells (plus, on
small problems, the cells whose chord slopes are nearest ``lam``) are enumerated on/off, and for
each pattern the remaining concave problem (every on cell on its concave part ``[t, u]``) is
solved by the same multiplier search. The best pattern is the plan; every cell sits on its true
curve. The gap to the bound is the certificate.

With ``solver.partial_targeting`` (in ``problem.options``) a jump cell may treat a share of its
members at the tangent spend and the rest at ``l``: the envelope plan is then feasible and
exactly optimal; ``info["treated_share"]`` reports the share per such cell.

Hill curves use closed forms (inflection; tangent from 0 at ``z^k = k - 1``) and a monotone
Newton iteration in ``log x`` on the concave part; other families a vectorized bisection.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..errors import NumericalError
from ..problem import CompiledProblem
from .base import SolveResult, Solver, check_bounds_feasible

XCAP = 1e12


class _Cells:
    """The per-member envelope data of one curve block (cells ``index``)."""

    def __init__(self, problem: CompiledProblem, block):
        self.fam, self.P, self.index = block.family, block.params, block.index
        i = block.index
        self.pool, self.value = problem.pool[i], problem.value[i]
        self.l = problem.lower[i] / self.pool
        self.u = np.minimum(problem.upper[i] / self.pool, XCAP)
        self.hill = self.fam.name == "hill"
        self.f_l = self.f(self.l)
        self.t, self.m = self._tangent()
        # a concave cell: its envelope is the curve itself (t = l, m = +inf: never "off" by the chord)
        self.conc = self.fam.is_concave(self.P) | (self.t <= self.l)
        self.m = np.where(self.conc, np.inf, self.m)
        self.t = np.where(self.conc, self.l, self.t)
        self.x_prev = None
        self.newton_iterations = 0

    def f(self, x):
        return self.value * self.fam.response(x, self.P)

    def df(self, x):
        return self.value * self.fam.slope(x, self.P)

    # ---- envelope
    def _tangent(self):
        """Tangent point ``t`` on ``[l, u]`` (``u`` when none) and the chord slope ``m`` from ``l``."""
        n = len(self.l)
        l, u = self.l, self.u
        if self.hill:
            k, h = self.P["shape"], self.P["half_saturation"]
            infl = self.fam.inflection(self.P)
            z0 = np.where(k > 1, np.power(np.maximum(k - 1.0, 0.0), 1.0 / np.maximum(k, 1e-300)), 0.0) * h
            need = (l > 0) & (k > 1)
        else:
            infl = self._argmax_slope()
            z0 = np.maximum(infl, l)
            need = np.ones(n, bool)
        t = np.maximum(z0, infl)
        if need.any():
            j = np.flatnonzero(need)
            t[j] = self._tangent_search(j, np.maximum(infl[j], l[j]))
        t = np.maximum(t, l)
        beyond = t >= u
        t = np.where(beyond, u, t)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.where(t > l, (self.f(t) - self.f_l) / (t - l), np.inf)
        return t, m

    def _sub(self, j):
        return {k: v[j] for k, v in self.P.items()}

    def _tangent_search(self, j, lo):
        """Root of ``g(t) = f'(t)(t - l) - (f(t) - f(l))`` on ``[lo, inf)`` (g falls past the inflection)."""
        P, l, v = self._sub(j), self.l[j], self.value[j]
        fl = self.f_l[j]

        def g(t):
            return v * self.fam.slope(t, P) * (t - l) - (v * self.fam.response(t, P) - fl)

        hi = np.maximum(2 * lo, 1e-9)
        for _ in range(80):
            pos = g(hi) > 0
            if not pos.any():
                break
            hi = np.where(pos, hi * 2, hi)
        lo = lo.copy()
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            pos = g(mid) > 0
            lo, hi = np.where(pos, mid, lo), np.where(pos, hi, mid)
        return hi

    def _argmax_slope(self):
        """Inflection of a single-peaked slope on ``[l, u]``: golden-section search in ``log x``."""
        a = np.log(np.maximum(self.l, 1e-12))
        b = np.log(np.maximum(np.minimum(self.u, XCAP), 1e-12))
        r = (math.sqrt(5) - 1) / 2
        for _ in range(90):
            c, d = b - r * (b - a), a + r * (b - a)
            left = self.df(np.exp(c)) >= self.df(np.exp(d))
            a, b = np.where(left, a, c), np.where(left, d, b)
        x = np.exp(0.5 * (a + b))
        return np.where(self.df(self.l) >= self.df(x), self.l, x)

    # ---- spend rule
    def concave_inverse(self, lam: float, lo: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """``x`` in ``[lo, u]`` with ``f'(x) = lam`` on the concave part (clipped), for cells ``rows``."""
        if rows is None:
            rows = np.arange(len(lo))
        lo, u = lo[rows], self.u[rows]
        if self.hill:
            x = self._hill_newton(lam, lo, rows)
        else:
            x = self._bisect(lam, lo, rows)
        return np.minimum(np.maximum(x, lo), u)

    def _hill_newton(self, lam, lo, rows):
        # phi(w) = log f'(h e^w): concave in w on the concave side; Newton from the right of the
        # root converges monotonically. Warm-started from the previous trial's x; each iteration
        # works only on the cells not yet converged.
        P = self.P
        k, h = P["shape"][rows], P["half_saturation"][rows]
        A = self.value[rows] * (P["ceiling"][rows] - P["floor"][rows])
        c = math.log(lam)
        if self.x_prev is None:
            self.x_prev = np.maximum(self.t, 1e-300)
        w = np.log(np.maximum(np.maximum(self.x_prev[rows], lo), 1e-300) / h)
        logAk = np.log(np.maximum(A * k / h, 1e-300))
        live = np.arange(len(rows))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for _ in range(80):
                kk, ww = k[live], w[live]
                zk = np.exp(np.minimum(kk * ww, 700))
                phi = logAk[live] + (kk - 1) * ww - 2 * np.log1p(zk)
                dphi = (kk - 1) - 2 * kk * zk / (1 + zk)
                # past the tangent point phi is decreasing and concave: from the left Newton lands right of
                # the root, from the right it converges monotonically (dphi >= 0 cannot occur there;
                # a unit step right guards round-off)
                step = np.where(dphi < 0, (c - phi) / np.where(dphi < 0, dphi, -1.0), 1.0)
                step = np.where(np.isfinite(step), step, 0.0)
                w[live] = ww + step
                self.newton_iterations += 1
                live = live[np.abs(step) >= 1e-12]
                if len(live) == 0:
                    break
        x = h * np.exp(w)
        x = np.where(A <= 0, lo, x)
        self.x_prev[rows] = x
        return x

    def _bisect(self, lam, lo, rows):
        P = self._sub(rows)
        v, u = self.value[rows], self.u[rows]

        def df(x):
            return v * self.fam.slope(x, P)

        a = np.log(np.maximum(lo, 1e-300))
        b = np.log(np.maximum(u, 1e-300))
        for _ in range(90):
            mid = 0.5 * (a + b)
            above = df(np.exp(mid)) >= lam
            a, b = np.where(above, mid, a), np.where(above, b, mid)
        x = np.exp(0.5 * (a + b))
        x = np.where(df(lo) <= lam, lo, x)
        return np.where(df(u) >= lam, u, x)

    def spend(self, lam: float, mode: np.ndarray | None = None) -> np.ndarray:
        """Spend per member maximizing ``f(x) - lam x``: 0 natural, 1 forced on (``[t, u]``), 2 forced off."""
        on = self.m > lam if mode is None else np.where(mode == 0, self.m > lam, mode == 1)
        rows = np.flatnonzero(on)
        x = self.l.copy()
        if len(rows):
            x[rows] = self.concave_inverse(lam, self.t, rows)
        return x


class EnvelopeSolver(Solver):
    name = "envelope"
    description = ("concave envelopes + multiplier bisection + exact repair of the jump cells; any monotone "
                   "curves, one budget; certified by the Lagrangian bound")
    handles_nonconcave = True
    objectives = ("net_value",)

    def can_solve(self, problem: CompiledProblem) -> str | None:
        why = super().can_solve(problem)
        if why is not None:
            return why
        for b in problem.blocks:
            if b.family.name == "piecewise" and not np.all(b.family.is_concave(b.params)):
                return "solver 'envelope' does not handle non-concave piecewise tables yet; use solver 'global'"
        return None

    def solve(self, problem: CompiledProblem, tolerance: float | None = None) -> SolveResult:
        check_bounds_feasible(problem)
        return _Run(problem, tolerance).solve()


class _Run:
    def __init__(self, problem: CompiledProblem, tolerance: float | None):
        self.p = problem
        self.tol = 1e-4 if tolerance is None else tolerance
        self.cells = [_Cells(problem, b) for b in problem.blocks]
        self.passes = 0

    def spend(self, lam: float, modes=None) -> np.ndarray:
        self.passes += 1
        s = np.empty(self.p.n)
        for j, c in enumerate(self.cells):
            s[c.index] = c.pool * c.spend(lam, None if modes is None else modes[j])
        return s

    def bound(self, lam: float) -> float:
        """Lagrangian dual ``L(lam)``: valid for every ``lam >= 1``."""
        s = self.spend(lam)
        B = self.p.budget if self.p.budget is not None else 0.0
        return float(self.p.expected_value(s).sum() - lam * s.sum() + (lam - 1.0) * B), s

    def search(self, B: float, modes=None, near: float | None = None) -> tuple[float, float, np.ndarray, np.ndarray]:
        """Bracket ``[a, b]`` of ``log lam`` with ``S(a) >= B >= S(b)`` narrowed to round-off.

        ``near`` (a ``log lam`` close to the answer) starts the bracket there when it holds.
        """
        a, step = 0.0, 0.5
        if near is not None and near - 0.01 > 0 and not self.p.use_all:
            sa = self.spend(math.exp(near - 0.01), modes)
            if sa.sum() > B:
                a, step = near - 0.01, 0.02
        if a == 0.0:
            sa = self.spend(1.0, modes)
            if sa.sum() <= B and not (self.p.use_all and sa.sum() < B):
                return a, a, sa, sa
        if sa.sum() < B:
            # use_all below the profit optimum: an equality budget, lam < 1
            b, sb, a = 0.0, sa, -0.5
            sa = self.spend(math.exp(a), modes)
            while sa.sum() < B:
                b, sb, a = a, sa, 2 * a
                if a < -700:
                    raise NumericalError("use_all: the curves cannot absorb the budget at any marginal return > 0")
                sa = self.spend(math.exp(a), modes)
        else:
            b = a + step
            sb = self.spend(math.exp(b), modes)
            while sb.sum() > B:
                a, sa = b, sb
                b += max(step, b - a) * 2
                if b > 700:
                    raise NumericalError("could not bracket the budget multiplier (marginal returns above e^700)")
                sb = self.spend(math.exp(b), modes)
        # regula falsi with the Illinois modification on log lam (bisection every 8th step): S jumps
        # where a cell's chord slope is crossed, so the bracket, not S, decides the end
        Sa, Sb = float(sa.sum()), float(sb.sum())
        fa, fb, side = Sa - B, Sb - B, 0
        for it in range(1, 300):
            if b - a <= 1e-13 * max(1.0, abs(a)) or Sa - Sb <= 1e-13 * max(B, 1.0):
                break
            c = b - fb * (b - a) / (fb - fa) if fb != fa else 0.5 * (a + b)
            if not (a < c < b) or it % 8 == 0:
                c = 0.5 * (a + b)
            sc = self.spend(math.exp(c), modes)
            Sc = float(sc.sum())
            if Sc > B:
                a, sa, Sa, fa = c, sc, Sc, Sc - B
                if side == -1:
                    fb *= 0.5
                side = -1
            else:
                b, sb, Sb, fb = c, sc, Sc, Sc - B
                if side == 1:
                    fa *= 0.5
                side = 1
        return a, b, sa, sb

    def solve(self) -> SolveResult:
        p = self.p
        B = p.budget
        s1 = self.spend(1.0)
        if B is None or (not p.use_all and s1.sum() <= B):
            ub, _ = self.bound(1.0) if B is not None else (float(p.expected_value(s1).sum() - s1.sum()), None)
            primal = p.net_value(s1)
            return self._result(s1, 1.0, ub, primal, {"budget_binds": False})
        a, b, sa, sb = self.search(B)
        lam = math.exp(b)
        ub = min(self.bound(math.exp(a))[0], self.bound(lam)[0])
        if self.p.options.get("partial_targeting"):
            return self._partial(a, b, sa, sb, ub)
        spend, pattern = self._repair(B, a, b, sa, sb, ub)
        primal = p.net_value(spend)
        return self._result(spend, lam, ub, primal, {"budget_binds": True, "repair_patterns": pattern})

    def _modes(self, on: np.ndarray) -> list[np.ndarray]:
        return [np.where(on[c.index], 1, 2) for c in self.cells]

    def _repair(self, B, a, b, sa, sb, ub):
        """Decide the cells between their two choices exactly: enumerate them on/off, re-solve the rest."""
        p = self.p
        t = np.empty(p.n)
        m = np.empty(p.n)
        lo = p.lower
        for c in self.cells:
            t[c.index], m[c.index] = c.t * c.pool, c.m
        on_b = sb > lo + 1e-12 * np.maximum(lo, 1.0)
        on_b |= np.isinf(m)                        # concave cells are always "on" (their own curve)
        jump = (sa > sb + 0.5 * (t - lo)) & np.isfinite(m)
        lam = math.exp(b)
        k_extra = 4 if p.n <= 5000 else 2
        cand = set(np.flatnonzero(jump).tolist())
        finite = np.flatnonzero(np.isfinite(m))
        if len(finite):
            near = finite[np.argsort(np.abs(np.log(np.maximum(m[finite], 1e-300)) - math.log(lam)))[:k_extra]]
            cand.update(near.tolist())
        cand = sorted(cand)[:8]
        best = (-np.inf, sb, 0)
        tried = 0
        # patterns nearest the bracket's own first (fewest flips from the plan at lam_b); stop once
        # the best plan is certified well inside the tolerance
        start = np.array([on_b[i] for i in cand], bool)
        patterns = sorted(itertools.product((False, True), repeat=len(cand)),
                          key=lambda bits: int(np.sum(np.array(bits, bool) != start)))
        for bits in patterns:
            if best[0] > -np.inf and (ub - best[0]) <= 0.1 * self.tol * abs(best[0]):
                break
            on = on_b.copy()
            on[cand] = bits
            floor = float(np.where(on, np.maximum(t, lo), lo).sum())
            if floor > B * (1 + 1e-12):
                continue
            tried += 1
            modes = self._modes(on)
            _, _, xa, xb = self.search(B, modes, near=b)
            s = self._leftover(self._fill(xb, xa, B), B, on)
            v = p.net_value(s)
            if v > best[0]:
                best = (v, s, tried)
        return best[1], tried

    def _leftover(self, s, B, on):
        """Budget a pattern leaves unspent goes to the one "off" cell it helps most (below its tangent)."""
        p = self.p
        R = B - float(s.sum())
        if R <= 1e-9 * max(B, 1.0) or on.all():
            return s
        room = np.minimum(p.upper - s, R)
        gain = np.where(on, -np.inf, p.expected_value(s + room) - p.expected_value(s) - room)
        j = int(np.argmax(gain))
        if gain[j] > 0:
            s = s.copy()
            s[j] += room[j]
        return s

    def _fill(self, sb, sa, B):
        """Between two plans of one pattern: the interpolation meeting the budget (exact-solver style)."""
        Sa, Sb = float(sa.sum()), float(sb.sum())
        theta = 0.0 if Sa <= Sb or Sa <= B else (B - Sb) / (Sa - Sb)
        return sb + theta * (sa - sb) if Sb < B else sb

    def _partial(self, a, b, sa, sb, ub):
        """Partial targeting: the envelope plan, with jump cells treating a share of members at the tangent."""
        p = self.p
        s = self._fill(sb, sa, p.budget)
        t = np.empty(p.n)
        for c in self.cells:
            t[c.index] = c.t * c.pool
        frac = (s > p.lower + 1e-9) & (s < t - 1e-9)
        share = np.zeros(p.n)
        share[frac] = (s[frac] - p.lower[frac]) / (t[frac] - p.lower[frac])
        # value of the plan: treated share at the tangent spend, the rest at the lower bound
        ev = p.expected_value(s)
        ev[frac] = share[frac] * p.expected_value(t)[frac] + (1 - share[frac]) * p.expected_value(p.lower)[frac]
        primal = float(ev.sum() - s.sum())
        where = np.flatnonzero(frac)
        treated = {p.label(i): float(share[i]) for i in where}
        return self._result(s, math.exp(b), ub, primal, {"budget_binds": True, "partial_targeting": True,
                                                         "treated_share": treated,
                                                         "tangent_spend": {p.label(i): float(t[i]) for i in where},
                                                         "treated_cells": [int(i) for i in where],
                                                         "treated_shares": [float(share[i]) for i in where],
                                                         "treated_spends": [float(t[i]) for i in where]})

    def _result(self, spend, lam, ub, primal, info):
        gap = max(ub - primal, 0.0) / max(abs(primal), 1e-12)
        term = "optimal" if gap <= self.tol else "gap_limit"
        info = {**info, "bound_method": "Lagrangian dual over the cells' concave envelopes",
                "objective": primal}
        return SolveResult(spend=spend, solver="envelope", termination=term, marginal_return=lam,
                           optimality_gap=gap, upper_bound=ub, passes=self.passes, info=info)
