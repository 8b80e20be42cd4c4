"""The terminal view of a plan: fits 100 columns, no scientific notation, numbers that are the plan's own."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

import allocator
import allocator.cli as cli
from allocator.cli.plan_cmd import render

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "scenarios" / "example.yaml"
SCIENTIFIC = re.compile(r"\d(?:\.\d+)?[eE][-+]?\d")


@pytest.fixture(scope="module")
def example():
    return allocator.plan(EXAMPLE)


def _table(text: str) -> list[str]:
    """The table's lines: from the header to the total row."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("segment"))
    end = next(i for i, line in enumerate(lines) if line.startswith("total") and i > start)
    return lines[start:end + 1]


def test_example_table_fits_100_columns_without_scientific_notation(example, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(cli, "COMMAND_MODULES", list(cli.COMMAND_MODULES))
    assert cli.main(["plan", str(EXAMPLE), "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    table = _table(text)
    assert len(table) == len(example.table) + 4      # header, rule, cells, blank, total
    assert all(len(line) <= 100 for line in text.splitlines() if not line.startswith("wrote "))
    assert not any(SCIENTIFIC.search(line) for line in table)
    assert "…" not in text                           # no number was cut short to fit
    header = table[0]
    for unit_header in ("spend USD", "current USD", "value USD"):
        assert unit_header in header


def test_table_numbers_are_the_plans_and_add_up(example):
    table = _table(render(example))
    rows = [line for line in table[2:] if line and not line.startswith("total")]
    spends = []
    for line, (seg, task, spend, cur, value) in zip(rows, example.table[
            ["segment", "task", "spend", "current_spend", "expected_value"]].itertuples(index=False)):
        fields = line.split()
        assert fields[:2] == [seg, task]
        got = [Decimal(f.replace(",", "")) for f in fields[2:5]]
        assert abs(float(got[0]) - spend) < 0.01 and abs(float(got[1]) - cur) < 0.01
        assert abs(float(got[2]) - value) < 0.01
        spends.append(got[0])
    total = [Decimal(f.replace(",", "")) for f in table[-1].split()[1:]]
    # the rounded spends sum exactly to the total row, which is the budget (it binds)
    assert sum(spends) == total[0] == Decimal(str(example.summary.budget))
    assert abs(float(total[2]) - example.summary.total_value) < 0.01 * len(rows)


def test_explain_shows_every_reason_and_wide_shows_more(example):
    text = render(example, explain=True)
    for r in example.table.itertuples():
        assert f"({r.segment}, {r.task}): {r.reason}" in text
    wide = render(example, wide=True)
    header = _table(wide)[0]
    for col in ("pool", "per member USD", "change USD", "response", "successes", "net value USD", "binding rules"):
        assert col in header
    assert max(len(line) for line in _table(wide)) > 100
    assert not any(SCIENTIFIC.search(line) for line in _table(wide))


def test_narrow_terminal_drops_columns_rather_than_cutting_numbers(example):
    text = render(example, width=80)
    table = _table(text)
    assert all(len(line) <= 80 for line in table) and "…" not in text
    assert "spend USD" in table[0]


def test_long_plans_print_100_rows_and_a_total_over_every_cell():
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import random_problem

    plan = allocator.make_plan(random_problem(300, seed=3))
    table = _table(render(plan))
    assert len(table) == 2 + 100 + 2
    total = Decimal(table[-1].split()[3].replace(",", ""))     # "total, 300 cells <spend> ..."
    assert abs(float(total) - plan.summary.total_spend) <= 0.005
    assert "... and 200 more cells" in render(plan)
