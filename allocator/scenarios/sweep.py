"""Sweeps: solve every variant of a scenario set, in parallel, streaming results to disk.

Results are appended to ``results.jsonl`` (one line per finished variant, flushed to disk at once)
as variants finish, with every executor: chunks are submitted a few per worker at a time, so the
serial loop saves as it goes too, and memory stays bounded. One sweep at a time may write a folder
(:func:`~allocator.scenarios.execution.sweep_lock`); local worker processes end with the sweep,
however it ends. An interrupted sweep keeps those lines, and the next run with the same output
folder skips every variant whose line is there with the same fingerprint (a hash of the base
scenario and the variant's overrides), so changing a variant re-runs just that variant, and
changing the base re-runs everything. The first variant is validated before anything runs; the
others are validated by the workers, and an invalid one stops the sweep with an error naming it
(no tables are written; the variants already solved stay in the log). When all variants are done,
the two tables are written as one unit (:func:`allocator.io.write_unit`), text cells escaped
against formula injection:

* ``cells.csv``: one row per (variant, cell): scenario id, varied parameters, segment, task,
  spend, value, marginal return, activation cost, net value (value - spend - activation cost),
  bound (and current spend where given);
* ``summary.csv``: one row per variant: status, totals (net value, value, spend, activation cost),
  common marginal return, spend and value by task, the baseline's net value and the gain over it.

Rows are ordered by variant id, not by finishing order, so every executor gives the same tables.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from ..compile import compile_scenario
from ..errors import AllocatorError, InfeasibleError, Problem, SpecError
from ..io import atomic_write_texts, csv_text, default_out_dir, write_unit
from ..spec import Scenario, load_scenario, scenario_from_dict
from ..spec.models import TASKS
from .execution import ProgressBar, open_executor, sweep_lock
from .variants import Variant, base_mapping, expand_variants, param_value, variant_scenario

logger = logging.getLogger(__name__)

RESULTS_LOG = "results.jsonl"
CELL_COLUMNS = ["segment", "task", "spend", "value", "marginal_return", "activation_cost", "net_value", "bound"]
#: bumped when the figures a record holds change meaning, so older records in a results log are re-run
#: (2: net values net of activation costs; the baseline over all cells)
RECORD_VERSION = 2


# ---------------------------------------------------------------- the work done per variant (in workers)

def summarize(problem: Any, result: Any) -> tuple[str, dict[str, Any], dict[str, list]]:
    """Status, summary row and cell columns of a solved variant (numpy only: sweeps run thousands).

    Money comes from :func:`allocator.money.money_of` (``net_value = total_value - total_spend -
    activation_cost``, per cell and in total), and the baseline is the one of the plan summary
    (:mod:`allocator.analysis.baseline`: current spend where given, the lower bound elsewhere, over
    all cells, activation costs included), so a sweep row shows the figures of the variant's plan.
    """
    from ..analysis.baseline import baseline_money, baseline_spend, has_baseline
    from ..money import activation_per_cell, money_of
    from ..optimality import check_optimality

    s = result.spend
    rep = check_optimality(problem, s, rtol=max(1e-6, float(result.info.get("kkt_tolerance", 0.0))))
    ev = problem.expected_value(s)
    act = activation_per_cell(problem, s)
    money = money_of(problem, s)
    lam = rep.marginal_return
    summary: dict[str, Any] = {
        "net_value": money.net_value, "total_value": money.value, "total_spend": money.spend,
        "activation_cost": money.activation_cost,
        "budget": problem.budget, "marginal_return": lam, "budget_binds": bool(rep.budget_binds),
        # the plan summary's figure: the shared check's price of the total budget
        "budget_shadow_price": abs(rep.shadow_prices.get("budget.total", 0.0)) if rep.budget_binds else 0.0,
        "kkt_max_deviation": rep.kkt_max_deviation, "optimality_gap": result.optimality_gap, "solver": result.solver,
    }
    for task in TASKS:
        sel = problem.task == task
        summary[f"spend_{task}"] = float(s[sel].sum())
        summary[f"value_{task}"] = float(ev[sel].sum())
    cells = {"segment": [str(v) for v in problem.segment], "task": [str(v) for v in problem.task],
             "spend": s.tolist(), "value": ev.tolist(), "marginal_return": problem.marginal_return(s).tolist(),
             "activation_cost": act.tolist(), "net_value": (ev - s - act).tolist(),
             "bound": [str(v) for v in rep.bound]}
    if has_baseline(problem):
        base_net = baseline_money(problem).net_value
        summary["baseline_net_value"] = base_net
        summary["net_value_gained"] = money.net_value - base_net
        change = s - baseline_spend(problem)
        for col, k, sign in (("largest_increase", int(np.argmax(change)), 1), ("largest_cut", int(np.argmin(change)), -1)):
            summary[col] = (f"{problem.segment[k]}/{problem.task[k]} {change[k]:+,.0f}"
                            if sign * change[k] > 0 else "")
        cells["current_spend"] = problem.current_spend.tolist()
    # as in the plan summary: the solver's own termination (a time limit) first, then the check
    term = getattr(result, "termination", None)
    status = str(term) if term not in ("optimal", "", None) else ("optimal" if rep.ok else "suboptimal")
    return status, summary, cells


def solve_variant(vid: str, fp: str, base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Apply a variant's overrides to the base, validate, solve; a JSON-ready record.

    Never raises for a bad variant: ``status`` says ``invalid`` (with the problems), ``infeasible``
    or ``failed``.
    """
    from ..solvers import AUTO, SOLVERS, solve
    from ..spec.overrides import apply_overrides
    from ..spec.reading import check_plain

    t0 = time.perf_counter()
    rec: dict[str, Any] = {"id": vid, "fingerprint": fp}
    try:
        # the base was validated when loaded: only the overrides' own values need the text checks
        check_plain(dict(overrides), f"variant {vid}")
        sc = scenario_from_dict(apply_overrides(base, overrides), solver_names=(AUTO, *SOLVERS),
                                check_values=False)
    except SpecError as exc:
        return rec | {"status": "invalid", "message": "; ".join(str(p) for p in exc.problems), "summary": {},
                      "cells": None}
    try:
        problem = compile_scenario(sc)
        result = solve(problem, sc.solver.name, sc.solver.tolerance)
    except InfeasibleError as exc:
        return rec | {"status": "infeasible", "message": str(exc).splitlines()[0], "summary": {}, "cells": None}
    except AllocatorError as exc:
        return rec | {"status": "failed", "message": str(exc).splitlines()[0], "summary": {}, "cells": None}
    status, summary, cells = summarize(problem, result)
    summary["solve_seconds"] = time.perf_counter() - t0
    return rec | {"status": status, "message": "", "summary": summary, "cells": cells}


