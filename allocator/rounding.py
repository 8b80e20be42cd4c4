"""Money that adds up when rounded: largest-remainder rounding to the currency's minor unit.

Rounding every cell on its own breaks totals: 22 spends that sum to exactly 1,500,000 can print as
cents that sum to 1,499,999.99. Largest-remainder rounding (Hamilton's method) floors every value
to the minor unit, then hands the units still missing from the rounded total to the values with
the largest remainders, so the rounded column sums exactly to the rounded total (to the budget
when it binds) and no value moves by a whole minor unit or more.

The arithmetic runs on whole minor units (int64), so the sums are exact; the raw values stay in
``plan.csv`` and the JSON output, and the terminal and workbook show these.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# ISO 4217 minor units that are not 2 (the default, also for unknown or absent currencies)
MINOR_UNITS: dict[str, int] = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0, "RWF": 0,
    "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    "CLF": 4, "UYW": 4,
}


def minor_unit(currency: str | None) -> int:
    """Decimal places of ``currency``'s minor unit (ISO 4217): USD 2, JPY 0, KWD 3; 2 when unknown."""
    return MINOR_UNITS.get((currency or "").upper(), 2)


def round_to_total(values, decimals: int = 2, total: float | None = None) -> np.ndarray:
    """Round ``values`` to ``decimals`` places so that they sum exactly to the rounded total.

    Parameters
    ----------
    values : array-like of float
        Finite values (negative ones allowed, e.g. spend changes).
    decimals : int
        Places to keep (the currency's minor unit).
    total : float, optional
        The total the rounded values must sum to (itself rounded to ``decimals``); default: the
        sum of ``values``. Give the budget when it binds, so the rounded plan spends it exactly.

    Returns
    -------
    ndarray
        Rounded values; ``sum`` taken in minor units equals ``round(total, decimals)`` exactly, and
        each differs from its raw value by less than one minor unit when ``total`` is the raw sum.
    """
    x = np.asarray(values, float)
    if x.size == 0:
        return x.copy()
    assert np.isfinite(x).all(), "round_to_total needs finite values"
    scale = 10.0 ** decimals
    scaled = x * scale
    floors = np.floor(scaled)
    # the raw values' sum, taken once in high precision, fixes the target; float noise such as
    # 1500000.0000000002 must not turn into an extra cent
    target = int(round((float(np.sum(scaled, dtype=np.longdouble)) if total is None else total * scale)))
    missing = target - int(floors.sum())
    units = floors.astype(np.int64)
    if missing:
        # largest remainders first; ties go to the earlier row, so the result is deterministic
        order = np.argsort(-(scaled - floors), kind="stable")
        if missing > 0:
            units[order[np.arange(missing) % x.size]] += 1 + np.arange(missing) // x.size
        else:
            back = order[::-1]
            units[back[np.arange(-missing) % x.size]] -= 1 + np.arange(-missing) // x.size
    return units / scale


def round_each(values, decimals: int = 2) -> np.ndarray:
    """Round each value on its own (half away from zero), NaN and inf kept: bounds and rates, not totals."""
    x = np.asarray(values, float)
    scale = 10.0 ** decimals
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(x), np.sign(x) * np.floor(np.abs(x) * scale + 0.5) / scale, x)


MONEY_COLUMNS = ("spend", "current_spend", "expected_value", "current_expected_value", "activation_cost",
                 "spend_change", "value_change", "net_value")
"""plan.csv's money columns whose totals a reader adds up; they are rounded to the total."""


def rounded_table(plan, decimals: int | None = None) -> pd.DataFrame:
    """``plan.table`` with its money rounded to the minor unit so that every column adds up.

    ``spend`` sums exactly to the rounded total spend (to the budget when it binds), ``current_spend``
    and the values to their own rounded totals; ``activation_cost`` is already whole. The derived
    columns are recomputed from the rounded ones, so each row keeps its identities exactly:
    ``spend_change = spend - current_spend``, ``value_change = expected_value - current_expected_value``
    and ``net_value = expected_value - spend - activation_cost``. Bounds are rounded on their own
    (an unbounded ``max_spend`` stays inf).
    """
    s = plan.summary
    d = minor_unit(s.currency) if decimals is None else decimals
    t = plan.table.copy()
    binds = s.budget is not None and s.budget_binds and abs(s.total_spend - s.budget) <= 0.5 * 10.0 ** -d
    # a binding budget is the total; off the minor-unit grid it rounds down: the rounded plan never overspends
    cap = np.floor(s.budget * 10.0 ** d + 1e-6) / 10.0 ** d if binds else None
    t["spend"] = round_to_total(t["spend"], d, cap)
    t["expected_value"] = round_to_total(t["expected_value"], d)
    t["activation_cost"] = round_to_total(t["activation_cost"], d)
    t["net_value"] = _exact(t["expected_value"] - t["spend"] - t["activation_cost"], d)
    if "current_spend" in t:
        has = t["current_spend"].notna().to_numpy()
        cur = t["current_spend"].to_numpy(float).copy()
        cur[has] = round_to_total(cur[has], d)
        t["current_spend"] = cur
        t["current_expected_value"] = round_to_total(t["current_expected_value"], d)
        # the change is against the baseline spend of every cell (its minimum where none was given)
        base_r = round_to_total(plan.table["spend"] - plan.table["spend_change"], d)
        t["spend_change"] = _exact(t["spend"] - base_r, d)
        t["value_change"] = _exact(t["expected_value"] - t["current_expected_value"], d)
    for col in ("min_spend", "max_spend"):
        t[col] = round_each(t[col], d)
    return t


def _exact(x, d: int) -> np.ndarray:
    """Differences of rounded values, snapped back onto the minor-unit grid (float noise removed)."""
    return np.round(np.asarray(x, float), d)
