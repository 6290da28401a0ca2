"""Rows as records, and records as statement parameters: the same for every backend.

Rows are read by column name (sqlite3.Row and asyncpg's Record both answer ``row["id"]``),
so a column added by a migration cannot shift another.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from reflow.domain.apps import AppRecord, CredentialRecord, Health
from reflow.domain.executions import (
    ExecutionRecord,
    ExecutionStatus,
    StepRecord,
    StepStatus,
    TriggerMode,
)
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
    ItemState,
    JobStatus,
    RerunFilter,
    RerunItem,
    RerunJob,
    RerunJobOptions,
    RerunSource,
)
from reflow.domain.retention import KeepSteps, Retention, WorkflowRetention
from reflow.domain.schedules import (
    DueSchedule,
    InstallationChange,
    MissedRuns,
    Schedule,
    ScheduleListing,
    ScheduleState,
)
from reflow.store.base import CredentialEvent, ErrorNotification, WebhookTarget


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


def integration_of(row: Row) -> Integration:
    return Integration(row["id"], row["team_id"], row["name"], row["app"], row["description"],
                       row["icon"], row["created_at"], row["updated_at"])


def version_of(row: Row) -> WorkflowVersion:
    return WorkflowVersion(row["workflow_id"], row["version"], row["definition"],
                           row["digest"], row["created_at"])


def installation_of(row: Row) -> Installation:
    return Installation(row["id"], row["team_id"], row["workflow_id"], row["user_id"],
                        row["installed_version"], bool(row["active"]), row["installed_at"],
                        row["updated_at"])


def webhook_target_of(row: Row) -> WebhookTarget:
    """An installation row with its user's ``user_deleted_at`` (the webhook_find query)."""
    return WebhookTarget(installation_of(row), row["user_deleted_at"] is not None,
                         row["deleted_at"] is not None)


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
        item=row["item"],
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
        wake_at=row["lease_expires"] if row["status"] == "waiting" else None,
    )


def step_params(execution_id: str, s: StepRecord) -> tuple[Any, ...]:
    return (
        execution_id, s.seq, s.block_id, s.status.value, s.attempts, s.started_at,
        s.stopped_at, s.input, s.output, s.error, s.reused, s.truncated, s.item,
    )


def execution_params(e: ExecutionRecord) -> tuple[Any, ...]:
    return (
        e.id, e.team_id, e.workflow_id, e.installation_id, e.user_id, e.version, e.mode.value,
        e.trigger, e.status.value, e.created_at, e.started_at, e.stopped_at, e.output,
        e.response_status, e.error, e.rerun_of, e.lease_owner, e.lease_expires, e.resumes,
    )


# -- error stream -------------------------------------------------------------------------


def error_outbox_params(e: ExecutionRecord) -> tuple[Any, ...]:
    """``error_outbox_insert``'s parameters for a failed execution (the team's id last:
    the insert happens only when that team streams errors)."""
    stopped = e.stopped_at if e.stopped_at is not None else e.created_at
    return (e.id, e.workflow_id, e.installation_id, e.user_id, e.version, e.mode.value,
            e.error, e.started_at, stopped, e.team_id)


def error_notification_of(row: Row) -> ErrorNotification:
    return ErrorNotification(
        execution_id=row["execution_id"],
        team_id=row["team_id"],
        workflow_id=row["workflow_id"],
        installation_id=row["installation_id"],
        user_id=row["user_id"],
        version=row["version"],
        mode=row["mode"],
        error=row["error"],
        started_at=row["started_at"],
        stopped_at=row["stopped_at"],
        attempts=row["attempts"],
        url=row["error_stream_url"],
        sealed_secret=row["error_stream_secret"],
        kind=row["kind"],
        payload=None if row["payload"] is None else bytes(row["payload"]),
    )


# -- schedules ---------------------------------------------------------------------------


def schedule_state_of(row: Row, team_id: str | None = None) -> ScheduleState:
    """The ``s_``-prefixed columns of a row as a state (``team_id`` when none is selected)."""
    missed = row["s_missed"]
    return ScheduleState(
        installation_id=row["s_installation_id"],
        team_id=team_id if team_id is not None else row["s_team_id"],
        installation_updated_at=row["s_updated_at"],
        version=row["s_version"],
        cron=row["s_cron"],
        timezone=row["s_timezone"],
        missed=None if missed is None else MissedRuns(missed),
        next_due_at=row["s_next_due_at"],
    )


def schedule_state_params(s: ScheduleState) -> tuple[Any, ...]:
    """``schedule_state_save``'s parameters."""
    return (s.installation_id, s.team_id, s.installation_updated_at, s.version, s.cron,
            s.timezone, None if s.missed is None else s.missed.value, s.next_due_at)


def installation_change_of(row: Row) -> InstallationChange:
    """A ``schedule_changed_installations`` row."""
    installation = installation_of(row)
    state = (None if row["s_installation_id"] is None
             else schedule_state_of(row, installation.team_id))
    return InstallationChange(installation, state)


def due_schedule_of(row: Row) -> DueSchedule:
    """A ``schedule_due`` row (its installation columns are NULL when it is gone)."""
    installation = None if row["id"] is None else installation_of(row)
    return DueSchedule(schedule_state_of(row), installation, row["user_deleted_at"] is not None)


def schedule_listing_of(row: Row) -> ScheduleListing:
    """A ``schedule_list`` row."""
    schedule = Schedule(row["cron"], row["timezone"], MissedRuns(row["missed"]))
    return ScheduleListing(row["installation_id"], row["workflow_id"], row["workflow_name"],
                           row["user_id"], row["username"], schedule, row["next_due_at"],
                           row["last_fired_at"])


# -- apps and credentials (credentials.sql, apps.sql) --

