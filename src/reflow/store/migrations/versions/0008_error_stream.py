"""the team error-stream setting and its durable outbox

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 16:00:00

A team's error stream is a URL and a sealed signing secret on its row; a failed
execution's notification is an error_outbox row written in the transaction that commits
the failure, so a restart loses none (docs/api.md "Error streaming").
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_PENDING = sa.text("state = 'pending'")


def upgrade() -> None:
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("error_stream_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("error_stream_secret", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("error_stream_retry_at", sa.BigInteger(), nullable=True))
    op.create_table(
        "error_outbox",
        sa.Column("execution_id", sa.Text(), primary_key=True),
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("workflow_id", sa.Text(), nullable=False),
        sa.Column("installation_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("mode", sa.Text(), nullable=False),
        sa.Column("error", sa.LargeBinary(), nullable=True),
        sa.Column("started_at", sa.BigInteger(), nullable=True),
        sa.Column("stopped_at", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=False),
        sa.Column("last_attempt_at", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_error_outbox_due", "error_outbox", ["next_attempt_at"],
                    sqlite_where=_PENDING, postgresql_where=_PENDING)
    op.create_index("ix_error_outbox_team", "error_outbox",
                    ["team_id", "state", "finished_at"])
    op.create_index("ix_error_outbox_finished", "error_outbox", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_error_outbox_finished", table_name="error_outbox")
    op.drop_index("ix_error_outbox_team", table_name="error_outbox")
    op.drop_index("ix_error_outbox_due", table_name="error_outbox")
    op.drop_table("error_outbox")
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.drop_column("error_stream_retry_at")
        batch_op.drop_column("error_stream_secret")
        batch_op.drop_column("error_stream_url")
