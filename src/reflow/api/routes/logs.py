"""``/workflows/{id}/logs``, ``/logs`` (every workflow's, searched) and ``/logs/{executionId}``."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from starlette.responses import Response

from reflow.api.deps import CurrentTeam, ReflowDep
from reflow.api.errors import error_responses, json_response
from reflow.api.presenters.logs import execution_detail, log_item, search_page
from reflow.api.routing import OrjsonRoute
from reflow.api.schemas import Execution, Invalid, Logs, LogSearchResults
from reflow.domain.log_filters import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_WINDOW,
    FiltersInvalid,
    SearchPage,
    SortBy,
    parse_filters,
)
from reflow.services.logs import MAX_LIMIT as MAX_WORKFLOW_LIMIT
from reflow.services.logs import MAX_PAGE, LogsPage, SearchScope

router = APIRouter(tags=["logs"], route_class=OrjsonRoute)


@router.get("/workflows/{workflowId}/logs", response_model=Logs, summary="Workflow logs",
            responses=error_responses(404, details={404: "no such workflow or user"}))
# The path of the 2024-03 documentation's page (the reference's L1b).
@router.get("/workflow/{workflowId}/logs", response_model=Logs, include_in_schema=False)
async def workflow_logs(
    workflowId: str,
    team: CurrentTeam,
    reflow: ReflowDep,
    userId: str | None = None,
    # The bounds are LogsPage's (its message names the range); declared for the document.
    page: Annotated[int, Query(description="1-based; 0 is the first page too",
                               json_schema_extra={"minimum": 0, "maximum": MAX_PAGE})] = 1,
    limit: Annotated[int, Query(json_schema_extra={"minimum": 1,
                                                   "maximum": MAX_WORKFLOW_LIMIT})] = 10,
    order: Literal["asc", "desc"] = "desc",
    error: Annotated[bool, Query(description="only failed executions")] = False,
) -> Response:
    """Executions of a workflow, newest first: the reference's items plus reflow's fields."""
    executions = await reflow.logs.workflow_logs(
        team, workflowId, userId, LogsPage(page, limit, order, error)
    )
    return json_response({"data": [log_item(e) for e in executions]})


_FILTERS_HELP = (
    'A JSON array of {"columns": {"value": C}, "operators": {"value": O}, "userinput": '
    '{"value": V}, "condition": {"value": "and"|"or"}}; C: message, data.executionId, '
    "forgeWorkflowId, createdAt, userId, forgeWorkflow.integrationId._id, workflowVersion; "
    "O: equals, notequals, greaterthan, lessthan, contains, notcontains. Each condition "
    "joins a filter to the one before; and binds tighter than or (docs/api.md)."
)


@router.get(
    "/logs", response_model=LogSearchResults, summary="Logs of all workflows",
    responses={
        **error_responses(404, details={404: "no such workflowId or associatedUserId"}),
        422: {"model": Invalid, "description": "a malformed filter (problems names each by "
                                               "path, e.g. filters[1].userinput.value), or a "
                                               "page out of bounds"},
    },
)
async def search_logs(
    team: CurrentTeam,
    reflow: ReflowDep,
    filters: Annotated[str | None, Query(description=_FILTERS_HELP)] = None,
    workflowId: Annotated[str | None, Query(
        description="only this workflow's: a parent id or name, or an installation id")] = None,
    associatedUserId: Annotated[str | None, Query(
        description="only this user's: an id or username")] = None,
    skip: Annotated[int, Query(json_schema_extra={"minimum": 0,
                                                  "maximum": MAX_WINDOW - 1})] = 0,
    limit: Annotated[int, Query(description=f"skip + limit may not pass {MAX_WINDOW:,}",
                                json_schema_extra={"minimum": 1,
                                                   "maximum": MAX_LIMIT})] = DEFAULT_LIMIT,
    sortBy: SortBy = SortBy.CREATED_AT,
    sortOrder: Literal["asc", "desc"] = "desc",
) -> Response:
    """Every workflow's executions, newest first, filtered, a page at a time."""
    try:
        parsed = parse_filters(filters)
    except FiltersInvalid as exc:
        problems = [{"path": p.path, "reason": p.reason} for p in exc.problems]
        return json_response({"message": exc.message, "problems": problems}, 422)
    # Empty parameters (a client sending every key) narrow nothing.
    scope = SearchScope(workflowId or None, associatedUserId or None)
    result = await reflow.logs.search(team, parsed, scope,
                                      SearchPage(skip, limit, sortBy, sortOrder == "desc"))
    return json_response(search_page(result))


@router.get("/logs/{executionId}", response_model=Execution, summary="One execution",
            responses=error_responses(404, details={404: "no such execution, or purged "
                                                       "by retention"}))
async def execution(
    executionId: str, team: CurrentTeam, reflow: ReflowDep
) -> Response:
    """One execution with its trigger, output and every step in full."""
    return json_response({"data": execution_detail(await reflow.logs.execution(team, executionId))})
