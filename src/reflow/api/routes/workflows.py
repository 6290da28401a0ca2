"""``/workflows``: definitions, versions and activation."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from reflow.api.deps import CurrentTeam, ReflowDep
from reflow.api.errors import error_responses, json_response
from reflow.api.routing import OrjsonRoute
from reflow.api.schemas import Activated, VersionCreated, Versions, WorkflowRef
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
