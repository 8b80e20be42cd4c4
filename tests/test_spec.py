"""Scenario validation: one readable problem per mistake, naming field and cell."""

from __future__ import annotations

import json

import pytest

from allocator.errors import SpecError
from allocator.spec import load_scenario, scenario_from_dict

from helpers import exp_cell, scenario


def problems_of(data) -> str:
    with pytest.raises(SpecError) as info:
        scenario_from_dict(data)
    return str(info.value)


def one_cell(**changes):
    cell = exp_cell(pool=1000, value=100, ceiling=0.2, rate=0.05)
    cell.update(changes)
    return scenario({("mass", "acquisition"): cell}, budget=1000.0)


def test_minimal_shape_from_the_issue_is_valid():
    sc = scenario_from_dict({
        "name": "example", "currency": "USD", "budget": {"total": 100000, "use_all": False},
        "segments": [{"id": "mass", "tasks": {"acquisition": {
            "pool": 10000, "value": 300, "curve": {"family": "exponential", "ceiling": 0.10, "rate": 0.05},
            "min_spend": 0, "max_spend": None, "current_spend": 20000}}}]})
    assert sc.budget.total == 100000 and sc.segments[0].tasks["acquisition"].pool == 10000


@pytest.mark.parametrize("changes,expected", [
    ({"pool": -5}, "pool of cell (mass, acquisition): Input should be greater than 0; got -5"),
    ({"pool": float("nan")}, "pool of cell (mass, acquisition): Input should be a finite number"),
    ({"pool": "many"}, "pool of cell (mass, acquisition): Input should be a valid number; got 'many'"),
    ({"curve": {"family": "gompertz", "rate": 1}},
     "curve.family of cell (mass, acquisition): unknown curve family 'gompertz'; known: "),
    ({"curve": {"family": "exponential", "ceiling": 0.2, "rate": -0.1}},
     "curve.rate of cell (mass, acquisition): must be in [0, inf]; got -0.1"),
    ({"curve": {"family": "exponential", "ceiling": 0.1, "floor": 0.3, "rate": 1}},
     "curve.ceiling of cell (mass, acquisition): must be >= floor (0.3); got 0.1"),
    ({"curve": {"family": "exponential", "ceiling": 1.2, "rate": 1}},
     "curve.ceiling of cell (mass, acquisition): must be in [0, 1]; got 1.2"),
    ({"min_spend": 500, "max_spend": 300}, "max_spend of cell (mass, acquisition): must be >= min_spend (500); got 300"),
    ({"colour": "red"}, "colour of cell (mass, acquisition): unknown key"),
    ({"value": {"clv": {"margin": 10, "retention": 1.5, "discount": 0.1}}},
     "value.clv.retention of cell (mass, acquisition): Input should be less than or equal to 1"),
])
def test_bad_cell_inputs_name_field_cell_and_rule(changes, expected):
    assert expected in problems_of(one_cell(**changes))


def test_every_problem_is_listed_not_just_the_first():
    data = scenario({("a", "acquisition"): exp_cell(pool=-1, value=10, ceiling=0.2, rate=1),
                     ("b", "winback"): exp_cell(pool=10, value=10, ceiling=0.2, rate=-1)})
    text = problems_of(data)
    # the schema problem of one cell does not stop the curve check of the other (issue 8)
    assert "(2 problems)" in text and "pool of cell (a, acquisition)" in text
    assert "curve.rate of cell (b, winback): must be in [0, inf]; got -1" in text
    text2 = problems_of(scenario({("a", "acquisition"): exp_cell(pool=1, value=10, ceiling=2, rate=1),
                                  ("b", "winback"): exp_cell(pool=10, value=10, ceiling=0.2, rate=-1)}))
    assert "(2 problems)" in text2 and "(a, acquisition)" in text2 and "(b, winback)" in text2


def test_unknown_task_and_top_level_keys():
    data = scenario({("a", "acquisition"): exp_cell(pool=1, value=1, ceiling=0.1, rate=1)})
    data["segments"][0]["tasks"]["upsell"] = data["segments"][0]["tasks"]["acquisition"]
    data["budgett"] = 5
    text = problems_of(data)
    assert "budgett: unknown key" in text
    assert "task of cell (a, upsell): unknown task 'upsell'; allowed: acquisition, retention, winback" in text


def test_duplicate_segments_and_missing_segments():
    data = scenario({("a", "acquisition"): exp_cell(pool=1, value=1, ceiling=0.1, rate=1)})
    data["segments"].append(dict(data["segments"][0]))
    assert "segment ids must be unique; 'a' appears twice" in problems_of(data)
    assert "neither `segments` nor a `model` file" in problems_of({"name": "x"})


def test_yaml_reads_exponent_floats(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: t\nbudget: {total: 1e5}\nsegments:\n  - id: a\n    tasks:\n      acquisition:\n"
                    "        pool: 1e3\n        value: 10\n        curve: {family: exponential, ceiling: 0.1, rate: 5e-2}\n")
    sc = load_scenario(path)
    assert sc.budget.total == 100000.0 and sc.segments[0].tasks["acquisition"].curve["rate"] == 0.05


def test_malformed_and_missing_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nsegments: [\n")
    with pytest.raises(SpecError, match="is not valid YAML"):
        load_scenario(bad)
    with pytest.raises(SpecError, match="no such file"):
        load_scenario(tmp_path / "nope.yaml")
    lst = tmp_path / "list.json"
    lst.write_text(json.dumps([1, 2]))
    with pytest.raises(SpecError, match="top level must be a mapping of keys; got list"):
        load_scenario(lst)


def test_scenario_referencing_a_model_file(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    model = {"name": "m", "currency": "EUR", "segments": scenario(
        {("a", "acquisition"): exp_cell(pool=100, value=50, ceiling=0.5, rate=1.0)})["segments"]}
    (models / "m.json").write_text(json.dumps(model))
    scen = tmp_path / "scenarios"
    scen.mkdir()
    (scen / "s.yaml").write_text("name: s\nmodel: ../models/m.json\nbudget: {total: 10}\n")
    sc = load_scenario(scen / "s.yaml")
    assert sc.currency == "EUR" and sc.segments[0].id == "a"
    (scen / "both.yaml").write_text("name: s\nmodel: ../models/m.json\nsegments: []\n")
    with pytest.raises(SpecError, match="give either `model` or `segments`, not both"):
        load_scenario(scen / "both.yaml")
