"""the worker's claim seeks installation by installation

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 18:00:00

The claim walks the unfinished executions installation by installation (a loose index
scan), so it needs them in (installation_id, id) order: with the status and the lease in
the index, whether an entry is claimable is read there too. The old index on (status,
lease_expires) served the claim that ranked every unfinished execution; no query needs it
now (the queue depth counts on the new one), and dropping it spares a write per change of
status or lease.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_UNFINISHED = sa.text("status IN ('queued', 'running', 'waiting')")


def upgrade() -> None:
    op.create_index("ix_executions_claim", "executions",
                    ["installation_id", "id", "status", "lease_expires"],
                    sqlite_where=_UNFINISHED, postgresql_where=_UNFINISHED)
    op.drop_index("ix_executions_unfinished", table_name="executions")


def downgrade() -> None:
    op.create_index("ix_executions_unfinished", "executions", ["status", "lease_expires"],
                    sqlite_where=_UNFINISHED, postgresql_where=_UNFINISHED)
    op.drop_index("ix_executions_claim", table_name="executions")
