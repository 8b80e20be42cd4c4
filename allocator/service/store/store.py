"""The plan store: keys, immutable plan versions and jobs, on SQLite or PostgreSQL (SQLAlchemy Core).

Every read and write names its workspace: a row of another workspace is never returned, so a key
that asks for another workspace's plan or job by id gets "not found", exactly as for an id that
does not exist. Plans are written once and never updated; a plan's version is one more than the
scenario's latest in the same transaction (a concurrent writer that took the same number retries).

Several server processes share one store. On SQLite (WAL, a 30 s busy timeout) every write that
reads first (a plan's version number, a job's admission against the workspace's limit) takes the
write lock at its start (``BEGIN IMMEDIATE``): a transaction that read a snapshot and then tried to
write would get "database is locked" at once, whatever the timeout, when another process wrote in
between. On PostgreSQL an advisory lock per workspace serializes job admissions.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import bindparam, create_engine, event, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ...json_text import compact
from .sqlite_lane import SqliteLane, configure, lane_path
from .tables import api_keys, jobs, plans

KEY_PREFIX = "alk"
ACTIVE_JOB_STATES = ("queued", "running")
#: a job whose answer is being stored: no longer cancellable, not yet done
STORING = "storing"
FINAL_JOB_STATES = ("done", "failed", "cancelled")
INTERRUPTED = {"error": "interrupted", "message": "the server stopped while this job ran; submit it again "
                                                  "(plans stored before the stop are kept)"}


# statements of every request, built once (SQLAlchemy then reuses their compiled form from its cache)
_KEY_BY_ID = select(api_keys).where(api_keys.c.id == bindparam("key_id"))
_LATEST_VERSION = select(func.max(plans.c.version)).where(plans.c.workspace == bindparam("w"),
                                                          plans.c.scenario == bindparam("s"))
_ADD_PLAN = plans.insert()


def now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    if t.tzinfo is None:  # SQLite hands back naive datetimes: they were written in UTC
        t = t.replace(tzinfo=timezone.utc)
    return t.isoformat()


def hash_secret(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyRecord:
    id: str
    workspace: str
    read_only: bool
    label: str | None
    created_at: str | None
    revoked_at: str | None


class TooManyJobs(Exception):
    """The workspace already has as many queued or running jobs as allowed."""

    def __init__(self, limit: int):
        self.limit = limit
        super().__init__(f"this workspace already has {limit} queued or running jobs (the limit); "
                         f"wait for one to finish or cancel one")


class Store:
    """Keys, plans and jobs in one SQL database (``url``: any SQLAlchemy URL; SQLite or PostgreSQL)."""

    def __init__(self, url: str, migrate: bool = True):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                                                pool_size=8, max_overflow=16)

            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn, _record):  # noqa: ANN001 - SQLAlchemy's hook signature
                configure(dbapi_conn)
        else:
            self.engine = create_engine(url, pool_size=8, max_overflow=16, pool_pre_ping=True)
        # a file's key lookups and plan inserts skip SQLAlchemy (see sqlite_lane: a tenth of a small plan)
        path = lane_path(url)
        self._lane = SqliteLane(path, _KEY_BY_ID, _LATEST_VERSION, _ADD_PLAN) if path else None
        # SQLite has one writer at a time anyway; serializing version numbering here avoids retries
        self._write_lock = threading.Lock()
        if migrate:
            self.migrate()

    # ------------------------------------------------------------------ schema
    def migrate(self) -> None:
        """Bring the database to the newest schema with the Alembic migrations shipped in the package."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def revision(self) -> str | None:
        with self.engine.connect() as conn:
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()

    def dispose(self) -> None:
        if self._lane is not None:
            self._lane.close()
        self.engine.dispose()

    # ------------------------------------------------------------------ keys
    def create_key(self, workspace: str, read_only: bool = False, label: str | None = None) -> tuple[KeyRecord, str]:
        """A new key of ``workspace``: its record and the secret (shown once; only its hash is kept)."""
        key_id = secrets.token_hex(6)
        secret = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        t = now()
        with self.engine.begin() as conn:
            conn.execute(api_keys.insert().values(id=key_id, workspace=workspace, secret_hash=hash_secret(secret),
                                                  read_only=bool(read_only), label=label, created_at=t))
        return KeyRecord(key_id, workspace, bool(read_only), label, _iso(t), None), secret

    def authenticate(self, secret: str) -> KeyRecord | None:
        """The key record of ``secret``; None when unknown, malformed or revoked."""
        parts = secret.split("_")
        if len(parts) < 3 or parts[0] != KEY_PREFIX or len(secret) > 200:
            return None
        if self._lane is not None:
            row = self._lane.key_row(parts[1])
        else:
            with self.engine.connect() as conn:
                row = conn.execute(_KEY_BY_ID, {"key_id": parts[1]}).mappings().first()
        if row is None or row["revoked_at"] is not None:
            return None
        if not hmac.compare_digest(row["secret_hash"], hash_secret(secret)):
            return None
        return self._key(row)

    @staticmethod
    def _key(row) -> KeyRecord:
        return KeyRecord(row["id"], row["workspace"], bool(row["read_only"]), row["label"], _iso(row["created_at"]),
                         _iso(row["revoked_at"]))

    def revoke_key(self, key_id: str) -> bool:
        with self.engine.begin() as conn:
            n = conn.execute(update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                             .values(revoked_at=now())).rowcount
        return n > 0

    def list_keys(self, workspace: str | None = None) -> list[KeyRecord]:
        q = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if workspace is not None:
            q = q.where(api_keys.c.workspace == workspace)
        with self.engine.connect() as conn:
            return [self._key(r) for r in conn.execute(q).mappings()]

    # ------------------------------------------------------------------ plans
    def add_plan(self, workspace: str, scenario: str, scenario_data: dict[str, Any], input_hash: str,
                 engine_version: str, created_by: str, summary: dict[str, Any], cells: list[dict[str, Any]],
                 raw: bool = False) -> dict[str, Any] | bytes:
        """Store a solved plan as the scenario's next version; return its record (with summary and cells).

        With ``raw`` the record comes back as its JSON bytes, made from the text just stored (what
        an HTTP answer sends: the plan is not encoded twice).
        """
        row = {"id": uuid.uuid4().hex, "workspace": workspace, "scenario": scenario,
               "scenario_json": _dumps(scenario_data), "input_hash": input_hash, "engine_version": engine_version,
               "solver": str(summary.get("solver") or ""), "status": str(summary.get("status") or ""),
               "optimality_gap": summary.get("optimality_gap"), "solve_seconds": float(summary.get("solve_seconds")
                                                                                        or 0.0),
               "created_by": created_by, "summary_json": _dumps(summary), "cells_json": _dumps(cells)}
        if self._lane is not None:
            with self._write_lock:
                self._lane.insert_plan(row, now())
            return self._plan_bytes(row) if raw else self._plan(row, summary, cells)
        for _attempt in range(20):
            with self._write_lock:
                try:
                    with self.engine.begin() as conn:
                        if self.is_sqlite:  # read and insert in one write transaction
                            conn.exec_driver_sql("BEGIN IMMEDIATE")
                        latest = conn.execute(_LATEST_VERSION, {"w": workspace, "s": scenario}).scalar()
                        row["version"] = int(latest or 0) + 1
                        row["created_at"] = now()
                        conn.execute(_ADD_PLAN, row)
                    break
                except IntegrityError:  # another process took this version number: take the next one
                    continue
        else:  # pragma: no cover
            raise RuntimeError("could not number the plan's version after 20 attempts")
        return self._plan_bytes(row) if raw else self._plan(row, summary, cells)

    @classmethod
    def _plan_bytes(cls, row) -> bytes:
        """The record of :meth:`_plan` as JSON bytes, with the stored summary and cells text spliced in."""
        head = compact(cls._meta(row))
        return f'{head[:-1]},"summary":{row["summary_json"]},"cells":{row["cells_json"]}}}'.encode()

    @classmethod
    def _plan(cls, row, summary: Any = None, cells: Any = None, with_scenario: bool = False) -> dict[str, Any]:
        out = cls._meta(row)
        if summary is not None or "summary_json" in row:
            out["summary"] = summary if summary is not None else json.loads(row["summary_json"])
            out["cells"] = cells if cells is not None else json.loads(row["cells_json"])
        if with_scenario:
            out["scenario_data"] = json.loads(row["scenario_json"])
        return out

    @staticmethod
    def _meta(row) -> dict[str, Any]:
        return {"id": row["id"], "scenario": row["scenario"], "version": row["version"],
               "created_at": _iso(row["created_at"]), "created_by": row["created_by"],
               "input_hash": row["input_hash"], "engine_version": row["engine_version"], "solver": row["solver"],
               "status": row["status"], "optimality_gap": row["optimality_gap"],
               "solve_seconds": row["solve_seconds"]}

    def get_plan(self, workspace: str, plan_id: str, with_scenario: bool = False, raw: bool = False
                 ) -> dict[str, Any] | bytes | None:
        """A stored plan of ``workspace`` (None for another workspace's); ``raw``: as JSON bytes."""
        with self.engine.connect() as conn:
            row = conn.execute(select(plans).where(plans.c.id == plan_id, plans.c.workspace == workspace)
                               ).mappings().first()
        if row is None:
            return None
        return self._plan_bytes(row) if raw else self._plan(row, with_scenario=with_scenario)

    def get_version(self, workspace: str, scenario: str, version: int, with_scenario: bool = False
                    ) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(plans).where(plans.c.workspace == workspace, plans.c.scenario == scenario,
                                                   plans.c.version == version)).mappings().first()
        return None if row is None else self._plan(row, with_scenario=with_scenario)

    def list_versions(self, workspace: str, scenario: str) -> list[dict[str, Any]]:
        cols = [c for c in plans.c if c.name not in ("summary_json", "cells_json", "scenario_json")]
        with self.engine.connect() as conn:
            rows = conn.execute(select(*cols).where(plans.c.workspace == workspace, plans.c.scenario == scenario)
                                .order_by(plans.c.version)).mappings().all()
        return [self._plan(r) for r in rows]

    def list_scenarios(self, workspace: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(plans.c.scenario, func.count(), func.max(plans.c.version),
                                       func.max(plans.c.created_at))
                                .where(plans.c.workspace == workspace).group_by(plans.c.scenario)
                                .order_by(plans.c.scenario)).all()
        return [{"scenario": r[0], "versions": int(r[1]), "latest_version": int(r[2]), "latest_at": _iso(r[3])}
                for r in rows]

    # ------------------------------------------------------------------ jobs
    def create_job(self, workspace: str, kind: str, request: dict[str, Any], created_by: str, limit: int,
                   owner: str | None = None) -> dict[str, Any]:
        """A queued job run by ``owner``; :class:`TooManyJobs` when ``workspace`` has ``limit`` jobs in flight.

        The count is the store's, so the limit holds across every server process sharing it.
        """
        t = now()
        row = {"id": uuid.uuid4().hex, "workspace": workspace, "kind": kind, "status": "queued",
               "progress_json": _dumps({"stage": "queued"}), "request_json": _dumps(request), "created_at": t,
               "updated_at": t, "created_by": created_by, "owner": owner}
        with self._write_lock, self.engine.begin() as conn:
            # one job admission at a time per workspace, across server processes
            if self.is_sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext(%(w)s))", {"w": workspace})
            active = conn.execute(select(func.count()).select_from(jobs).where(
                jobs.c.workspace == workspace, jobs.c.status.in_(ACTIVE_JOB_STATES))).scalar()
            if active >= limit:
                raise TooManyJobs(limit)
            conn.execute(jobs.insert().values(**row))
        return self._job(row)

    def update_job(self, job_id: str, *, only_if_active: bool = True, status: str | None = None,
                   progress: dict | None = None, result: Any = None, plan_id: str | None = None,
                   error: dict | None = None) -> bool:
        """Update a job; with ``only_if_active`` a finished or cancelled job is left as it is."""
        values: dict[str, Any] = {"updated_at": now()}
        if status is not None:
            values["status"] = status
        if progress is not None:
            values["progress_json"] = _dumps(progress)
        if result is not None:
            values["result_json"] = _dumps(result)
        if plan_id is not None:
            values["plan_id"] = plan_id
        if error is not None:
            values["error_json"] = _dumps(error)
        q = update(jobs).where(jobs.c.id == job_id)
        if only_if_active:
            q = q.where(jobs.c.status.in_(ACTIVE_JOB_STATES))
        with self.engine.begin() as conn:
            return conn.execute(q.values(**values)).rowcount > 0

    def job_status(self, job_id: str) -> str | None:
        """The job's status alone (what a worker polls to see a cancel made by another worker)."""
        with self.engine.connect() as conn:
            return conn.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar()

    @staticmethod
    def _job(row, with_result: bool = False) -> dict[str, Any]:
        out = {"id": row["id"], "kind": row["kind"], "status": row["status"],
               "progress": json.loads(row["progress_json"]), "plan_id": row.get("plan_id"),
               "error": json.loads(row["error_json"]) if row.get("error_json") else None,
               "created_at": _iso(row["created_at"]), "updated_at": _iso(row["updated_at"]),
               "created_by": row["created_by"]}
        if with_result:
            out["result"] = json.loads(row["result_json"]) if row.get("result_json") else None
            out["request"] = json.loads(row["request_json"])
        return out

    def get_job(self, workspace: str | None, job_id: str, with_result: bool = False) -> dict[str, Any] | None:
        q = select(jobs).where(jobs.c.id == job_id)
        if workspace is not None:
            q = q.where(jobs.c.workspace == workspace)
        with self.engine.connect() as conn:
            row = conn.execute(q).mappings().first()
        return None if row is None else self._job(dict(row), with_result)

    def list_jobs(self, workspace: str) -> list[dict[str, Any]]:
        cols = [c for c in jobs.c if c.name not in ("result_json", "request_json")]
        with self.engine.connect() as conn:
            rows = conn.execute(select(*cols).where(jobs.c.workspace == workspace)
                                .order_by(jobs.c.created_at, jobs.c.id)).mappings().all()
        return [self._job(dict(r)) for r in rows]

    def fail_interrupted(self, alive: Callable[[str | None], bool] | None = None, owner: str | None = None) -> int:
        """Mark queued, running or storing jobs failed: nothing will run them any more.

        Parameters
        ----------
        alive : callable, optional
            ``alive(owner)`` is True while the process named by a job's ``owner`` still runs it;
            only the jobs of dead (or unknown) owners are failed. Without it, every active job.
        owner : str, optional
            Only the jobs of this owner (a server process that stops fails its own jobs).
        """
        states = (*ACTIVE_JOB_STATES, STORING)
        q = update(jobs).where(jobs.c.status.in_(states))
        if owner is not None:
            q = q.where(jobs.c.owner == owner)
        if alive is not None:
            with self.engine.connect() as conn:
                rows = conn.execute(select(jobs.c.id, jobs.c.owner).where(jobs.c.status.in_(states))).all()
            dead = [r[0] for r in rows if not alive(r[1])]
            if not dead:
                return 0
            q = q.where(jobs.c.id.in_(dead))
        with self.engine.begin() as conn:
            return conn.execute(q.values(status="failed", error_json=_dumps(INTERRUPTED), updated_at=now())).rowcount


def _dumps(obj: Any) -> str:
    return compact(obj)
