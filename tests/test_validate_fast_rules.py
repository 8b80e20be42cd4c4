"""The quick routes through the scenario rules and the compiler: the same problems and arrays as the plain ones.

* :func:`allocator.spec.rules.check_magnitudes` screens each cell (:func:`~allocator.spec.rules._in_range`)
  and words only the cells the screen sends on; with the screen off every cell is worded, and the
  problems must be the same, in the same order.
* :func:`allocator.compile.compile_scenario` builds its arrays column by column and takes one minimum
  over all curve blocks; a plain per-cell reference (the compiler as it was written first) must give
  the same arrays, bit for bit.

Scenarios come from ``scenarios/`` and from random mutations of them: numbers at and past every limit,
nan and infinite curve parameters, huge integers, value curves, lifetime values, locks and rules.
"""

from __future__ import annotations

import copy
import json
import math
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from allocator.compile import cell_value, compile_scenario
from allocator.constraints import CellLabels, select
from allocator.curves import get_family
from allocator.curves.product import ProductFamily
from allocator.service.config import Settings
from allocator.service.requests import parse_json, scenario_data, scenario_from_request
from allocator.spec import Scenario, canonical_data, rules, scenario_from_dict
from allocator.spec.constraints import LockConstraint
from allocator.spec.loader import resolve_mapping
from allocator.workbook.plan_book import scenario_hash

from helpers import exp_cell, scenario

ROOT = Path(__file__).resolve().parents[1]
FILES = [(data, p.parent) for p in sorted((ROOT / "scenarios").glob("*.yaml"))
         if "periods" not in (data := yaml.safe_load(p.read_text()))]
BASES = [{k: v for k, v in resolve_mapping(data, base).items() if k != "model"}
         for data, base in FILES if "cells" not in data]
"""The scenario files with their model files and bases read in (plain mappings, no file references)."""

EDGES = [1e12, 1e12 * (1 + 2 ** -52), 1e15, 1e15 * (1 + 2 ** -52), 9.99e14, 5e14, 1e16, 0.0, -0.0, 3.5, 10 ** 13]
CURVE_EDGES = [*EDGES, float("nan"), float("inf"), -float("inf"), 10 ** 40, -(10 ** 40), True, False, "x", [1, 2],
               None, 0.5, 2.0]


def _mutate(data: dict, rng: random.Random) -> dict:
    """``data`` with a few cells, budgets and rules changed towards the limits."""
    d = copy.deepcopy(data)
    segments = d.get("segments") or []
    cells = [(seg, task) for seg in segments for task in seg.get("tasks", {})]
    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        if cells and kind < 0.6:
            seg, task = rng.choice(cells)
            cell = seg["tasks"][task]
            field = rng.choice(["pool", "min_spend", "max_spend", "current_spend", "min_active_spend",
                                "activation_cost", "value", "margin", "curve", "curve", "value_curve"])
            if field == "curve":
                key = rng.choice(["rate", "ceiling", "floor", "extra"])
                cell.setdefault("curve", {})[key] = rng.choice(CURVE_EDGES)
            elif field == "value_curve":
                cell["value_curve"] = rng.choice([
                    {"family": "exponential", "ceiling": 1.0, "rate": rng.choice(CURVE_EDGES), "floor": 0.5},
                    {"family": "hill", "ceiling": 1.0, "half_saturation": 10.0, "shape": 2.0}])
            elif field == "margin":
                cell["value"] = {"clv": {"margin": rng.choice(EDGES), "retention": rng.choice([0.5, 0.9, 1.0]),
                                         "discount": rng.choice([0.0, 0.1]),
                                         **({"horizon": 12.0} if rng.random() < 0.3 else {}),
                                         **({"timing": rng.choice(["margin_now", "end_of_period"])}
                                            if rng.random() < 0.3 else {})}}
            else:
                cell[field] = rng.choice(EDGES)
        elif cells and kind < 0.85:
            seg, _ = rng.choice(cells)
            d.setdefault("constraints", []).append(rng.choice([
                {"name": f"lock{rng.randrange(99)}", "type": "lock", "select": {"segments": [seg["id"]]},
                 "spend": rng.choice([0.0, 100.0, "current"])},
                {"name": f"act{rng.randrange(99)}", "type": "min_active", "spend": 10.0,
                 "activation_cost": rng.choice([0.0, -0.0, 25.0])},
                {"name": f"cap{rng.randrange(99)}", "type": "spend", "select": {"tasks": ["retention"]},
                 "max": rng.choice(EDGES)}]))
        else:
            d["budget"] = rng.choice([{"total": 1e6}, {"total": 1e16}, {"total": 1e6, "unit": 100.0},
                                      {"use_all": True}, {"total": 2e6, "use_all": True}])
    return d


