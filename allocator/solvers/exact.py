"""Exact multiplier ("water-filling") solver for concave, separable problems with one budget.

For concave curves the optimum is characterized by one number, the common
marginal return ``lam``: every cell spends where ``value * p'(x) = lam``,
clipped to its bounds. ``lam = 1`` when the budget does not bind; otherwise it
is the root of ``S(lam) = budget`` where ``S`` is total clipped spend, a
non-increasing function. The root is found by regula falsi with the Illinois
modification on ``log(lam)`` (for exponential curves ``S`` is piecewise linear
in ``log(lam)``, so the iteration ends in a handful of steps), and the plan is
the interpolation between the two bracketing spends, which meets the budget
exactly even where ``S`` jumps (tabulated curves).

Each trial of ``lam`` is one vectorized pass over the cells; ``passes`` in the
result counts them.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import NumericalError
from ..problem import CompiledProblem
from .base import SolveResult, Solver, check_bounds_feasible


class ExactSolver(Solver):
    name = "exact"
    description = "multiplier bisection/regula falsi on the common marginal return; concave curves, one budget"

    def solve(self, problem: CompiledProblem, tolerance: float | None = None) -> SolveResult:
        return self.solve_with_response(problem, tolerance)[0]

    def solve_with_response(self, problem: CompiledProblem,
                            tolerance: float | None = None) -> tuple[SolveResult, np.ndarray | None]:
        check_bounds_feasible(problem)
        rel = 1e-13 if tolerance is None else min(tolerance, 1e-9)
        lo, hi = problem.lower, problem.upper
        clip_lo, clip_hi = bool((lo > 0).any()), bool(np.isfinite(hi).any())
        passes = 0
        # The closed forms may overflow at extreme parameters (see _guarded_rule), so the rules are made
        # and every pass runs with floating-point errors ignored: one errstate for the whole search
        # (one per pass cost more than a small problem's arithmetic). Nothing else in the search
        # warns: sums and clips of finite spends, and Python arithmetic on the bracket.
        rules: list = []  # (cells, closed form, its guard) per block, made below
        whole = False
        n = problem.n

        def assemble(lam: float) -> np.ndarray:
            if whole:
                s = np.asarray(rules[0][1](lam), float)
                return s if _all_usable(s) else rules[0][2](lam, s)
            parts = [fast(lam) for _, fast, _ in rules]
            s = np.empty(n)
            for (idx, _, _), part in zip(rules, parts):
                s[idx] = part
            if not _all_usable(s):
                # some closed form failed: each block's answer through its guard (the failed ones only change)
                for (idx, _, guard), part in zip(rules, parts):
                    s[idx] = guard(lam, part)
            return s

        def spend_at(lam: float) -> np.ndarray:
            # called with floating-point errors ignored (see above)
            nonlocal passes
            passes += 1
            s = assemble(lam)
            if clip_lo:
                np.maximum(s, lo, out=s)
            if clip_hi:
                np.minimum(s, hi, out=s)
            return s

        with np.errstate(all="ignore"):
            rules += [(b.index, *_guarded_rule(b, problem.value[b.index], problem.pool[b.index]))
                      for b in problem.blocks]
            # compile puts a single family's cells in order, so one rule can cover all cells without scatter
            whole = len(rules) == 1 and len(rules[0][0]) == n and bool(np.all(np.diff(rules[0][0]) == 1))
            found = self._search(problem, spend_at, rel)
        if isinstance(found, SolveResult):
            found.passes = passes
            return found, None
        s, lam, it, s_lam = found
        bound = dual_bound(problem, s_lam, lam)
        # problem.net_value(s), its response kept: the plan's table shows it
        resp = problem.response(s)
        primal = float((problem.pool * problem.value * resp).sum() - s.sum()) - problem.activation_paid(s)
        result = SolveResult(spend=s, solver=self.name, marginal_return=lam, iterations=it, passes=passes,
                             upper_bound=bound, optimality_gap=max(bound - primal, 0.0) / max(abs(primal), 1e-12),
                             info={"budget_binds": True, "bound_method": "Lagrangian dual at the final multiplier"})
        return result, resp

    def _search(self, problem: CompiledProblem, spend_at, rel: float):
        """The multiplier search: a finished :class:`SolveResult` (budget slack, floors or flat tails
        take it all; ``passes`` left to the caller) or ``(spend, lam, iterations, spend_at(lam))``."""
        lo, hi = problem.lower, problem.upper
        B = problem.budget
        s1 = spend_at(1.0)
        S1 = float(_sum(s1))
        if B is None or (not problem.use_all and S1 <= B):
            return SolveResult(spend=s1, solver=self.name, marginal_return=1.0, info={"budget_binds": False})

        if float(lo.sum()) >= B * (1 - 1e-15):
            # the floors use the whole budget: nothing is left to allocate
            return SolveResult(spend=lo.copy(), solver=self.name, marginal_return=None, info={"budget_binds": True})
        # bracket log(lam): a where S >= B, b where S <= B (each pass's sum taken once)
        if S1 > B:
            a, Sa, sa = 0.0, S1, s1
            b = math.log(2.0)
            sb = spend_at(2.0)
            Sb = float(_sum(sb))
            while Sb > B:
                a, Sa, sa = b, Sb, sb
                b *= 2.0
                if b > 700:
                    raise NumericalError("could not bracket the budget multiplier (marginal returns above e^700)")
                sb = spend_at(math.exp(b))
                Sb = float(_sum(sb))
        else:  # use_all with the profit optimum below budget: lam < 1
            b, Sb, sb = 0.0, S1, s1
            a = -math.log(2.0)
            sa = spend_at(0.5)
            Sa = float(_sum(sa))
            while Sa < B and a > -700:
                b, Sb, sb = a, Sa, sa
                a *= 2.0
                sa = spend_at(math.exp(a))
                Sa = float(_sum(sa))
            if Sa < B:
                # even at a vanishing marginal return the curves take less than B (flat tails):
                # the rest has zero marginal value; place it where there is room, by pool.
                room = np.where(np.isfinite(hi), hi - sa, problem.pool)
                s = sa + (B - Sa) * room / room.sum()
                return SolveResult(spend=np.minimum(s, hi), solver=self.name, marginal_return=0.0,
                                   info={"budget_binds": True})

        tol_spend = rel * max(B, 1.0)
        fa, fb = Sa - B, Sb - B
        side = 0
        it = 0
        while (Sa - Sb) > tol_spend and (b - a) > 1e-15 * max(1.0, abs(a)):
            it += 1
            if it > 400:
                raise NumericalError(f"multiplier search did not converge (bracket {math.exp(a)}..{math.exp(b)})")
            c = b - fb * (b - a) / (fb - fa) if fb != fa else 0.5 * (a + b)
            if not (a < c < b) or it % 8 == 0:
                c = 0.5 * (a + b)
            sc = spend_at(math.exp(c))
            Sc = float(_sum(sc))
            fc = Sc - B
            if abs(fc) <= tol_spend:
                a, Sa, sa = c, Sc, sc
                b, Sb, sb = c, Sc, sc
                break
            if fc > 0:
                a, fa, Sa, sa = c, fc, Sc, sc
                if side == -1:
                    fb *= 0.5
                side = -1
            else:
                b, fb, Sb, sb = c, fc, Sc, sc
                if side == 1:
                    fa *= 0.5
                side = 1
        theta = 0.0 if Sa == Sb else (B - Sb) / (Sa - Sb)
        s = sb + theta * (sa - sb)
        if not np.isfinite(s).all():
            raise NumericalError("the exact solver produced non-finite spend; check curve parameters")
        lam = math.exp(0.5 * (a + b))
        return s, lam, it, spend_at(lam)


def _guarded_rule(block, value: np.ndarray, pool: np.ndarray):
    """The family's spend rule, and the same with the generic bisection standing in where it fails.

    A closed form can overflow at extreme but valid parameters (Hill with ``half_saturation``
    1e308: ``sqrt(value * ceiling * h)`` is ``inf``, which once put a flat cell at its cap);
    where it returns a non-finite or negative spend, the bisection on the slope (which only
    evaluates ``slope``) answers instead. Returns ``(rule, guard)``: ``guard(lam, rule(lam))`` is the
    guarded spend. It is made, and both are called, under ``np.errstate(all="ignore")`` (the caller's).
    """
    from ..curves.base import CurveFamily

    fast = block.family.spend_rule(block.prepared, value, pool)
    slow = None

    def guard(lam: float, answer: np.ndarray) -> np.ndarray:
        nonlocal slow
        s = np.asarray(answer, float)
        bad = ~np.isfinite(s) | (s < 0)
        if bad.any():
            if slow is None:  # built when first needed: the closed forms rarely fail
                slow = CurveFamily.spend_rule(block.family, block.params, value, pool)
            s = np.where(bad, slow(lam), s)
        return s

    return fast, guard


def _all_usable(s: np.ndarray) -> bool:
    """Every spend finite and >= 0 (NaN fails both tests): two reductions, where the guard takes four calls.

    The ufuncs' own reductions, without the array methods' wrappers (a pass is a few microseconds).
    """
    return not s.size or (_min(s) >= 0 and _max(s) < np.inf)


_min, _max = np.minimum.reduce, np.maximum.reduce
_sum = np.add.reduce
"""``a.sum()`` of a 1-D array: the method's reduction, without its wrapper (a pass's total, ten times a solve)."""


def dual_bound(problem: CompiledProblem, spend_at_lam: np.ndarray, lam: float) -> float:
    """Lagrangian upper bound on the optimum: ``max_box sum(f - lam s) + (lam - 1) B``.

    Valid for any ``lam`` when ``spend_at_lam`` maximizes each cell's ``f_i(s) - lam s``
    over its bounds, which the spend rule does for concave curves.
    """
    B = problem.budget if problem.budget is not None else 0.0
    return float(problem.expected_value(spend_at_lam).sum() - lam * spend_at_lam.sum() + (lam - 1.0) * B)
