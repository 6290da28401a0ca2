"""users are deleted softly: deleted_at, usernames unique among live users only

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 14:30:00

A deleted user keeps its row: its installations (foreign keys to users) and its
executions (which keep their user id for the logs) stay valid, and its username may be
taken again by a new user.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_LIVE = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_at", sa.BigInteger(), nullable=True))
        batch_op.drop_constraint("uq_users_team_username", type_="unique")
    op.create_index("uq_users_team_username_live", "users", ["team_id", "username"],
                    unique=True, sqlite_where=_LIVE, postgresql_where=_LIVE)
    op.create_index("ix_users_team_created", "users", ["team_id", "created_at"])
    op.create_index("ix_installations_user", "installations", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_installations_user", table_name="installations")
    op.drop_index("ix_users_team_created", table_name="users")
    op.drop_index("uq_users_team_username_live", table_name="users")
    # Deleted users stay (installations refer to them) under a name no live user has.
    op.execute("UPDATE users SET username = username || ' (deleted ' || id || ')' "
               "WHERE deleted_at IS NOT NULL")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_users_team_username", ["team_id", "username"])
        batch_op.drop_column("deleted_at")
