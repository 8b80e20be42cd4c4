"""Sweeps over a multi-period base scenario: every variant solved and certified, in one process.

A multi-period file declares ``variants`` like a static one (``grid`` axes and ``cases``; paths
and ``{scale: k}`` / ``{add: d}`` as in :mod:`allocator.spec.overrides`), e.g.::

    variants:
      grid:
        budget.total: {from: 1200000, to: 2000000, steps: 5}
        retention_cost:
          as_is: {}
          dearer: {segments.*.tasks.retention.curve.rate: {scale: 0.8}}

Every variant is validated first (all invalid variants reported together, each naming its
variant), then solved by :func:`allocator.dynamic.plan.plan_dynamic`. The tables:

* ``summary.csv``: one row per variant: id, varied parameters, status, customer equity,
  nominal and discounted spend, certified gap, largest KKT deviation, and one shadow price
  per budget row (``price:<row>``);
* ``cells.csv``: the variant's ``plan.csv`` rows, with the id and varied parameters in front.

Unlike static sweeps this runs serially, without the results log (a multi-period solve of a
scenario the size of ``fy2027`` takes milliseconds).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from ..errors import AllocatorError, Problem, SpecError
from ..scenarios.variants import Variant, expand_variants, param_value
from ..spec.overrides import apply_overrides
from .model import compile_dynamic
from .plan import plan_dynamic
from .spec import DynamicScenario, dynamic_from_dict, resolved_mapping


@dataclass
class DynamicSweepResult:
    summary: pd.DataFrame
    cells: pd.DataFrame
    seconds: float
    param_columns: list[str]


def variant_scenarios(base: Mapping[str, Any]) -> list[tuple[Variant, DynamicScenario]]:
    """The validated scenario of every variant of ``base`` (a resolved mapping with ``variants``)."""
    data = dict(base)
    spec = data.pop("variants", None)
    variants = expand_variants(spec)
    if not variants:
        raise SpecError(Problem("variants", "the scenario declares no variants (add `variants: {grid: ...}` "
                                            "or `variants: {cases: [...]}`)"), source=str(data.get("name")))
    out, problems = [], []
    for v in variants:
        label = ", ".join(f"{k}={val}" for k, val in v.params.items() if val is not None)
        try:
            out.append((v, dynamic_from_dict(apply_overrides(data, v.overrides))))
        except SpecError as exc:
            problems += [Problem(f"variant {v.id} ({label}): {p.field}", p.message, p.cell) for p in exc.problems]
    if problems:
        raise SpecError(problems[:20], source=f"sweep '{data.get('name')}'")
    return out


def run_dynamic_sweep(base: Mapping[str, Any]) -> DynamicSweepResult:
    """Solve every variant of ``base``; a variant that is infeasible or fails gets its status and message."""
    t0 = time.perf_counter()
    items = variant_scenarios(base)
    cols: list[str] = []
    for v, _ in items:
        cols += [k for k in v.params if k not in cols]
    rows, cells = [], []
    for v, sc in items:
        head = {"scenario_id": v.id, **{c: param_value(v.params.get(c)) for c in cols}}
        try:
            plan = plan_dynamic(compile_dynamic(sc))
        except AllocatorError as exc:
            status = "infeasible" if exc.__class__.__name__ == "InfeasibleError" else "error"
            rows.append({**head, "status": status, "message": str(exc).splitlines()[0]})
            continue
        s = plan.summary
        rows.append({**head, "status": s["status"], "message": "", "customer_equity": s["customer_equity"],
                     "total_spend": s["total_spend"], "discounted_spend": s["discounted_spend"],
                     "optimality_gap": s["optimality_gap"], "kkt_max_deviation": s["kkt_max_deviation"],
                     **{f"price:{r['name']}": r["shadow_price"] for r in s["budget_rows"]}})
        t = plan.table.copy()
        for c in reversed(["scenario_id", *cols]):
            t.insert(0, c, head[c])
        cells.append(t)
    summary = pd.DataFrame(rows)
    return DynamicSweepResult(summary=summary, cells=pd.concat(cells, ignore_index=True) if cells
                              else pd.DataFrame(), seconds=time.perf_counter() - t0, param_columns=cols)


def write_sweep(res: DynamicSweepResult, out: str | Path) -> list[Path]:
    from ..io import csv_text, write_unit

    return write_unit(out, {"summary.csv": csv_text(res.summary, float_format="%.12g"),
                            "cells.csv": csv_text(res.cells, float_format="%.12g")})


