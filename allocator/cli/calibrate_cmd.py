"""``allocator calibrate records|aggregates|judgment|transactions|cohorts``: write a model file.

Every subcommand validates its inputs (errors name the column and the row, exit
code 2, nothing written), calibrates, validates the model exactly as a scenario
referencing it would, and writes it atomically to ``--out`` (default
``models/<name>.yaml``). ``--add-to MODEL`` adds the new cells to an existing
model instead (e.g. a retention fit after an acquisition fit from the same data),
written to ``--out`` or, with ``--force``, back to MODEL.

An existing file is never replaced without ``--force``: model files are tracked
and referenced by scenarios, so a calibration run to look at a fit must not
silently change the plans of every scenario using the model.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import Problem, SpecError
from ..spec.reading import excerpt


def register(sub) -> None:
    p = sub.add_parser("calibrate", help="fit response curves and values from data or judgments; write a model file",
                       description="Calibrate a model file (curves, values, pools, provenance, diagnostics, "
                                   "samples) from individual records, aggregates, stated judgments, a transaction "
                                   "log or contract cohorts.")
    src = p.add_subparsers(dest="source", metavar="SOURCE")
    src.required = True

    r = src.add_parser("records", help="one row per prospect/customer: spend and outcome")
    r.add_argument("file", help="CSV with a header line")
    r.add_argument("--task", required=True, choices=["acquisition", "retention", "winback"])
    r.add_argument("--spend", required=True, metavar="COL", help="column: spend per member")
    r.add_argument("--outcome", required=True, metavar="COL", help="column: 0/1 outcome (or a duration, see below)")
    r.add_argument("--family", default="logistic_quadratic", choices=["exponential", "hill", "logistic_quadratic"])
    r.add_argument("--segment", metavar="COL", help="column of segment labels (one fit per segment)")
    r.add_argument("--segment-name", default="all", help="segment id when there is no segment column")
    r.add_argument("--where", metavar="COL=VALUE", help="fit only these rows (e.g. acquisition=1)")
    r.add_argument("--retained-if-at-least", type=float, metavar="D",
                   help="the outcome column is a duration; success = duration >= D")
    val = r.add_mutually_exclusive_group(required=True)
    val.add_argument("--value", type=float, help="value of one success")
    val.add_argument("--value-column", metavar="COL", help="column giving the value (e.g. profit)")
    r.add_argument("--value-stat", default="success_mean", choices=["success_mean", "success_minus_failure"],
                   help="value = mean of the column among successes, or its success-minus-failure difference")
    r.add_argument("--pool", type=float, help="members in the cell (default: rows in the segment)")
    r.add_argument("--fix", action="append", default=[], metavar="PARAM=V", help="hold a curve parameter (repeat)")
    r.add_argument("--bins", type=int, default=10, help="spend bins of the observed-vs-fitted table")
    r.add_argument("--folds", type=int, default=5, help="folds of the held-out log-loss (0: skip)")
    _common(r, bootstrap=True)
    r.set_defaults(handler=run_records, _parser=r)

    a = src.add_parser("aggregates", help="past campaigns: spend per member, response rate, group size")
    a.add_argument("file")
    a.add_argument("--task", required=True, choices=["acquisition", "retention", "winback"])
    a.add_argument("--spend", required=True, metavar="COL")
    a.add_argument("--size", required=True, metavar="COL", help="column: members in the group")
    k = a.add_mutually_exclusive_group(required=True)
    k.add_argument("--rate", metavar="COL", help="column: response rate in [0, 1]")
    k.add_argument("--successes", metavar="COL", help="column: members who responded")
    a.add_argument("--value", type=float, required=True, help="value of one success")
    a.add_argument("--family", default="exponential", choices=["exponential", "hill", "logistic_quadratic"])
    a.add_argument("--segment", metavar="COL")
    a.add_argument("--segment-name", default="all")
    a.add_argument("--pool", type=float, help="members in the cell (default: the largest group)")
    a.add_argument("--fix", action="append", default=[], metavar="PARAM=V")
    a.add_argument("--folds", type=int, default=5)
    _common(a, bootstrap=True)
    a.set_defaults(handler=run_aggregates, _parser=a)

    j = src.add_parser("judgment", help="stated judgments only (two-point / four-point closed forms)")
    j.add_argument("file", help="judgment YAML: segments with tasks {judgment, pool, value}")
    _common(j, bootstrap=False)
    j.set_defaults(handler=run_judgment, _parser=j)

    t = src.add_parser("transactions", help="a transaction log: value pyramid segments, pools, values; "
                                            "curves from judgments")
    t.add_argument("file", help="transaction log with a header line")
    t.add_argument("--judgments", required=True, help="judgment YAML naming the cells to plan")
    t.add_argument("--whitespace", action="store_true", help="columns separated by spaces (e.g. CDNOW)")
    t.add_argument("--customer", default="customer_id", metavar="COL")
    t.add_argument("--date", default="date", metavar="COL")
    t.add_argument("--amount", default="dollar_value", metavar="COL")
    t.add_argument("--date-format", default="%Y%m%d")
    t.add_argument("--period-months", type=int, default=3, help="length of a period (default: a quarter)")
    t.add_argument("--margin-rate", type=float, default=0.30, help="gross margin as a share of revenue")
    t.add_argument("--discount", type=float, default=0.10, help="annual discount rate")
    t.add_argument("--active-days", type=float, default=182, help="active: bought within this many days")
    t.add_argument("--lapsed-days", type=float, default=365, help="lapsed: no purchase for more than this")
    _common(t, bootstrap=True)
    t.set_defaults(handler=run_transactions, _parser=t)

    c = src.add_parser("cohorts", help="contract cohorts (recency, T, cohort): sBG retention; curves from judgments")
    c.add_argument("file")
    c.add_argument("--judgments", required=True)
    c.add_argument("--recency", default="recency", metavar="COL")
    c.add_argument("--periods", default="T", metavar="COL", help="column: periods observed")
    c.add_argument("--cohort", default="cohort", metavar="COL")
    c.add_argument("--discount", type=float, default=0.10, help="discount rate per period")
    _common(c, bootstrap=True)
    c.set_defaults(handler=run_cohorts, _parser=c)


def _common(p, bootstrap: bool) -> None:
    p.add_argument("--name", help="model name (default: from the judgments or the input file)")
    p.add_argument("--description")
    p.add_argument("--currency")
    p.add_argument("--out", metavar="PATH", help="model file to write (default: models/<name>.yaml); "
                                                 "an existing file is replaced only with --force")
    p.add_argument("--add-to", metavar="MODEL", help="add the cells to this existing model file; the result goes "
                                                     "to --out, or back to MODEL with --force")
    p.add_argument("--force", action="store_true", help="replace an existing model file")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    if bootstrap:
        p.add_argument("--bootstrap", type=int, default=200, help="bootstrap draws stored as samples (0: none)")
        p.add_argument("--seed", type=int, default=0)


# ---- handlers --------------------------------------------------------------------------------------

def _fixed(items: list[str]) -> dict[str, float]:
    out = {}
    for it in items:
        name, _, v = it.partition("=")
        try:
            value = float(v)
        except ValueError:
            raise SpecError(Problem("--fix", f"must look like PARAM=NUMBER; got {excerpt(it)}")) from None
        if not np.isfinite(value):
            raise SpecError(Problem(f"--fix {name.strip()}", f"must be a finite number; got {v.strip()}"))
        out[name.strip()] = value
    return out


MAX_BINS = 1000
MAX_FOLDS = 100
MAX_BOOTSTRAP = 100_000
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$")


def check_arguments(args) -> None:
    """Every numeric option within its range and the model name safe as a file name, before any work.

    Raises
    ------
    SpecError
        Listing every option out of range (exit code 2, nothing written).
    """
    problems = []
    ranges = {"bins": (1, MAX_BINS), "folds": (0, MAX_FOLDS), "bootstrap": (0, MAX_BOOTSTRAP),
              "seed": (0, 2**63 - 1), "period_months": (1, 1200)}
    for dest, (lo, hi) in ranges.items():
        v = getattr(args, dest, None)
        if v is not None and not lo <= v <= hi:
            problems.append(Problem(f"--{dest.replace('_', '-')}", f"must be a whole number from {lo:,} to "
                                                                   f"{hi:,}; got {v}"))
    if getattr(args, "folds", None) == 1:
        problems.append(Problem("--folds", "must be 0 (skip) or at least 2; got 1"))
    for dest in ("value", "pool", "retained_if_at_least", "margin_rate", "discount", "active_days", "lapsed_days"):
        v = getattr(args, dest, None)
        if v is not None and not np.isfinite(v):
            problems.append(Problem(f"--{dest.replace('_', '-')}", f"must be a finite number; got {v}"))
    if args.name is not None and not _NAME.match(args.name):
        problems.append(Problem("--name", f"must be a plain name (letters, digits, _ . -; not starting with . "
                                          f"or -; at most 100 characters), since it names models/<name>.yaml; "
                                          f"got {excerpt(args.name)}"))
    if problems:
        raise SpecError(problems)


def _model_name(name: str) -> str:
    """A model name from a file stem or a judgment file's ``name``, safe as models/<name>.yaml."""
    if _NAME.match(name):
        return name
    from ..io import safe_name

    return safe_name(name)


