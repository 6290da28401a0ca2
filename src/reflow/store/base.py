"""The Store protocol: the narrow interface every backend implements.

All logic lives in the services above it. Every method that reads a team's data takes the
team id, so tenancy is enforced here and not remembered in each route.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from reflow.domain.apps import AppRecord, CredentialRecord
from reflow.domain.executions import ExecutionRecord, StepRecord
from reflow.domain.records import (
    ApiKey,
    ConfigChange,
    HeadlessInstallation,
    Installation,
    InstallationSettings,
    Integration,
    Team,
    User,
    Workflow,
    WorkflowVersion,
)
from reflow.domain.reruns import (
    ItemResult,
    PendingItem,
    RerunFilter,
    RerunItem,
    RerunJob,
    RerunSource,
)
from reflow.domain.retention import Retention, TeamWindow, WorkflowRetention
from reflow.domain.schedules import (
    Advance,
    DueSchedule,
    Fire,
    InstallationChange,
    ScheduleListing,
    ScheduleState,
)
from reflow.errors import Conflict
from reflow.store.log_search import LogPage, LogSearch


def unfinished_conflict(count: int, of: str = "this user") -> Conflict:
    """Why a user's logs (or an installation) cannot be deleted yet: some of its
    executions have not finished (deleting one under the worker that runs it would lose
    its end)."""
    return Conflict(f"{count} execution(s) of {of} are still queued, running or "
                    "waiting: cancel them (POST /executions/{executionId}/cancel) or let "
                    "them finish, then try again")


# The hints a store can pass between processes (``Store.listen``).
HINTS = ("queued", "finished", "revoked")


@dataclass(frozen=True, slots=True)
class ExecutionQuery:
    """Which executions a logs page shows."""

    team_id: str
    workflow_id: str
    installation_id: str | None = None
    failed_only: bool = False
    descending: bool = True
    offset: int = 0
    limit: int = 10


@dataclass(frozen=True, slots=True)
class Activity:
    """What a workflow did, counted over the executions still kept (the log retention)."""

    runs: int
    errors: int  # failed runs
    actions: int  # steps of the given blocks that ran (reused ones of a rerun not counted)


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """What a webhook token names: the installation, and whether it or its user was
    deleted."""

    installation: Installation
    user_deleted: bool
    installation_deleted: bool = False


@dataclass(frozen=True, slots=True)
class ErrorStreamSetting:
    """A team's error stream as stored: its URL and its signing secret, sealed (both None
    when the team streams no errors)."""

    url: str | None
    sealed_secret: str | None


@dataclass(frozen=True, slots=True)
class ErrorNotification:
    """A failed execution's notification, claimed for delivery, with where it goes now
    (``url`` None: the team stopped streaming errors since)."""

    execution_id: str
    team_id: str
    workflow_id: str
    installation_id: str
    user_id: str
    version: int
    mode: str
    error: bytes | None  # the execution's error JSON, as stored
    started_at: int | None
    stopped_at: int
    attempts: int  # this one included
    url: str | None
    sealed_secret: str | None
    # A notification that is not a failed execution (``credential.needs_reconnect``,
    # services/oauth.py): its kind, and its JSON body as sent; ``execution_id`` is then
    # the event's id. None for a failed execution.
    kind: str | None = None
    payload: bytes | None = None


@dataclass(frozen=True, slots=True)
class CredentialEvent:
    """Something that happened to a credential (``credential.connected``,
    ``credential.needs_reconnect``, ...): listed by the API and the CLI."""

    id: str
    team_id: str
    credential_id: str
    user_id: str
    app: str
    kind: str
    message: str  # never holds a value of the credential
    created_at: int


@dataclass(frozen=True, slots=True)
class ErrorStreamStats:
    """How a team's notifications fared (those still kept)."""

    pending: int
    delivered: int
    dead: int
    last_delivered_at: int | None
    # The latest failed attempt of a notification not delivered: execution, why, when.
    last_failure: tuple[str, str, int] | None