def _scenarios(count: int, seed: int):
    """Schema-valid scenarios: every base file, then mutations (those the schema refuses are skipped)."""
    rng = random.Random(seed)
    for data in BASES:
        yield scenario_from_dict(data)
    made = 0
    while made < count:
        mutated = _mutate(rng.choice(BASES), rng)
        try:
            sc = Scenario.model_validate(mutated)  # rule problems or not: the checks are compared
        except ValidationError:
            continue
        made += 1
        yield sc


def test_the_magnitude_screen_only_skips_cells_without_problems(monkeypatch):
    screened = 0
    for sc in _scenarios(400, seed=11):
        quick = rules.check_magnitudes(sc)
        with monkeypatch.context() as m:
            m.setattr(rules, "_in_range", lambda cell: False)
            plain = rules.check_magnitudes(sc)
        assert [str(p) for p in quick] == [str(p) for p in plain]
        screened += bool(plain)
    assert screened > 50  # the mutations reach past the limits often


def test_the_screen_sends_on_every_cell_past_a_limit():
    base = scenario({("a", "retention"): exp_cell(pool=100, value=50, ceiling=0.5, rate=1.0)})
    for field, value in [("pool", 1e12 * (1 + 2 ** -52)), ("max_spend", 1e15 * (1 + 2 ** -52)), ("value", 1e16),
                         ("activation_cost", 1e15 * (1 + 2 ** -52))]:
        data = copy.deepcopy(base)
        data["segments"][0]["tasks"]["retention"][field] = value
        cell = Scenario.model_validate(data).segments[0].tasks["retention"]
        assert not rules._in_range(cell), field
    for value in (float("nan"), float("inf"), 10 ** 40, 1e12 * (1 + 2 ** -52)):
        data = copy.deepcopy(base)
        data["segments"][0]["tasks"]["retention"]["curve"]["rate"] = value
        assert not rules._in_range(Scenario.model_validate(data).segments[0].tasks["retention"]), value


# ---------------------------------------------------------------- the compiler against a plain reference

def _reference(sc: Scenario) -> dict[str, np.ndarray]:
    """The compiler's cell arrays as first written: one cell at a time, one minimum per curve block."""
    seg, task, pool, value, lo, hi, cur = [], [], [], [], [], [], []
    by_family: dict = defaultdict(list)
    for s in sc.segments or []:
        for t, cell in s.tasks.items():
            i = len(seg)
            seg.append(s.id)
            task.append(t)
            pool.append(cell.pool)
            value.append(cell_value(cell))
            lo.append(cell.min_spend)
            hi.append(math.inf if cell.max_spend is None else cell.max_spend)
            cur.append(math.nan if cell.current_spend is None else cell.current_spend)
            raw = {k: v for k, v in cell.curve.items() if k != "family"}
            if cell.value_curve is None:
                by_family[cell.curve["family"]].append((i, raw))
            else:
                vraw = {k: v for k, v in cell.value_curve.items() if k != "family"}
                by_family[(cell.curve["family"], cell.value_curve["family"])].append(
                    (i, {"curve": raw, "value_curve": vraw}))
    pool_a, upper = np.array(pool, float), np.array(hi, float)
    for name, items in by_family.items():
        fam = get_family(name) if isinstance(name, str) else ProductFamily(*map(get_family, name))
        idx = np.array([i for i, _ in items], dtype=int)
        upper[idx] = np.minimum(upper[idx], pool_a[idx] * fam.domain_max(fam.pack([r for _, r in items])))
    min_active, activation = np.zeros(len(seg)), np.zeros(len(seg))
    for c in sc.constraints:
        if c.type == "min_active":
            mask = select(c.select, CellLabels.from_scenario(sc))
            min_active[mask] = np.maximum(min_active[mask], c.spend)
            activation[mask] = np.maximum(activation[mask], c.activation_cost)
    i = 0
    for s in sc.segments or []:
        for cell in s.tasks.values():
            if cell.min_active_spend is not None:
                min_active[i] = max(min_active[i], cell.min_active_spend)
            activation[i] = max(activation[i], cell.activation_cost)
            i += 1
    return {"segment": np.array(seg, dtype=object), "task": np.array(task, dtype=object), "pool": pool_a,
            "value": np.array(value, float), "lower": np.array(lo, float), "upper": np.maximum(upper, lo),
            "current_spend": np.array(cur, float), "min_active": min_active, "activation_cost": activation}


