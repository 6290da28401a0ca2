"""retention: per-team and per-workflow windows, and what the purge needs

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 17:30:00

A workflow's own retention (its latest definition's ``retention``), copied to its row so
the purge reads no definition, and the cursor of its step pass (docs/operations.md
"Retention"). The team's window is the existing ``teams.log_retention_s``.

PostgreSQL: the purge deletes a day's rows every day, so executions and steps are
vacuumed once 2 % of their rows are dead (the default waits for 20 %, letting the tables
grow by a fifth before their space is reused), without the cost-based pauses that make
autovacuum fall behind a steady delete rate (docs/benchmarks.md "Retention").
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("retention_s", sa.Integer()),
    ("retention_keep", sa.Integer()),
    ("retention_keep_steps", sa.Text()),
    ("retention_steps_cursor", sa.BigInteger()),
)
_AUTOVACUUM = ("autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000, "
               "autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0.02")
_RESET = ("autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, "
          "autovacuum_vacuum_cost_delay, autovacuum_analyze_scale_factor")


def upgrade() -> None:
    with op.batch_alter_table("workflows") as batch:
        for name, kind in _COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        for table in ("executions", "steps"):
            op.execute(f"ALTER TABLE {table} SET ({_AUTOVACUUM})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in ("executions", "steps"):
            op.execute(f"ALTER TABLE {table} RESET ({_RESET})")
    with op.batch_alter_table("workflows") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
