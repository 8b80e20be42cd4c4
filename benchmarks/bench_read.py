"""Reading large YAML/JSON scenarios (issue 11): ``allocator plan`` against a minimal script, side by side.

Scenarios in the shape of ``scenarios/example.yaml`` (segments of three tasks; exponential and
hill curves with shape 1, random parameters; today's spend on some cells; one budget) are
written to a temporary folder. For each size and format, two subprocesses run on the same file,
each under ``/usr/bin/time -v`` (wall time and peak RSS; without it, ``getrusage`` of the
children gives the peak):

* ``python -m allocator plan FILE --out DIR --quiet``;
* a minimal read -> solve -> write script: ``json.load`` (or ``yaml.load`` with libyaml's
  ``CSafeLoader``), a loop over the cells into numpy arrays, the same exact solver
  (``allocator.solvers.solve(problem, "exact")``) and ``pandas.DataFrame.to_csv`` of segment,
  task, spend and expected value.

A second table splits allocator's time, measured in one process doing what ``allocator plan``
does: read and validate (the multi-period check and ``load_scenario``), compile
(``compile_scenario``), build the plan (``make_plan``, the solve included) and write
(``write_plan_files``).

    python benchmarks/bench_read.py --json 100000 1000000 --yaml 100000
    python benchmarks/bench_read.py --json 100000 --pythonpath /path/to/other/checkout   # before/after

``--pythonpath`` runs allocator (both tables) from another source tree.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header  # noqa: E402

MINIMAL = r'''
import json, sys
import numpy as np, pandas as pd, yaml
from allocator.curves import get_family
from allocator.problem import CompiledProblem, CurveBlock
from allocator.solvers import solve

path, out = sys.argv[1], sys.argv[2]
with open(path, "rb") as fh:
    data = json.load(fh) if path.endswith(".json") else yaml.load(fh, Loader=yaml.CSafeLoader)
seg, task, pool, value, fam, c, r, h, cur = [], [], [], [], [], [], [], [], []
for s in data["segments"]:
    for t, cell in s["tasks"].items():
        cv = cell["curve"]
        seg.append(s["id"]); task.append(t); pool.append(cell["pool"]); value.append(cell["value"])
        fam.append(cv["family"]); c.append(cv["ceiling"])
        r.append(cv.get("rate", np.nan)); h.append(cv.get("half_saturation", np.nan))
        cur.append(cell.get("current_spend", np.nan))
n = len(seg)
pool, value, c, r, h = (np.array(x, float) for x in (pool, value, c, r, h))
is_hill = np.array(fam, dtype=object) == "hill"
ie, ih = np.flatnonzero(~is_hill), np.flatnonzero(is_hill)
blocks = (CurveBlock(get_family("exponential"), ie, {"ceiling": c[ie], "rate": r[ie], "floor": np.zeros(len(ie))}),
          CurveBlock(get_family("hill"), ih, {"ceiling": c[ih], "half_saturation": h[ih], "shape": np.ones(len(ih)),
                                               "floor": np.zeros(len(ih))}))
problem = CompiledProblem(name=data["name"], segment=np.array(seg, dtype=object), task=np.array(task, dtype=object),
                          pool=pool, value=value, lower=np.zeros(n), upper=np.full(n, np.inf),
                          current_spend=np.array(cur, float), blocks=blocks, budget=data["budget"]["total"])
spend = solve(problem, "exact").spend
pd.DataFrame({"segment": seg, "task": task, "spend": spend,
              "expected_value": problem.expected_value(spend)}).to_csv(out, index=False)
'''

BREAKDOWN = r'''
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
from allocator.compile import compile_scenario
from allocator.dynamic.spec import is_dynamic_file
from allocator.io import write_plan_files
from allocator.plan import make_plan
from allocator.spec import load_scenario
t1 = time.perf_counter()
path = Path(sys.argv[1])
assert not is_dynamic_file(path)     # allocator plan asks this first
sc = load_scenario(path)
t2 = time.perf_counter()
problem = compile_scenario(sc)
t3 = time.perf_counter()
plan = make_plan(problem, sc.solver.name, sc.solver.tolerance)
t4 = time.perf_counter()
write_plan_files(plan, Path(sys.argv[2]))
t5 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "read": t2 - t1, "compile": t3 - t2, "plan": t4 - t3, "write": t5 - t4,
                  "solve": plan.timings.get("solve") if hasattr(plan, "timings") else None}))
'''


def scenario(n: int, seed: int = 0) -> dict:
    """``n`` cells in segments of three tasks (exponential and hill curves), a binding budget."""
    rng = np.random.default_rng(seed)
    hill = rng.random(n) < 0.3
    ceiling = np.round(rng.uniform(0.05, 0.6, n), 6)
    rate = np.round(rng.uniform(0.001, 0.2, n), 6)
    half = np.round(rng.uniform(1, 300, n), 4)
    pool = rng.integers(100, 5000, n)
    value = np.round(rng.uniform(20, 2000, n), 2)
    current = np.where(rng.random(n) < 0.3, np.round(rng.uniform(0, 1e4, n), 2), np.nan)
    tasks = ("acquisition", "retention", "winback")
    segments = []
    for s in range(0, n, 3):
        cells = {}
        for j in range(s, min(s + 3, n)):
            curve = ({"family": "hill", "ceiling": float(ceiling[j]), "half_saturation": float(half[j]), "shape": 1.0}
                     if hill[j] else {"family": "exponential", "ceiling": float(ceiling[j]), "rate": float(rate[j])})
            cell = {"pool": int(pool[j]), "value": float(value[j]), "curve": curve}
            if not np.isnan(current[j]):
                cell["current_spend"] = float(current[j])
            cells[tasks[j - s]] = cell
        segments.append({"id": f"s{s // 3}", "tags": ["b2b" if s % 2 else "consumer"], "tasks": cells})
    return {"name": "bench_read", "currency": "USD", "budget": {"total": 30.0 * n}, "segments": segments}


def write_scenario(n: int, fmt: str, folder: Path) -> Path:
    path = folder / f"s{n}.{fmt}"
    data = scenario(n)
    with open(path, "w") as fh:
        if fmt == "json":
            json.dump(data, fh)
        else:
            import yaml

            yaml.dump(data, fh, Dumper=yaml.CSafeDumper, sort_keys=False, default_flow_style=None)
    return path


def timed_run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) and stdout of ``cmd``."""
    if shutil.which("time") or os.path.exists("/usr/bin/time"):
        out = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", out.stderr).group(1)
        secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.split(":"))))
        rss = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)) / 1024
        return secs, rss, out.stdout
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    secs = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    # the children's peak so far: exact for the first child, a lower bound after a larger one
    return secs, max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024, out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=int, nargs="*", default=[100_000, 1_000_000], help="JSON sizes (cells)")
    ap.add_argument("--yaml", type=int, nargs="*", default=[100_000], help="YAML sizes (cells)")
    ap.add_argument("--pythonpath", help="run allocator from this source tree instead")
    args = ap.parse_args()
    header()
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath + os.pathsep + env.get("PYTHONPATH", "")
        print(f"allocator from {args.pythonpath}\n")
    runs = [(n, "json") for n in args.json] + [(n, "yaml") for n in args.yaml]
    side, split = [], []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "min.py").write_text(MINIMAL)
        (d / "split.py").write_text(BREAKDOWN)
        for n, fmt in runs:
            path = write_scenario(n, fmt, d)
            size = path.stat().st_size / 2 ** 20
            t1, m1, _ = timed_run([sys.executable, "-m", "allocator", "plan", str(path), "--out", str(d / "out"),
                                   "--quiet"], env)
            t2, m2, _ = timed_run([sys.executable, str(d / "min.py"), str(path), str(d / "min.csv")], env)
            side.append(f"| {n:,} | {fmt.upper()} ({size:,.0f} MB) | {t1:.1f} s | {m1:,.0f} MiB | {t2:.1f} s "
                        f"| {m2:,.0f} MiB | {t1 / t2:.1f}x |")
            _, _, out = timed_run([sys.executable, str(d / "split.py"), str(path), str(d / "out2")], env)
            s = json.loads(out.strip().splitlines()[-1])
            split.append(f"| {n:,} | {fmt.upper()} | {s['read']:.1f} s | {s['compile']:.2f} s | {s['plan']:.1f} s "
                         f"| {s['write']:.1f} s |")
            path.unlink()
            print(side[-1], file=sys.stderr)
    print("| cells | format | `allocator plan` | peak memory | minimal script | its memory | ratio |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(side))
    print()
    print("allocator's time, in one process doing what `allocator plan` does:")
    print()
    print("| cells | format | read + validate | compile | build plan (solve included) | write |")
    print("|---|---|---|---|---|---|")
    print("\n".join(split))


if __name__ == "__main__":
    main()
