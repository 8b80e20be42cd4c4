"""Largest-remainder rounding: rounded money adds up to the rounded total, checked with exact arithmetic."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import allocator
from allocator.rounding import minor_unit, round_to_total, rounded_table

ROOT = Path(__file__).resolve().parents[1]


def _units(values, d: int) -> list[int]:
    """Exact minor units of already-rounded floats (via their shortest decimal text)."""
    return [int(Decimal(repr(float(v))).scaleb(d).to_integral_value()) for v in values]


def _hamilton(values, d: int) -> list[int]:
    """Hamilton's method in exact rational arithmetic: the truth the float implementation must match."""
    exact = [Fraction(float(v)) * 10 ** d for v in values]
    target = round(sum(exact))
    floors = [x.numerator // x.denominator for x in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:target - sum(floors)]:
        floors[i] += 1
    return floors


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("d", [0, 2, 3])
def test_sums_exactly_and_matches_hamilton(seed, d):
    rng = np.random.default_rng(seed)
    x = rng.lognormal(8, 2, size=40) * rng.choice([1, 1, 1, -1], size=40)
    x[x > 0] = np.abs(x[x > 0])
    r = round_to_total(x, d)
    units = _units(r, d)
    assert sum(units) == round(sum(Fraction(float(v)) for v in x) * 10 ** d)
    assert units == _hamilton(x, d)
    assert np.all(np.abs(r - x) < 10.0 ** -d)


def test_thirds_and_explicit_total():
    assert list(round_to_total([100 / 3] * 3, 2)) == [33.34, 33.33, 33.33]
    # a budget of 1,000,000 spent by three cells whose raw sum carries float noise
    r = round_to_total([333333.3333333334, 333333.3333333334, 333333.3333333334], 2, total=1_000_000.0)
    assert sum(_units(r, 2)) == 100_000_000


def test_minor_units():
    assert (minor_unit("USD"), minor_unit("JPY"), minor_unit("KWD"), minor_unit(None), minor_unit("eur")) == \
        (2, 0, 3, 2, 2)


@pytest.fixture(scope="module")
def example():
    return allocator.plan(ROOT / "scenarios" / "example.yaml")


def test_plan_spends_sum_to_the_budget_exactly(example):
    s = example.summary
    assert s.budget_binds
    t = rounded_table(example)
    assert sum(_units(t["spend"], 2)) == round(s.budget * 100)
    assert np.all(np.abs(t["spend"] - example.table["spend"]) < 0.01)


def test_rounded_rows_keep_their_identities(example):
    t = rounded_table(example)
    spend, value, act, net = (_units(t[c], 2) for c in ("spend", "expected_value", "activation_cost", "net_value"))
    assert net == [v - s - a for v, s, a in zip(value, spend, act)]
    base = _units(example.table["spend"] - example.table["spend_change"], 2)
    change = _units(t["spend_change"], 2)
    # every rounded change is plan minus baseline in whole cents, and the changes add up to the totals' difference
    assert sum(change) == sum(spend) - sum(_units(round_to_total(
        example.table["spend"] - example.table["spend_change"], 2), 2))
    assert np.all(np.abs(np.asarray(change) - (np.asarray(spend) - np.asarray(base))) <= 2)


def test_jpy_rounds_to_whole_yen():
    data = allocator.load_scenario(ROOT / "scenarios" / "example.yaml").model_dump(exclude_defaults=True)
    data["currency"] = "JPY"
    data["budget"]["total"] = 1_000_001.5   # a budget that is not whole yen rounds once, at the total
    plan = allocator.plan(data)
    t = rounded_table(plan)
    assert all(float(v).is_integer() for v in t["spend"])
    assert int(t["spend"].sum()) == 1_000_001       # whole yen, and never above the budget
    assert np.all(np.abs(t["spend"] - plan.table["spend"]) < 1)
