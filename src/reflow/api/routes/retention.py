"""``/settings/retention``: how long the calling key's team keeps finished executions
(reflow's own API; docs/api.md "Retention"). A workflow's ``retention`` overrides it."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from reflow.api.deps import CurrentTeam, ReflowDep
from reflow.api.errors import json_response
from reflow.api.routing import OrjsonRoute
from reflow.api.schemas import RetentionSet, RetentionState
from reflow.domain.durations import parse_duration
from reflow.errors import InvalidRequest
from reflow.services.retention import TeamRetention
from reflow.services.runs import describe_duration

router = APIRouter(tags=["retention"], route_class=OrjsonRoute)


def _state(retention: TeamRetention) -> dict[str, object]:
    return {"window": describe_duration(retention.window),
            "windowSeconds": retention.window, "inherited": retention.inherited}


@router.get("/settings/retention", response_model=RetentionState,
            summary="Get the team's retention window")
async def get_retention(team: CurrentTeam, reflow: ReflowDep) -> Response:
    """How long the team's finished executions are kept, and whether that is the
    deployment's window."""
    return json_response(_state(await reflow.retention.team_window(team)))


@router.put("/settings/retention", response_model=RetentionState,
            summary="Set the team's retention window")
async def put_retention(body: RetentionSet, team: CurrentTeam, reflow: ReflowDep) -> Response:
    """Set the window (null: back to the deployment's). The next purge applies it."""
    window = None
    if body.window is not None:
        try:
            window = parse_duration(body.window)
        except ValueError as exc:
            raise InvalidRequest(f"window: {exc}") from None
    return json_response(_state(await reflow.retention.set_team_window(team, window)))
