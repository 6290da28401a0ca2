"""webhook URLs of installations

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 16:00:00

One secret token per installation, unique across the deployment (the URL's last
segment). Delivery ids seen by a webhook's dedupe are idempotency keys (0002): they are
inserted with their execution and purged with it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_tokens",
        sa.Column("installation_id", sa.Text(), nullable=False),
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["installation_id"], ["installations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"]),
        sa.PrimaryKeyConstraint("installation_id"),
    )
    op.create_index("uq_webhook_tokens_token", "webhook_tokens", ["token"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_webhook_tokens_token", table_name="webhook_tokens")
    op.drop_table("webhook_tokens")
