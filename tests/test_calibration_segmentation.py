"""Segmentation: value pyramid, relationship stage, recency status and pools against direct pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from allocator.calibration import pools, recency_status, relationship_stage, value_pyramid


@pytest.mark.parametrize("n,seed", [(1, 0), (7, 1), (100, 2), (2357, 3), (23570, 4)])
def test_pyramid_tiers_sum_to_the_customer_count_and_match_a_direct_sort(n, seed):
    rng = np.random.default_rng(seed)
    # rounded values: plenty of ties, which keep their input order
    value = pd.Series(np.round(rng.lognormal(3, 1.5, n), 0), index=[f"c{i}" for i in range(n)])
    tiers = value_pyramid(value)
    assert len(tiers) == n and tiers.index.equals(value.index)
    counts = tiers.value_counts()
    assert counts.sum() == n
    # direct: stable sort descending, cut at floor(n * cumulative share + 1/2)
    ranked = value.sort_values(ascending=False, kind="stable")
    cuts = [0] + [int(np.floor(n * c + 0.5)) for c in (0.01, 0.05, 0.20)] + [n]
    for label, a, b in zip(("top_1pct", "next_4pct", "next_15pct", "rest_80pct"), cuts[:-1], cuts[1:]):
        members = ranked.index[a:b]
        assert (tiers[members] == label).all()
        assert counts.get(label, 0) == b - a
    # ordering: no customer in a lower tier is worth more than one in a higher tier
    order = ["top_1pct", "next_4pct", "next_15pct", "rest_80pct"]
    present = [t for t in order if t in counts.index]
    for hi, lo in zip(present, present[1:]):
        assert value[tiers == hi].min() >= value[tiers == lo].max()


def test_stage_quadrants_match_np_select():
    rng = np.random.default_rng(5)
    cur = pd.Series(rng.exponential(50, 1000))
    pot = pd.Series(rng.exponential(80, 1000))
    stage = relationship_stage(cur, pot)
    hc, hp = cur > cur.median(), pot > pot.median()
    expected = np.select([hc & hp, hc & ~hp, ~hc & hp], ["development", "maturity", "identification"], "decline")
    assert (stage.to_numpy() == expected).all()
    assert stage.value_counts().sum() == 1000
    # explicit cuts
    s2 = relationship_stage(pd.Series([0.0, 10.0]), pd.Series([5.0, 0.0]), current_cut=1.0, potential_cut=1.0)
    assert list(s2) == ["identification", "maturity"]


def test_recency_rules_and_pools():
    rec = pd.Series([0, 90, 182, 183, 365, 366, 500], index=list("abcdefg"), dtype=float)
    status = recency_status(rec, active_days=182, lapsed_days=365)
    assert list(status) == ["active", "active", "active", "at_risk", "at_risk", "lapsed", "lapsed"]
    seg = pd.Series(["x", "x", "y", "y", "y", "x", "y"], index=rec.index)
    table = pools(seg, status, prospects={"y": 1000})
    assert table.loc["x"].to_dict() == {"customers": 3, "active": 2, "at_risk": 0, "lapsed": 1, "retention_pool": 2,
                                        "winback_pool": 1, "acquisition_pool": 0.0}
    assert table.loc["y", "winback_pool"] == 3 and table.loc["y", "acquisition_pool"] == 1000
    assert table["customers"].sum() == len(rec)
    with pytest.raises(ValueError, match="active_days < lapsed_days"):
        recency_status(rec, 400, 365)
