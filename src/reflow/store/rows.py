"""Rows as records, and records as statement parameters: the same for every backend.

Rows are read by column name (sqlite3.Row and asyncpg's Record both answer ``row["id"]``),
so a column added by a migration cannot shift another.
"""

from __future__ import annotations

from typing import Any, Protocol

from reflow.domain.executions import (
    ExecutionRecord,
    ExecutionStatus,
    StepRecord,
    StepStatus,
    TriggerMode,
)
from reflow.domain.records import ApiKey, Installation, Team, User, Workflow, WorkflowVersion


class Row(Protocol):
    """A database row whose columns are read by name."""

    def __getitem__(self, name: str) -> Any:
        """The value of column ``name``."""


def team_of(row: Row) -> Team:
    retention = row["log_retention_s"]
    return Team(row["id"], row["name"], row["created_at"], None if retention is None else retention)


def key_of(row: Row) -> ApiKey:
    return ApiKey(row["id"], row["team_id"], row["name"], row["prefix"], row["created_at"],
                  row["revoked_at"])


def user_of(row: Row) -> User:
    return User(row["id"], row["team_id"], row["username"], row["full_name"], row["created_at"])


def workflow_of(row: Row) -> Workflow:
    return Workflow(row["id"], row["team_id"], row["name"], row["integration"],
                    row["latest_version"], row["created_at"], row["updated_at"])


def version_of(row: Row) -> WorkflowVersion:
    return WorkflowVersion(row["workflow_id"], row["version"], row["definition"],
                           row["digest"], row["created_at"])


def installation_of(row: Row) -> Installation:
    return Installation(row["id"], row["team_id"], row["workflow_id"], row["user_id"],
                        row["installed_version"], bool(row["active"]), row["installed_at"],
                        row["updated_at"])


def step_of(row: Row) -> StepRecord:
    return StepRecord(
        seq=row["seq"],
        block_id=row["block_id"],
        status=StepStatus(row["status"]),
        attempts=row["attempts"],
        started_at=row["started_at"],
        stopped_at=row["stopped_at"],
        input=row["input"],
        output=row["output"],
        error=row["error"],
        reused=bool(row["reused"]),
        truncated=bool(row["truncated"]),
    )


def execution_of(row: Row) -> ExecutionRecord:
    return ExecutionRecord(
        id=row["id"],
        team_id=row["team_id"],
        workflow_id=row["workflow_id"],
        installation_id=row["installation_id"],
        user_id=row["user_id"],
        version=row["version"],
        mode=TriggerMode(row["mode"]),
        trigger=row["trigger"],
        status=ExecutionStatus(row["status"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        stopped_at=row["stopped_at"],
        output=row["output"],
        response_status=row["response_status"],
        error=row["error"],
        rerun_of=row["rerun_of"],
        lease_owner=row["lease_owner"],
        lease_expires=row["lease_expires"],
        resumes=row["resumes"],
        cancel_requested=bool(row["cancel_requested"]),
    )


def step_params(execution_id: str, s: StepRecord) -> tuple[Any, ...]:
    return (
        execution_id, s.seq, s.block_id, s.status.value, s.attempts, s.started_at,
        s.stopped_at, s.input, s.output, s.error, s.reused, s.truncated,
    )


def execution_params(e: ExecutionRecord) -> tuple[Any, ...]:
    return (
        e.id, e.team_id, e.workflow_id, e.installation_id, e.user_id, e.version, e.mode.value,
        e.trigger, e.status.value, e.created_at, e.started_at, e.stopped_at, e.output,
        e.response_status, e.error, e.rerun_of, e.lease_owner, e.lease_expires, e.resumes,
    )
