"""The Store protocol: the narrow interface every backend implements.

All logic lives in the services above it. Every method that reads a team's data takes the
team id, so tenancy is enforced here and not remembered in each route.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from reflow.domain.executions import ExecutionRecord, StepRecord
from reflow.domain.records import ApiKey, Installation, Team, User, Workflow, WorkflowVersion
from reflow.errors import Conflict


def unfinished_conflict(count: int) -> Conflict:
    """Why a user's logs cannot be deleted yet: some of its executions have not finished
    (deleting one under the worker that runs it would lose its end)."""
    return Conflict(f"{count} execution(s) of this user are still queued, running or "
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
        """Mark a live user deleted and deactivate its installations, in one transaction;
        its rows and executions stay. False when there was no such live user."""
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
        self, team_id: str, execution_id: str, now: int, error: bytes
    ) -> ExecutionRecord | None:
        """Cancel a queued execution (status ``cancelled``, ``error`` stored) or set the
        cancel flag of a running or waiting one, in one transaction; returns the execution
        as it is afterwards (None when the team has no such execution)."""
    async def cancel_requests(self, ids: Sequence[str]) -> list[str]:
        """The ids among ``ids`` whose cancel was requested."""
    async def claim_executions(
        self, owner: str, now: int, lease_until: int, limit: int
    ) -> list[ExecutionRecord]:
        """Lease up to ``limit`` queued or abandoned executions, with their steps.

        Fair: the claim takes the oldest of each installation before the second oldest of
        any, so one user's burst does not starve another user's single run.
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
    async def get_execution(self, team_id: str, execution_id: str) -> ExecutionRecord | None:
        """One execution with its steps and the ids of its reruns."""
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
