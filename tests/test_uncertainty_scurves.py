"""Plans across samples for S-shaped curves and integer features: brute force against the certified route."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from allocator.analysis.uncertainty import (compare_risk, cvar, draw_samples, evaluate_plan, optimize_risk,
                                            samples_from_distributions)
from allocator.cli import main
from allocator.errors import SolverUnavailableError
from allocator.spec.models import DistributionSpec
from helpers import compiled, hill_cell, scenario, write_yaml

SCENARIO = "scenarios/b2b_calibrated.yaml"


def _draws(p, S: int, seed: int, extra: tuple = ()):
    dists = [DistributionSpec(param="curve.half_saturation", dist="lognormal", sigma=0.3),
             DistributionSpec(param="value", dist="lognormal", sigma=0.25), *extra]
    return samples_from_distributions(p, dists, S, seed=seed)


def _direct_values(p, smp, spend: np.ndarray) -> np.ndarray:
    """Sampled value per (sample, cell, plan) written out from the families' formulas, not the library's."""
    spend = np.atleast_2d(spend)                      # (plans, cells)
    out = np.empty((smp.count, p.n, len(spend)))
    for b, P in zip(p.blocks, smp.params):
        for j, i in enumerate(b.index):
            x = spend[:, i][None, :] / smp.pool[:, i][:, None]
            if b.family.name == "hill":
                h, k = P["half_saturation"][:, j][:, None], P["shape"][:, j][:, None]
                fl, ce = P["floor"][:, j][:, None], P["ceiling"][:, j][:, None]
                z = (x / h) ** k
                prob = fl + (ce - fl) * z / (1.0 + z)
            elif b.family.name == "piecewise":  # tables are not sampled: one row per cell
                X, Y = P["x"][j], P["p"][j]
                ok = np.isfinite(X)
                prob = np.interp(x, X[ok], Y[ok])
            else:  # logistic_quadratic
                b0, b1, b2 = (P[nm][:, j][:, None] for nm in ("b0", "b1", "b2"))
                prob = expit(b0 + b1 * x + b2 * x * x)
            out[:, i, :] = smp.pool[:, i][:, None] * smp.value[:, i][:, None] * prob
    return out


def _brute_force(p, smp, plans: np.ndarray, alpha: float,
                 activation: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Best mean (alpha = 1) or CVaR over the given plans (plans x cells), by direct evaluation."""
    net = _direct_values(p, smp, plans).sum(axis=1) - plans.sum(axis=1)[None, :]   # (S, plans)
    if activation is not None:
        net -= (np.where(plans > 0, activation[None, :], 0.0)).sum(axis=1)[None, :]
    if alpha >= 1:
        score = net.mean(axis=0)
    else:
        S = smp.count
        m = alpha * S
        k = int(np.floor(m + 1e-12))
        srt = np.sort(net, axis=0)
        score = (srt[:k].sum(axis=0) + (m - k) * (srt[k] if k < S else 0.0)) / m
    best = int(np.argmax(score))
    return float(score[best]), plans[best]


def _two_s_curves():
    # worth running on their steep parts only; the budget cannot fund both to saturation
    return compiled({("a", "acquisition"): hill_cell(100, 200.0, 0.6, 20.0, 3.0),
                     ("b", "acquisition"): hill_cell(200, 120.0, 0.5, 10.0, 2.5)}, budget=3000.0)


@pytest.mark.parametrize("objective, alpha", [("mean", 1.0), ("cvar", 0.1), ("cvar", 0.3)])
def test_two_s_curves_match_a_brute_force_grid_and_never_beat_the_bound(objective, alpha):
    p = _two_s_curves()
    smp = _draws(p, 30, seed=4)
    rp = optimize_risk(p, smp, objective, alpha=alpha, tolerance=1e-5)
    g = np.linspace(0.0, 3000.0, 601)
    A, B = np.meshgrid(g, g, indexing="ij")
    keep = A + B <= 3000.0 + 1e-9
    plans = np.column_stack([A[keep], B[keep]])
    bf, _ = _brute_force(p, smp, plans, alpha)
    assert rp.gap <= 1e-5
    assert bf <= rp.upper_bound * (1 + 1e-12)                       # the bound is never beaten
    assert rp.value >= bf - rp.gap * abs(rp.value) - 1e-9            # the plan is as good, within its gap
    # its value is the measure of its own spend, computed independently
    own, _ = _brute_force(p, smp, rp.spend[None, :], alpha)
    assert rp.value == pytest.approx(own, rel=1e-10)
    assert rp.spend.sum() <= 3000.0 * (1 + 1e-9) and np.all(rp.spend >= 0)


