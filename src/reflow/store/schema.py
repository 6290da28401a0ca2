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
    # Where failed executions are POSTed (NULL: no error stream), and the secret that
    # signs them, sealed with REFLOW_SECRET_KEY (services/error_stream.py).
    Column("error_stream_url", Text),
    Column("error_stream_secret", Text),
    # Its receiver was down: none of its notifications is tried before this time.
    Column("error_stream_retry_at", BigInteger),
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
    # Set by DELETE /workflows/{workflowId}: the row stays, inactive, for its executions'
    # logs; activating the workflow for the user again revives it (same id).
    Column("deleted_at", BigInteger),
    UniqueConstraint("workflow_id", "user_id", name="uq_installations_workflow_user"),
    Index("ix_installations_user", "user_id"),
)

# An integration groups a team's workflows (a definition's `integration` names it): declared
# from a file or POST /integrations, or made with defaults by the first workflow naming it.
integrations = Table(
    "integrations",
    metadata,
    Column("id", Text, primary_key=True),
    Column("team_id", Text, ForeignKey("teams.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("app", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("icon", Text),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("team_id", "name", name="uq_integrations_team_name"),
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
    # Execution ids are time-ordered, so (installation, id) orders a user's logs by time.
    Index("ix_executions_installation", "installation_id", "id"),
    # The logs (GET /logs and a workflow's): one team's, by a column, in time order
    # (created_at, id), then columns other filters test that never change, so that a
    # page and its count are found in the index alone (migration 0009).
    Index("ix_executions_team_created", "team_id", "created_at", "id"),
    Index("ix_executions_team_status", "team_id", "status", "created_at", "id",
          "workflow_id", "user_id"),
    Index("ix_executions_team_user", "team_id", "user_id", "created_at", "id", "workflow_id"),
    Index("ix_executions_team_workflow", "team_id", "workflow_id", "created_at", "id",
          "user_id", "version"),
    Index("ix_executions_team_stopped", "team_id", "stopped_at", "created_at", "id",
          "user_id", "workflow_id"),
    # The claim's walk, installation by installation, each one's oldest first; claimable
    # or not is read in the index (status, lease). Also counts the queue (migrations 0013,
    # 0016). Waiting executions are not in it: they wait in their own, by wake time.
    Index(
        "ix_executions_claim",
        "installation_id",
        "id",
        "status",
        "lease_expires",
        sqlite_where=text("status IN ('queued', 'running')"),
        postgresql_where=text("status IN ('queued', 'running')"),
    ),
    # A waiting execution's wake time is in lease_expires (it has no lease owner).
    Index(
        "ix_executions_waiting",
        "lease_expires",
        sqlite_where=text("status = 'waiting'"),
        postgresql_where=text("status = 'waiting'"),
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
    # The item's index in each enclosing loop ("3", "3.0"); NULL outside loops.
    Column("item", Text),
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

# A failed execution's notification to its team's error stream, inserted in the
# transaction that commits the failure (only when the team has a stream), delivered by
# the "error stream" periodic job (services/error_stream.py). One per execution.
_OUTBOX_PENDING = text("state = 'pending'")
error_outbox = Table(
    "error_outbox",
    metadata,
    Column("execution_id", Text, primary_key=True),
    Column("team_id", Text, nullable=False),
    Column("workflow_id", Text, nullable=False),
    Column("installation_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("mode", Text, nullable=False),
    Column("error", LargeBinary),  # the execution's error JSON, as stored (redacted)
    Column("started_at", BigInteger),
    Column("stopped_at", BigInteger, nullable=False),
    Column("state", Text, nullable=False),  # pending | delivered | dead
    Column("attempts", Integer, nullable=False),  # POSTs started (claims)
    Column("next_attempt_at", BigInteger, nullable=False),  # due, or claimed until
    Column("last_attempt_at", BigInteger),
    Column("last_error", Text),  # why the last attempt failed
    Column("finished_at", BigInteger),  # when it was delivered or given up
    Index("ix_error_outbox_due", "next_attempt_at",
          sqlite_where=_OUTBOX_PENDING, postgresql_where=_OUTBOX_PENDING),
    Index("ix_error_outbox_team", "team_id", "state", "finished_at"),
    Index("ix_error_outbox_finished", "finished_at"),
)

# The secret URL of each installation of a webhook workflow (docs/api.md "Webhooks"): made
# when first shown, replaced by a rotation. Kept in clear, like the URL it is: it is shown
# again on every read, and rotating it is the remedy for a leak.
webhook_tokens = Table(
    "webhook_tokens",
    metadata,
    Column("installation_id", Text, ForeignKey("installations.id", ondelete="CASCADE"),
           primary_key=True),
    Column("team_id", Text, ForeignKey("teams.id"), nullable=False),
    Column("token", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("uq_webhook_tokens_token", "token", unique=True),
)

# -- schedule triggers (docs/schedules.md, src/reflow/scheduler.py) --

# Installations changed since a scheduler last looked are found on this index.
Index("ix_installations_updated", installations.c.updated_at)

# The scheduler's view of each installation it has looked at: the schedule of its
# installed version (NULL cron: not a schedule workflow) and the next due time (NULL:
# nothing due: inactive, or not a schedule). ``installation_updated_at`` is the
# installation's updated_at this row was computed from: a differing one means the
# installation changed since (activated, deactivated, upgraded). No foreign key: the
# row is a cache the scheduler rebuilds, and must not stand in the way of a table rebuild.
_SCHEDULE_DUE = text("next_due_at IS NOT NULL")
schedule_states = Table(
    "schedule_states",
    metadata,
    Column("installation_id", Text, primary_key=True),
    Column("team_id", Text, nullable=False),
    Column("installation_updated_at", BigInteger, nullable=False),
    Column("version", Integer, nullable=False),
    Column("cron", Text),
    Column("timezone", Text),
    Column("missed", Text),
    Column("next_due_at", BigInteger),
    Index("ix_schedule_states_due", "next_due_at",
          sqlite_where=_SCHEDULE_DUE, postgresql_where=_SCHEDULE_DUE),
    Index("ix_schedule_states_team", "team_id", "next_due_at"),
)

# One row per due time fired: the unique claim that makes a due time fire once, however
# many schedulers run. Inserted in the transaction that inserts its execution.
schedule_claims = Table(
    "schedule_claims",
    metadata,
    Column("installation_id", Text, primary_key=True),
    Column("due_at", BigInteger, primary_key=True),
    Column("execution_id", Text, nullable=False),
    Column("fired_at", BigInteger, nullable=False),
    Index("ix_schedule_claims_due", "due_at"),
    sqlite_with_rowid=False,
)

# -- apps and end users' credentials (docs/credentials.md, services/credentials.py) --

# A third-party app a team's users connect: its declaration (canonical JSON, compared by
# digest on re-apply) and the columns lists need.
apps = Table(
    "apps",
    metadata,
    Column("id", Text, primary_key=True),
    Column("team_id", Text, ForeignKey("teams.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("display_name", Text, nullable=False),
    Column("auth_kind", Text, nullable=False),
    Column("icon", Text),
    Column("definition", LargeBinary, nullable=False),
    Column("digest", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("team_id", "name", name="uq_apps_team_name"),
)

# A user's credential for an app. ``sealed`` is the Fernet token (REFLOW_SECRET_KEY) of
# the JSON of every value the user gave (and OAuth tokens): nothing of it is stored in
# clear. ``health`` is ok | needs_reconnect (with why, and since when); ``expires_at``
# is an OAuth access token's expiry; ``version`` grows with every change of ``sealed``,
# so a writer can replace exactly the value it read.
credentials = Table(
    "credentials",
    metadata,
    Column("id", Text, primary_key=True),
    Column("team_id", Text, ForeignKey("teams.id"), nullable=False),
    Column("user_id", Text, ForeignKey("users.id"), nullable=False),
    Column("app", Text, nullable=False),
    Column("sealed", Text, nullable=False),
    Column("health", Text, nullable=False, server_default=text("'ok'")),
    Column("health_reason", Text),
    Column("health_changed_at", BigInteger),
    Column("expires_at", BigInteger),
    Column("version", Integer, nullable=False, server_default=text("1")),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_credentials_user_app", "team_id", "user_id", "app", "created_at"),
)

# The credentials an installation is pinned to (a JSON list of credential ids; NULL: none),
# preferred over the user's latest credential for the same app.
installations.append_column(Column("credential_ids", Text))

# -- OAuth connections (docs/credentials.md "OAuth", services/oauth.py) --

# A connect flow's pending state: the SHA-256 of the state handed to the provider (the
# state itself is a Fernet token holding the PKCE verifier); deleted when used.
oauth_states = Table(
    "oauth_states",
    metadata,
    Column("state_hash", Text, primary_key=True),
    Column("team_id", Text, ForeignKey("teams.id"), nullable=False),
    Column("user_id", Text, nullable=False),
    Column("app", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_oauth_states_expires", "expires_at"),
)

# What happened to a credential (credential.connected, credential.needs_reconnect, ...),
# listed by GET /credentials/events and `reflow credentials events`.
credential_events = Table(
    "credential_events",
    metadata,
    Column("id", Text, primary_key=True),
    Column("team_id", Text, ForeignKey("teams.id"), nullable=False),
    Column("credential_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("app", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_credential_events_team", "team_id", "created_at"),
)

# One token refresh per credential at a time: the process holding the lease (owner, until)
# refreshes; after an auth failure none is tried before ``refresh_blocked_until`` (a
# cool-down doubling with ``refresh_failures``).
credentials.append_column(Column("refresh_owner", Text))
credentials.append_column(Column("refresh_until", BigInteger))
credentials.append_column(Column("refresh_blocked_until", BigInteger))
credentials.append_column(Column("refresh_failures", Integer, nullable=False,
                                 server_default=text("0")))
# Where the OAuth callback sends the user's browser back (NULL: a JSON answer instead).
teams.append_column(Column("oauth_redirect_url", Text))
# A notification that is not a failed execution (kind NULL): ``credential.needs_reconnect``
# with its JSON body in ``payload``.
error_outbox.append_column(Column("kind", Text))
error_outbox.append_column(Column("payload", LargeBinary))

# -- Headless installation (docs/api.md "Headless installation", services/headless.py) --

# The installation's configured field values: a JSON object by field name, where a secret
# field's value is {"$sealed": <Fernet token>} (NULL: nothing configured).
installations.append_column(Column("config", Text))

# A headless installation started for a user and an integration: which of its workflows
# (JSON list of parent ids) and which credentials to pin (JSON object, app -> credential
# id). Its id is the one GET /installations gives the user's installations of the
# integration, so start and complete agree with that listing.
headless_installations = Table(
    "headless_installations",
    metadata,
    Column("id", Text, primary_key=True),
    Column("team_id", Text, ForeignKey("teams.id"), nullable=False),
    Column("user_id", Text, ForeignKey("users.id"), nullable=False),
    Column("integration_id", Text, nullable=False),
    Column("workflow_ids", Text, nullable=False),
    Column("credential_ids", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# -- Bulk rerun (docs/api.md "Bulk rerun", services/reruns.py) --

# A job and its counts (recounted from its items in each transaction that changes them);
# ``filter`` and ``options`` are the JSON the API shows. A runner holds a job under a
# lease, like a worker holds an execution, so one process runs it at a time.
_RERUN_UNFINISHED = text("status IN ('queued', 'running')")
rerun_jobs = Table(
    "rerun_jobs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("team_id", Text, ForeignKey("teams.id"), nullable=False),
    Column("status", Text, nullable=False),
    Column("filter", Text, nullable=False),
    Column("options", Text, nullable=False),
    Column("total", Integer, nullable=False),
    Column("done", Integer, nullable=False, server_default=text("0")),
    Column("failed", Integer, nullable=False, server_default=text("0")),
    Column("cancelled", Integer, nullable=False, server_default=text("0")),
    Column("created_at", BigInteger, nullable=False),
    Column("started_at", BigInteger),
    Column("finished_at", BigInteger),
    Column("lease_owner", Text),
    Column("lease_expires", BigInteger),
    Index("ix_rerun_jobs_team", "team_id", "id"),
    Index("ix_rerun_jobs_unfinished", "id",
          sqlite_where=_RERUN_UNFINISHED, postgresql_where=_RERUN_UNFINISHED),
    Index("ix_rerun_jobs_finished", "finished_at"),
)

# The executions a job selected when it was created, in order (seq), and what became of
# each. The key (job, execution) keeps one job from rerunning an execution twice.
rerun_job_items = Table(
    "rerun_job_items",
    metadata,
    Column("job_id", Text, ForeignKey("rerun_jobs.id"), primary_key=True),
    Column("execution_id", Text, primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("state", Text, nullable=False),  # pending | done | failed | cancelled
    Column("new_execution_id", Text),
    Column("error", Text),
    Index("ix_rerun_job_items_seq", "job_id", "seq", unique=True),
    Index("ix_rerun_job_items_state", "job_id", "state", "seq"),
    sqlite_with_rowid=False,
)

# -- Retention (docs/operations.md "Retention", services/retention.py) --

# The latest version's ``retention`` (NULL: the team's window, no count, all steps kept),
# copied here when a version is stored so the purge reads no definition; and how far the
# step pass of ``keepSteps: failed`` went (steps of succeeded executions stopped before
# it are gone).
workflows.append_column(Column("retention_s", Integer))
workflows.append_column(Column("retention_keep", Integer))
workflows.append_column(Column("retention_keep_steps", Text))
workflows.append_column(Column("retention_steps_cursor", BigInteger))
