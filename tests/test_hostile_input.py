"""Hostile and careless input (issue 12, items 4-10, 12-13): a clear error, exit 2, bounded resources.

Each case names the finding it reproduces. Bombs run in a subprocess under a memory limit
(:func:`run_limited`), so a regression fails the test instead of taking the machine's memory.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from allocator.cli import main
from allocator.errors import SpecError
from allocator.io import csv_text, default_out_dir, safe_name
from allocator.spec import load_scenario, scenario_from_dict

from helpers import exp_cell, scenario, write_csv, write_yaml

ROOT = Path(__file__).resolve().parents[1]
MEMORY_LIMIT = 1024 ** 3  # 1 GiB of address space for a child that must refuse a bomb
CODE = "import sys; from allocator.cli import main; sys.exit(main())"


def _limit() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT + 1024 ** 3, MEMORY_LIMIT + 1024 ** 3))


def run_limited(args: list[str], cwd: Path, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """``allocator ARGS`` in a child with an address-space limit (imports take about 1 GiB of it)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CODE, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, preexec_fn=_limit, env={**os.environ, "PYTHONPATH": str(ROOT)})
    proc.seconds = time.perf_counter() - t0  # type: ignore[attr-defined]
    return proc


def assert_input_error(code: int, err: str, *needles: str, limit: int = 3000) -> None:
    """Exit 2, no traceback, the message names the place, and quotes little of the input."""
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err
    assert len(err) < limit, f"message of {len(err)} characters"
    for n in needles:
        assert n in err, err


def cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def one_cell(**extra) -> dict:
    return scenario({("a", "acquisition"): exp_cell(pool=100, value=50, ceiling=0.5, rate=1.0, **extra)},
                    budget=100.0)


BOMB = "name: bomb\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9 if p else ['lol'] * 9)}]\n"
    for p, n in zip([None, "a", "b", "c", "d", "e", "f", "g", "h"], "abcdefghi"))


# ---------------------------------------------------------------- item 4: alias bombs

@pytest.mark.parametrize("kind", ["validate", "model", "judgment"])
def test_alias_bomb_is_refused_with_bounded_memory_and_a_short_message(tmp_path, kind):
    bomb = tmp_path / "bomb.yaml"
    if kind == "validate":
        bomb.write_text(BOMB)
        args = ["validate", str(bomb)]
    elif kind == "model":
        bomb.write_text(BOMB.replace("name: bomb", "name: m") + "segments: *i\n")
        s = write_yaml(tmp_path / "s.yaml", {"name": "s", "model": "bomb.yaml", "budget": {"total": 1}})
        args = ["plan", str(s), "--out", str(tmp_path / "out")]
    else:
        bomb.write_text(BOMB.replace("name: bomb", "name: j") + "segments: *i\n")
        args = ["calibrate", "judgment", str(bomb), "--out", str(tmp_path / "m.yaml")]
    proc = run_limited(args, tmp_path)
    assert_input_error(proc.returncode, proc.stderr, "aliases", "line ")
    assert proc.seconds < 30
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.yaml").exists()


def test_a_smaller_bomb_does_not_echo_its_expansion(tmp_path):
    small = "\n".join(BOMB.splitlines()[:7]) + "\nsegments: *f\n"  # 9**6 = 531,441 strings
    path = tmp_path / "b.yaml"
    path.write_text(small)
    with pytest.raises(SpecError) as info:
        load_scenario(path)
    assert len(str(info.value)) < 1000 and "aliases" in str(info.value)


def test_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: r\nsegments: &a [*a]\n")
    with pytest.raises(SpecError, match="recursive alias"):
        load_scenario(path)


# ---------------------------------------------------------------- item 5: files outside the scenario's folders

