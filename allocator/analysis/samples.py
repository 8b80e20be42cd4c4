"""Parameter samples: joint draws of every cell's curve parameters, value and pool.

Samples come from a model file (``samples:`` written by calibration, carried into the scenario by
the loader) or from distributions the scenario declares (``uncertainty.distributions``). A
sample k gives every cell its own curve parameters, value and pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import Problem, SpecError
from ..problem import CompiledProblem

DEFAULT_SAMPLES = 1000
MAX_SAMPLES = 100_000
"""Most parameter draws (``--samples``, ``uncertainty.samples``)."""
MAX_SAMPLE_VALUES = 20_000_000
"""Most draws x cells: each costs several numbers in memory and in the risk optimization."""


def check_seed(seed: object, field: str) -> list[Problem]:
    """A random seed numpy accepts: a whole number in [0, 2**63)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        return [Problem(field, f"must be a whole number between 0 and 2**63 - 1; got {seed!r}")]
    return []


def _check_count(count: int, cells: int, field: str) -> None:
    if count > MAX_SAMPLES:
        raise SpecError(Problem(field, f"must be at most {MAX_SAMPLES:,} draws; got {count:,}"))
    if count * cells > MAX_SAMPLE_VALUES:
        raise SpecError(Problem(field, f"{count:,} draws of {cells:,} cells exceed {MAX_SAMPLE_VALUES:,} "
                                       f"values; ask for at most {MAX_SAMPLE_VALUES // max(cells, 1):,} draws"))

@dataclass
class ParameterSamples:
    """Joint draws of every cell's parameters.

    Attributes
    ----------
    value, pool : ndarray, shape (S, n)
    params : list of dict
        Per problem block (same order as ``problem.blocks``): parameter name -> array of shape
        (S, cells in block); table curves keep their nominal 2-D arrays (not sampled).
    method : str
    """

    value: np.ndarray
    pool: np.ndarray
    params: list[dict[str, np.ndarray]]
    method: str = "nominal"
    fixed: list[set[str]] = field(default_factory=list)  # per block: parameters kept nominal (table curves)

    @property
    def count(self) -> int:
        return self.value.shape[0]

    def rows(self, k: np.ndarray) -> "ParameterSamples":
        """The draws ``k`` only."""
        return ParameterSamples(self.value[k], self.pool[k],
                                [{nm: (a if nm in fx else a[k]) for nm, a in P.items()}
                                 for P, fx in zip(self.params, self.fixed)], self.method, self.fixed)


def nominal_samples(problem: CompiledProblem, count: int) -> ParameterSamples:
    """``count`` copies of the nominal parameters (the starting point for drawing)."""
    params, fixed = [], []
    for b in problem.blocks:
        params.append({nm: (np.tile(a, (count, 1)) if a.ndim == 1 else a) for nm, a in b.params.items()})
        fixed.append({nm for nm, a in b.params.items() if a.ndim != 1})
    return ParameterSamples(np.tile(problem.value, (count, 1)), np.tile(problem.pool, (count, 1)), params,
                            fixed=fixed)


def _locate(problem: CompiledProblem) -> tuple[dict[tuple[str, str], int], np.ndarray, np.ndarray]:
    """(segment, task) -> cell; cell -> block number; cell -> position inside its block."""
    where = {(str(s), str(t)): i for i, (s, t) in enumerate(zip(problem.segment, problem.task))}
    blk = np.empty(problem.n, int)
    pos = np.empty(problem.n, int)
    for j, b in enumerate(problem.blocks):
        blk[b.index] = j
        pos[b.index] = np.arange(len(b.index))
    return where, blk, pos


