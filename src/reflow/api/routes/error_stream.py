"""``/settings/error-stream``: the calling key's team streams its failed executions to a
URL of its own, each POST signed (reflow's own API: Alloy sets this in its dashboard only;
docs/api.md "Error streaming").
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from reflow.api.deps import CurrentTeam, ReflowDep
from reflow.api.errors import error_responses, json_response
from reflow.api.routing import OrjsonRoute
from reflow.api.schemas import ErrorStreamSet, ErrorStreamState, Message
from reflow.services.error_stream import team_summary

router = APIRouter(tags=["error stream"], route_class=OrjsonRoute)

_SEALED = {409: "the signing secret cannot be stored or opened: REFLOW_SECRET_KEY is unset, "
                "or lacks the key that encrypted it"}


@router.get("/settings/error-stream", response_model=ErrorStreamState,
            summary="Get the team's error stream", responses=error_responses(409, details=_SEALED))
async def get_error_stream(team: CurrentTeam, reflow: ReflowDep) -> Response:
    """The URL failed executions are POSTed to (null: none), the secret that signs them,
    and how many notifications are pending, delivered and given up."""
    return json_response(team_summary(await reflow.error_stream.get(team)))


@router.put("/settings/error-stream", response_model=ErrorStreamState,
            summary="Stream the team's failed executions to a URL",
            responses=error_responses(409, details=_SEALED))
async def put_error_stream(
    body: ErrorStreamSet, team: CurrentTeam, reflow: ReflowDep
) -> Response:
    """Set the URL; the answer carries the signing secret (made on the first set, kept on
    later ones unless ``rotateSecret``). Notifications not yet delivered go to the new URL."""
    stream = await reflow.error_stream.set(team, body.url, rotate_secret=body.rotateSecret)
    return json_response(team_summary(stream))


@router.delete("/settings/error-stream", response_model=Message,
               summary="Stop streaming the team's failed executions")
async def delete_error_stream(team: CurrentTeam, reflow: ReflowDep) -> Response:
    """Stop the stream and forget its secret; notifications not yet delivered are dropped.
    Answers 200 when there was none too."""
    await reflow.error_stream.clear(team)
    return json_response({"message": "Success"})
