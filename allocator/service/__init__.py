"""The HTTP service: ``allocator serve`` (FastAPI on uvicorn) over a plan store (SQLite or PostgreSQL).

* :mod:`.app`: the routes; :func:`create_app` builds the application.
* :mod:`.requests`: JSON bodies into validated scenarios, within the limits of :mod:`.config`.
* :mod:`.operations`: the library calls behind each route (the same in requests and jobs).
* :mod:`.jobs`: long solves in their own processes, with progress and cancel.
* :mod:`.store`: keys, plan versions and jobs (SQLAlchemy; Alembic migrations in the package).
"""

from .config import Settings

__all__ = ["Settings", "create_app", "serve"]


def create_app(settings: Settings | None = None, store=None):
    """The FastAPI application (imported late: the library does not need FastAPI)."""
    from .app import create_app as _create

    return _create(settings, store)


def serve(host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None, log_level: str = "info") -> None:
    """Run the service with uvicorn until interrupted (one process; jobs run in child processes)."""
    import uvicorn

    uvicorn.run(create_app(settings or Settings.from_env()), host=host, port=port, log_level=log_level,
                access_log=False)
