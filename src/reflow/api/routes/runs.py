"""``/run/workflow`` and ``/workflows/{id}/rerun/{executionId}``."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response

from reflow.api.deps import CurrentTeam, ReflowDep
from reflow.api.errors import json_response
from reflow.api.routing import OrjsonRoute
from reflow.api.schemas import RunAccepted, RunFinished, RunWorkflow
from reflow.services.runs import Started

router = APIRouter(tags=["runs"], route_class=OrjsonRoute)

MAX_WAIT = 300.0
WaitQuery = Annotated[
    float | None,
    Query(gt=0, le=MAX_WAIT, description="seconds to wait for the execution to finish"),
]


def _started(started: Started, wait: float | None) -> Response:
    if wait is None:
        return json_response({"message": "success", "executionId": started.execution_id})
    record = started.finished
    if record is None:
        return json_response({"message": "success", "executionId": started.execution_id,
                              "status": "running", "output": None, "error": None}, 202)
    return json_response({
        "message": "success",
        "executionId": record.id,
        "status": record.status.value,
        "output": orjson.Fragment(record.output) if record.output is not None else None,
        "error": orjson.Fragment(record.error) if record.error is not None else None,
    })


@router.post(
    "/run/workflow",
    response_model=RunFinished,
    responses={202: {"model": RunFinished, "description": "still running at the deadline"}},
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
    return _started(started, wait)


@router.post("/workflows/{workflowId}/rerun/{executionId}", response_model=RunAccepted,
             summary="Rerun an execution")
async def rerun(
    workflowId: str,
    executionId: str,
    team: CurrentTeam,
    reflow: ReflowDep,
    userId: str | None = None,
) -> Response:
    """A new execution of the same copy, original version and trigger data (``rerunOf``).

    404 for an unknown execution, another workflow's or user's, or one purged by retention
    (the message says how long logs are kept); 409 while the source is still running.
    """
    started = await reflow.runs.rerun(team, workflowId, executionId, userId)
    return _started(started, None)
