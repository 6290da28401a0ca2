"""Execution logs: the reference's log item as a view over an execution and its steps."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import orjson

from reflow import sealing
from reflow.domain.executions import ExecutionRecord, StepRecord, TriggerMode
from reflow.domain.records import Team
from reflow.errors import InvalidRequest, NotFound
from reflow.services.workflows import WorkflowService
from reflow.store.base import ExecutionQuery, Store

MAX_LIMIT = 30
MAX_PAGE = 10_000_000


def iso(ms: int | None) -> str | None:
    """Milliseconds since the epoch as the reference's ISO 8601 UTC text."""
    if ms is None:
        return None
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _json(raw: bytes | None) -> Any:
    # Stored JSON goes out as it is, never parsed and re-encoded.
    return None if raw is None else orjson.Fragment(raw)


def _result(execution_id: str, step: StepRecord) -> dict[str, Any]:
    # Each output item has an `id` in the reference; one step gives one item here.
    output = [[{"json": _json(step.output), "id": f"{execution_id}-{step.seq}"}]]
    item: dict[str, Any] = {
        "connectorId": step.block_id,
        "startedAt": iso(step.started_at),
        "stoppedAt": iso(step.stopped_at),
        "data": output if step.output is not None else [],
        "status": step.status.value,
        "attempts": step.attempts,
        "reused": step.reused,
    }
    if step.error is not None:
        item["error"] = step.error
    if step.truncated:
        item["truncated"] = True
    return item


def log_item(execution: ExecutionRecord) -> dict[str, Any]:
    """One execution as an item of ``GET /workflows/{id}/logs``."""
    return {
        "executionId": execution.id,
        "startedAt": iso(execution.started_at or execution.created_at),
        "stoppedAt": iso(execution.stopped_at),
        "finished": execution.finished,
        "status": execution.status.value,
        "workflowVersion": execution.version,
        "userId": execution.user_id,
        "mode": execution.mode.value,
        "rerunOf": execution.rerun_of,
        "reruns": execution.reruns,
        "error": _json(execution.error),
        "results": [_result(execution.id, s) for s in execution.steps],
        "inputs": [{"connectorId": s.block_id, "data": _json(s.input)} for s in execution.steps],
    }


# The reference's executionMode (L4) for each way reflow starts an execution.
EXECUTION_MODES: dict[TriggerMode, str] = {
    TriggerMode.API: "webhook",  # POST /run/workflow runs webhook-trigger workflows
    TriggerMode.WEBHOOK: "webhook",
    TriggerMode.EVENT: "trigger",
    TriggerMode.SCHEDULE: "trigger",
    TriggerMode.MANUAL: "manual",
    TriggerMode.RERUN: "retry",
}


def execution_detail(execution: ExecutionRecord) -> dict[str, Any]:
    """One execution in full, for ``GET /logs/{executionId}``."""
    item = log_item(execution)
    item.update({
        # The reference has two ids per execution (a 24-hex `_id`, taken by L4, and the
        # 21-character `executionUuid`, L1's executionId); reflow has one, so both are it.
        "_id": execution.id,
        "executionUuid": execution.id,
        "executionMode": EXECUTION_MODES[execution.mode],
        "workflowId": execution.workflow_id,
        "installationId": execution.installation_id,
        "createdAt": iso(execution.created_at),
        "trigger": _json(execution.trigger),
        "output": _json(execution.output),
        "responseStatus": execution.response_status,
        "steps": [
            {
                "seq": s.seq,
                "blockId": s.block_id,
                "status": s.status.value,
                "attempts": s.attempts,
                "startedAt": iso(s.started_at),
                "stoppedAt": iso(s.stopped_at),
                "input": _json(s.input),
                "output": _json(s.output),
                "error": s.error,
                "reused": s.reused,
                "truncated": s.truncated,
            }
            for s in execution.steps
        ],
    })
    return item


@dataclass(frozen=True, slots=True)
class LogsPage:
    """Which page of a workflow's logs to show."""

    page: int = 1
    limit: int = 10
    order: str = "desc"
    failed_only: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidRequest(f"limit: must be between 1 and {MAX_LIMIT}, got {self.limit}")
        if not 0 <= self.page <= MAX_PAGE:
            raise InvalidRequest(f"page: must be between 1 and {MAX_PAGE}, got {self.page}")
        if self.order not in ("asc", "desc"):
            raise InvalidRequest(f"order: must be 'asc' or 'desc', got {self.order!r}")


class LogService:
    """Reads executions for the logs API, the CLI and the dashboard."""

    def __init__(self, store: Store, workflows: WorkflowService) -> None:
        self.store = store
        self.workflows = workflows

    async def workflow_logs(
        self, team: Team, workflow_ref: str, user_ref: str | None, page: LogsPage
    ) -> list[ExecutionRecord]:
        """A page of a workflow's executions (one user's when ``user_ref`` is given)."""
        target = await self.workflows.resolve(team, workflow_ref, user_ref)
        if target.user is not None or target.via_installation:
            if target.installation is None:
                return []
            installation_id: str | None = target.installation.id
        else:
            installation_id = None
        query = ExecutionQuery(
            team_id=team.id,
            workflow_id=target.workflow.id,
            installation_id=installation_id,
            failed_only=page.failed_only,
            descending=page.order == "desc",
            offset=(max(page.page, 1) - 1) * page.limit,
            limit=page.limit,
        )
        return await self.store.list_executions(query)

    async def status(self, team: Team, execution_id: str) -> str | None:
        """Just an execution's status (cheap, for polling), or None if there is none."""
        return await self.store.execution_status(team.id, execution_id)

    async def execution(self, team: Team, execution_id: str) -> ExecutionRecord:
        """One execution with its steps, its trigger redacted; NotFound for another team's."""
        execution = await self.store.get_execution(team.id, execution_id)
        if execution is None:
            raise NotFound(f"execution {execution_id} not found")
        # Sealed secret fields (and any secret stored before sealing) show as [redacted].
        shown_trigger = sealing.redacted(execution.trigger)
        return replace(execution, trigger=shown_trigger)
