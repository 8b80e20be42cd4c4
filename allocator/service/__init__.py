"""The HTTP service: ``allocator serve`` (FastAPI on uvicorn) over a plan store (SQLite or PostgreSQL).

* :mod:`.app`: the routes; :func:`create_app` builds the application.
* :mod:`.requests`: JSON bodies into validated scenarios, within the limits of :mod:`.config`.
* :mod:`.operations`: the library calls behind each route (the same in requests and jobs).
* :mod:`.jobs`: long solves in their own processes, with progress and cancel (from any worker).
* :mod:`.downloads`: a stored plan's plan.xlsx and report.html, re-derived without a solve.
* :mod:`.schemas`: response models and the OpenAPI document's request schemas.
* :mod:`.store`: keys, plan versions and jobs (SQLAlchemy; Alembic migrations in the package).
* :mod:`.listener`: the listening socket the worker processes share, dealt out evenly.
* :mod:`.worker`: one server process, warmed up (the request path imported, long-lived objects frozen).
"""

from .config import Settings

__all__ = ["Settings", "create_app", "default_workers", "serve"]


def create_app(settings: Settings | None = None, store=None):
    """The FastAPI application (imported late: the library does not need FastAPI)."""
    from .app import create_app as _create

    return _create(settings, store)


def default_workers() -> int:
    """One server process per core this process may run on (the request path holds the GIL while it solves)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def serve(host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None, log_level: str = "info",
          workers: int | None = None) -> None:
    """Run the service with uvicorn until interrupted.

    Parameters
    ----------
    workers : int, optional
        Server processes sharing the port and the store (default :func:`default_workers`). One
        runs in this process; several run under uvicorn's supervisor, which restarts a worker that
        dies; they share one listening socket that deals connections out evenly
        (:class:`~allocator.service.listener.FairListener`). The store is migrated here once, before any worker starts (two migrations at once
        would race); each worker then fails only the jobs of server processes that are gone.
    """
    import os

    import uvicorn

    from .config import SUPERVISOR_ENV, WORKERS_ENV

    settings = settings or Settings.from_env()
    n = workers or default_workers()
    if n == 1:
        from .worker import warm_up

        app = create_app(settings)
        warm_up()
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
        return
    from .store import Store

    Store(settings.url).dispose()
    # workers are fresh processes (spawn): they read their settings back from the environment
    os.environ.update({**settings.to_env(), WORKERS_ENV: str(n), SUPERVISOR_ENV: str(os.getpid())})
    # what uvicorn.run does for workers, with the shared socket dealing connections out evenly
    from uvicorn.supervisors import Multiprocess

    from .listener import FairListener

    config = uvicorn.Config("allocator.service.worker:worker_app", factory=True, host=host, port=port, workers=n,
                            log_level=log_level, access_log=False)
    try:
        Multiprocess(config, sockets=[FairListener.of(config.bind_socket(), processes=n)]).run()
    except KeyboardInterrupt:
        pass