def _bits(a: np.ndarray) -> np.ndarray:
    return a if a.dtype == object else a.view(np.uint64)


def test_compiled_arrays_equal_the_plain_reference():
    compared = 0
    for sc in _scenarios(300, seed=5):
        if rules.check_scenario(sc) or any(isinstance(c, LockConstraint) for c in sc.constraints):
            continue  # only sound scenarios compile; locks replace bounds (tested below)
        problem, ref = compile_scenario(sc), _reference(sc)
        for name, want in ref.items():
            got = getattr(problem, name)
            if got is None:  # no integer features: the arrays are left out, and must be all zero
                assert name in ("min_active", "activation_cost") and not want.any(), name
                continue
            assert got.dtype == want.dtype and np.array_equal(_bits(got), _bits(want)), name
        compared += 1
    assert compared > 50


def test_locks_compile_as_before():
    """Locks (and clashing locks, and locks off the unit) give the same bounds or the same conflict."""
    base = scenario({("a", "retention"): exp_cell(pool=100, value=50, ceiling=0.5, rate=1.0, current_spend=30.0),
                     ("a", "winback"): exp_cell(pool=80, value=40, ceiling=0.4, rate=0.5, max_spend=60.0),
                     ("b", "retention"): exp_cell(pool=90, value=30, ceiling=0.3, rate=0.2)},
                    budget=1000.0)
    sc = scenario_from_dict({**base, "constraints": [
        {"name": "hold", "type": "lock", "select": {"segments": ["a"], "tasks": ["retention"]}, "spend": "current"},
        {"name": "fix", "type": "lock", "select": {"segments": ["b"]}, "spend": 20.0}]})
    p = compile_scenario(sc)
    assert p.lower.tolist() == [30.0, 0.0, 20.0] and p.upper[[0, 2]].tolist() == [30.0, 20.0]
    assert p.lock_names.tolist() == ["hold", "", "fix"]
    with pytest.raises(Exception, match="lock conflicts with the bounds of cell \\(a, winback\\)"):
        compile_scenario(scenario_from_dict({**base, "constraints": [
            {"name": "big", "type": "lock", "select": {"tasks": ["winback"]}, "spend": 70.0}]}))


# ---------------------------------------------------------------- the request path end to end

def test_requests_give_the_same_scenario_data_and_hash_on_either_json_route(monkeypatch):
    from allocator.spec import reading

    settings = Settings.from_env()
    for data in BASES:
        raw = json.dumps(data).encode()
        sc = scenario_from_request(parse_json(raw), settings)
        with monkeypatch.context() as m:
            m.setattr(reading, "_FAST_JSON_BYTES", -1)
            general = scenario_from_request(parse_json(raw), settings)
        assert sc == general
        assert scenario_data(sc) == canonical_data(general)
        assert scenario_hash(scenario_data(sc)) == scenario_hash(general)
