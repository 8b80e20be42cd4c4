"""The logistic-quadratic family: derivative, peak, concavity, and spend capped at the peak."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.special import expit

from allocator.curves import get_family
from allocator.solvers import solve
from helpers import compiled

FAM = get_family("logistic_quadratic")


def P(b0, b1, b2):
    return {"b0": np.array([b0]), "b1": np.array([b1]), "b2": np.array([b2])}


def test_response_is_the_logistic_of_the_quadratic():
    x = np.array([0.0, 100.0, 400.0])
    expected = 1 / (1 + np.exp(-(-1.0 + 0.02 * x - 3e-5 * x**2)))
    assert np.allclose(FAM.response(x, P(-1.0, 0.02, -3e-5)), expected, rtol=1e-14)


@pytest.mark.parametrize("seed", range(5))
def test_slope_matches_central_differences(seed):
    rng = np.random.default_rng(seed)
    b0, b1, b2 = rng.normal(0, 2), rng.uniform(0.001, 0.05), -rng.uniform(1e-6, 1e-4)
    for x in np.linspace(0.5, 800, 30):
        h = 1e-3
        fd = (FAM.response(np.array([x + h]), P(b0, b1, b2))[0] - FAM.response(np.array([x - h]), P(b0, b1, b2))[0]) / (2 * h)
        assert FAM.slope(np.array([x]), P(b0, b1, b2))[0] == pytest.approx(fd, rel=1e-5, abs=1e-10)


def test_peak_is_where_the_slope_vanishes_and_the_response_is_largest():
    params = P(-3.654, 0.01986, -1.983e-5)
    peak = FAM.domain_max(params)[0]
    assert peak == pytest.approx(0.01986 / (2 * 1.983e-5), rel=1e-12)
    assert abs(FAM.slope(np.array([peak]), params)[0]) < 1e-15
    grid = np.linspace(0, 2000, 200001)
    assert grid[np.argmax(FAM.response(grid, params))] == pytest.approx(peak, abs=0.01)


def test_domain_max_without_peak():
    assert FAM.domain_max(P(0.0, 0.01, 0.0))[0] == np.inf          # plain rising logistic
    assert FAM.domain_max(P(0.0, -0.01, 0.0))[0] == 0.0            # falls from the start
    assert FAM.domain_max(P(0.0, -0.01, -1e-4))[0] == 0.0          # peak at negative spend
    assert FAM.domain_max(P(0.0, 0.01, 1e-4))[0] == np.inf         # convex quadratic: no peak


@pytest.mark.parametrize("seed", range(40))
def test_concavity_flag_matches_second_differences_on_the_domain(seed):
    rng = np.random.default_rng(100 + seed)
    b0 = rng.normal(0, 2)
    b1 = rng.uniform(-0.01, 0.05)
    b2 = rng.choice([-1, 1, 0]) * rng.uniform(1e-6, 2e-4)
    params = P(b0, b1, b2)
    top = min(FAM.domain_max(params)[0], 3000.0)
    if top == 0:
        assert FAM.is_concave(params)[0]
        return
    x = np.linspace(0, top, 20001)
    second = np.diff(expit(b0 + b1 * x + b2 * x**2), 2)
    numeric = bool(np.all(second <= 1e-13))
    assert bool(FAM.is_concave(params)[0]) == numeric, (b0, b1, b2)


def test_closed_form_concavity_condition_at_zero():
    # (1 - 2 p(0)) b1^2 + 2 b2 <= 0 decides: p(0) = 1/2 makes it 2 b2 < 0 -> concave
    assert FAM.is_concave(P(0.0, 0.05, -1e-5))[0]
    # p(0) low and steep: convex at 0
    assert not FAM.is_concave(P(-3.0, 0.02, -2e-5))[0]


@pytest.mark.parametrize("value", [1e3, 1e5, 1e9])
def test_compile_caps_spend_at_the_peak_and_the_optimizer_never_passes_it(value):
    # concave up to the peak at 200 per member (p(0) > 1/2); no budget: spend where value * p' = 1
    cell = {"pool": 100.0, "value": value, "curve": {"family": "logistic_quadratic", "b0": 0.5, "b1": 0.02,
                                                     "b2": -5e-5}}
    prob = compiled({("s", "acquisition"): cell})
    assert prob.upper[0] == pytest.approx(100.0 * 200.0)
    res = solve(prob, "exact")
    params = P(0.5, 0.02, -5e-5)
    x_star = brentq(lambda x: value * FAM.slope(np.array([x]), params)[0] - 1.0, 0.0, 200.0)
    assert res.spend[0] <= 100.0 * 200.0
    assert res.spend[0] == pytest.approx(100.0 * x_star, rel=1e-7)


def test_spend_rule_inverts_the_marginal_return_on_a_concave_curve():
    params = P(0.5, 0.02, -5e-5)
    value, pool = np.array([5000.0]), np.array([10.0])
    rule = FAM.spend_rule(params, value, pool)
    for lam in (0.5, 2.0, 10.0):
        x = rule(lam)[0] / pool[0]
        assert value[0] * FAM.slope(np.array([x]), params)[0] == pytest.approx(lam, rel=1e-8)
