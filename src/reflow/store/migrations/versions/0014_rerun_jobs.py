"""bulk rerun jobs and their per-execution results

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 17:30:00
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
