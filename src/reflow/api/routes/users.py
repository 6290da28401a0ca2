"""``/users``: enough of the users API to own executions."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from reflow.api.deps import CurrentTeam, ReflowDep
from reflow.api.errors import error_responses, json_response
from reflow.api.routing import OrjsonRoute
from reflow.api.schemas import UserCreate, UserCreated, UserPublic

router = APIRouter(tags=["users"], route_class=OrjsonRoute)


@router.post("/users", response_model=UserCreated, summary="Create a user",
             responses=error_responses(409, details={409: "the username is taken"}))
@router.post("/users/", response_model=UserCreated, include_in_schema=False)
async def create_user(body: UserCreate, team: CurrentTeam, reflow: ReflowDep) -> Response:
    """Create an end user; ``username`` must be unique in the team (409 otherwise)."""
    user = await reflow.users.create(team, body.username, body.fullName)
    return json_response({"userId": user.id})


@router.get("/users/{userId}", response_model=UserPublic, summary="Get a user",
            responses=error_responses(404))
async def get_user(userId: str, team: CurrentTeam, reflow: ReflowDep) -> Response:
    """A user by id or username."""
    user = await reflow.users.get(team, userId)
    return json_response({"userId": user.id, "username": user.username,
                          "fullName": user.full_name})
