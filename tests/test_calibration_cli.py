"""``allocator calibrate``: end to end, and bad inputs (clear message naming column and row, exit 2, no file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from allocator.cli import main
from allocator.spec import load_model, load_scenario
from helpers import simulate_records, write_csv

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def records_csv(tmp_path):
    rng = np.random.default_rng(0)
    x, y = simulate_records("exponential", {"floor": 0.05, "ceiling": 0.5, "rate": 0.02}, rng.uniform(0, 250, 600))
    return write_csv(tmp_path / "rec.csv", {"spend": np.round(x, 3), "won": y.astype(int),
                                             "profit": np.round(rng.normal(1000, 100, 600), 2),
                                             "seg": np.where(np.arange(600) % 2 == 0, "a", "b")})


def run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_records_write_a_valid_model_that_a_scenario_plans(tmp_path, records_csv, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["calibrate", "records", records_csv, "--task", "acquisition", "--spend", "spend",
                          "--outcome", "won", "--family", "exponential", "--segment", "seg",
                          "--value-column", "profit", "--bootstrap", "8", "--folds", "2", "--name", "m1"], capsys)
    assert code == 0, err
    path = tmp_path / "models" / "m1.yaml"
    assert "wrote models/m1.yaml" in out and "held-out log-loss" in out and "observed_rate" in out
    model = load_model(path)
    assert [s.id for s in model.segments] == ["a", "b"]
    assert model.provenance["inputs"][0]["sha256"] and model.provenance["command"].startswith("allocator calibrate")
    assert model.samples.count == 8 and len(model.samples.cells) == 2
    assert len(model.samples.cells[0].value) == 8 and set(model.samples.cells[0].curve) == {"floor", "ceiling",
                                                                                           "rate"}
    diag = model.diagnostics["cells"]["(a, acquisition)"]
    assert {"estimates", "ci95", "heldout_logloss", "baseline_logloss", "bins", "warnings"} <= set(diag)
    # a second fit added to the same model (another task on the same rows)
    code, out, err = run(["calibrate", "records", records_csv, "--task", "winback", "--spend", "spend",
                          "--outcome", "won", "--family", "hill", "--value", "300", "--bootstrap", "8",
                          "--folds", "0", "--segment-name", "c", "--add-to", str(path), "--force"], capsys)
    assert code == 0, err
    model = load_model(path)
    assert [s.id for s in model.segments] == ["a", "b", "c"]
    assert len(model.provenance["steps"]) == 2 and len(model.samples.cells) == 3
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "s.yaml").write_text("name: s\nmodel: ../models/m1.yaml\nbudget: {total: 20000}\n")
    sc = load_scenario(tmp_path / "scenarios" / "s.yaml")
    assert len(sc.segments) == 3
    code, out, err = run(["plan", str(tmp_path / "scenarios" / "s.yaml"), "--out", str(tmp_path / "out"),
                          "--quiet"], capsys)
    assert code == 0, err
    # adding a cell that is already there is refused, and the model is left as it was
    before = path.read_text()
    code, out, err = run(["calibrate", "records", records_csv, "--task", "winback", "--spend", "spend",
                          "--outcome", "won", "--family", "hill", "--value", "300", "--bootstrap", "0",
                          "--folds", "0", "--segment-name", "c", "--add-to", str(path), "--force"], capsys)
    assert code == 2 and "cell (c, winback) is already in the model" in err
    assert path.read_text() == before


def test_aggregates_command(tmp_path, capsys):
    path = write_csv(tmp_path / "agg.csv", {"spend": [0, 2, 5, 10, 20, 40], "n": [1000] * 6,
                                            "rate": [0.02, 0.05, 0.09, 0.14, 0.2, 0.24]})
    out_path = tmp_path / "agg.yaml"
    code, out, err = run(["calibrate", "aggregates", path, "--task", "acquisition", "--spend", "spend",
                          "--size", "n", "--rate", "rate", "--value", "80", "--pool", "50000", "--bootstrap", "5",
                          "--out", str(out_path)], capsys)
    assert code == 0, err
    model = load_model(out_path)
    cell = model.segments[0].tasks["acquisition"]
    assert cell.pool == 50000 and cell.value == 80 and cell.curve["family"] == "exponential"
    assert model.samples.method == "parametric bootstrap"


def test_judgment_command_reproduces_the_statements(tmp_path, capsys):
    jf = tmp_path / "j.yaml"
    jf.write_text(yaml.safe_dump({"name": "judged", "currency": "EUR", "segments": [
        {"id": "vip", "tasks": {
            "retention": {"pool": 500, "value": 900.0,
                          "judgment": {"method": "two_point", "spend": 20.0, "rate": 0.8, "ceiling": 0.9,
                                       "floor": 0.6}},
            "winback": {"pool": 200, "value": {"clv": {"margin": 100.0, "retention": 0.7, "discount": 0.1}},
                        "judgment": {"method": "four_point", "spend": 10.0, "at_spend": 0.1, "at_more": 0.12,
                                     "floor": 0.02, "ceiling": 0.3}}}}]}))
    out_path = tmp_path / "judged.yaml"
    code, out, err = run(["calibrate", "judgment", str(jf), "--out", str(out_path)], capsys)
    assert code == 0, err
    model = load_model(out_path)
    from allocator.curves import get_family

    cells = model.segments[0].tasks
    for task, x, p in (("retention", 20.0, 0.8), ("winback", 10.0, 0.1), ("winback", 15.0, 0.12)):
        c = cells[task].curve
        fam = get_family(c["family"])
        got = fam.response(np.array([x]), {k: np.array([v]) for k, v in c.items() if k != "family"})[0]
        assert got == pytest.approx(p, abs=1e-9)
    assert cells["retention"].current_spend == 500 * 20.0
    assert model.samples is None and model.currency == "EUR"


def test_transactions_command_on_a_small_log(tmp_path, capsys):
    # window 1997-01-01 .. 1997-12-31 (4 quarters). Five customers: pyramid cuts floor(5 * share + 1/2) give
    # next_15pct = {A} (the most valuable) and rest_80pct = {B, C, D, E}.
    rows = [("A", "19970105", 100), ("A", "19970410", 100), ("A", "19971231", 100),   # Q1, Q2, Q4
            ("B", "19970201", 10), ("C", "19970301", 20), ("C", "19970801", 20),       # C returns in Q3
            ("D", "19970115", 5), ("E", "19971215", 8)]
    log = tmp_path / "tx.txt"
    log.write_text("customer_id date number_of_cds dollar_value\n"
                   + "\n".join(f"{c} {d} 1 {a}" for c, d, a in rows) + "\n")
    jf = tmp_path / "j.yaml"
    jf.write_text(yaml.safe_dump({"segments": [
        {"id": "next_15pct", "tasks": {"retention": {"judgment": {"method": "two_point", "spend": 5.0,
                                                                    "rate": "data", "ceiling": 0.9}}}},
        {"id": "rest_80pct", "tasks": {"winback": {"judgment": {"method": "two_point", "spend": 1.0,
                                                                "rate": "data", "ceiling": 0.5}}}},
        {"id": "prospects", "tasks": {"acquisition": {"pool": 1000, "judgment": {
            "method": "two_point", "spend": 1.0, "rate": 0.01, "ceiling": 0.05}}}}]}))
    out_path = tmp_path / "tx.yaml"
    code, out, err = run(["calibrate", "transactions", str(log), "--whitespace", "--judgments", str(jf),
                          "--bootstrap", "10", "--out", str(out_path), "--active-days", "30",
                          "--lapsed-days", "200"], capsys)
    assert code == 0, err
    model = load_model(out_path)
    seg = {s.id: s for s in model.segments}
    d = (1.10) ** 0.25 - 1
    # A: active Q1, Q2, Q4 -> repeats Q1->Q2 only of its 2 active quarters with a next one: 1/2
    ret = seg["next_15pct"].tasks["retention"]
    assert ret.pool == 1                                   # A bought on the last day: active
    assert ret.value.clv.margin == pytest.approx(0.3 * 300 / 3)
    assert ret.value.clv.retention == pytest.approx(0.5) and ret.value.clv.discount == pytest.approx(d)
    c = ret.curve
    assert c["floor"] + (c["ceiling"] - c["floor"]) * (1 - np.exp(-c["rate"] * 5.0)) == pytest.approx(0.5)
    # rest: B (lapsed), C (last bought in August: at risk), D (lapsed) are the win-back pool; E is active.
    # lapsed customer-quarters with a next quarter: B Q2, Q3; C Q2 (returns in Q3); D Q2, Q3 -> 1/5
    wb = seg["rest_80pct"].tasks["winback"]
    assert wb.pool == 3
    c = wb.curve
    assert c["ceiling"] * (1 - np.exp(-c["rate"] * 1.0)) == pytest.approx(0.2)
    # prospects: stated pool; value = a new average customer (margin now, then the base's repeat rate)
    acq = seg["prospects"].tasks["acquisition"]
    assert acq.pool == 1000 and acq.value.clv.timing == "margin_now"
    assert acq.value.clv.margin == pytest.approx(0.3 * 363 / 8)   # revenue / active customer-quarters
    assert model.samples.count == 10


def test_cohorts_command_on_the_real_data(tmp_path, capsys):
    out_path = tmp_path / "c.yaml"
    code, out, err = run(["calibrate", "cohorts", str(ROOT / "data" / "sbg_cohorts.csv"), "--judgments",
                          str(ROOT / "models" / "judgments" / "contracts.yaml"), "--bootstrap", "10",
                          "--out", str(out_path)], capsys)
    assert code == 0, err
    assert "cohort highend: alpha 0.668" in out
    model = load_model(out_path)
    cell = {s.id: s for s in model.segments}["highend"].tasks["retention"]
    assert cell.pool == 491
    # today's rate = the sBG retention of the next period, (beta + 7) / (alpha + beta + 7)
    a, b = model.diagnostics["cohorts"]["highend"]["alpha"], model.diagnostics["cohorts"]["highend"]["beta"]
    c = cell.curve
    p = c["floor"] + (c["ceiling"] - c["floor"]) * (1 - np.exp(-c["rate"] * 25.0))
    assert p == pytest.approx((b + 7) / (a + b + 7), rel=1e-6)


# ---- existing files are replaced only with --force -------------------------------------------------

def _fit(records_csv, *extra):
    return ["calibrate", "records", records_csv, "--task", "acquisition", "--spend", "spend", "--outcome", "won",
            "--family", "exponential", "--value", "100", "--bootstrap", "0", "--folds", "0", "--name", "m",
            "--quiet", *extra]


def test_default_location_is_written_only_when_free(tmp_path, records_csv, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(_fit(records_csv), capsys)
    assert code == 0, err
    target = tmp_path / "models" / "m.yaml"
    target.write_text("# a tracked model, edited by hand\n")
    code, out, err = run(_fit(records_csv), capsys)
    assert code == 2 and out == ""
    assert ("output: models/m.yaml already exists and calibrate does not replace existing model files; "
            "pass --force to overwrite it, or --out PATH to write a new file") in err
    assert target.read_text() == "# a tracked model, edited by hand\n"
    code, out, err = run(_fit(records_csv, "--force"), capsys)
    assert code == 0, err
    model = load_model(target)
    assert "--force" not in model.provenance["command"]     # provenance says how, not what was replaced


def test_out_refuses_an_existing_file_without_force(tmp_path, records_csv, capsys):
    target = tmp_path / "elsewhere.yaml"
    target.write_text("keep me\n")
    code, out, err = run(_fit(records_csv, "--out", str(target)), capsys)
    assert code == 2 and f"--out: {target} already exists" in err and "--force" in err
    assert target.read_text() == "keep me\n"
    code, out, err = run(_fit(records_csv, "--out", str(target), "--force"), capsys)
    assert code == 0, err
    assert load_model(target).segments[0].id == "all"


def test_add_to_writes_back_only_with_force_or_to_out(tmp_path, records_csv, capsys):
    base = tmp_path / "base.yaml"
    code, out, err = run(_fit(records_csv, "--out", str(base), "--segment-name", "a"), capsys)
    assert code == 0, err
    before = base.read_text()
    add = _fit(records_csv, "--segment-name", "b", "--add-to", str(base))
    code, out, err = run(add, capsys)
    assert code == 2 and f"--add-to: {base} already exists and adding cells to it would replace it" in err
    assert base.read_text() == before
    merged = tmp_path / "merged.yaml"
    code, out, err = run([*add, "--out", str(merged)], capsys)
    assert code == 0, err
    assert base.read_text() == before
    assert [s.id for s in load_model(merged).segments] == ["a", "b"]
    code, out, err = run([*add, "--force"], capsys)
    assert code == 0, err
    assert [s.id for s in load_model(base).segments] == ["a", "b"]
    code, out, err = run(_fit(records_csv, "--add-to", str(tmp_path / "missing.yaml"), "--force"), capsys)
    assert code == 2 and "--add-to: no such model file" in err


# ---- bad inputs ----------------------------------------------------------------------------------

def _records(path, *extra):
    return ["calibrate", "records", str(path), "--task", "acquisition", "--spend", "spend", "--outcome", "won",
            "--value", "10", "--bootstrap", "0", "--folds", "0", *extra]


@pytest.mark.parametrize("columns,extra,texts", [
    ({"spend_x": [1, 2], "won": [0, 1]}, [], ["column 'spend': is missing; the table has columns: spend_x, won"]),
    ({"spend": ["1", "2", "abc", "4"], "won": [0, 1, 0, 1]}, [],
     ["column 'spend': row 3 (line 4): must be a finite number; got 'abc'"]),
    ({"spend": [1, 2, 3, 4], "won": [0, 1, 2, 1]}, [], ["column 'won': row 3 (line 4): must be one of {0, 1}; got '2'"]),
    ({"spend": [1, -2, 3, -4], "won": [0, 1, 0, 1]}, [],
     ["column 'spend': row 2 (line 3): must be >= 0; got '-2' (and 1 more row)"]),
    ({"spend": [1, 2, 3, 4], "won": [0, 1, 0, 1], "seg": ["a", "", "a", "a"]}, ["--segment", "seg"],
     ["column 'seg': row 2 (line 3): is empty (every row needs a label)"]),
    ({"spend": list(range(30)), "won": [0, 1] * 15, "seg": ["a"] * 27 + ["b"] * 3}, ["--segment", "seg"],
     ["segment 'b': has 3 rows with 2 successes; a fit needs at least 20 rows and both outcomes (column 'won')"]),
    ({"spend": list(range(30)), "won": [1] * 30}, [],
     ["has 30 rows with 30 successes; a fit needs at least 20 rows and both outcomes"]),
    ({"spend": ["", "2"], "won": [0, "x"]}, [],
     ["column 'spend': row 1 (line 2): is empty", "column 'won': row 2 (line 3): must be a finite number; got 'x'"]),
])
def test_bad_records_name_column_and_row_exit_2_and_write_nothing(tmp_path, capsys, columns, extra, texts):
    path = write_csv(tmp_path / "bad.csv", columns)
    out_path = tmp_path / "never.yaml"
    code, out, err = run(_records(path, "--out", str(out_path), *extra), capsys)
    assert code == 2
    for t in texts:
        assert t in err
    assert "Traceback" not in err and not out_path.exists()
    assert not list(tmp_path.glob(".never.yaml*"))


@pytest.mark.parametrize("args,text", [
    (["--fix", "shape=1"], "'shape' is not a parameter of family 'logistic_quadratic'"),
    (["--where", "region=north"], "column 'region': is missing (named in --where)"),
])
def test_bad_records_options(tmp_path, records_csv, capsys, args, text):
    code, out, err = run(_records(records_csv, "--out", str(tmp_path / "x.yaml"), *args), capsys)
    assert code == 2 and text in err and not (tmp_path / "x.yaml").exists()


def test_bad_aggregates_rate_names_column_and_row(tmp_path, capsys):
    path = write_csv(tmp_path / "agg.csv", {"spend": [0, 2, 5], "n": [100, 0, 100], "rate": [0.1, 0.2, 1.3]})
    code, out, err = run(["calibrate", "aggregates", path, "--task", "acquisition", "--spend", "spend", "--size",
                          "n", "--rate", "rate", "--value", "5", "--out", str(tmp_path / "x.yaml")], capsys)
    assert code == 2
    assert "column 'n': row 2 (line 3): must be > 0; got '0'" in err
    assert "column 'rate': row 3 (line 4): must be <= 1; got '1.3'" in err
    assert not (tmp_path / "x.yaml").exists()


def test_bad_transactions_name_column_and_row(tmp_path, capsys):
    log = tmp_path / "tx.txt"
    log.write_text("customer_id date number_of_cds dollar_value\nA 19970105 1 10\nB 1997-13-01 1 5\nC 19970301 1 -3\n")
    code, out, err = run(["calibrate", "transactions", str(log), "--whitespace", "--judgments",
                          str(ROOT / "models" / "judgments" / "cdnow.yaml"), "--out", str(tmp_path / "x.yaml")],
                         capsys)
    assert code == 2
    assert "column 'date': row 2 (line 3): must be a date in the format %Y%m%d; got '1997-13-01'" in err
    assert "column 'dollar_value': row 3 (line 4): must be >= 0; got '-3'" in err
    assert not (tmp_path / "x.yaml").exists()


def test_bad_cohorts_and_judgments(tmp_path, capsys):
    path = write_csv(tmp_path / "c.csv", {"recency": [1, 9, 8], "T": [8, 8, 8], "cohort": ["x", "x", "x"]})
    code, out, err = run(["calibrate", "cohorts", path, "--judgments",
                          str(ROOT / "models" / "judgments" / "contracts.yaml"), "--out", str(tmp_path / "x.yaml")],
                         capsys)
    assert code == 2 and "column 'recency': row 2 (line 3): must be <= column 'T'; got '9'" in err
    jf = tmp_path / "j.yaml"
    jf.write_text(yaml.safe_dump({"segments": [{"id": "vip", "tasks": {"retention": {
        "pool": 10, "value": 5.0, "judgment": {"method": "two_point", "spend": 5.0, "rate": 0.95,
                                               "ceiling": 0.9}}}}]}))
    code, out, err = run(["calibrate", "judgment", str(jf), "--out", str(tmp_path / "y.yaml")], capsys)
    assert code == 2
    assert "rate of cell (vip, retention): needs 0 <= floor < rate < ceiling <= 1; got floor 0, rate 0.95" in err
    jf.write_text(yaml.safe_dump({"segments": [{"id": "vip", "tasks": {"retention": {
        "pool": 10, "value": 5.0, "judgment": {"method": "two_point", "spend": 5.0, "rate": "data",
                                               "ceiling": 0.9}}}}]}))
    code, out, err = run(["calibrate", "judgment", str(jf), "--out", str(tmp_path / "y.yaml")], capsys)
    assert code == 2 and "`data` needs a data source" in err
    jf.write_text(yaml.safe_dump({"segments": [{"id": "vip", "tasks": {"retention": {
        "pool": 10, "value": 5.0, "judgment": {"method": "three_point", "spend": 5.0}}}}]}))
    code, out, err = run(["calibrate", "judgment", str(jf), "--out", str(tmp_path / "y.yaml")], capsys)
    assert code == 2 and "(vip, retention)" in err
    assert not (tmp_path / "y.yaml").exists()


def test_unknown_family_with_fixed_parameters_is_one_clear_problem():
    from allocator.calibration.aggregates import AggregatesSpec, prepare as prepare_aggregates
    from allocator.calibration.records import RecordsSpec, check_spec
    from allocator.errors import SpecError

    with pytest.raises(SpecError, match="family: must be one of exponential, hill, logistic_quadratic; got 'gompertz'"):
        check_spec(RecordsSpec(task="acquisition", spend="x", outcome="y", family="gompertz", value=1.0,
                               fixed={"floor": 0.0}))
    import pandas as pd

    with pytest.raises(SpecError, match="'speed' is not a parameter of family 'exponential'"):
        prepare_aggregates(pd.DataFrame({"x": [1.0], "n": [10], "r": [0.1]}),
                           AggregatesSpec(task="acquisition", spend="x", size="n", rate="r", value=1.0,
                                          family="exponential", fixed={"speed": 1.0}))
