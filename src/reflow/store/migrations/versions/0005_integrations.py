"""integrations declared in files, and what installs need for them

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 16:00:00

Integrations get a table of their own (a workflow still names its integration by name, as
its definition does); every name workflows already use becomes an integration with the
defaults. A user's installation is deleted softly (``deleted_at``): its executions keep
their logs, and activating the workflow again revives the same row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from reflow.ids import new_object_id, now_ms

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    integrations = op.create_table(
        "integrations",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("app", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("icon", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("team_id", "name", name="uq_integrations_team_name"),
    )
    named = op.get_bind().execute(sa.text(
        "SELECT DISTINCT team_id, integration FROM workflows WHERE integration IS NOT NULL"
    )).all()
    now = now_ms()
    if named:
        op.bulk_insert(integrations, [
            {"id": new_object_id(), "team_id": team_id, "name": name, "app": name,
             "description": "", "icon": None, "created_at": now, "updated_at": now}
            for team_id, name in named
        ])
    with op.batch_alter_table("installations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # Before this revision a deleted installation did not exist: its row goes (its
    # executions keep their logs, as they do after the delete).
    op.execute("DELETE FROM installations WHERE deleted_at IS NOT NULL")
    with op.batch_alter_table("installations", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")
    op.drop_table("integrations")
