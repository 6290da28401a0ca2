"""resume counts, cancel requests, per-team expression env

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("resumes", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch_op.add_column(
            sa.Column("cancel_requested", sa.Boolean(), nullable=False,
                      server_default=sa.false())
        )
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("env", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.drop_column("env")
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_column("cancel_requested")
        batch_op.drop_column("resumes")
