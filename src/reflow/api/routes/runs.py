"""``/run/workflow`` and ``/workflows/{id}/rerun/{executionId}``."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query
from starlette.responses import Response

from reflow.api.deps import CurrentTeam, ReflowDep
from reflow.api.errors import Responses, error_responses, json_response
from reflow.api.routing import OrjsonRoute
from reflow.api.schemas import RerunBody, RunStarted, RunWorkflow
from reflow.dispatch import Started
from reflow.services.runs import RerunOptions

router = APIRouter(tags=["runs"], route_class=OrjsonRoute)

MAX_WAIT = 300.0
# With ``wait``, a run still going at the deadline answers 202 with ``status: running``
# (``waiting`` when a delay suspended it).
_STILL_RUNNING: Responses = {
    202: {"model": RunStarted,
          "description": "with wait: still running at the deadline, or waiting (a delay)"},
}
WaitQuery = Annotated[
    float | None,
    Query(gt=0, le=MAX_WAIT, description="seconds to wait for the execution to finish"),
]


def started_response(started: Started, wait: float | None) -> Response:
    """The answer to a run or rerun: its id, and with ``wait`` how it ended (202 if not)."""
    if wait is None:
        return json_response({"message": "success", "executionId": started.execution_id})
    record = started.finished
    if record is None:
        return json_response({"message": "success", "executionId": started.execution_id,
                              "status": "running", "output": None, "error": None}, 202)
    if not record.finished:
        # Waiting (a delay): with what a respond block before it answered, if one did.
        return json_response({
            "message": "success", "executionId": record.id, "status": record.status.value,
            "output": orjson.Fragment(started.output_json) if started.output_json else None,
            "error": None}, 202)
    return json_response({
        "message": "success",
        "executionId": record.id,
        "status": record.status.value,
        "output": orjson.Fragment(started.output_json) if started.output_json else None,
        "error": orjson.Fragment(record.error) if record.error is not None else None,
    })


@router.post(
    "/run/workflow",
    response_model=RunStarted,
    responses={**_STILL_RUNNING, **error_responses(404, 409, details={
        404: "no such workflow or user, or the user has no copy of it",
        409: "the user's copy is inactive, or the workflow is triggered by an event",
    })},
    summary="Run a workflow",
)
async def run_workflow(
    body: RunWorkflow, team: CurrentTeam, reflow: ReflowDep, wait: WaitQuery = None
) -> Response:
    """Start a run of the user's copy; with ``?wait=``, answer when it finishes.

    Without ``wait`` the answer is ``{"message", "executionId"}`` once the execution is
    committed. With it, ``status`` and ``output`` (the ``respond`` block's body) are added;
    still running at the deadline: ``202`` with ``status: "running"``.
    """
    started = await reflow.runs.run(team, body.workflow, body.userId, body.data, wait=wait)
    return started_response(started, wait)


@router.post(
    "/workflows/{workflowId}/rerun/{executionId}",
    response_model=RunStarted,
    responses={**_STILL_RUNNING, **error_responses(404, 409, details={
        404: "no such execution of this workflow (and user), or purged by retention",
        409: "the source execution is still running",
    })},
    summary="Rerun an execution",
)
async def rerun(
    workflowId: str,
    executionId: str,
    team: CurrentTeam,
    reflow: ReflowDep,
    body: RerunBody | None = None,
    userId: str | None = None,
    wait: WaitQuery = None,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", min_length=1, max_length=255,
               description="the same key gives back the same new execution"),
    ] = None,
) -> Response:
    """A new execution of the same copy, on the original version with the original trigger
    data by default; it has ``mode: rerun`` and ``rerunOf``, and the source lists it in
    ``reruns``. Answer: ``{"message": "success", "executionId": <new>}``; with ``wait``
    (body or query), also ``status`` and ``output`` (202 if still running).

    404 for an unknown execution, another workflow's or user's, or one purged by retention
    (the message says how long logs are kept); 409 while the source is still running;
    422 for an invalid body (e.g. ``from`` naming a block that did not run).
    """
    options = body or RerunBody()
    wait = options.wait or wait
    started = await reflow.runs.rerun(
        team, workflowId, executionId, userId,
        options=RerunOptions(options.from_, options.version, options.data),
        wait=wait, idempotency_key=idempotency_key,
    )
    return started_response(started, wait)
