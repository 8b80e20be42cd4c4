"""Plans across parameter samples: evaluation, risk-neutral and CVaR optimization, sample inputs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import allocator
from allocator.analysis.uncertainty import (compare_risk, cvar, draw_samples, evaluate_plan, nominal_samples,
                                            optimize_risk, quantile, samples_from_distributions)
from allocator.cli import main
from allocator.errors import SpecError
from allocator.solvers import solve
from allocator.spec.models import DistributionSpec
from helpers import compiled, exp_cell, random_problem, sample_model, scenario, write_yaml


def _safe_and_risky(S: int = 10, budget: float | None = None):
    """A deterministic cell and a risky one whose value is 0 in one sample of ten, 400 otherwise."""
    p = compiled({("safe", "retention"): exp_cell(1000, 200, 0.5, 0.05),
                  ("risky", "acquisition"): exp_cell(1000, 400, 0.5, 0.05)}, budget=budget)
    smp = nominal_samples(p, S)
    v = np.full(S, 400.0)
    v[3] = 0.0
    smp.value[:, 1] = v
    return p, smp, v


def test_cvar_and_risk_neutral_plans_have_the_known_answers():
    # Known answer. Risk-neutral: each cell spends where its mean marginal return is 1:
    # s = pool / rate * ln(mean(value) * ceiling * rate). CVaR at 10% of 10 samples is the worst
    # sample; any spend on the risky cell is a pure cost in the sample where it is worth 0, which
    # is then the worst one, so the CVaR plan spends nothing there and the risk-neutral amount on
    # the safe cell; its CVaR is f_safe(s) - s.
    p, smp, v = _safe_and_risky()
    s_safe = 1000 / 0.05 * math.log(200 * 0.5 * 0.05)
    s_risky = 1000 / 0.05 * math.log(v.mean() * 0.5 * 0.05)
    rn = optimize_risk(p, smp, "mean")
    cv = optimize_risk(p, smp, "cvar", alpha=0.1)
    np.testing.assert_allclose(rn.spend, [s_safe, s_risky], rtol=1e-4)
    np.testing.assert_allclose(cv.spend, [s_safe, 0.0], rtol=1e-4, atol=1e-3)
    f_safe = 1000 * 200 * 0.5 * -math.expm1(-0.05 * s_safe / 1000)
    assert cv.value == pytest.approx(f_safe - s_safe, rel=1e-6)
    for r in (rn, cv):
        assert r.upper_bound >= r.value - 1e-9 * abs(r.value)
        assert r.gap <= 1e-6
    # the CVaR plan is never worse on CVaR and never better on the mean
    r_rn = evaluate_plan(p, rn.spend, smp, alpha=0.1)
    r_cv = evaluate_plan(p, cv.spend, smp, alpha=0.1)
    assert r_cv.cvar >= r_rn.cvar
    assert r_cv.mean <= r_rn.mean
    assert r_rn.cvar == pytest.approx(f_safe - s_safe - s_risky, rel=1e-6)


def test_cvar_versus_mean_on_random_sampled_problem():
    p = random_problem(40, seed=5, families=("exponential", "hill"))
    dists = [DistributionSpec(param="curve.rate", dist="lognormal", sigma=0.4),
             DistributionSpec(param="value", dist="lognormal", sigma=0.3),
             DistributionSpec(param="curve.ceiling", dist="lognormal", sigma=0.3, shared=True)]
    smp = samples_from_distributions(p, dists, 200, seed=3)
    rn = optimize_risk(p, smp, "mean")
    cv = optimize_risk(p, smp, "cvar", alpha=0.1)
    r_rn, r_cv = (evaluate_plan(p, r.spend, smp, alpha=0.1) for r in (rn, cv))
    tol = 1e-6 * abs(cv.value)
    assert r_cv.cvar >= r_rn.cvar - tol
    assert r_cv.mean <= r_rn.mean + 1e-6 * abs(rn.value)
    # both within budget and bounds
    for r in (rn, cv):
        assert r.spend.sum() <= p.budget * (1 + 1e-9)
        assert np.all(r.spend >= p.lower - 1e-9) and np.all(r.spend <= p.upper + 1e-6)


def test_risk_neutral_plan_equals_exact_solve_of_the_mean_problem_with_a_binding_budget():
    # With only values sampled, the expected net value is the nominal problem with mean values:
    # an independent check by the exact multiplier solver.
    p, smp, v = _safe_and_risky(budget=40000.0)
    rn = optimize_risk(p, smp, "mean", tolerance=1e-9)
    mean_p = compiled({("safe", "retention"): exp_cell(1000, 200, 0.5, 0.05),
                       ("risky", "acquisition"): exp_cell(1000, float(v.mean()), 0.5, 0.05)}, budget=40000.0)
    exact = solve(mean_p, "exact")
    assert rn.value == pytest.approx(mean_p.net_value(exact.spend), rel=1e-8)
    np.testing.assert_allclose(rn.spend, exact.spend, rtol=1e-3)


def test_evaluation_statistics_against_direct_computation():
    p, smp, v = _safe_and_risky(S=10)
    spend = np.array([30000.0, 20000.0])
    f_safe = 1000 * 200 * 0.5 * -math.expm1(-0.05 * 30)
    net = f_safe + v * 1000 * 0.5 * -math.expm1(-0.05 * 20) - 50000.0
    r = evaluate_plan(p, spend, smp, alpha=0.2, baseline=False)
    assert r.mean == pytest.approx(net.mean(), rel=1e-12)
    assert r.p5 == pytest.approx(np.percentile(net, 5), rel=1e-12)
    assert r.p95 == pytest.approx(np.percentile(net, 95), rel=1e-12)
    assert r.cvar == pytest.approx(np.sort(net)[:2].mean(), rel=1e-12)


def test_cvar_and_quantile_definitions():
    x = np.array([5.0, 1.0, 3.0, 2.0, 4.0])
    assert cvar(x, 0.4) == pytest.approx(1.5)
    assert cvar(x, 0.3) == pytest.approx((1.0 + 0.5 * 2.0) / 1.5)  # fractional second-worst
    assert cvar(x, 1.0) == pytest.approx(3.0)
    assert quantile(x, 0.4) == 2.0 and quantile(x, 0.1) == 1.0


def test_model_samples_are_carried_into_the_scenario_and_used(tmp_path):
    model = sample_model(count=6, seed=2)
    write_yaml(tmp_path / "model.yaml", model)
    sc_path = write_yaml(tmp_path / "s.yaml", {"name": "s", "model": "model.yaml", "budget": {"total": 300000.0}})
    sc = allocator.load_scenario(sc_path)
    assert sc.samples is not None and sc.samples.count == 6
    smp = draw_samples(sc)
    p = allocator.compile_scenario(sc)
    i = int(np.flatnonzero((p.segment == "b2b") & (p.task == "acquisition"))[0])
    j = int(np.flatnonzero((p.segment == "web") & (p.task == "winback"))[0])
    draws = model["samples"]["cells"]
    np.testing.assert_array_equal(smp.value[:, i], draws[0]["value"])
    np.testing.assert_array_equal(smp.pool[:, j], draws[1]["pool"])
    # unsampled cells keep their nominal parameters
    k = int(np.flatnonzero(p.segment == "b2b")[1])
    assert np.all(smp.value[:, k] == p.value[k])
    # a scenario extending it keeps the samples
    ext = write_yaml(tmp_path / "e.yaml", {"extends": "s.yaml", "name": "e", "overrides": {"budget.total": 1e5}})
    assert allocator.load_scenario(ext).samples.count == 6
    cmp = compare_risk(sc, alpha=0.5)
    assert list(cmp.table["plan"]) == ["nominal", "risk_neutral", "robust_cvar"]
    t = cmp.table.set_index("plan")
    assert t.loc["robust_cvar", "cvar_0.5"] >= t.loc["risk_neutral", "cvar_0.5"] - 1e-6 * abs(t.loc["risk_neutral", "mean"])
    assert t.loc["robust_cvar", "mean"] <= t.loc["risk_neutral", "mean"] + 1e-6 * abs(t.loc["risk_neutral", "mean"])


def test_bad_samples_name_the_cell_and_field(tmp_path):
    model = sample_model(count=4)
    model["samples"]["cells"][0]["value"] = [1.0, 2.0]
    model["samples"]["cells"][1]["curve"]["rate"] = [0.1] * 4
    write_yaml(tmp_path / "model.yaml", model)
    sc = allocator.load_scenario(write_yaml(tmp_path / "s.yaml", {"name": "s", "model": "model.yaml"}))
    with pytest.raises(SpecError) as err:
        draw_samples(sc)
    text = str(err.value)
    assert "samples.value of cell (b2b, acquisition): has 2 draws; samples.count is 4" in text
    assert "samples.curve.rate of cell (web, winback): is not a parameter of family 'hill'" in text


def test_distributions_shared_and_clipped():
    p = compiled({("a", "acquisition"): exp_cell(100, 10, 0.9, 0.1), ("b", "acquisition"): exp_cell(100, 10, 0.9, 0.2),
                  ("b", "retention"): exp_cell(100, 10, 0.5, 0.3)})
    dists = [DistributionSpec(task="acquisition", param="curve.ceiling", dist="lognormal", sigma=0.5, shared=True),
             DistributionSpec(segment="b", task="retention", param="value", dist="uniform", low=5, high=6)]
    smp = samples_from_distributions(p, dists, 500, seed=1)
    c = smp.params[0]["ceiling"]
    assert np.all(c[:, 0] == c[:, 1])              # one shared draw
    assert c.max() == 1.0 and c.min() < 0.9        # clipped at the family's upper bound
    assert np.all((smp.value[:, 2] >= 5) & (smp.value[:, 2] <= 6))
    assert np.all(smp.params[0]["rate"] == np.array([0.1, 0.2, 0.3]))  # untouched


def test_uncertainty_cli(tmp_path, capsys):
    cells = {("a", "acquisition"): exp_cell(1000, 200, 0.5, 0.05, current_spend=10000.0),
             ("b", "retention"): exp_cell(1000, 400, 0.5, 0.05, current_spend=10000.0)}
    data = scenario(cells, budget=50000.0)
    data["uncertainty"] = {"samples": 50, "seed": 1, "alpha": 0.2,
                           "distributions": [{"param": "value", "dist": "lognormal", "sigma": 0.5}]}
    sc = write_yaml(tmp_path / "s.yaml", data)
    out = tmp_path / "o"
    assert main(["uncertainty", str(sc), "--out", str(out)]) == 0
    risk = pd.read_csv(out / "risk.csv")
    assert list(risk["plan"]) == ["baseline", "nominal", "risk_neutral", "robust_cvar"]
    assert risk.loc[0, "prob_beats_baseline"] == 0.0
    assert risk["prob_beats_baseline"].iloc[1:].between(0, 1).all()
    assert "certified gap" in capsys.readouterr().out
    # no samples, no distributions: exit 2, nothing written
    del data["uncertainty"]
    sc2 = write_yaml(tmp_path / "s2.yaml", data)
    out2 = tmp_path / "o2"
    assert main(["uncertainty", str(sc2), "--out", str(out2)]) == 2
    assert "declares no `uncertainty.distributions`" in capsys.readouterr().err
    assert not out2.exists()


def test_quantile_objective_is_at_least_as_good_as_the_candidates():
    p, smp, _ = _safe_and_risky()
    q = optimize_risk(p, smp, "quantile", alpha=0.2)
    assert q.upper_bound is None and "heuristic" in q.note
    for obj in ("mean", "cvar"):
        other = optimize_risk(p, smp, obj, alpha=0.2)
        assert q.value >= evaluate_plan(p, other.spend, smp, alpha=0.2).quantile - 1e-9