@pytest.mark.parametrize("objective, alpha", [("mean", 1.0), ("cvar", 0.2)])
def test_integer_features_match_exhaustive_enumeration(objective, alpha):
    # spend units of 50, a minimum-if-active spend and activation cost on one cell: the feasible
    # plans are a finite set, enumerated exactly; the optimizer's plan is one of them, so it can
    # never beat the enumeration, and must come within its certified gap of it
    cells = {("a", "acquisition"): hill_cell(100, 200.0, 0.6, 20.0, 3.0, min_active_spend=800.0,
                                             activation_cost=150.0),
             ("b", "acquisition"): hill_cell(200, 120.0, 0.5, 10.0, 2.5),
             ("c", "retention"): hill_cell(80, 60.0, 0.7, 8.0, 1.0)}
    data = scenario(cells, budget=3000.0)
    data["budget"]["unit"] = 50.0
    from allocator.compile import compile_scenario
    from allocator.spec import scenario_from_dict

    p = compile_scenario(scenario_from_dict(data))
    smp = _draws(p, 24, seed=7)
    rp = optimize_risk(p, smp, objective, alpha=alpha, tolerance=1e-5)
    g = np.arange(0.0, 3000.0 + 1, 50.0)
    A, B, C = np.meshgrid(g, g, g, indexing="ij")
    keep = (A + B + C <= 3000.0 + 1e-9) & ((A == 0) | (A >= 800.0))
    plans = np.column_stack([A[keep], B[keep], C[keep]])
    bf, best = _brute_force(p, smp, plans, alpha, activation=np.array([150.0, 0.0, 0.0]))
    assert bf <= rp.upper_bound * (1 + 1e-12)
    assert rp.value <= bf + 1e-7 * abs(bf)                          # on the grid: cannot beat enumeration
    assert rp.value >= bf - rp.gap * abs(rp.value) - 1e-9
    assert np.allclose(rp.spend / 50.0, np.round(rp.spend / 50.0))
    assert rp.spend[0] == 0 or rp.spend[0] >= 800.0


def test_rules_and_a_locked_s_curve_match_a_brute_force_grid():
    # a lock on an S-shaped cell (a single point: its one segment must stay open) and a share rule
    cells = {("a", "acquisition"): hill_cell(100, 200.0, 0.6, 20.0, 3.0),
             ("b", "retention"): hill_cell(200, 120.0, 0.5, 10.0, 2.5),
             ("c", "acquisition"): hill_cell(50, 150.0, 0.5, 15.0, 2.0)}
    data = scenario(cells, budget=3500.0)
    data["constraints"] = [
        {"name": "keep_c", "type": "lock", "select": {"segments": ["c"]}, "spend": 500.0},
        {"name": "retention_share", "type": "share", "select": {"tasks": ["retention"]}, "min": 0.4}]
    from allocator.compile import compile_scenario
    from allocator.spec import scenario_from_dict

    p = compile_scenario(scenario_from_dict(data))
    smp = _draws(p, 24, seed=5)
    order = {(str(s_), str(t)): i for i, (s_, t) in enumerate(zip(p.segment, p.task))}
    ia, ib, ic = order["a", "acquisition"], order["b", "retention"], order["c", "acquisition"]
    g = np.linspace(0.0, 3000.0, 601)
    A, B = np.meshgrid(g, g, indexing="ij")
    keep = (A + B + 500.0 <= 3500.0 + 1e-9) & (B >= 0.4 * (A + B + 500.0) - 1e-9)
    plans = np.zeros((int(keep.sum()), 3))
    plans[:, ia], plans[:, ib], plans[:, ic] = A[keep], B[keep], 500.0
    for objective, alpha in (("mean", 1.0), ("cvar", 0.25)):
        rp = optimize_risk(p, smp, objective, alpha=alpha, tolerance=1e-5)
        bf, _ = _brute_force(p, smp, plans, alpha)
        assert bf <= rp.upper_bound * (1 + 1e-12)
        assert rp.value >= bf - rp.gap * abs(rp.value) - 1e-9
        assert rp.spend[ic] == pytest.approx(500.0)
        assert rp.spend[ib] >= 0.4 * rp.spend.sum() * (1 - 1e-9)


