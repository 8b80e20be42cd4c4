"""Benchmark: sweep throughput, 1,000 variants of a 50-cell scenario, three executors.

The scenario has 50 cells (17 segments x 3 tasks, one dropped; exponential curves, a budget that
binds); the variants cross 100 budgets with 10 retention-cost assumptions (every retention
curve's rate scaled by 0.7 .. 1.3). Each variant is validated, compiled, solved exactly, checked,
and its rows streamed to disk. Executors: a plain loop in this process (``serial``), local
processes (``local``, 2 workers), and a 2-worker Dask LocalCluster (worker processes, one thread
each) reached through ``dask://host:port``, the same code path as a remote cluster. The tables of
all three are checked to be identical.

Run: python benchmarks/bench_sweep.py [--variants 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import header
from allocator.scenarios import Sweep, run_sweep


def base_scenario(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    segments = []
    for s in range(17):
        tasks = {}
        for t in ("acquisition", "retention", "winback"):
            if s == 16 and t == "winback":
                continue
            c = float(rng.uniform(0.05, 0.6))
            tasks[t] = {"pool": float(round(rng.uniform(200, 5000))), "value": float(round(rng.uniform(50, 3000))),
                        "curve": {"family": "exponential", "ceiling": c, "floor": float(c * rng.uniform(0, 0.5)),
                                  "rate": float(rng.uniform(0.002, 0.05))},
                        "current_spend": float(round(rng.uniform(1000, 20000)))}
        segments.append({"id": f"seg{s:02d}", "tasks": tasks})
    return {"name": "bench50", "budget": {"total": 500000.0}, "segments": segments}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", type=int, default=1000, help="a multiple of 10")
    args = ap.parse_args()
    nb = max(args.variants // 10, 1)
    sweep = Sweep(base_scenario(), grid={
        "budget.total": {"from": 100000, "to": 2000000, "steps": nb},
        "retention_cost": {f"x{k:.2f}": {"segments.*.tasks.retention.curve.rate": {"scale": float(1 / k)}}
                           for k in np.linspace(0.7, 1.3, 10)}})
    header()
    print(f"{len(sweep.variants):,} variants x {sweep.base.segments and sum(len(s.tasks) for s in sweep.base.segments)} "
          f"cells")
    print()
    print("| executor | workers | seconds | variants / s | tables identical to the loop |")
    print("|---|---|---|---|---|")
    from distributed import LocalCluster

    ref = None
    runs = [("plain loop (serial)", "serial", 1), ("local processes", "local", 2), ("Dask LocalCluster", None, 2)]
    with tempfile.TemporaryDirectory() as tmp:
        for name, ex, workers in runs:
            cluster = None
            if ex is None:  # started only now, so that its idle workers do not share the cores with the others
                cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
                ex = cluster.scheduler_address.replace("tcp://", "dask://")
            out = Path(tmp) / name.split()[0]
            t0 = time.perf_counter()
            run_sweep(sweep, out, executor=ex, workers=workers, progress=False)
            dt = time.perf_counter() - t0
            if cluster is not None:
                cluster.close()
            tables = (out / "cells.csv").read_text() + (out / "summary.csv").read_text()
            ref = ref or tables
            print(f"| {name} | {workers} | {dt:.2f} | {len(sweep.variants) / dt:,.0f} | "
                  f"{'yes' if tables == ref else 'NO'} |", flush=True)

if __name__ == "__main__":
    main()
