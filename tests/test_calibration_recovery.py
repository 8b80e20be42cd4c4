"""Recovery: curves simulated from known parameters are fitted back, and the 95% intervals cover them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from allocator.calibration import AggregatesSpec, BinomialData, RecordsSpec, fit_aggregates, fit_binomial, fit_records
from allocator.calibration.tables import read_table
from helpers import simulate_records, write_csv


def coverage_bounds(sims: int, level: float = 0.95) -> tuple[int, int]:
    """Counts of covering intervals a correct 95% interval gives with probability 99.8% (two-sided)."""
    return int(binom.ppf(0.001, sims, level)), int(binom.ppf(0.999, sims, level))


@pytest.mark.parametrize("family,truth,spend_hi,n,fixed", [
    ("logistic_quadratic", {"b0": -2.0, "b1": 0.02, "b2": -2e-5}, 1000.0, 400, None),
    ("exponential", {"floor": 0.0, "ceiling": 0.6, "rate": 0.01}, 400.0, 400, {"floor": 0.0}),
])
def test_wald_intervals_cover_the_truth_at_their_level(family, truth, spend_hi, n, fixed):
    sims = 100
    covered = {k: 0 for k in truth if not fixed or k not in fixed}
    estimates = {k: [] for k in covered}
    for s in range(sims):
        rng = np.random.default_rng(1000 + s)
        x, y = simulate_records(family, truth, rng.uniform(0, spend_hi, n), seed=s)
        fit = fit_binomial(family, BinomialData(x, y, np.ones(n)), fixed)
        for k in covered:
            lo, hi = fit.ci[k]
            covered[k] += lo <= truth[k] <= hi
            estimates[k].append(fit.params[k])
    lo_ok, hi_ok = coverage_bounds(sims)
    for k, c in covered.items():
        assert lo_ok <= c <= hi_ok, (k, c, sims)
        # and the estimator is centred on the truth (mean error within 4 standard errors of the mean)
        e = np.array(estimates[k])
        assert abs(e.mean() - truth[k]) < 4 * e.std(ddof=1) / np.sqrt(sims) + 1e-12, (k, e.mean(), truth[k])


def test_large_sample_recovers_a_hill_curve_closely():
    truth = {"floor": 0.05, "ceiling": 0.7, "half_saturation": 100.0, "shape": 2.0}
    rng = np.random.default_rng(9)
    x, y = simulate_records("hill", truth, rng.uniform(0, 500, 20000), seed=9)
    fit = fit_binomial("hill", BinomialData(x, y, np.ones(len(x))))
    for k, v in truth.items():
        assert abs(fit.params[k] - v) <= 3.3 * fit.se[k], (k, fit.params[k], fit.se[k])
        assert fit.params[k] == pytest.approx(v, rel=0.1, abs=0.01)


def test_records_pipeline_recovers_per_segment_curves(tmp_path):
    truths = {"north": {"floor": 0.0, "ceiling": 0.5, "rate": 0.02}, "south": {"floor": 0.0, "ceiling": 0.3,
                                                                               "rate": 0.05}}
    cols = {"seg": [], "spend": [], "won": []}
    for i, (seg, t) in enumerate(truths.items()):
        rng = np.random.default_rng(i)
        x, y = simulate_records("exponential", t, rng.uniform(0, 300, 3000), seed=10 + i)
        cols["seg"] += [seg] * len(x)
        cols["spend"] += list(np.round(x, 4))
        cols["won"] += list(y.astype(int))
    path = write_csv(tmp_path / "r.csv", cols)
    spec = RecordsSpec(task="acquisition", spend="spend", outcome="won", family="exponential", segment="seg",
                       value=100.0, fixed={"floor": 0.0}, bootstrap=20, folds=3, compare_families=False)
    cells = fit_records(read_table(path), spec, path)
    assert [c.segment for c in cells] == ["north", "south"]
    for c in cells:
        t = truths[c.segment]
        d = c.diagnostics
        for k in ("ceiling", "rate"):
            # one realization, four checks: allow 3.3 standard errors (a 0.1% miss each)
            assert abs(d["estimates"][k] - t[k]) <= 3.3 * d["std_errors"][k], (c.segment, k, d["estimates"][k])
            lo, hi = d["ci95"][k]
            assert hi - lo == pytest.approx(2 * 1.959964 * d["std_errors"][k], rel=1e-6)
        assert c.pool == 3000 and c.value == 100.0
        assert len(c.curve_draws["rate"]) == 20 and np.all(c.curve_draws["floor"] == 0.0)
        # spend matters here: the held-out log-loss beats a constant rate
        assert d["heldout_logloss"] < d["baseline_logloss"]


def test_aggregates_recover_the_curve_and_bootstrap_spreads_like_the_wald_interval(tmp_path):
    truth = {"floor": 0.02, "ceiling": 0.4, "rate": 0.05}
    spend = np.array([0.0, 5, 10, 20, 40, 60, 100])
    size = np.full(len(spend), 2000)
    from allocator.curves import get_family

    p = get_family("exponential").response(spend, {k: np.array([v]) for k, v in truth.items()})
    k = np.random.default_rng(3).binomial(size, p)
    path = write_csv(tmp_path / "a.csv", {"spend": spend, "size": size, "won": k})
    spec = AggregatesSpec(task="acquisition", spend="spend", size="size", successes="won", value=50.0,
                          bootstrap=60, folds=0, compare_families=False)
    (cell,) = fit_aggregates(read_table(path), spec, path)
    d = cell.diagnostics
    for name, v in truth.items():
        assert abs(d["estimates"][name] - v) <= 3.3 * d["std_errors"][name]
        # the parametric bootstrap's spread agrees with the observed-information standard error
        sd = np.std(cell.curve_draws[name], ddof=1)
        assert sd == pytest.approx(d["std_errors"][name], rel=0.35)
    # the table has one row per campaign with the observed rate k / n
    assert np.allclose([b["observed_rate"] for b in d["bins"]], k / size)