def _check_draws(problem: CompiledProblem, out: ParameterSamples, source: str) -> None:
    problems = []
    for arr, name, lo in ((out.value, "value", 0.0), (out.pool, "pool", 0.0)):
        bad = ~np.isfinite(arr) | (arr < lo) | ((arr <= 0) if name == "pool" else False)
        for i in np.flatnonzero(bad.any(axis=0))[:10]:
            k = int(np.flatnonzero(bad[:, i])[0])
            problems.append(Problem(f"samples.{name}", f"draw {k} is {arr[k, i]:g}; must be "
                                    f"{'> 0' if name == 'pool' else '>= 0'} and finite", problem.label(i)))
    for b, P in zip(problem.blocks, out.params):
        for prm in b.family.params:
            a = P[prm.name]
            bad = ~np.isfinite(a) | (a < prm.lower) | (a > prm.upper)
            for j in np.flatnonzero(bad.any(axis=0))[:10]:
                k = int(np.flatnonzero(bad[:, j])[0])
                problems.append(Problem(f"samples.curve.{prm.name}", f"draw {k} is {a[k, j]:g}; must be in "
                                        f"[{prm.lower:g}, {prm.upper:g}]", problem.label(int(b.index[j]))))
    if problems:
        raise SpecError(problems, source=source)


def samples_from_spec(problem: CompiledProblem, spec: Any) -> ParameterSamples:
    """Parameter draws from a ``samples:`` block (:class:`~allocator.spec.models.SamplesSpec`).

    Cells without draws keep their nominal parameters in every sample.

    Raises
    ------
    SpecError
        Naming the cell and field when a cell is unknown, a parameter does not belong to the cell's
        curve family, a list has the wrong length, or a draw is out of range.
    """
    count = spec.count
    out = nominal_samples(problem, count)
    out.method = spec.method
    where, blk, pos = _locate(problem)
    problems = []
    for cs in spec.cells:
        name = f"({cs.segment}, {cs.task})"
        i = where.get((cs.segment, cs.task))
        if i is None:
            problems.append(Problem("samples.cells", "no such cell in the scenario", name))
            continue
        fam = problem.blocks[blk[i]].family
        lists = {f"curve.{k}": v for k, v in cs.curve.items()}
        if cs.value is not None:
            lists["value"] = cs.value
        if cs.pool is not None:
            lists["pool"] = cs.pool
        for key, draws in lists.items():
            if len(draws) != count:
                problems.append(Problem(f"samples.{key}", f"has {len(draws)} draws; samples.count is {count}", name))
                continue
            arr = np.asarray(draws, float)
            if key == "value":
                out.value[:, i] = arr
            elif key == "pool":
                out.pool[:, i] = arr
            else:
                prm = key.split(".", 1)[1]
                P = out.params[blk[i]]
                if prm not in P or prm in out.fixed[blk[i]]:
                    known = ", ".join(p.name for p in fam.params) or "none"
                    problems.append(Problem(f"samples.{key}", f"is not a parameter of family '{fam.name}' "
                                                              f"(sampled parameters: {known})", name))
                    continue
                P[prm][:, pos[i]] = arr
    if problems:
        raise SpecError(problems, source="samples")
    _check_draws(problem, out, "samples")
    return out