def solve_chunk(base: Mapping[str, Any], items: list[tuple[str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Solve several variants in one task (fewer round trips to the workers)."""
    return [solve_variant(vid, fp, base, ov) for vid, fp, ov in items]


# ---------------------------------------------------------------- the scenario set

class Sweep:
    """A base scenario and its variants.

    Parameters
    ----------
    scenario : path, Scenario or mapping
        The base; when ``grid`` and ``cases`` are both ``None`` its own ``variants`` are used.
    grid : mapping, optional
        Axis -> values, ``{from, to, steps[, spacing]}`` or ``{label: {path: value}}``.
    cases : list of mappings, optional
        ``[{name: ..., set: {path: value}}, ...]``.

    Examples
    --------
    >>> sw = Sweep({"name": "s", "budget": {"total": 100.0}, "segments": [{"id": "a", "tasks": {
    ...     "acquisition": {"pool": 100, "value": 50, "curve": {"family": "exponential",
    ...                     "ceiling": 0.5, "rate": 1.0}}}}]}, grid={"budget.total": [50.0, 100.0]})
    >>> [v.params for v in sw.variants]
    [{'budget.total': 50.0}, {'budget.total': 100.0}]
    """

    def __init__(self, scenario: str | Path | Scenario | Mapping[str, Any], grid: Mapping[str, Any] | None = None,
                 cases: list[Mapping[str, Any]] | None = None):
        if isinstance(scenario, (str, Path)):
            sc = load_scenario(scenario)
        elif isinstance(scenario, Scenario):
            sc = scenario
        else:
            sc = scenario_from_dict(scenario)
        self.base = sc
        spec = sc.variants.model_dump() if (grid is None and cases is None and sc.variants) else \
            {"grid": dict(grid or {}), "cases": [dict(c) for c in (cases or [])]}
        self.variants: list[Variant] = expand_variants(spec)
        if not self.variants:
            raise SpecError(Problem("variants", "the scenario declares no variants (add `variants: {grid: ...}` "
                                                "or `variants: {cases: [...]}`)"), source=sc.name)

    @property
    def name(self) -> str:
        return self.base.name

    @property
    def param_columns(self) -> list[str]:
        cols: list[str] = []
        for v in self.variants:
            cols.extend(k for k in v.params if k not in cols)
        return cols

    def check(self, variant: Variant) -> Scenario:
        """The validated scenario of one variant (a SpecError names the variant)."""
        from ..solvers import AUTO, SOLVERS

        return variant_scenario(base_mapping(self.base), variant, solver_names=(AUTO, *SOLVERS))

    def scenarios(self) -> list[tuple[Variant, Scenario]]:
        """Every variant validated (in this process); all invalid variants reported together."""
        out, problems = [], []
        for v in self.variants:
            try:
                out.append((v, self.check(v)))
            except SpecError as exc:
                problems.extend(Problem(f"{exc.source}: {p.field}".rstrip(": "), p.message, p.cell)
                                for p in exc.problems)
        if problems:
            raise SpecError(problems[:20], source=f"sweep '{self.name}'")
        return out

    def run(self, out: str | Path | None = None, **kw: Any) -> "SweepResult":
        """Shorthand for :func:`run_sweep` (``sweep.run("out/x", executor="serial")``)."""
        return run_sweep(self, out, **kw)


@dataclass
class SweepResult:
    """The tables of a finished sweep (also written to ``files``)."""

    cells: pd.DataFrame
    summary: pd.DataFrame
    files: list[Path] = field(default_factory=list)
    ran: int = 0
    reused: int = 0
    seconds: float = 0.0
    executor: str = ""

    def __repr__(self) -> str:
        ok = int((self.summary["status"] == "optimal").sum()) if len(self.summary) else 0
        return (f"SweepResult({len(self.summary)} variants, {ok} optimal, ran {self.ran}, reused {self.reused}, "
                f"{self.seconds:.2f} s on {self.executor})")


# ---------------------------------------------------------------- streaming log

def read_log(path: Path) -> dict[str, dict[str, Any]]:
    """Records in a results log by variant id; a torn last line (an interrupted write) is dropped."""
    out: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return out
    with open(path, "rb") as fh:
        for raw in fh:
            # a line that is not UTF-8 JSON (torn, or damaged on disk) is dropped: that variant re-runs
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                continue
            if isinstance(rec, dict) and "id" in rec and "fingerprint" in rec:
                out[rec["id"]] = rec
    return out


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def run_sweep(sweep: Sweep | str | Path, out: str | Path | None = None, executor: str | Executor | None = "local",
              workers: int | None = None, progress: bool | Callable[[int, int], None] | None = None,
              restart: bool = False, chunksize: int | None = None) -> SweepResult:
    """Solve every variant and write ``cells.csv`` and ``summary.csv`` into ``out``.

    Parameters
    ----------
    sweep : Sweep or path
    out : path, optional
        Output folder (default ``out/<name>-sweep``); holds the streaming log ``results.jsonl``.
    executor : str or concurrent.futures.Executor
        ``local`` (processes), ``threads``, ``serial``, ``dask://host:port``, or an executor instance.
    workers : int, optional
        Processes or threads (default: the number of cores).
    progress : bool or callable, optional
        Draw a progress bar on stderr (default: when stderr is a terminal), or call
        ``progress(done, total)`` after each finished chunk.
    restart : bool
        Ignore results already in the log (default: resume from them).
    chunksize : int, optional
        Variants per task (default: about four tasks per worker, at most 25 variants each).

    Returns
    -------
    SweepResult
    """
    if not isinstance(sweep, Sweep):
        sweep = Sweep(sweep)
    t0 = time.perf_counter()
    base = base_mapping(sweep.base)
    # the first variant is validated here, so a broken base or override path fails before anything runs;
    # the others are validated by the workers, in parallel
    sweep.check(sweep.variants[0])
    out_dir = Path(out) if out is not None else default_out_dir(sweep.name, "-sweep")
    out_dir.mkdir(parents=True, exist_ok=True)
    with sweep_lock(out_dir):
        return _run_locked(sweep, out_dir, base, t0, executor, workers, progress, restart, chunksize)


def _run_locked(sweep: Sweep, out_dir: Path, base: dict[str, Any], t0: float, executor: str | Executor | None,
                workers: int | None, progress: bool | Callable[[int, int], None] | None, restart: bool,
                chunksize: int | None) -> SweepResult:
    """:func:`run_sweep` once the output folder is locked."""
    log_path = out_dir / RESULTS_LOG
    base_hash = fingerprint_of(base, f"v{RECORD_VERSION}:")
    prints = {v.id: fingerprint_of(v.overrides, base_hash) for v in sweep.variants}
    done: dict[str, dict[str, Any]] = {}
    if not restart:
        done = {k: r for k, r in read_log(log_path).items() if prints.get(k) == r.get("fingerprint")}
    # rewrite the log with only the records kept, so a torn line never meets a new one
    atomic_write_texts({log_path: "".join(json.dumps(done[v.id]) + "\n" for v in sweep.variants if v.id in done)})
    todo = [(v.id, prints[v.id], v.overrides) for v in sweep.variants if v.id not in done]
    reused = len(done)
    total = len(sweep.variants)
    handle = None
    bar: ProgressBar | None = None
    callback = progress if callable(progress) else None
    if progress is None:
        progress = sys.stderr.isatty()
    invalid = [r for r in done.values() if r["status"] == "invalid"]
    if todo and not invalid:
        handle = open_executor(executor, workers)
        size = chunksize or max(1, min(25, math.ceil(len(todo) / (4 * handle.workers))))
        if progress is True:
            bar = ProgressBar(total, already=reused)
            bar.update(reused)
        logger.info("sweep %s: %d variants to run (%d reused) on %s", sweep.name, len(todo), reused,
                    handle.description)
        cancel = False
        futures: set = set()
        try:
            chunks = iter(_chunks(todo, size))
            # a few chunks in flight per worker, the next submitted as one finishes: every finished
            # chunk is in the log at once (the serial loop too), and memory stays bounded
            in_flight = 2 * handle.workers
            with open(log_path, "a", encoding="utf-8") as fh:
                while True:
                    for chunk in itertools.islice(chunks, max(0, in_flight - len(futures))):
                        futures.add(handle.executor.submit(solve_chunk, base, chunk))
                    if not futures:
                        break
                    finished, futures = wait(futures, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        for rec in fut.result():
                            fh.write(json.dumps(rec) + "\n")
                            done[rec["id"]] = rec
                            if rec["status"] == "invalid":
                                invalid.append(rec)
                        fh.flush()
                        os.fsync(fh.fileno())
                        if bar is not None:
                            bar.update(len(done))
                        if callback is not None:
                            callback(len(done), total)
                    if invalid:
                        break
        except BaseException:
            cancel = True
            raise
        finally:
            if invalid or cancel:
                for f in futures:
                    f.cancel()
            if bar is not None:
                bar.close()
            handle.shutdown(cancel=cancel or bool(invalid))
    if invalid:
        raise SpecError([Problem(f"variant {r['id']} ({_label(sweep, r['id'])})", r["message"]) for r in invalid[:20]],
                        source=f"sweep '{sweep.name}' (no tables written; fix the variants and run again)")
    cells, summary = tables(sweep, sweep.variants, done)
    files = write_unit(out_dir, {"cells.csv": csv_text(cells, float_format="%.12g"),
                                 "summary.csv": csv_text(summary, float_format="%.12g")})
    return SweepResult(cells=cells, summary=summary, files=[log_path, *files], ran=len(todo), reused=reused,
                       seconds=time.perf_counter() - t0, executor=handle.description if handle else "none (all reused)")


def _label(sweep: Sweep, vid: str) -> str:
    v = next(v for v in sweep.variants if v.id == vid)
    return ", ".join(f"{k}={param_value(x)}" for k, x in v.params.items() if x is not None)


def fingerprint_of(data: Any, salt: str = "") -> str:
    """A stable hash of plain data (the base scenario, a variant's overrides)."""
    text = salt + json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tables(sweep: Sweep, variants: list[Variant], records: Mapping[str, dict[str, Any]]
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The long cell table and the per-variant summary, in variant order."""
    pcols = sweep.param_columns
    rows = []
    cols: dict[str, list] = {}
    for v in variants:
        rec = records[v.id]
        params = {c: param_value(v.params.get(c)) for c in pcols}
        rows.append({"scenario_id": v.id, **params, "status": rec["status"], "message": rec.get("message", ""),
                     # timings stay in the log: the tables depend only on the inputs
                     **{k: val for k, val in rec.get("summary", {}).items() if k != "solve_seconds"}})
        cells = rec.get("cells")
        if cells:
            m = len(cells["segment"])
            # columns built as lists and turned into one frame at the end (thousands of variants)
            for c, val in (("scenario_id", v.id), *params.items()):
                cols.setdefault(c, []).extend([val] * m)
            for c in CELL_COLUMNS:
                cols.setdefault(c, []).extend(cells[c])
            if "current_spend" in cells or "current_spend" in cols:
                # a variant may add or drop current spend: missing values are NaN
                cols.setdefault("current_spend", [np.nan] * (len(cols["segment"]) - m)).extend(
                    cells.get("current_spend", [np.nan] * m))
    summary = pd.DataFrame(rows)
    cells = pd.DataFrame(cols) if cols else pd.DataFrame(columns=["scenario_id", *pcols, *CELL_COLUMNS])
    return cells, summary
