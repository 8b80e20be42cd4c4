"""The static model is the one-period special case: every bundled (concave) scenario both ways."""

from __future__ import annotations

import numpy as np
import pytest

import allocator
from allocator.dynamic import compile_dynamic, load_dynamic, plan_dynamic
from allocator.dynamic.static import dynamic_from_static, static_from_dynamic
from allocator.errors import SpecError
from allocator.spec import load_scenario

BUNDLED = ["example", "cdnow", "contracts", "b2b_calibrated"]


def _by_cell(table):
    return table.set_index(["segment", "task"])


@pytest.mark.parametrize("name", BUNDLED)
def test_one_period_reproduces_the_static_plan(name):
    path = f"scenarios/{name}.yaml"
    static = allocator.plan(path)
    dynamic = plan_dynamic(compile_dynamic(dynamic_from_static(load_scenario(path))))
    s, d = _by_cell(static.table), _by_cell(dynamic.table)
    assert sorted(s.index) == sorted(d.index)
    d = d.loc[s.index]
    budget = static.summary.budget or float(s.spend.sum())
    np.testing.assert_allclose(d.spend, s.spend, atol=1e-7 * budget)
    np.testing.assert_allclose(d.expected_value, s.expected_value, rtol=1e-7, atol=1e-6 * budget)
    assert dynamic.summary["customer_equity"] == pytest.approx(static.summary.net_value, rel=1e-10)
    assert dynamic.summary["status"] == "optimal"
    # the same price: the static common marginal return is 1 + the dynamic period-1 shadow price
    assert dynamic.summary["by_period"][0]["required_return"] == pytest.approx(static.summary.marginal_return,
                                                                              rel=1e-6)


def test_one_period_dynamic_scenario_equals_its_static_twin(tmp_path):
    """Margins, terminal values and a failure state: the static twin's values are the success values."""
    import re

    text = open("scenarios/fy2027.yaml").read().replace("periods: 4 ", "periods: 1 ")
    text = re.sub(r"(?m)^budget: .*$", "budget: {total: 1000000}", text)
    text = text.replace("terminal: {active: {clv: {margin: 1200,",
                        "terminal: {lapsed: 500, active: {clv: {margin: 1200,")
    text = re.sub(r"(?m)^    arrivals: .*$\n", "", text.replace(", periods: [1, 2, 3]", ""))
    f = tmp_path / "one.yaml"
    f.write_text(text)
    sc = load_dynamic(f)
    dynamic = plan_dynamic(compile_dynamic(sc))
    static = allocator.make_plan(allocator.compile_scenario(static_from_dynamic(sc)))
    s, d = _by_cell(static.table), _by_cell(dynamic.table).loc[_by_cell(static.table).index]
    np.testing.assert_allclose(d.spend, s.spend, atol=1e-6 * 1e6)
    # objectives differ by the value of the members who do not respond: here the enterprise
    # lapsed customers' terminal value of 500 (active members who lapse, lapsed not won back)
    ent = sc.segments[0]
    const = (ent.members.active + ent.members.lapsed * (1 - ent.unreachable)) * 500.0
    assert dynamic.summary["customer_equity"] == pytest.approx(static.summary.net_value + const, rel=1e-9)


def test_static_features_the_contract_does_not_carry_are_named():
    with pytest.raises(SpecError) as err:
        dynamic_from_static(load_scenario("scenarios/constrained.yaml"))
    assert "constraints: planning rules are not carried" in str(err.value)
