"""Plans under parameter uncertainty: baseline, nominal, risk-neutral and robust plans side by side.

The pieces live in themed modules, re-exported here so that ``allocator.analysis.uncertainty``
stays the one import for callers:

* :mod:`.samples` -- parameter draws from a model's ``samples:`` or declared distributions;
* :mod:`.evaluation` -- a plan's net value in every sample (any curves), CVaR, quantiles;
* :mod:`.risk_lp` -- mean and CVaR plans for concave curves (column generation, exact);
* :mod:`.risk_global` -- mean and CVaR plans for any curves and integer features (sampled MILP:
  lifts, breakpoints, refinement), with the MILP itself in :mod:`.risk_model`;
* this module -- :func:`compare_risk`, which runs them all on the same samples.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import Problem, SolverUnavailableError, SpecError
from .evaluation import PlanRisk, SampledCurves, cvar, evaluate_plan, quantile, risk_of
from .risk_lp import LP_OPTIONS, RiskPlan, optimize_risk, route
from .samples import (DEFAULT_SAMPLES, ParameterSamples, draw_samples, nominal_samples, samples_from_distributions,
                      samples_from_spec)

logger = logging.getLogger(__name__)


@dataclass
class RiskComparison:
    """Baseline, nominal, given, risk-neutral and robust plans evaluated on the same samples.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per plan: mean, std, p5, p95, CVaR and quantile at ``alpha``, probability of beating
        the baseline, total spend, and for optimized plans the certified gap and upper bound.
    plans : pandas.DataFrame
        One row per cell: spend under each plan.
    risk : dict
        Plan name -> :class:`PlanRisk` (with the sampled net values).
    optimized : dict
        Plan name -> :class:`RiskPlan`.
    refused : dict
        Plan name -> why it could not be optimized (only with ``on_refusal="skip"``).
    """

    table: pd.DataFrame
    plans: pd.DataFrame
    risk: dict[str, PlanRisk]
    optimized: dict[str, RiskPlan]
    samples: ParameterSamples = field(repr=False)
    refused: dict[str, str] = field(default_factory=dict)


def compare_risk(scenario: Any, samples: ParameterSamples | None = None, objective: str | None = None,
                 alpha: float | None = None, tolerance: float = 1e-6, plans: dict[str, Any] | None = None,
                 optimize: bool = True, on_refusal: str = "raise") -> RiskComparison:
    """Solve the risk-neutral and the robust plan and evaluate them beside the nominal plan and baseline.

    Parameters
    ----------
    scenario : path, Scenario or mapping
        Its ``uncertainty`` block gives the defaults of ``objective`` and ``alpha``.
    samples : ParameterSamples, optional
        Default: :func:`draw_samples` of the scenario.
    objective : str, optional
        The robust plan's measure: ``cvar`` (default) or ``quantile``; ``mean`` gives only the
        risk-neutral plan.
    plans : dict, optional
        Further plans to evaluate: name -> spend per cell (array in the problem's cell order).
    optimize : bool
        ``False`` evaluates the baseline, nominal and given plans only.
    on_refusal : str
        ``raise`` (default) lets a :class:`~allocator.errors.SolverUnavailableError` from the
        optimizers through; ``skip`` records it in ``refused`` and keeps the evaluated plans.
    """
    from ..compile import compile_scenario
    from ..solvers import solve
    from .baseline import baseline_spend, has_baseline
    from .common import as_scenario

    if on_refusal not in ("raise", "skip"):
        raise SpecError(Problem("on_refusal", f"must be raise or skip; got {on_refusal!r}"))
    sc = as_scenario(scenario)
    prob = compile_scenario(sc)
    unc = sc.uncertainty
    alpha = alpha if alpha is not None else (unc.alpha if unc else 0.1)
    objective = objective or (unc.objective if unc else "cvar")
    samples = samples if samples is not None else draw_samples(sc)
    curves = SampledCurves(prob, samples)
    base_net = curves.net(baseline_spend(prob)) if has_baseline(prob) else None
    spends: dict[str, np.ndarray] = {}
    optimized: dict[str, RiskPlan] = {}
    refused: dict[str, str] = {}
    if base_net is not None:
        spends["baseline"] = baseline_spend(prob)
    spends["nominal"] = solve(prob).spend
    for name, s in (plans or {}).items():
        s = np.asarray(s, float)
        if s.shape != (prob.n,):
            raise SpecError(Problem(f"plans.{name}", f"needs one spend per cell ({prob.n}); got shape {s.shape}"))
        spends[name] = s
    if optimize:
        wanted = [("risk_neutral", "mean")] + ([(f"robust_{objective}", objective)] if objective != "mean" else [])
        seeds = [spends["nominal"]] + ([spends["baseline"]] if "baseline" in spends else [])
        for name, measure in wanted:
            try:
                optimized[name] = optimize_risk(prob, samples, measure, alpha, tolerance, candidates=seeds)
            except SolverUnavailableError as exc:
                if on_refusal == "raise":
                    raise
                refused[name] = str(exc)
                continue
            spends[name] = optimized[name].spend
            seeds.append(spends[name])  # the robust plan starts from the risk-neutral one: never worse than it
    risk = {nm: risk_of(nm, curves.net(s), alpha, base_net) for nm, s in spends.items()}
    rows = []
    for nm, r in risk.items():
        row = r.row()
        row["total_spend"] = float(spends[nm].sum())
        row["certified_gap"] = optimized[nm].gap if nm in optimized else None
        row["upper_bound"] = optimized[nm].upper_bound if nm in optimized else None
        rows.append(row)
    table = pd.DataFrame({"segment": prob.segment, "task": prob.task, **{f"spend_{k}": v for k, v in spends.items()}})
    return RiskComparison(table=pd.DataFrame(rows), plans=table, risk=risk, optimized=optimized, samples=samples,
                          refused=refused)


__all__ = ["DEFAULT_SAMPLES", "LP_OPTIONS", "ParameterSamples", "PlanRisk", "RiskComparison", "RiskPlan",
           "SampledCurves", "compare_risk", "cvar", "draw_samples", "evaluate_plan", "nominal_samples",
           "optimize_risk", "quantile", "risk_of", "route", "samples_from_distributions", "samples_from_spec"]
