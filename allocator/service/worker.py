"""One server process: the application built, the request path imported, long-lived objects frozen.

``allocator serve --workers N`` runs :func:`worker_app` in each of N processes (uvicorn calls the
factory there); a single process calls :func:`warm_up` on the app it builds.
"""

from __future__ import annotations

import gc
import importlib

from fastapi import FastAPI

from .app import create_app
from .config import Settings

PRELOAD = ("allocator.compile", "allocator.plan", "allocator.solvers", "allocator.cli.plan_cmd",
           "allocator.workbook.plan_book", "pandas")
"""What a direct plan imports: loaded before the first request instead of by it."""


def warm_up() -> None:
    """Import the request path, then put every object alive so far out of the garbage collector's reach.

    The library's modules are hundreds of thousands of objects that live as long as the process; a
    full collection walked all of them, in the middle of whichever request triggered it.
    """
    for name in PRELOAD:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()


def worker_app() -> FastAPI:
    """One worker process of ``allocator serve --workers N`` (uvicorn calls this factory in each).

    The worker ends with the supervisor, even when that is killed (``PR_SET_PDEATHSIG``): an
    orphaned worker would keep serving, and keep its jobs running, beside a restarted server.
    The settings' ``job_processes`` are shared among the workers, at least one each.
    """
    import math
    import os

    from ..scenarios.execution import die_with_parent
    from .config import SUPERVISOR_ENV, WORKERS_ENV

    if os.environ.get(SUPERVISOR_ENV, "").isdigit():
        die_with_parent(int(os.environ[SUPERVISOR_ENV]))
    settings = Settings.from_env()
    workers = max(1, int(os.environ.get(WORKERS_ENV, "1") or 1))
    app = create_app(settings.with_(job_processes=math.ceil(settings.job_processes / workers)))
    warm_up()
    return app
