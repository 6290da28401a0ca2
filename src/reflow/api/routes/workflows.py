"""``/workflows``: definitions, versions and activation."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from reflow.api.deps import CurrentTeam, ReflowDep
from reflow.api.errors import error_responses, json_response
from reflow.api.presenters.workflows import workflow_detail, workflow_item
from reflow.api.routing import OrjsonRoute
from reflow.api.schemas import (
    Activated,
    Analytics,
    Deactivated,
    Deleted,
    OneWorkflow,
    Upgraded,
    UserWorkflows,
    VersionCreated,
    Versions,
    WorkflowErrors,
    WorkflowRef,
    WorkflowUsers,
)
from reflow.services.logs import iso
from reflow.services.workflows import Applied, definition_from_text

router = APIRouter(tags=["workflows"], route_class=OrjsonRoute)

# The body is read as text (JSON or YAML) and validated by the domain's validator; its
# schema is the component ``create_app`` builds from the registered block types.
_DEFINITION_BODY = {
    "requestBody": {
        "required": True,
        "description": "A workflow definition (docs/workflows.md), as JSON or YAML; a 422 "
                       "lists every problem by path.",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/WorkflowDefinition"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}
_NAME_TAKEN = "another workflow of the team has this name"
_NOT_INSTALLED = "no such user or workflow, or the user has not installed it"
UserIdParam = Annotated[str, Query(min_length=1, description="the user's id or username")]


def _applied(applied: Applied) -> Response:
    return json_response({"workflowId": applied.workflow.id, "version": applied.version,
                          "created": applied.created})


@router.post("/workflows", response_model=VersionCreated, openapi_extra=_DEFINITION_BODY,
             summary="Create a workflow",
             responses=error_responses(409, details={409: _NAME_TAKEN}))
async def create_workflow(request: Request, team: CurrentTeam, reflow: ReflowDep) -> Response:
    """Store a new workflow at version 1 (422 lists every problem of an invalid one)."""
    definition = definition_from_text(await request.body(), request.headers.get("content-type"))
    return _applied(await reflow.workflows.create(team, definition))


@router.put("/workflows/activate", response_model=Activated, summary="Activate a workflow",
            responses=error_responses(404, details={404: "no such user or workflow"}))
async def activate(body: WorkflowRef, team: CurrentTeam, reflow: ReflowDep) -> Response:
    """Install the workflow's latest version for the user, or reactivate their copy."""
    await reflow.workflows.activate(team, body.userId, body.workflow)
    return json_response({"activated": True})


@router.put("/workflows/{workflowId}/definition", response_model=VersionCreated,
            openapi_extra=_DEFINITION_BODY, summary="Add a version",
            responses=error_responses(404, 409, details={409: _NAME_TAKEN}))
async def put_definition(
    workflowId: str, request: Request, team: CurrentTeam, reflow: ReflowDep
) -> Response:
    """Store a new version, unless the definition equals the latest one (``created: false``)."""
    definition = definition_from_text(await request.body(), request.headers.get("content-type"))
    return _applied(await reflow.workflows.add_version(team, workflowId, definition))


@router.get("/workflows/{workflowId}/versions", response_model=Versions,
            summary="List a workflow's versions",
            responses=error_responses(404, details={404: "no such workflow or user"}))
async def list_versions(
    workflowId: str, team: CurrentTeam, reflow: ReflowDep, userId: str | None = None
) -> Response:
    """Every version, oldest first; with ``userId``, also the version that user runs."""
    installed = None
    if userId is not None:
        target = await reflow.workflows.resolve(team, workflowId, userId)
        installed = target.installation.installed_version if target.installation else None
    workflow, versions = await reflow.workflows.versions(team, workflowId)
    return json_response({
        "workflowId": workflow.id,
        "name": workflow.name,
        "version": workflow.latest_version,
        "installedVersion": installed,
        "data": [
            {"version": v.version, "createdAt": iso(v.created_at), "digest": v.digest,
             "definition": orjson.Fragment(v.definition)}
            for v in versions
        ],
    })


@router.get("/workflows", response_model=UserWorkflows, summary="List a user's workflows",
            responses=error_responses(404, details={404: "no such user"}))
async def list_workflows(team: CurrentTeam, reflow: ReflowDep, userId: UserIdParam) -> Response:
    """The workflows the user has installed (active or not), by name."""
    installed = await reflow.workflows.installed(team, userId)
    return json_response({"data": [workflow_item(i) for i in installed]})


@router.put("/workflows/deactivate", response_model=Deactivated,
            summary="Deactivate a workflow",
            responses=error_responses(404, details={404: _NOT_INSTALLED}))
