"""The difference between two stored plan versions: cells whose spend or value changed, and by how much."""

from __future__ import annotations

from typing import Any

SUMMARY_FIELDS = ("net_value", "total_value", "total_spend", "activation_cost", "marginal_return")


def _changed(a: float | None, b: float | None, rtol: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is not b
    return abs(b - a) > rtol * max(abs(a), abs(b), 1.0)


def diff_plans(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Cells (by segment and task) whose spend or expected value differ between ``old`` and ``new``.

    A cell in only one of them is ``added`` or ``removed``; summary totals are compared alongside.
    Works on stored records (``cells`` = plan.csv rows), so both databases give the same answer.
    """
    before = {(c["segment"], c["task"]): c for c in old["cells"]}
    after = {(c["segment"], c["task"]): c for c in new["cells"]}
    rows = []
    for key in list(before) + [k for k in after if k not in before]:
        a, b = before.get(key), after.get(key)
        sa, sb = (a or {}).get("spend"), (b or {}).get("spend")
        va, vb = (a or {}).get("expected_value"), (b or {}).get("expected_value")
        if a is None or b is None:
            change = "added" if a is None else "removed"
        elif _changed(sa, sb) or _changed(va, vb):
            change = "changed"
        else:
            continue
        rows.append({"segment": key[0], "task": key[1], "change": change,
                     "spend_from": sa, "spend_to": sb,
                     "spend_change": (sb or 0.0) - (sa or 0.0),
                     "value_from": va, "value_to": vb,
                     "value_change": (vb or 0.0) - (va or 0.0)})
    summary = {}
    for f in SUMMARY_FIELDS:
        x, y = old["summary"].get(f), new["summary"].get(f)
        summary[f] = {"from": x, "to": y, "change": None if x is None or y is None else y - x}
    meta = ("id", "version", "created_at", "input_hash", "solver", "status")
    return {"scenario": new["scenario"], "from": {k: old[k] for k in meta}, "to": {k: new[k] for k in meta},
            "same_input": old["input_hash"] == new["input_hash"], "summary": summary,
            "cells_changed": len(rows), "cells": rows}