def test_an_s_shaped_table_with_sampled_values_matches_a_brute_force_grid():
    cells = {("a", "acquisition"): {"pool": 100, "value": 200.0, "curve": {
                 "family": "piecewise", "points": [[0, 0.0], [10, 0.02], [20, 0.3], [40, 0.5]]}},
             ("b", "acquisition"): hill_cell(200, 120.0, 0.5, 10.0, 2.5)}
    p = compiled(cells, budget=3000.0)
    smp = _draws(p, 24, seed=3)
    assert smp.value[:, 0].std() > 0                                  # the table's value is sampled
    g = np.linspace(0.0, 3000.0, 601)                                 # includes the kinks 1000, 2000
    A, B = np.meshgrid(g, g, indexing="ij")
    keep = A + B <= 3000.0 + 1e-9
    plans = np.column_stack([A[keep], B[keep]])
    for objective, alpha in (("mean", 1.0), ("cvar", 0.2)):
        rp = optimize_risk(p, smp, objective, alpha=alpha, tolerance=1e-5)
        bf, _ = _brute_force(p, smp, plans, alpha)
        assert bf <= rp.upper_bound * (1 + 1e-12)
        assert rp.value >= bf - rp.gap * abs(rp.value) - 1e-9


def test_curves_that_peak_in_some_samples_keep_a_valid_bound():
    # logistic_quadratic with a sampled quadratic term: some draws peak (and fall) inside the
    # spend range; the bound uses each draw's running maximum, the plan the true curve
    cells = {("a", "acquisition"): {"pool": 100, "value": 40.0,
                                    "curve": {"family": "logistic_quadratic", "b0": -3.0, "b1": 0.25, "b2": -0.004}},
             ("b", "acquisition"): hill_cell(200, 120.0, 0.5, 10.0, 2.5)}
    p = compiled(cells, budget=4000.0)
    dists = [DistributionSpec(param="curve.b2", dist="normal", sd=0.0015),
             DistributionSpec(param="value", dist="lognormal", sigma=0.25)]
    smp = samples_from_distributions(p, dists, 30, seed=2)
    lq = smp.params[[b.family.name for b in p.blocks].index("logistic_quadratic")]
    peaks = -lq["b1"][:, 0] / (2 * lq["b2"][:, 0]) * 100            # spend at each draw's peak (pool 100)
    assert ((peaks > 0) & (peaks < 4000)).any()                      # the case is really exercised
    g = np.linspace(0.0, 4000.0, 801)
    A, B = np.meshgrid(g, g, indexing="ij")
    keep = A + B <= 4000.0 + 1e-9
    plans = np.column_stack([A[keep], B[keep]])
    for objective, alpha in (("mean", 1.0), ("cvar", 0.1)):
        rp = optimize_risk(p, smp, objective, alpha=alpha, tolerance=1e-5)
        bf, _ = _brute_force(p, smp, plans, alpha)
        assert bf <= rp.upper_bound * (1 + 1e-12)
        assert rp.value >= bf - rp.gap * abs(rp.value) - 1e-9


def test_evaluation_of_a_given_plan_on_s_curves_equals_direct_numpy():
    cells = {("a", "acquisition"): hill_cell(100, 50.0, 0.6, 20.0, 3.0, activation_cost=120.0),
             ("b", "acquisition"): hill_cell(200, 30.0, 0.5, 10.0, 2.5, activation_cost=80.0)}
    p = compiled(cells, budget=3000.0)
    smp = _draws(p, 40, seed=1)
    spend = np.array([1700.0, 0.0])
    net = _direct_values(p, smp, spend[None, :])[:, :, 0].sum(axis=1) - 1700.0 - 120.0  # b is off: no cost
    r = evaluate_plan(p, spend, smp, alpha=0.1, baseline=False)
    assert r.mean == pytest.approx(net.mean(), rel=1e-12)
    assert r.cvar == pytest.approx(np.sort(net)[:4].mean(), rel=1e-12)
    assert r.p5 == pytest.approx(np.percentile(net, 5), rel=1e-12)
    np.testing.assert_allclose(r.net, net, rtol=1e-12)


