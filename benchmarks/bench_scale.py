"""Scale (issue 11): cells tables end to end, S-curves by the envelope solver, rules vs cvxpy, Dask.

Parts (each prints a markdown table; times are wall-clock seconds, memory is peak RSS):

* ``plan``: ``allocator plan S.yaml`` where ``S.yaml`` says ``cells: cells.parquet`` (random
  exponential cells, budget binding), run as a subprocess under ``/usr/bin/time -v``; beside it
  a minimal read -> numpy multiplier -> write script on the same file;
* ``scurve``: the envelope solver against a plain numpy envelope reference (closed-form tangent
  from 0, bisection on the multiplier, the single fractional cell dropped, Lagrangian bound), on
  the hill S-curves of ``tests/helpers.s_curve_problem`` (shape 1.5..3, budget 30%);
* ``rules``: the dual route against cvxpy + Clarabel and Ipopt (a direct cyipopt model,
  ``tests/ipopt_reference.py``; its time includes its LP start point) on concave problems with pots,
  floors/caps, a share and a ratio (hill curves with shape 1 so that the problem is DCP);
* ``dask``: a Parquet cells folder on a 2-worker ``LocalCluster`` against the same solve locally.

    python benchmarks/bench_scale.py --part plan --sizes 100000 1000000
    python benchmarks/bench_scale.py --part scurve --sizes 3000 300000
    python benchmarks/bench_scale.py --part rules --sizes 10000 100000
    python benchmarks/bench_scale.py --part dask --sizes 1000000
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _common import header  # noqa: E402

MINIMAL = r'''
import sys, numpy as np, pyarrow as pa, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1]); B = float(sys.argv[2])
pool, v, c, r = (t[k].to_numpy() for k in ("pool", "value", "ceiling", "rate"))
amp = np.log(v * c * r) / r; inv = 1 / r
def S(lam): return pool * np.maximum(amp - inv * np.log(lam), 0)
a, b = 0.0, 1.0
while S(np.exp(b)).sum() > B: a, b = b, 2 * b
for _ in range(60):
    m = 0.5 * (a + b)
    if S(np.exp(m)).sum() > B: a = m
    else: b = m
s = S(np.exp(b))
pq.write_table(pa.table({"segment": t["segment"], "task": t["task"], "spend": s,
                         "expected_value": pool * v * c * -np.expm1(-r * s / pool)}), sys.argv[3])
'''


def _timed_run(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MiB) of ``cmd`` under /usr/bin/time -v."""
    out = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", out.stderr).group(1)
    parts = [float(x) for x in wall.split(":")]
    secs = sum(x * 60 ** i for i, x in enumerate(reversed(parts)))
    rss = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)) / 1024
    return secs, rss, out.stdout


def part_plan(sizes: list[int]) -> None:
    from allocator.tables import random_cells_table, write_cells_table

    print("| cells | `allocator plan` (Parquet in, Parquet out) | peak memory | minimal script | its memory | ratio |")
    print("|---|---|---|---|---|---|")
    for n in sizes:
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            write_cells_table(random_cells_table(n, seed=1), d / "cells.parquet")
            budget = 50.0 * n
            (d / "s.yaml").write_text(f"name: scale\nbudget: {{total: {budget}}}\ncells: cells.parquet\n")
            t1, m1, _ = _timed_run([sys.executable, "-m", "allocator", "plan", str(d / "s.yaml"), "--out",
                                    str(d / "out"), "--quiet"])
            (d / "min.py").write_text(MINIMAL)
            t2, m2, _ = _timed_run([sys.executable, str(d / "min.py"), str(d / "cells.parquet"), str(budget),
                                    str(d / "min.parquet")])
        print(f"| {n:,} | {t1:.2f} s | {m1:,.0f} MiB | {t2:.2f} s | {m2:,.0f} MiB | {t1 / t2:.1f}x |")


# ---------------------------------------------------------------- S-curves

def numpy_envelope_reference(p) -> tuple[float, float, float]:
    """The issue's numpy reference: envelope from 0 (hill closed form), bisection, drop the fractional cell.

    Returns (plan net value, Lagrangian bound, seconds).
    """
    t0 = time.perf_counter()
    P = p.blocks[0].params
    k, h, c = P["shape"], P["half_saturation"], P["ceiling"]
    A = p.value * c
    zt = np.power(k - 1.0, 1.0 / k)
    t = zt * h
    m = A * (zt ** k / (1 + zt ** k)) / t            # chord slope from 0 to the tangent point

    def inverse(lam):                                 # f'(x) = lam on [t, inf): bisection in log x
        lo, hi = np.log(t), np.log(t) + 12.0
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            z = np.exp(mid) / h
            d = A * k * z ** (k - 1) / (h * (1 + z ** k) ** 2)
            lo, hi = np.where(d > lam, mid, lo), np.where(d > lam, hi, mid)
        return np.exp(lo)

    def spend(lam):
        return np.where(m > lam, p.pool * inverse(lam), 0.0)

    a, b = 0.0, 1.0
    while spend(math.exp(b)).sum() > p.budget:
        a, b = b, 2 * b
    for _ in range(50):
        mid = 0.5 * (a + b)
        if spend(math.exp(mid)).sum() > p.budget:
            a = mid
        else:
            b = mid
    s = spend(math.exp(b))
    lam = math.exp(b)
    bound = float(p.expected_value(s).sum() - lam * s.sum() + (lam - 1) * p.budget)
    return p.net_value(s), bound, time.perf_counter() - t0


