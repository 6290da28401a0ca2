"""``/workflows/{id}/logs`` and ``/logs/{executionId}``."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from starlette.responses import Response

from reflow.api.deps import CurrentTeam, ReflowDep
from reflow.api.errors import error_responses, json_response
from reflow.api.routing import OrjsonRoute
from reflow.api.schemas import Execution, Logs
from reflow.services.logs import MAX_LIMIT, MAX_PAGE, LogsPage, execution_detail, log_item

router = APIRouter(tags=["logs"], route_class=OrjsonRoute)


@router.get("/workflows/{workflowId}/logs", response_model=Logs, summary="Workflow logs",
            responses=error_responses(404, details={404: "no such workflow or user"}))
async def workflow_logs(
    workflowId: str,
    team: CurrentTeam,
    reflow: ReflowDep,
    userId: str | None = None,
    # The bounds are LogsPage's (its message names the range); declared for the document.
    page: Annotated[int, Query(description="1-based; 0 is the first page too",
                               json_schema_extra={"minimum": 0, "maximum": MAX_PAGE})] = 1,
    limit: Annotated[int, Query(json_schema_extra={"minimum": 1, "maximum": MAX_LIMIT})] = 10,
    order: Literal["asc", "desc"] = "desc",
    error: Annotated[bool, Query(description="only failed executions")] = False,
) -> Response:
    """Executions of a workflow, newest first: the reference's items plus reflow's fields."""
    executions = await reflow.logs.workflow_logs(
        team, workflowId, userId, LogsPage(page, limit, order, error)
    )
    return json_response({"data": [log_item(e) for e in executions]})


@router.get("/logs/{executionId}", response_model=Execution, summary="One execution",
            responses=error_responses(404, details={404: "no such execution, or purged "
                                                       "by retention"}))
async def execution(
    executionId: str, team: CurrentTeam, reflow: ReflowDep
) -> Response:
    """One execution with its trigger, output and every step in full."""
    return json_response({"data": execution_detail(await reflow.logs.execution(team, executionId))})
