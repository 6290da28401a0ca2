"""``GET /events`` and ``POST /run/event``: custom events (reference E1, E2)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from reflow.api.deps import CurrentTeam, ReflowDep
from reflow.api.errors import error_responses, json_response
from reflow.api.routing import OrjsonRoute
from reflow.api.schemas import EventFired, Events, FireEvent

router = APIRouter(tags=["events"], route_class=OrjsonRoute)


@router.get(
    "/events",
    response_model=Events,
    responses=error_responses(404, details={404: "no such userId"}),
    summary="List custom events",
)
async def list_events(
    team: CurrentTeam, reflow: ReflowDep, userId: str | None = None
) -> Response:
    """Every event a workflow of the team declares in its latest version, once, by name:
    ``{"data": [{"name", "description", "body"}]}``. ``userId`` (the SDKs send it) does
    not narrow the list; an unknown one is a 404."""
    declared = await reflow.runs.events.declared(team, userId)
    return json_response({"data": [
        {"name": e.name, "description": e.description, "body": e.body} for e in declared
    ]})


@router.post(
    "/run/event",
    response_model=EventFired,
    responses=error_responses(404, details={404: "no such user, or no workflow declares "
                                                 "the event"}),
    summary="Fire a custom event",
)
async def fire_event(body: FireEvent, team: CurrentTeam, reflow: ReflowDep) -> Response:
    """Start every active copy of the user's workflows that the event triggers; answered
    once all are committed, with their ids (``[]`` when the user has none subscribed)."""
    ids = await reflow.runs.fire_event(team, body.event, body.userId, body.data)
    return json_response({"message": "Event successfully triggered", "executionIds": ids})