def s_curve_instance(n: int, seed: int, budget_share: float):
    """``tests/helpers.s_curve_problem``'s cells; the budget a share of the spend at marginal return 1
    (found by the envelope solver without a budget, instead of the helper's dense grid)."""
    from allocator.solvers import solve
    from helpers import s_curve_problem

    rng_free = s_curve_problem(n, seed=seed, budget_share=None)
    free = solve(rng_free, "envelope").spend.sum()
    return dataclasses.replace(rng_free, budget=float(budget_share * free))


def part_scurve(sizes: list[int]) -> None:
    from allocator.solvers import solve

    print("| cells | envelope solver | certified gap | numpy reference | its gap | envelope plan vs reference |")
    print("|---|---|---|---|---|---|")
    for n in sizes:
        p = s_curve_instance(n, seed=7, budget_share=0.3)
        t0 = time.perf_counter()
        r = solve(p, "envelope", 1e-4)
        t1 = time.perf_counter() - t0
        v = p.net_value(r.spend)
        rv, rb, rt = numpy_envelope_reference(p)
        rgap = (rb - rv) / abs(rv)
        print(f"| {n:,} | {t1:.3f} s | {r.optimality_gap:.1e} | {rt:.3f} s | {rgap:.1e} | {(v - rv) / abs(rv):+.1e} |")


# ---------------------------------------------------------------- general rules

def dcp_constrained(n: int, seed: int = 0):
    """``bench_rules.concave_constrained`` with hill shapes set to 1 (so that cvxpy can take it)."""
    from allocator.problem import CurveBlock
    from bench_rules import concave_constrained

    p = concave_constrained(n, seed)
    blocks = tuple(CurveBlock(b.family, b.index, {**b.params, "shape": np.ones(len(b.index))})
                   if b.family.name == "hill" else b for b in p.blocks)
    return dataclasses.replace(p, blocks=blocks)


def part_rules(sizes: list[int]) -> None:
    from allocator.solvers import solve
    from cvx_reference import cvxpy_solve
    from ipopt_reference import ipopt_solve

    print("| cells | dual route | its gap | cvxpy + Clarabel | objective, dual - Clarabel (relative) | Ipopt "
          "| Ipopt status (iterations) | Ipopt max row violation (relative) | objective, dual - Ipopt (relative) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        p = dcp_constrained(n, seed=1)
        t0 = time.perf_counter()
        r = solve(p, "dual", 1e-7)
        t1 = time.perf_counter() - t0
        v = p.net_value(r.spend)
        try:
            s, t2 = cvxpy_solve(p)
            diff = (v - p.net_value(s)) / abs(p.net_value(s))
            ref = f"{t2:.2f} s"
        except Exception as exc:  # noqa: BLE001  (report, do not hide)
            ref, diff = f"failed: {type(exc).__name__}", float("nan")
        try:
            q = ipopt_solve(p, tol=1e-8, time_limit=600.0)
            ipo = f"{q.seconds:.2f} s | {q.status_text} ({q.iterations}) | {q.max_row_violation:.1e}"
            idiff = (v - q.net_value) / abs(q.net_value)
        except Exception as exc:  # noqa: BLE001  (report, do not hide)
            ipo, idiff = f"failed: {type(exc).__name__} | - | -", float("nan")
        print(f"| {n:,} | {t1:.2f} s | {r.optimality_gap:.1e} | {ref} | {diff:+.1e} | {ipo} | {idiff:+.1e} |")
        sys.stdout.flush()


# ---------------------------------------------------------------- Dask

def part_dask(sizes: list[int], partitions: int) -> None:
    import dask.dataframe as dd
    import distributed

    from allocator.scale_dask import solve_dask, solve_partitions
    from allocator.tables import random_cells_table, write_cells_table

    print("| cells | partitions | 2-worker LocalCluster | trials | peak memory per worker | local (same code) "
          "| same plan |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            (d / "cells").mkdir()
            step = -(-n // partitions)
            for k in range(partitions):
                lo = k * step
                df = random_cells_table(min(step, n - lo), seed=100 + k)
                df["segment"] = [f"p{k}s{i}" for i in range(len(df))]
                write_cells_table(df, d / "cells" / f"part-{k:04d}.parquet")
            scenario = {"name": "dask", "budget": {"total": 50.0 * n}}
            with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                                          memory_limit="3GiB") as cluster, distributed.Client(cluster) as client:
                ddf = dd.read_parquet(str(d / "cells"))
                t0 = time.perf_counter()
                remote = solve_dask(scenario, ddf, client, d / "dask")
                t1 = time.perf_counter() - t0
                peak = client.run(lambda: __import__("resource").getrusage(
                    __import__("resource").RUSAGE_SELF).ru_maxrss / 1024)
            import pandas as pd
            t0 = time.perf_counter()
            local = solve_partitions(scenario, [pd.read_parquet(f) for f in sorted((d / "cells").glob("*.parquet"))],
                                     d / "local")
            t2 = time.perf_counter() - t0
            same = remote.net_value == local.net_value and remote.marginal_return == local.marginal_return
        mem = ", ".join(f"{v:,.0f} MiB" for v in peak.values())
        print(f"| {n:,} | {partitions} | {t1:.1f} s | {remote.trials} | {mem} | {t2:.1f} s | {same} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("plan", "scurve", "rules", "dask"), required=True)
    ap.add_argument("--sizes", type=int, nargs="+", required=True)
    ap.add_argument("--partitions", type=int, default=8)
    args = ap.parse_args()
    header()
    {"plan": lambda: part_plan(args.sizes), "scurve": lambda: part_scurve(args.sizes),
     "rules": lambda: part_rules(args.sizes), "dask": lambda: part_dask(args.sizes, args.partitions)}[args.part]()


if __name__ == "__main__":
    main()