async def deactivate(body: WorkflowRef, team: CurrentTeam, reflow: ReflowDep) -> Response:
    """Refuse the user's runs and events of the workflow until it is activated again."""
    await reflow.workflows.deactivate(team, body.userId, body.workflow)
    return json_response({"deactivated": True})


@router.get("/workflows/{workflowId}", response_model=OneWorkflow, summary="Get a workflow",
            responses=error_responses(404, details={404: "no such user or workflow"}))
async def get_workflow(
    workflowId: str, team: CurrentTeam, reflow: ReflowDep, userId: UserIdParam
) -> Response:
    """The workflow as the user sees it, with the blocks of the version they run (the
    latest when they have not installed it), and their webhook URL when it is
    webhook-triggered."""
    detail = await reflow.workflows.detail(team, workflowId, userId)
    webhook_url = await reflow.webhooks.url_for(team, detail.item.installation)
    return json_response({"data": {**workflow_detail(detail), "webhookUrl": webhook_url}})


@router.delete("/workflows/{workflowId}", response_model=Deleted,
               summary="Delete a user's workflow",
               responses=error_responses(404, 409, details={
                   404: _NOT_INSTALLED,
                   409: "some of its executions are queued, running or waiting"}))
async def delete_workflow(
    workflowId: str,
    team: CurrentTeam,
    reflow: ReflowDep,
    userId: Annotated[str | None, Query(min_length=1, description=(
        "the user's id or username; required with a parent workflow id or name"))] = None,
) -> Response:
    """Delete the user's installation (not the workflow for other users): it runs nothing
    more; its executions and logs stay. Activating it again installs the latest version."""
    await reflow.workflows.delete(team, workflowId, userId)
    return json_response({"deleted": True})


@router.put("/workflows/{workflowId}/upgrade", response_model=Upgraded,
            summary="Upgrade a user's workflow",
            responses=error_responses(404, details={404: _NOT_INSTALLED}))
async def upgrade(
    workflowId: str, team: CurrentTeam, reflow: ReflowDep, userId: UserIdParam
) -> Response:
    """Move the user's installation to the latest version (``upgraded: false`` when it
    was already there)."""
    before, installation = await reflow.workflows.upgrade_from(team, userId, workflowId)
    return json_response({"upgraded": before != installation.installed_version,
                          "previousVersion": before,
                          "installedVersion": installation.installed_version})


@router.get("/workflows/{workflowId}/users", response_model=WorkflowUsers,
            summary="List a workflow's users",
            responses=error_responses(404, details={404: "no such workflow"}))
async def list_workflow_users(workflowId: str, team: CurrentTeam, reflow: ReflowDep) -> Response:
    """The live users with an installation of the parent workflow (active or not)."""
    installers = await reflow.workflows.installers(team, workflowId)
    return json_response({"data": [
        {"userId": user.id, "username": user.username, "fullName": user.full_name,
         "workflowActive": installation.active,
         "installedVersion": installation.installed_version,
         "installedAt": iso(installation.installed_at)}
        for user, installation in installers
    ]})


@router.get("/workflows/{workflowId}/errors", response_model=WorkflowErrors,
            summary="List a workflow's errors",
            responses=error_responses(404, details={404: _NOT_INSTALLED}))
async def list_errors(
    workflowId: str,
    team: CurrentTeam,
    reflow: ReflowDep,
    userId: Annotated[str | None, Query(min_length=1)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    """The user's failed executions, newest first (every user's without ``userId`` and
    with a parent id); an empty list when there are none."""
    failed = await reflow.workflows.errors(team, workflowId, userId, limit)
    return json_response({"errors": [
        {"executionId": f.execution.id, "workflowId": f.execution.workflow_id,
         "installationId": f.execution.installation_id, "blockId": f.block_id,
         "blockType": f.block_type, "error": f.message,
         "createdAt": iso(f.execution.stopped_at or f.execution.created_at)}
        for f in failed
    ]})


@router.get("/workflows/{workflowId}/analytics", response_model=Analytics,
            summary="Count a workflow's runs",
            responses=error_responses(404, details={404: _NOT_INSTALLED}))
async def analytics(
    workflowId: str,
    team: CurrentTeam,
    reflow: ReflowDep,
    userId: Annotated[str | None, Query(min_length=1)] = None,
) -> Response:
    """Runs, failed runs and http steps run, over the executions still kept (the log
    retention): one user's copy, or every copy given a parent id without ``userId``."""
    activity = await reflow.workflows.activity(team, workflowId, userId)
    return json_response({"totalAppActions": activity.actions,
                          "totalWorkflowRuns": activity.runs,
                          "totalErrors": activity.errors})
