"""Every error leaves as JSON ``{"message": ...}`` with its status: mapped here, once.

The OpenAPI side of the same mapping is here too: ``COMMON_ERRORS`` are the answers any
route can give (``create_app`` adds them to every router it includes), and a route lists
its own with ``responses=error_responses(404, 409)``. docs/api.md has the convention.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from reflow.api.schemas import Invalid, Message
from reflow.errors import DefinitionInvalid, ReflowError

log = logging.getLogger(__name__)

Responses = dict[int | str, dict[str, Any]]

# What every route may answer whatever it does: the middleware's and the key's refusals,
# a bad parameter or body, and a database that failed.
COMMON_ERRORS: Responses = {
    400: {"model": Message, "description": "missing or unsupported API version"},
    401: {"model": Message, "description": "no API key, or an unknown or revoked one"},
    413: {"model": Message, "description": "the body is over REFLOW_MAX_BODY_BYTES"},
    422: {"model": Invalid, "description": "a parameter or the body is invalid; "
                                           "problems lists each one by path"},
    503: {"model": Message, "description": "the database failed; try again"},
}

# What a route's own statuses mean unless it says more (``details``).
_MEANINGS = {
    404: "not found (another team's things are not found either)",
    409: "the thing is in a state that forbids this",
}


def error_responses(*statuses: int, details: Mapping[int, str] | None = None) -> Responses:
    """A route's ``responses=``: its own error statuses beyond ``COMMON_ERRORS``, as
    ``{"message": ...}``; ``details`` gives a status a more precise description."""
    described = {**_MEANINGS, **(details or {})}
    return {
        status: {"model": Message, "description": described.get(status, "refused")}
        for status in statuses
    }


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response encoded once with orjson."""
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers=headers)


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    path = ""
    for part in parts:
        path += f"[{part}]" if part.isdigit() else (f".{part}" if path else part)
    return path or (str(loc[0]) if loc else "request")


def _validation_message(exc: RequestValidationError) -> tuple[str, list[dict[str, str]]]:
    problems = []
    for error in exc.errors():
        where = _location(tuple(error.get("loc", ())))
        kind = error.get("type", "")
        if kind == "extra_forbidden":
            reason = "unknown field"
        elif kind == "json_invalid":
            where, reason = "body", f"malformed JSON ({error.get('ctx', {}).get('error', '')})"
        else:
            reason = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append({"path": where, "reason": reason})
    message = "; ".join(f"{p['path']}: {p['reason']}" for p in problems)
    return message, problems


def install_error_handlers(app: FastAPI) -> None:
    """Map reflow errors, validation errors and anything unexpected to JSON answers."""

    @app.exception_handler(ReflowError)
    async def reflow_error(_: Request, exc: ReflowError) -> Response:
        return reflow_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> Response:
        message, problems = _validation_message(exc)
        return json_response({"message": message, "problems": problems}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such endpoint"
        return json_response({"message": message}, exc.status_code, exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def disconnected(_: Request, exc: ClientDisconnect) -> Response:
        # The client left, or the body limit cut the body off and already answered 413.
        return json_response({"message": "client disconnected"}, 400)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Response:
        return internal_error_response(exc)


def reflow_error_response(exc: ReflowError) -> Response:
    """The answer to a reflow error: its status and ``{"message"}`` (and ``problems``)."""
    body: dict[str, Any] = {"message": exc.message}
    if isinstance(exc, DefinitionInvalid):
        body["problems"] = [{"path": p.path, "reason": p.reason} for p in exc.problems]
    if exc.status >= 500:
        log.error("%s: %s", type(exc).__name__, exc.message)
    return json_response(body, exc.status)


def internal_error_response(exc: Exception) -> Response:
    """The answer to an error reflow did not expect (logged with its traceback)."""
    log.exception("unexpected error", exc_info=exc)
    return json_response({"message": "internal error; the server log has the details"}, 500)
