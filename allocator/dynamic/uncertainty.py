"""A multi-period plan under uncertain parameters: its policy evaluated across sampled scenarios.

The scenario's ``uncertainty`` block is the static one's (``samples``, ``seed``, ``alpha``,
``distributions``), with the parameters of the multi-period contract. Each distribution names
a ``param`` of the matching segments (``segment: id`` or ``*``) and tasks (``task``, for task
parameters):

* segment parameters: ``margin`` (every state's margin, scaled alike: a draw ``m`` of the
  active margin multiplies the others by ``m / nominal``), ``margin.<state>``,
  ``members.<state>``, ``arrivals`` (every period's);
* task parameters: ``value``, ``curve.<parameter>``, ``value_curve.<parameter>``.

``dist`` is ``lognormal`` (nominal x exp(N(0, sigma))), ``normal`` (nominal + N(0, sd)) or
``uniform`` (U(low, high)); ``shared: true`` draws one value per sample for every matching
entry (a common shock), else each entry draws its own.

Evaluation (not optimization), of three plans (:mod:`allocator.dynamic.evaluation`), each
followed forward in every sample:

* ``plan``: the optimal plan's nominal spend per cell held (the money committed per period,
  segment and task); member counts differ by sample, so the spend per member does; budgets hold;
* ``plan_per_member``: its spend per member (the policy) held; the nominal spend then follows
  the sample's member counts and can break a budget: ``budget_broken_share`` says how often;
* ``least_spend``: every task at its least spend, the baseline.

Finite horizons only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import Problem, SpecError
from .evaluation import FixedPlan, fixed_plan, follow_plan
from .model import TASK_OF_STATE, DynamicProblem
from .solve import DynamicResult
from .spec import STATES, DynamicDistribution, DynamicUncertainty

@dataclass
class DynamicRisk:
    """``table``: one row per evaluated plan (mean, sd, quantile, CVaR, budget breaks); ``samples``: per draw."""

    table: pd.DataFrame
    samples: pd.DataFrame
    count: int
    alpha: float


def _draw(rng: np.random.Generator, d: DynamicDistribution, nominal: np.ndarray, count: int) -> np.ndarray:
    """(count, len(nominal)) draws for one distribution."""
    shape = (count, 1) if d.shared else (count, len(nominal))
    if d.dist == "lognormal":
        return nominal[None] * np.exp(rng.normal(0.0, d.sigma, shape))
    if d.dist == "normal":
        return nominal[None] + rng.normal(0.0, d.sd, shape)
    return np.broadcast_to(rng.uniform(d.low, d.high, shape), (count, len(nominal))).copy()


def _check(d: DynamicDistribution, i: int) -> list[Problem]:
    where = f"uncertainty.distributions[{i}]"
    need = {"lognormal": ("sigma",), "normal": ("sd",), "uniform": ("low", "high")}[d.dist]
    out = [Problem(f"{where}.{n}", f"is required with dist: {d.dist}") for n in need if getattr(d, n) is None]
    if d.dist == "uniform" and d.low is not None and d.high is not None and d.low > d.high:
        out.append(Problem(f"{where}.low", f"must be <= high ({d.high:g}); got {d.low:g}"))
    return out


def _targets(problem: DynamicProblem, d: DynamicDistribution, i: int) -> tuple[str, Any, np.ndarray, np.ndarray]:
    """(kind, key, segment indices, nominal values) that distribution ``i`` varies."""
    where = f"uncertainty.distributions[{i}]"
    segs = [str(s) for s in problem.segment]
    if d.segment != "*" and d.segment not in segs:
        raise SpecError(Problem(f"{where}.segment", f"no segment '{d.segment}'; segments: {', '.join(segs[:10])}"))
    rows = np.arange(problem.S) if d.segment == "*" else np.array([segs.index(d.segment)])
    head, _, rest = d.param.partition(".")
    if head in ("margin", "members", "arrivals"):
        if d.task != "*":
            raise SpecError(Problem(f"{where}.task", f"{d.param} is a segment parameter; drop `task`"))
        if head == "arrivals":
            return "arrivals", None, rows, problem.arrivals[2:].mean(axis=0)[rows] if problem.T > 1 \
                else np.zeros(len(rows))
        k = STATES.index(rest) if rest else 1
        return head if rest or head == "members" else "margin_all", k, rows, getattr(problem, head)[rows, k]
    if d.task != "*" and d.task not in TASK_OF_STATE:
        raise SpecError(Problem(f"{where}.task", f"no task '{d.task}'; tasks: {', '.join(TASK_OF_STATE)}"))
    ks = range(3) if d.task == "*" else [TASK_OF_STATE.index(d.task)]
    pairs = []
    for k in ks:
        if head == "value":
            pairs += [(s, k, problem.value[s, k]) for s in rows if problem.has_task[s, k]]
            continue
        field = "blocks" if head == "curve" else "value_blocks"
        for b in getattr(problem, field)[k]:
            if rest in b.params and np.ndim(b.params[rest]) == 1:
                pos = {int(s): j for j, s in enumerate(b.index)}
                pairs += [(s, k, b.params[rest][pos[s]]) for s in rows if int(s) in pos]
    if not pairs:
        raise SpecError(Problem(f"{where}.param", f"no cell of segment {d.segment!r}, task {d.task!r} has "
                                                  f"{d.param!r}"))
    arr = np.array(pairs, dtype=float)
    return head, rest, arr[:, :2].astype(int), arr[:, 2]


def _apply(problem: DynamicProblem, changes: list[tuple[str, Any, np.ndarray, np.ndarray]]) -> DynamicProblem:
    """``problem`` with the drawn values of one sample."""
    margin, members, value = problem.margin.copy(), problem.members.copy(), problem.value.copy()
    arrivals = problem.arrivals.copy()
    blocks = {"curve": [list(b) for b in problem.blocks], "value_curve": [list(b) for b in problem.value_blocks]}
    for kind, key, where, vals in changes:
        if kind == "margin_all":
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(problem.margin[where, 1] != 0, vals / problem.margin[where, 1], 1.0)
            margin[where] = problem.margin[where] * ratio[:, None]
        elif kind in ("margin", "members"):
            (margin if kind == "margin" else members)[where, key] = vals
        elif kind == "arrivals":
            arrivals[2:, where] = vals[None]
        elif kind == "value":
            value[where[:, 0], where[:, 1]] = vals
        else:
            for (s, k), v in zip(where, vals):
                lst = blocks[kind][k]
                for j, b in enumerate(lst):
                    hit = np.flatnonzero(b.index == s)
                    if len(hit) and key in b.params:
                        params = dict(b.params)
                        params[key] = params[key].copy()
                        params[key][hit[0]] = v
                        lst[j] = dataclasses.replace(b, params=params)
    return dataclasses.replace(problem, margin=margin, members=members, value=value, arrivals=arrivals,
                               blocks=tuple(tuple(b) for b in blocks["curve"]),
                               value_blocks=tuple(tuple(b) for b in blocks["value_curve"]))


def least_spend_plan(problem: DynamicProblem) -> FixedPlan:
    """Every task at its least spend per member (the baseline to compare with)."""
    return FixedPlan(x=np.where(problem.allowed, problem.lo[None], 0.0)[None], weights=np.ones(1))


def evaluate_risk(problem: DynamicProblem, result: DynamicResult, spec: DynamicUncertainty,
                  count: int | None = None, seed: int | None = None, alpha: float | None = None) -> DynamicRisk:
    """Evaluate the plan of ``result`` (and the least-spend baseline) across sampled parameters."""
    if problem.steady_state:
        raise SpecError(Problem("periods", "uncertainty needs a finite horizon (periods: a number)"))
    problems = [p for i, d in enumerate(spec.distributions) for p in _check(d, i)]
    if not spec.distributions:
        problems.append(Problem("uncertainty.distributions", "lists no distributions: add at least one, e.g. "
                                                             "{param: margin, dist: lognormal, sigma: 0.1}"))
    if problems:
        raise SpecError(problems)
    count = count or spec.samples or 1000
    seed = spec.seed if seed is None else seed
    alpha = spec.alpha if alpha is None else alpha
    rng = np.random.default_rng(seed)
    targets = [_targets(problem, d, i) for i, d in enumerate(spec.distributions)]
    draws = [_draw(rng, d, t[3], count) for d, t in zip(spec.distributions, targets)]
    plan = fixed_plan(result)
    plans = {"plan": plan.holding_spend(problem), "plan_per_member": plan, "least_spend": least_spend_plan(problem)}
    rows = result.rows
    ce = {name: np.empty(count) for name in plans}
    broken = {name: np.zeros(count, bool) for name in plans}
    spend = {name: np.empty((count, problem.T)) for name in plans}
    for i in range(count):
        sample = _apply(problem, [(t[0], t[1], t[2], dr[i]) for t, dr in zip(targets, draws)])
        for name, plan in plans.items():
            o = follow_plan(sample, plan)
            ce[name][i] = o.value.sum()
            spend[name][i] = o.spend.sum(axis=1)
            if rows is not None:
                broken[name][i] = bool(np.any(rows[0] @ spend[name][i] > rows[1] * (1 + 1e-9) + 1e-9))
        bad = [name for name in plans if not np.isfinite(ce[name][i])]
        if bad:
            raise SpecError(Problem("uncertainty.distributions", f"sample {i} gives parameters the curves cannot "
                                                                 f"evaluate (a value that is not finite); narrow "
                                                                 f"the distributions"))
    table = []
    for name in plans:
        v = np.sort(ce[name])
        tail = v[: max(1, int(np.ceil(alpha * count)))]
        table.append({"plan": name, "mean": float(v.mean()), "std": float(v.std(ddof=1)),
                      "quantile": float(np.quantile(v, alpha)), "cvar": float(tail.mean()),
                      "min": float(v[0]), "max": float(v[-1]),
                      "budget_broken_share": float(broken[name].mean()),
                      "mean_total_spend": float(spend[name].sum(axis=1).mean())})
    samples = pd.DataFrame({"sample": np.arange(count),
                            **{f"customer_equity_{n}": ce[n] for n in plans},
                            **{f"spend_{t + 1}_plan_per_member": spend["plan_per_member"][:, t]
                               for t in range(problem.T)},
                            "budget_broken_plan_per_member": broken["plan_per_member"]})
    return DynamicRisk(table=pd.DataFrame(table), samples=samples, count=count, alpha=alpha)
