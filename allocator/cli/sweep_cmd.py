"""``allocator sweep``: run every variant of a scenario set."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from ..scenarios import Sweep, run_sweep
from ..scenarios.execution import EXECUTOR_HELP
from ..scenarios.sweep import RESULTS_LOG, read_log


def register(sub) -> None:
    p = sub.add_parser("sweep", help="solve every variant of a scenario set; write cells.csv and summary.csv",
                       description="Solve every variant declared under `variants:` in FILE (which may "
                                   "`extends:` a base scenario) and write DIR/cells.csv (one row per variant "
                                   "and cell) and DIR/summary.csv (one row per variant). Finished variants "
                                   f"stream to DIR/{RESULTS_LOG}; re-running the command resumes.")
    p.add_argument("scenario", help="scenario file with `variants:`")
    p.add_argument("--out", metavar="DIR", help="output folder (default: out/<name>-sweep/)")
    p.add_argument("--executor", default="local", help=EXECUTOR_HELP)
    p.add_argument("--workers", type=int, help="local processes or threads (default: number of cores)")
    p.add_argument("--chunksize", type=int, help="variants per task (default: automatic)")
    p.add_argument("--restart", action="store_true", help="ignore finished variants in the output folder")
    p.add_argument("--xlsx", action="store_true",
                   help="also write DIR/sweep.xlsx (Summary and Cells sheets: summary.csv and cells.csv)")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="draw the progress bar even when stderr is not a terminal")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(handler=run)


def _write_workbook(res, out: Path, sweep: Sweep) -> list[Path]:
    """``DIR/sweep.xlsx`` from the sweep's tables, swapped in as one unit with the CSVs it copies.

    :func:`run_sweep` has written cells.csv and summary.csv already; they are written again here,
    byte for byte as it wrote them, in the same :func:`write_unit` swap as the workbook, so the
    folder never ends with a workbook and tables from different runs.
    """
    from ..io import csv_text, write_unit
    from ..workbook import sweep_workbook

    return write_unit(out, {"cells.csv": csv_text(res.cells, float_format="%.12g"),
                            "summary.csv": csv_text(res.summary, float_format="%.12g"),
                            "sweep.xlsx": sweep_workbook(res, sweep.base.currency)})


def run(args) -> int:
    from ..dynamic.spec import is_dynamic_file

    if is_dynamic_file(args.scenario):   # a multi-period scenario (issue 9): solved serially
        from ..dynamic.cli import run_sweep as run_dynamic_sweep

        return run_dynamic_sweep(args)
    from ..errors import Problem, SpecError

    from ..io import default_out_dir
    from ..scenarios.execution import MAX_WORKERS
    from ..scenarios.variants import MAX_VARIANTS

    for name, most in (("workers", MAX_WORKERS), ("chunksize", MAX_VARIANTS)):
        v = getattr(args, name)
        if v is not None and not 1 <= v <= most:
            raise SpecError(Problem(f"--{name}", f"must be from 1 to {most:,}; got {v}"))
    sweep = Sweep(args.scenario)
    out = Path(args.out) if args.out else default_out_dir(sweep.name, "-sweep")
    try:
        res = run_sweep(sweep, out, executor=args.executor, workers=args.workers, progress=args.progress,
                        restart=args.restart, chunksize=args.chunksize)
    except KeyboardInterrupt:
        saved = len(read_log(out / RESULTS_LOG))
        print(f"interrupted: {saved} of {len(sweep.variants)} variants are saved in {out / RESULTS_LOG}; "
              f"run the same command again to resume", file=sys.stderr)
        return 130
    if getattr(args, "xlsx", False):
        res.files = [*res.files, *(p for p in _write_workbook(res, out, sweep) if p not in res.files)]
    if not args.quiet:
        s = res.summary
        counts = ", ".join(f"{n} {k}" for k, n in s["status"].value_counts().items())
        print(f"sweep '{sweep.name}': {len(s)} variants ({counts}); ran {res.ran}, reused {res.reused}, "
              f"{res.seconds:.2f} s on {res.executor}")
        cols = ["scenario_id", *sweep.param_columns, "status"] + [c for c in (
            "net_value", "total_spend", "marginal_return", "net_value_gained") if c in s]
        view = s[cols].head(30)
        with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format",
                               "{:,.4g}".format):
            print(view.to_string(index=False))
        if len(s) > 30:
            print(f"... {len(s) - 30} more rows in summary.csv")
        bad = s[s["status"] != "optimal"]
        for r in bad.head(5).itertuples():
            print(f"{r.scenario_id}: {r.status}: {r.message}", file=sys.stderr)
        print("wrote " + ", ".join(str(f) for f in res.files))
    return 0
