"""Settings of the HTTP service: where the store lives and the limits on what a request may ask.

Every setting has an environment variable (read by :meth:`Settings.from_env`) and a default that
works with nothing set up: a SQLite file under ``./.allocator``.

=================================  ==========================================================
variable                           meaning (default)
=================================  ==========================================================
``ALLOCATOR_DATA_DIR``             folder of the SQLite store (``./.allocator``)
``ALLOCATOR_DATABASE_URL``         SQLAlchemy URL of the store, e.g. ``postgresql+psycopg://...``
                                   (``sqlite:///<data dir>/allocator.db``)
``ALLOCATOR_MAX_BODY_BYTES``       largest request body (2,000,000)
``ALLOCATOR_MAX_CELLS``            most (segment, task) cells in one scenario (5,000)
``ALLOCATOR_MAX_SOLVE_SECONDS``    ``solver.time_limit`` given to every solve, and its cap (60)
``ALLOCATOR_MAX_JOBS``             queued or running jobs per workspace (4)
``ALLOCATOR_JOB_PROCESSES``        jobs computed at once, each in its own process (2); shared
                                   among ``serve --workers``, at least one each
``ALLOCATOR_MAX_VARIANTS``         most variants of one sweep (500)
``ALLOCATOR_MAX_POINTS``           most budgets of one frontier (1,000)
``ALLOCATOR_MAX_SAMPLES``          most draws of one uncertainty run (5,000)
=================================  ==========================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import Problem, SpecError

DATA_DIR_ENV = "ALLOCATOR_DATA_DIR"
DATABASE_URL_ENV = "ALLOCATOR_DATABASE_URL"
DB_FILE = "allocator.db"
#: set by ``serve --workers N`` for its worker processes (not settings: how the processes find each other)
WORKERS_ENV = "ALLOCATOR_SERVE_WORKERS"
SUPERVISOR_ENV = "ALLOCATOR_SERVE_SUPERVISOR"


@dataclass(frozen=True)
class Settings:
    """The service's store and limits (constructed once; validated in :meth:`checked`)."""

    data_dir: Path = Path(".allocator")
    database_url: str | None = None
    max_body_bytes: int = 2_000_000
    max_cells: int = 5_000
    max_solve_seconds: float = 60.0
    max_jobs_per_workspace: int = 4
    job_processes: int = 2
    max_variants: int = 500
    max_points: int = 1_000
    max_samples: int = 5_000

    @property
    def url(self) -> str:
        """The store's SQLAlchemy URL: ``database_url``, else a SQLite file in ``data_dir``."""
        return self.database_url or f"sqlite:///{(Path(self.data_dir) / DB_FILE).resolve()}"

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """Settings from ``ALLOCATOR_*`` variables; keyword arguments (not None) win over them."""
        env = os.environ
        kw: dict = {}
        problems = []
        for field, (var, kind) in _ENV_NAMES.items():
            if env.get(var, "").strip():
                try:
                    kw[field] = kind(env[var])
                except ValueError:
                    problems.append(Problem(var, f"must be a number; got {env[var][:40]!r}"))
        if env.get(DATA_DIR_ENV, "").strip():
            kw["data_dir"] = Path(env[DATA_DIR_ENV])
        if env.get(DATABASE_URL_ENV, "").strip():
            kw["database_url"] = env[DATABASE_URL_ENV].strip()
        if problems:
            raise SpecError(problems, source="environment")
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw).checked()

    def checked(self) -> "Settings":
        """``self``, or a SpecError naming every limit that is not positive."""
        problems = [Problem(name, f"must be > 0; got {getattr(self, name)!r}")
                    for name in ("max_body_bytes", "max_cells", "max_solve_seconds", "max_jobs_per_workspace",
                                 "job_processes", "max_variants", "max_points", "max_samples")
                    if not getattr(self, name) > 0]
        if problems:
            raise SpecError(problems, source="service settings")
        return self

    def with_(self, **kw) -> "Settings":
        return replace(self, **kw).checked()

    def to_env(self) -> dict[str, str]:
        """The ``ALLOCATOR_*`` variables that give these settings back through :meth:`from_env`
        (how ``serve --workers`` hands them to worker processes, which build their own)."""
        out = {var: repr(getattr(self, field)) for field, (var, _kind) in _ENV_NAMES.items()}
        out[DATA_DIR_ENV] = str(self.data_dir)
        if self.database_url:
            out[DATABASE_URL_ENV] = self.database_url
        return out


_ENV_NAMES = {"max_body_bytes": ("ALLOCATOR_MAX_BODY_BYTES", int), "max_cells": ("ALLOCATOR_MAX_CELLS", int),
              "max_solve_seconds": ("ALLOCATOR_MAX_SOLVE_SECONDS", float),
              "max_jobs_per_workspace": ("ALLOCATOR_MAX_JOBS", int),
              "job_processes": ("ALLOCATOR_JOB_PROCESSES", int),
              "max_variants": ("ALLOCATOR_MAX_VARIANTS", int), "max_points": ("ALLOCATOR_MAX_POINTS", int),
              "max_samples": ("ALLOCATOR_MAX_SAMPLES", int)}
