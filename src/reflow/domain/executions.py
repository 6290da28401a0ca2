"""Executions and their steps: statuses, trigger modes and the records the store keeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ExecutionStatus(StrEnum):
    """Where an execution is in its life; the last three are final."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True once nothing more will run."""
        return self in _FINISHED


_FINISHED = frozenset(
    {ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)


class StepStatus(StrEnum):
    """How one block's run ended (steps are recorded when they finish), or ``waiting``: a
    ``delay`` whose time has not come (the step is written again when it resumes)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    WAITING = "waiting"


class TriggerMode(StrEnum):
    """What started an execution."""

    API = "api"
    EVENT = "event"
    WEBHOOK = "webhook"
    SCHEDULE = "schedule"
    MANUAL = "manual"
    RERUN = "rerun"


@dataclass(slots=True)
class StepRecord:
    """One block run inside an execution, with JSON fields already encoded for storage."""

    seq: int
    block_id: str
    status: StepStatus
    attempts: int
    started_at: int  # ms since epoch
    stopped_at: int
    input: bytes  # JSON
    output: bytes | None  # JSON; None when the step failed
    error: str | None = None
    reused: bool = False
    truncated: bool = False
    # The item's index in each enclosing loop, outermost first ("3", "3.0"); None outside
    # loops. A step is keyed by (block_id, item): its path in the workflow.
    item: str | None = None

    @property
    def key(self) -> tuple[str, str | None]:
        """Where in the workflow this step ran: its block and item path."""
        return self.block_id, self.item


@dataclass(slots=True)
class ExecutionRecord:
    """An execution as stored: JSON fields (trigger, output, error) encoded as bytes."""

    id: str
    team_id: str
    workflow_id: str
    installation_id: str
    user_id: str
    version: int
    mode: TriggerMode
    trigger: bytes  # JSON: {"data": ..., and anything else of the trigger}
    status: ExecutionStatus
    created_at: int
    started_at: int | None = None
    stopped_at: int | None = None
    output: bytes | None = None  # JSON: the respond block's body
    response_status: int | None = None
    error: bytes | None = None  # JSON: {"message", "blockId"}
    rerun_of: str | None = None
    lease_owner: str | None = None
    lease_expires: int | None = None
    # Times it was resumed after the process running it died (at most Settings.max_resumes).
    resumes: int = 0
    # A cancel arrived while it ran: it stops before its next block.
    cancel_requested: bool = False
    # When a waiting execution is due (ms since epoch); stored in lease_expires, since a
    # waiting execution has no lease (migration 0016).
    wake_at: int | None = None
    steps: list[StepRecord] = field(default_factory=list)
    reruns: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        """True once the execution reached a final status."""
        return self.status.finished

    @property
    def reused_steps(self) -> list[StepRecord]:
        """The steps copied from the execution this one reruns."""
        return [s for s in self.steps if s.reused]


def error_json(message: str, block_id: str | None) -> dict[str, Any]:
    """The stored shape of an execution's error."""
    return {"message": message, "blockId": block_id}
