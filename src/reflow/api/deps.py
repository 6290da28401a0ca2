"""Dependencies every route shares: the process's Reflow and the authenticated team."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from reflow.domain.records import Team
from reflow.errors import Unauthorized
from reflow.services import Reflow

# Declared for the OpenAPI page; the header is checked in `current_team`.
_bearer = HTTPBearer(auto_error=False, description="Authorization: bearer <API key>")


async def get_reflow(request: Request) -> Reflow:
    """The Reflow this app serves (async: a sync dependency would cost a thread hop)."""
    reflow: Reflow = request.app.state.reflow
    return reflow


ReflowDep = Annotated[Reflow, Depends(get_reflow)]


async def current_team(
    request: Request, reflow: ReflowDep, _: Annotated[object, Depends(_bearer)] = None
) -> Team:
    """The team of the request's API key (``Authorization: bearer <key>``, any case)."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized()
    scheme, _, raw = header.partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not raw:
        raise Unauthorized()
    return await reflow.keys.authenticate(raw)


CurrentTeam = Annotated[Team, Depends(current_team)]
