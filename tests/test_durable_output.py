"""Durable output (issue 12, items 11-12): a plan's files are one unit, sweeps keep what they finished.

``kill -9`` arrives at random moments of a multi-file write, a full disk cuts a write short, and
sweeps are killed mid-run on every local executor. After each, a reader finds either the old or
the new files (never a mix), no temporary debris survives the next run, finished variants are
kept, and no worker process outlives the sweep.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from allocator.io import clean_debris, write_unit

from helpers import exp_cell, scenario, write_yaml

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

WRITER = """
import sys
from allocator.io import write_unit
out, size = sys.argv[1], int(sys.argv[2])
k = 0
while True:
    k += 1
    body = (f"{k}," * size)[:size]
    write_unit(out, {"plan.csv": f"run {k}\\n" + body, "summary.json": f'{{"run": {k}}}\\n',
                     "report.html": f"<p>run {k}</p>" + body})
    print(k, flush=True)
"""


def _debris(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _consistent(out: Path) -> int:
    """The run number the folder's files agree on (they must all be complete and from one run)."""
    plan = (out / "plan.csv").read_text()
    run = json.loads((out / "summary.json").read_text())["run"]
    assert plan.startswith(f"run {run}\n")
    assert (out / "report.html").read_text().startswith(f"<p>run {run}</p>")
    return run


def test_kill_during_multi_file_writes_never_leaves_a_mix(tmp_path):
    out = tmp_path / "out"
    write_unit(out, {"plan.csv": "run 0\n", "summary.json": '{"run": 0}\n', "report.html": "<p>run 0</p>"})
    (out / "notes.txt").write_text("a file of the user's")
    rng = random.Random(7)
    runs = set()
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out), str(1_000_000)], stdout=subprocess.PIPE,
                                text=True, env=ENV)
        proc.stdout.readline()  # at least one write done: the next is somewhere in progress
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        runs.add(_consistent(out))
        assert (out / "notes.txt").read_text() == "a file of the user's"
    # whatever the kills left (stage folders, temporary files) goes on the next write
    write_unit(out, {"plan.csv": "run 99\n", "summary.json": '{"run": 99}\n', "report.html": "<p>run 99</p>"})
    assert _consistent(out) == 99
    assert _debris(tmp_path) == [] and _debris(out) == []


def test_full_disk_leaves_the_previous_plan_and_no_temporary_file(tmp_path):
    out = tmp_path / "out"
    write_unit(out, {"plan.csv": "run 1\n", "summary.json": '{"run": 1}\n', "report.html": "<p>run 1</p>"})
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))\n"
            "from allocator.io import write_unit\n"
            f"write_unit({str(out)!r}, {{'plan.csv': 'run 2\\n' + 'x' * 10, 'summary.json': '{{\"run\": 2}}\\n',"
            f" 'report.html': '<p>run 2</p>' + 'y' * 1_000_000}})\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert proc.returncode != 0 and "File too large" in proc.stderr
    assert _consistent(out) == 1
    assert _debris(tmp_path) == [] and _debris(out) == []


def test_plan_command_killed_mid_write_keeps_old_or_new_plan(tmp_path):
    """The real command, killed late in its run (while rendering or writing) on a 4,000-cell plan."""
    cells = {(f"s{i}", t): exp_cell(pool=100 + i, value=50, ceiling=0.5, rate=1.0)
             for i in range(2_000) for t in ("acquisition", "retention")}
    path = tmp_path / "big.json"
    path.write_text(json.dumps(scenario(cells, budget=100_000.0)))
    out = tmp_path / "out"
    args = [sys.executable, "-m", "allocator", "plan", str(path), "--out", str(out), "--quiet", "--solver", "exact"]
    t0 = time.perf_counter()
    assert subprocess.run(args, env=ENV, capture_output=True).returncode == 0
    full = time.perf_counter() - t0
    before = (out / "plan.csv").read_bytes()
    for frac in (0.8, 0.9, 0.97):
        proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(full * frac)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        plan = pd.read_csv(out / "plan.csv")
        summary = json.loads((out / "summary.json").read_text())
        assert len(plan) == 4_000 and abs(plan["spend"].sum() - summary["total_spend"]) < 1e-3
    assert (out / "plan.csv").read_bytes() == before  # the same scenario: the same plan
    clean_debris(tmp_path)
    assert _debris(tmp_path) == []


