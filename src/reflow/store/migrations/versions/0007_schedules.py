"""schedule triggers: the scheduler's state per installation, and due times claimed

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 16:00:00

``schedule_states`` holds, per installation the scheduler has looked at, its schedule and
next due time (indexed where one is due); ``schedule_claims`` holds one row per due time
fired, unique per (installation, due time), inserted with its execution. Installations
gain an index on updated_at: the scheduler finds the ones changed since it last looked.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_DUE = sa.text("next_due_at IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_installations_updated", "installations", ["updated_at"])
    op.create_table(
        "schedule_states",
        sa.Column("installation_id", sa.Text(), nullable=False),
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("installation_updated_at", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("cron", sa.Text(), nullable=True),
        sa.Column("timezone", sa.Text(), nullable=True),
        sa.Column("missed", sa.Text(), nullable=True),
        sa.Column("next_due_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("installation_id"),
    )
    op.create_index("ix_schedule_states_due", "schedule_states", ["next_due_at"],
                    sqlite_where=_DUE, postgresql_where=_DUE)
    op.create_index("ix_schedule_states_team", "schedule_states", ["team_id", "next_due_at"])
    op.create_table(
        "schedule_claims",
        sa.Column("installation_id", sa.Text(), nullable=False),
        sa.Column("due_at", sa.BigInteger(), nullable=False),
        sa.Column("execution_id", sa.Text(), nullable=False),
        sa.Column("fired_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("installation_id", "due_at"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_schedule_claims_due", "schedule_claims", ["due_at"])


def downgrade() -> None:
    op.drop_index("ix_schedule_claims_due", table_name="schedule_claims")
    op.drop_table("schedule_claims")
    op.drop_index("ix_schedule_states_team", table_name="schedule_states")
    op.drop_index("ix_schedule_states_due", table_name="schedule_states")
    op.drop_table("schedule_states")
    op.drop_index("ix_installations_updated", table_name="installations")
