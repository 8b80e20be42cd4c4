"""Extreme but valid scales (issue 12, item 3): a correct optimal plan or a clear refusal.

Each case runs ``scenarios/example.yaml`` with one number pushed to an extreme through the
command line. The answer must be either a plan whose spends match the closed form (every
cell spends where ``value * p'(x) = 1``, clipped to its bounds, as no budget binds) with
status ``optimal`` and exit 0, or a refusal (exit 2 or 4) whose message names the field and
the cell. Never exit 0 with a plan that is not optimal.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from allocator.cli import main
from allocator.curves import get_family
from allocator.problem import CompiledProblem, CurveBlock
from allocator.solvers import solve

with open("scenarios/example.yaml", encoding="utf-8") as _fh:
    EXAMPLE = yaml.safe_load(_fh)

# needs allocator/explain/prices.py classify_bounds to cap its zero tolerance by the cell's own
# range and to scale it by the plan's spend, not the budget (patch handed to the lead)


def clv(v) -> float:
    """Value of one success: a number, or ``margin * r / (1 + d - r)`` (Gupta and Lehmann's CLV)."""
    if isinstance(v, (int, float)):
        return float(v)
    c = v["clv"]
    return c["margin"] * c["retention"] / (1 + c["discount"] - c["retention"])


def free_optimum(cell: dict) -> float:
    """Spend where ``value * p'(x) = 1`` (closed forms), clipped to the cell's bounds."""
    pool, value, cv = cell["pool"], clv(cell["value"]), cell["curve"]
    f = cv.get("floor", 0.0)
    if cv["family"] == "exponential":
        k = value * (cv["ceiling"] - f) * cv["rate"]
        x = math.log(k) / cv["rate"] if k > 1 else 0.0
    elif cv["family"] == "hill" and cv.get("shape", 1.0) == 1.0:
        h = cv["half_saturation"]
        x = max(math.sqrt(value * (cv["ceiling"] - f) * h) - h, 0.0)
    else:  # a concave table: the end of the last segment that returns more than 1
        pts = cv["points"]
        x = 0.0
        for (x0, p0), (x1, p1) in zip(pts, pts[1:]):
            if value * (p1 - p0) / (x1 - x0) > 1:
                x = x1
    s = pool * x
    s = max(s, cell.get("min_spend", 0.0))
    if cell.get("max_spend") is not None:
        s = min(s, cell["max_spend"])
    return s


def run(tmp_path, capsys, edit, *args):
    data = copy.deepcopy(EXAMPLE)
    edit(data)
    path = tmp_path / "extreme.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    out = tmp_path / "out"
    code = main(["plan", str(path), "--out", str(out), "--quiet", *args])
    return data, code, out, capsys.readouterr()


def assert_closed_form(data: dict, out) -> None:
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == "optimal"
    plan = pd.read_csv(out / "plan.csv")
    got = {(r.segment, r.task): r.spend for r in plan.itertuples()}
    for seg in data["segments"]:
        for task, cell in seg["tasks"].items():
            want = free_optimum(cell)
            assert got[(seg["id"], task)] == pytest.approx(want, rel=1e-6, abs=1e-6), (seg["id"], task)


def assert_refused(code: int, err: str, field: str, cell: str) -> None:
    assert code in (2, 4), err
    assert field in err and cell in err, err
    assert "Traceback" not in err


def _budget_1e12_cap_800(d):
    d["budget"]["total"] = 1e12
    d["segments"][0]["tasks"]["acquisition"]["max_spend"] = 800


def _budget_1e308(d):
    d["budget"]["total"] = 1e308


def _cap_1e_300(d):
    d["segments"][0]["tasks"]["acquisition"]["max_spend"] = 1e-300


def _half_saturation_1e308(d):
    d["segments"][2]["tasks"]["acquisition"]["curve"]["half_saturation"] = 1e308


@pytest.mark.parametrize("solver", ["auto", "global"])
def test_budget_1e12_with_a_cap_of_800(tmp_path, capsys, solver):
    data, code, out, cap = run(tmp_path, capsys, _budget_1e12_cap_800, "--solver", solver)
    assert code == 0, cap.err
    assert_closed_form(data, out)


def test_budget_1e308(tmp_path, capsys):
    data, code, out, cap = run(tmp_path, capsys, _budget_1e308)
    if code == 0:
        assert_closed_form(data, out)
    else:
        assert code == 2 and "budget.total" in cap.err, cap.err
        assert not (out / "plan.csv").exists()


def test_max_spend_1e_300(tmp_path, capsys):
    data, code, out, cap = run(tmp_path, capsys, _cap_1e_300)
    if code == 0:
        assert_closed_form(data, out)
    else:
        assert_refused(code, cap.err, "max_spend", "(enterprise, acquisition)")


def test_half_saturation_1e308(tmp_path, capsys):
    data, code, out, cap = run(tmp_path, capsys, _half_saturation_1e308)
    if code == 0:
        # a curve that flat returns nothing: the cell spends 0 and the rest their free optima
        data["segments"][2]["tasks"]["acquisition"]["max_spend"] = 0.0
        assert_closed_form(data, out)
    else:
        assert_refused(code, cap.err, "half_saturation", "(small_business, acquisition)")


# ---------------------------------------------------------------- the library, below validation


def _hill_problem(h: float, budget: float | None) -> CompiledProblem:
    """Two shape-1 Hill cells built as arrays (no spec limits): one sane, one with ``h``."""
    fam = get_family("hill")
    P = {"ceiling": np.array([0.5, 0.6]), "floor": np.zeros(2), "half_saturation": np.array([20.0, h]),
         "shape": np.ones(2)}
    return CompiledProblem(name="hill", segment=np.array(["a", "b"], dtype=object),
                           task=np.array(["acquisition"] * 2, dtype=object), pool=np.array([1000.0, 2500.0]),
                           value=np.array([200.0, 1500.0]), lower=np.zeros(2), upper=np.array([np.inf, 4e5]),
                           current_spend=np.full(2, np.nan), blocks=(CurveBlock(fam, np.arange(2), P),),
                           budget=budget)


@pytest.mark.parametrize("budget", [None, 1e6, 1e3])
def test_exact_solver_survives_an_overflowing_closed_form(budget):
    """Hill's closed-form spend rule overflows at half_saturation 1e308 (``sqrt(value * c * h)``);
    the cell's marginal return is ~1e-305, so it must spend nothing (it once got its cap)."""
    res = solve(_hill_problem(1e308, budget), "exact")
    assert res.spend[1] == pytest.approx(0.0, abs=1e-9)
    # the sane cell: value * c * h / (h + x)^2 = lam with lam = 1 unless the budget binds
    x_free = 1000.0 * (math.sqrt(200.0 * 0.5 * 20.0) - 20.0)
    want = x_free if budget is None or budget >= x_free else budget
    assert res.spend[0] == pytest.approx(want, rel=1e-7)