# ---------------------------------------------------------------- sweeps

def _children(pid: int) -> set[int]:
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.add(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _kill_sweep_and_rerun(tmp_path: Path, executor: str) -> set[int]:
    """Kill ``allocator sweep`` by ``kill -9`` once >= 5 variants are logged; check what it kept and re-run it.

    Returns the sweep's child processes seen just before the kill (its local workers, if any).
    Every wait is bounded.
    """
    write_yaml(tmp_path / "base.yaml", scenario({(f"s{i}", "acquisition"): exp_cell(100 + i, 50, 0.5, 1.0)
                                                 for i in range(300)}, budget=10_000.0))
    f = write_yaml(tmp_path / "s.yaml", {"extends": "base.yaml", "variants": {"grid": {
        "budget.total": {"from": 1000, "to": 20000, "steps": 120}}}})
    out = tmp_path / "out"
    args = [sys.executable, "-m", "allocator", "sweep", str(f), "--out", str(out), "--executor", executor,
            "--chunksize", "1", "--workers", "2", "--quiet", "--no-progress"]
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = out / "results.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not log.exists() or len(log.read_bytes().splitlines()) < 5):
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stderr.close()
    kept = [json.loads(x) for x in log.read_bytes().splitlines() if x.strip().endswith(b"}")]
    assert 5 <= len(kept) < 120 and not (out / "summary.csv").exists()
    time.sleep(1.5)  # the workers' watchdog looks every half second
    assert not any(_alive(w) for w in workers), f"workers outlived the sweep: {workers}"
    rerun = subprocess.run(args[:-2] + ["--no-progress"], env=ENV, capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    reused = int(re.search(r"reused (\d+)", rerun.stdout).group(1))
    assert reused == len(kept)
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 120 and set(summary["status"]) == {"optimal"}
    assert _debris(out) == [".sweep.lock"]
    return workers


@pytest.mark.parametrize("executor", ["serial", "threads", "local"])
def test_sweep_killed_keeps_finished_variants_and_its_workers_die(tmp_path, executor):
    _kill_sweep_and_rerun(tmp_path, executor)


CLUSTER = """
import sys
from distributed import LocalCluster

if __name__ == "__main__":
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           scheduler_port=0, dashboard_address=None, memory_limit="2GiB")
    print(cluster.scheduler_address, flush=True)
    sys.stdin.read()  # up until the test closes our stdin (or dies)
    cluster.close(timeout=20)
"""


def _group(pgid: int) -> set[int]:
    """Live processes of a process group."""
    members = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.add(int(stat.parent.name))
    return members


@pytest.fixture
def dask_cluster(tmp_path):
    """A Dask LocalCluster (scheduler, two nannies, two worker processes) on loopback, in its own process group.

    The cluster is this test's own: it is shared infrastructure to the sweep, which must leave it up
    when killed (a sweep only ever ends its *own* local workers), so the test ends it here.
    """
    import selectors

    pytest.importorskip("distributed", reason="the Dask executor needs distributed (pip install 'allocator[dask]')")
    script = tmp_path / "cluster.py"
    script.write_text(CLUSTER)
    proc = subprocess.Popen([sys.executable, str(script)], env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=30):
            raise TimeoutError("the Dask LocalCluster did not start within 30 s")
        address = proc.stdout.readline().strip()
        assert address.startswith("tcp://127.0.0.1:"), f"cluster did not start: {address!r}"
        yield proc, address
    finally:
        proc.stdin.close()  # the cluster closes itself; if it does not, its whole group is killed
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        deadline = time.time() + 15
        while _group(proc.pid) and time.time() < deadline:
            time.sleep(0.1)
        left = _group(proc.pid)
        if left:
            os.killpg(proc.pid, signal.SIGKILL)
        assert not left, f"Dask cluster processes outlived the test: {left}"


def test_sweep_on_dask_killed_keeps_finished_variants_and_leaves_the_cluster_up(tmp_path, dask_cluster):
    cluster, address = dask_cluster
    members = _group(cluster.pid)
    assert len(members) >= 3  # the scheduler process, nannies and their workers
    _kill_sweep_and_rerun(tmp_path, address.replace("tcp://", "dask://"))
    # the killed sweep left the cluster running (the re-run above used it): it is not the sweep's to end
    assert cluster.poll() is None and _group(cluster.pid) >= {cluster.pid}
