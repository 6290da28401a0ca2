"""``/users``: the users API of the reference (U1-U6, U8, U9; U7 is in tokens.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from reflow.api.deps import CurrentTeam, ReflowDep
from reflow.api.errors import error_responses, json_response
from reflow.api.routing import OrjsonRoute
from reflow.api.schemas import (
    Invalid,
    Message,
    Success,
    UserBatch,
    UserCreate,
    UserCreated,
    UserList,
    UserPublic,
    UserUpdate,
)
from reflow.domain.records import User
from reflow.errors import InvalidRequest
from reflow.services.users import BatchRefused, NewUser, UserChanges

router = APIRouter(tags=["users"], route_class=OrjsonRoute)


def _public(user: User) -> dict[str, Any]:
    return {"userId": user.id, "username": user.username, "fullName": user.full_name}


@router.post("/users", response_model=UserCreated, summary="Create a user",
             responses=error_responses(409, details={409: "the username is taken"}))
@router.post("/users/", response_model=UserCreated, include_in_schema=False)
async def create_user(body: UserCreate, team: CurrentTeam, reflow: ReflowDep) -> Response:
    """Create an end user; ``username`` must be unique in the team (409 otherwise)."""
    user = await reflow.users.create(team, body.username, body.fullName)
    return json_response({"userId": user.id})


@router.get("/users", response_model=UserList, summary="List users",
            responses=error_responses(404, details={404: "no such parentWorkflowId"}))
async def list_users(
    team: CurrentTeam, reflow: ReflowDep, parentWorkflowId: str | None = None
) -> Response:
    """The team's users, oldest first; with ``parentWorkflowId`` (a workflow id or name)
    only those who have an installation of that workflow."""
    users = await reflow.users.all(team, parentWorkflowId)
    return json_response({"data": [_public(u) for u in users]})


@router.post(
    "/users/batch", response_model=UserList, summary="Create users in a batch",
    responses={422: {"model": Invalid,
                     "description": "nothing was created: problems lists every refused "
                                    "item by index (invalid, taken, or repeated in the "
                                    "batch), or each problem of a malformed body by path"}},
)
async def create_users(body: UserBatch, team: CurrentTeam, reflow: ReflowDep) -> Response:
    """Create up to 1,000 users, all or none; the answer lists them in the order sent."""
    items = [NewUser(item.username, item.fullName) for item in body.users]
    try:
        users = await reflow.users.create_many(team, items)
    except BatchRefused as exc:
        problems = [{"index": p.index, "username": p.username,
                     "path": f"users[{p.index}].{p.field}", "reason": p.reason}
                    for p in exc.problems]
        return json_response({"message": exc.message, "problems": problems}, 422)
    return json_response({"data": [_public(u) for u in users]})


@router.get("/users/{userId}", response_model=UserPublic, summary="Get a user",
            responses=error_responses(404))
async def get_user(userId: str, team: CurrentTeam, reflow: ReflowDep) -> Response:
    """A user by id or username."""
    return json_response(_public(await reflow.users.get(team, userId)))


@router.put("/users/{userId}", response_model=UserPublic, summary="Update a user",
            responses=error_responses(404, 409, details={409: "the username is taken"}))
async def update_user(
    userId: str, body: UserUpdate, team: CurrentTeam, reflow: ReflowDep
) -> Response:
    """Change a user's username or full name (a field left out is kept); the user as
    ``GET /users/{userId}`` answers it."""
    changes = UserChanges(body.username, body.fullName, "fullName" in body.model_fields_set)
    return json_response(_public(await reflow.users.update(team, userId, changes)))


@router.delete("/users/{userId}", response_model=Success, summary="Delete a user",
               responses=error_responses(404))
async def delete_user(userId: str, team: CurrentTeam, reflow: ReflowDep) -> Response:
    """Delete a user: its installations stop, its logs stay (``DELETE
    /users/{userId}/logs`` removes them), and its username is free again."""
    await reflow.users.delete(team, userId)
    return json_response({"success": True})


@router.delete(
    "/users/{userId}/logs", response_model=Message, summary="Delete all logs of a user",
    responses=error_responses(404, 409, details={
        409: "some of the user's executions are still queued, running or waiting"}),
)
async def delete_user_logs(
    userId: str, team: CurrentTeam, reflow: ReflowDep,
    query_user_id: Annotated[str | None, Query(
        alias="userId", description="the reference's query form; when given (not empty) "
                                    "it must equal the path's")] = None,
) -> Response:
    """Delete every execution of the user (a deleted user's too, by id), with its steps;
    refused with 409, deleting nothing, while any of them has not finished."""
    if query_user_id and query_user_id != userId:
        raise InvalidRequest("userId: the query and the path name different users")
    await reflow.users.delete_logs(team, userId)
    return json_response({"message": "Success"})


@router.put("/users/{userId}/deactivate-workflows", response_model=Message,
            summary="Deactivate all workflows of a user", responses=error_responses(404))
async def deactivate_workflows(userId: str, team: CurrentTeam, reflow: ReflowDep) -> Response:
    """Deactivate every active installation of the user (runs of them are refused until
    each is activated again)."""
    await reflow.users.deactivate_workflows(team, userId)
    return json_response({"message": "Success"})
