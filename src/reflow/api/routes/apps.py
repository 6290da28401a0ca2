"""``/apps`` (declare, list), ``/metadata/apps`` and the credential metadata endpoints (C4):
the apps a team's users can connect, and the fields each asks for."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from reflow.api.deps import CurrentTeam, ReflowDep
from reflow.api.errors import error_responses, json_response
from reflow.api.presenters.credentials import app_item, metadata_item
from reflow.api.routing import OrjsonRoute
from reflow.api.schemas import AppApplied, AppList, CredentialMetadata
from reflow.domain.apps import app_from_text

router = APIRouter(tags=["apps"], route_class=OrjsonRoute)

# Read as text (JSON or YAML), like POST /workflows; checked by the domain's validator.
_DECLARATION_BODY = {
    "requestBody": {
        "required": True,
        "description": "An app declaration (docs/credentials.md), as JSON or YAML; a 422 "
                       "lists every problem by path.",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


@router.post("/apps", response_model=AppApplied, openapi_extra=_DECLARATION_BODY,
             summary="Declare an app")
async def declare(request: Request, team: CurrentTeam, reflow: ReflowDep) -> Response:
    """Create the app the body declares, or update the one of that name to it."""
    declared = app_from_text(await request.body(), request.headers.get("content-type"))
    applied = await reflow.apps.apply(team, declared)
    record = applied.app.record
    return json_response({"appId": record.id, "name": record.name,
                          "created": applied.created, "changed": applied.changed})


@router.get("/apps", response_model=AppList, summary="List apps")
@router.get("/metadata/apps", response_model=AppList, summary="List apps (alloy-node)")
async def list_apps(team: CurrentTeam, reflow: ReflowDep) -> Response:
    """The team's apps, by name."""
    return json_response({"data": [app_item(a) for a in await reflow.apps.all(team)]})


@router.get("/metadata/credentials", response_model=CredentialMetadata,
            summary="Credential structures")
async def credential_metadata(team: CurrentTeam, reflow: ReflowDep) -> Response:
    """Every app with the fields a user fills in to connect it."""
    return json_response({"data": [metadata_item(a) for a in await reflow.apps.all(team)]})


@router.get("/credentials", response_model=CredentialMetadata,
            summary="Credential structures (alloy-python)",
            responses=error_responses(404, details={404: "no such user"}))
async def credential_metadata_for_user(
    team: CurrentTeam, reflow: ReflowDep,
    userId: Annotated[str | None, Query(description="the user's id or username")] = None,
) -> Response:
    """``GET /metadata/credentials`` as alloy-python asks for it; a given user must exist."""
    if userId is not None:
        await reflow.users.get(team, userId)
    return json_response({"data": [metadata_item(a) for a in await reflow.apps.all(team)]})


@router.get("/metadata/credentials/{app}", response_model=CredentialMetadata,
            summary="One app's credential structure",
            responses=error_responses(404, details={404: "no such app"}))
async def credential_metadata_of_app(app: str, team: CurrentTeam, reflow: ReflowDep
                                     ) -> Response:
    """The app's fields, as the one item of ``data``."""
    return json_response({"data": [metadata_item(await reflow.apps.get(team, app))]})
