"""Global solver: a piecewise-linear MILP in HiGHS (highspy arrays), refined until certified.

Each cell's expected successes ``E(s)`` is replaced on its spend range by a
piecewise-linear function whose breakpoint values are *lifted* by certified
bounds on the curve's rise above each chord (:mod:`.envelope`). That function
lies above ``E`` everywhere, so the MILP over it is a relaxation of the true
problem: HiGHS's proven dual bound is a valid upper bound ``UB`` on the true
optimum, while the MILP's plan is feasible (all constraints are linear in
spend) and its true objective is a lower bound ``LB``. Breakpoints are then
added where the plan sits, halfway to its neighbours, and where each cell's
marginal return equals its price from the LP duals, and the MILP is solved
again, until ``(UB - LB) / |LB| <= tolerance`` (1e-4 by default) and the interior
cells' marginal returns agree with their prices.

The MILP and its two formulations (``incremental``, ``sos2``) are in :mod:`.milp_model`;
breakpoint refinement and the piecewise values in :mod:`.refine`.

Objectives: ``net_value`` and ``hurdle`` maximize ``sum(value * E) - rate * spend -
activation``. ``target`` minimizes spend plus activation subject to
``sum(weight * E) >= target``: then two MILPs are solved per round, one with the
lifted curves in the target row (a relaxation: its dual bound is a lower bound on
the least spend) and one with curves *sagged* below the true ones (a restriction:
its plan truly reaches the target).

Cells whose range has no finite cap get an artificial cap ``b`` where the slope has
fallen below 1e-4 of its peak (and not before the curve is certainly concave,
:func:`.envelope.concave_from`). The cap only places breakpoints: the spend column
keeps its true range, and spend past ``b`` enters through a tail column valued at
most ``E'(b)`` per unit and at most the curve's remaining rise
(:func:`.envelope.tail_bounds`), so the MILP stays a relaxation of the true problem
and its bound a bound, however steep the curve and whatever the spend unit (a cap
below one unit once made a cell unreachable and the "bound" false). A plan that
uses a tail has that cap widened for the next round.

Why it stopped is ``SolveResult.termination``: ``optimal`` (certified gap within the
tolerance), ``time_limit`` (``solver.time_limit`` ran out: the best plan found, with
its honest certified gap) or ``gap_limit`` (``MAX_ROUNDS`` refinements did not close
the gap; a warning says by how much). Solves longer than ``PROGRESS_AFTER`` seconds
report round, upper bound, certified gap and elapsed time on the logger
``allocator.progress`` (INFO) and to an optional ``options["progress"]`` callable.
``options["warm_start"]`` (a result on the same cells, e.g. a frontier's previous
point) gives the first MILP a MIP start.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from ..errors import InfeasibleError, NumericalError, SolverUnavailableError
from ..problem import CompiledProblem
from . import envelope as env
from . import refine as rf
from .base import SolveResult, Solver
from .milp_model import Cells, ModelSolution, build_model
from .milp_run import MipWatch, run_model

logger = logging.getLogger(__name__)
# progress of long solves, for people: the CLI shows this logger on stderr (never stdout)
progress_logger = logging.getLogger("allocator.progress")

DEFAULT_TOLERANCE = 1e-4
KKT_TOL = 1e-4
MAX_ROUNDS = 40
SAMPLES = 8
PROGRESS_AFTER = 2.0   # seconds: shorter solves report nothing
PROGRESS_EVERY = 1.0   # seconds between progress lines inside one MILP


# ---------------------------------------------------------------- the solver

class GlobalSolver(Solver):
    name = "global"
    handles_nonconcave = True
    handles_constraints = True
    handles_integer = True
    objectives = ("net_value", "hurdle", "target")
    description = ("piecewise-linear MILP in HiGHS with certified breakpoint refinement; any monotone curves, "
                   "constraints, integer features, target and hurdle objectives")

    def solve(self, problem: CompiledProblem, tolerance: float | None = None) -> SolveResult:
        return _Run(problem, tolerance).solve()


class _Run:
    def __init__(self, problem: CompiledProblem, tolerance: float | None):
        self.p = problem
        opts = dict(getattr(problem, "options", None) or {})
        self.tol = DEFAULT_TOLERANCE if tolerance is None else float(tolerance)
        self.formulation = opts.get("formulation", "incremental")
        if self.formulation not in ("incremental", "sos2"):
            raise SolverUnavailableError(f"unknown formulation '{self.formulation}'; use incremental or sos2")
        self.k0 = int(opts.get("breakpoints", 16))
        self.time_limit = opts.get("time_limit")
        # an optional callable(dict) for API users; the CLI listens to ``allocator.progress`` instead
        self.progress = opts.get("progress")
        self.warm = opts.get("warm_start")
        self.timed_out = False
        self.round = 0
        self.t_start = time.perf_counter()
        self.last_plan: np.ndarray | None = None
        self.cells = self._cells()

    # ---- per-cell setup
    def _cells(self) -> Cells:
        p = self.p
        n = p.n
        kind = p.objective.kind
        w_obj = p.value.copy() if kind != "target" else np.zeros(n)
        w_row = p.objective.weight if kind == "target" else None
        pl = (w_obj > 0) | (w_row > 0 if w_row is not None else False)
        # caps implied by rows with positive coefficients (a budget caps each of its cells); the
        # curve's range goes a little past them so that the row, not the column bound, carries
        # the shadow price when it binds
        row_cap = np.full(n, np.inf)
        for c in p.rows():
            if np.isfinite(c.upper) and np.all(c.coef > 0):
                row_cap[c.index] = np.minimum(row_cap[c.index], c.upper / c.coef)
        hard = np.maximum(np.minimum(p.upper, 1.25 * row_cap + 1.0), p.lower)
        ma = p.min_active if p.min_active is not None else np.zeros(n)
        cost = p.activation_cost if p.activation_cost is not None else np.zeros(n)
        act = ((ma > 0) | (cost > 0)) & (p.lower <= 0) & (hard > 0)
        a = np.where(p.lower > 0, np.maximum(p.lower, ma), np.where(act, ma, p.lower))
        off = act & (ma > hard * (1 + 1e-12))
        forced = (p.lower > 0) & (ma > hard * (1 + 1e-12))
        if forced.any():
            i = int(np.flatnonzero(forced)[0])
            raise InfeasibleError(f"infeasible: cell {p.label(i)} must spend but cannot reach its min_active_spend",
                                  conflict=[f"min_spend of cell {p.label(i)} = {p.lower[i]:,.6g}",
                                            f"min_active_spend of cell {p.label(i)} = {ma[i]:,.6g}",
                                            f"max spend of cell {p.label(i)} = {hard[i]:,.6g}"])
        cap = env.marginal_caps(p, np.maximum(a, 0.0))
        b = np.where(pl, np.minimum(hard, np.maximum(cap, a)), hard)
        # the cap must sit where the curve is concave, so that the tail past it is bounded by
        # the slope at the cap; where no such point is known the range runs to the hard cap
        cf = env.concave_from(p)
        b = np.where(b < hard, np.where(np.isfinite(cf), np.minimum(np.maximum(b, cf), hard), hard), b)
        b = np.where(np.isfinite(b), b, np.maximum(cap, a))   # no finite point at all: a loose tail
        artificial = pl & (b < hard)
        b = np.maximum(b, a)
        self.concave_start = cf
        E0 = env.evaluate(p, np.zeros((n, 1)), "value")[:, 0]
        return Cells(a=a, b=b, hard=hard, artificial=artificial, act=act, off=off, pl=pl, w_obj=w_obj,
                     w_row=w_row, cost=cost, E0=E0)

    def _weight(self) -> np.ndarray:
        c = self.cells
        return c.w_obj if c.w_row is None else c.w_row

    # ---- main loop
    def solve(self) -> SolveResult:
        p, c = self.p, self.cells
        price = p.objective.rate if p.objective.kind != "target" else None
        T = env.initial_breakpoints(p, c.a, c.curve_end, self.k0, self._weight(), price)
        self._warm_start()
        history = []
        kkts: list[float] = []
        best = None
        rounds = 0
        for rounds in range(1, MAX_ROUNDS + 1):
            self.round = rounds
            bnd = env.segment_bounds(p, T, SAMPLES)
            try:
                state = self._round(T, bnd)
            except _NoPlan:
                if best is None:
                    raise NumericalError(
                        f"solver.time_limit of {self.time_limit:g} s ran out before HiGHS found any plan "
                        f"(round {rounds}); allow more time") from None
                self.timed_out = True
                break
            history.append({k: state[k] for k in ("lower", "upper", "gap", "kkt", "seconds")} |
                           {"breakpoints": int(T.shape[1])})
            logger.info("global round %d: gap %.3g, kkt %.3g, %d breakpoints, %.2fs", rounds, state["gap"],
                        state["kkt"], T.shape[1], state["seconds"])
            if state.get("widen") is not None and "spend" not in state:
                # HiGHS found the model infeasible though the rules are not: with the tails the
                # model has the true ranges, so this is numerical trouble (widening once may help)
                if not self.cells.artificial.any():
                    raise NumericalError("the global model is infeasible but the constraints are not: "
                                         "numerical trouble in HiGHS")
                T = self._widen(T, state["widen"])
                continue
            if best is None or state["gap"] <= best["gap"]:
                best = state
            self._report(best["upper"], best["gap"])
            done = state["gap"] <= self.tol and (state["kkt"] <= KKT_TOL or p.unit is not None)
            kkts.append(state["kkt"])
            stalled = (not done and state["gap"] <= self.tol and len(kkts) > 3
                       and min(kkts[-3:]) >= min(kkts[:-3]) * 0.9)
            if stalled:
                logger.warning("global solver: marginal returns stay %.3g off their prices; stopping at the "
                               "certified gap %.3g", state["kkt"], state["gap"])
            if not done and not stalled and self._out_of_time():
                self.timed_out = True
                logger.warning("global solver: solver.time_limit of %g s reached in round %d; the best plan's "
                               "certified gap is %.3g (target %.3g)", self.time_limit, rounds, best["gap"], self.tol)
            if done or stalled or self.timed_out:
                break
            if state.get("widen") is not None:
                # the plan reached an artificial cap: its bound holds (tails), but the breakpoints
                # should cover where it went
                T = self._widen(T, state["widen"], np.maximum(state["spend"], state["milp_spend"]))
            else:
                T = self._refine(T, bnd, state)
        else:
            logger.warning("global solver stopped after %d rounds at gap %.3g (target %.3g)", rounds,
                           best["gap"], self.tol)
        if best is None:
            best = state
        if best["gap"] > self.tol and not self.timed_out:
            logger.warning("global solver: certified gap %.3g is above the tolerance %.3g", best["gap"], self.tol)
        return self._result(best, rounds, history)

    def _warm_start(self) -> None:
        """A MIP start from ``options["warm_start"]``, a result on the same cells (a frontier's last point).

        HiGHS checks the start and drops it if the new rules make it infeasible. Measured on a
        100-point frontier over ``scenarios/constrained.yaml``: 19-25 s against 27 s cold. Carrying
        the last solve's breakpoints over as well halved the rounds but made each MILP larger
        and the frontier slower (73 s), so only the plan is carried.
        """
        warm = self.warm
        if warm is not None and np.shape(getattr(warm, "spend", None)) == (self.p.n,):
            self.last_plan = np.asarray(warm.spend, float)

    def _out_of_time(self) -> bool:
        return self.time_limit is not None and time.perf_counter() - self.t_start > self.time_limit

    def _remaining(self) -> float | None:
        if self.time_limit is None:
            return None
        # at least a second: a MILP stopped before its first incumbent has no plan to report
        return max(self.time_limit - (time.perf_counter() - self.t_start), 1.0)

    def _report(self, upper: float, gap: float) -> None:
        """A progress line for solves past ``PROGRESS_AFTER`` seconds (logger ``allocator.progress``, INFO)."""
        elapsed = time.perf_counter() - self.t_start
        if elapsed < PROGRESS_AFTER or not math.isfinite(gap):
            return
        progress_logger.info("global solver: round %d, upper bound %s, certified gap %.2e, %.1f s",
                             self.round, f"{upper:,.6g}" if abs(upper) < 1e6 else f"{upper:,.0f}", gap, elapsed)
        if self.progress is not None:
            self.progress({"round": self.round, "upper_bound": upper, "gap": gap, "elapsed": elapsed})

    def _values(self, T: np.ndarray, bnd: dict, sign: float) -> tuple[np.ndarray, np.ndarray]:
        """Breakpoints and values of the curves over (``sign`` +1) or under (-1) the true ones.

        Concave cells: tangents over, chords under, both exact by concavity. Others: chords
        lifted or sagged by the certified per-segment bounds.
        """
        return rf.piecewise_values(self.p, T, bnd, sign)

    def _solve_model(self, TV, objective=True, start: np.ndarray | None = None, watch: bool = False,
                     sign: float = 1.0) -> ModelSolution:
        """One MILP over ``TV``; ``sign`` +1 (lifted curves, a relaxation) or -1 (sagged, a restriction)."""
        T, V = TV
        c = self.cells
        tail = env.tail_bounds(self.p, c.b, c.artificial & c.pl, self.concave_start) if sign > 0 else None
        lp, integ, maps = build_model(self.p, c, T, V, self.formulation, objective=objective, tail=tail)
        w = MipWatch(self._objective, self.tol, on_progress=self._report, every=PROGRESS_EVERY) if watch else None
        sol = run_model(lp, integ, maps, self.p, self.cells, self.tol, self._remaining(), start=start, watch=w)
        if sol.status in ("infeasible", "unbounded_or_infeasible"):
            self._diagnose()
        if sol.status == "time_limit_no_plan":
            raise _NoPlan()
        return sol

    def _diagnose(self) -> None:
        from ..infeasibility import find_conflict

        conflict = find_conflict(self.p)
        if conflict is None:
            # feasible with the hard caps: an artificial cap was too tight; caller widens
            raise _Widen()
        raise InfeasibleError(f"infeasible: these {len(conflict)} rules cannot hold together (dropping any one "
                              f"of them makes the rest feasible)", conflict=conflict)

    def _round(self, T: np.ndarray, bnd: dict) -> dict:
        p, c = self.p, self.cells
        t0 = time.perf_counter()
        try:
            if p.objective.kind == "target":
                relax = self._solve_model(self._values(T, bnd, +1.0), objective=True)
                restr = self._solve_model(self._values(T, bnd, -1.0), objective=True, sign=-1.0)
                spend = restr.spend
                reached = float((c.w_row * env.evaluate(p, spend[:, None], "value")[:, 0]).sum())
                upper = float(spend.sum()) + p.activation_paid(spend)   # a feasible plan's cost
                lower = max(relax.dual_bound, 0.0)                       # proven least cost of a relaxation
                if reached < p.objective.target * (1 - 1e-9):
                    logger.warning("restricted plan reaches %.10g < target %.10g", reached, p.objective.target)
                gap = (upper - lower) / max(abs(upper), 1.0)
                sol = restr
                milp_spend = relax.spend
                slack_cells = self._slack(T, bnd, relax.spend, +1.0) + self._slack(T, bnd, spend, -1.0)
            else:
                sol = self._solve_model(self._values(T, bnd, +1.0), start=self.last_plan, watch=True)
                spend = sol.spend
                upper = -sol.dual_bound
                lower = self._objective(spend)
                # the bound is loose where HiGHS's incumbent sits (on the lifted curves), the plan is
                # the best incumbent on the true curves: refine at both
                milp_spend = sol.milp_spend if sol.milp_spend is not None else spend
                slack_cells = self._slack(T, bnd, spend, +1.0) + self._slack(T, bnd, milp_spend, +1.0)
                spend, lower, upper, method = self._tighten(spend, lower, upper, sol, bnd)
                gap = (upper - lower) / max(abs(lower), 1.0)
        except _Widen:
            return {"widen": self.cells.artificial.copy(), "gap": math.inf, "kkt": math.inf, "lower": math.nan,
                    "upper": math.nan, "seconds": time.perf_counter() - t0}
        self.last_plan = spend
        # a plan at an artificial cap or past it (in the tail) has that cap widened
        reach = np.maximum(spend, milp_spend)
        at_cap = c.artificial & (reach >= c.b * (1 - 1e-9)) & (c.b > 0)
        prices, kkt, off_cells = self._kkt(spend, sol)
        state = {"spend": spend, "sol": sol, "lower": lower, "upper": upper, "gap": max(gap, 0.0),
                 "method": method if p.objective.kind != "target" else "milp", "milp_spend": milp_spend,
                 "duals": getattr(self, "polished_duals", None),
                 "slack": slack_cells, "prices": prices, "kkt": kkt, "off": off_cells,
                 "seconds": time.perf_counter() - t0, "widen": at_cap if at_cap.any() else None}
        return state

    def _tighten(self, spend, lower, upper, sol: ModelSolution, bnd: dict):
        """Polish the plan to exact stationarity; bound with the Lagrangian at its multipliers."""
        from .polish import lagrangian_bound, polish

        p, c = self.p, self.cells
        rate = p.objective.rate
        y = {k: -v for k, v in sol.row_duals.items()}
        self.polished_duals = None
        if p.unit is None:
            free, lo, hi = self._free_cells(spend, bnd)
            try:
                res = polish(p, spend, free, lo, hi, c.w_obj, rate, y0=y)
            except (FloatingPointError, ValueError, np.linalg.LinAlgError):  # pragma: no cover - defensive
                res = None
            if res is not None:
                s2, y2 = res
                s2 = np.clip(s2, p.lower, p.upper)
                val = self._objective(s2)
                if val >= lower - 1e-12 * max(abs(lower), 1.0):
                    spend, lower, y = s2, val, y2
                    self.polished_duals = y2
        method = "milp"
        try:
            lag = lagrangian_bound(p, y, c.w_obj, rate, c.a, c.b, c.hard, c.act, c.off, c.cost, c.E0, bnd,
                                   tail_ok=c.b >= self.concave_start)
        except (FloatingPointError, ValueError):  # pragma: no cover - defensive
            lag = np.inf
        if lag < upper:
            upper = lag
            method = "lagrangian_polished" if self.polished_duals is not None else "lagrangian_lp"
        return spend, lower, upper, method

    def _free_cells(self, spend: np.ndarray, bnd: dict):
        """Cells the polish may move, and their ranges (where their slopes fall)."""
        p, c = self.p, self.cells
        on = ~c.act | (spend > 0)
        free = c.pl & ~c.off & on & (c.w_obj > 0) & (c.b > c.a)
        lo, hi = c.a.copy(), c.b.copy()
        nc = ~p.concave
        if nc.any():
            grid, D = bnd["grid"], np.where(np.isfinite(bnd["Dr"]), bnd["Dr"], -np.inf)
            # an S-curve cell is free only on its concave side, past the slope's peak (a sample
            # past it, so the bracket holds falling slopes only)
            j = np.minimum(np.argmax(D, axis=1) + 1, grid.shape[1] - 1)
            past = grid[np.arange(p.n), j]
            lo = np.where(nc, np.maximum(lo, past), lo)
            free &= ~nc | (spend >= past)
        return free, lo, hi

    def _objective(self, spend: np.ndarray) -> float:
        """True objective in maximization form: value - rate * spend - activation."""
        p = self.p
        return float(p.expected_value(spend).sum() - p.objective.rate * spend.sum()) - p.activation_paid(spend)

    def _slack(self, T, bnd, spend, sign) -> np.ndarray:
        """Per cell, how far the shifted piecewise curve is from the true one at ``spend`` (weighted)."""
        return rf.slack(self.p, self.cells, *self._values(T, bnd, sign), spend, self._weight())

    def _kkt(self, spend: np.ndarray, sol: ModelSolution):
        """Per-cell prices, the largest relative deviation of interior cells from theirs, and the cells off.

        The prices come from the shared check (:mod:`allocator.kkt`), which fits multipliers
        to the plan's true marginal returns; with spend units (no stationarity) from the duals.
        """
        from ..kkt import check_general

        p = self.p
        g = check_general(p, spend, KKT_TOL)
        if g.applicable:
            return g.price, g.kkt_max_deviation, (g.deviation > 0.5 * KKT_TOL) & (g.bound == "none")
        kind = p.objective.kind
        base = np.full(p.n, p.objective.rate if kind != "target" else 1.0)
        for row in p.rows():
            d = sol.row_duals.get(row.name, 0.0)
            if d:
                base[row.index] += -d * row.coef
        if kind == "target":
            base = base / sol.target_dual if sol.target_dual > 0 else np.full(p.n, np.nan)
        return base, 0.0, np.zeros(p.n, dtype=bool)

    # ---- refinement (see :mod:`.refine`)
    def _refine(self, T: np.ndarray, bnd: dict, state: dict) -> np.ndarray:
        return rf.refine(self.p, self.cells, T, bnd, state, self.tol, self._weight())

    def _widen(self, T: np.ndarray, cells_mask: np.ndarray, reach: np.ndarray | None = None) -> np.ndarray:
        return rf.widen(self.p, self.cells, T, cells_mask, reach)

    # ---- result
    def _result(self, state: dict, rounds: int, history: list) -> SolveResult:
        p = self.p
        sol: ModelSolution = state["sol"]
        spend = state["spend"]
        kind = p.objective.kind
        duals = {}
        for row in p.rows():
            d = sol.row_duals.get(row.name)
            if d is not None:
                duals[row.name] = -d if kind != "target" else d
        if state.get("duals"):
            duals = dict(state["duals"])  # exact multipliers of the polished plan
        if kind == "target":
            method = ("MILP relaxation with curves lifted above the true ones (proven HiGHS bound on the least "
                      "spend); plan from the MILP with curves sagged below them")
        elif state.get("method", "").startswith("lagrangian"):
            where = ("the polished plan's shadow prices" if state["method"] == "lagrangian_polished"
                     else "the LP duals with the integer decisions fixed (spend units relaxed)")
            method = (f"Lagrangian dual at {where}; each cell's inner maximum exact for concave curves, "
                      f"bounded from sampled slopes otherwise")
        else:
            method = ("MILP over piecewise-linear curves lifted above the true ones by certified bounds "
                      "(proven HiGHS dual bound), refined at the plan")
        info = {"bound_method": method, "formulation": self.formulation, "rounds": rounds,
                "kkt_tolerance": KKT_TOL if p.unit is None else 0.0, "kkt_deviation": state["kkt"],
                "lower_bound": state["lower"], "model_size": sol.size,
                "seconds": time.perf_counter() - self.t_start, "history": history,
                "prices": None}
        if kind == "target":
            info["target_shadow_price"] = sol.target_dual
        budget_dual = duals.get("budget.total")
        # why it stopped, kept apart from what it found: within tolerance; out of time (the best plan
        # and its honest gap); or out of rounds
        termination = ("optimal" if state["gap"] <= self.tol else "time_limit" if self.timed_out else "gap_limit")
        return SolveResult(
            spend=spend, solver="global", termination=termination,
            marginal_return=(p.objective.rate + budget_dual) if (budget_dual is not None and kind != "target")
            else None,
            optimality_gap=state["gap"], upper_bound=state["upper"] if kind != "target" else state["lower"],
            iterations=rounds, info=info, constraint_duals=duals)


class _Widen(Exception):
    """An artificial cap made the model infeasible; widen and try again."""


class _NoPlan(Exception):
    """The time limit ran out before HiGHS found a plan in this round."""


def feasibility_status(problem: CompiledProblem) -> bool:
    """Whether the rules of ``problem`` can hold together (used by the infeasibility diagnosis).

    Cells take their hard caps; a target row uses curves lifted above the true ones
    over a wide range, so a ``False`` is a proof of infeasibility.
    """
    run = _Run.__new__(_Run)
    run.p = problem
    run.tol = DEFAULT_TOLERANCE
    run.formulation = "incremental"
    run.k0 = 8
    run.time_limit = None
    run.t_start = time.perf_counter()
    try:
        cells = run._cells()
    except InfeasibleError:
        return False
    target = problem.objective.kind == "target"
    cells.pl = (cells.w_row > 0) if target else np.zeros(problem.n, dtype=bool)
    if target:
        cap = env.marginal_caps(problem, np.maximum(cells.a, 0.0), frac=1e-9)
        cf = run.concave_start
        far = np.maximum(cap * 8.0, np.where(np.isfinite(cf), cf, 0.0))
        cells.b = np.where(np.isfinite(cells.hard), cells.hard, np.maximum(far, cells.a))
    else:
        cells.b = cells.hard.copy()
    cells.b = np.maximum(cells.b, cells.a)
    cells.artificial = cells.pl & (cells.b < cells.hard)
    run.cells = cells
    T = env.initial_breakpoints(problem, cells.a, cells.curve_end, 8, cells.w_row if target else np.zeros(problem.n), None)
    bnd = env.segment_bounds(problem, T, SAMPLES)
    T, V = rf.piecewise_values(problem, T, bnd, +1.0)
    # spend past the far cap through tails valued by their certified rise: still a relaxation
    tail = env.tail_bounds(problem, cells.b, cells.artificial, run.concave_start)
    lp, integ, maps = build_model(problem, cells, T, V, "incremental", objective=False, tail=tail)
    sol = run_model(lp, integ, maps, problem, cells, DEFAULT_TOLERANCE, None, want_duals=False)
    return sol.status not in ("infeasible", "unbounded_or_infeasible")