def _command(args) -> str:
    """The command line that reproduces this calibration (for the provenance)."""
    parts = ["allocator", "calibrate", args.source]
    for action in args._parser._actions:
        # --force says what may be replaced, not how the model is made: it is left out
        if action.dest in ("help", "force") or not hasattr(args, action.dest):
            continue
        v = getattr(args, action.dest)
        if not action.option_strings:
            parts.append(str(v))
        elif v != action.default and v is not None:
            opt = action.option_strings[-1]
            if isinstance(v, bool):
                parts.append(opt)
            elif isinstance(v, list):
                parts.extend(x for item in v for x in (opt, str(item)))
            else:
                parts.extend([opt, str(v)])
    return shlex.join(parts)


def _write(args, cells, name, method, inputs, settings, extra=None, segment_info=None, description=None,
           currency=None, samples_method="bootstrap") -> Path:
    from ..calibration.model_file import build_model, merge_models, provenance, write_model
    from ..spec.loader import read_mapping

    out = _target(args, name)
    prov = provenance(method, inputs, _command(args), settings)
    data = build_model(cells, name, args.description or description, args.currency or currency, prov,
                       segment_info, extra, getattr(args, "seed", None), samples_method)
    if args.add_to:
        data = merge_models(read_mapping(args.add_to), data)
    return write_model(data, out)


