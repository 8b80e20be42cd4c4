"""``allocator serve --workers 2``: several server processes on one port and one store.

A request may land on either worker (the kernel hands each new connection to one of them), so
every test here sends its requests on fresh connections, many at once; what must hold does not
depend on which worker answers: every plan stored under its own version, a cancel that stops the
job's process wherever it runs, the per-workspace job limit, and a restart that fails the jobs it
interrupted while keeping every stored plan. The cancel across runners is also checked in one
process, deterministically (two :class:`JobRunner` on one store, the second cancelling).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from allocator.service.config import Settings
from allocator.service.jobs import JobRunner, owner_alive, process_identity
from allocator.service.requests import scenario_data, scenario_from_request
from allocator.service.store import Store
from test_service_support import Server, example_json, job_pids, new_key, s_curve_json, wait_job

LIMITS = {"ALLOCATOR_MAX_JOBS": "2", "ALLOCATOR_JOB_PROCESSES": "2", "ALLOCATOR_MAX_SOLVE_SECONDS": "300"}


def long_job(name: str, seed: int = 3) -> dict:
    """A global solve that runs for many seconds (150 S-curves to a 1e-9 gap)."""
    data = s_curve_json(150, seed=seed, name=name, tolerance=1e-9)
    data["solver"]["name"] = "global"
    return data


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def wait_until(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def fresh(srv: Server, key: str, method: str, path: str, **kw) -> httpx.Response:
    """One request on a new connection (so it may land on either worker)."""
    with srv.client(key) as c:
        return c.request(method, path, **kw)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("workers")
    srv = Server(data, env=LIMITS, workers=2)
    srv.key = new_key(data, "team-w")
    yield srv
    srv.stop()


def test_two_workers_serve_many_concurrent_plans_each_stored_once(server):
    workers = [p for p in children(server.proc.pid) if Path(f"/proc/{p}/cmdline").read_bytes().count(b"spawn_main")]
    assert len(workers) >= 2, workers   # the two workers (and uvicorn's resource tracker, perhaps)
    budgets = [1_000_000.0 + 10_000.0 * i for i in range(40)]

    def post(b):
        return fresh(server, server.key, "POST", "/v1/plans", json=example_json(name="many", budget={"total": b}))

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, budgets))
    assert [r.status_code for r in answers] == [201] * len(budgets), [r.text[:200] for r in answers if
                                                                       r.status_code != 201][:3]
    recs = [r.json() for r in answers]
    assert [r.headers["location"] for r in answers] == [f"/v1/plans/{rec['id']}" for rec in recs]
    assert sorted(r["version"] for r in recs) == list(range(1, len(budgets) + 1))
    assert [r["summary"]["budget"] for r in recs] == budgets
    listed = fresh(server, server.key, "GET", "/v1/scenarios/many/versions").json()
    assert {v["id"] for v in listed} == {r["id"] for r in recs}
    for rec in recs[:5]:   # any worker answers for any plan
        assert fresh(server, server.key, "GET", f"/v1/plans/{rec['id']}").json() == rec


def test_a_cancel_on_any_worker_stops_the_jobs_process(server):
    r = fresh(server, server.key, "POST", "/v1/plans", json=long_job("cancel_anywhere"))
    assert r.status_code == 202, r.text[:300]
    job_id = r.json()["id"]
    with server.client(server.key) as c:
        wait_job(c, job_id, until=("running",))
    wait_until(lambda: job_pids(job_id), 60, "the job's process to start")
    # repeated requests on fresh connections: the first cancels, the others find it finished
    codes = [fresh(server, server.key, "POST", f"/v1/jobs/{job_id}/cancel").status_code for _ in range(6)]
    assert codes[0] == 200 and set(codes[1:]) == {409}, codes
    wait_until(lambda: not job_pids(job_id), 5, "the cancelled job's process to end")
    for _ in range(4):
        job = fresh(server, server.key, "GET", f"/v1/jobs/{job_id}").json()
        assert job["status"] == "cancelled", job
    assert fresh(server, server.key, "GET", "/v1/scenarios/cancel_anywhere/versions").status_code == 404


def test_the_job_limit_holds_across_workers(server):
    key = new_key(server.data_dir, "team-limit")

    def submit(i):
        return fresh(server, key, "POST", "/v1/plans", json=long_job(f"limit_{i}", seed=i))

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(submit, range(8)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [202, 202] + [429] * 6, codes
    for r in answers:
        if r.status_code == 202:
            assert fresh(server, key, "POST", f"/v1/jobs/{r.json()['id']}/cancel").status_code == 200


def test_a_runner_sees_a_cancel_made_by_another(tmp_path):
    """The worker running a job ends its process when another worker cancels it (in one process here)."""
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    key, _ = store.create_key("w")
    running, other = JobRunner(store, 1), JobRunner(store, 1)
    sc = scenario_from_request(long_job("two_runners"), Settings())
    payload = {"scenario": scenario_data(sc), "solver": None, "tolerance": None}
    job = store.create_job("w", "plan", payload, key.id, 4, owner=running.owner)
    finished = []
    running.submit(job["id"], "plan", payload, lambda data: finished.append(data) or (None, None), "rid")
    wait_until(lambda: job_pids(job["id"]), 60, "the job's process to start")
    assert other.cancel(job["id"])          # the other runner has no process for it: the row changes
    wait_until(lambda: not job_pids(job["id"]), 5, "the job's process to end")
    time.sleep(0.5)
    assert store.get_job("w", job["id"])["status"] == "cancelled" and not finished
    running.shutdown()
    other.shutdown()
    store.dispose()


def test_a_starting_worker_fails_only_the_jobs_of_dead_processes(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'o.db'}")
    key, _ = store.create_key("w")
    me = process_identity()
    dead = f"{me.rsplit(':', 2)[0]}:{2**22 + 7}:1"        # no such pid on this host
    elsewhere = "another-host:1:1"                        # only that host can tell
    ids = {o: store.create_job("w", "plan", {}, key.id, 10, owner=o)["id"] for o in (me, dead, elsewhere, None)}
    assert owner_alive(me) and not owner_alive(dead) and owner_alive(elsewhere) and not owner_alive(None)
    assert store.fail_interrupted(alive=owner_alive) == 2
    status = {o: store.get_job("w", i)["status"] for o, i in ids.items()}
    assert status == {me: "queued", dead: "failed", elsewhere: "queued", None: "failed"}
    # a stopping server fails its own jobs only
    assert store.fail_interrupted(owner=me) == 1 and store.get_job("w", ids[elsewhere])["status"] == "queued"
    store.dispose()


def test_restart_of_a_two_worker_server(tmp_path):
    srv = Server(tmp_path, env=LIMITS, workers=2)
    key = new_key(tmp_path, "team-r")
    try:
        kept = [fresh(srv, key, "POST", "/v1/plans", json=example_json(name="kept")).json() for _ in range(4)]
        job = fresh(srv, key, "POST", "/v1/plans", json=long_job("interrupted", seed=4)).json()
        with srv.client(key) as c:
            wait_job(c, job["id"], until=("running",))
        wait_until(lambda: job_pids(job["id"]), 60, "the job's process to start")
        workers = children(srv.proc.pid)
    finally:
        srv.kill()
    # the workers and the job's process end with the supervisor, even killed
    wait_until(lambda: not job_pids(job["id"]), 10, "the job's process to end with its server")
    wait_until(lambda: not any(os.path.exists(f"/proc/{p}") and "Z" not in
                               Path(f"/proc/{p}/stat").read_text().split(") ")[1][:1] for p in workers),
               10, "the workers to end with their supervisor")
    srv2 = Server(tmp_path, env=LIMITS, workers=2)
    try:
        for _ in range(3):   # whichever worker answers
            j = fresh(srv2, key, "GET", f"/v1/jobs/{job['id']}").json()
            assert j["status"] == "failed" and j["error"]["error"] == "interrupted", j
        for rec in kept:
            assert fresh(srv2, key, "GET", f"/v1/plans/{rec['id']}").json() == rec
        assert fresh(srv2, key, "POST", "/v1/plans", json=example_json(name="kept")).json()["version"] == 5
        # a job running when the server stops gently is failed by its own worker on the way out
        job2 = fresh(srv2, key, "POST", "/v1/plans", json=long_job("stopped", seed=5)).json()
        with srv2.client(key) as c:
            wait_job(c, job2["id"], until=("running",))
    finally:
        srv2.stop()
    store = Store(f"sqlite:///{tmp_path / 'allocator.db'}")
    assert store.get_job(None, job2["id"])["status"] == "failed"
    assert store.get_job(None, job2["id"])["error"]["error"] == "interrupted"
    store.dispose()


def test_serve_refuses_a_bad_worker_count():
    import argparse

    from allocator.cli import serve_cmd

    parser = argparse.ArgumentParser()
    serve_cmd.register(parser.add_subparsers())
    assert parser.parse_args(["serve", "--workers", "3"]).workers == 3
    assert parser.parse_args(["serve"]).workers is None
    for bad in ("0", "x", "100"):
        with pytest.raises(SystemExit):
            parser.parse_args(["serve", "--workers", bad])


def test_settings_travel_to_workers_through_the_environment(monkeypatch):
    s = Settings(max_cells=77, max_solve_seconds=1.5, job_processes=3, database_url="sqlite:////tmp/x.db")
    for k, v in s.to_env().items():
        monkeypatch.setenv(k, v)
    assert Settings.from_env() == s

