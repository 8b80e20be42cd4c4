"""Benchmark: multi-period plans (issue 9) - the certified solver at scale, the steady state, and
a local NLP on the direct formulation.

1. 12 periods x 1,000 segments x 3 tasks (36,000 decision cells), per-period budgets (and one
   total budget) at half a rough unconstrained spend, to a certified gap of 1e-6. Time is the
   best of 3 end to end (compile excluded: it is done once), with the gap, the largest
   deviation of the dynamic optimality check, Newton iterations and backward/forward passes.
   With S-shaped curves (30% of acquisition and win-back curves, Hill shape 1.5-3) the
   per-period case runs on a tenth of the segments, once: at its kinks the search falls
   back to Dantzig-Wolfe column generation, which is slow (see the README's limits).
2. Steady state (infinite horizon, no budget): Blattberg-Deighton's single segment, and 1,000
   segments with all three tasks; policy iteration to a Bellman residual of 1e-13 relative.
3. Small instances solved by SLSQP (scipy) and Ipopt (cyipopt, when it imports) on the direct
   nonlinear formulation with the flow equations (allocator.dynamic.direct), both with
   finite-difference gradients; their objective relative to ours (positive: above ours).

Run: python benchmarks/bench_dynamic.py [--segments 1000] [--periods 12]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import header
from allocator.dynamic import compile_dynamic, dynamic_from_dict, plan_dynamic, solve_dynamic
from allocator.dynamic.check import check_dynamic
from allocator.dynamic.direct import solve_direct
from allocator.dynamic.examples import blattberg_deighton, random_scenario


def best_of(fn, repeats: int = 3):
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def large(segments: int, periods: int) -> None:
    print("| instance | cells | budget rows | time (s) | certified gap | KKT deviation | Newton iterations | "
          "passes |")
    print("|---|---|---|---|---|---|---|---|")
    for budget, s_share, n in (("per_period", 0.0, segments), ("total", 0.0, segments),
                               ("total", 0.3, segments), ("per_period", 0.3, max(segments // 10, 1))):
        problem = compile_dynamic(dynamic_from_dict(random_scenario(n, periods, seed=7, budget=budget,
                                                                    tightness=0.5, s_curves=s_share)))
        seconds, result = best_of(lambda: solve_dynamic(problem, 1e-6), 3 if not s_share else 1)
        chk = check_dynamic(problem, result)
        rows = len(problem.budgets[1])
        label = f"{budget} budgets" + (f", {s_share:.0%} S-curves" if s_share else ", concave")
        print(f"| {label} | {periods * n * 3:,} | {rows} | {seconds:.2f} | {result.gap:.1e} | "
              f"{chk.max_deviation:.1e} | {result.iterations} | {result.passes} |")


def steady(segments: int) -> None:
    print("| steady state | segments | time (ms) | Bellman residual | policy iterations |")
    print("|---|---|---|---|---|")
    bd = compile_dynamic(dynamic_from_dict(blattberg_deighton(100.0, 0.1, 0.4, 0.02, 0.8, 0.05)))
    data = random_scenario(segments, 1, seed=3, budget="none")
    data["periods"] = "infinite"
    for seg in data["segments"]:
        seg.pop("terminal")
    many = compile_dynamic(dynamic_from_dict(data))
    for name, problem in (("Blattberg-Deighton", bd), ("3 tasks, random", many)):
        seconds, result = best_of(lambda: solve_dynamic(problem), 5)
        print(f"| {name} | {problem.S:,} | {1000 * seconds:.1f} | {result.steady.residual:.1e} | "
              f"{result.steady.iterations} |")


def nlp() -> None:
    try:
        import cyipopt  # noqa: F401
        ipopt = True
    except ImportError:
        ipopt = False
    print(f"Ipopt (cyipopt): {'installed' if ipopt else 'not installed; its columns are left out'}.")
    print()
    head = "| segments x periods | budget | ours (s) | SLSQP (s) | SLSQP vs ours | "
    head += "Ipopt (s) | Ipopt vs ours | time ratio SLSQP / Ipopt to ours |" if ipopt else "time ratio |"
    print(head)
    print("|---|---|---|---|---|" + ("---|---|---|" if ipopt else "---|"))
    for S, T, budget in ((1, 2, "per_period"), (1, 4, "per_period"), (2, 3, "total"), (2, 3, "per_period")):
        problem = compile_dynamic(dynamic_from_dict(random_scenario(S, T, seed=11, budget=budget, tightness=0.4)))
        ours_t, ours = best_of(lambda: plan_dynamic(problem))
        ref = ours.summary["customer_equity"]
        row = f"| {S} x {T} | {budget} | {ours_t:.3f} |"
        ratios = []
        for method in ("SLSQP", "ipopt") if ipopt else ("SLSQP",):
            t0 = time.perf_counter()
            direct = solve_direct(problem, method=method)
            seconds = time.perf_counter() - t0
            ratios.append(f"{seconds / ours_t:,.0f}x")
            flag = "" if direct.success else " (not converged)"
            row += f" {seconds:.2f} | {(direct.value - ref) / abs(ref):+.1e}{flag} |"
        print(row + f" {' / '.join(ratios)} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--segments", type=int, default=1000)
    ap.add_argument("--periods", type=int, default=12)
    args = ap.parse_args()
    header()
    large(args.segments, args.periods)
    print()
    steady(args.segments)
    print()
    nlp()


if __name__ == "__main__":
    main()
