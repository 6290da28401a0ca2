"""apps and end users' credentials, encrypted

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 16:30:00

Apps declared by a team, its users' credentials for them (the values sealed with
REFLOW_SECRET_KEY, a health status, an OAuth expiry), and the credentials an
installation is pinned to (docs/credentials.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "apps",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("team_id", sa.Text(), sa.ForeignKey("teams.id"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("auth_kind", sa.Text(), nullable=False),
        sa.Column("icon", sa.Text(), nullable=True),
        sa.Column("definition", sa.LargeBinary(), nullable=False),
        sa.Column("digest", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("team_id", "name", name="uq_apps_team_name"),
    )
    op.create_table(
        "credentials",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("team_id", sa.Text(), sa.ForeignKey("teams.id"), nullable=False),
        sa.Column("user_id", sa.Text(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("app", sa.Text(), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("health", sa.Text(), nullable=False, server_default=sa.text("'ok'")),
        sa.Column("health_reason", sa.Text(), nullable=True),
        sa.Column("health_changed_at", sa.BigInteger(), nullable=True),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False, server_default=sa.text("1")),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_credentials_user_app", "credentials",
                    ["team_id", "user_id", "app", "created_at"])
    with op.batch_alter_table("installations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("credential_ids", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("installations", schema=None) as batch_op:
        batch_op.drop_column("credential_ids")
    op.drop_index("ix_credentials_user_app", table_name="credentials")
    op.drop_table("credentials")
    op.drop_table("apps")
