"""``/reruns``: bulk rerun jobs (reflow's own API; docs/api.md "Bulk rerun")."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from reflow.api.deps import CurrentTeam, ReflowDep
from reflow.api.errors import error_responses, json_response
from reflow.api.routing import OrjsonRoute
from reflow.api.schemas import Strict
from reflow.domain.executions import ExecutionStatus
from reflow.domain.reruns import ItemState, JobStatus, RerunItem, RerunJob
from reflow.services.logs import iso
from reflow.services.reruns import DEFAULT_RESULTS, MAX_JOBS, MAX_RESULTS, JobPage

router = APIRouter(tags=["reruns"], route_class=OrjsonRoute)

_TIME = "an ISO 8601 time, milliseconds since 1970, or a duration meaning that long ago (24h)"


class RerunFilterBody(Strict):
    """Which executions to rerun: the team's, created in [since, until)."""

    workflowId: str | None = Field(default=None, description="a workflow id or name (all "
                                                             "of the team's when omitted)")
    userId: str | None = Field(default=None, description="a user id or username")
    status: Literal["failed", "succeeded", "cancelled"] | None = Field(
        default=None, description="the executions' status (default failed)")
    since: str | int = Field(description=f"the window's start (required): {_TIME}")
    until: str | int | None = Field(default=None,
                                    description=f"the window's end (default now): {_TIME}")
    error: str | None = Field(default=None, description="text the error message contains "
                                                        "(any case)")
    blockId: str | None = Field(default=None, description="the block whose failure ended "
                                                          "the execution")


class RerunJobCreate(Strict):
    """``POST /reruns``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    filter: RerunFilterBody
    from_: str | None = Field(default=None, alias="from", description="'start' (default), "
                              "'failed' or a block id, as for a single rerun")
    version: Literal["original", "installed", "latest"] | None = Field(
        default=None, description="'original' (default), 'installed' or 'latest'")


class RerunJobCreated(BaseModel):
    """A job was created; its executions are rerun in the background."""

    jobId: str
    status: JobStatus
    total: int


class RerunResult(BaseModel):
    """One execution of the job: ``newExecutionId`` once rerun, ``error`` when refused."""

    executionId: str
    state: ItemState
    newExecutionId: str | None = None
    status: ExecutionStatus | None = Field(
        default=None, description="the new execution's status now")
    error: str | None = None


class RerunFilterView(BaseModel):
    """The filter as resolved (ids, times in ISO 8601)."""

    workflowId: str | None
    userId: str | None
    status: ExecutionStatus
    since: str
    until: str
    error: str | None
    blockId: str | None


class RerunJobView(BaseModel):
    """A job and its progress (``GET /reruns`` lists these without results)."""

    jobId: str
    status: JobStatus
    total: int
    done: int
    failed: int
    cancelled: int
    pending: int
    filter: RerunFilterView
    options: dict[str, str]
    createdAt: str
    startedAt: str | None
    finishedAt: str | None


class RerunJobDetail(RerunJobView):
    """A job, its progress and a page of its results (in the order they were selected)."""

    results: list[RerunResult]
    offset: int
    nextOffset: int | None = Field(description="the next page's offset (null: last page)")


class RerunJobList(BaseModel):
    """The team's jobs, newest first."""

    data: list[RerunJobView]


def job_json(job: RerunJob) -> dict[str, Any]:
    """A job as the API shows it."""
    f = job.filter
    return {
        "jobId": job.id, "status": job.status.value, "total": job.total, "done": job.done,
        "failed": job.failed, "cancelled": job.cancelled, "pending": job.pending,
        "filter": {"workflowId": f.workflow_id, "userId": f.user_id, "status": f.status.value,
                   "since": iso(f.since), "until": iso(f.until), "error": f.error,
                   "blockId": f.block_id},
        "options": job.options.as_json(), "createdAt": iso(job.created_at),
        "startedAt": iso(job.started_at), "finishedAt": iso(job.finished_at),
    }


def result_json(item: RerunItem) -> dict[str, Any]:
    """One item: ``{executionId, newExecutionId}`` or ``{executionId, error}``, with its
    state (and the new execution's status)."""
    shown: dict[str, Any] = {"executionId": item.execution_id, "state": item.state.value}
    if item.new_execution_id is not None:
        shown["newExecutionId"] = item.new_execution_id
        shown["status"] = None if item.status is None else item.status.value
    if item.error is not None:
        shown["error"] = item.error
    return shown


def page_json(page: JobPage) -> dict[str, Any]:
    """A job with a page of its results."""
    return {**job_json(page.job), "results": [result_json(r) for r in page.results],
            "offset": page.offset, "nextOffset": page.next_offset}


@router.post(
    "/reruns", response_model=RerunJobCreated, summary="Rerun every execution a filter selects",
    responses=error_responses(404, details={404: "no such workflow or user"}),
)
async def create_rerun_job(body: RerunJobCreate, team: CurrentTeam,
                           reflow: ReflowDep) -> Response:
    """Resolve the filter's executions now (at most 10,000, in a window of at most 31
    days) and rerun each in the background, at a bounded rate; follow it with
    ``GET /reruns/{jobId}``. 422 names the field that is wrong, or how many match when
    more than 10,000 do."""
    raw = body.filter.model_dump(exclude_none=True)
    job = await reflow.reruns.create(team, raw, body.from_, body.version)
    return json_response({"jobId": job.id, "status": job.status.value, "total": job.total})


@router.get("/reruns", response_model=RerunJobList, summary="List bulk rerun jobs")
async def list_rerun_jobs(
    team: CurrentTeam, reflow: ReflowDep,
    before: Annotated[str | None, Query(description="only jobs older than this job id")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_JOBS)] = 20,
) -> Response:
    """The team's jobs, newest first, with their progress."""
    jobs = await reflow.reruns.jobs(team, before, limit)
    return json_response({"data": [job_json(j) for j in jobs]})


@router.get("/reruns/{jobId}", response_model=RerunJobDetail, summary="Show a bulk rerun job",
            responses=error_responses(404, details={404: "no such job"}))
async def get_rerun_job(
    jobId: str, team: CurrentTeam, reflow: ReflowDep,
    offset: Annotated[int, Query(ge=0, description="the first result's position")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_RESULTS)] = DEFAULT_RESULTS,
) -> Response:
    """Progress (``status``, ``total``, ``done``, ``failed``, ``cancelled``, ``pending``)
    and a page of results: ``{executionId, newExecutionId, status}`` for a rerun,
    ``{executionId, error}`` for a refused one."""
    return json_response(page_json(await reflow.reruns.get(team, jobId, offset, limit)))


@router.delete("/reruns/{jobId}", response_model=RerunJobView,
               summary="Cancel a bulk rerun job",
               responses=error_responses(404, details={404: "no such job"}))
async def cancel_rerun_job(jobId: str, team: CurrentTeam, reflow: ReflowDep) -> Response:
    """Cancel the executions not yet rerun (a batch under way still completes); answers
    the job. An ended job is answered as it is."""
    return json_response(job_json(await reflow.reruns.cancel(team, jobId)))
