"""Benchmark: the HTTP service under load (issue 13).

Starts ``python -m allocator.service --workers W`` on 127.0.0.1 (a fresh SQLite store in a
temporary folder), then N concurrent clients, each on its own keep-alive connection, POST the
bundled example (scenarios/example.yaml as JSON) to ``/v1/plans`` again and again for a bounded
time; every answer is a solved plan stored as a new version. With ``--global-share 0.1`` one
request in ten is a small global-solver scenario (8 S-shaped cells): a job, polled until done.

Two ways to load it:

* closed loop (default): each client sends its next request when the last is answered. This
  measures the most plans per second; the latency is then mostly queueing, fixed by Little's law
  at ``clients / throughput`` (50 clients at 250 plans/s wait 200 ms on average, however fast a
  plan is).
* open loop (``--rate R``): requests start at R per second in all (evenly spaced, spread over
  the clients), whether or not earlier ones were answered: the latency a client sees at that load.

The clients are plain asyncio HTTP/1.1 (one process, loopback only): they send pre-encoded
requests, read the head in one read and the ``Content-Length`` body, and parse the JSON (orjson)
to take its ``id``; a request counts only when the status is 201 (202 for a job) and the id is
there. They run on the same cores as the server, so their CPU time is measured and reported.

Reports requests per second, p50/p95/p99 latency (of the direct plans; jobs from submit to done),
errors (anything but 201/202, and a job that does not finish done), the server's CPU time per
plan, the clients' CPU share, and the server's resident memory (supervisor, workers and job
processes): peak, and mean over the first and last 10 s.

Run: python benchmarks/bench_service.py [--clients 50] [--seconds 30] [--workers 2] [--rate R]
     [--global-share 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import orjson

from _common import header

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
TICK = os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """``pid`` and every process under it (workers, job processes), from /proc."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            todo += [int(k) for k in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    return out


def rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants (kB)."""
    total = 0
    for p in descendants(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_by_process(pid: int) -> dict[int, float]:
    """User + system CPU seconds of ``pid`` and each live descendant (with the children they waited for)."""
    out = {}
    for p in descendants(pid):
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            out[p] = sum(int(x) for x in f[11:15]) / TICK   # utime, stime, cutime, cstime
        except (OSError, IndexError):
            pass
    return out


def sockets_by_process(pid: int) -> dict[int, int]:
    """Open sockets of each process under ``pid`` (the listener, store files aside: connections held)."""
    out = {}
    for p in descendants(pid)[1:]:
        try:
            out[p] = sum(os.readlink(f"/proc/{p}/fd/{fd}").startswith("socket:") for fd in os.listdir(f"/proc/{p}/fd"))
        except OSError:
            pass
    return out


def cpu_seconds(pid: int) -> float:
    return sum(cpu_by_process(pid).values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--workers", type=int, default=2, help="server processes (allocator serve --workers)")
    ap.add_argument("--rate", type=float, default=0.0, help="open loop: requests per second in all (0: closed loop)")
    ap.add_argument("--global-share", type=float, default=0.0, help="share of requests that are global-solver jobs")
    args = ap.parse_args()
    if not (1 <= args.clients <= 200 and 1 <= args.seconds <= 600 and 0 <= args.global_share <= 1
            and 1 <= args.workers <= 16 and 0 <= args.rate <= 5000):
        ap.error("--clients 1..200, --seconds 1..600, --workers 1..16, --rate 0..5000, --global-share 0..1")
    header()

    from test_service_support import Server, example_json, new_key, s_curve_json

    with tempfile.TemporaryDirectory(prefix="allocator-bench-") as tmp:
        srv = Server(Path(tmp), env={"ALLOCATOR_MAX_JOBS": "1000"}, workers=args.workers)
        key = new_key(Path(tmp), "bench")
        example, scurve = example_json(), s_curve_json(8, name="bench_global")
        samples: list[tuple[float, int]] = []
        connections: list[int] = []
        stop_sampling = threading.Event()

        def sample() -> None:
            idle_sockets = sockets_by_process(srv.proc.pid)
            while not stop_sampling.is_set():
                if len(samples) == 4:   # 2 s in: the clients' connections are open and spread
                    held = sockets_by_process(srv.proc.pid)
                    connections.extend(sorted((held[p] - idle_sockets.get(p, 0) for p in held), reverse=True))
                samples.append((time.monotonic(), rss_kb(srv.proc.pid)))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        try:
            sampler.start()
            per0, me0 = cpu_by_process(srv.proc.pid), resource.getrusage(resource.RUSAGE_SELF)
            result = asyncio.run(load(srv.port, key, example, scurve, args))
            per1 = cpu_by_process(srv.proc.pid)
            server_cpu = sum(per1.values()) - sum(per0.values())
            busy = sorted((per1[p] - per0.get(p, 0.0) for p in per1), reverse=True)
            result["busiest"] = [b / result["seconds"] for b in busy[:args.workers]]
            result["connections"] = [c for c in connections if c > 0]
            me1 = resource.getrusage(resource.RUSAGE_SELF)
            result["server_cpu"] = server_cpu
            result["client_cpu"] = (me1.ru_utime - me0.ru_utime) + (me1.ru_stime - me0.ru_stime)
        finally:
            stop_sampling.set()
            sampler.join()
            srv.stop()
    report(result, samples, args)


class Connection:
    """One HTTP/1.1 keep-alive connection: send a request, read the status and the JSON body."""

    def __init__(self, port: int, key: str):
        self.port, self.auth = port, f"Authorization: Bearer {key}\r\n".encode()
        self.reader = self.writer = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    def request_bytes(self, method: str, path: str, body: bytes = b"") -> bytes:
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n").encode()
        return head + self.auth + b"\r\n" + body

    async def send(self, raw: bytes) -> tuple[int, dict]:
        if self.writer is None:
            await self.open()
        self.writer.write(raw)
        # the head in one read and the body parsed by orjson: the clients share the server's cores,
        # so every microsecond they spend is taken from the server
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise ConnectionError("the server closed the connection") from None
            raise
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
            elif name == b"transfer-encoding":
                raise ConnectionError("chunked answers are not expected from this API")
        body = await self.reader.readexactly(length)
        if close:
            self.writer.close()
            self.writer = None
        return status, orjson.loads(body)


async def load(port: int, key: str, example: dict, scurve: dict, args) -> dict:
    lat_plan: list[float] = []
    lat_job: list[float] = []
    errors: dict[str, int] = {}
    counter = {"n": 0}
    skipped = {"n": 0}
    every = int(round(1 / args.global_share)) if args.global_share > 0 else 0
    t_start = time.monotonic()
    t_end = t_start + args.seconds
    gap = args.clients / args.rate if args.rate else 0.0   # each client's interval in the open loop

    def err(what: str) -> None:
        errors[what] = errors.get(what, 0) + 1

    async def one(conn: Connection, post_plan: bytes, post_job: bytes) -> None:
        counter["n"] += 1
        is_job = every and counter["n"] % every == 0
        t0 = time.monotonic()
        try:
            status, body = await conn.send(post_job if is_job else post_plan)
            if status == 201 and isinstance(body.get("id"), str) and not is_job:
                lat_plan.append(time.monotonic() - t0)
            elif status == 202 and isinstance(body.get("id"), str):
                poll = conn.request_bytes("GET", f"/v1/jobs/{body['id']}")
                while True:
                    await asyncio.sleep(0.2)
                    st, job = await conn.send(poll)
                    if st != 200 or job["status"] in ("done", "failed", "cancelled"):
                        break
                if st == 200 and job["status"] == "done":
                    lat_job.append(time.monotonic() - t0)
                else:
                    err(f"job {job.get('status', st)}")
            else:
                err(str(status))
        except (OSError, ConnectionError, ValueError, asyncio.IncompleteReadError) as exc:
            err(type(exc).__name__)
            conn.writer = None

    async def client(i: int) -> None:
        conn = Connection(port, key)
        post_plan = conn.request_bytes("POST", "/v1/plans", json.dumps(example).encode())
        post_job = conn.request_bytes("POST", "/v1/plans", json.dumps(scurve).encode())
        await conn.open()
        if not gap:
            while time.monotonic() < t_end:
                await one(conn, post_plan, post_job)
            return
        # open loop: client i sends at t_start + (i / clients + k) * gap; a late answer delays the
        # next send of this connection only (HTTP/1.1 has one request in flight per connection)
        k = 0
        while True:
            due = t_start + (i / args.clients + k) * gap
            if due >= t_end:
                return
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await one(conn, post_plan, post_job)
            k += 1
            behind = int((time.monotonic() - t_start) / gap - i / args.clients) - k
            if behind > 0:   # the server did not keep up with the offered rate on this connection
                skipped["n"] += behind
                k += behind

    await asyncio.gather(*(client(i) for i in range(args.clients)))
    return {"plans": lat_plan, "jobs": lat_job, "errors": errors, "seconds": time.monotonic() - t_start,
            "skipped": skipped["n"]}


def report(res: dict, samples: list[tuple[float, int]], args) -> None:
    plans, jobs = np.array(res["plans"]) * 1000, np.array(res["jobs"]) * 1000
    secs = res["seconds"]
    t0 = samples[0][0] if samples else 0.0
    first = [m for t, m in samples if t - t0 <= 10]
    last = [m for t, m in samples if t >= samples[-1][0] - 10] if samples else []
    peak = max((m for _, m in samples), default=0)

    def pct(a, q):
        return f"{np.percentile(a, q):,.1f}" if len(a) else "-"

    mode = f"open loop at {args.rate:g} requests/s" if args.rate else "closed loop"
    print(f"{args.clients} clients ({mode}), {args.workers} server worker(s), {args.seconds:.0f} s, global-solver "
          f"share {args.global_share:g}, loopback, SQLite store\n")
    print("| what | count | per second | p50 ms | p95 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| plans of the example (201) | {len(plans):,} | {len(plans) / secs:,.1f} | {pct(plans, 50)} | "
          f"{pct(plans, 95)} | {pct(plans, 99)} | {pct(plans, 100)} |")
    if args.global_share:
        print(f"| global-solver jobs (202 -> done) | {len(jobs):,} | {len(jobs) / secs:,.2f} | {pct(jobs, 50)} | "
              f"{pct(jobs, 95)} | {pct(jobs, 99)} | {pct(jobs, 100)} |")
    errs = ", ".join(f"{k}: {v}" for k, v in res["errors"].items()) or "none"
    print(f"\nerrors: {errs}")
    if args.rate:
        offered = args.rate * args.seconds
        print(f"offered {offered:,.0f} requests at {args.rate:g}/s; sent {offered - res['skipped']:,.0f}; "
              f"{res['skipped']:,} sends skipped because their connection was still waiting for an answer "
              f"(the server fell behind the offered rate)")
    n = max(1, len(plans) + len(jobs))
    print(f"CPU: server (supervisor, workers, job processes) {res['server_cpu']:,.1f} s = "
          f"{1000 * res['server_cpu'] / n:,.2f} ms per request; clients {res['client_cpu']:,.1f} s = "
          f"{1000 * res['client_cpu'] / n:,.2f} ms per request, {100 * res['client_cpu'] / secs / (os.cpu_count() or 1):.0f}% "
          f"of the machine's {os.cpu_count()} cores; the busiest server processes used "
          + ", ".join(f"{100 * b:.0f}%" for b in res.get("busiest", [])) + " of a core; connections held by "
          "each worker 2 s in: " + (", ".join(str(c) for c in res.get("connections", [])) or "-"))
    if samples:
        print(f"server memory (supervisor, workers, job processes): peak {peak / 1024:,.0f} MB; mean of the first "
              f"10 s {statistics.mean(first) / 1024:,.0f} MB, of the last 10 s {statistics.mean(last) / 1024:,.0f} MB "
              f"({100 * (statistics.mean(last) / statistics.mean(first) - 1):+.1f}%)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