def test_model_outside_the_scenario_folders_is_refused_without_showing_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    secret = tmp_path.parent / f"{tmp_path.name}-secret"
    secret.mkdir(exist_ok=True)
    (secret / "creds.txt").write_text("password=hunter2\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    for ref in ("/etc/passwd", f"../../../{secret.name}/creds.txt"):
        path = write_yaml(deep / "s.yaml", {"name": "s", "model": ref, "budget": {"total": 1}})
        with pytest.raises(SpecError) as info:
            load_scenario(path)
        text = str(info.value)
        assert "points outside the folders" in text and ref in text
        assert "hunter2" not in text and "root:" not in text


def test_extends_outside_is_refused_and_an_allowed_root_admits_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    other = tmp_path.parent / f"{tmp_path.name}-shared"
    other.mkdir(exist_ok=True)
    write_yaml(other / "base.yaml", one_cell())
    (tmp_path / "a" / "b").mkdir(parents=True)
    path = write_yaml(tmp_path / "a" / "b" / "s.yaml", {"extends": str(other / "base.yaml"), "name": "s"})
    with pytest.raises(SpecError, match="extends: .* points outside"):
        load_scenario(path)
    assert load_scenario(path, roots=(other,)).name == "s"
    monkeypatch.setenv("ALLOCATOR_ROOTS", str(other))
    assert load_scenario(path).name == "s"


def test_a_request_may_reference_no_file():
    with pytest.raises(SpecError, match="model: file references are not allowed"):
        scenario_from_dict({"name": "s", "model": "m.yaml"}, allow_files=False)
    with pytest.raises(SpecError, match="extends: file references are not allowed"):
        scenario_from_dict({"name": "s", "extends": "b.yaml"}, allow_files=False)


# ---------------------------------------------------------------- item 6: formula injection, control characters

def test_formula_cells_are_escaped_in_plan_csv_and_workbook(tmp_path, capsys):
    import openpyxl

    data = scenario({("=HYPERLINK(\"http://x\",\"y\")", "acquisition"): exp_cell(100, 50, 0.5, 1.0),
                     ("@SUM(A1)", "retention"): exp_cell(100, 50, 0.5, 1.0)}, budget=100.0)
    path = write_yaml(tmp_path / "s.yaml", data)
    code, err = cli(["plan", str(path), "--out", str(tmp_path / "out"), "--quiet", "--xlsx"], capsys)
    assert code == 0, err
    text = (tmp_path / "out" / "plan.csv").read_text()
    assert "\"'=HYPERLINK(" in text and "\n'@SUM(A1)," in text
    wb = openpyxl.load_workbook(tmp_path / "out" / "plan.xlsx")
    kinds = {c.data_type for ws in wb for row in ws.iter_rows() for c in row
             if isinstance(c.value, str) and c.value.startswith(("=HYPERLINK", "@SUM"))}
    assert kinds == {"s"}


def test_csv_escaping_leaves_numbers_alone():
    import pandas as pd

    text = csv_text(pd.DataFrame({"segment": ["-x", "+y", "\tz", "ok"], "spend": [-1.5, 2.0, 3.0, 4.0]}))
    assert text.splitlines() == ["segment,spend", "'-x,-1.5", "'+y,2.0", "'\tz,3.0", "ok,4.0"]


@pytest.mark.parametrize("where", ["id", "tag", "name"])
def test_control_characters_in_ids_and_names_are_refused(tmp_path, where):
    data = one_cell()
    if where == "id":
        data["segments"][0]["id"] = "a\x00b"
    elif where == "tag":
        data["segments"][0]["tags"] = ["x\x1b[31m"]
    else:
        data["name"] = "s\nx"
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError, match="control character"):
        load_scenario(path)
    with pytest.raises(SpecError, match="control character"):
        scenario_from_dict(data)


# ---------------------------------------------------------------- item 7: internal errors that are input errors

