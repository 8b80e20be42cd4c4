"""Lifetime value formulas against explicit sums and Gupta-Lehmann's margin multiple."""

import pytest

from allocator.value import lifetime_value


@pytest.mark.parametrize("m,r,d", [(100, 0.8, 0.1), (37.5, 0.46, 0.025), (1900, 0.9, 0.1)])
def test_infinite_horizon_closed_forms(m, r, d):
    assert lifetime_value(m, r, d) == pytest.approx(m * r / (1 + d - r), rel=1e-13)
    assert lifetime_value(m, r, d, timing="margin_now") == pytest.approx(m * (1 + d) / (1 + d - r), rel=1e-13)
    assert lifetime_value(m, r, d, timing="end_of_period") == pytest.approx(m / (1 + d - r), rel=1e-13)


@pytest.mark.parametrize("T", [1, 2, 5, 20])
def test_finite_horizon_matches_explicit_sums(T):
    m, r, d = 120.0, 0.7, 0.08
    assert lifetime_value(m, r, d, T) == pytest.approx(sum(m * r**t / (1 + d) ** t for t in range(1, T + 1)))
    assert lifetime_value(m, r, d, T, "margin_now") == pytest.approx(
        sum(m * r**t / (1 + d) ** t for t in range(0, T)))
    assert lifetime_value(m, r, d, T, "end_of_period") == pytest.approx(
        sum(m * r ** (t - 1) / (1 + d) ** t for t in range(1, T + 1)))


def test_gupta_lehmann_margin_multiple_table():
    # Gupta & Lehmann (2003), Table 1: margin multiple r/(1+i-r); at r = 90%, i = 12% it is 4.09
    assert lifetime_value(1.0, 0.9, 0.12) == pytest.approx(4.09, abs=0.005)
    assert lifetime_value(1.0, 0.6, 0.10) == pytest.approx(1.20, abs=0.005)


def test_no_discount_full_retention_finite_horizon_counts_margins():
    assert lifetime_value(10.0, 1.0, 0.0, horizon=7) == pytest.approx(70.0)


def test_unknown_timing_is_refused():
    with pytest.raises(ValueError, match="timing must be one of gupta_lehmann, margin_now, end_of_period; got 'x'"):
        lifetime_value(1, 0.5, 0.1, timing="x")
