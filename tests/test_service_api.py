"""The HTTP service end to end: a real uvicorn server on 127.0.0.1, a real HTTP client (httpx).

Every answer is checked against the library's own answer for the same scenario (the independent
truth here), never against printed text.
"""

from __future__ import annotations

import copy
import io
import time

import numpy as np
import pandas as pd
import pytest

import allocator
from allocator.cli.plan_cmd import plan_json
from allocator.errors import InfeasibleError, SpecError
from allocator.plan import PLAN_COLUMNS
from allocator.spec import scenario_from_dict
from allocator.spec.loader import read_mapping
from test_service_support import (ROOT, Server, example_json, job_pids, keys_cli, new_key, s_curve_json,
                                  wait_job, without_timing)

LIMITS = {"ALLOCATOR_MAX_BODY_BYTES": "200000", "ALLOCATOR_MAX_CELLS": "300", "ALLOCATOR_MAX_JOBS": "3",
          "ALLOCATOR_MAX_SOLVE_SECONDS": "300", "ALLOCATOR_JOB_PROCESSES": "2"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("service")
    srv = Server(data, env=LIMITS)
    srv.keys = {"a": new_key(data, "team-a"), "b": new_key(data, "team-b"),
                "a_ro": new_key(data, "team-a", read_only=True), "limits": new_key(data, "team-limits")}
    yield srv
    srv.stop()


@pytest.fixture()
def http_a(server):
    with server.client(server.keys["a"]) as c:
        yield c


def library_plan(data: dict) -> dict:
    """What ``allocator plan --json`` gives for ``data`` (the service caps the solve time it runs under)."""
    return plan_json(allocator.plan(scenario_from_dict(data)))


def assert_cells_equal(got: list[dict], want: list[dict]) -> None:
    g, w = pd.DataFrame(got), pd.DataFrame(want)
    assert list(g.columns) == list(w.columns)
    assert list(g.columns[:len(PLAN_COLUMNS)]) == PLAN_COLUMNS
    pd.testing.assert_frame_equal(g, w, check_exact=False, rtol=1e-12, atol=1e-9)


def assert_records_equal(got: list[dict], want: pd.DataFrame) -> None:
    g = pd.DataFrame(got, columns=list(want.columns))
    g = g.astype(object).where(g.notna(), None)
    w = want.reset_index(drop=True)
    w = w.astype(object).where(w.notna(), None)
    for col in want.columns:
        if pd.api.types.is_numeric_dtype(want[col]):
            np.testing.assert_allclose(g[col].astype(float), w[col].astype(float), rtol=1e-12, atol=1e-9,
                                       err_msg=col)
        else:
            assert list(g[col]) == list(w[col]), col


# ---------------------------------------------------------------- plans, versions, diff

def test_health_needs_no_key_and_openapi_has_the_scenario_schema(server):
    import httpx

    h = httpx.get(f"{server.url}/v1/health").json()
    assert h["status"] == "ok" and h["schema_revision"] == "0002" and h["store"] == "sqlite"
    doc = httpx.get(f"{server.url}/openapi.json").json()
    # the schema of the request body is the scenario file's own pydantic model
    assert doc["components"]["schemas"]["Scenario"]["properties"].keys() == \
        allocator.Scenario.model_json_schema()["properties"].keys()
    body = doc["paths"]["/v1/plans"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/Scenario"}


def test_plan_is_the_librarys_plan_and_is_stored(server, http_a):
    data = example_json()
    r = http_a.post("/v1/plans", json=data)
    assert r.status_code == 201, r.text[:500]
    rec = r.json()
    want = library_plan(data)
    assert_cells_equal(rec["cells"], want["cells"])
    assert without_timing(rec["summary"]) == without_timing(want["summary"])
    assert rec["scenario"] == "example" and rec["solver"] == "exact" and rec["engine_version"] == allocator.__version__
    # fetched again: the same record; its CSV holds the same rows; its scenario is the one solved
    again = http_a.get(f"/v1/plans/{rec['id']}").json()
    assert again == rec
    csv = pd.read_csv(io.StringIO(http_a.get(f"/v1/plans/{rec['id']}/plan.csv").text))
    np.testing.assert_allclose(csv["spend"], [c["spend"] for c in want["cells"]], rtol=1e-12)
    stored = http_a.get(f"/v1/plans/{rec['id']}/scenario").json()
    assert scenario_from_dict(stored).segments == allocator.load_scenario(ROOT / "scenarios/example.yaml").segments


def test_versions_and_diff_match_the_library(http_a):
    budgets = [1_500_000.0, 1_200_000.0, 1_200_000.0]
    datas = [example_json(name="ex_versions", budget={"total": b}) for b in budgets]
    recs = [http_a.post("/v1/plans", json=d).json() for d in datas]
    versions = http_a.get("/v1/scenarios/ex_versions/versions").json()
    assert [v["version"] for v in versions] == [1, 2, 3]
    assert [v["id"] for v in versions] == [r["id"] for r in recs]
    assert versions[1]["input_hash"] == versions[2]["input_hash"] != versions[0]["input_hash"]
    got = http_a.get(f"/v1/scenarios/ex_versions/versions/2").json()
    assert got["id"] == recs[1]["id"]
    plans = [allocator.plan(scenario_from_dict(d)) for d in datas[:2]]
    d = http_a.get("/v1/scenarios/ex_versions/diff", params={"from": 1, "to": 2}).json()
    change = plans[1].table["spend"].to_numpy() - plans[0].table["spend"].to_numpy()
    moved = {(r.segment, r.task): c for r, c in zip(plans[0].table.itertuples(), change)}
    listed = {(c["segment"], c["task"]): c for c in d["cells"]}
    assert set(listed) == {k for k, c in moved.items() if abs(c) > 1e-9 * 1.5e6 or k in listed}
    for k, c in listed.items():
        assert c["change"] == "changed"
        assert c["spend_change"] == pytest.approx(moved[k], rel=1e-9, abs=1e-6)
    for k, c in moved.items():
        if k not in listed:
            assert abs(c) < 1e-6
    assert d["summary"]["total_spend"]["change"] == pytest.approx(-300_000.0, rel=1e-9)
    same = http_a.get("/v1/scenarios/ex_versions/diff", params={"from": 2, "to": 3}).json()
    assert same["same_input"] and same["cells_changed"] == 0
    names = {s["scenario"]: s["versions"] for s in http_a.get("/v1/scenarios").json()}
    assert names["ex_versions"] == 3


# ---------------------------------------------------------------- analyses

def test_frontier_sensitivity_whatif_are_the_librarys(http_a):
    data = example_json()
    sc = scenario_from_dict(data)
    r = http_a.post("/v1/frontier", json={"scenario": data, "start": 1e6, "stop": 2e6, "points": 5})
    assert r.status_code == 200, r.text[:500]
    f = allocator.frontier(sc, 1e6, 2e6, 5)
    assert r.json()["method"] == f.method
    assert_records_equal(r.json()["table"], f.table)

    r = http_a.post("/v1/sensitivity", json={"scenario": data})
    assert r.status_code == 200, r.text[:500]
    s = allocator.sensitivity(allocator.plan(sc))
    assert r.json()["net_value"] == pytest.approx(s.net_value, rel=1e-12)
    assert_records_equal(r.json()["parameters"], s.parameters)
    assert_records_equal(r.json()["shadow_prices"], s.shadow_prices)

    move = {"amount": 10_000.0, "from_cell": "enterprise/acquisition", "to_cell": "mid_market/acquisition"}
    r = http_a.post("/v1/whatif", json={"scenario": data, **move})
    assert r.status_code == 200, r.text[:500]
    m = allocator.what_if_move(allocator.plan(sc), 10_000.0, "enterprise/acquisition", "mid_market/acquisition")
    assert r.json()["value_lost"] == pytest.approx(m.value_lost, rel=1e-12)
    assert r.json()["net_value_after"] == pytest.approx(m.net_value_after, rel=1e-12)


def test_sweep_and_uncertainty_run_as_jobs_with_the_librarys_answers(http_a, tmp_path):
    data = example_json()
    grid = {"budget.total": [1_000_000.0, 1_500_000.0, 2_000_000.0]}
    r = http_a.post("/v1/sweeps", json={"scenario": data, "grid": grid})
    assert r.status_code == 202, r.text[:500]
    seen: list = []
    job = wait_job(http_a, r.json()["id"], seen=seen)
    assert job["status"] == "done", job
    assert job["progress"]["stage"] == "done"
    res = http_a.get(f"/v1/jobs/{job['id']}/result").json()
    lib = allocator.run_sweep(allocator.Sweep(scenario_from_dict(data), grid=grid), tmp_path / "sw",
                              executor="serial")
    assert res["variants"] == 3
    assert_records_equal(res["summary"], lib.summary)
    assert_records_equal(res["cells"], lib.cells)

    unc = {**example_json(name="ex_unc"), "uncertainty": {
        "samples": 200, "seed": 7, "alpha": 0.1, "objective": "cvar",
        "distributions": [{"param": "curve.rate", "dist": "lognormal", "sigma": 0.3}]}}
    r = http_a.post("/v1/uncertainty", json={"scenario": unc})
    assert r.status_code == 202, r.text[:500]
    job = wait_job(http_a, r.json()["id"])
    assert job["status"] == "done", job
    res = http_a.get(f"/v1/jobs/{job['id']}/result").json()
    cmp = allocator.compare_risk(scenario_from_dict(unc), on_refusal="skip")
    assert_records_equal(res["table"], cmp.table)
    assert_records_equal(res["plans"], cmp.plans)


def test_global_solve_is_a_job_whose_plan_is_the_librarys(http_a):
    data = s_curve_json(8, name="scurve_small")
    r = http_a.post("/v1/plans", json=data)
    assert r.status_code == 202, r.text[:500]
    job = wait_job(http_a, r.json()["id"])
    assert job["status"] == "done" and job["plan_id"], job
    rec = http_a.get(f"/v1/jobs/{job['id']}/result").json()
    assert rec["id"] == job["plan_id"] and rec["solver"] == "global"
    capped = copy.deepcopy(data)
    capped["solver"]["time_limit"] = float(LIMITS["ALLOCATOR_MAX_SOLVE_SECONDS"])
    want = library_plan(capped)
    np.testing.assert_allclose([c["spend"] for c in rec["cells"]], [c["spend"] for c in want["cells"]],
                               rtol=1e-9, atol=1e-6)
    assert rec["summary"]["net_value"] == pytest.approx(want["summary"]["net_value"], rel=1e-9)
    assert http_a.get("/v1/scenarios/scurve_small/versions").json()[0]["id"] == rec["id"]


def test_job_progress_and_cancel(http_a):
    long = s_curve_json(150, seed=3, name="scurve_long", tolerance=1e-9)
    long["solver"]["name"] = "global"   # the envelope solver would answer 150 S-curves in milliseconds
    r = http_a.post("/v1/plans", json=long)
    assert r.status_code == 202, r.text[:500]
    job_id = r.json()["id"]
    seen: list = []
    # progress: the solve reports its stage and size before the solver's rounds
    job = wait_job(http_a, job_id, until=("running",), seen=seen)
    while job["progress"].get("stage") != "solving" and job["status"] == "running":
        time.sleep(0.1)
        job = http_a.get(f"/v1/jobs/{job_id}").json()
    assert job["progress"] == {"stage": "solving", "cells": 150} or "gap" in job["progress"]
    c = http_a.post(f"/v1/jobs/{job_id}/cancel")
    assert c.status_code == 200 and c.json()["status"] == "cancelled"
    assert http_a.post(f"/v1/jobs/{job_id}/cancel").status_code == 409
    r = http_a.get(f"/v1/jobs/{job_id}/result")
    assert r.status_code == 409 and r.json()["error"] == "cancelled"
    assert http_a.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    assert http_a.get("/v1/scenarios/scurve_long/versions").status_code == 404   # nothing stored


# ---------------------------------------------------------------- keys and workspaces

def test_workspaces_are_isolated(server, http_a):
    rec = http_a.post("/v1/plans", json=example_json(name="secret_plan")).json()
    job = http_a.post("/v1/plans", json=example_json(name="secret_job"), params={"mode": "job"}).json()
    wait_job(http_a, job["id"])
    with server.client(server.keys["b"]) as b:
        for path in (f"/v1/plans/{rec['id']}", f"/v1/plans/{rec['id']}/plan.csv", f"/v1/plans/{rec['id']}/scenario",
                     "/v1/scenarios/secret_plan/versions", "/v1/scenarios/secret_plan/versions/1",
                     f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/result"):
            r = b.get(path)
            assert r.status_code == 404, (path, r.text)
            assert r.json()["error"] == "not_found"
        assert b.get("/v1/scenarios/secret_plan/diff", params={"from": 1, "to": 1}).status_code == 404
        assert b.post(f"/v1/jobs/{job['id']}/cancel").status_code == 404
        assert "secret_plan" not in {s["scenario"] for s in b.get("/v1/scenarios").json()}
        assert job["id"] not in {j["id"] for j in b.get("/v1/jobs").json()}
        assert b.get("/v1/whoami").json()["workspace"] == "team-b"


def test_read_only_keys_read_but_cannot_write(server, http_a):
    rec = http_a.post("/v1/plans", json=example_json(name="ro_check")).json()
    with server.client(server.keys["a_ro"]) as ro:
        assert ro.get(f"/v1/plans/{rec['id']}").json()["id"] == rec["id"]
        assert ro.get("/v1/scenarios/ro_check/versions").status_code == 200
        for path, body in (("/v1/plans", example_json()), ("/v1/frontier", {"scenario": example_json(), "start": 0,
                                                                            "stop": 1, "points": 2}),
                           ("/v1/sweeps", {"scenario": example_json()}), ("/v1/jobs/x/cancel", None)):
            r = ro.post(path, json=body)
            assert r.status_code == 403 and r.json()["error"] == "read_only", path
    assert len(http_a.get("/v1/scenarios/ro_check/versions").json()) == 1


def test_missing_unknown_and_revoked_keys_are_refused(server):
    key = new_key(server.data_dir, "team-c")
    with server.client(key) as c:
        assert c.get("/v1/scenarios").status_code == 200
        key_id = key.split("_")[1]
        assert f"revoked key {key_id}" in keys_cli("--data-dir", str(server.data_dir), "revoke", key_id)
        r = c.get("/v1/scenarios")
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    with server.client(None) as anon:
        assert anon.get("/v1/scenarios").status_code == 401
        assert anon.post("/v1/plans", json=example_json()).status_code == 401
    with server.client(key[:-2] + "xx") as forged:
        assert forged.get("/v1/scenarios").status_code == 401


# ---------------------------------------------------------------- bad input, infeasible, limits

def test_bad_input_gets_the_command_lines_messages(http_a):
    data = read_mapping(ROOT / "tests/readme/bad.yaml")
    r = http_a.post("/v1/plans", json=data)
    assert r.status_code == 422
    body = r.json()
    with pytest.raises(SpecError) as exc:
        scenario_from_dict(data, allow_files=False)
    assert [p["text"] for p in body["problems"]] == [str(p) for p in exc.value.problems]
    assert [(p["field"], p["cell"]) for p in body["problems"]] == [(p.field, p.cell) for p in exc.value.problems]
    assert body["request_id"] == r.headers["x-request-id"]
    # the same through /v1/validate, and for malformed JSON (never a 500, never a traceback)
    assert http_a.post("/v1/validate", json=data).json()["problems"] == body["problems"]
    r = http_a.post("/v1/plans", content=b'{"name": "x", "name": "y"}', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "duplicate key" in r.json()["problems"][0]["message"]
    r = http_a.post("/v1/plans", content=b'{"name": ', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "Traceback" not in r.text
    r = http_a.post("/v1/plans", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert r.status_code == 422


@pytest.mark.parametrize("key, value", [("model", "../models/b2b.yaml"), ("extends", "example.yaml"),
                                        ("cells", "cells.parquet")])
def test_file_references_are_refused(http_a, key, value):
    r = http_a.post("/v1/plans", json={**example_json(), key: value})
    assert r.status_code == 422
    assert [p["field"] for p in r.json()["problems"]] == [key]
    r = http_a.post("/v1/sweeps", json={"scenario": example_json(), "grid": {key: [value]}})
    assert r.status_code == 422 and r.json()["problems"][0]["field"].endswith(key)


def test_infeasible_is_409_naming_the_conflicting_rules(http_a):
    data = example_json(name="too_tight", budget={"total": 100_000.0},
                        constraints=[{"name": "floor_acq", "type": "spend", "select": {"tasks": ["acquisition"]},
                                      "min": 500_000.0}])
    with pytest.raises(InfeasibleError) as exc:
        allocator.plan(scenario_from_dict(data))
    r = http_a.post("/v1/plans", json=data)
    assert r.status_code == 409, r.text[:500]
    assert r.json()["error"] == "infeasible"
    assert r.json()["conflict"] == exc.value.conflict and any("floor_acq" in c for c in r.json()["conflict"])
    assert http_a.get("/v1/scenarios/too_tight/versions").status_code == 404


def test_limits_on_body_cells_media_and_jobs(server):
    with server.client(server.keys["limits"]) as c:
        r = c.post("/v1/plans", content=b" " * 250_000, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"] == "too_large"
        r = c.post("/v1/plans", json=s_curve_json(301))
        assert r.status_code == 422 and "at most 300" in r.json()["problems"][0]["message"]
        r = c.post("/v1/plans", content=b"name: x\n", headers={"content-type": "application/yaml"})
        assert r.status_code == 415
        # three long jobs are the limit; the fourth is refused until one is cancelled
        long = s_curve_json(150, seed=5, name="limit_job", tolerance=1e-9)
        long["solver"]["name"] = "global"   # auto takes the envelope route: done before the cancels
        ids = [c.post("/v1/plans", json=long).json()["id"] for _ in range(3)]
        r = c.post("/v1/plans", json=long)
        assert r.status_code == 429 and r.json()["error"] == "too_many_jobs"
        for i in ids:
            assert c.post(f"/v1/jobs/{i}/cancel").json()["status"] == "cancelled"
        r = c.post("/v1/plans", json=long)
        assert r.status_code == 202
        c.post(f"/v1/jobs/{r.json()['id']}/cancel")
        # solver.time_limit is capped by the server's limit (stored with the plan's scenario)
        rec = c.post("/v1/plans", json=example_json(name="capped", solver={"name": "auto", "time_limit": 1e6})).json()
        assert c.get(f"/v1/plans/{rec['id']}/scenario").json()["solver"]["time_limit"] == 300.0


# ---------------------------------------------------------------- the Python client

def test_client_mirrors_the_library(server):
    from allocator.client import Client, RemotePlan

    with Client(server.url, server.keys["a"]) as cl:
        remote = cl.plan(ROOT / "scenarios/example.yaml")
        local = allocator.plan(ROOT / "scenarios/example.yaml")
        assert isinstance(remote, RemotePlan)
        np.testing.assert_allclose(remote.spend, local.spend, rtol=1e-12)
        assert remote.summary.marginal_return == pytest.approx(local.summary.marginal_return, rel=1e-12)
        assert list(remote.table.columns) == list(local.table.columns)
        assert cl.get_plan(remote.id).version == remote.version
        f = cl.frontier(ROOT / "scenarios/example.yaml", 1e6, 2e6, 3)
        np.testing.assert_allclose(f["table"]["net_value"],
                                   allocator.frontier(ROOT / "scenarios/example.yaml", 1e6, 2e6, 3).table["net_value"],
                                   rtol=1e-12)
        g = cl.plan(s_curve_json(8, name="client_global"))   # a job, waited for
        assert g.summary.solver == "global"
        bad = read_mapping(ROOT / "tests/readme/bad.yaml")
        with pytest.raises(SpecError) as exc:
            cl.plan(bad)
        with pytest.raises(SpecError) as lib:
            scenario_from_dict(bad)
        assert [str(p) for p in exc.value.problems] == [str(p) for p in lib.value.problems]
        assert cl.diff("example", 1, remote.version)["to"]["version"] == remote.version


# ---------------------------------------------------------------- restart

def test_restart_while_a_job_runs_fails_the_job_and_keeps_the_plans(tmp_path):
    srv = Server(tmp_path, env=LIMITS)
    key = new_key(tmp_path, "team-r")
    try:
        with srv.client(key) as c:
            kept = c.post("/v1/plans", json=example_json(name="kept")).json()
            long = s_curve_json(150, seed=4, name="interrupted", tolerance=1e-9)
            long["solver"]["name"] = "global"   # (auto's envelope route would finish before the kill)
            job = c.post("/v1/plans", json=long).json()
            wait_job(c, job["id"], until=("running",))
            deadline = time.monotonic() + 60
            while not job_pids(job["id"]) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert job_pids(job["id"]), "the job's process did not start"
    finally:
        srv.kill()
    # the job's process ends with the server, even killed (it must not run on, unowned)
    deadline = time.monotonic() + 10
    while job_pids(job["id"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not job_pids(job["id"])
    srv2 = Server(tmp_path, env=LIMITS)
    try:
        with srv2.client(key) as c:
            j = c.get(f"/v1/jobs/{job['id']}").json()
            assert j["status"] == "failed" and j["error"]["error"] == "interrupted"
            assert c.get(f"/v1/plans/{kept['id']}").json() == kept
            r = c.get(f"/v1/jobs/{job['id']}/result")
            assert r.status_code == 409 and r.json()["error"] == "interrupted"
            # the restarted server works
            assert c.post("/v1/plans", json=example_json(name="kept")).json()["version"] == 2
    finally:
        srv2.stop()
