"""OAuth connections: the authorize URL (C5 and alloy-python's C5b), reflow's callback,
the team's redirect URL, and credential events (docs/credentials.md "OAuth")."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from starlette.responses import RedirectResponse, Response

from reflow.api.deps import CurrentTeam, ReflowDep
from reflow.api.errors import error_responses, json_response
from reflow.api.routing import OrjsonRoute
from reflow.domain.records import Team
from reflow.services import Reflow
from reflow.services.oauth import event_json

router = APIRouter(tags=["credentials"], route_class=OrjsonRoute)


class OAuthLink(BaseModel):
    """``{"data": {"oauthUrl"}}``: where to send the user to connect the app."""

    data: dict[str, str]


class RedirectSetting(BaseModel):
    """The team's OAuth redirect URL (null: not set; the callback then answers JSON)."""

    model_config = ConfigDict(extra="forbid")
    redirectUrl: str | None


class Connected(BaseModel):
    """The callback's answer when the team set no redirect URL."""

    success: bool
    credentialId: str


class CredentialEvents(BaseModel):
    """Credential events, newest first."""

    data: list[dict[str, Any]]


# A 422 (COMMON_ERRORS): the app is not an OAuth app, its client id is not set, or
# redirectUri is not allowed.
_LINK_ERRORS = error_responses(404, 409, details={
    404: "no such user or app",
    409: "REFLOW_SECRET_KEY is not set: the state cannot be signed"})


async def _link(reflow: Reflow, team: Team, user: str, app: str | None,
                redirect_uri: str | None) -> Response:
    url = await reflow.oauth.authorize_url(team, user, app, redirect_uri)
    return json_response({"data": {"oauthUrl": url}})


@router.get("/headless/oauthUrl", response_model=OAuthLink, responses=_LINK_ERRORS,
            summary="Get an OAuth URL for headless mode")
async def oauth_url(team: CurrentTeam, reflow: ReflowDep, userId: str, app: str | None = None,
                    redirectUri: str | None = None) -> Response:
    """The app's authorize URL for the user (PKCE S256, a signed state valid 10 minutes,
    once); after the user agrees, reflow's callback stores the tokens and sends the
    browser to the team's redirect URL (or ``redirectUri``, of the same origin)."""
    return await _link(reflow, team, userId, app, redirectUri)


@router.get("/users/{userId}/credentials/{app}", response_model=OAuthLink,
            responses=_LINK_ERRORS, summary="Get an OAuth URL (alloy-python)")
async def user_oauth_url(userId: str, app: str, team: CurrentTeam, reflow: ReflowDep,
                         integrationId: str | None = None,
                         redirectUri: str | None = None) -> Response:
    """``GET /headless/oauthUrl`` with the user and app in the path (``integrationId``,
    which alloy-python sends, does not change the URL)."""
    return await _link(reflow, team, userId, app, redirectUri)


@router.get("/oauth/callback", response_model=None, include_in_schema=True,
            summary="The OAuth provider's callback (no API key)",
            responses={200: {"model": Connected, "description": "connected, when the team "
                             "set no redirect URL; with one, a 302 to it with status=success"
                             "&credentialId=... or status=error&error=...&message=..."},
                       **error_responses(400, details={
                           400: "a missing, forged, expired or used state; or, with no "
                                "redirect URL set, a refused connection"})})
async def oauth_callback(reflow: ReflowDep, state: str | None = None, code: str | None = None,
                         error: str | None = None,
                         error_description: str | None = None) -> Response:
    """Where the provider sends the user's browser: the state is used up, the code
    exchanged and the tokens stored as the user's credential for the app."""
    result = await reflow.oauth.callback(state, code, error, error_description)
    if result.redirect is not None:
        return RedirectResponse(result.redirect, status_code=302)
    if result.success:
        return json_response({"success": True, "credentialId": result.credential_id})
    return json_response({"message": result.message}, status=400)


@router.get("/settings/oauth", response_model=RedirectSetting,
            summary="The team's OAuth redirect URL")
async def get_redirect(team: CurrentTeam, reflow: ReflowDep) -> Response:
    """Where the callback sends the user's browser back (null: it answers JSON)."""
    return json_response({"redirectUrl": await reflow.oauth.redirect_url(team)})


@router.put("/settings/oauth", response_model=RedirectSetting,
            summary="Set the team's OAuth redirect URL")
async def set_redirect(body: RedirectSetting, team: CurrentTeam, reflow: ReflowDep
                       ) -> Response:
    """Set (null: clear) where the callback sends the user's browser back, with
    ``status``, ``app``, ``userId`` and ``credentialId`` or ``error`` in the query."""
    url = await reflow.oauth.set_redirect_url(team, body.redirectUrl)
    return json_response({"redirectUrl": url})


@router.get("/credentials/events", response_model=CredentialEvents,
            responses=error_responses(404, details={404: "no such user"}),
            summary="Credential events")
async def credential_events(team: CurrentTeam, reflow: ReflowDep, userId: str | None = None,
                            limit: int = 100) -> Response:
    """``credential.connected``, ``credential.reconnected`` and
    ``credential.needs_reconnect`` events of the team's (or a user's) credentials, newest
    first."""
    found = await reflow.oauth.events(team, userId, limit)
    return json_response({"data": [event_json(e) for e in found]})
