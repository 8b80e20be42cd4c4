"""Shared bits of the scenario-analysis benchmarks (issue 5): random problems and the header."""

from __future__ import annotations

import platform
import sys

import numpy as np

from allocator.curves import get_family
from allocator.problem import CompiledProblem, CurveBlock


def header() -> None:
    import os

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores (shared; load average {load:.1f} at start), "
          f"Python {platform.python_version()}, numpy {np.__version__}")
    print("command: python " + " ".join(sys.argv))
    print()


def concave_problem(n: int, seed: int = 0, hill_share: float = 0.3, bounds: bool = True) -> CompiledProblem:
    """Random concave cells: exponential curves and (a share of) hill curves with shape 1."""
    rng = np.random.default_rng(seed)
    pool = rng.uniform(100, 10_000, n)
    value = rng.uniform(50, 2_000, n)
    is_hill = rng.random(n) < hill_share
    blocks = []
    ie, ih = np.flatnonzero(~is_hill), np.flatnonzero(is_hill)
    c = rng.uniform(0.02, 0.6, n)
    blocks.append(CurveBlock(get_family("exponential"), ie, {
        "ceiling": c[ie], "floor": rng.uniform(0, 0.5, len(ie)) * c[ie], "rate": rng.uniform(0.005, 0.5, len(ie))}))
    if len(ih):
        blocks.append(CurveBlock(get_family("hill"), ih, {
            "ceiling": c[ih], "floor": np.zeros(len(ih)), "half_saturation": rng.uniform(1, 100, len(ih)),
            "shape": np.ones(len(ih))}))
    lower = np.zeros(n)
    upper = np.full(n, np.inf)
    if bounds:
        k = rng.random(n)
        lower = np.where(k < 0.1, rng.uniform(0, 2, n) * pool, 0.0)
        upper = np.where(k > 0.8, lower + rng.uniform(0.5, 20, n) * pool, np.inf)
    return CompiledProblem(name="bench", segment=np.array([f"s{i}" for i in range(n)], dtype=object),
                           task=np.array(["acquisition", "retention", "winback"] * (n // 3) +
                                         ["acquisition"] * (n % 3), dtype=object),
                           pool=pool, value=value, lower=lower, upper=upper, current_spend=np.full(n, np.nan),
                           blocks=tuple(blocks), budget=1.0)
