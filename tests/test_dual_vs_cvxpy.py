"""The dual route for concave problems with rules against cvxpy + Clarabel (test dependency)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cvxpy")
pytest.importorskip("clarabel")

from allocator.kkt import check_general  # noqa: E402
from allocator.solvers import solve  # noqa: E402
from cvx_reference import cvxpy_solve  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_scale import dcp_constrained  # noqa: E402


@pytest.mark.parametrize("n,seed", [(300, 1), (1_000, 2), (3_000, 3)])
def test_dual_route_matches_cvxpy_on_random_rule_laden_instances(n, seed):
    p = dcp_constrained(n, seed)
    ours = solve(p, "dual", 1e-7)
    ref, _ = cvxpy_solve(p)
    v_ours, v_ref = p.net_value(ours.spend), p.net_value(ref)
    # both feasible (cvxpy to its own tolerance)
    for r in p.rows():
        act = r.activity(ours.spend)
        assert r.lower - 1e-6 * p.budget <= act <= r.upper + 1e-6 * p.budget
    assert ours.optimality_gap <= 1e-7
    # cvxpy's plan cannot beat our certified bound; ours is at least as good as cvxpy's
    assert v_ref <= ours.upper_bound * (1 + 1e-6)
    assert v_ours >= v_ref - 1e-6 * abs(v_ref)
