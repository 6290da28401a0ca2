"""``/env``: the calling key's team reads and replaces its expression env (reflow's own API).

401 and 422 are the answers every route may give (``COMMON_ERRORS``): an oversized, too
deep or non-object ``env`` is a 422 with a message.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from reflow.api.deps import CurrentTeam, ReflowDep
from reflow.api.errors import json_response
from reflow.api.routing import OrjsonRoute
from reflow.api.schemas import TeamEnv

router = APIRouter(tags=["teams"], route_class=OrjsonRoute)


@router.get("/env", response_model=TeamEnv, summary="Get the team's expression env")
async def get_env(team: CurrentTeam, reflow: ReflowDep) -> Response:
    """The env the team set (without the deployment's defaults under it)."""
    return json_response({"env": await reflow.teams.env(team)})


@router.put("/env", response_model=TeamEnv, summary="Replace the team's expression env")
async def put_env(body: TeamEnv, team: CurrentTeam, reflow: ReflowDep) -> Response:
    """Replace the team's env; runs started from now on see it (other processes within
    seconds)."""
    return json_response({"env": await reflow.teams.replace_env(team, body.env)})
