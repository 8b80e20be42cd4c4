"""Turning stated judgments plus data-derived pools and values into calibrated cells.

A judgment file names the (segment, task) cells to plan and, per cell, the
manager's statement about the response curve (two-point or four-point). The
data fill in what the manager did not state: the pool (active customers for
retention, at-risk and lapsed for win-back), the value of one success (the
segment's lifetime value) and, where the judgment says ``rate: data``, today's
response rate (the segment's repeat rate for retention, its reactivation rate
for win-back). When a judgment uses a data rate, the bootstrap draws of that
rate carry through the closed-form calibration into draws of the curve.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import Problem, SpecError
from .cells import CalibratedCell
from .cohorts import SBGFit
from .judgment import DATA, FourPointJudgment, JudgedCell, JudgmentFile, TwoPointJudgment, curve_from_judgment, \
    judgment_inputs
from .transactions import CustomerBase, check_rate


def _uses_data(j: TwoPointJudgment | FourPointJudgment) -> bool:
    return (j.rate if isinstance(j, TwoPointJudgment) else j.at_spend) == DATA


def _note_and_draws(diag: dict, jc, rate_draws, where) -> dict | None:
    """Add the cell's note and its curve draws' clipping count to ``diag``; return the draws."""
    if jc.note:
        diag["note"] = jc.note
    cdraws, clipped = _curve_draws(jc.judgment, rate_draws, where)
    if cdraws:
        diag["draws_clipped"] = clipped
        if clipped:
            diag["warnings"] = [f"{clipped} of {len(rate_draws)} bootstrap draws of the data rate fall "
                                f"outside what the other statements allow and were moved inside"]
    return cdraws


def _curve_draws(j, rates: np.ndarray | None, where: str) -> tuple[dict[str, np.ndarray], int]:
    """The judgment's curve recomputed for each drawn data rate, and how many draws had to be clipped.

    A drawn rate outside the open interval the other statements allow (floor to
    ceiling, or floor to the +50% response) is moved just inside it; the count is
    reported so that a judgment the data contradict does not pass unnoticed.
    """
    if rates is None or not _uses_data(j):
        return {}, 0
    upper = j.ceiling if isinstance(j, TwoPointJudgment) else j.at_more
    eps = 1e-6
    clipped = int(np.sum((rates <= j.floor + eps) | (rates >= upper - eps)))
    curves = [curve_from_judgment(j, float(np.clip(r, j.floor + eps, upper - eps)), where) for r in rates]
    return {k: np.array([c[k] for c in curves]) for k in curves[0] if k != "family"}, clipped


def _segment_info(s) -> dict[str, Any]:
    info: dict[str, Any] = {}
    if s.tags:
        info["tags"] = list(s.tags)
    if s.description:
        info["description"] = s.description
    return info


def _value(jc: JudgedCell, default: Any, where: str) -> Any:
    if jc.value is not None:
        return jc.value.model_dump() if hasattr(jc.value, "model_dump") else float(jc.value)
    if default is None:
        raise SpecError(Problem("value", "the data give no value for this cell; state `value`", where))
    return default


def _pool(jc: JudgedCell, default: float | None, where: str, why: str) -> float:
    if jc.pool is not None:
        return float(jc.pool)
    if default is None or default <= 0:
        raise SpecError(Problem("pool", f"{why}; state `pool`", where))
    return float(default)


def cells_from_judgments(jf: JudgmentFile) -> tuple[list[CalibratedCell], dict[str, dict]]:
    """Cells from a judgment file alone: every cell states its pool, value and curve judgment."""
    cells = []
    for s in jf.segments:
        for task, jc in s.tasks.items():
            where = f"({s.id}, {task})"
            curve = curve_from_judgment(jc.judgment, None, where)
            pool = _pool(jc, None, where, "a judgment-only model has no data to count members")
            value = _value(jc, None, where)
            current = jc.current_spend if jc.current_spend is not None else pool * jc.judgment.spend
            diag = {"source": "judgment", "method": jc.judgment.method, "stated": judgment_inputs(jc.judgment, None)}
            if jc.note:
                diag["note"] = jc.note
            cells.append(CalibratedCell(s.id, task, pool, value, curve, current, diag))
    return cells, {s.id: _segment_info(s) for s in jf.segments}


def cells_from_transactions(base: CustomerBase, table, draws: dict, jf: JudgmentFile
                            ) -> tuple[list[CalibratedCell], dict[str, dict]]:
    """Cells for the judged (segment, task) pairs, pools and values from the transaction log's segments.

    Segments of the judgment file that are not data segments (e.g. ``prospects``)
    must state their pool; their value defaults to the whole base's lifetime value.
    """
    from .transactions import whole_base

    avg = whole_base(base)
    d = base.discount_per_period
    cells, info = [], {}
    for s in jf.segments:
        in_data = s.id in table.index
        if not in_data and any(t != "acquisition" for t in s.tasks):
            raise SpecError(Problem("segments.id", f"'{s.id}' has no customers in the transaction log (its "
                                                   f"segments: {', '.join(map(str, table.index))}); only "
                                                   f"acquisition cells can be planned for other segments",
                                    f"({s.id}, {next(t for t in s.tasks if t != 'acquisition')})"))
        row = table.loc[s.id] if in_data else None
        dr = draws.get(s.id, {}) if in_data else {}
        for task, jc in s.tasks.items():
            where = f"({s.id}, {task})"
            data_rate = rate_draws = value_draws = None
            data_summary: dict[str, Any] = {}
            if task == "retention" and in_data:
                pool = _pool(jc, row["retention_pool"], where, "the segment has no active customers")
                data_rate = check_rate(float(row["retention"]), "retention", s.id)
                rate_draws = dr.get("retention")
                default_value = {"clv": {"margin": float(row["margin"]), "retention": data_rate, "discount": d,
                                         "timing": "end_of_period"}}
                value_draws = dr.get("retained_value")
            elif task == "winback" and in_data:
                pool = _pool(jc, row["winback_pool"], where, "the segment has no at-risk or lapsed customers")
                data_rate = check_rate(float(row["reactivation"]), "reactivation", s.id)
                rate_draws = dr.get("reactivation")
                default_value = {"clv": {"margin": float(row["margin"]),
                                         "retention": float(row["retention_after_return"]), "discount": d,
                                         "timing": "end_of_period"}}
                value_draws = dr.get("winback_value")
            else:
                pool = _pool(jc, None, where, "a transaction log holds no prospects")
                src = row if in_data else avg
                default_value = {"clv": {"margin": float(src["margin"]), "retention": float(src["retention"]),
                                         "discount": d, "timing": "margin_now"}}
                value_draws = dr.get("new_customer_value") if in_data else None
            if in_data:
                data_summary = {k: float(row[k]) for k in ("customers", "margin", "retention", "reactivation",
                                                            "retention_after_return", "retained_value",
                                                            "winback_value", "new_customer_value")}
            if _uses_data(jc.judgment) and data_rate is None:
                raise SpecError(Problem("judgment", "`data` has no data rate for this cell (only retention and "
                                                    "win-back cells of data segments have one); state a number",
                                        where))
            curve = curve_from_judgment(jc.judgment, data_rate, where)
            value = _value(jc, default_value, where)
            current = jc.current_spend if jc.current_spend is not None else pool * jc.judgment.spend
            diag = {"source": "judgment + transactions", "method": jc.judgment.method,
                    "stated": judgment_inputs(jc.judgment, data_rate if _uses_data(jc.judgment) else None),
                    "data": data_summary if in_data else {"whole_base": avg},
                    "pool_from": "stated" if jc.pool is not None else
                    ("active customers" if task == "retention" else "at-risk and lapsed customers"),
                    "value_from": "stated" if jc.value is not None else "lifetime value from the transaction log"}
            cdraws = _note_and_draws(diag, jc, rate_draws, where)
            vdraws = value_draws if (jc.value is None and value_draws is not None) else None
            cells.append(CalibratedCell(s.id, task, pool, value, curve, current, diag, cdraws, vdraws))
        info[s.id] = _segment_info(s)
    return cells, info


def renewal_multiple(fit: SBGFit, renewals: int, discount: float) -> float:
    """Discounted margins a renewal at period n + 1 brings, per unit margin (its margin then, and the rest).

    ``sum_{t>=1} S(n+t)/S(n+1) / (1+d)^t = (1 + R(n+1)) / (1 + d)`` with ``R`` the
    residual multiple of :meth:`SBGFit.residual_value_multiple`.
    """
    return (1.0 + fit.residual_value_multiple(renewals + 1, discount)) / (1.0 + discount)


def new_contract_multiple(fit: SBGFit, discount: float) -> float:
    """A new (or won-back) contract: the first margin now, then sBG renewals: ``1 + R(0)``."""
    return 1.0 + fit.residual_value_multiple(0, discount)


def cells_from_cohorts(fits: dict[str, SBGFit], jf: JudgmentFile, discount: float, draw_count: int,
                       rng: np.random.Generator) -> tuple[list[CalibratedCell], dict[str, dict]]:
    """Cells for contract cohorts: sBG retention and residual value, judged curves.

    Retention cell: pool = customers still under contract, ``rate: data`` = the
    sBG retention of the next period, value = margin x :func:`renewal_multiple`.
    Win-back (pool: churned customers) and acquisition (pool stated) cells:
    value defaults to margin x :func:`new_contract_multiple` (a won-back customer
    starts a new contract).
    """
    cells, info = [], {}
    for s in jf.segments:
        fit = fits.get(s.id)
        for task, jc in s.tasks.items():
            where = f"({s.id}, {task})"
            if fit is None:
                raise SpecError(Problem("segments.id", f"'{s.id}' is not a cohort of the data; cohorts: "
                                                       f"{', '.join(sorted(fits))}", where))
            if s.margin is None and jc.value is None:
                raise SpecError(Problem("margin", "cohort data carry no money; state the segment's `margin` "
                                                  "per period (or the cell's `value`)", where))
            n = fit.periods  # renewals made by customers still under contract
            a_d, b_d = fit.draws(draw_count, rng) if draw_count else (None, None)
            data_rate = rate_draws = value_draws = None
            if task == "retention":
                pool = _pool(jc, fit.alive, where, "no customer is still under contract")
                data_rate = float(fit.retention(np.array([n + 1]))[0])
                default = (s.margin or 0.0) * renewal_multiple(fit, n, discount)
                if a_d is not None:
                    rate_draws = (b_d + n) / (a_d + b_d + n)
                    value_draws = np.array([(s.margin or 0.0) * renewal_multiple(fit.with_params(a, b), n, discount)
                                            for a, b in zip(a_d, b_d)])
            else:
                churned = fit.customers - fit.alive
                pool = _pool(jc, churned if task == "winback" else None, where,
                             "cohort data hold no prospects")
                default = (s.margin or 0.0) * new_contract_multiple(fit, discount)
                if a_d is not None:
                    value_draws = np.array([(s.margin or 0.0) * new_contract_multiple(fit.with_params(a, b), discount)
                                            for a, b in zip(a_d, b_d)])
            if _uses_data(jc.judgment) and data_rate is None:
                raise SpecError(Problem("judgment", "`data` has a data rate only for retention cells; state a number",
                                        where))
            curve = curve_from_judgment(jc.judgment, data_rate, where)
            value = _value(jc, float(default), where)
            current = jc.current_spend if jc.current_spend is not None else pool * jc.judgment.spend
            diag = {"source": "judgment + cohorts (sBG)", "method": jc.judgment.method,
                    "stated": judgment_inputs(jc.judgment, data_rate if _uses_data(jc.judgment) else None),
                    "sbg": {"alpha": fit.alpha, "beta": fit.beta, "renewals_of_survivors": n,
                            "next_period_retention": float(fit.retention(np.array([n + 1]))[0])},
                    "value_from": "stated" if jc.value is not None else
                    ("margin x sBG value of a renewal" if task == "retention" else "margin x sBG value of a new contract")}
            cdraws = _note_and_draws(diag, jc, rate_draws, where)
            vdraws = value_draws if jc.value is None else None
            cells.append(CalibratedCell(s.id, task, pool, value, curve, current, diag, cdraws, vdraws))
        info[s.id] = _segment_info(s)
    return cells, info
