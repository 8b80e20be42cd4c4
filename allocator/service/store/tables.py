"""The store's tables (SQLAlchemy Core). The Alembic migrations in ``migrations/`` create them.

* ``api_keys``: one row per key; only the SHA-256 of the secret is kept (keys are 256-bit random
  tokens, so a plain hash is enough; there is nothing to brute-force). A revoked key keeps its row.
* ``plans``: one immutable row per solved plan, numbered per (workspace, scenario name) from 1:
  the scenario as validated, its input hash, the engine version, solver, status, gap, time, the key
  that asked, ``summary.json``'s fields and ``plan.csv``'s rows (JSON text).
* ``jobs``: long solves (global solver, sweeps, uncertainty): status, progress, request, result,
  and ``owner``, the server process running it (``host:pid:start``; see :mod:`..jobs`).
"""

from __future__ import annotations

from sqlalchemy import (Boolean, Column, DateTime, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text,
                        UniqueConstraint)

metadata = MetaData()

api_keys = Table(
    "api_keys", metadata,
    Column("id", String(32), primary_key=True),
    Column("workspace", String(128), nullable=False, index=True),
    Column("secret_hash", String(64), nullable=False),
    Column("read_only", Boolean, nullable=False, default=False),
    Column("label", String(200)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

plans = Table(
    "plans", metadata,
    Column("id", String(32), primary_key=True),
    Column("workspace", String(128), nullable=False),
    Column("scenario", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("scenario_json", Text, nullable=False),
    Column("input_hash", String(64), nullable=False),
    Column("engine_version", String(40), nullable=False),
    Column("solver", String(40), nullable=False),
    Column("status", String(40), nullable=False),
    Column("optimality_gap", Float),
    Column("solve_seconds", Float, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(32), ForeignKey("api_keys.id"), nullable=False),
    Column("summary_json", Text, nullable=False),
    Column("cells_json", Text, nullable=False),
    UniqueConstraint("workspace", "scenario", "version", name="uq_plans_version"),
)
Index("ix_plans_workspace_scenario", plans.c.workspace, plans.c.scenario)

jobs = Table(
    "jobs", metadata,
    Column("id", String(32), primary_key=True),
    Column("workspace", String(128), nullable=False, index=True),
    Column("kind", String(40), nullable=False),
    Column("status", String(20), nullable=False),
    Column("progress_json", Text, nullable=False),
    Column("request_json", Text, nullable=False),
    Column("result_json", Text),
    Column("plan_id", String(32)),
    Column("error_json", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(32), ForeignKey("api_keys.id"), nullable=False),
    Column("owner", String(120)),
)
Index("ix_jobs_status", jobs.c.status)
