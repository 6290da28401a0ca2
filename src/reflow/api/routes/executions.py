"""``/executions/{executionId}/cancel``: stop an execution that has not finished."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from reflow.api.deps import CurrentTeam, ReflowDep
from reflow.api.errors import error_responses, json_response
from reflow.api.routing import OrjsonRoute
from reflow.api.schemas import Cancelled

router = APIRouter(tags=["executions"], route_class=OrjsonRoute)


@router.post(
    "/executions/{executionId}/cancel",
    response_model=Cancelled,
    responses=error_responses(404, 409, details={
        404: "no such execution in this team, or purged by retention",
        409: "the execution already succeeded or failed",
    }),
    summary="Cancel an execution",
)
async def cancel_execution(executionId: str, team: CurrentTeam, reflow: ReflowDep) -> Response:
    """Cancel a queued execution at once, or a running one before its next block.

    ``status`` is ``cancelled`` when it is already stopped; ``running`` with
    ``cancelRequested: true`` while the block it is in finishes. Cancelling a cancelled
    execution again answers the same.
    """
    record = await reflow.runs.cancel(team, executionId)
    return json_response({
        "message": "success",
        "executionId": record.id,
        "status": record.status.value,
        "cancelRequested": record.cancel_requested,
    })