def samples_from_distributions(problem: CompiledProblem, distributions: list, count: int, seed: int | None = None,
                               base: ParameterSamples | None = None) -> ParameterSamples:
    """Draw parameters from declared distributions (:class:`~allocator.spec.models.DistributionSpec`).

    ``lognormal`` multiplies the nominal value by ``exp(N(0, sigma))``; ``normal`` adds ``N(0, sd)``;
    ``uniform`` draws ``U(low, high)``. Draws of curve parameters are clipped to the family's
    allowed range (e.g. a ceiling stays <= 1). ``shared: true`` uses one draw for all matching cells.
    """
    out = base if base is not None else nominal_samples(problem, count)
    if base is None:
        out.method = "distributions"
    rng = np.random.default_rng(seed)
    where, blk, pos = _locate(problem)
    problems = []
    for k, d in enumerate(distributions):
        tag = f"uncertainty.distributions[{k}]"
        need = {"lognormal": ("sigma",), "normal": ("sd",), "uniform": ("low", "high")}[d.dist]
        missing = [f for f in need if getattr(d, f) is None]
        if missing:
            problems.append(Problem(tag, f"dist {d.dist} needs {', '.join(missing)}"))
            continue
        if d.dist == "uniform" and d.high < d.low:
            problems.append(Problem(tag, f"high must be >= low ({d.low:g}); got {d.high:g}"))
            continue
        cells = [i for (s, t), i in where.items() if d.segment in ("*", s) and d.task in ("*", t)]
        if d.param.startswith("curve."):
            prm = d.param.split(".", 1)[1]
            cells = [i for i in cells if prm in out.params[blk[i]] and prm not in out.fixed[blk[i]]]
        if not cells:
            problems.append(Problem(tag, f"matches no cell with parameter {d.param} "
                                         f"(segment {d.segment}, task {d.task})"))
            continue
        z = rng.standard_normal(count if d.shared else (count, len(cells)))
        u = rng.random(count if d.shared else (count, len(cells)))
        if d.shared:
            z = np.repeat(z[:, None], len(cells), axis=1)
            u = np.repeat(u[:, None], len(cells), axis=1)
        cells_a = np.array(cells)
        if d.param == "value":
            cur = out.value[:, cells_a]
        elif d.param == "pool":
            cur = out.pool[:, cells_a]
        else:
            cur = np.column_stack([out.params[blk[i]][prm][:, pos[i]] for i in cells])
        if d.dist == "lognormal":
            new = cur * np.exp(d.sigma * z)
        elif d.dist == "normal":
            new = cur + d.sd * z
        else:
            new = d.low + (d.high - d.low) * u
        if d.param == "value":
            out.value[:, cells_a] = np.maximum(new, 0.0)
        elif d.param == "pool":
            out.pool[:, cells_a] = np.maximum(new, 1e-9)
        else:
            for c, i in enumerate(cells):
                fam_param = next(p for p in problem.blocks[blk[i]].family.params if p.name == prm)
                out.params[blk[i]][prm][:, pos[i]] = np.clip(new[:, c], fam_param.lower, fam_param.upper)
    if problems:
        raise SpecError(problems, source="uncertainty")
    _check_draws(problem, out, "uncertainty")
    return out


def draw_samples(scenario: Any, count: int | None = None, seed: int | None = None) -> ParameterSamples:
    """The scenario's parameter samples: the model's draws and/or its declared distributions.

    ``count`` below the model's number of draws keeps its first ``count`` draws.

    Raises
    ------
    SpecError
        When the scenario has neither samples nor distributions, or ``count`` exceeds the model's draws.
    """
    from ..compile import compile_scenario
    from .common import as_scenario

    sc = as_scenario(scenario)
    problem = compile_scenario(sc)
    unc = sc.uncertainty
    chosen = seed if seed is not None else (unc.seed if unc else None)
    if chosen is not None and check_seed(chosen, "seed"):
        raise SpecError(check_seed(chosen, "--seed" if seed is not None else "uncertainty.seed"), source=sc.name)
    dists = list(unc.distributions) if unc else []
    if sc.samples is None and not dists:
        raise SpecError(Problem("uncertainty", "the scenario has no parameter samples (from its model file) and "
                                               "declares no `uncertainty.distributions`"), source=sc.name)
    if sc.samples is not None:
        base = samples_from_spec(problem, sc.samples)
        if count is not None and count > base.count:
            raise SpecError(Problem("samples", f"the model carries {base.count} draws; cannot use {count} "
                                               f"(ask for at most {base.count})"), source=sc.name)
        if count is not None and count < base.count:
            # the model's draws are independent (bootstrap or posterior), so the first `count` of
            # them are a sample of that size; taking them in order keeps runs reproducible
            total = base.count
            base = base.rows(np.arange(count))
            base.method += f" (first {count} of {total} draws)"
        if dists:
            base.method += " + distributions"
            return samples_from_distributions(problem, dists, base.count, seed if seed is not None else unc.seed, base)
        return base
    n = count or unc.samples or DEFAULT_SAMPLES
    _check_count(n, problem.n, "--samples" if count else "uncertainty.samples")
    return samples_from_distributions(problem, dists, n, seed if seed is not None else unc.seed)