def test_b2b_calibrated_cli_on_50_of_its_bootstrap_draws(tmp_path):
    out = tmp_path / "o"
    assert main(["uncertainty", SCENARIO, "--samples", "50", "--tolerance", "1e-5", "--out", str(out),
                 "--quiet"]) == 0
    risk = pd.read_csv(out / "risk.csv").set_index("plan")
    assert "certified_gap" in risk.columns
    assert list(risk.index) == ["baseline", "nominal", "risk_neutral", "robust_cvar"]
    for name, col in (("risk_neutral", "mean"), ("robust_cvar", "cvar_0.1")):
        assert 0 <= risk.loc[name, "certified_gap"] <= 1e-5
        assert risk.loc[name, "upper_bound"] >= risk.loc[name, col]
        # no other plan in the table beats the certified bound
        assert risk[col].max() <= risk.loc[name, "upper_bound"] * (1 + 1e-12)
    # the plans are evaluated on the first 50 of the model's 200 draws: recompute one directly
    import allocator

    sc = allocator.load_scenario(SCENARIO)
    p = allocator.compile_scenario(sc)
    smp = draw_samples(sc, count=50)
    plans = pd.read_csv(out / "risk_plans.csv")
    s = plans["spend_robust_cvar"].to_numpy()
    net = _direct_values(p, smp, s[None, :])[:, :, 0].sum(axis=1) - s.sum()
    assert risk.loc["robust_cvar", "cvar_0.1"] == pytest.approx(cvar(net, 0.1), rel=1e-9)
    assert risk.loc["risk_neutral", "mean"] >= risk.loc["nominal", "mean"] - 1e-9


def test_refusal_names_the_objective_and_the_s_shaped_cells_but_still_evaluates(tmp_path, capsys):
    cells = {("a", "acquisition"): hill_cell(100, 50.0, 0.6, 20.0, 3.0, current_spend=500.0),
             ("b", "retention"): hill_cell(200, 30.0, 0.5, 10.0, 1.0, current_spend=500.0)}
    data = scenario(cells, budget=3000.0)
    data["objective"] = {"type": "hurdle", "rate": 1.3}
    data["uncertainty"] = {"samples": 20, "seed": 1,
                           "distributions": [{"param": "value", "dist": "lognormal", "sigma": 0.3}]}
    path = write_yaml(tmp_path / "h.yaml", data)
    with pytest.raises(SolverUnavailableError) as err:
        compare_risk(path)
    text = str(err.value)
    assert "the objective is hurdle (rate 1.3)" in text
    assert "S-shaped or non-concave in some sample: cell(s) (a, acquisition)" in text
    assert "(b, retention)" not in text
    out = tmp_path / "o"
    assert main(["uncertainty", str(path), "--out", str(out), "--quiet"]) == 4
    assert "risk_neutral not optimized: risk optimization across samples is not available" in capsys.readouterr().err
    risk = pd.read_csv(out / "risk.csv")
    assert list(risk["plan"]) == ["baseline", "nominal"]
    # --evaluate-only with a given plan: nothing to refuse; the plan's row is its direct evaluation
    pd.DataFrame({"segment": ["b", "a"], "task": ["retention", "acquisition"], "spend": [900.0, 1500.0]}).to_csv(
        tmp_path / "plan.csv", index=False)
    assert main(["uncertainty", str(path), "--out", str(tmp_path / "e"), "--quiet", "--evaluate-only",
                 "--plan", str(tmp_path / "plan.csv")]) == 0
    risk = pd.read_csv(tmp_path / "e" / "risk.csv").set_index("plan")
    assert list(risk.index) == ["baseline", "nominal", "given_plan"]
    import allocator

    sc = allocator.load_scenario(path)
    p = allocator.compile_scenario(sc)
    spend = np.where(p.segment == "a", 1500.0, 900.0)
    net = _direct_values(p, draw_samples(sc), spend[None, :])[:, :, 0].sum(axis=1) - 2400.0
    assert risk.loc["given_plan", "mean"] == pytest.approx(net.mean(), rel=1e-10)
