"""User tokens (Alloy U7) and the public keys that verify them (docs/tokens.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.responses import Response

from reflow.api.deps import CurrentTeam, ReflowDep
from reflow.api.errors import error_responses, json_response
from reflow.api.routing import OrjsonRoute
from reflow.errors import InvalidRequest

router = APIRouter(tags=["users"], route_class=OrjsonRoute)

# Verifiers may cache the key set: keys change only when REFLOW_SECRET_KEY does, and a
# verifier that meets an unknown kid fetches the set again (docs/tokens.md).
_JWKS_CACHE = "public, max-age=300"


class UserToken(BaseModel):
    """A user token: an EdDSA-signed JWT for the embedded UI."""

    token: str


class PublicKey(BaseModel):
    """One Ed25519 verification key as a JWK (RFC 8037)."""

    kty: str
    crv: str
    x: str
    kid: str
    alg: str
    use: str


class KeySet(BaseModel):
    """The verification keys, newest first (RFC 7517 JWK Set)."""

    keys: list[PublicKey]


# alloy-python sends a bare ``?userId`` (empty), alloy-node ``?userId=<id>``: both the path's.
UserIdQuery = Annotated[
    str | None,
    Query(alias="userId", description="the path's userId again (the reference's form); "
                                      "ignored when empty, 422 when it differs"),
]


@router.get("/users/{userId}/token", response_model=UserToken,
            summary="Generate a user token (JWT)",
            responses=error_responses(404, 503, details={
                503: "no REFLOW_SECRET_KEY to sign with, or the database failed",
            }))
async def user_token(
    userId: str, team: CurrentTeam, reflow: ReflowDep, query_user_id: UserIdQuery = None
) -> Response:
    """A JWT for the user (by id or username), signed with EdDSA; verify it with the keys
    of ``/.well-known/jwks.json``."""
    if query_user_id and query_user_id != userId:
        raise InvalidRequest("userId: the query's differs from the path's")
    token = await reflow.tokens.issue(team, userId)
    return json_response({"token": token})


@router.get("/.well-known/jwks.json", response_model=KeySet, include_in_schema=False)
async def jwks(reflow: ReflowDep) -> Response:
    """The public keys of user tokens; no API key needed (they are public)."""
    return json_response({"keys": reflow.tokens.jwks()}, headers={"cache-control": _JWKS_CACHE})
