"""The ``allocator`` command line.

Each command group lives in its own module with a ``register(subparsers)``
function; this module wires them together and maps errors to exit codes:

====  ==============================================================
code  meaning
====  ==============================================================
0     success
2     invalid input (file, schema, rule); nothing written
3     infeasible: the constraints named cannot hold together
4     no solver can handle the problem, or a solver failed
1     unexpected internal error (``--debug`` shows the traceback)
====  ==============================================================
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import AllocatorError, InfeasibleError, SpecError

EXIT_OK, EXIT_INTERNAL, EXIT_INVALID, EXIT_INFEASIBLE, EXIT_SOLVER = 0, 1, 2, 3, 4

COMMAND_MODULES = ["plan_cmd", "calibrate_cmd", "sweep_cmd", "analysis_cmd", "report_cmd", "compare_cmd",
                   "serve_cmd", "keys_cmd"]


def version() -> str:
    """The installed distribution's version; the package's own ``__version__`` in a bare source tree."""
    import importlib.metadata

    try:
        return importlib.metadata.version("allocator")
    except importlib.metadata.PackageNotFoundError:
        from .. import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="allocator",
        description="Allocate marketing spend across acquisition, retention and win-back with certified optimality.")
    parser.add_argument("--version", action="version", version=f"allocator {version()}",
                        help="print the installed version and exit")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    _show_progress(quiet=bool(getattr(args, "quiet", False)))
    try:
        return int(args.handler(args) or 0)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except InfeasibleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INFEASIBLE
    except AllocatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SOLVER
    except OSError as exc:
        print(f"error: cannot read or write a file: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last resort: no traceback for users unless asked
        if args.debug:
            raise
        print(f"internal error: {type(exc).__name__}: {exc}\n(run with --debug for the traceback and "
              f"please report it)", file=sys.stderr)
        return EXIT_INTERNAL


def _show_progress(quiet: bool) -> None:
    """Long solves report progress lines (round, bound, gap, elapsed) on stderr, never on stdout."""
    progress = logging.getLogger("allocator.progress")
    progress.propagate = False
    for h in list(progress.handlers):
        progress.removeHandler(h)
    if quiet:
        progress.setLevel(logging.WARNING)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    progress.addHandler(handler)
    progress.setLevel(logging.INFO)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