@pytest.mark.parametrize("content,needle", [
    ("name: \xe9t\xe9\n".encode("latin-1"), "not UTF-8"),
    ("name: s\n".encode("utf-16"), "UTF-16"),
    (gzip.compress(b"name: s\n"), "gzip"),
    (bytes(range(256)) * 4, "not UTF-8"),
])
def test_files_that_are_not_utf8_text(tmp_path, capsys, content, needle):
    path = tmp_path / "s.yaml"
    path.write_bytes(content)
    code, err = cli(["validate", str(path)], capsys)
    assert_input_error(code, err, needle, str(path))
    with pytest.raises(SpecError, match=needle):  # the Python API raises the same error
        load_scenario(path)


@pytest.mark.parametrize("name,text", [
    ("flow.yaml", "name: [" + "[" * 100_000),
    ("block.yaml", "".join("  " * i + f"k{i}:\n" for i in range(5000)) + "  " * 5000 + "x: 1\n"),
    ("deep.json", "[" * 100_000 + "]" * 100_000),
    ("deepobj.json", '{"a":' * 5000 + "1" + "}" * 5000),
])
def test_deep_nesting(tmp_path, capsys, name, text):
    path = tmp_path / name
    path.write_text(text)
    code, err = cli(["validate", str(path)], capsys)
    assert_input_error(code, err, "nested more than")


def test_a_long_extends_chain_is_capped(tmp_path, capsys):
    write_yaml(tmp_path / "s0.yaml", one_cell())
    for i in range(1, 1500):
        (tmp_path / f"s{i}.yaml").write_text(f"extends: s{i - 1}.yaml\nname: s{i}\n")
    code, err = cli(["validate", str(tmp_path / "s1499.yaml")], capsys)
    assert_input_error(code, err, "extends: the chain of `extends` is longer than 32 files")


@pytest.mark.parametrize("suffix", ["yaml", "json"])
def test_huge_integers(tmp_path, capsys, suffix):
    path = tmp_path / f"s.{suffix}"
    path.write_text('{"name": "s", "budget": {"total": ' + "9" * 5000 + "}}")
    code, err = cli(["validate", str(path)], capsys)
    assert_input_error(code, err, "5,000 digits")


def test_retention_at_or_above_one_plus_discount(tmp_path, capsys):
    data = one_cell()
    data["segments"][0]["tasks"]["acquisition"]["value"] = {"clv": {"margin": 10, "retention": 1.0,
                                                                   "discount": 1e-300}}
    code, err = cli(["validate", str(write_yaml(tmp_path / "s.yaml", data))], capsys)
    assert_input_error(code, err, "value.clv of cell (a, acquisition): retention (1) must be below 1 + discount")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without read permission")
def test_an_unreadable_scenario_file(tmp_path, capsys):
    path = write_yaml(tmp_path / "s.yaml", one_cell())
    path.chmod(0)
    code, err = cli(["validate", str(path)], capsys)
    assert_input_error(code, err, "permission denied", str(path))


def test_a_file_that_cannot_be_opened(tmp_path, capsys, monkeypatch):
    """As root, chmod 000 does not stop a read: the refusal is simulated where the file is opened."""
    path = write_yaml(tmp_path / "s.yaml", one_cell())

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("allocator.spec.reading.open", refuse, raising=False)
    code, err = cli(["validate", str(path)], capsys)
    assert_input_error(code, err, f"cannot read {path}: permission denied")
    with pytest.raises(SpecError, match="permission denied"):
        load_scenario(path)


def test_a_folder_given_as_scenario(tmp_path, capsys):
    code, err = cli(["validate", str(tmp_path)], capsys)
    assert_input_error(code, err, "is a folder")


# ---------------------------------------------------------------- item 8: magnitudes

