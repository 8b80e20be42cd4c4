"""Benchmark: the HTTP service under load (issue 13).

Starts ``python -m allocator.service`` on 127.0.0.1 (a fresh SQLite store in a temporary folder),
then N concurrent clients (asyncio + httpx, one process, loopback only) each POST the bundled
example (scenarios/example.yaml as JSON) to ``/v1/plans`` again and again for a bounded time;
every answer is a solved plan stored as a new version. With ``--global-share 0.1`` one request in
ten is a small global-solver scenario (8 S-shaped cells): a job, polled until done.

Reports requests per second, p50/p95/p99 latency (of the direct plans; jobs from submit to done),
errors (anything but 201/202 and a job that does not finish done), the server's peak resident
memory (server and job processes) and its mean over the first and last 10 s.

The clients run on the same machine as the server (2 shared cores here), so they take CPU from it.

Run: python benchmarks/bench_service.py [--clients 50] [--seconds 30] [--global-share 0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from _common import header

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` and its children (kB), from /proc."""
    total = 0
    pids = [pid]
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(k) for k in kids]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--global-share", type=float, default=0.0, help="share of requests that are global-solver jobs")
    args = ap.parse_args()
    if not (1 <= args.clients <= 200 and 1 <= args.seconds <= 600 and 0 <= args.global_share <= 1):
        ap.error("--clients 1..200, --seconds 1..600, --global-share 0..1")
    header()

    from test_service_support import Server, example_json, new_key, s_curve_json

    with tempfile.TemporaryDirectory(prefix="allocator-bench-") as tmp:
        srv = Server(Path(tmp), env={"ALLOCATOR_MAX_JOBS": "1000"})
        key = new_key(Path(tmp), "bench")
        example, scurve = example_json(), s_curve_json(8, name="bench_global")
        samples: list[tuple[float, int]] = []
        stop_sampling = threading.Event()

        def sample() -> None:
            while not stop_sampling.is_set():
                samples.append((time.monotonic(), rss_kb(srv.proc.pid)))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        try:
            sampler.start()
            result = asyncio.run(load(srv.url, key, example, scurve, args))
        finally:
            stop_sampling.set()
            sampler.join()
            srv.stop()
    report(result, samples, args)


async def load(url: str, key: str, example: dict, scurve: dict, args) -> dict:
    lat_plan: list[float] = []
    lat_job: list[float] = []
    errors: dict[str, int] = {}
    counter = {"n": 0}
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    every = int(round(1 / args.global_share)) if args.global_share > 0 else 0
    t_start = time.monotonic()
    t_end = t_start + args.seconds

    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, limits=limits,
                                 timeout=120) as http:
        async def worker() -> None:
            while time.monotonic() < t_end:
                counter["n"] += 1
                is_job = every and counter["n"] % every == 0
                t0 = time.monotonic()
                try:
                    r = await http.post("/v1/plans", json=scurve if is_job else example)
                    if r.status_code == 201:
                        lat_plan.append(time.monotonic() - t0)
                    elif r.status_code == 202:
                        job = r.json()["id"]
                        while True:
                            await asyncio.sleep(0.2)
                            j = (await http.get(f"/v1/jobs/{job}")).json()
                            if j["status"] in ("done", "failed", "cancelled"):
                                break
                        if j["status"] == "done":
                            lat_job.append(time.monotonic() - t0)
                        else:
                            errors[f"job {j['status']}"] = errors.get(f"job {j['status']}", 0) + 1
                    else:
                        errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

        await asyncio.gather(*(worker() for _ in range(args.clients)))
    return {"plans": lat_plan, "jobs": lat_job, "errors": errors, "seconds": time.monotonic() - t_start}


def report(res: dict, samples: list[tuple[float, int]], args) -> None:
    plans, jobs = np.array(res["plans"]) * 1000, np.array(res["jobs"]) * 1000
    secs = res["seconds"]
    t0 = samples[0][0] if samples else 0.0
    first = [m for t, m in samples if t - t0 <= 10]
    last = [m for t, m in samples if t >= samples[-1][0] - 10] if samples else []
    peak = max((m for _, m in samples), default=0)

    def pct(a, q):
        return f"{np.percentile(a, q):,.0f}" if len(a) else "-"

    print(f"{args.clients} clients, {args.seconds:.0f} s, global-solver share {args.global_share:g}, "
          f"loopback, SQLite store\n")
    print("| what | count | per second | p50 ms | p95 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| plans of the example (201) | {len(plans):,} | {len(plans) / secs:,.1f} | {pct(plans, 50)} | "
          f"{pct(plans, 95)} | {pct(plans, 99)} |")
    if args.global_share:
        print(f"| global-solver jobs (202 -> done) | {len(jobs):,} | {len(jobs) / secs:,.2f} | {pct(jobs, 50)} | "
              f"{pct(jobs, 95)} | {pct(jobs, 99)} |")
    errs = ", ".join(f"{k}: {v}" for k, v in res["errors"].items()) or "none"
    print(f"\nerrors: {errs}")
    if samples:
        print(f"server memory (server + job processes): peak {peak / 1024:,.0f} MB; mean of the first 10 s "
              f"{statistics.mean(first) / 1024:,.0f} MB, of the last 10 s {statistics.mean(last) / 1024:,.0f} MB")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
