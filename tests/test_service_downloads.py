"""Stored plans as files: ``plan.xlsx`` and ``report.html`` of any version, through a real server.

The truth is the stored plan itself (its JSON record): the workbook's Plan sheet must hold its
cells (money rounded to the cent by largest remainder, each column adding up to the rounded
total), the report must show its numbers. The documents are re-derived from the stored scenario
at the stored spend, so a stored plan that the engine no longer reproduces is refused (409).
"""

from __future__ import annotations

import io
import json

import numpy as np
import openpyxl
import pytest

from allocator.plan import PLAN_COLUMNS
from allocator.service.store import Store
from test_service_support import Server, example_json, new_key, s_curve_json, wait_job

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("downloads")
    srv = Server(data, workers=1)
    srv.keys = {"a": new_key(data, "team-a"), "b": new_key(data, "team-b")}
    with srv.client(srv.keys["a"]) as c:
        srv.example = c.post("/v1/plans", json=example_json(name="dl_example")).json()
        c.post("/v1/plans", json=example_json(name="dl_example", budget={"total": 1_200_000.0}))
        job = c.post("/v1/plans", json=s_curve_json(8, name="dl_global")).json()
        assert wait_job(c, job["id"])["status"] == "done"
        srv.scurve = c.get(f"/v1/jobs/{job['id']}/result").json()
    yield srv
    srv.stop()


def plan_sheet(content: bytes) -> tuple[list[str], list[tuple]]:
    wb = openpyxl.load_workbook(io.BytesIO(content))
    rows = list(wb["Plan"].values)
    return list(rows[0]), rows[1:]


def assert_sheet_holds(rec: dict, content: bytes) -> None:
    header, rows = plan_sheet(content)
    cells = rec["cells"]
    assert header == list(cells[0].keys()) and header[:len(PLAN_COLUMNS)] == PLAN_COLUMNS
    assert [(r[0], r[1]) for r in rows] == [(c["segment"], c["task"]) for c in cells]
    col = {name: i for i, name in enumerate(header)}
    for name in ("spend", "expected_value", "net_value"):
        got = np.array([r[col[name]] for r in rows], float)
        want = np.array([c[name] for c in cells], float)
        # each cell to the cent (largest remainder moves a cell by less than one cent) ...
        np.testing.assert_allclose(got, want, atol=0.01 + 1e-9, err_msg=name)
        # ... and the column adds up to the stored total, rounded
        assert round(got.sum(), 2) == pytest.approx(round(want.sum(), 2), abs=0.011), name
    for name in ("pool", "marginal_return", "required_return"):
        got = np.array([r[col[name]] for r in rows], float)
        np.testing.assert_allclose(got, [c[name] for c in rec["cells"]], rtol=1e-12, err_msg=name)


def test_plan_xlsx_holds_the_stored_cells(server):
    rec = server.example
    with server.client(server.keys["a"]) as c:
        r = c.get(f"/v1/plans/{rec['id']}/plan.xlsx")
        assert r.status_code == 200 and r.headers["content-type"] == XLSX
        assert r.headers["content-disposition"] == 'attachment; filename="dl_example-v1-plan.xlsx"'
        assert_sheet_holds(rec, r.content)
        summary = {row[0]: row[1] for row in openpyxl.load_workbook(io.BytesIO(r.content))["Summary"].values}
        assert summary["scenario hash"] == rec["input_hash"]
        assert summary["solve seconds"] == pytest.approx(rec["solve_seconds"])
        # the same document under the version's own address
        v = c.get("/v1/scenarios/dl_example/versions/1/plan.xlsx")
        assert v.status_code == 200 and plan_sheet(v.content) == plan_sheet(r.content)
        v2 = c.get("/v1/scenarios/dl_example/versions/2/plan.xlsx")
        assert v2.headers["content-disposition"].endswith('-v2-plan.xlsx"')
        assert_sheet_holds(c.get("/v1/scenarios/dl_example/versions/2").json(), v2.content)


