"""Headless installation (H1: ``/headless/startInstallation``, ``completeInstallation``)
and install URLs (K1), with the install URL's own key-less form (docs/api.md
"Headless installation")."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from reflow.api.deps import CurrentTeam, ReflowDep
from reflow.api.errors import error_responses, json_response
from reflow.api.presenters.headless import completed_item, install_url_item, started_item
from reflow.api.routing import OrjsonRoute
from reflow.api.schemas import (
    CompleteInstallation,
    InstallationCompleted,
    InstallationStarted,
    InstallUrl,
    StartInstallation,
)
from reflow.errors import InvalidRequest

router = APIRouter(tags=["headless installation"], route_class=OrjsonRoute)

_COMPLETE_ERRORS = error_responses(404, 409, details={
    404: "no such installation (start one first)",
    409: "a secret field is given and REFLOW_SECRET_KEY is not set",
})


@router.post("/headless/startInstallation", response_model=InstallationStarted,
             summary="Start a headless installation",
             responses=error_responses(404, details={
                 404: "no such user, integration, workflow of it, or credential"}))
async def start_installation(body: StartInstallation, team: CurrentTeam, reflow: ReflowDep
                             ) -> Response:
    """Start installing an integration's workflows for a user: the configurable fields
    that still need a value, per workflow and block, and the credentials they use."""
    started = await reflow.headless.start(team, body.userId, body.integrationId,
                                          body.workflowIds, body.credentialIds)
    return json_response(started_item(started))


@router.post("/headless/completeInstallation", response_model=InstallationCompleted,
             summary="Complete a headless installation", responses=_COMPLETE_ERRORS)
async def complete_installation(body: CompleteInstallation, team: CurrentTeam,
                                reflow: ReflowDep) -> Response:
    """Store the values on the user's installations, pin the credentials and activate
    them; a 422 names each missing or invalid field (and nothing is written)."""
    done = await reflow.headless.complete(team, body.installationId, body.data,
                                          body.credentialIds)
    return json_response(completed_item(done))


@router.get("/users/{userId}/integrations/{integrationId}/install-url",
            response_model=InstallUrl, summary="Make an install URL",
            responses=error_responses(404, 409, details={
                404: "no such user or integration",
                409: "REFLOW_SECRET_KEY is not set: install URLs cannot be signed"}))
async def install_url(userId: str, integrationId: str, team: CurrentTeam, reflow: ReflowDep
                      ) -> Response:
    """A URL, valid for 24 hours, where the user's installation of the integration is
    started (GET: the form as JSON) and completed (POST), without an API key."""
    url, expires_at = await reflow.headless.install_url(team, userId, integrationId)
    return json_response(install_url_item(url, expires_at))


@router.get("/install/{token}", response_model=InstallationStarted,
            summary="Open an install URL",
            responses=error_responses(404, details={404: "unknown or expired install URL"}))
async def open_install_url(token: str, reflow: ReflowDep) -> Response:
    """No API key: the token names the team, user and integration. Starts the
    installation and answers its form, as startInstallation does."""
    team, user_id, integration_id = await reflow.headless.link_target(token)
    started = await reflow.headless.start(team, user_id, integration_id)
    return json_response(started_item(started))


@router.post("/install/{token}", response_model=InstallationCompleted,
             summary="Complete through an install URL",
             responses=error_responses(404, details={404: "unknown or expired install URL"}))
async def complete_install_url(token: str, request: Request, reflow: ReflowDep) -> Response:
    """No API key: ``{data, credentialIds}`` as completeInstallation takes them, for the
    installation the URL names."""
    team, user_id, integration_id = await reflow.headless.link_target(token)
    body = await _json_object(request)
    started = await reflow.headless.start(team, user_id, integration_id)
    done = await reflow.headless.complete(team, started.id, body.get("data"),
                                          body.get("credentialIds"))
    return json_response(completed_item(done))


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise InvalidRequest("the body must be a JSON object {data, credentialIds}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object {data, credentialIds}")
    return body
