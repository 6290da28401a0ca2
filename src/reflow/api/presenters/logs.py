"""Executions as the logs show them, each field written once:

- ``summary``: what every listing of an execution shows (the CLI's JSON rows);
- ``log_item``: a workflow's log item (L1): the summary plus each block's result and input;
- ``execution_detail``: one execution (L4): the log item plus the reference's L4 keys and
  the trigger, output and steps in full;
- ``search_item``: an item of ``GET /logs`` (L3): the reference's notification keys; those
  it shares with the others (``_id``, ``startedAt``, ``createdAt``, ``workflowVersion``,
  ``userId``, ``status``, ``executionMode``) come from the same functions.

The three views of an execution (a full record, or a search entry) share ``_Execution``.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from reflow.domain.executions import ExecutionRecord, ExecutionStatus, StepRecord, TriggerMode
from reflow.domain.log_filters import message_of
from reflow.services.logs import SearchResult, iso
from reflow.store.log_search import LogEntry

# The reference's executionMode (L4) for each way reflow starts an execution.
EXECUTION_MODES: dict[TriggerMode, str] = {
    TriggerMode.API: "webhook",  # POST /run/workflow runs webhook-trigger workflows
    TriggerMode.WEBHOOK: "webhook",
    TriggerMode.EVENT: "trigger",
    TriggerMode.SCHEDULE: "trigger",
    TriggerMode.MANUAL: "manual",
    TriggerMode.RERUN: "retry",
}


class _Execution(Protocol):
    """What a record and a search entry both have."""

    @property
    def id(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def status(self) -> ExecutionStatus: ...
    @property
    def mode(self) -> TriggerMode: ...
    @property
    def created_at(self) -> int: ...
    @property
    def started_at(self) -> int | None: ...
    @property
    def stopped_at(self) -> int | None: ...


def _json(raw: bytes | None) -> Any:
    # Stored JSON goes out as it is, never parsed and re-encoded.
    return None if raw is None else orjson.Fragment(raw)


def _started_at(execution: _Execution) -> str | None:
    # A queued execution has not started: its creation stands in.
    return iso(execution.started_at or execution.created_at)


def _shared(execution: _Execution) -> dict[str, Any]:
    """The fields every shape shows alike."""
    return {
        "startedAt": _started_at(execution),
        "status": execution.status.value,
        "workflowVersion": execution.version,
        "userId": execution.user_id,
    }


def _reference_ids(execution: _Execution) -> dict[str, Any]:
    """The reference's L3/L4 keys. It has two ids per execution (a 24-hex ``_id``, which
    L4 takes, and the 21-character ``executionUuid``, L1's executionId); reflow has one,
    so both are it."""
    return {
        "_id": execution.id,
        "executionUuid": execution.id,
        "executionMode": EXECUTION_MODES[execution.mode],
        "createdAt": iso(execution.created_at),
    }


def summary(execution: ExecutionRecord) -> dict[str, Any]:
    """An execution as every listing shows it (``reflow logs list --json``)."""
    return {
        "executionId": execution.id,
        **_shared(execution),
        "stoppedAt": iso(execution.stopped_at),
        "finished": execution.finished,
        "mode": execution.mode.value,
        "rerunOf": execution.rerun_of,
        "reruns": execution.reruns,
        "error": _json(execution.error),
    }


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
    if step.item is not None:
        item["item"] = step.item
    return item


def log_item(execution: ExecutionRecord) -> dict[str, Any]:
    """One execution as an item of ``GET /workflows/{id}/logs``."""
    return {
        **summary(execution),
        "results": [_result(execution.id, s) for s in execution.steps],
        "inputs": [_input(s) for s in execution.steps],
    }


def _input(step: StepRecord) -> dict[str, Any]:
    found = {"connectorId": step.block_id, "data": _json(step.input)}
    if step.item is not None:
        found["item"] = step.item
    return found


def _step(step: StepRecord) -> dict[str, Any]:
    return {
        "seq": step.seq,
        "blockId": step.block_id,
        "item": step.item,
        "status": step.status.value,
        "attempts": step.attempts,
        "startedAt": iso(step.started_at),
        "stoppedAt": iso(step.stopped_at),
        "input": _json(step.input),
        "output": _json(step.output),
        "error": step.error,
        "reused": step.reused,
        "truncated": step.truncated,
    }


def execution_detail(execution: ExecutionRecord) -> dict[str, Any]:
    """One execution in full, for ``GET /logs/{executionId}``."""
    return {
        **log_item(execution),
        **_reference_ids(execution),
        "workflowId": execution.workflow_id,
        "installationId": execution.installation_id,
        "trigger": _json(execution.trigger),
        "output": _json(execution.output),
        "responseStatus": execution.response_status,
        "steps": [_step(s) for s in execution.steps],
    }


def _user(entry: LogEntry) -> dict[str, Any] | None:
    if entry.username is None:
        return None
    # The reference shows the user's email; reflow's users have a username, which is
    # often one: it is the email when it looks like one.
    email = entry.username if "@" in entry.username else None
    return {"email": email, "username": entry.username, "fullName": entry.full_name}


def _integration(entry: LogEntry) -> dict[str, Any] | None:
    if entry.integration_name is None:
        return None
    return {"_id": entry.integration_id, "name": entry.integration_name,
            "icon": entry.integration_icon}


def search_item(entry: LogEntry, team_id: str) -> dict[str, Any]:
    """One execution as a ``GET /logs`` item: the reference's keys (``workflowId`` is
    the user's installation, ``forgeWorkflowId`` the parent workflow), plus ``status``,
    ``executionUuid`` and ``executionMode``."""
    ids = _reference_ids(entry)
    return {
        "_id": ids["_id"],
        "message": message_of(entry.status),
        "data": {"executionId": entry.id, "executionUuid": ids["executionUuid"]},
        **_shared(entry),
        "completedAt": iso(entry.stopped_at),
        "createdAt": ids["createdAt"],
        "customVersion": False,  # reflow has no per-user copies of a version
        "teamId": team_id,
        "forgeWorkflowId": entry.workflow_id,
        "workflowId": entry.installation_id,
        "user": _user(entry),
        "forgeWorkflow": {"name": entry.workflow_name, "integrationId": _integration(entry)},
        "executionUuid": ids["executionUuid"],
        "executionMode": ids["executionMode"],
    }


def search_page(result: SearchResult) -> dict[str, Any]:
    """The answer of ``GET /logs``: the items (as ``notifications``, the reference's key,
    and as ``data``, the key of reflow's other lists), when they were read, and the page.
    ``totalItems`` counts up to the cap; ``totalItemsExact`` is false past it."""
    items = [search_item(e, result.team_id) for e in result.entries]
    page = result.page
    return {
        "data": items,
        "notifications": items,
        "lastFetched": iso(result.fetched_at),
        "pagination": {
            "totalItems": result.total,
            "totalPages": -(-result.total // page.limit),
            "currentPage": page.current_page,
            "pageSize": page.limit,
            "totalItemsExact": result.exact,
        },
    }
