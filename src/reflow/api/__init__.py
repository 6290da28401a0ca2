"""The FastAPI app: routers, middleware and error mapping around one Reflow."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from reflow import __version__
from reflow.api.definition_schema import definition_schemas
from reflow.api.errors import COMMON_ERRORS, install_error_handlers
from reflow.api.fastpath import RunFastPath
from reflow.api.middleware import ApiVersionMiddleware, BodyLimitMiddleware
from reflow.api.routes import (
    apps,
    credentials,
    error_stream,
    events,
    executions,
    headless,
    health,
    integrations,
    logs,
    oauth,
    reruns,
    retention,
    runs,
    teams,
    tokens,
    users,
    webhooks,
    workflows,
)
from reflow.blocks import block_specs
from reflow.services import Reflow
from reflow.settings import CURRENT_API_VERSION, SUPPORTED_API_VERSIONS

DESCRIPTION = """\
reflow speaks the Alloy Embedded API (2025-09). Every call takes
`Authorization: bearer <API key>` and `x-api-version: 2025-09` (or the version as the
first path segment, `/2024-03/...`). Errors are `{"message": ...}`.
"""

# The version goes in the x-api-version header, or as the first path segment: the second
# server is that form (the middleware strips the segment before routing).
_SERVERS: list[dict[str, Any]] = [
    {"url": "/", "description": "the version in the x-api-version header"},
    {"url": "/{version}", "description": "the version as the first path segment",
     "variables": {"version": {"default": CURRENT_API_VERSION,
                               "enum": list(SUPPORTED_API_VERSIONS)}}},
]
_VERSION_HEADER = {
    "name": "x-api-version", "in": "header", "required": False,
    "description": f"{CURRENT_API_VERSION}; required (400 without it) unless the path "
                   "starts with the version (the second server), except on /logs calls",
    "schema": {"type": "string", "enum": list(SUPPORTED_API_VERSIONS)},
}


def _complete(schema: dict[str, Any]) -> dict[str, Any]:
    """Add what routes do not declare themselves: the bearer key, the version header and
    the definition schema their bodies refer to."""
    components = schema.setdefault("components", {})
    # Every operation takes the bearer key; declared here rather than as a dependency.
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "Authorization: bearer <API key>"},
    }
    schema["security"] = [{"bearer": []}]
    components.setdefault("schemas", {}).update(definition_schemas(block_specs()))
    for operations in schema["paths"].values():
        for operation in operations.values():
            operation.setdefault("parameters", []).append(_VERSION_HEADER)
    return schema


def create_app(reflow: Reflow, *, manage: bool = True) -> FastAPI:
    """The API for ``reflow``; with ``manage``, the app starts and closes it with itself."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage:
            await reflow.start()
        try:
            yield
        finally:
            if manage:
                await reflow.close()

    app = FastAPI(
        title="reflow", version=__version__, description=DESCRIPTION, lifespan=lifespan,
        # reflow records executions itself; the per-request provider lookup cost ~2% CPU.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.reflow = reflow
    install_error_handlers(app)
    # Webhooks first: routes are matched in order, and a sender's call then tries one
    # pattern instead of every route's (it shares no path with the others).
    for module in (webhooks, users, tokens, integrations, workflows, runs, events, logs,
                   executions, teams, error_stream, apps, credentials, oauth, headless,
                   reruns, retention):
        # Every route may answer COMMON_ERRORS; each declares its own with error_responses().
        app.include_router(module.router, responses=COMMON_ERRORS)
    # /healthz (and /health), /readyz, /metrics: no key, no version, not in the document.
    app.include_router(health.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _complete(get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes, servers=_SERVERS,
            ))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    app.add_middleware(ApiVersionMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=reflow.settings.max_body_bytes)
    # Outermost: a plain run skips the framework's per-request machinery (api/fastpath.py).
    app.add_middleware(RunFastPath, reflow=reflow,
                       max_body_bytes=reflow.settings.max_body_bytes)
    return app


def create_operations_app(reflow: Reflow) -> FastAPI:
    """Only ``/healthz``, ``/readyz`` and ``/metrics`` for ``reflow`` (which the caller
    starts and closes): what ``reflow worker --metrics-port`` serves, as it has no API."""
    app = FastAPI(title="reflow worker", version=__version__, openapi_url=None,
                  docs_url=None, redoc_url=None,
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.reflow = reflow
    app.include_router(health.router)
    return app
