"""Common checks over every registered curve family, and each family's own closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from allocator.curves import FAMILIES, get_family

CASES = [(name, i) for name, fam in FAMILIES.items() for i in range(len(fam.examples))]


def packed(name: str, i: int, copies: int = 1):
    fam = FAMILIES[name]
    return fam, fam.pack([fam.examples[i]] * copies)


def test_every_family_declares_examples():
    for name, fam in FAMILIES.items():
        assert fam.examples, f"family {name} declares no examples for the common tests"
        for ex in fam.examples:
            assert fam.check(ex) == [], (name, ex)


@pytest.mark.parametrize("name,i", CASES)
def test_response_is_a_probability_and_nondecreasing_up_to_domain_max(name, i):
    fam, P = packed(name, i)
    top = float(fam.domain_max(P)[0])
    xs = np.linspace(0, min(top, 500.0), 400)
    p = np.array([fam.response(np.array([x]), P)[0] for x in xs])
    assert np.all((p >= 0) & (p <= 1))
    assert np.all(np.diff(p) >= -1e-12)


@pytest.mark.parametrize("name,i", CASES)
def test_slope_matches_finite_difference(name, i):
    fam, P = packed(name, i)
    top = min(float(fam.domain_max(P)[0]), 400.0)
    for x in np.linspace(0.37, top * 0.97, 25):
        h = 1e-6 * max(1.0, x)
        fd = (fam.response(np.array([x + h]), P)[0] - fam.response(np.array([x - h]), P)[0]) / (2 * h)
        right = fam.slope(np.array([x]), P)[0]
        left = fam.slope_left(np.array([x]), P)[0]
        # at a kink of a table the central difference sits between the one-sided slopes
        assert min(left, right) - 1e-6 <= fd <= max(left, right) + 1e-6, (x, fd, left, right)


@pytest.mark.parametrize("name,i", CASES)
def test_concavity_flag_agrees_with_second_differences(name, i):
    fam, P = packed(name, i)
    top = min(float(fam.domain_max(P)[0]), 400.0)
    xs = np.linspace(0, top, 2001)
    p = fam.response(xs, fam.pack([fam.examples[i]] * len(xs)))
    second = np.diff(p, 2)
    concave_numeric = bool(np.all(second <= 1e-12))
    assert bool(fam.is_concave(P)[0]) == concave_numeric


@pytest.mark.parametrize("name,i", [c for c in CASES if FAMILIES[c[0]].is_concave(packed(*c)[1])[0]])
def test_spend_rule_inverts_the_marginal_return(name, i):
    fam, P = packed(name, i, copies=1)
    value, pool = np.array([900.0]), np.array([250.0])
    rule = fam.spend_rule(P, value, pool)
    for lam in (0.5, 1.0, 2.0, 5.0):
        s = rule(lam)[0]
        x = s / pool[0]
        right = value[0] * fam.slope(np.array([x]), P)[0]
        left = value[0] * fam.slope_left(np.array([x]), P)[0]
        if x == 0:
            assert right <= lam * (1 + 1e-9)          # first unit does not pay
        else:
            # lam lies between the one-sided marginal returns (equal for smooth curves)
            assert right <= lam * (1 + 1e-6) and left >= lam * (1 - 1e-6), (lam, left, right)


def test_exponential_closed_form():
    fam = get_family("exponential")
    P = fam.pack([{"ceiling": 0.5, "rate": 0.1, "floor": 0.1}])
    x = np.array([7.0])
    assert fam.response(x, P)[0] == pytest.approx(0.1 + 0.4 * (1 - math.exp(-0.7)), rel=1e-14)
    assert fam.slope(x, P)[0] == pytest.approx(0.4 * 0.1 * math.exp(-0.7), rel=1e-14)
    # value * p'(x) = lam  <=>  x = ln(value * 0.04 / lam) / 0.1
    s = fam.spend_rule(P, np.array([100.0]), np.array([10.0]))(2.0)[0]
    assert s == pytest.approx(10.0 * math.log(100 * 0.04 / 2.0) / 0.1, rel=1e-13)


def test_hill_closed_form_and_shape_one_inverse():
    fam = get_family("hill")
    P = fam.pack([{"ceiling": 0.6, "half_saturation": 4.0, "shape": 1.0}])
    assert fam.response(np.array([4.0]), P)[0] == pytest.approx(0.3)
    # shape 1: value*c*h/(h+x)^2 = lam  ->  x = sqrt(value*c*h/lam) - h
    s = fam.spend_rule(P, np.array([50.0]), np.array([1.0]))(1.5)[0]
    assert s == pytest.approx(math.sqrt(50 * 0.6 * 4 / 1.5) - 4, rel=1e-13)
    S = fam.pack([{"ceiling": 0.6, "half_saturation": 4.0, "shape": 3.0}])
    assert not fam.is_concave(S)[0]
    # inflection of x^k/(h^k+x^k): x = h ((k-1)/(k+1))^(1/k)
    assert fam.inflection(S)[0] == pytest.approx(4.0 * (2 / 4) ** (1 / 3))


def test_piecewise_interpolates_and_is_flat_beyond_last_point():
    fam = get_family("piecewise")
    P = fam.pack([{"points": [[0, 0.0], [10, 0.1], [30, 0.2]]}])
    assert fam.response(np.array([5.0]), P)[0] == pytest.approx(0.05)
    assert fam.response(np.array([20.0]), P)[0] == pytest.approx(0.15)
    assert fam.response(np.array([99.0]), P)[0] == pytest.approx(0.2)
    assert fam.slope(np.array([10.0]), P)[0] == pytest.approx(0.005)      # right of the kink
    assert fam.slope_left(np.array([10.0]), P)[0] == pytest.approx(0.01)  # left of the kink
    assert fam.slope(np.array([40.0]), P)[0] == 0.0


@pytest.mark.parametrize("family,params,field,text", [
    ("exponential", {"ceiling": 0.2, "rate": -1.0}, "rate", "must be in [0, inf]; got -1"),
    ("exponential", {"ceiling": 1.5, "rate": 1.0}, "ceiling", "must be in [0, 1]; got 1.5"),
    ("exponential", {"ceiling": 0.1, "rate": 1.0, "floor": 0.2}, "ceiling", "must be >= floor (0.2); got 0.1"),
    ("exponential", {"rate": 1.0}, "ceiling", "is required by family 'exponential'"),
    ("exponential", {"ceiling": 0.1, "rate": 1.0, "speed": 2}, "speed", "unknown parameter"),
    ("hill", {"ceiling": 0.2, "half_saturation": 0.0, "shape": 1}, "half_saturation", "must be in"),
    ("piecewise", {"points": [[0, 0.1], [10, 1.2]]}, "points[1]", "must be a probability in [0, 1]; got 1.2"),
    ("piecewise", {"points": [[5, 0.1], [10, 0.2]]}, "points[0]", "must start at spend 0"),
    ("piecewise", {"points": [[0, 0.1], [10, 0.2], [10, 0.3]]}, "points[2]", "x must increase strictly"),
])
def test_check_names_parameter_and_rule(family, params, field, text):
    problems = get_family(family).check(params)
    assert problems, "expected a problem"
    assert problems[0][0] == field
    assert text in problems[0][1]


def test_unknown_family_lists_known_ones():
    with pytest.raises(KeyError, match="unknown curve family 'gompertz'; known: .*exponential"):
        get_family("gompertz")