def app_of(row: Row) -> AppRecord:
    """An ``apps`` row."""
    return AppRecord(row["id"], row["team_id"], row["name"], row["display_name"],
                     row["auth_kind"], row["icon"], bytes(row["definition"]), row["digest"],
                     row["created_at"], row["updated_at"])


def app_params(a: AppRecord) -> tuple[Any, ...]:
    """``apps_upsert``'s parameters."""
    return (a.id, a.team_id, a.name, a.display_name, a.auth_kind, a.icon, a.definition,
            a.digest, a.created_at, a.updated_at)


def credential_of(row: Row) -> CredentialRecord:
    """A ``credentials`` row (with ``app_display_name`` from its app, NULL when unread)."""
    return CredentialRecord(
        row["id"], row["team_id"], row["user_id"], row["app"], row["sealed"],
        row["created_at"], row["updated_at"], Health(row["health"]), row["health_reason"],
        row["health_changed_at"], row["expires_at"], row["version"], row["app_display_name"],
        row["refresh_owner"], row["refresh_until"], row["refresh_blocked_until"],
        row["refresh_failures"])


def credential_params(c: CredentialRecord) -> tuple[Any, ...]:
    """``credentials_insert``'s parameters."""
    return (c.id, c.team_id, c.user_id, c.app, c.sealed, c.health.value, c.health_reason,
            c.health_changed_at, c.expires_at, c.version, c.created_at, c.updated_at)


# -- OAuth connections (oauth.sql) --

def credential_event_of(row: Row) -> CredentialEvent:
    """A ``credential_events`` row."""
    return CredentialEvent(row["id"], row["team_id"], row["credential_id"], row["user_id"],
                           row["app"], row["kind"], row["message"], row["created_at"])


def credential_event_params(e: CredentialEvent) -> tuple[Any, ...]:
    """``credential_event_insert``'s parameters."""
    return (e.id, e.team_id, e.credential_id, e.user_id, e.app, e.kind, e.message,
            e.created_at)


# -- headless installation (installation_config.sql) --


def headless_installation_of(row: Row) -> HeadlessInstallation:
    """A ``headless_installations`` row."""
    return HeadlessInstallation(
        row["id"], row["team_id"], row["user_id"], row["integration_id"],
        tuple(orjson.loads(row["workflow_ids"])), dict(orjson.loads(row["credential_ids"])),
        row["created_at"], row["updated_at"])


def headless_installation_params(h: HeadlessInstallation) -> tuple[Any, ...]:
    """``headless_installation_upsert``'s parameters."""
    return (h.id, h.team_id, h.user_id, h.integration_id,
            orjson.dumps(list(h.workflow_ids)).decode(),
            orjson.dumps(h.credential_ids).decode(), h.created_at, h.updated_at)


def installation_settings_of(row: Row) -> InstallationSettings:
    """An ``installation_settings`` row (config stored as text)."""
    config = row["config"]
    pinned = row["credential_ids"]
    return InstallationSettings(config.encode() if config is not None else None,
                                tuple(orjson.loads(pinned)) if pinned else ())


def config_change_params(team_id: str, c: ConfigChange, now: int) -> tuple[Any, ...]:
    """``installation_configure``'s parameters."""
    return (c.config.decode() if c.config is not None else None,
            orjson.dumps(list(c.credential_ids)).decode() if c.credential_ids else None,
            c.activate, c.installed_version, now, team_id, c.installation_id)


# -- bulk rerun jobs (reruns.sql) ------------------------------------------------------------


def rerun_job_of(row: Row) -> RerunJob:
    """A ``rerun_jobs`` row."""
    options = orjson.loads(row["options"])
    return RerunJob(
        id=row["id"], team_id=row["team_id"], status=JobStatus(row["status"]),
        filter=RerunFilter.from_json(orjson.loads(row["filter"])),
        options=RerunJobOptions(options["from"], options["version"]), total=row["total"],
        created_at=row["created_at"], done=row["done"], failed=row["failed"],
        cancelled=row["cancelled"], started_at=row["started_at"],
        finished_at=row["finished_at"], lease_owner=row["lease_owner"],
        lease_expires=row["lease_expires"])


def rerun_job_params(job: RerunJob) -> tuple[Any, ...]:
    """``reruns_job_insert``'s parameters."""
    return (job.id, job.team_id, job.status.value, orjson.dumps(job.filter.as_json()).decode(),
            orjson.dumps(job.options.as_json()).decode(), job.total, job.created_at)


def rerun_item_of(row: Row) -> RerunItem:
    """A ``reruns_results`` row (the item, and its new execution's status)."""
    status = row["status"]
    return RerunItem(row["execution_id"], row["seq"], ItemState(row["state"]),
                     row["new_execution_id"], row["error"],
                     None if status is None else ExecutionStatus(status))


def rerun_source_of(row: Row) -> RerunSource:
    """A ``reruns_sources`` row."""
    error = row["error"]
    return RerunSource(row["id"], row["workflow_id"], row["user_id"], row["created_at"],
                       None if error is None else bytes(error))


def retention_params(retention: Retention) -> tuple[Any, ...]:
    """A workflow's retention as retention_set_workflow's first four parameters."""
    window = None if retention.window is None else max(1, round(retention.window))
    steps = None if retention.keep_steps is KeepSteps.ALL else retention.keep_steps.value
    return window, retention.keep, steps, steps


def workflow_retention_of(row: Row) -> WorkflowRetention:
    """A retention_workflows row."""
    steps = row["retention_keep_steps"]
    retention = Retention(row["retention_s"], row["retention_keep"],
                          KeepSteps(steps) if steps else KeepSteps.ALL)
    return WorkflowRetention(row["team_id"], row["id"], retention,
                             row["retention_steps_cursor"])
