"""Dual route vs global solver on constraint-laden concave problems (issue 8 item 11, issue 11 item 3).

The instance is the one of ``bench_global.py`` part 2: random concave cells (exponential, and
hill curves with shape <= 1 on 30% of them), budget at half the free optimum's spend, two pots,
three task floors/caps, a retention share and an acquisition/win-back ratio. A second table adds
an average-efficiency rule (acquisition ROI >= 1.2 x its value at the rules-only optimum), which
only the dual route handles. Times are wall-clock seconds of ``solve`` (best of ``--repeat``).

    python benchmarks/bench_rules.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np

from _common import header
from allocator.curves import get_family
from allocator.kkt import check_general
from allocator.problem import CompiledProblem, CurveBlock, EfficiencyConstraint, LinearConstraint
from allocator.solvers import solve


def concave_constrained(n: int, seed: int = 0) -> CompiledProblem:
    """The instance of ``bench_global.concave_constrained`` (copied so the two stay comparable)."""
    rng = np.random.default_rng(seed)
    pool = rng.uniform(100, 10_000, n)
    value = rng.uniform(50, 2_000, n)
    c = rng.uniform(0.02, 0.6, n)
    hill = rng.random(n) < 0.3
    ie, ih = np.flatnonzero(~hill), np.flatnonzero(hill)
    blocks = (CurveBlock(get_family("exponential"), ie, {"ceiling": c[ie],
                                                          "floor": rng.uniform(0, 0.5, len(ie)) * c[ie],
                                                          "rate": rng.uniform(0.005, 0.5, len(ie))}),
              CurveBlock(get_family("hill"), ih, {"ceiling": c[ih], "floor": np.zeros(len(ih)),
                                                  "half_saturation": rng.uniform(1, 100, len(ih)),
                                                  "shape": rng.uniform(0.5, 1.0, len(ih))}))
    task = rng.choice(["acquisition", "retention", "winback"], n)
    base = CompiledProblem(name="concave", segment=np.array([f"s{i}" for i in range(n)], dtype=object),
                           task=task.astype(object), pool=pool, value=value, lower=np.zeros(n),
                           upper=np.full(n, np.inf), current_spend=np.full(n, np.nan), blocks=blocks)
    free = solve(base, "exact").spend
    B = 0.5 * free.sum()
    rows = []
    for name, t, lo, hi in [("acq_cap", "acquisition", None, 0.45), ("ret_floor", "retention", 0.3, None),
                            ("wb_cap", "winback", None, 0.1)]:
        idx = np.flatnonzero(task == t)
        rows.append(LinearConstraint(name, idx, np.ones(len(idx)), -np.inf if lo is None else lo * B,
                                     np.inf if hi is None else hi * B, text=name, kind="spend"))
    half = rng.random(n) < 0.5
    for name, m, share in [("pot_east", half, 0.55), ("pot_west", ~half, 0.55)]:
        idx = np.flatnonzero(m)
        rows.append(LinearConstraint(name, idx, np.ones(len(idx)), -np.inf, share * B, text=name, kind="budget"))
    ret = (task == "retention").astype(float)
    rows.append(LinearConstraint("ret_share", np.arange(n), ret - 0.35, 0.0, np.inf, text="share", kind="share"))
    coef = (task == "acquisition") - 4.0 * (task == "winback")
    idx = np.flatnonzero(coef)
    rows.append(LinearConstraint("acq_vs_wb", idx, coef[idx].astype(float), -np.inf, 0.0, text="ratio", kind="ratio"))
    return dataclasses.replace(base, budget=float(B), constraints=tuple(rows))


def objective(p: CompiledProblem, s: np.ndarray) -> float:
    return float(p.expected_value(s).sum() - p.objective.rate * s.sum())


def timed(p: CompiledProblem, solver: str, repeat: int):
    best, r = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = solve(p, solver)
        best = min(best, time.perf_counter() - t0)
    return r, best


def with_roi_rule(p: CompiledProblem, plan: np.ndarray) -> CompiledProblem:
    acq = np.flatnonzero(p.task == "acquisition")
    roi = 1.2 * float(p.expected_value(plan)[acq].sum() / plan[acq].sum())
    rule = EfficiencyConstraint("acq_roi", acq, p.value[acq], roi, "min_roi", roi,
                                text=f"'acq_roi': value of tasks [acquisition] >= {roi:.4g} x its spend")
    return dataclasses.replace(p, efficiency=(rule,))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--global-max", type=int, default=100_000, help="largest size also run on the global solver")
    args = ap.parse_args()
    header()
    print("### Constraint-laden concave problems: dual route vs global solver")
    print()
    print("| cells | dual s | dual gap | Newton its | passes | global s | global gap | objective dual - global "
          "(relative) | max shadow price diff | binding rows |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    plans = {}
    for n in args.sizes:
        p = concave_constrained(n)
        d, td = timed(p, "dual", args.repeat)
        plans[n] = (p, d.spend)
        binding = sum(1 for v in d.constraint_duals.values() if v != 0.0)
        if n <= args.global_max:
            g, tg = timed(p, "global", 1)
            rel = (objective(p, d.spend) - objective(p, g.spend)) / abs(objective(p, g.spend))
            dy = max(abs(v - g.constraint_duals.get(k, 0.0)) for k, v in d.constraint_duals.items())
            gcols = f"{tg:.2f} | {g.optimality_gap:.1e} | {rel:+.1e} | {dy:.1e}"
        else:
            gcols = "- | - | - | -"
        print(f"| {n:,} | {td:.2f} | {d.optimality_gap:.1e} | {d.iterations} | {d.passes} | {gcols} | {binding} |")
        sys.stdout.flush()
    print()
    print("### The same with an average-efficiency rule (acquisition ROI >= 1.2 x its rules-only value)")
    print()
    print("| cells | dual s | dual gap | Newton its | shadow price of the rule | rule slack / group spend | "
          "KKT check (max deviation) |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for n, (p, plan) in plans.items():
        q = with_roi_rule(p, plan)
        d, td = timed(q, "dual", args.repeat)
        rule = q.efficiency[0]
        slack = rule.activity(q, d.spend) / d.spend[rule.index].sum()
        chk = check_general(q, d.spend, 1e-6)
        print(f"| {n:,} | {td:.2f} | {d.optimality_gap:.1e} | {d.iterations} | {d.constraint_duals['acq_roi']:.4f} | "
              f"{slack:+.1e} | {'ok' if chk.feasible and chk.kkt_max_deviation <= 1e-6 else 'failed'} "
              f"({chk.kkt_max_deviation:.1e}) |")
        sys.stdout.flush()
    print()


if __name__ == "__main__":
    main()
