"""Benchmark: Monte Carlo over parameter samples, 1,000 samples x 300 cells.

Random concave problem (exponential and hill shape-1 curves, min/max spends on some cells, a
binding budget). Parameters drawn per sample: every curve rate (lognormal, sigma 0.3, per cell),
every value (lognormal, sigma 0.2, per cell) and a market-wide shock to all ceilings (lognormal,
sigma 0.2, shared). Timed: drawing, evaluating one plan on all samples (mean, 5th/95th
percentiles, CVaR), and optimizing the expected value and the CVaR of the worst 10% exactly
(column generation on the Rockafellar-Uryasev LP, HiGHS), each to a certified relative gap of 1e-6.

Second table (issue 8): S-shaped curves and integer features, through the sampled MILP with
curves lifted above every draw. Rows: the calibrated B2B model (2 cells, logistic-quadratic and a
steep hill, with its 200 bootstrap draws), and the constrained Northwind plan (22 cells, 4 S-shaped,
spend units, a minimum-if-active spend with activation cost, 5 rules) with 200 draws of every
half-saturation, rate (lognormal, sigma 0.25) and value (lognormal, sigma 0.2). Mean and CVaR of
the worst 10%, each to a certified relative gap of 1e-6 (B2B) and 1e-4 (constrained).

Run: python benchmarks/bench_uncertainty.py [--samples 1000] [--cells 300] [--only concave|scurves]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from _common import concave_problem, header
from allocator import compile_scenario, load_scenario
from allocator.analysis.uncertainty import draw_samples, evaluate_plan, optimize_risk, samples_from_distributions
from allocator.solvers import solve
from allocator.spec.models import DistributionSpec

SCURVE_DISTS = [DistributionSpec(param="curve.half_saturation", dist="lognormal", sigma=0.25),
                DistributionSpec(param="curve.rate", dist="lognormal", sigma=0.25),
                DistributionSpec(param="value", dist="lognormal", sigma=0.2)]


def scurves() -> None:
    """The S-curve table: certified gap, rounds and seconds of the sampled MILP."""
    print("| case | cells (S-shaped) | samples | plan | seconds | rounds | breakpoints per cell | certified gap | "
          "mean | CVaR 10% |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    b2b = load_scenario("scenarios/b2b_calibrated.yaml")
    cases = [("b2b_calibrated (bootstrap)", compile_scenario(b2b), draw_samples(b2b), 1e-6)]
    con = compile_scenario(load_scenario("scenarios/constrained.yaml"))
    cases.append(("constrained (units, min_active, 5 rules)", con,
                  samples_from_distributions(con, SCURVE_DISTS, 200, seed=3), 1e-4))
    for name, p, smp, tol in cases:
        nominal = solve(p).spend
        curves_s = int((~p.concave).sum())
        for obj in ("mean", "cvar"):
            rp = optimize_risk(p, smp, obj, alpha=0.1, tolerance=tol, candidates=[nominal])
            r = evaluate_plan(p, rp.spend, smp, alpha=0.1)
            print(f"| {name} | {p.n} ({curves_s}) | {smp.count} | {'expected value' if obj == 'mean' else 'CVaR 10%'} "
                  f"| {rp.seconds:.2f} | {rp.rounds} | {rp.columns // p.n} | {rp.gap:.1e} | {r.mean:,.0f} | "
                  f"{r.cvar:,.0f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--cells", type=int, default=300)
    ap.add_argument("--only", choices=("concave", "scurves"))
    args = ap.parse_args()
    if args.only == "scurves":
        header()
        scurves()
        return
    p = concave_problem(args.cells, seed=3)
    free = solve(dataclasses.replace(p, budget=None), "exact").spend.sum()
    p = dataclasses.replace(p, budget=float(p.lower.sum() + 0.5 * (free - p.lower.sum())))
    dists = [DistributionSpec(param="curve.rate", dist="lognormal", sigma=0.3),
             DistributionSpec(param="value", dist="lognormal", sigma=0.2),
             DistributionSpec(param="curve.ceiling", dist="lognormal", sigma=0.2, shared=True)]
    header()
    t0 = time.perf_counter()
    smp = samples_from_distributions(p, dists, args.samples, seed=1)
    t_draw = time.perf_counter() - t0
    nominal = solve(p, "exact").spend
    t0 = time.perf_counter()
    r_nom = evaluate_plan(p, nominal, smp, alpha=0.1)
    t_eval = time.perf_counter() - t0
    print(f"{args.samples:,} samples x {p.n} cells; drawing {t_draw:.3f} s; evaluating one plan {t_eval:.3f} s")
    print()
    print("| step | seconds | rounds | points (columns) | certified gap | mean | CVaR 10% | 5th pct | 95th pct |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| evaluate nominal plan | {t_eval:.3f} | | | | {r_nom.mean:,.0f} | {r_nom.cvar:,.0f} | {r_nom.p5:,.0f} | "
          f"{r_nom.p95:,.0f} |")
    for obj in ("mean", "cvar"):
        rp = optimize_risk(p, smp, obj, alpha=0.1)
        r = evaluate_plan(p, rp.spend, smp, alpha=0.1)
        print(f"| optimize {'expected value' if obj == 'mean' else 'CVaR (worst 10%)'} | {rp.seconds:.2f} | "
              f"{rp.rounds} | {rp.columns:,} | {rp.gap:.1e} | {r.mean:,.0f} | {r.cvar:,.0f} | {r.p5:,.0f} | "
              f"{r.p95:,.0f} |", flush=True)
    if args.only is None:
        print()
        scurves()


if __name__ == "__main__":
    main()
