"""Bulk rerun jobs (``POST /reruns``): the filter that picks executions, the job and its
items. Pure: no I/O.

A job reruns a list resolved once, when it is created: the finished executions of the
team that pass the filter, created within a bounded time window, at most ``MAX_ITEMS``.
Each item ends ``done`` (a new execution), ``failed`` (the rerun was refused: purged by
retention, installation deleted or inactive...) or ``cancelled`` (the job was cancelled
before it was reached).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from reflow.domain.durations import parse_duration
from reflow.domain.executions import ExecutionStatus
from reflow.domain.log_filters import parse_time
from reflow.errors import InvalidRequest

# A job reruns at most this many executions; a filter matching more is refused.
MAX_ITEMS = 10_000
# The widest time window a filter may span.
MAX_WINDOW_MS = 31 * 86_400_000
# The longest text a filter's error or blockId may hold.
MAX_TEXT = 200
# The key a job's rerun of one execution is stored under (Idempotency-Key mechanism): a
# restarted job finds the execution it already made instead of making a second one.
KEY_PREFIX = "reflow-rerun-job:"
# The statuses a job may select (only finished executions can be rerun).
RERUNNABLE = (ExecutionStatus.FAILED, ExecutionStatus.SUCCEEDED, ExecutionStatus.CANCELLED)
START_CHOICES = ("start", "failed")
VERSION_CHOICES = ("original", "installed", "latest")


class JobStatus(StrEnum):
    """Where a job is: ``queued`` until a runner takes it, ``running``, then ``done`` when
    every item ended, or ``cancelled`` (items not yet reached were cancelled)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"


class ItemState(StrEnum):
    """One execution of a job: ``pending`` until rerun; ``done`` (a new execution),
    ``failed`` (the rerun was refused, with the reason), ``cancelled``."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class RerunFilter:
    """Which executions a job reruns: the team's, created in ``[since, until)``."""

    since: int  # ms since the epoch, inclusive
    until: int  # ms since the epoch, exclusive
    status: ExecutionStatus = ExecutionStatus.FAILED
    workflow_id: str | None = None  # resolved id (the request may name it)
    user_id: str | None = None  # resolved id (the request may give a username)
    error: str | None = None  # text the error message contains (any case)
    block_id: str | None = None  # the block whose failure ended the execution

    def as_json(self) -> dict[str, Any]:
        """The filter as the API shows it (resolved ids, times in ms)."""
        return {"workflowId": self.workflow_id, "userId": self.user_id,
                "status": self.status.value, "since": self.since, "until": self.until,
                "error": self.error, "blockId": self.block_id}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> RerunFilter:
        """The filter as stored by ``as_json``."""
        return cls(since=int(value["since"]), until=int(value["until"]),
                   status=ExecutionStatus(value["status"]), workflow_id=value["workflowId"],
                   user_id=value["userId"], error=value["error"], block_id=value["blockId"])


@dataclass(frozen=True, slots=True)
class RequestedFilter:
    """A filter as asked, before its workflow and user are looked up."""

    since: int
    until: int
    status: ExecutionStatus
    workflow: str | None
    user: str | None
    error: str | None
    block_id: str | None


@dataclass(frozen=True, slots=True)
class RerunJobOptions:
    """How each execution of the job is rerun (RunService's RerunOptions, minus data)."""

    start_from: str = "start"
    version: str = "original"

    def as_json(self) -> dict[str, Any]:
        """The options as the API shows them."""
        return {"from": self.start_from, "version": self.version}


@dataclass(slots=True)
class RerunJob:
    """A bulk rerun job and its counts (kept current in the same transaction as its
    items)."""

    id: str
    team_id: str
    status: JobStatus
    filter: RerunFilter
    options: RerunJobOptions
    total: int
    created_at: int
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    started_at: int | None = None
    finished_at: int | None = None
    lease_owner: str | None = None
    lease_expires: int | None = None

    @property
    def pending(self) -> int:
        """Items not yet reached."""
        return self.total - self.done - self.failed - self.cancelled


@dataclass(frozen=True, slots=True)
class RerunItem:
    """One execution of a job and what became of it; ``status`` is the new execution's
    status now (None while pending, refused, or once the new one was purged)."""

    execution_id: str
    seq: int
    state: ItemState
    new_execution_id: str | None = None
    error: str | None = None
    status: ExecutionStatus | None = None


