"""waiting executions and steps keyed by their path

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 22:40:00

A ``delay`` block suspends its execution: it becomes ``waiting`` with no lease owner and
its wake time in ``lease_expires``, until the "wake waiting" job queues it again at that
time. Waiting executions leave the claim index (a hundred thousand of them would
otherwise be skipped entry by entry by every claim) for their own, ordered by wake time.

A step inside a ``loop`` is keyed by its block id and the index of its item in each
enclosing loop (``item``: "3", or "3.0" for a loop in a loop; NULL outside loops), so a
resume and a rerun ``from`` reuse each item's steps on their own.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_UNFINISHED = sa.text("status IN ('queued', 'running', 'waiting')")
_CLAIMABLE = sa.text("status IN ('queued', 'running')")
_WAITING = sa.text("status = 'waiting'")


def upgrade() -> None:
    # A plain ADD COLUMN (no table copy on SQLite, no rewrite on PostgreSQL).
    op.add_column("steps", sa.Column("item", sa.Text(), nullable=True))
    op.drop_index("ix_executions_claim", table_name="executions")
    op.create_index("ix_executions_claim", "executions",
                    ["installation_id", "id", "status", "lease_expires"],
                    sqlite_where=_CLAIMABLE, postgresql_where=_CLAIMABLE)
    op.create_index("ix_executions_waiting", "executions", ["lease_expires"],
                    sqlite_where=_WAITING, postgresql_where=_WAITING)


def downgrade() -> None:
    op.drop_index("ix_executions_waiting", table_name="executions")
    op.drop_index("ix_executions_claim", table_name="executions")
    op.create_index("ix_executions_claim", "executions",
                    ["installation_id", "id", "status", "lease_expires"],
                    sqlite_where=_UNFINISHED, postgresql_where=_UNFINISHED)
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("item")