@pytest.mark.parametrize("edit,needle", [
    (lambda d: d["segments"][0]["tasks"]["acquisition"].update(pool=1e308), "pool of cell (a, acquisition)"),
    (lambda d: d["segments"][0]["tasks"]["acquisition"]["curve"].update(rate=1e308),
     "curve.rate of cell (a, acquisition)"),
    (lambda d: d["segments"][0]["tasks"]["acquisition"].update(value=1e300), "value of cell (a, acquisition)"),
    (lambda d: d["budget"].update(unit=1e-300), "budget.unit"),
    (lambda d: d["budget"].update(total=1e308), "budget.total"),
    (lambda d: d.update(constraints=[{"name": "fix", "type": "lock", "select": {"segments": ["a"]},
                                      "spend": 1e308}]), "constraints.fix.spend"),
])
def test_extreme_magnitudes_name_field_and_cell(tmp_path, capsys, edit, needle):
    data = one_cell()
    edit(data)
    code, err = cli(["plan", str(write_yaml(tmp_path / "s.yaml", data)), "--out", str(tmp_path / "o")], capsys)
    assert_input_error(code, err, needle, "too")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- item 9: accepted invalid input

def test_empty_segments_and_duplicate_keys(tmp_path, capsys):
    empty = tmp_path / "e.yaml"
    empty.write_text("name: e\nbudget: {total: 10}\nsegments: []\n")
    code, err = cli(["plan", str(empty), "--out", str(tmp_path / "o")], capsys)
    assert_input_error(code, err, "segments: lists no segments")
    dup = tmp_path / "d.yaml"
    dup.write_text("name: d\nbudget:\n  total: 400\n  total: 401\n")
    code, err = cli(["validate", str(dup)], capsys)
    assert_input_error(code, err, "duplicate key 'total'", "line 4")
    dj = tmp_path / "d.json"
    dj.write_text('{"name": "d", "budget": {"total": 400, "total": 401}}')
    code, err = cli(["validate", str(dj)], capsys)
    assert_input_error(code, err, "duplicate key 'total'")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- item 10: output folder names

@pytest.mark.parametrize("name", ["..", ".", "a" * 300, "../x", ".hidden", "-rf"])
def test_default_output_folders_are_safe(name):
    out = default_out_dir(name)
    assert out.parent == Path("out") and 0 < len(out.name) <= 100
    assert out.name not in (".", "..") and not out.name.startswith((".", "-")) and "/" not in out.name
    assert safe_name("a" * 300) != safe_name("a" * 299 + "b")  # long names stay distinct


# ---------------------------------------------------------------- item 12: sweeps and analysis bounds

def test_sweep_grid_bounds_and_infinite_range(tmp_path, capsys):
    write_yaml(tmp_path / "base.yaml", one_cell())
    big = write_yaml(tmp_path / "big.yaml", {"extends": "base.yaml", "variants": {"grid": {
        "budget.total": {"from": 1, "to": 100, "steps": 10_000},
        "segments.a.tasks.acquisition.pool": {"from": 1, "to": 100, "steps": 10_000}}}})
    code, err = cli(["sweep", str(big), "--out", str(tmp_path / "o")], capsys)
    assert_input_error(code, err, "100,000,000 variants", "at most 100,000")
    inf = write_yaml(tmp_path / "inf.yaml", {"extends": "base.yaml", "variants": {"grid": {
        "budget.total": {"from": 1, "to": float("inf"), "steps": 3}}}})
    code, err = cli(["sweep", str(inf), "--out", str(tmp_path / "o")], capsys)
    assert_input_error(code, err, "variants.grid.budget.total", "finite")
    assert not (tmp_path / "o").exists()


def test_a_damaged_results_log_is_not_an_internal_error(tmp_path, capsys):
    write_yaml(tmp_path / "base.yaml", one_cell())
    f = write_yaml(tmp_path / "s.yaml", {"extends": "base.yaml", "variants": {"grid": {"budget.total": [50, 100]}}})
    out = tmp_path / "o"
    assert cli(["sweep", str(f), "--out", str(out), "--executor", "serial", "--quiet"], capsys)[0] == 0
    log = out / "results.jsonl"
    log.write_bytes(log.read_bytes()[:-40] + b"\xff\xfe\x80garbage\n")
    code, err = cli(["sweep", str(f), "--out", str(out), "--executor", "serial", "--quiet"], capsys)
    assert code == 0, err
    assert len(log.read_text(encoding="utf-8").splitlines()) == 2


