"""The schema as SQLAlchemy metadata: what migrations must produce (a test compares them).

Only migrations and that test use SQLAlchemy; the stores speak SQL from named .sql files.
Timestamps are integer milliseconds since the epoch (compact, and sortable in any backend).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

metadata = MetaData()

teams = Table(
    "teams",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("log_retention_s", Integer),
    # The team's expression `env` (a JSON object); NULL is none.
    Column("env", LargeBinary),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Text, primary_key=True),
    Column("team_id", Text, ForeignKey("teams.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("prefix", Text, nullable=False),
    Column("hash", Text, nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger),
    Index("ix_api_keys_team", "team_id"),
)

users = Table(
    "users",
    metadata,
    Column("id", Text, primary_key=True),
    Column("team_id", Text, ForeignKey("teams.id"), nullable=False),
    Column("username", Text, nullable=False),
    Column("full_name", Text),
    Column("created_at", BigInteger, nullable=False),
    # Set when the user is deleted: the row stays for its installations and logs.
    Column("deleted_at", BigInteger),
    # A deleted user's username may be taken again.
    Index(
        "uq_users_team_username_live",
        "team_id",
        "username",
        unique=True,
        sqlite_where=text("deleted_at IS NULL"),
        postgresql_where=text("deleted_at IS NULL"),
    ),
    Index("ix_users_team_created", "team_id", "created_at"),
)

workflows = Table(
    "workflows",
    metadata,
    Column("id", Text, primary_key=True),
    Column("team_id", Text, ForeignKey("teams.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("integration", Text),
    Column("latest_version", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("team_id", "name", name="uq_workflows_team_name"),
)

workflow_versions = Table(
    "workflow_versions",
    metadata,
    Column("workflow_id", Text, ForeignKey("workflows.id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("definition", LargeBinary, nullable=False),
    Column("digest", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

installations = Table(
    "installations",
    metadata,
    Column("id", Text, primary_key=True),
    Column("team_id", Text, ForeignKey("teams.id"), nullable=False),
    Column("workflow_id", Text, ForeignKey("workflows.id"), nullable=False),
    Column("user_id", Text, ForeignKey("users.id"), nullable=False),
    Column("installed_version", Integer, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("installed_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("workflow_id", "user_id", name="uq_installations_workflow_user"),
    Index("ix_installations_user", "user_id"),
)

# No foreign keys on executions and steps: they are the hot path and are purged in bulk;
# integrity is kept by the services that write them.
executions = Table(
    "executions",
    metadata,
    Column("id", Text, primary_key=True),
    Column("team_id", Text, nullable=False),
    Column("workflow_id", Text, nullable=False),
    Column("installation_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("mode", Text, nullable=False),
    Column("trigger", LargeBinary, nullable=False),
    Column("status", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("started_at", BigInteger),
    Column("stopped_at", BigInteger),
    Column("output", LargeBinary),
    Column("response_status", Integer),
    Column("error", LargeBinary),
    Column("rerun_of", Text),
    Column("lease_owner", Text),
    Column("lease_expires", BigInteger),
    # Times it was resumed after the process running it died (poison executions end).
    Column("resumes", Integer, nullable=False, server_default=text("0")),
    # Set by a cancel while it runs; the runner stops it before its next block.
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    # Execution ids are time-ordered, so (workflow, id) orders a workflow's logs by time.
    Index("ix_executions_workflow", "workflow_id", "id"),
    Index("ix_executions_installation", "installation_id", "id"),
    Index("ix_executions_user", "user_id"),
    Index(
        "ix_executions_unfinished",
        "status",
        "lease_expires",
        sqlite_where=text("status IN ('queued', 'running', 'waiting')"),
        postgresql_where=text("status IN ('queued', 'running', 'waiting')"),
    ),
    Index(
        "ix_executions_rerun_of",
        "rerun_of",
        sqlite_where=text("rerun_of IS NOT NULL"),
        postgresql_where=text("rerun_of IS NOT NULL"),
    ),
    Index("ix_executions_stopped", "stopped_at"),
)

steps = Table(
    "steps",
    metadata,
    Column("execution_id", Text, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("block_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("stopped_at", BigInteger, nullable=False),
    Column("input", LargeBinary, nullable=False),
    Column("output", LargeBinary),
    Column("error", Text),
    Column("reused", Boolean, nullable=False),
    Column("truncated", Boolean, nullable=False),
    sqlite_with_rowid=False,
)

# An Idempotency-Key sent with a rerun: the same key gives back the same new execution.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("team_id", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("execution_id", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_idempotency_keys_execution", "execution_id"),
    sqlite_with_rowid=False,
)
