"""configurable fields of installations (headless installation)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 17:00:00

Each installation's configured field values (``installations.config``: a JSON object by
field name, a secret field's value sealed with REFLOW_SECRET_KEY), and the headless
installations started for a user and an integration (which workflows, which credentials
to pin), so ``completeInstallation`` finds them by the id ``startInstallation`` answered
(docs/api.md "Headless installation").
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("installations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("config", sa.Text(), nullable=True))
    op.create_table(
        "headless_installations",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("team_id", sa.Text(), sa.ForeignKey("teams.id"), nullable=False),
        sa.Column("user_id", sa.Text(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("integration_id", sa.Text(), nullable=False),
        sa.Column("workflow_ids", sa.Text(), nullable=False),
        sa.Column("credential_ids", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("headless_installations")
    with op.batch_alter_table("installations", schema=None) as batch_op:
        batch_op.drop_column("config")