class Store(Protocol):
    """Persistence for reflow; implementations: SQLite (embedded) and PostgreSQL (scale-out).

    How a backend starts (a runner lock, a pool, a listener) is its own business, not the
    protocol's: ``reflow.store.backends`` opens one from the settings.
    """

    async def close(self) -> None:
        """Release connections."""

    # Teams and keys
    async def count_teams(self) -> int:
        """How many teams exist (zero means a new database)."""
    async def create_team(self, team: Team) -> None:
        """Insert a team."""
    async def get_team(self, team_id: str) -> Team | None:
        """A team by id."""
    async def list_teams(self) -> list[Team]:
        """Every team, oldest first."""
    async def get_team_env(self, team_id: str) -> bytes | None:
        """The team's expression env as stored (a JSON object); None when unset or no team."""
    async def set_team_env(self, team_id: str, env: bytes | None) -> bool:
        """Replace the team's expression env (None clears it); False when no such team."""
    async def create_api_key(self, key: ApiKey, key_hash: str) -> None:
        """Insert a key (only its hash is stored)."""
    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        """The live (not revoked) key with this hash."""
    async def list_api_keys(self, team_id: str) -> list[ApiKey]:
        """A team's keys, revoked ones included."""
    async def revoke_api_key(self, team_id: str, id_or_prefix: str, now: int) -> bool:
        """Revoke a live key; False when there was none."""

    # Users
    async def create_user(self, user: User) -> None:
        """Insert a user; a taken username raises Conflict."""
    async def get_user(self, team_id: str, id_or_username: str) -> User | None:
        """A live (not deleted) user by id or username."""
    async def get_user_any(self, team_id: str, user_id: str) -> User | None:
        """A user by id, live or deleted (whose logs may still be deleted)."""
    async def list_users(self, team_id: str, workflow_id: str | None = None) -> list[User]:
        """A team's live users, oldest first; with ``workflow_id``, only those with an
        installation of that workflow (active or not)."""
    async def taken_usernames(self, team_id: str, usernames: Sequence[str]) -> set[str]:
        """Which of ``usernames`` live users of the team hold."""
    async def create_users(self, users: Sequence[User]) -> None:
        """Insert every user or none, in one transaction; a taken username raises
        Conflict and stores nothing."""
    async def update_user(self, user: User) -> bool:
        """Store a live user's username and full name; False when there is no such live
        user; a username another live user holds raises Conflict."""
    async def delete_user(self, team_id: str, user_id: str, now: int) -> bool:
        """Mark a live user deleted, deactivate its installations and delete its
        credentials and pending OAuth states, in one transaction; its row and executions
        stay. False when there was no such live user."""
    async def deactivate_user_installations(self, team_id: str, user_id: str, now: int) -> int:
        """Deactivate every active installation of a user; how many were active."""
    async def delete_user_executions(self, team_id: str, user_id: str) -> int:
        """Delete every finished execution of a user with its steps and idempotency keys,
        in one transaction; how many. Raises Conflict, deleting nothing, while any of the
        user's executions is queued, running or waiting."""

    # Workflows and versions
    async def create_workflow(self, workflow: Workflow, version: WorkflowVersion) -> None:
        """Insert a workflow with its first version; a taken name raises Conflict."""
    async def add_version(
        self, workflow: Workflow, definition: bytes, digest: str, now: int
    ) -> WorkflowVersion:
        """Append the next version (name and integration follow the definition)."""
    async def get_workflow(self, team_id: str, id_or_name: str) -> Workflow | None:
        """A workflow by id or name."""
    async def list_workflows(self, team_id: str) -> list[Workflow]:
        """A team's workflows by name."""
    async def get_version(
        self, team_id: str, workflow_id: str, version: int
    ) -> WorkflowVersion | None:
        """One version of a workflow."""
    async def list_versions(self, team_id: str, workflow_id: str) -> list[WorkflowVersion]:
        """Every version of a workflow, oldest first."""

    # Installations
    async def get_installation(
        self, team_id: str, workflow_id: str, user_id: str
    ) -> Installation | None:
        """A user's installation of a workflow."""
    async def get_installation_by_id(
        self, team_id: str, installation_id: str
    ) -> Installation | None:
        """An installation by its own id."""
    async def get_installations(
        self, team_id: str, installation_ids: Sequence[str]
    ) -> list[Installation]:
        """The team's live installations among these ids, in no particular order."""
    async def list_installations(
        self, team_id: str, *, user_id: str | None = None, workflow_id: str | None = None
    ) -> list[Installation]:
        """A team's installations, oldest first; only a user's or a workflow's when given."""
    async def save_installation(self, installation: Installation) -> None:
        """Insert or update an installation."""

    # Executions
    async def insert_execution(
        self, execution: ExecutionRecord, idempotency_key: str | None = None
    ) -> None:
        """Insert an execution with its steps (and idempotency key), in one transaction.

        A key already used in the team raises Conflict and stores nothing.
        """
    async def find_idempotency_key(self, team_id: str, key: str) -> str | None:
        """The execution an idempotency key was first used for, if any."""
    async def save_execution(
        self, execution: ExecutionRecord, new_steps: Sequence[StepRecord], *, owner: str
    ) -> None:
        """Update an execution's status fields and append steps, in one transaction.

        Fenced: written only while ``owner`` holds the execution's lease; otherwise nothing
        is written and LeaseLost is raised (a stalled worker cannot overwrite the worker
        that took its execution over).
        """
    async def request_cancel(
        self, team_id: str, execution_id: str, now: int, error: bytes,
        waiting_error: bytes | None = None,
    ) -> ExecutionRecord | None:
        """Cancel a queued or waiting execution (status ``cancelled``, ``error`` stored, or
        ``waiting_error`` for a waiting one) or set the cancel flag of a running one, in one
        transaction; returns the execution as it is afterwards (None when the team has no
        such execution)."""
    async def cancel_requests(self, ids: Sequence[str]) -> list[str]:
        """The ids among ``ids`` whose cancel was requested."""
    async def claim_executions(
        self, owner: str, now: int, lease_until: int, limit: int
    ) -> list[ExecutionRecord]:
        """Lease up to ``limit`` queued or abandoned executions, with their steps.

        Fair: the claim takes the oldest of each installation before the second oldest of
        any, so one user's burst does not starve another user's single run. Across
        claims the installations take turns: a claim starts at the installation after
        the one the store's previous claim took from last (in id order, wrapping
        around), so even one slot at a time serves each installation with work once per
        round. Its cost is a few index seeks per execution taken, whatever the queue's
        depth.
        """
    async def renew_leases(self, owner: str, ids: Sequence[str], lease_until: int) -> list[str]:
        """Extend this owner's leases; returns the ids whose lease it no longer holds."""
    async def release_leases(self, owner: str, ids: Sequence[str]) -> int:
        """Give back this owner's leases of unfinished executions (a graceful stop): they
        are claimable at once, and the claim does not count a resume (nobody died)."""
    async def create_first_team(self, team: Team) -> bool:
        """Insert ``team`` only when there is no team yet, atomically even when several
        processes bootstrap one new database at once; False when a team existed."""
    async def listen(
        self, on_hint: Callable[[str, str], None], hints: Collection[str] = HINTS
    ) -> None:
        """Call ``on_hint(hint, payload)`` for the ``hints`` other processes send:
        ``queued``, ``finished`` with an execution id, ``revoked`` with a key hash.

        Ask only for what the process acts on: each hint heard costs the database and
        this process work for every execution (a worker needs only ``queued``). A hint
        may be lost; whoever acts on one also polls. A backend without a way to hear
        other processes (SQLite) never calls it.
        """
    async def ping(self) -> None:
        """Raise StoreError unless the database answers and its schema is current."""
    async def queue_depth(self) -> int:
        """Queued executions, for /metrics."""
    async def wake_waiting(self, now: int, limit: int) -> int:
        """Queue again (and hint the workers) up to ``limit`` waiting executions whose wake
        time is at or before ``now``, soonest first; how many."""
    async def waiting(self) -> tuple[int, int | None]:
        """How many executions wait, and the soonest wake time (ms) among them."""
    async def get_execution(self, team_id: str, execution_id: str) -> ExecutionRecord | None:
        """One execution with its steps and the ids of its reruns."""
    async def get_executions(
        self, team_id: str, execution_ids: Sequence[str], *, steps: bool
    ) -> list[ExecutionRecord]:
        """The team's executions among these ids, in no particular order; with their steps
        and the ids of their reruns only when ``steps`` (a batch of bulk rerun sources)."""
    async def execution_status(self, team_id: str, execution_id: str) -> str | None:
        """Just the status (for waiting on a run)."""
    async def list_executions(self, query: ExecutionQuery) -> list[ExecutionRecord]:
        """A page of executions with their steps and reruns."""
    async def workflow_activity(
        self, team_id: str, workflow_id: str, installation_id: str | None,
        action_blocks: Sequence[str],
    ) -> Activity:
        """Count a workflow's executions (one installation's when given), its failed ones,
        and the steps run of the ``action_blocks`` ids, in one query."""
    async def purge_executions(self, stopped_before: int, limit: int) -> int:
        """Delete up to ``limit`` finished executions stopped before a time, with steps."""

    # Retention (services/retention.py). Each purge_* deletes at most ``limit`` finished
    # executions (never a queued, running or waiting one) with their steps and keys, read
    # by id on an index, and answers how many; each count_* counts what it would delete.
    async def set_team_retention(self, team_id: str, window_s: int | None) -> bool:
        """Set the team's window in seconds (None: the deployment's); False: no team."""
    async def set_workflow_retention(
        self, team_id: str, workflow_id: str, retention: Retention
    ) -> None:
        """Store the workflow's latest definition's retention."""
    async def retention_policies(self) -> tuple[list[TeamWindow], list[WorkflowRetention]]:
        """Every team with its window, and every workflow with a retention of its own."""
    async def purge_team_executions(
        self, team_id: str, stopped_before: int, skip_workflows: Sequence[str], limit: int
    ) -> int:
        """The team's executions stopped before a time, but the ``skip_workflows``'."""
    async def count_team_executions(
        self, team_id: str, stopped_before: int, skip_workflows: Sequence[str]
    ) -> int:
        """How many purge_team_executions would delete."""
    async def purge_workflow_executions(
        self, team_id: str, workflow_id: str, stopped_before: int, limit: int
    ) -> int:
        """The workflow's executions stopped before a time."""
    async def count_workflow_executions(
        self, team_id: str, workflow_id: str, stopped_before: int
    ) -> int:
        """How many purge_workflow_executions would delete."""
    async def purge_workflow_excess(
        self, team_id: str, workflow_id: str, keep: int, limit: int
    ) -> int:
        """The workflow's finished executions older than its ``keep`` newest (of any
        status)."""
    async def count_workflow_excess(self, team_id: str, workflow_id: str, keep: int) -> int:
        """How many purge_workflow_excess would delete."""
    async def drop_succeeded_steps(
        self, team_id: str, workflow_id: str, since: int, until: int, limit: int
    ) -> tuple[int, int | None]:
        """Delete the steps of up to ``limit`` succeeded executions of the workflow
        stopped in [since, until) that have any, in completion order; how many, and the
        last one's stop time (None: none left)."""
    async def count_succeeded_steps(
        self, team_id: str, workflow_id: str, since: int, until: int
    ) -> int:
        """How many executions drop_succeeded_steps would strip."""
    async def set_steps_cursor(self, team_id: str, workflow_id: str, until: int) -> None:
        """Record that the step pass went up to ``until``."""
    async def give_back_space(self, pages: int) -> int:
        """After a purge: give up to ``pages`` of the space it freed back to the file
        system, when the store holds more free space than the next inserts reuse soon
        (SQLite); how many pages."""

    # Integrations, and installations deleted and revived (W6). A deleted installation is
    # invisible to get_installation, get_installation_by_id, list_installations and
    # list_users(workflow_id=...): only get_deleted_installation finds it.
    async def save_integration(self, integration: Integration) -> Integration:
        """Insert an integration, or update the one of the same name (its id and
        created_at are kept); the integration as stored."""
    async def ensure_integration(self, integration: Integration) -> None:
        """Insert an integration unless the team has one of that name already."""
    async def get_integration(self, team_id: str, id_or_name: str) -> Integration | None:
        """An integration by id or name (the id wins)."""
    async def list_integrations(self, team_id: str) -> list[Integration]:
        """A team's integrations, by name."""
    async def install(self, installation: Installation) -> Installation:
        """Insert a new installation, or revive the deleted one of the same workflow and
        user (its id kept; version, active, times and deletion from ``installation``).
        When a live one exists already (a concurrent install), that one is answered."""
    async def delete_installation(self, team_id: str, installation_id: str, now: int) -> bool:
        """Mark a live installation deleted and inactive, in one transaction; its
        executions stay. False when there was none; Conflict, changing nothing, while any
        of its executions is queued, running or waiting."""
    async def get_deleted_installation(
        self, team_id: str, *, installation_id: str | None = None,
        workflow_id: str | None = None, user_id: str | None = None,
    ) -> Installation | None:
        """A deleted installation by its id, or by its workflow and user."""

    # Error stream (services/error_stream.py). insert_execution and save_execution also
    # write a failed execution's notification in their transaction when its team streams
    # errors (an ``error_outbox`` row, at most one per execution).
    async def get_error_stream(self, team_id: str) -> ErrorStreamSetting | None:
        """The team's error stream (None when there is no such team)."""
    async def set_error_stream(self, team_id: str, url: str, sealed_secret: str) -> bool:
        """Set the team's error stream; False when there is no such team."""
    async def clear_error_stream(self, team_id: str) -> bool:
        """Stop the team's error stream and delete its notifications, in one transaction;
        False when there is no such team."""
    async def claim_error_notifications(
        self, now: int, claimed_until: int, limit: int, per_team: int
    ) -> list[ErrorNotification]:
        """Claim up to ``limit`` due notifications, at most ``per_team`` of a team, each
        team's oldest first; each counts an attempt and is due again at ``claimed_until``
        unless settled before. Concurrent claimers (processes) take different ones."""
    async def error_notification_delivered(self, execution_id: str, now: int) -> None:
        """Mark a notification delivered."""
    async def error_notification_retry(
        self, execution_id: str, next_attempt_at: int, error: str
    ) -> None:
        """Record a failed attempt; the notification is due again at ``next_attempt_at``."""
    async def error_notification_dead(self, execution_id: str, now: int, error: str) -> None:
        """Give a notification up after its last failed attempt."""
    async def pause_error_stream(self, team_id: str, until: int) -> None:
        """Claim none of the team's notifications before ``until`` (its receiver is down),
        or before a later time it was paused to already."""
    async def drop_error_notification(self, execution_id: str) -> None:
        """Delete a notification (its team stopped streaming errors)."""
    async def purge_error_notifications(self, finished_before: int, limit: int) -> int:
        """Delete up to ``limit`` delivered or dead notifications settled before a time."""
    async def error_stream_stats(self, team_id: str) -> ErrorStreamStats:
        """Counts of the team's notifications by state, and its latest failure."""

    # Webhooks (services/webhooks.py). Delivery ids are idempotency keys: inserted with
    # their execution (insert_execution), purged with it.
    async def ensure_webhook_token(
        self, team_id: str, installation_id: str, token: str, now: int
    ) -> str:
        """The installation's webhook token: the stored one, else ``token``, stored now
        (two callers at once both get the one stored first)."""
    async def rotate_webhook_token(
        self, team_id: str, installation_id: str, token: str, now: int
    ) -> None:
        """Replace (or set) the installation's webhook token: the old one names nothing."""
    async def find_webhook(self, token: str) -> WebhookTarget | None:
        """The installation a webhook token names, in any team (the token is the secret)."""

    # Schedules (src/reflow/scheduler.py): a state per installation the scheduler has
    # looked at, and one claim per due time fired (docs/schedules.md).
    async def installations_updated_max(self) -> int | None:
        """The latest ``updated_at`` of any installation (None when there is none)."""
    async def changed_installations(self, since: int, limit: int) -> list[InstallationChange]:
        """Installations (of every team) updated at or after ``since`` whose schedule state
        is missing or was computed from another update, oldest update first."""
    async def save_schedule_states(self, states: Sequence[ScheduleState]) -> None:
        """Insert or replace states; one computed from the same installation update is
        kept (another scheduler wrote it, and may have moved it since)."""
    async def due_schedules(self, now: int, limit: int) -> list[DueSchedule]:
        """States due at or before ``now`` (every team), earliest first, with their
        installations as they are now."""
    async def advance_schedule(
        self, seen: ScheduleState, next_due_at: int | None, fire: Fire | None = None
    ) -> Advance:
        """In one transaction: move the state from ``seen.next_due_at`` to
        ``next_due_at`` unless another scheduler moved it first (LOST, nothing written);
        with ``fire``, only while the installation is as seen, active and of a live user,
        and then claim the due time and insert its queued execution (FIRED), unless that
        due time was claimed already (MOVED)."""
    async def list_schedules(self, team_id: str) -> list[ScheduleListing]:
        """A team's active schedules, next due first."""
    async def prune_schedule_claims(self, before: int, limit: int) -> int:
        """Delete up to ``limit`` claims of due times before ``before``."""

    # Log search (GET /logs, store/log_search.py): one team's executions by filters.
    async def search_logs(self, search: LogSearch) -> LogPage:
        """A page of the team's executions matching ``search`` in its order, with the
        user's and workflow's names, and how many match (counted up to its cap)."""
    async def match_user_ids(self, team_id: str, text: str, limit: int) -> list[str]:
        """Up to ``limit`` ids of the team's users (deleted ones too) whose id, username or
        full name contains ``text`` (lower case)."""
    async def explain_log_search(self, search: LogSearch) -> list[str]:
        """The database's plan for each statement of the search (page, count), one text
        each: for the tests and the benchmark that check every search uses an index."""

    # Apps and credentials (services/apps.py, services/credentials.py, credentials.sql).
    async def save_app(self, app: AppRecord) -> AppRecord:
        """Insert the app, or update the team's app of that name to it (keeping its id and
        creation time); the app as stored."""
    async def get_app(self, team_id: str, name: str) -> AppRecord | None:
        """The team's app of this name."""
    async def list_apps(self, team_id: str) -> list[AppRecord]:
        """The team's apps, by name."""
    async def create_credential(self, credential: CredentialRecord) -> None:
        """Insert a credential."""
    async def list_credentials(self, team_id: str, user_id: str) -> list[CredentialRecord]:
        """The user's credentials, oldest first, each with its app's display name."""
    async def credential_apps(self, team_id: str, ids: Sequence[str]
                              ) -> dict[str, tuple[str, str]]:
        """Of these credential ids, the team's: id -> (user id, app)."""
    async def delete_credential(self, team_id: str, user_id: str, credential_id: str) -> bool:
        """Delete one of the user's credentials; False when it has none of that id."""
    async def run_credentials(
        self, team_id: str, user_id: str, installation_id: str
    ) -> tuple[list[str], list[CredentialRecord]]:
        """What a run of the installation may use: the credential ids it is pinned to (in
        order), and the user's credentials, newest first."""
    async def pin_credentials(
        self, team_id: str, installation_id: str, credential_ids: Sequence[str]
    ) -> bool:
        """Pin the installation to these credentials (an empty list unpins it)."""
    async def sealed_batch(self, kind: str, after: str, limit: int) -> list[tuple[str, bytes]]:
        """Up to ``limit`` sealed values of ``kind`` (``credentials``, ``error_stream``:
        a team's signing secret, ``triggers``: an execution's trigger holding sealed
        parts) with keys after ``after``, by key: (key, value as stored, as bytes)."""
    async def reseal(self, kind: str, key: str, old: bytes, new: bytes) -> bool:
        """Replace a sealed value by its re-encryption, only if it is still ``old``."""

    # OAuth connections (services/oauth.py, oauth.sql).
    async def insert_oauth_state(self, team_id: str, state_hash: str, user_id: str, app: str,
                                 created_at: int, expires_at: int) -> None:
        """Remember a connect flow's state (by its hash) until it is used or expires."""
    async def take_oauth_state(self, state_hash: str) -> tuple[str, str, str, int] | None:
        """Delete the state and return (team, user, app, expires_at); None when it is
        unknown or used already (single use: of concurrent callers, one gets it)."""
    async def purge_oauth_states(self, before: int, limit: int) -> int:
        """Delete up to ``limit`` states that expired before ``before``."""
    async def get_oauth_redirect(self, team_id: str) -> str | None:
        """Where the team's OAuth callback redirects (None: not configured)."""
    async def set_oauth_redirect(self, team_id: str, url: str | None) -> bool:
        """Set (or clear) the team's OAuth redirect URL; False when there is no such team."""
    async def get_credential(self, team_id: str, credential_id: str) -> CredentialRecord | None:
        """One of the team's credentials, with its app's display name."""
    async def save_connected_credential(
        self, credential: CredentialRecord, replace_id: str | None, event: CredentialEvent
    ) -> bool:
        """Store a connect flow's tokens and the event, in one transaction: as new values
        of ``replace_id`` (healthy again, cool-down cleared) or, when None, as a new
        credential. False when ``replace_id`` is gone (nothing written)."""
    async def claim_credential_refresh(self, credential_id: str, version: int, owner: str,
                                       until: int, now: int) -> bool:
        """Take the credential's refresh lease until ``until``: only while it is at
        ``version``, no one else's lease runs and no cool-down does."""
    async def credential_refreshed(self, credential_id: str, version: int, owner: str,
                                   sealed: str, expires_at: int | None, now: int,
                                   event: CredentialEvent | None = None) -> bool:
        """Write refreshed values (access and refresh token together) under ``owner``'s
        lease and the version read; healthy, lease and cool-down cleared; with ``event``
        in the same transaction. False when the lease or version moved on."""
    async def credential_refresh_refused(
        self, credential_id: str, version: int, owner: str, reason: str, blocked_until: int,
        now: int, event: CredentialEvent | None, notification: bytes | None,
    ) -> bool:
        """Mark the credential needs_reconnect (the app refused its refresh), no refresh
        before ``blocked_until``; with ``event`` and, when the team streams errors, the
        ``notification`` (the event's JSON) in the outbox, all in one transaction."""
    async def release_credential_refresh(self, credential_id: str, owner: str,
                                         blocked_until: int) -> None:
        """Free the refresh lease after a passing failure; none tried before
        ``blocked_until``."""
    async def add_credential_event(self, event: CredentialEvent) -> None:
        """Record a credential event."""
    async def list_credential_events(self, team_id: str, user_id: str | None,
                                     limit: int) -> list[CredentialEvent]:
        """The team's (or one user's) credential events, newest first."""

    # Headless installation (services/headless.py, installation_config.sql).
    async def save_headless_installation(self, started: HeadlessInstallation) -> None:
        """Insert the headless installation, or replace what an earlier start of the same
        id chose (workflows, credentials, update time; its creation time is kept)."""
    async def get_headless_installation(
        self, team_id: str, installation_id: str
    ) -> HeadlessInstallation | None:
        """The team's headless installation of this id."""
    async def installation_settings(
        self, team_id: str, installation_ids: Sequence[str]
    ) -> dict[str, InstallationSettings]:
        """The configured values and pinned credentials of these installations of the team
        (deleted ones and other teams' left out), by installation id."""
    async def configure_installations(
        self, team_id: str, changes: Sequence[ConfigChange], now: int
    ) -> int:
        """Write each installation's configured values and pinned credentials (and
        activate it when asked), all in one transaction, moving ``updated_at`` to ``now``;
        how many installations were written (a deleted one is not)."""

    # Bulk rerun jobs (services/reruns.py, reruns.sql).
    async def rerun_sources(
        self, team_id: str, selection: RerunFilter, limit: int
    ) -> list[RerunSource]:
        """The team's executions the filter selects, oldest first, at most ``limit``."""
    async def count_rerun_sources(self, team_id: str, selection: RerunFilter, cap: int) -> int:
        """How many executions the filter selects, counted up to ``cap``."""
    async def create_rerun_job(self, job: RerunJob, execution_ids: Sequence[str]) -> None:
        """Insert the job and one pending item per execution (in this order), in one
        transaction."""
    async def get_rerun_job(self, team_id: str, job_id: str) -> RerunJob | None:
        """One of the team's jobs."""
    async def list_rerun_jobs(
        self, team_id: str, before: str | None, limit: int
    ) -> list[RerunJob]:
        """The team's jobs, newest first (those older than job ``before``, given one)."""
    async def rerun_job_results(
        self, team_id: str, job_id: str, offset: int, limit: int
    ) -> list[RerunItem]:
        """A page of the team's job's items from ``seq`` = ``offset``, in order, each with
        its new execution's status."""
    async def claim_rerun_job(self, owner: str, now: int, lease_until: int) -> RerunJob | None:
        """Lease a job to ``owner`` until ``lease_until``: the one it holds, else the
        oldest queued or running one no one holds or whose lease lapsed (concurrent
        claimers take different jobs)."""
    async def pending_rerun_items(
        self, job: RerunJob, key_prefix: str, limit: int
    ) -> list[PendingItem]:
        """The job's next pending items in order, each with the execution stored under
        idempotency key ``key_prefix + job id + ":" + execution id``."""
    async def finish_rerun_items(
        self, job_id: str, results: Sequence[ItemResult], now: int
    ) -> RerunJob | None:
        """Record the items' results, recount the job and end it when no item is
        pending, in one transaction; the job as it is then."""
    async def cancel_rerun_job(self, team_id: str, job_id: str, now: int) -> RerunJob | None:
        """Cancel the team's job: its pending items cancelled, the job ``cancelled``
        unless it had ended; the job as it is then (None: no such job)."""
    async def release_rerun_jobs(self, owner: str) -> int:
        """Give back the owner's job leases (a graceful stop): claimable at once."""
    async def purge_rerun_jobs(self, finished_before: int, limit: int) -> int:
        """Delete up to ``limit`` jobs that ended before ``finished_before``, with their
        items."""
