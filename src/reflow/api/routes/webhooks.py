"""``/webhooks/{token}``: a user's copy started by a webhook call (no API key); and the
rotation of its URL."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.types import Scope

from reflow.api.deps import CurrentTeam, ReflowDep
from reflow.api.errors import error_responses, json_response
from reflow.api.routes.workflows import UserIdParam
from reflow.api.routing import OrjsonRoute
from reflow.api.schemas import WebhookAccepted, WebhookUrl
from reflow.domain.executions import ExecutionStatus
from reflow.services.webhooks import Received, WebhookCall

router = APIRouter(tags=["webhooks"], route_class=OrjsonRoute)

# Statuses after which a response carries no body.
_NO_BODY = frozenset({204, 304})
_CALL_DOC: dict[str, Any] = {
    # The URL's token is the credential: no API key.
    "security": [],
    "requestBody": {
        "required": False,
        "description": "Any JSON or form body: the execution's trigger.data (docs/api.md "
                       "\"Webhooks\"); an empty body is {}.",
        "content": {
            "application/json": {"schema": {}},
            "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
        },
    },
}


@router.post(
    "/webhooks/{token}",
    response_model=None,
    summary="Call a webhook URL",
    openapi_extra=_CALL_DOC,
    responses={
        200: {"model": WebhookAccepted, "description": "started (or, with a delivery id "
              "seen before, duplicate: true); with respond, the respond block's body and "
              "status instead"},
        202: {"model": WebhookAccepted, "description": "with respond: still running at "
              "the trigger's respond timeout"},
        **error_responses(400, 401, 404, 409, 410, 415, 500, details={
            400: "the delivery id header the definition names is missing",
            401: "the signature the definition asks for is missing, invalid or stale",
            404: "no such webhook URL (never issued, or rotated)",
            409: "the copy is deactivated, or runs a version not triggered by a webhook, or "
                 "the team's env lacks the signing secret",
            410: "the copy, or its user, was deleted",
            415: "the body is neither JSON nor a form",
            500: "with respond: the execution failed without answering",
        }),
    },
)
async def call_webhook(token: str, request: Request, reflow: ReflowDep) -> Response:
    """Start the copy the URL names with the call's body, query and headers as its trigger
    (mode ``webhook``): ``{"message": "success", "executionId"}`` once it is committed,
    or with ``respond`` in the trigger, the respond block's body and status.

    A call with its Content-Length is answered by ``api/fastpath.py`` with the same
    ``webhook_call`` and ``webhook_answer``."""
    call = webhook_call(token, await request.body(), request.scope)
    return webhook_answer(await reflow.webhooks.receive(call))


def webhook_call(token: str, body: bytes, scope: Scope) -> WebhookCall:
    """A call as the service takes it, from the ASGI scope (headers and query decoded as
    Latin-1, as Starlette does)."""
    headers = [(name.decode("latin-1"), value.decode("latin-1"))
               for name, value in scope["headers"]]
    content_type = next((v for n, v in headers if n == "content-type"), None)
    query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    return WebhookCall(token, body, content_type, headers, query)


def webhook_answer(received: Received) -> Response:
    """The answer to a call: the execution's id (duplicate or not), or with ``respond`` the
    respond block's body and status (202 still running, 500 ended without answering)."""
    started = received.started
    execution_id = started.execution_id
    headers = {"x-reflow-execution-id": execution_id}
    if received.duplicate:
        return json_response({"message": "duplicate delivery: its execution was started "
                                         "before", "executionId": execution_id,
                              "duplicate": True}, headers=headers)
    record = started.finished
    if not received.respond or (record is not None and record.response_status is None
                                and record.status is ExecutionStatus.SUCCEEDED):
        return json_response({"message": "success", "executionId": execution_id},
                             headers=headers)
    if record is None:
        return json_response({"message": f"accepted: still running after "
                                         f"{received.wait:g} s",
                              "executionId": execution_id}, 202, headers)
    if record.response_status is None and record.status is ExecutionStatus.WAITING:
        return json_response({"message": "accepted: waiting (a delay) before answering",
                              "executionId": execution_id}, 202, headers)
    if record.response_status is None:
        return json_response({"message": f"execution {execution_id} {record.status.value} "
                                         "before answering", "executionId": execution_id},
                             500, headers)
    status = max(record.response_status, 200)  # 1xx cannot end a response
    body = b"" if status in _NO_BODY else started.output_json or b"null"
    return Response(body, status_code=status, media_type="application/json", headers=headers)


@router.post("/workflows/{workflowId}/webhook/rotate", response_model=WebhookUrl,
             summary="Rotate a user's webhook URL",
             responses=error_responses(404, 409, details={
                 404: "no such user or workflow, or the user has not installed it",
                 409: "the version the user runs is not triggered by a webhook",
             }))
async def rotate_webhook(
    workflowId: str, team: CurrentTeam, reflow: ReflowDep, userId: UserIdParam
) -> Response:
    """A new secret URL for the user's copy; the old one answers 404 from now on."""
    url = await reflow.webhooks.url(team, workflowId, userId, rotate=True)
    return json_response({"webhookUrl": url})
