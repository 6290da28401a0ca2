"""The route class every router uses: request bodies are parsed with orjson.

orjson is faster than the stdlib parser on the hot path, and it refuses what is not
JSON (NaN, Infinity, nesting past 1,024 levels) instead of letting it through; its
decode error is a ``json.JSONDecodeError``, so FastAPI answers 422 "malformed JSON".
Numbers follow JSON's (and JSONata's) double model: integers past 64 bits become floats.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response


class OrjsonRequest(Request):
    """A request whose ``json()`` is ``orjson.loads``."""

    async def json(self) -> Any:
        """The body as JSON (cached like Starlette's)."""
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class OrjsonRoute(APIRoute):
    """Hands endpoints an ``OrjsonRequest``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler so body parsing uses orjson."""
        handler = super().get_route_handler()

        async def orjson_handler(request: Request) -> Response:
            return await handler(OrjsonRequest(request.scope, request.receive))

        return orjson_handler
