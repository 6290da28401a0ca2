"""Dependencies every route shares: the process's Reflow and the authenticated team.

Both are flat (they depend on the request only): each level of FastAPI dependency
solving costs on every call, and these run on the hot path. The bearer scheme is
declared for the OpenAPI page in ``reflow.api.create_app``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from reflow.domain.records import Team
from reflow.errors import Unauthorized
from reflow.services import Reflow


async def get_reflow(request: Request) -> Reflow:
    """The Reflow this app serves (async: a sync dependency would cost a thread hop)."""
    reflow: Reflow = request.app.state.reflow
    return reflow


ReflowDep = Annotated[Reflow, Depends(get_reflow)]


async def current_team(request: Request) -> Team:
    """The team of the request's API key (``Authorization: bearer <key>``, any case)."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized()
    scheme, _, raw = header.partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not raw:
        raise Unauthorized()
    reflow: Reflow = request.app.state.reflow
    return await reflow.keys.authenticate(raw)


CurrentTeam = Annotated[Team, Depends(current_team)]
