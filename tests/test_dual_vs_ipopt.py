"""The dual route for concave problems with rules against Ipopt (a direct cyipopt model; test dependency).

Instances from the benchmark builders: cells with pots, task floors/caps, a share and a ratio;
``dcp_constrained`` has hill shapes 1, ``concave_constrained`` hill shapes in [0.5, 1] (no DCP form,
so cvxpy cannot check those, Ipopt can).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

try:
    import cyipopt  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    pytest.skip(f"cyipopt cannot be imported ({exc}); install the test extra (cyipopt-wheels bundles Ipopt)",
                allow_module_level=True)

from allocator.solvers import solve  # noqa: E402
from ipopt_reference import ipopt_solve, violations  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_rules import concave_constrained  # noqa: E402
from bench_scale import dcp_constrained  # noqa: E402

CASES = [(dcp_constrained, 50, 0), (dcp_constrained, 100, 1), (dcp_constrained, 200, 2),
         (dcp_constrained, 300, 3), (dcp_constrained, 150, 4),
         (concave_constrained, 120, 0), (concave_constrained, 300, 1)]


@pytest.mark.parametrize("build,n,seed", CASES, ids=[f"{b.__name__}-{n}-{s}" for b, n, s in CASES])
def test_dual_route_at_least_as_good_as_ipopt(build, n, seed):
    p = build(n, seed)
    kinds = {r.kind for r in p.constraints}
    assert {"spend", "budget", "share", "ratio"} <= kinds      # the instance has the rule mix under test
    ours = solve(p, "dual", 1e-7)
    ref = ipopt_solve(p, tol=1e-8, time_limit=60.0)
    assert ref.succeeded, f"Ipopt stopped with '{ref.status_text}' ({ref.message})"
    # both feasible: every row within 1e-6 relative, bounds kept
    assert ref.feasible(1e-6), (ref.max_row_violation, ref.max_bound_violation)
    row_viol, bound_viol = violations(p, ours.spend)
    assert row_viol <= 1e-6 and bound_viol <= 1e-6, (row_viol, bound_viol)
    v_ours, v_ref = p.net_value(ours.spend), ref.net_value
    # Ipopt's plan cannot beat our certified bound; ours is at least as good as Ipopt's
    assert v_ref <= ours.upper_bound + 1e-6 * abs(ours.upper_bound)
    assert v_ours >= v_ref - 1e-6 * abs(v_ref), (v_ours - v_ref) / abs(v_ref)
