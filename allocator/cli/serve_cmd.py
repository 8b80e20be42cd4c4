"""``allocator serve``: the HTTP API (FastAPI on uvicorn) over the plan store.

The store is a SQLite file under ``--data-dir`` (``$ALLOCATOR_DATA_DIR``, default ``./.allocator``)
unless ``--database-url`` (``$ALLOCATOR_DATABASE_URL``) names another, e.g. PostgreSQL. Limits come
from ``ALLOCATOR_MAX_*`` variables (:mod:`allocator.service.config`).

``--workers N`` runs N server processes on the port (default: one per core). Solving a plan is
CPU work in Python, which one process does on one core at a time (the GIL), so a worker per core
is what uses the machine; more workers than cores add memory, not speed. Jobs computed at once
(``ALLOCATOR_JOB_PROCESSES``) are shared among the workers.
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the HTTP API (plans, analyses, stored versions)",
                       description="Serve the HTTP API on HOST:PORT until interrupted. Create keys with "
                                   "`allocator keys create --workspace W`.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--data-dir", help="folder of the SQLite store (default $ALLOCATOR_DATA_DIR or ./.allocator)")
    p.add_argument("--database-url", help="SQLAlchemy URL of the store (default $ALLOCATOR_DATABASE_URL, "
                                          "else SQLite in the data folder)")
    p.add_argument("--workers", type=_positive, default=None,
                   help="server processes sharing the port and the store (default: one per core)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(handler=run_serve)


def _positive(text: str) -> int:
    import argparse

    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 64; got {text!r}")
    return n


def run_serve(args) -> int:
    from pathlib import Path

    from ..service import Settings, serve

    settings = Settings.from_env(data_dir=Path(args.data_dir) if args.data_dir else None,
                                 database_url=args.database_url)
    serve(args.host, args.port, settings, log_level=args.log_level, workers=args.workers)
    return 0