def _target(args, name: str) -> Path:
    """The model file this run may write; refuses to replace an existing file without ``--force``.

    Called before fitting too, so a refused run fails in a second rather than after the bootstrap.

    Raises
    ------
    SpecError
        When the target exists and ``--force`` is not given (exit code 2, nothing written).
    """
    if args.add_to and not Path(args.add_to).is_file():
        raise SpecError(Problem("--add-to", f"no such model file: {args.add_to}"))
    if args.out:
        out, field = Path(args.out), "--out"
    elif args.add_to:
        out, field = Path(args.add_to), "--add-to"
    else:
        out, field = Path("models") / f"{_model_name(name)}.yaml", "output"
    if out.exists() and not args.force:
        what = ("adding cells to it would replace it" if field == "--add-to"
                else "calibrate does not replace existing model files")
        raise SpecError(Problem(field, f"{out} already exists and {what}; pass --force to overwrite it, "
                                       f"or --out PATH to write a new file"))
    return out


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.4g}"


def _print_fit(cell) -> None:
    d = cell.diagnostics
    print(f"\n{cell.label}: {d['family']} fitted to {d['members']:g} members ({d['events']:g} successes)")
    for k, est in d["estimates"].items():
        ci = d["ci95"].get(k)
        boot = d.get("bootstrap", {}).get("percentile_ci95", {}).get(k)
        tag = "fixed" if k in d["fixed"] else (f"95% CI [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "no Wald CI")
        extra = f"; bootstrap [{_fmt(boot[0])}, {_fmt(boot[1])}]" if boot and k not in d["fixed"] else ""
        print(f"  {k:>16} = {_fmt(est):>10}  {tag}{extra}")
    if d.get("heldout_folds"):
        print(f"  held-out log-loss {d['heldout_logloss']:.4f} vs constant rate {d['baseline_logloss']:.4f} "
              f"({d['heldout_folds']} folds)")
    if d.get("family_aic"):
        print("  AIC by family: " + ", ".join(f"{k} {v:.1f}" for k, v in d["family_aic"].items()))
    if "peak_spend_per_member" in d:
        print(f"  peak at {d['peak_spend_per_member']:.4g} per member (spend is capped there)")
    print(f"  pool {cell.pool:g}, value of one success {_fmt(cell.value) if isinstance(cell.value, float) else cell.value}")
    bins = pd.DataFrame(d["bins"])
    print("  " + bins.to_string(index=False, float_format=lambda v: f"{v:.4g}").replace("\n", "\n  "))
    for w in d["warnings"]:
        print(f"  warning: {w}")


def _print_cells(cells) -> None:
    for c in cells:
        curve = ", ".join(f"{k}={_fmt(v)}" for k, v in c.curve.items() if k != "family")
        print(f"{c.label}: pool {c.pool:g}, value {c.value if not isinstance(c.value, float) else _fmt(c.value)}, "
              f"{c.curve['family']}({curve})")


def run_records(args) -> int:
    from ..calibration.model_file import input_record
    from ..calibration.records import RecordsSpec, fit_records
    from ..calibration.tables import read_table

    check_arguments(args)

    df = read_table(args.file)
    spec = RecordsSpec(task=args.task, spend=args.spend, outcome=args.outcome, family=args.family,
                       segment=args.segment, segment_name=args.segment_name,
                       retained_if_at_least=args.retained_if_at_least, where=args.where, value=args.value,
                       value_column=args.value_column, value_stat=args.value_stat, pool=args.pool,
                       fixed=_fixed(args.fix), folds=args.folds, bins=args.bins, bootstrap=args.bootstrap,
                       seed=args.seed)
    name = args.name or Path(args.file).stem
    _target(args, name)
    cells = fit_records(df, spec, source=args.file)
    path = _write(args, cells, name, f"maximum likelihood ({args.family}) from individual records",
                  [input_record(args.file, len(df))], {k: v for k, v in vars(spec).items()})
    _report_fits(args, cells, path)
    return 0


def _report_fits(args, cells, path) -> None:
    """Print each fitted cell and where the model went, unless --quiet."""
    if not args.quiet:
        for c in cells:
            _print_fit(c)
        print(f"\nwrote {path}")


def run_aggregates(args) -> int:
    from ..calibration.aggregates import AggregatesSpec, fit_aggregates
    from ..calibration.model_file import input_record
    from ..calibration.tables import read_table

    check_arguments(args)

    df = read_table(args.file)
    spec = AggregatesSpec(task=args.task, spend=args.spend, size=args.size, rate=args.rate,
                          successes=args.successes, value=args.value, family=args.family, segment=args.segment,
                          segment_name=args.segment_name, pool=args.pool, fixed=_fixed(args.fix),
                          folds=args.folds, bootstrap=args.bootstrap, seed=args.seed)
    name = args.name or Path(args.file).stem
    _target(args, name)
    cells = fit_aggregates(df, spec, source=args.file)
    path = _write(args, cells, name, f"maximum likelihood ({args.family}) from aggregates",
                  [input_record(args.file, len(df))], dict(vars(spec)), samples_method="parametric bootstrap")
    _report_fits(args, cells, path)
    return 0


def run_judgment(args) -> int:
    from ..calibration.assemble import cells_from_judgments
    from ..calibration.judgment import load_judgments
    from ..calibration.model_file import input_record

    check_arguments(args)

    jf = load_judgments(args.file)
    name = args.name or jf.name or Path(args.file).stem
    _target(args, name)
    cells, info = cells_from_judgments(jf)
    path = _write(args, cells, name, "stated judgments: two-point (Blattberg-Deighton) and four-point "
                                     "(Little ADBUDG) closed forms", [input_record(args.file)], {},
                  segment_info=info, description=jf.description, currency=jf.currency)
    if not args.quiet:
        _print_cells(cells)
        print(f"\nwrote {path}")
    return 0


def run_transactions(args) -> int:
    from ..calibration.assemble import cells_from_transactions
    from ..calibration.judgment import load_judgments
    from ..calibration.model_file import input_record
    from ..calibration.tables import read_table
    from ..calibration.transactions import (TransactionsSpec, customer_base, load_transactions, pyramid_summary,
                                            segment_economics)

    check_arguments(args)

    jf = load_judgments(args.judgments)
    _target(args, args.name or jf.name or Path(args.file).stem)
    spec = TransactionsSpec(customer=args.customer, date=args.date, amount=args.amount,
                            date_format=args.date_format, period_months=args.period_months,
                            margin_rate=args.margin_rate, discount=args.discount, active_days=args.active_days,
                            lapsed_days=args.lapsed_days, bootstrap=args.bootstrap, seed=args.seed)
    if not 0 <= spec.active_days < spec.lapsed_days:
        raise SpecError(Problem("--active-days", f"must be >= 0 and below --lapsed-days ({spec.lapsed_days:g}); "
                                                 f"got {spec.active_days:g}"))
    df = read_table(args.file, whitespace=args.whitespace)
    tx = load_transactions(df, spec, source=args.file)
    base = customer_base(tx, spec)
    table, draws = segment_economics(base)
    cells, info = cells_from_transactions(base, table, draws, jf)
    pyramid = pyramid_summary(base)
    for seg, row in pyramid.iterrows():
        if seg in info:
            info[seg].setdefault("description",
                                 f"value pyramid tier {seg}: {int(row['customers'])} customers with "
                                 f"{row['min_revenue']:.2f}-{row['max_revenue']:.2f} revenue over the window")
    extra = {"segments": {"definition": "value pyramid on revenue over the window (top 1%, next 4%, next 15%, "
                                        "rest); status by recency; stage by current vs potential value",
                          "period_months": spec.period_months, "periods": base.periods,
                          "window": [str(base.period_start[0].date()), str(base.end.date())],
                          "pyramid": pyramid.reset_index().to_dict(orient="records"),
                          "economics": table.reset_index().to_dict(orient="records")}}
    name = args.name or jf.name or Path(args.file).stem
    path = _write(args, cells, name, "transaction log -> value pyramid, pools, margins, repeat rates, "
                                     "lifetime values; curves from stated judgments",
                  [input_record(args.file, len(df)), input_record(args.judgments)],
                  dict(vars(spec)), extra, info, jf.description, jf.currency,
                  samples_method="bootstrap over customers")
    if not args.quiet:
        pd.set_option("display.width", 200)
        print(pyramid.to_string(float_format=lambda v: f"{v:,.4g}"))
        print()
        cols = ["customers", "retention_pool", "winback_pool", "margin", "retention", "reactivation",
                "retention_after_return", "retained_value", "winback_value", "new_customer_value"]
        print(table[cols].to_string(float_format=lambda v: f"{v:,.4g}"))
        print()
        _print_cells(cells)
        print(f"\nwrote {path}")
    return 0


def run_cohorts(args) -> int:
    from ..calibration.assemble import cells_from_cohorts
    from ..calibration.cohorts import fit_sbg, load_cohorts
    from ..calibration.judgment import load_judgments
    from ..calibration.model_file import input_record
    from ..calibration.tables import read_table

    check_arguments(args)

    jf = load_judgments(args.judgments)
    _target(args, args.name or jf.name or Path(args.file).stem)
    df = read_table(args.file)
    groups = load_cohorts(df, args.recency, args.periods, args.cohort, source=args.file)
    fits = {k: fit_sbg(r, t, k) for k, (r, t) in groups.items()}
    rng = np.random.default_rng(args.seed)
    cells, info = cells_from_cohorts(fits, jf, args.discount, args.bootstrap, rng)
    extra = {"cohorts": {k: {"alpha": f.alpha, "beta": f.beta, "ci95": {p: list(v) for p, v in f.ci.items()},
                             "loglik": f.loglik, "customers": f.customers, "alive": f.alive,
                             "table": f.table.to_dict(orient="records")} for k, f in fits.items()}}
    name = args.name or jf.name or Path(args.file).stem
    path = _write(args, cells, name, "contract cohorts -> shifted-beta-geometric retention (maximum likelihood), "
                                     "residual lifetime values; curves from stated judgments",
                  [input_record(args.file, len(df)), input_record(args.judgments)],
                  {"discount_per_period": args.discount, "bootstrap": args.bootstrap, "seed": args.seed},
                  extra, info, jf.description, jf.currency,
                  samples_method="asymptotic normal of (ln alpha, ln beta)")
    if not args.quiet:
        for k, f in fits.items():
            print(f"cohort {k}: alpha {f.alpha:.4g} [{f.ci['alpha'][0]:.4g}, {f.ci['alpha'][1]:.4g}], "
                  f"beta {f.beta:.4g} [{f.ci['beta'][0]:.4g}, {f.ci['beta'][1]:.4g}]")
            print("  " + f.table.to_string(index=False, float_format=lambda v: f"{v:.4g}").replace("\n", "\n  "))
        _print_cells(cells)
        print(f"\nwrote {path}")
    return 0


__all__ = ["register"]
