"""``/integrations`` (I1, I2, and declaring one) and ``/installations`` (I3)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from reflow.api.deps import CurrentTeam, ReflowDep
from reflow.api.errors import error_responses, json_response
from reflow.api.presenters.integrations import installation_item, integration_item
from reflow.api.routing import OrjsonRoute
from reflow.api.schemas import (
    Installations,
    IntegrationApplied,
    IntegrationDeclaration,
    Integrations,
    OneIntegration,
)
from reflow.domain.integrations import integration_from_text

router = APIRouter(tags=["integrations"], route_class=OrjsonRoute)

# Read as text (JSON or YAML), like POST /workflows; checked by the domain's validator.
_DECLARATION_BODY = {
    "requestBody": {
        "required": True,
        "description": "An integration declaration (docs/api.md), as JSON or YAML; a 422 "
                       "lists every problem by key.",
        "content": {
            "application/json": {"schema": IntegrationDeclaration.model_json_schema()},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}
UserIdParam = Annotated[str, Query(min_length=1, description="the user's id or username")]


@router.post("/integrations", response_model=IntegrationApplied,
             openapi_extra=_DECLARATION_BODY, summary="Declare an integration")
async def declare(request: Request, team: CurrentTeam, reflow: ReflowDep) -> Response:
    """Create the integration the body names, or update the one of that name to it."""
    declared = integration_from_text(await request.body(), request.headers.get("content-type"))
    applied = await reflow.integrations.apply(team, declared)
    return json_response({"integrationId": applied.integration.id,
                          "name": applied.integration.name,
                          "created": applied.created, "changed": applied.changed})


@router.get("/integrations", response_model=Integrations, summary="List integrations",
            responses=error_responses(404, details={404: "no such user"}))
async def list_integrations(
    team: CurrentTeam, reflow: ReflowDep, userId: UserIdParam
) -> Response:
    """Every integration of the team with its workflows as the user sees them, by name."""
    found = await reflow.integrations.for_user(team, userId)
    return json_response({"data": [integration_item(i) for i in found]})


@router.get("/integrations/{integrationId}", response_model=OneIntegration,
            summary="Get an integration",
            responses=error_responses(404, details={404: "no such integration or user"}))
async def get_integration(
    integrationId: str, team: CurrentTeam, reflow: ReflowDep, userId: UserIdParam
) -> Response:
    """One integration, by id or name, with its workflows as the user sees them."""
    found = await reflow.integrations.one_for_user(team, integrationId, userId)
    return json_response({"data": integration_item(found)})


@router.get("/installations", response_model=Installations, summary="List installations")
async def list_installations(team: CurrentTeam, reflow: ReflowDep) -> Response:
    """Every live user's installations, one item per user and integration, oldest first,
    with the fields still lacking a value and the credentials pinned."""
    views = await reflow.headless.installations(team)
    return json_response({"data": [installation_item(v) for v in views]})
