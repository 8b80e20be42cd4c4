"""Scenario builders shared by the tests and the benchmark (mappings, validated by the caller)."""

from __future__ import annotations

from typing import Any

import numpy as np


def blattberg_deighton(margin: float, discount: float, acq_ceiling: float, acq_rate: float,
                       ret_ceiling: float, ret_rate: float, prospects: float = 1000.0,
                       periods: int | str = "infinite") -> dict[str, Any]:
    """Blattberg and Deighton's customer equity test as a scenario.

    One segment of prospects, acquisition in period 1 only (unacquired prospects leave),
    retention every period, no win-back, no budget; ``a(A) = acq_ceiling (1 - e^-acq_rate A)``
    and ``r(R) = ret_ceiling (1 - e^-ret_rate R)``.
    """
    return {"name": "blattberg_deighton", "periods": periods, "discount": discount, "segments": [{
        "id": "prospects", "members": {"prospects": prospects}, "margin": margin, "prospects_stay": 0.0,
        "tasks": {
            "acquisition": {"curve": {"family": "exponential", "ceiling": acq_ceiling, "rate": acq_rate},
                            "periods": [1]},
            "retention": {"curve": {"family": "exponential", "ceiling": ret_ceiling, "rate": ret_rate}}}}]}


def random_scenario(segments: int, periods: int, seed: int = 0, budget: str = "per_period",
                    tightness: float = 0.5, s_curves: float = 0.0, tasks: tuple[str, ...] =
                    ("acquisition", "retention", "winback")) -> dict[str, Any]:
    """A random multi-period scenario; budgets at ``tightness`` x a rough unconstrained spend.

    ``s_curves`` is the share of win-back (and acquisition) curves that are S-shaped Hill curves.
    """
    rng = np.random.default_rng(seed)
    segs = []
    rough = 0.0
    for i in range(segments):
        members = {"prospects": float(rng.uniform(100, 2000)), "active": float(rng.uniform(100, 1000)),
                   "lapsed": float(rng.uniform(20, 400))}
        margin = float(rng.uniform(50, 400))
        curves = {
            "acquisition": {"family": "exponential", "ceiling": float(rng.uniform(0.05, 0.4)),
                            "rate": float(rng.uniform(0.003, 0.05))},
            "retention": {"family": "exponential", "floor": float(rng.uniform(0.5, 0.8)),
                          "ceiling": float(rng.uniform(0.85, 0.97)), "rate": float(rng.uniform(0.01, 0.1))},
            "winback": {"family": "exponential", "floor": 0.01, "ceiling": float(rng.uniform(0.1, 0.3)),
                        "rate": float(rng.uniform(0.005, 0.05))},
        }
        for task in ("acquisition", "winback"):
            if rng.random() < s_curves:
                curves[task] = {"family": "hill", "ceiling": float(rng.uniform(0.1, 0.4)),
                                "half_saturation": float(rng.uniform(20, 300)), "shape": float(rng.uniform(1.5, 3))}
        segs.append({"id": f"s{i}", "members": members, "margin": margin,
                     "arrivals": float(rng.uniform(0, 100)), "unreachable": float(rng.uniform(0, 0.2)),
                     "terminal": {"active": float(margin * rng.uniform(2, 6))},
                     "tasks": {t: {"curve": curves[t]} for t in tasks}})
        rough += 0.3 * margin * sum(members.values()) / 3
    data: dict[str, Any] = {"name": f"random_{seed}", "periods": periods, "discount": 0.02, "segments": segs}
    if budget == "per_period":
        data["budget"] = {"per_period": [tightness * rough * float(rng.uniform(0.7, 1.3)) for _ in range(periods)]}
    elif budget == "total":
        data["budget"] = {"total": tightness * rough * periods}
    return data
