"""Jobs name the server process that runs them (``owner``), so several workers share one store.

A worker that starts fails only the jobs whose owner process is gone; one that stops fails only
its own. An index on ``status`` keeps the periodic look for orphaned jobs cheap.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("owner", sa.String(120)))
    op.create_index("ix_jobs_status", "jobs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_jobs_status", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("owner")
