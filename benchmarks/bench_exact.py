"""Benchmark (issue 2): the exact multiplier solver on random concave instances, and scipy SLSQP beside it.

Random exponential-curve instances with 1e3 .. 1e6 cells, box bounds on a fifth
of the cells and a budget at half the unconstrained optimum's spend. For each
size it times, separately:

* validate: the scenario mapping through the pydantic schema and rules,
* compile: the validated scenario into arrays,
* solve: the exact solver (with its Lagrangian certificate),

and counts the solver's vectorized passes over the cells. SLSQP (the local
method media-mix tools use; analytic gradient, budget as an inequality,
equal-split start) runs on the same instances while it finishes within a
minute (ten by default, on a shared machine); the table reports the objective difference and the speed ratio.

Run: python benchmarks/bench_exact.py > benchmarks/results/bench_exact.md
    (options: [--sizes 1000 10000 100000 1000000] [--slsqp-max 1000])
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.optimize import minimize

from _common import header

from allocator.compile import compile_scenario
from allocator.solvers import solve
from allocator.spec import scenario_from_dict


def instance(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    pool = rng.uniform(100, 10_000, n).round(0)
    value = rng.uniform(50, 2_000, n).round(2)
    ceiling = rng.uniform(0.02, 0.6, n).round(4)
    rate = rng.uniform(0.005, 0.5, n).round(5)
    k = rng.random(n)
    segments = []
    for i in range(n):
        cell = {"pool": float(pool[i]), "value": float(value[i]),
                "curve": {"family": "exponential", "ceiling": float(ceiling[i]), "rate": float(rate[i])}}
        if k[i] < 0.1:
            cell["min_spend"] = float(pool[i] * 0.5)
        elif k[i] > 0.9:
            cell["max_spend"] = float(pool[i] * 2.0)
        segments.append({"id": f"s{i}", "tasks": {"acquisition": cell}})
    # budget: half of the unconstrained optimum's spend (computed in closed form per cell)
    free = np.maximum(np.log(value * ceiling * rate) / rate, 0.0) * pool
    free = np.where(k < 0.1, np.maximum(free, pool * 0.5), np.where(k > 0.9, np.minimum(free, pool * 2.0), free))
    return {"name": f"bench{n}", "budget": {"total": float(0.5 * free.sum())}, "segments": segments}


def slsqp(problem, time_limit: float = 60.0):
    """scipy SLSQP from the equal-split start; returns (net value, seconds) or None if over the limit."""
    n, B = problem.n, problem.budget
    hi = np.minimum(problem.upper, B)
    x0 = np.clip(np.full(n, B / n), problem.lower, hi)
    t0 = time.perf_counter()

    class TooLong(Exception):
        pass

    def cb(_):
        if time.perf_counter() - t0 > time_limit:
            raise TooLong

    fun = lambda s: -problem.net_value(s)  # noqa: E731
    jac = lambda s: -(problem.marginal_return(s) - 1.0)  # noqa: E731
    try:
        res = minimize(fun, x0, jac=jac, method="SLSQP", bounds=list(zip(problem.lower, hi)),
                       constraints=[{"type": "ineq", "fun": lambda s: B - s.sum(), "jac": lambda s: -np.ones(n)}],
                       options={"maxiter": 1000, "ftol": 1e-12}, callback=cb)
    except TooLong:
        return None
    return problem.net_value(res.x), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="*", default=[300, 1_000, 10_000, 100_000, 1_000_000])
    ap.add_argument("--slsqp-max", type=int, default=1_000, help="largest size to try SLSQP on")
    ap.add_argument("--slsqp-limit", type=float, default=600.0, help="seconds before SLSQP is abandoned")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    header()
    print("| cells | validate (s) | compile (s) | solve (ms, best of %d) | passes | certified gap | SLSQP (s) "
          "| SLSQP objective vs ours (rel.) | speed ratio |" % args.repeat)
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        data = instance(n)
        t = time.perf_counter(); sc = scenario_from_dict(data); t_val = time.perf_counter() - t
        t = time.perf_counter(); prob = compile_scenario(sc); t_comp = time.perf_counter() - t
        best = np.inf
        for _ in range(args.repeat):
            t = time.perf_counter(); res = solve(prob, "exact"); best = min(best, time.perf_counter() - t)
        ours = prob.net_value(res.spend)
        cells = [f"{n:,}", f"{t_val:.2f}", f"{t_comp:.2f}", f"{best * 1e3:.1f}", str(res.passes),
                 f"{res.optimality_gap:.1e}"]
        if n <= args.slsqp_max:
            out = slsqp(prob, args.slsqp_limit)
            if out is None:
                cells += [f"> {args.slsqp_limit:.0f}", "did not finish", "—"]
            else:
                obj, secs = out
                cells += [f"{secs:.1f}", f"{(obj - ours) / abs(ours):+.1e}", f"{secs / best:,.0f}x"]
        else:
            cells += ["—", "not run (O(n²) memory, > 1 min)", "—"]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