@dataclass(frozen=True, slots=True)
class PendingItem:
    """An item a runner is about to rerun, and the execution this job already made for it
    (a run interrupted before it recorded)."""

    execution_id: str
    made: str | None


@dataclass(frozen=True, slots=True)
class ItemResult:
    """What a runner records for an item: a new execution, or why there is none."""

    execution_id: str
    new_execution_id: str | None = None
    error: str | None = None

    @property
    def state(self) -> ItemState:
        """``done`` with a new execution, else ``failed``."""
        return ItemState.DONE if self.new_execution_id is not None else ItemState.FAILED


@dataclass(frozen=True, slots=True)
class RerunSource:
    """An execution a filter selects (what ``--dry-run`` lists)."""

    id: str
    workflow_id: str
    user_id: str
    created_at: int
    error: bytes | None


def job_key(job_id: str, execution_id: str) -> str:
    """The idempotency key of a job's rerun of one execution."""
    return f"{KEY_PREFIX}{job_id}:{execution_id}"


def parse_filter(raw: Mapping[str, Any], now_ms: int) -> RequestedFilter:
    """The ``filter`` of ``POST /reruns``, checked; InvalidRequest naming the field.

    ``since`` is required and ``until`` defaults to now; each is an ISO 8601 time (a date
    is its day's start, UTC without an offset), milliseconds since the epoch, or a
    duration (``24h``, ``90m``, ``7d``) meaning that long before now. The window must be
    non-empty and at most 31 days.
    """
    unknown = sorted(set(raw) - {"workflowId", "userId", "status", "since", "until", "error",
                                 "blockId"})
    if unknown:
        raise InvalidRequest(f"filter.{unknown[0]}: unknown field; the filter takes "
                             "workflowId, userId, status, since, until, error, blockId")
    if raw.get("since") is None:
        raise InvalidRequest("filter.since: required: when the window starts (an ISO 8601 "
                             "time, or a duration such as 24h meaning that long ago)")
    since = _moment(raw["since"], "since", now_ms)
    until = now_ms if raw.get("until") is None else _moment(raw["until"], "until", now_ms)
    if until <= since:
        raise InvalidRequest("filter.until: must be after filter.since")
    if until - since > MAX_WINDOW_MS:
        raise InvalidRequest(
            "filter.since: the window may span at most 31 days "
            f"(since..until spans {(until - since) / 86_400_000:.1f} days); narrow it")
    status_text = raw.get("status") or ExecutionStatus.FAILED.value
    allowed = ", ".join(s.value for s in RERUNNABLE)
    if not isinstance(status_text, str) or status_text not in allowed.split(", "):
        raise InvalidRequest(f"filter.status: {status_text!r} is not a status a rerun takes; "
                             f"use one of {allowed} (only finished executions rerun)")
    return RequestedFilter(
        since=since, until=until, status=ExecutionStatus(status_text),
        workflow=_text(raw, "workflowId"), user=_text(raw, "userId"),
        error=_text(raw, "error"), block_id=_text(raw, "blockId"),
    )


def parse_options(start_from: Any, version: Any) -> RerunJobOptions:
    """The job's ``from`` and ``version``, checked (as a single rerun takes them)."""
    if start_from is None:
        start_from = "start"
    if not isinstance(start_from, str) or not start_from or len(start_from) > MAX_TEXT:
        raise InvalidRequest("from: 'start', 'failed' or a block id")
    if version is None:
        version = "original"
    if version not in VERSION_CHOICES:
        raise InvalidRequest(f"version: {version!r} is not one of "
                             + ", ".join(VERSION_CHOICES))
    return RerunJobOptions(start_from, version)


def _text(raw: Mapping[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT or "\x00" in value:
        raise InvalidRequest(f"filter.{name}: must be a text of 1 to {MAX_TEXT} characters")
    return value


def _moment(value: Any, name: str, now_ms: int) -> int:
    """A written time, or a duration before now, in ms since the epoch."""
    try:
        return parse_time(value).start
    except ValueError as exc:
        problem = str(exc)
    if isinstance(value, str):
        try:
            return now_ms - round(parse_duration(value) * 1000)
        except ValueError:
            pass
    raise InvalidRequest(f"filter.{name}: {problem}; or a duration such as 24h meaning "
                         "that long ago")
