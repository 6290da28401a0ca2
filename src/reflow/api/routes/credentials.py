"""Users' credentials (C1-C3, in the 2025-09 and the SDKs' paths). No answer ever holds
a credential's value: lists show the app, health and times."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from reflow.api.deps import CurrentTeam, ReflowDep
from reflow.api.errors import error_responses, json_response
from reflow.api.presenters.credentials import credential_item
from reflow.api.routing import OrjsonRoute
from reflow.api.schemas import (
    CredentialCreate,
    CredentialCreated,
    CredentialList,
    CredentialValues,
    Success,
    UserCredentialCreate,
)
from reflow.domain.records import Team
from reflow.services import Reflow

router = APIRouter(tags=["credentials"], route_class=OrjsonRoute)

_CREATE_ERRORS = error_responses(
    404, 409, details={404: "no such user or app",
                       409: "REFLOW_SECRET_KEY is not set: nothing can be stored encrypted"})


@router.get("/credentials/users/{userId}", response_model=CredentialList,
            summary="List a user's credentials", responses=error_responses(404))
@router.get("/users/{userId}/credentials", response_model=CredentialList,
            summary="List a user's credentials (SDK path)", responses=error_responses(404))
async def list_credentials(userId: str, team: CurrentTeam, reflow: ReflowDep) -> Response:
    """The user's credentials, oldest first: app, health and times, never a value."""
    found = await reflow.credentials.of_user(team, userId)
    return json_response({"data": [credential_item(c) for c in found]})


async def _create(reflow: Reflow, team: Team, user_ref: str, values: CredentialValues
                  ) -> Response:
    created = await reflow.credentials.create(team, user_ref, values.type, values.data)
    return json_response({"success": True, "credentialId": created.id})


@router.post("/headless/credentials", response_model=CredentialCreated,
             summary="Create a credential", responses=_CREATE_ERRORS)
async def create_credential(body: CredentialCreate, team: CurrentTeam, reflow: ReflowDep
                            ) -> Response:
    """Store the user's values for an app, encrypted; a 422 names each missing or unknown
    field (never a value)."""
    return await _create(reflow, team, body.userId, body.credential)


@router.post("/users/{userId}/credentials", response_model=CredentialCreated,
             summary="Create a credential (alloy-python)", responses=_CREATE_ERRORS)
async def create_user_credential(userId: str, body: UserCredentialCreate, team: CurrentTeam,
                                 reflow: ReflowDep) -> Response:
    """``POST /headless/credentials`` with the user in the path."""
    return await _create(reflow, team, userId, body.credential)


@router.delete("/users/{userId}/credentials/{credentialId}", response_model=Success,
               summary="Delete a credential",
               responses=error_responses(404, details={404: "no such user or credential"}))
async def delete_credential(userId: str, credentialId: str, team: CurrentTeam,
                            reflow: ReflowDep) -> Response:
    """Delete one of the user's credentials (runs that need it then fail saying so)."""
    await reflow.credentials.delete(team, userId, credentialId)
    return json_response({"success": True})
