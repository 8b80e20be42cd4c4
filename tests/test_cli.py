"""The command line on the bundled example and on every error path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from allocator.cli import main
from allocator.plan import PLAN_COLUMNS

from helpers import exp_cell, scenario

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "scenarios" / "example.yaml"


def write(tmp_path: Path, data: dict, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_plan_on_bundled_example_writes_a_plan_that_proves_itself(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["plan", str(EXAMPLE), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "common marginal return" in printed and "wrote" in printed
    plan = pd.read_csv(out / "plan.csv")
    assert list(plan.columns[: len(PLAN_COLUMNS)]) == PLAN_COLUMNS
    assert {"current_spend", "current_expected_value", "spend_change"} <= set(plan.columns)
    summary = json.loads((out / "summary.json").read_text())
    for key in ("status", "net_value", "total_value", "total_spend", "budget", "marginal_return",
                "budget_shadow_price", "kkt_max_deviation", "solver", "optimality_gap", "by_task", "by_segment",
                "allocation_ratio"):
        assert key in summary, key
    assert summary["status"] == "optimal"
    # recompute the evidence from the CSV alone
    assert plan["spend"].sum() == pytest.approx(summary["budget"], rel=1e-9)      # the budget binds
    interior = plan[plan["bound"] == "none"]
    assert len(interior) >= 8
    lam = summary["marginal_return"]
    np.testing.assert_allclose(interior["marginal_return"], lam, rtol=1e-6)
    assert summary["budget_shadow_price"] == pytest.approx(lam - 1.0)
    zero = plan[plan["bound"] == "zero"]
    assert (zero["spend"] == 0).all() and (zero["marginal_return"] <= lam).all()
    assert summary["net_value"] == pytest.approx((plan["expected_value"] - plan["spend"]).sum(), rel=1e-9)
    assert sum(summary["allocation_ratio"].values()) == pytest.approx(1.0)
    assert sum(t["spend"] for t in summary["by_task"].values()) == pytest.approx(summary["total_spend"])
    assert summary["baseline"]["net_value_gained"] > 0


def test_plan_default_output_folder_is_out_slash_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = scenario({("a", "acquisition"): exp_cell(pool=100, value=50, ceiling=0.5, rate=1.0)}, name="tiny")
    assert main(["plan", str(write(tmp_path, data)), "--quiet"]) == 0
    assert (tmp_path / "out" / "tiny" / "plan.csv").exists()
    assert (tmp_path / "out" / "tiny" / "summary.json").exists()


def test_validate_and_schema(capsys):
    assert main(["validate", str(EXAMPLE)]) == 0
    assert "valid; 9 segments, 22 cells, budget 1,500,000" in capsys.readouterr().out
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["additionalProperties"] is False and "segments" in schema["properties"]


def test_invalid_input_exits_2_with_message_and_writes_nothing(tmp_path, capsys):
    data = scenario({("vip", "winback"): exp_cell(pool=-3, value=50, ceiling=0.5, rate=1.0)})
    out = tmp_path / "out"
    assert main(["plan", str(write(tmp_path, data)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pool of cell (vip, winback): Input should be greater than 0; got -3" in err
    assert not out.exists()
    assert main(["validate", str(write(tmp_path, data))]) == 2


def test_infeasible_exits_3_and_names_the_conflict(tmp_path, capsys):
    data = scenario({("a", "acquisition"): exp_cell(pool=100, value=50, ceiling=0.5, rate=1.0, min_spend=700),
                     ("b", "retention"): exp_cell(pool=100, value=50, ceiling=0.5, rate=1.0, min_spend=600)},
                    budget=1000.0)
    out = tmp_path / "out"
    assert main(["plan", str(write(tmp_path, data)), "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert "the cells' min_spend add up to 1,300, more than budget.total = 1,000" in err
    assert "min_spend of cell (a, acquisition) = 700" in err and "min_spend of cell (b, retention) = 600" in err
    assert not out.exists()


def test_s_shaped_curve_refused_by_the_exact_solver_naming_the_cell(tmp_path, capsys):
    data = scenario({("vip", "retention"): {"pool": 100, "value": 50,
                                            "curve": {"family": "hill", "ceiling": 0.5, "half_saturation": 3,
                                                      "shape": 2.5}}})
    out = tmp_path / "out"
    assert main(["plan", str(write(tmp_path, data)), "--solver", "exact", "--out", str(out)]) == 4
    err = capsys.readouterr().err
    assert "needs concave response curves; S-shaped or non-concave curves in cell(s) (vip, retention)" in err
    assert not out.exists()


def test_a_failure_while_writing_leaves_no_half_written_plan(tmp_path, monkeypatch, capsys):
    data = scenario({("a", "acquisition"): exp_cell(pool=100, value=50, ceiling=0.5, rate=1.0)})
    path = write(tmp_path, data)
    out = tmp_path / "out"
    real_replace = os.replace
    calls = []

    def flaky_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_replace(src, dst)

    # fail on the second file: the first must not be left behind either
    monkeypatch.setattr("allocator.io.os.replace", flaky_replace)
    assert main(["plan", str(path), "--out", str(out)]) == 1
    assert "error: cannot read or write a file: disk full" in capsys.readouterr().err
    assert not out.exists() or list(out.iterdir()) == []  # no plan, no summary, no temporary files


def test_entry_point_prints_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nsegments: [\n")
    proc = subprocess.run([sys.executable, "-m", "allocator", "plan", str(bad)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 2
    assert "is not valid YAML" in proc.stderr and "Traceback" not in proc.stderr
