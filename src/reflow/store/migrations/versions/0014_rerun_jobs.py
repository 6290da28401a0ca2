"""bulk rerun jobs and their per-execution results

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 17:30:00

A bulk rerun job (POST /reruns) and its items: the executions its filter selected when it
was created, one row each, and what became of each (docs/api.md "Bulk rerun"). The
primary key (job, execution) is what keeps one job from rerunning an execution twice.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_UNFINISHED = "status IN ('queued', 'running')"


def upgrade() -> None:
    op.create_table(
        "rerun_jobs",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("team_id", sa.Text(), sa.ForeignKey("teams.id"), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("filter", sa.Text(), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("failed", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("cancelled", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=True),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_expires", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_rerun_jobs_team", "rerun_jobs", ["team_id", "id"])
    op.create_index("ix_rerun_jobs_unfinished", "rerun_jobs", ["id"],
                    sqlite_where=sa.text(_UNFINISHED), postgresql_where=sa.text(_UNFINISHED))
    op.create_index("ix_rerun_jobs_finished", "rerun_jobs", ["finished_at"])
    op.create_table(
        "rerun_job_items",
        sa.Column("job_id", sa.Text(), sa.ForeignKey("rerun_jobs.id"), primary_key=True),
        sa.Column("execution_id", sa.Text(), primary_key=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("new_execution_id", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_rerun_job_items_seq", "rerun_job_items", ["job_id", "seq"],
                    unique=True)
    op.create_index("ix_rerun_job_items_state", "rerun_job_items", ["job_id", "state", "seq"])


def downgrade() -> None:
    op.drop_index("ix_rerun_job_items_state", table_name="rerun_job_items")
    op.drop_index("ix_rerun_job_items_seq", table_name="rerun_job_items")
    op.drop_table("rerun_job_items")
    op.drop_index("ix_rerun_jobs_finished", table_name="rerun_jobs")
    op.drop_index("ix_rerun_jobs_unfinished", table_name="rerun_jobs")
    op.drop_index("ix_rerun_jobs_team", table_name="rerun_jobs")
    op.drop_table("rerun_jobs")
