"""Benchmark: budget frontier by the multiplier path vs re-solving every budget from scratch.

Random concave problems (70% exponential, 30% hill shape 1 curves; a tenth of the cells with a
min_spend, a fifth with a max_spend); 200 budgets from the cells' minimum total to 1.2x the
unconstrained optimum's spend. The path is timed end to end (building the event sums, every
budget's plan, the table and the events); re-solving runs the exact solver at each budget. The
last column is the largest relative difference of net value between the two over all budgets.

Run: python benchmarks/bench_frontier.py [--cells 1000 10000 100000] [--points 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from _common import concave_problem, header
from allocator.analysis import budget_frontier
from allocator.solvers import solve


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--points", type=int, default=200)
    args = ap.parse_args()
    header()
    print("| cells | budgets | multiplier path (s) | events in range | re-solve each budget (s) | speed-up | "
          "max rel. difference of net value |")
    print("|---|---|---|---|---|---|---|")
    for n in args.cells:
        p = concave_problem(n, seed=n)
        free = solve(dataclasses.replace(p, budget=None), "exact").spend.sum()
        lo, hi = p.lower.sum(), 1.2 * free
        best = np.inf
        for _ in range(3):
            t0 = time.perf_counter()
            fr = budget_frontier(p, lo, hi, points=args.points)
            best = min(best, time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref = np.array([p.net_value(solve(dataclasses.replace(p, budget=float(b)), "exact").spend)
                        for b in fr.table["budget"]])
        t_solve = time.perf_counter() - t0
        diff = float(np.max(np.abs(fr.table["net_value"].to_numpy() - ref) / np.abs(ref)))
        print(f"| {n:,} | {args.points} | {best:.3f} | {len(fr.events):,} | {t_solve:.2f} | {t_solve / best:,.1f}x | "
              f"{diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
