"""Decision calculus: the two-point and four-point calibrations reproduce the stated points exactly."""

from __future__ import annotations

import numpy as np
import pytest

from allocator.calibration import four_point, two_point
from allocator.curves import get_family
from allocator.errors import SpecError


def at(curve: dict, x: float) -> float:
    fam = get_family(curve["family"])
    return float(fam.response(np.array([x]), {k: np.array([v]) for k, v in curve.items() if k != "family"})[0])


@pytest.mark.parametrize("spend,rate,ceiling,floor", [
    (10.0, 0.3, 0.6, 0.0), (493.0, 0.676, 0.85, 0.0), (12.0, 0.894, 0.96, 0.70), (0.25, 0.01, 0.03, 0.0),
])
def test_two_point_reproduces_today_ceiling_and_floor(spend, rate, ceiling, floor):
    c = two_point(spend, rate, ceiling, floor)
    assert c["family"] == "exponential"
    assert at(c, spend) == pytest.approx(rate, abs=1e-14)
    assert at(c, 0.0) == pytest.approx(floor, abs=1e-15)
    assert at(c, 1e9) == pytest.approx(ceiling, abs=1e-12)
    # the closed form, derived by hand: 1 - (p0 - f)/(c - f) = exp(-r x0)
    assert c["rate"] == pytest.approx(np.log((ceiling - floor) / (ceiling - rate)) / spend, rel=1e-13)


@pytest.mark.parametrize("spend,p1,p2,floor,ceiling,m", [
    (10.0, 0.5, 0.6, 0.0, 1.0, 1.5), (2.0, 0.543, 0.58, 0.30, 0.80, 1.5), (100.0, 0.2, 0.35, 0.05, 0.6, 1.5),
    (15.0, 0.92, 0.93, 0.85, 0.97, 2.0),
])
def test_four_point_reproduces_all_four_statements(spend, p1, p2, floor, ceiling, m):
    c = four_point(spend, p1, p2, floor, ceiling, multiple=m)
    assert c["family"] == "hill"
    assert at(c, 0.0) == pytest.approx(floor, abs=1e-15)
    assert at(c, spend) == pytest.approx(p1, abs=1e-13)
    assert at(c, m * spend) == pytest.approx(p2, abs=1e-13)
    assert at(c, 1e12) == pytest.approx(ceiling, abs=1e-6)


def test_four_point_shape_one_and_half_saturation_at_today():
    # y = 1/2 at today's spend puts the half-saturation there; the +50% point fixes the shape
    c = four_point(10.0, 0.5, 0.6, 0.0, 1.0)
    assert c["half_saturation"] == pytest.approx(10.0, rel=1e-13)
    assert c["shape"] == pytest.approx(1.0, rel=1e-13)


@pytest.mark.parametrize("call,text", [
    (lambda: two_point(10, 0.7, 0.6), "needs 0 <= floor < rate < ceiling <= 1; got floor 0, rate 0.7, ceiling 0.6"),
    (lambda: two_point(0, 0.3, 0.6), "today's spend per member must be > 0; got 0"),
    (lambda: two_point(5, 0.1, 0.6, floor=0.2), "needs 0 <= floor < rate"),
    (lambda: four_point(10, 0.6, 0.5, 0.0, 1.0), "needs 0 <= floor < at_spend < at_more < ceiling <= 1"),
    (lambda: four_point(10, 0.5, 0.6, 0.0, 1.0, multiple=1.0), "the second spend level must exceed today's"),
    (lambda: four_point(10, 0.001, 0.9999999, 0.0, 1.0), "step-like curve"),
])
def test_impossible_statements_are_rejected_with_the_reason(call, text):
    with pytest.raises(SpecError) as e:
        call()
    assert text in str(e.value)


def test_two_point_error_names_the_cell():
    with pytest.raises(SpecError) as e:
        two_point(10, 0.7, 0.6, where="(vip, retention)")
    assert "of cell (vip, retention)" in str(e.value)
