"""Multi-period plans against closed forms: Blattberg-Deighton, Pfeifer, and the long finite horizon.

Truth is derived here, independently of the solver: the customer equity closed form of
Blattberg and Deighton (HBR 1996) maximized numerically over (A, R), its derivatives for
Pfeifer's (2005) condition, and the stationary answer for the long finite horizon.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from allocator.dynamic import compile_dynamic, dynamic_from_dict, plan_dynamic
from allocator.dynamic.examples import blattberg_deighton

CASES = [
    # margin, discount, a_max, k_a, r_max, k_r
    (100.0, 0.10, 0.40, 0.02, 0.80, 0.05),
    (1200.0, 0.025, 0.30, 0.004, 0.95, 0.02),
    (40.0, 0.15, 0.30, 0.10, 0.70, 0.2),
]


def closed_form(A: float, R: float, m: float, d: float, am: float, ka: float, rm: float, kr: float) -> float:
    """CE = a m - A + a (m - R/r) r'/(1 - r'), r' = r/(1 + d) (per prospect)."""
    a = am * (1 - math.exp(-ka * A))
    r = rm * (1 - math.exp(-kr * R))
    rp = r / (1 + d)
    return a * m - A + a * (m - R / r) * rp / (1 - rp)


def maximize_closed_form(m, d, am, ka, rm, kr) -> tuple[float, float, float]:
    """Grid over (A, R), then Nelder-Mead from the best grid point: an independent optimum."""
    A = np.linspace(0, 5 / ka, 301)
    R = np.linspace(1e-3, 5 / kr, 301)
    grid = np.array([[closed_form(a, r, m, d, am, ka, rm, kr) for r in R] for a in A])
    i, j = np.unravel_index(np.argmax(grid), grid.shape)
    res = minimize(lambda v: -closed_form(v[0], v[1], m, d, am, ka, rm, kr), [A[i], R[j]], method="Nelder-Mead",
                   options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20000})
    return float(res.x[0]), float(res.x[1]), float(-res.fun)


def _steady(m, d, am, ka, rm, kr, periods="infinite"):
    plan = plan_dynamic(compile_dynamic(dynamic_from_dict(blattberg_deighton(m, d, am, ka, rm, kr,
                                                                             prospects=1000.0, periods=periods))))
    t = plan.table
    A = float(t[(t.period == 1) & (t.task == "acquisition")].spend_per_member.iloc[0])
    R = float(t[(t.period == "steady") & (t.task == "retention")].spend_per_member.iloc[0]) \
        if periods == "infinite" else None
    return plan, A, R


@pytest.mark.parametrize("case", CASES)
def test_blattberg_deighton_closed_form(case):
    m, d, am, ka, rm, kr = case
    A_star, R_star, ce_star = maximize_closed_form(*case)
    plan, A, R = _steady(*case)
    assert plan.summary["customer_equity"] / 1000 == pytest.approx(ce_star, rel=1e-9)
    assert A == pytest.approx(A_star, rel=1e-5)
    assert R == pytest.approx(R_star, rel=1e-5)
    # the optimum's own value, read back through the closed form
    assert closed_form(A, R, *case) == pytest.approx(ce_star, rel=1e-12)
    assert plan.summary["optimality_check"]["ok"]


@pytest.mark.parametrize("case", CASES)
def test_pfeifer_marginal_costs_equal_lifetime_value(case):
    """At the optimum: 1/a'(A) = 1/r'(R) = value of a customer = m + (m - R/r) r'/(1 - r')."""
    m, d, am, ka, rm, kr = case
    _, A, R = _steady(*case)
    a_slope = am * ka * math.exp(-ka * A)
    r_slope = rm * kr * math.exp(-kr * R)
    r = rm * (1 - math.exp(-kr * R))
    rp = r / (1 + d)
    lifetime_value = m + (m - R / r) * rp / (1 - rp)
    assert 1 / a_slope == pytest.approx(lifetime_value, rel=1e-8)
    assert 1 / r_slope == pytest.approx(lifetime_value, rel=1e-8)


def test_long_finite_horizon_converges_to_the_infinite_answer():
    case = CASES[0]
    inf_plan, A_inf, R_inf = _steady(*case)
    gaps = []
    for T in (20, 80, 300):
        plan, A, _ = _steady(*case, periods=T)
        t = plan.table
        R1 = float(t[(t.period == 2) & (t.task == "retention")].spend_per_member.iloc[0])
        gaps.append(abs(plan.summary["customer_equity"] - inf_plan.summary["customer_equity"]))
        if T == 300:
            assert plan.summary["customer_equity"] == pytest.approx(inf_plan.summary["customer_equity"], rel=1e-10)
            assert A == pytest.approx(A_inf, rel=1e-8)
            assert R1 == pytest.approx(R_inf, rel=1e-8)
    assert gaps[0] > gaps[1] > gaps[2]


def test_no_spend_steady_state_is_the_gupta_lehmann_value():
    """Retention at a flat 0.8 with no spend possible: an active customer's W is m r/(1+d-r) + m r."""
    m, d, r = 100.0, 0.1, 0.8
    data = {"name": "flat", "periods": "infinite", "discount": d, "segments": [{
        "id": "s", "members": {"active": 10.0}, "margin": m,
        "tasks": {"retention": {"curve": {"family": "piecewise", "points": [[0, r], [1, r]]},
                                "max_spend_per_member": 0.0}}}]}
    plan = plan_dynamic(compile_dynamic(dynamic_from_dict(data)))
    # period 1: retained with r, earning m at its end, then worth m r/(1+d-r) (Gupta-Lehmann) one period on
    expected = 10 * (r * m + r * (m * r / (1 + d - r)) / (1 + d) * (1 + d))
    assert plan.summary["customer_equity"] == pytest.approx(expected, rel=1e-12)