def test_two_sweeps_into_one_folder_are_refused(tmp_path, capsys):
    from allocator.scenarios.execution import sweep_lock

    write_yaml(tmp_path / "base.yaml", one_cell())
    f = write_yaml(tmp_path / "s.yaml", {"extends": "base.yaml", "variants": {"grid": {"budget.total": [50, 100]}}})
    out = tmp_path / "o"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from allocator.scenarios.execution import sweep_lock\n"
                               f"with sweep_lock(Path({str(out)!r})):\n print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, err = cli(["sweep", str(f), "--out", str(out), "--executor", "serial"], capsys)
        assert_input_error(code, err, "--out: another sweep", str(holder.pid))
    finally:
        holder.kill()
        holder.wait()
    with sweep_lock(out):  # released by the kernel when the holder died
        pass


def test_analysis_arguments_are_bounded(tmp_path, capsys):
    path = write_yaml(tmp_path / "s.yaml", one_cell())
    code, err = cli(["frontier", str(path), "--from", "0", "--to", "100", "--points", "10000000",
                     "--out", str(tmp_path / "o")], capsys)
    assert_input_error(code, err, "--points: must be at most 100,000")
    for extra, needle in ((["--samples", "10000000"], "--samples: must be between 2 and 100,000"),
                          (["--seed", "-1"], "--seed: must be a whole number"),
                          (["--tolerance", "-1"], "--tolerance: must be a relative gap"),
                          (["--tolerance", "nan"], "--tolerance: must be a relative gap")):
        code, err = cli(["uncertainty", str(path), *extra, "--out", str(tmp_path / "o")], capsys)
        assert_input_error(code, err, needle)
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- item 13: calibration arguments and CSV lines

def _records(tmp_path) -> str:
    return write_csv(tmp_path / "r.csv", {"spend": [0, 1, 2, 3, 4, 5] * 5, "won": [0, 0, 1, 0, 1, 1] * 5})


def test_csv_line_numbers_count_blank_lines_and_quoted_newlines(tmp_path, capsys):
    path = tmp_path / "r.csv"
    path.write_text("spend,won,note\n1,0,a\n\n2,1,\"two\nlines\"\n3,x,b\n")
    code, err = cli(["calibrate", "records", str(path), "--task", "acquisition", "--spend", "spend",
                     "--outcome", "won", "--value", "10", "--out", str(tmp_path / "m.yaml")], capsys)
    assert_input_error(code, err, "column 'won': row 3 (line 6)")


def test_a_duplicated_column_is_refused(tmp_path, capsys):
    path = tmp_path / "r.csv"
    path.write_text("spend,won,spend\n1,0,5\n2,1,6\n")
    code, err = cli(["calibrate", "records", str(path), "--task", "acquisition", "--spend", "spend",
                     "--outcome", "won", "--value", "10", "--out", str(tmp_path / "m.yaml")], capsys)
    assert_input_error(code, err, "column 'spend': line 1: appears twice")


@pytest.mark.parametrize("extra,needle", [
    (["--bins", "0"], "--bins: must be a whole number from 1"),
    (["--bins", "-3"], "--bins: must be a whole number from 1"),
    (["--seed", "-1"], "--seed: must be a whole number from 0"),
    (["--fix", "floor=nan"], "--fix floor: must be a finite number"),
    (["--name", "../../x"], "--name: must be a plain name"),
])
def test_calibration_arguments(tmp_path, capsys, monkeypatch, extra, needle):
    monkeypatch.chdir(tmp_path)
    code, err = cli(["calibrate", "records", _records(tmp_path), "--task", "acquisition", "--spend", "spend",
                     "--outcome", "won", "--value", "10", "--bootstrap", "0", "--folds", "0", *extra], capsys)
    assert_input_error(code, err, needle)
    assert not (tmp_path / "models").exists() and not (tmp_path.parent / "x.yaml").exists()
