"""OAuth connections

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 17:00:00

The connect flow's pending states (single use: deleted when the callback uses one), the
refresh lease and cool-down on each credential (one refresh at a time across every
process), the team's OAuth redirect URL, credential events (``credential.*``), and the
kind and body of error-stream notifications that are not a failed execution
(docs/credentials.md "OAuth").
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oauth_states",
        sa.Column("state_hash", sa.Text(), primary_key=True),
        sa.Column("team_id", sa.Text(), sa.ForeignKey("teams.id"), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("app", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_oauth_states_expires", "oauth_states", ["expires_at"])
    op.create_table(
        "credential_events",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("team_id", sa.Text(), sa.ForeignKey("teams.id"), nullable=False),
        sa.Column("credential_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("app", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_credential_events_team", "credential_events",
                    ["team_id", "created_at"])
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refresh_owner", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("refresh_until", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("refresh_blocked_until", sa.BigInteger(),
                                      nullable=True))
        batch_op.add_column(sa.Column("refresh_failures", sa.Integer(), nullable=False,
                                      server_default=sa.text("0")))
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("oauth_redirect_url", sa.Text(), nullable=True))
    with op.batch_alter_table("error_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("payload", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("error_outbox", schema=None) as batch_op:
        batch_op.drop_column("payload")
        batch_op.drop_column("kind")
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.drop_column("oauth_redirect_url")
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.drop_column("refresh_failures")
        batch_op.drop_column("refresh_blocked_until")
        batch_op.drop_column("refresh_until")
        batch_op.drop_column("refresh_owner")
    op.drop_index("ix_credential_events_team", table_name="credential_events")
    op.drop_table("credential_events")
    op.drop_index("ix_oauth_states_expires", table_name="oauth_states")
    op.drop_table("oauth_states")
