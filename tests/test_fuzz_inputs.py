"""Property-based fuzzing of every input allocator reads (issue 12, "Tests must show").

Valid scenario, model, judgment and CSV inputs are mutated by hypothesis (a leaf replaced by a
hostile value, a key dropped or misspelled, the bytes cut or corrupted) and fed to the command
line. Every case must end in one of: success, exit 2 with a message naming the place, or exit 3
(infeasible) - never a traceback, an internal error (exit 1), a long echo of the input, or an
output file from a failed run. Generated alias bombs run in a child under a memory limit.
Example counts are modest (the file runs in well under a minute); ``FUZZ_SCALE=8 FUZZ_RANDOM=1``
runs a longer, fresh hunt.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from allocator.cli import main  # noqa: E402

from helpers import exp_cell, scenario  # noqa: E402
from test_hostile_input import run_limited  # noqa: E402

SCALE = float(os.environ.get("FUZZ_SCALE", "1"))
"""Multiplies every example count (``FUZZ_SCALE=10 FUZZ_RANDOM=1`` for a long, fresh hunt)."""


def n(count: int) -> int:
    return max(1, int(count * SCALE))


FUZZ = settings(max_examples=n(100), deadline=20_000, derandomize=not os.environ.get("FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
PLACE = re.compile(r"^  - [^\s:][^:]*:", re.M)  # every problem line starts with its field (or file) name

HOSTILE = st.one_of(
    st.sampled_from([1e308, -1e308, 1e-300, -1.0, 0.0, float("inf"), float("nan"), 10 ** 60, -(10 ** 60),
                     True, None, "", "=HYPERLINK(\"http://x\")", "a\x00b", "\x1b[31m", "..", "../../etc/passwd",
                     [], {}, [[[[]]]], {"scale": 1e308}, {"add": "x"}, "x" * 5000]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10 ** 30), max_value=10 ** 30),
    st.text(max_size=40),
)


def _base_scenario() -> dict:
    data = scenario({("a", "acquisition"): exp_cell(pool=100, value=50, ceiling=0.5, rate=1.0, max_spend=80),
                     ("a", "retention"): exp_cell(pool=50, value=200, ceiling=0.6, rate=0.5),
                     ("b", "winback"): exp_cell(pool=30, value=120, ceiling=0.3, rate=0.2, min_spend=5)},
                    budget=120.0)
    data["segments"][0]["tags"] = ["big"]
    data["constraints"] = [{"name": "cap", "type": "spend", "select": {"tags": ["big"]}, "max": 100}]
    return data


def _paths(node, prefix=()):
    """Every place in a plain mapping: (path, value)."""
    yield prefix, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


@st.composite
def mutated(draw, base: dict, max_edits: int = 3):
    """``base`` with one to ``max_edits`` edits: replace a value, drop a key, or add an unknown key."""
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, max_edits))):
        places = [p for p, _ in _paths(data) if p]
        path = draw(st.sampled_from(places))
        parent = data
        for k in path[:-1]:
            parent = parent[k]
        action = draw(st.sampled_from(["replace", "replace", "drop", "unknown"]))
        if action == "replace":
            parent[path[-1]] = draw(HOSTILE)
        elif action == "drop" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["totl", "=x", "k\x00", "rate "]))] = draw(HOSTILE)
    return data


def _dump(data: dict, path: Path, fmt: str) -> Path:
    if fmt == "json":
        path.write_text(json.dumps(data, allow_nan=True))
    else:
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def check(code: int, err: str, out: Path | None = None, allowed: tuple[int, ...] = (0, 2, 3)) -> None:
    """The outcome every input must have."""
    assert code in allowed, f"exit {code}: {err[:2000]}"
    assert "Traceback" not in err and "internal error" not in err, err[:2000]
    assert len(err) < 20_000, f"a message of {len(err):,} characters"
    if code == 2:
        assert "invalid input" in err and PLACE.search(err), err[:2000]
    if code != 0 and out is not None:
        assert not out.exists() or not any(out.iterdir()), "a failed run wrote files"


def _run(args: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(args)
    return code, capsys.readouterr().err


# ---------------------------------------------------------------- scenario, model and judgment files

@FUZZ
@given(data=mutated(_base_scenario()), fmt=st.sampled_from(["yaml", "json"]))
def test_mutated_scenarios(tmp_path_factory, capsys, data, fmt):
    d = tmp_path_factory.mktemp("s")
    path = _dump(data, d / f"s.{fmt}", fmt)
    code, err = _run(["validate", str(path)], capsys)
    check(code, err)


@settings(FUZZ, max_examples=n(30))
@given(data=mutated(_base_scenario(), max_edits=2))
def test_mutated_scenarios_planned(tmp_path_factory, capsys, data):
    d = tmp_path_factory.mktemp("p")
    path = _dump(data, d / "s.yaml", "yaml")
    code, err = _run(["plan", str(path), "--out", str(d / "out"), "--quiet"], capsys)
    check(code, err, d / "out", allowed=(0, 2, 3, 4))
    if code == 0:
        assert json.loads((d / "out" / "summary.json").read_text())["status"] == "optimal"


@settings(FUZZ, max_examples=n(60))
@given(model=mutated({"name": "m", "currency": "EUR", "segments": _base_scenario()["segments"]}))
def test_mutated_model_files(tmp_path_factory, capsys, model):
    d = tmp_path_factory.mktemp("m")
    (d / "models").mkdir()
    _dump(model, d / "models" / "m.yaml", "yaml")
    (d / "scenarios").mkdir()
    path = _dump({"name": "s", "model": "../models/m.yaml", "budget": {"total": 100}}, d / "scenarios" / "s.yaml",
                 "yaml")
    code, err = _run(["validate", str(path)], capsys)
    check(code, err)


JUDGMENTS = {"name": "j", "currency": "USD", "segments": [
    {"id": "a", "tasks": {"acquisition": {"judgment": {"method": "two_point", "spend": 10, "rate": 0.2,
                                                        "ceiling": 0.5}, "pool": 100, "value": 50}}},
    {"id": "b", "tasks": {"retention": {"judgment": {"method": "two_point", "spend": 5, "rate": 0.4,
                                                      "ceiling": 0.8, "floor": 0.1}, "pool": 40, "value": 90}}}]}


@settings(FUZZ, max_examples=n(60))
@given(data=mutated(JUDGMENTS))
def test_mutated_judgment_files(tmp_path_factory, capsys, data):
    d = tmp_path_factory.mktemp("j")
    path = _dump(data, d / "j.yaml", "yaml")
    code, err = _run(["calibrate", "judgment", str(path), "--out", str(d / "out" / "m.yaml"), "--quiet"], capsys)
    check(code, err, d / "out", allowed=(0, 2))


def test_the_fuzzed_bases_are_valid(tmp_path, capsys):
    """The mutations start from valid inputs (else every case would fail for the same reason)."""
    assert _run(["validate", str(_dump(_base_scenario(), tmp_path / "s.yaml", "yaml"))], capsys)[0] == 0
    code, err = _run(["calibrate", "judgment", str(_dump(JUDGMENTS, tmp_path / "j.yaml", "yaml")),
                      "--out", str(tmp_path / "m.yaml"), "--quiet"], capsys)
    assert code == 0, err


# ---------------------------------------------------------------- raw bytes

@settings(FUZZ, max_examples=n(100))
@given(cut=st.integers(0, 400), junk=st.binary(max_size=40), fmt=st.sampled_from(["yaml", "json"]))
def test_corrupted_bytes(tmp_path_factory, capsys, cut, junk, fmt):
    d = tmp_path_factory.mktemp("b")
    raw = _dump(_base_scenario(), d / f"s.{fmt}", fmt).read_bytes()
    path = d / f"s.{fmt}"
    path.write_bytes(raw[:cut] + junk + raw[cut + len(junk):])
    code, err = _run(["validate", str(path)], capsys)
    check(code, err)


@settings(FUZZ, max_examples=n(80))
@given(text=st.text(alphabet=st.sampled_from(list("[]{}&*!:-,'\"|>?%@`#\n\t ab1.\\")), max_size=300))
def test_yaml_punctuation_soup(tmp_path_factory, capsys, text):
    path = tmp_path_factory.mktemp("y") / "s.yaml"
    path.write_text(text)
    code, err = _run(["validate", str(path)], capsys)
    check(code, err, allowed=(2,))


@settings(FUZZ, max_examples=4, deadline=None)
@given(fan=st.integers(6, 12), depth=st.integers(7, 10), where=st.sampled_from(["name", "segments", "budget"]))
def test_generated_alias_bombs_stay_within_memory(tmp_path_factory, fan, depth, where):
    d = tmp_path_factory.mktemp("bomb")
    names = [f"n{i}" for i in range(depth)]
    lines = [f"{names[0]}: &{names[0]} [{', '.join(['lol'] * fan)}]"]
    lines += [f"{n}: &{n} [{', '.join([f'*{p}'] * fan)}]" for p, n in zip(names, names[1:])]
    text = "x:\n" + "\n".join("  " + ln for ln in lines) + f"\nname: b\n{where}: *{names[-1]}\n"
    (d / "b.yaml").write_text(text)
    proc = run_limited(["validate", str(d / "b.yaml")], d)
    check(proc.returncode, proc.stderr, allowed=(2,))


# ---------------------------------------------------------------- CSV inputs

CELL = st.one_of(st.sampled_from(["", " ", "nan", "inf", "-1", "1e308", "=1+1", "0x10", "1,5", "\"", "\x00",
                                  "9" * 400, "\u00e9"]),
                 st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-5, 5).map(str))


@settings(FUZZ, max_examples=n(30))
@given(edits=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 2), CELL), min_size=1, max_size=4),
       blank=st.booleans(), dup=st.booleans())
def test_mutated_aggregate_tables(tmp_path_factory, capsys, edits, blank, dup):
    d = tmp_path_factory.mktemp("c")
    rows = [["spend", "n", "rate"]] + [[str(s), "1000", str(r)] for s, r in
                                       zip([0, 2, 5, 10, 20, 40, 60, 80], [.02, .05, .09, .14, .2, .24, .26, .27])]
    for r, c, v in edits:
        rows[1 + r][c] = v
    if dup:
        rows[0][2] = "n"
    lines = [",".join(f'"{x}"' if ("," in x or '"' in x) and x != '"' else x for x in row) for row in rows]
    if blank:
        lines.insert(3, "")
    path = d / "agg.csv"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + b"\n")
    code, err = _run(["calibrate", "aggregates", str(path), "--task", "acquisition", "--spend", "spend",
                      "--size", "n", "--rate", "rate", "--value", "50", "--bootstrap", "0", "--folds", "0",
                      "--out", str(d / "out" / "m.yaml"), "--quiet"], capsys)
    check(code, err, d / "out", allowed=(0, 2))
    if code == 2:
        assert re.search(r"column '[^']+'|line \d+|file:", err), err

