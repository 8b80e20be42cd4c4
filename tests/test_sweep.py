"""Scenario sets: extends/overrides, variants, parallel sweeps that stream, resume, and run on Dask."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import allocator
from allocator.cli import main
from allocator.errors import SpecError
from allocator.scenarios import ProgressBar, expand_variants, run_sweep, with_overrides
from allocator.scenarios.sweep import RESULTS_LOG
from allocator.spec.overrides import apply_overrides
from helpers import exp_cell, scenario, write_yaml

ROOT = Path(__file__).resolve().parents[1]


def _base() -> dict:
    cells = {("a", "acquisition"): exp_cell(1000, 100, 0.5, 0.1, current_spend=2000.0),
             ("a", "retention"): exp_cell(500, 300, 0.9, 0.05, floor=0.6),
             ("b", "retention"): exp_cell(800, 150, 0.8, 0.08, floor=0.5),
             ("b", "winback"): exp_cell(300, 120, 0.3, 0.02, max_spend=4000.0)}
    return scenario(cells, budget=8000.0, name="base")


def _sweep_file(tmp_path: Path, steps: int = 4) -> Path:
    write_yaml(tmp_path / "base.yaml", _base())
    return write_yaml(tmp_path / "sweep.yaml", {
        "extends": "base.yaml", "name": "sw",
        "variants": {"grid": {
            "budget.total": {"from": 2000, "to": 20000, "steps": steps},
            "retention_cost": {"normal": {}, "high": {"segments.*.tasks.retention.curve.rate": {"scale": 0.8}}}}}})


# ---------------------------------------------------------------- extends and overrides

def test_extends_merges_and_overrides_any_field(tmp_path):
    write_yaml(tmp_path / "base.yaml", _base())
    child = write_yaml(tmp_path / "child.yaml", {
        "extends": "base.yaml", "name": "child", "budget": {"use_all": True},
        "overrides": {"budget.total": {"scale": 2}, "segments.b.tasks.winback.pool": 999,
                      "segments.*.tasks.retention.curve.rate": {"add": 0.01},
                      "segments.a.tasks.acquisition.max_spend": 5000}})
    sc = allocator.load_scenario(child)
    assert sc.name == "child" and sc.budget.total == 16000.0 and sc.budget.use_all is True
    seg = {s.id: s for s in sc.segments}
    assert seg["b"].tasks["winback"].pool == 999
    assert seg["a"].tasks["retention"].curve["rate"] == pytest.approx(0.06)
    assert seg["b"].tasks["retention"].curve["rate"] == pytest.approx(0.09)
    assert seg["a"].tasks["acquisition"].max_spend == 5000
    assert seg["a"].tasks["acquisition"].curve["rate"] == 0.1  # untouched
    # the example sweep file extends the example scenario
    assert allocator.load_scenario(ROOT / "scenarios" / "example_sweep.yaml").budget.total == 1500000


def test_override_errors_name_the_path(tmp_path):
    write_yaml(tmp_path / "base.yaml", _base())
    bad = write_yaml(tmp_path / "bad.yaml", {"extends": "base.yaml", "overrides": {
        "segments.zz.tasks.acquisition.pool": 1, "budget.total": {"scale": "x"}}})
    with pytest.raises(SpecError) as err:
        allocator.load_scenario(bad)
    text = str(err.value)
    assert "segments.zz.tasks.acquisition.pool: no item 'zz' in segments (known: a, b)" in text
    assert "budget.total: `scale` takes a number; got 'x'" in text
    typo = write_yaml(tmp_path / "typo.yaml", {"extends": "base.yaml", "overrides": {"budget.totl": 5}})
    with pytest.raises(SpecError, match=r"budget.totl: unknown key"):
        allocator.load_scenario(typo)
    write_yaml(tmp_path / "x.yaml", {"extends": "y.yaml"})
    write_yaml(tmp_path / "y.yaml", {"extends": "x.yaml"})
    with pytest.raises(SpecError, match=r"extends: scenario files extend each other in a cycle"):
        allocator.load_scenario(tmp_path / "x.yaml")


def test_with_overrides_in_python():
    sc = allocator.scenario_from_dict(_base())
    sc2 = with_overrides(sc, {"segments.a.tasks.retention.value": 450.0})
    assert {s.id: s for s in sc2.segments}["a"].tasks["retention"].value == 450.0
    assert sc.segments[0].tasks["retention"].value == 300  # the original is unchanged


# ---------------------------------------------------------------- variants

def test_grid_and_cases_expand_in_order():
    vs = expand_variants({"grid": {"budget.total": {"from": 1e6, "to": 1e7, "steps": 10},
                                   "cost": {"low": {}, "high": {"x.y": 1}}},
                          "cases": [{"name": "special", "set": {"budget.total": 5}}]})
    assert len(vs) == 21
    assert vs[0].params == {"budget.total": 1e6, "cost": "low"} and vs[1].params["cost"] == "high"
    assert vs[19].params["budget.total"] == 1e7 and vs[20].params == {"budget.total": None, "cost": None,
                                                                      "case": "special"}
    assert [v.id for v in vs[:3]] == ["v0000", "v0001", "v0002"]
    with pytest.raises(SpecError, match=r"variants.grid.budget.total: `steps` must be a whole number >= 1"):
        expand_variants({"grid": {"budget.total": {"from": 1, "to": 2, "steps": 0}}})


def test_sweep_rows_equal_independent_plans(tmp_path):
    res = run_sweep(_sweep_file(tmp_path), tmp_path / "out", executor="serial")
    assert len(res.summary) == 8 and (res.summary["status"] == "optimal").all()
    assert len(res.cells) == 8 * 4
    for row in res.summary.itertuples():
        over = {"budget.total": float(getattr(row, "_2"))}
        if row.retention_cost == "high":
            over["segments.*.tasks.retention.curve.rate"] = {"scale": 0.8}
        ref = allocator.plan(apply_overrides(_base(), over), solver="exact")
        assert row.net_value == pytest.approx(ref.summary.net_value, rel=1e-12)
        cells = res.cells[res.cells.scenario_id == row.scenario_id]
        np.testing.assert_allclose(cells["spend"], ref.table["spend"], rtol=1e-12)
        np.testing.assert_allclose(cells["marginal_return"], ref.table["marginal_return"], rtol=1e-12)
    # baseline beside the plan
    assert "net_value_gained" in res.summary and "current_spend" in res.cells
    assert list(res.cells.columns[:3]) == ["scenario_id", "budget.total", "retention_cost"]


def test_infeasible_variant_is_reported_not_fatal(tmp_path):
    data = _base()
    data["segments"][0]["tasks"]["acquisition"]["min_spend"] = 3000.0
    write_yaml(tmp_path / "base.yaml", data)
    f = write_yaml(tmp_path / "s.yaml", {"extends": "base.yaml", "variants": {"grid": {"budget.total": [1000, 9000]}}})
    res = run_sweep(f, tmp_path / "out", executor="serial")
    assert list(res.summary["status"]) == ["infeasible", "optimal"]
    assert "min_spend add up to 3,000, more than budget.total = 1,000" in res.summary["message"][0]
    assert set(res.cells["scenario_id"]) == {"v0001"}


# ---------------------------------------------------------------- streaming and resume

def _read_tables(out: Path) -> tuple[str, str]:
    return (out / "cells.csv").read_text(), (out / "summary.csv").read_text()


def test_resume_after_interruption_gives_the_same_tables(tmp_path):
    f = _sweep_file(tmp_path, steps=6)
    full = tmp_path / "full"
    run_sweep(f, full, executor="serial", chunksize=2)

    part = tmp_path / "part"

    def stop_after_two_chunks(done, total):
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(f, part, executor="serial", chunksize=2, progress=stop_after_two_chunks)
    lines = (part / RESULTS_LOG).read_text().splitlines()
    assert len(lines) == 4 and not (part / "cells.csv").exists()
    # an interrupted write leaves a torn last line: it must be ignored
    with open(part / RESULTS_LOG, "a") as fh:
        fh.write(lines[-1][: len(lines[-1]) // 2])
    res = run_sweep(f, part, executor="serial", chunksize=2)
    assert res.reused == 4 and res.ran == 8
    assert _read_tables(part) == _read_tables(full)
    # a finished sweep re-runs nothing; changing one variant re-runs only that one
    assert run_sweep(f, part, executor="serial").ran == 0
    data = json.loads((part / RESULTS_LOG).read_text().splitlines()[0])
    assert data["id"] == "v0000" or data["fingerprint"]


def test_changed_variants_rerun_only_themselves(tmp_path):
    write_yaml(tmp_path / "base.yaml", _base())

    def sweep_file(budgets):
        return write_yaml(tmp_path / "s.yaml", {"extends": "base.yaml", "variants": {"grid": {
            "budget.total": budgets, "segments.b.tasks.winback.value": [100.0, 140.0]}}})

    out = tmp_path / "o"
    run_sweep(sweep_file([2000.0, 9000.0, 20000.0]), out, executor="serial")
    res = run_sweep(sweep_file([2000.0, 9000.0, 30000.0]), out, executor="serial")
    assert res.ran == 2 and res.reused == 4  # only the last budget (two variants) changed


def test_local_processes_and_serial_loop_agree(tmp_path):
    f = _sweep_file(tmp_path, steps=3)
    run_sweep(f, tmp_path / "serial", executor="serial")
    run_sweep(f, tmp_path / "procs", executor="local", workers=2)
    assert _read_tables(tmp_path / "serial") == _read_tables(tmp_path / "procs")


def test_dask_executor_gives_the_same_tables_as_local(tmp_path):
    distributed = pytest.importorskip("distributed")
    f = _sweep_file(tmp_path, steps=3)
    run_sweep(f, tmp_path / "local", executor="local", workers=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                                  dashboard_address=None) as cluster:
        address = cluster.scheduler_address.replace("tcp://", "dask://")
        res = run_sweep(f, tmp_path / "dask", executor=address, chunksize=1)
    assert "Dask cluster" in res.executor
    assert _read_tables(tmp_path / "local") == _read_tables(tmp_path / "dask")


def test_progress_bar_shows_counts_rate_and_time_left():
    import io

    buf = io.StringIO()
    bar = ProgressBar(200, stream=buf, already=0)
    bar.t0 -= 10.0  # ten seconds in
    line = bar.line(50)
    assert line.startswith("50/200 variants [######")
    assert "5.0/s" in line and "elapsed 0:10" in line and "left 0:30" in line
    bar.update(200)
    bar.close()
    assert buf.getvalue().endswith("left 0:00\n")


# ---------------------------------------------------------------- CLI

def test_sweep_cli_runs_the_example_sweep(tmp_path, capsys):
    out = tmp_path / "o"
    rc = main(["sweep", str(ROOT / "scenarios" / "example_sweep.yaml"), "--out", str(out), "--executor", "serial",
               "--no-progress"])
    assert rc == 0
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 20 and (summary["status"] == "optimal").all()
    assert sorted(set(summary["retention_cost"])) == ["as_calibrated", "plus_25pct"]
    assert summary["budget.total"].min() == 1_000_000 and summary["budget.total"].max() == 10_000_000
    # dearer retention never helps
    piv = summary.pivot(index="budget.total", columns="retention_cost", values="net_value")
    assert (piv["plus_25pct"] <= piv["as_calibrated"] + 1e-6).all()
    assert "20 variants (20 optimal)" in capsys.readouterr().out


def test_sweep_cli_errors_exit_2_and_write_nothing(tmp_path, capsys):
    write_yaml(tmp_path / "base.yaml", _base())
    bad = write_yaml(tmp_path / "bad.yaml", {"extends": "base.yaml", "variants": {"grid": {
        "segments.a.tasks.acquisition.pool": [100, -5]}}})
    out = tmp_path / "o"
    assert main(["sweep", str(bad), "--out", str(out), "--executor", "serial"]) == 2
    err = capsys.readouterr().err
    assert "variant v0001 (segments.a.tasks.acquisition.pool=-5): pool of cell (a, acquisition)" in err
    assert not (out / "cells.csv").exists() and not (out / "summary.csv").exists()
    bad0 = write_yaml(tmp_path / "bad0.yaml", {"extends": "base.yaml", "variants": {"grid": {
        "segments.zz.pool": [1, 2]}}})
    out0 = tmp_path / "o0"
    assert main(["sweep", str(bad0), "--out", str(out0)]) == 2
    assert "segments.zz.pool: no item 'zz' in segments (known: a, b)" in capsys.readouterr().err
    assert not out0.exists()  # the first variant is checked before anything is created
    novar = write_yaml(tmp_path / "novar.yaml", {"extends": "base.yaml"})
    assert main(["sweep", str(novar), "--out", str(out)]) == 2
    assert "the scenario declares no variants" in capsys.readouterr().err
    ok = _sweep_file(tmp_path, steps=2)
    assert main(["sweep", str(ok), "--out", str(out), "--executor", "warp-drive"]) == 2
    assert "--executor: unknown executor 'warp-drive'" in capsys.readouterr().err
    assert not (out / "cells.csv").exists()


def test_overrides_reach_constraints_by_name(tmp_path):
    data = _base()
    data["constraints"] = [{"name": "ret_cap", "type": "spend", "select": {"tasks": ["retention"]}, "max": 3000.0}]
    write_yaml(tmp_path / "base.yaml", data)
    child = write_yaml(tmp_path / "c.yaml", {"extends": "base.yaml", "overrides": {
        "constraints.ret_cap.max": {"scale": 2},
        "constraints+": {"name": "b_floor", "type": "spend", "select": {"segments": ["b"]}, "min": 100.0}}})
    sc = allocator.load_scenario(child)
    assert [c.name for c in sc.constraints] == ["ret_cap", "b_floor"]
    assert sc.constraints[0].max == 6000.0 and sc.constraints[1].min == 100.0


def test_sweep_quiet_prints_nothing_on_stdout_and_money_adds_up(tmp_path):
    # local processes in a separate process: a worker's stray output would land on stdout too
    import subprocess
    import sys

    write_yaml(tmp_path / "cs.yaml", {"extends": str(ROOT / "scenarios" / "constrained.yaml"), "name": "cs",
                                      "variants": {"grid": {"budget.total": [1200000, 1500000]}}})
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-c", "import sys; from allocator.cli import main; sys.exit(main())",
                          "sweep", str(tmp_path / "cs.yaml"), "--quiet", "--out", str(out), "--workers", "2"],
                         capture_output=True, text=True, check=True)
    assert run.stdout == ""
    summary, cells = pd.read_csv(out / "summary.csv"), pd.read_csv(out / "cells.csv")
    np.testing.assert_allclose(summary["net_value"], summary["total_value"] - summary["total_spend"]
                               - summary["activation_cost"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(cells["net_value"], cells["value"] - cells["spend"] - cells["activation_cost"],
                               rtol=1e-11, atol=1e-6)
    assert (summary["activation_cost"] > 0).all()
    # (the CSV keeps 12 digits of figures near 1e7)
    np.testing.assert_allclose(summary["net_value_gained"], summary["net_value"] - summary["baseline_net_value"],
                               rtol=0, atol=1e-3)
