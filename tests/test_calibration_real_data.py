"""The real-data fits, each checked against an independent computation.

* acquisition (Kumar & Petersen): the logistic-quadratic MLE equals a plain
  logistic regression on spend and spend squared (statsmodels), and the binned
  table equals the empirical acquisition rate by spend decile;
* retention: the hill MLE with floor 0 and ceiling 1 is a logistic regression on
  log spend; the shipped model's numbers are reproduced from the data;
* sBG: the published Fader-Hardie (2007) estimates;
* CDNOW: tiers, pools, margins and repeat rates against direct pandas computations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from allocator.calibration import (BinomialData, RecordsSpec, TransactionsSpec, customer_base, fit_binomial,
                                   fit_records, fit_sbg, load_cohorts, load_transactions, read_table,
                                   segment_economics)
from allocator.calibration.tables import sha256_of
from allocator.spec import load_model

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"


@pytest.fixture(scope="module")
def kp():
    return pd.read_csv(DATA / "acquisition_retention.csv")


def test_acquisition_logistic_quadratic_equals_statsmodels_logit(kp):
    x, y = kp["acq_exp"].to_numpy(), kp["acquisition"].to_numpy()
    fit = fit_binomial("logistic_quadratic", BinomialData(x, y, np.ones(len(x))))
    ref = sm.Logit(y, np.column_stack([np.ones(len(x)), x, x**2])).fit(disp=0)
    for i, k in enumerate(("b0", "b1", "b2")):
        assert fit.params[k] == pytest.approx(ref.params[i], rel=1e-5)
        assert fit.se[k] == pytest.approx(ref.bse[i], rel=1e-3)
    assert -fit.negloglik == pytest.approx(ref.llf, rel=1e-9)
    # the peak, where the optimizer must stop: -b1 / (2 b2), inside the observed spend range
    peak = -ref.params[1] / (2 * ref.params[2])
    assert 450 < peak < 550


def test_acquisition_table_is_the_empirical_rate_by_spend_decile(kp):
    spec = RecordsSpec(task="acquisition", spend="acq_exp", outcome="acquisition", value_column="profit",
                       bootstrap=0, folds=5, compare_families=False)
    (cell,) = fit_records(read_table(DATA / "acquisition_retention.csv"), spec)
    bins = pd.DataFrame(cell.diagnostics["bins"])
    ordered = kp.sort_values("acq_exp", kind="stable")
    deciles = np.array_split(np.arange(len(ordered)), 10)
    empirical = [ordered["acquisition"].iloc[i].mean() for i in deciles]
    assert np.allclose(bins["observed_rate"], empirical, atol=1e-12)
    assert list(bins["members"]) == [50] * 10
    # the data rise then fall: the top decile's rate is below the middle ones
    assert empirical[-1] < max(empirical) - 0.3
    # the fitted curve follows every decile within 2.5 binomial standard errors
    assert np.all(np.abs(bins["observed_rate"] - bins["fitted_rate"]) <= 2.5 * bins["observed_se"] + 1e-9)
    # value of an acquisition: mean lifetime profit of acquired customers; pool and today's spend from the rows
    assert cell.value == pytest.approx(kp.loc[kp["acquisition"] == 1, "profit"].mean(), rel=1e-12)
    assert cell.pool == 500 and cell.current_spend == pytest.approx(kp["acq_exp"].sum(), rel=1e-12)
    d = cell.diagnostics
    assert d["heldout_logloss"] < d["baseline_logloss"]
    # a monotone family cannot follow the fall: the fit says so
    spec_mono = RecordsSpec(task="acquisition", spend="acq_exp", outcome="acquisition", family="exponential",
                            value=1.0, bootstrap=0, folds=0, compare_families=True)
    (mono,) = fit_records(read_table(DATA / "acquisition_retention.csv"), spec_mono)
    text = " ".join(mono.diagnostics["warnings"])
    assert "observed response falls at high spend" in text and "favour family 'logistic_quadratic'" in text


def test_retention_hill_is_a_logistic_regression_on_log_spend(kp):
    acq = kp[kp["acquisition"] == 1]
    x, y = acq["ret_exp"].to_numpy(), (acq["duration"] >= 1095).to_numpy().astype(float)
    fit = fit_binomial("hill", BinomialData(x, y, np.ones(len(x))), fixed={"floor": 0.0, "ceiling": 1.0})
    ref = sm.Logit(y, np.column_stack([np.ones(len(x)), np.log(x)])).fit(disp=0)
    k = ref.params[1]
    assert fit.params["shape"] == pytest.approx(k, rel=1e-4)
    assert fit.params["half_saturation"] == pytest.approx(np.exp(-ref.params[0] / k), rel=1e-4)
    assert -fit.negloglik == pytest.approx(ref.llf, rel=1e-8)


def test_shipped_b2b_model_is_reproduced_from_the_data(kp):
    model = load_model(ROOT / "models" / "b2b_calibrated.yaml")
    seg = {s.id: s for s in model.segments}["b2b"]
    steps = model.provenance["steps"]
    assert all(s["inputs"][0]["sha256"] == sha256_of(DATA / "acquisition_retention.csv") for s in steps)
    table = read_table(DATA / "acquisition_retention.csv")
    acq = fit_records(table, RecordsSpec(task="acquisition", spend="acq_exp", outcome="acquisition",
                                         value_column="profit", bootstrap=0, folds=0,
                                         compare_families=False))[0]
    ret = fit_records(table, RecordsSpec(task="retention", spend="ret_exp", outcome="duration",
                                         retained_if_at_least=1095, where="acquisition=1", family="hill",
                                         fixed={"floor": 0.0}, value_column="profit",
                                         value_stat="success_minus_failure", bootstrap=0, folds=0,
                                         compare_families=False))[0]
    for fresh, cell in ((acq, seg.tasks["acquisition"]), (ret, seg.tasks["retention"])):
        for k, v in fresh.curve.items():
            if k != "family":
                assert cell.curve[k] == pytest.approx(v, rel=1e-5, abs=1e-9), k
        assert cell.value == pytest.approx(fresh.value, rel=1e-9)
        assert cell.pool == fresh.pool
    # retention: 1095+ days among the acquired; value = profit difference retained vs not (pandas)
    acquired = kp[kp["acquisition"] == 1]
    kept = acquired["duration"] >= 1095
    assert ret.diagnostics["events"] == kept.sum() == 154
    assert ret.value == pytest.approx(acquired.loc[kept, "profit"].mean() - acquired.loc[~kept, "profit"].mean())
    # the samples are bootstrap draws of exactly these cells' parameters
    assert model.samples.count == 200
    cells = {(c.segment, c.task): c for c in model.samples.cells}
    assert set(cells) == {("b2b", "acquisition"), ("b2b", "retention")}
    assert set(cells[("b2b", "acquisition")].curve) == {"b0", "b1", "b2"}
    assert np.median(cells[("b2b", "acquisition")].curve["b1"]) == pytest.approx(acq.curve["b1"], rel=0.1)


def test_sbg_reproduces_the_published_fader_hardie_estimates():
    groups = load_cohorts(read_table(DATA / "sbg_cohorts.csv"))
    # Fader & Hardie (2007), "How to project customer retention", Table 1 / section 3
    published = {"highend": (0.668, 3.806), "regular": (0.704, 1.182)}
    survivors = {"highend": [1000, 869, 743, 653, 593, 551, 517, 491],
                 "regular": [1000, 631, 468, 382, 326, 289, 262, 241]}
    for name, (r, t) in groups.items():
        fit = fit_sbg(r, t, name)
        assert fit.alpha == pytest.approx(published[name][0], abs=0.0015)
        assert fit.beta == pytest.approx(published[name][1], abs=0.0015)
        assert list(fit.table["survivors"]) == survivors[name]
        # retention rises with tenure: (beta + t - 1) / (alpha + beta + t - 1)
        assert np.all(np.diff(fit.retention(np.arange(1, 10))) > 0)


@pytest.fixture(scope="module")
def cdnow():
    spec = TransactionsSpec(bootstrap=20)
    tx = load_transactions(read_table(DATA / "cdnow_master.txt", whitespace=True), spec)
    return tx, customer_base(tx, spec)


def test_cdnow_tiers_pools_and_rates_match_pandas(cdnow):
    tx, base = cdnow
    raw = pd.read_csv(DATA / "cdnow_master.txt", sep=r"\s+", dtype={"customer_id": str})
    raw["date"] = pd.to_datetime(raw["date"].astype(str), format="%Y%m%d")
    revenue = raw.groupby("customer_id")["dollar_value"].sum()
    n = len(revenue)
    assert n == 23570
    ranked = revenue.sort_values(ascending=False, kind="stable")
    sizes = [int(np.floor(n * c + 0.5)) for c in (0.01, 0.05, 0.20)]
    expected_tier = pd.Series("rest_80pct", index=ranked.index)
    expected_tier.iloc[:sizes[0]] = "top_1pct"
    expected_tier.iloc[sizes[0]:sizes[1]] = "next_4pct"
    expected_tier.iloc[sizes[1]:sizes[2]] = "next_15pct"
    tiers = base.customers["tier"]
    assert (tiers.reindex(expected_tier.index) == expected_tier).all()
    counts = tiers.value_counts()
    assert counts.sum() == n
    assert counts.to_dict() == {"top_1pct": 236, "next_4pct": 943, "next_15pct": 3535, "rest_80pct": 18856}

    table, draws = segment_economics(base)
    # direct computation per tier: quarters, active customer-quarters, repeat and reactivation
    raw["q"] = raw["date"].dt.to_period("Q")
    act = raw.groupby(["customer_id", "q"])["dollar_value"].sum().reset_index()
    act["tier"] = act["customer_id"].map(tiers)
    last_q = raw["q"].max()
    nxt = set(zip(act["customer_id"], act["q"]))
    for tier, grp in act.groupby("tier"):
        row = table.loc[tier]
        assert row["margin"] == pytest.approx(0.30 * grp["dollar_value"].sum() / len(grp), rel=1e-12)
        base_q = grp[grp["q"] < last_q]
        repeat = sum((c, q + 1) in nxt for c, q in zip(base_q["customer_id"], base_q["q"]))
        assert row["retention"] == pytest.approx(repeat / len(base_q), rel=1e-12)
    # pools: active = bought within 182 days of the last date in the log; win-back = the others
    end = raw["date"].max()
    recency = (end - raw.groupby("customer_id")["date"].max()).dt.days
    active = (recency <= 182).groupby(tiers.reindex(recency.index)).sum()
    for tier in active.index:
        assert table.loc[tier, "retention_pool"] == active[tier]
        assert table.loc[tier, "retention_pool"] + table.loc[tier, "winback_pool"] == counts[tier]
    assert len(draws["top_1pct"]["retention"]) == 20


def test_shipped_cdnow_and_contract_models_validate_and_plan_with_the_exact_solver():
    from allocator.compile import compile_scenario
    from allocator.plan import make_plan
    from allocator.spec import load_scenario

    for name in ("cdnow", "contracts"):
        sc = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
        prob = compile_scenario(sc)
        assert prob.concave.all()
        plan = make_plan(prob, "exact")
        assert plan.summary.status == "optimal"
        assert plan.summary.kkt_max_deviation < 1e-6
        assert plan.summary.total_spend <= sc.budget.total * (1 + 1e-9)


def test_b2b_calibrated_scenario_plans_globally_and_matches_brute_force():
    """The shipped B2B curves are S-shaped; the automatic global plan must match a grid search."""
    import numpy as np

    import allocator

    plan = allocator.plan(ROOT / "scenarios" / "b2b_calibrated.yaml")
    prob = plan.problem
    assert plan.summary.solver == "global" and plan.summary.status == "optimal"
    B = prob.budget
    acq = int(np.flatnonzero(prob.task == "acquisition")[0])
    # on the budget line: acquisition a (capped at the response peak), retention B - a
    a = np.linspace(0.0, min(B, prob.upper[acq]), 20001)
    spend = np.zeros((len(a), 2))
    spend[:, acq], spend[:, 1 - acq] = a, B - a
    line = [prob.net_value(s) for s in spend]
    best_line = max(line)
    # off the line (budget slack): a coarse grid over a + r <= B never beats it
    g = np.linspace(0.0, B, 201)
    off = max(prob.net_value(np.array([x, y]) if acq == 0 else np.array([y, x]))
              for x in g if x <= prob.upper[acq] for y in g if x + y <= B)
    assert off <= best_line * (1 + 1e-9)
    assert plan.summary.net_value == pytest.approx(best_line, rel=1e-4)
    assert plan.summary.net_value >= best_line * (1 - 1e-4)
    assert plan.summary.upper_bound >= best_line * (1 - 1e-9)
