"""The plan store on SQLite and on a real PostgreSQL server: the same versions and diffs.

PostgreSQL is started by the test from the system's binaries in a temporary folder on a free
local port (as the ``postgres`` user when run as root); the test skips, saying why, only where
no binaries exist.
"""

from __future__ import annotations

import threading

import pytest

import allocator
from allocator.cli.plan_cmd import plan_json
from allocator.service.store import Store, TooManyJobs, diff_plans
from allocator.spec import scenario_from_dict
from test_service_support import Server, example_json, new_key, postgres_server

BUDGETS = [1_500_000.0, 1_200_000.0, 900_000.0, 1_200_000.0]
VOLATILE = ("id", "created_at", "created_by", "solve_seconds")


@pytest.fixture(scope="module")
def postgres_url():
    with postgres_server() as url:
        yield url


def _comparable(obj):
    """Stored records without what differs between any two runs (ids, times, the key's id)."""
    if isinstance(obj, dict):
        return {k: _comparable(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_comparable(v) for v in obj]
    return obj


def _run_through_server(tmp_path, database_url: str | None) -> dict:
    """The same requests against a server on one store: version lists, diffs and plans."""
    srv = Server(tmp_path, database_url=database_url)
    key = new_key(tmp_path, "team-store", url=database_url)
    try:
        with srv.client(key) as c:
            health = c.get("/v1/health").json()
            for b in BUDGETS:
                r = c.post("/v1/plans", json=example_json(name="stored", budget={"total": b}))
                assert r.status_code == 201, r.text[:300]
            versions = c.get("/v1/scenarios/stored/versions").json()
            diffs = [c.get("/v1/scenarios/stored/diff", params={"from": a, "to": b}).json()
                     for a, b in ((1, 2), (2, 3), (2, 4), (4, 1))]
            plans = [c.get(f"/v1/scenarios/stored/versions/{v['version']}").json() for v in versions]
    finally:
        srv.stop()
    return {"health": health, "versions": versions, "diffs": diffs, "plans": plans}


def test_sqlite_and_postgresql_give_identical_versions_and_diffs(tmp_path, postgres_url):
    lite = _run_through_server(tmp_path / "lite", None)
    pg = _run_through_server(tmp_path / "pg", postgres_url)
    assert lite["health"]["store"] == "sqlite" and pg["health"]["store"] == "postgresql"
    assert lite["health"]["schema_revision"] == pg["health"]["schema_revision"] == "0002"
    assert [v["version"] for v in pg["versions"]] == [1, 2, 3, 4]
    assert _comparable(lite["versions"]) == _comparable(pg["versions"])
    assert _comparable(lite["diffs"]) == _comparable(pg["diffs"])
    # and both hold the library's plans, number for number
    for rec, b in zip(pg["plans"], BUDGETS):
        want = plan_json(allocator.plan(scenario_from_dict(example_json(name="stored", budget={"total": b}))))
        assert [c["spend"] for c in rec["cells"]] == pytest.approx([c["spend"] for c in want["cells"]], rel=1e-12)
    # a diff of a version with itself's budget (2 and 4) lists nothing
    assert pg["diffs"][2]["cells_changed"] == 0 and pg["diffs"][2]["same_input"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_store_numbers_versions_under_concurrent_writers(tmp_path, backend, request):
    url = f"sqlite:///{tmp_path / 'c.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    store = Store(url)
    rec, _ = store.create_key(f"ws-{backend}-{tmp_path.name}")
    summary = {"solver": "exact", "status": "optimal", "optimality_gap": 0.0, "solve_seconds": 0.0}
    cells = [{"segment": "a", "task": "acquisition", "spend": 1.0, "expected_value": 2.0}]
    errors: list = []

    def write():
        try:
            for _ in range(10):
                store.add_plan(rec.workspace, "race", {}, "h", "0", rec.id, summary, cells)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [v["version"] for v in store.list_versions(rec.workspace, "race")] == list(range(1, 41))
    # jobs admission counts per workspace
    for _ in range(2):
        store.create_job(rec.workspace, "plan", {}, rec.id, limit=2)
    with pytest.raises(TooManyJobs):
        store.create_job(rec.workspace, "plan", {}, rec.id, limit=2)
    assert store.fail_interrupted() == 2
    store.dispose()


def test_diff_lists_added_removed_and_changed_cells():
    a = {"scenario": "s", "id": "1", "version": 1, "created_at": "t", "input_hash": "x", "solver": "exact",
         "status": "optimal", "summary": {"net_value": 10.0, "total_spend": 5.0},
         "cells": [{"segment": "a", "task": "acquisition", "spend": 5.0, "expected_value": 15.0},
                   {"segment": "b", "task": "retention", "spend": 0.0, "expected_value": 1.0}]}
    b = {**a, "id": "2", "version": 2, "input_hash": "y", "summary": {"net_value": 12.0, "total_spend": 7.0},
         "cells": [{"segment": "a", "task": "acquisition", "spend": 7.0, "expected_value": 19.0},
                   {"segment": "c", "task": "winback", "spend": 0.0, "expected_value": 0.0}]}
    d = diff_plans(a, b)
    by = {(c["segment"], c["task"]): c for c in d["cells"]}
    assert by[("a", "acquisition")]["spend_change"] == 2.0 and by[("a", "acquisition")]["value_change"] == 4.0
    assert by[("b", "retention")]["change"] == "removed" and by[("c", "winback")]["change"] == "added"
    assert d["summary"]["net_value"] == {"from": 10.0, "to": 12.0, "change": 2.0}
    assert not d["same_input"]