def test_plan_xlsx_of_a_global_solve_is_not_solved_again(server):
    rec = server.scurve
    assert rec["solver"] == "global"
    with server.client(server.keys["a"]) as c:
        r = c.get(f"/v1/plans/{rec['id']}/plan.xlsx")
        assert r.status_code == 200, r.text[:300]
        assert_sheet_holds(rec, r.content)
        h = c.get(f"/v1/plans/{rec['id']}/report.html")
        assert h.status_code == 200 and f"{rec['summary']['net_value']:,.2f}" in h.text


def test_report_html_shows_the_stored_numbers(server):
    rec = server.example
    with server.client(server.keys["a"]) as c:
        r = c.get(f"/v1/plans/{rec['id']}/report.html")
        assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
        assert r.headers["content-disposition"] == 'attachment; filename="dl_example-v1-report.html"'
        page = r.text
        assert page.startswith("<!DOCTYPE html>") or page.lstrip().lower().startswith("<!doctype html")
        s = rec["summary"]
        for number in (s["net_value"], s["total_spend"]):
            assert f"{number:,.2f}" in page
        assert f"{s['marginal_return']:.4f}" in page and rec["input_hash"] in page
        for cell in rec["cells"]:
            assert f">{cell['segment']}<" in page
        assert c.get("/v1/scenarios/dl_example/versions/1/report.html").status_code == 200


def test_downloads_are_isolated_by_workspace(server):
    rec = server.example
    with server.client(server.keys["b"]) as b:
        for path in (f"/v1/plans/{rec['id']}/plan.xlsx", f"/v1/plans/{rec['id']}/report.html",
                     "/v1/scenarios/dl_example/versions/1/plan.xlsx",
                     "/v1/scenarios/dl_example/versions/1/report.html"):
            r = b.get(path)
            assert r.status_code == 404 and r.json()["error"] == "not_found", path
    with server.client(server.keys["a"]) as a:
        assert a.get("/v1/plans/nope/plan.xlsx").status_code == 404
        assert a.get("/v1/scenarios/dl_example/versions/9/report.html").status_code == 404
    with server.client(None) as anon:
        assert anon.get(f"/v1/plans/{rec['id']}/plan.xlsx").status_code == 401


def test_client_downloads_every_kind(server, tmp_path):
    from allocator.client import Client
    from allocator.errors import SpecError

    rec = server.example
    with Client(server.url, server.keys["a"]) as cl:
        path = cl.download(rec["id"], "xlsx", tmp_path)
        assert path == tmp_path / "dl_example-v1-plan.xlsx"
        assert_sheet_holds(rec, path.read_bytes())
        assert f"{rec['summary']['net_value']:,.2f}" in cl.download(rec["id"], "html").decode()
        assert cl.download(rec["id"], "csv").decode().splitlines()[0].split(",")[:3] == PLAN_COLUMNS[:3]
        assert json.loads(cl.download(rec["id"], "json")) == rec
        with pytest.raises(SpecError, match="kind"):
            cl.download(rec["id"], "pdf")


def test_a_plan_the_engine_no_longer_reproduces_is_refused(server):
    with server.client(server.keys["a"]) as c:
        rec = c.post("/v1/plans", json=example_json(name="dl_tampered")).json()
    store = Store(f"sqlite:///{server.data_dir / 'allocator.db'}", migrate=False)
    cells = [dict(x) for x in rec["cells"]]
    cells[0]["expected_value"] *= 1.01   # as if stored by an engine that valued the cell otherwise
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE plans SET cells_json = ? WHERE id = ?", (json.dumps(cells), rec["id"]))
    store.dispose()
    with server.client(server.keys["a"]) as c:
        r = c.get(f"/v1/plans/{rec['id']}/plan.xlsx")
        assert r.status_code == 409 and r.json()["error"] == "not_reproducible"
        assert "expected_value" in r.json()["message"]
        assert c.get(f"/v1/plans/{rec['id']}/plan.csv").status_code == 200   # the stored data still serve
