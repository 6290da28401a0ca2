"""Every answer the API test client receives is checked against its route's declared model.

Routes answer with pre-rendered JSON (``json_response``) for speed, so FastAPI never
validates what they send; this hook does, in every API test: a success must parse as the
route's ``response_model`` and an error must be ``{"message": ...}``. A field renamed in a
presenter but not in the model (or the reverse) fails the test that saw it.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import httpx
import orjson
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.routing import Match

_PATH_VERSION = re.compile(r"^/(\d{4}-\d{2})(/.*)?$")


def declared_model(app: FastAPI, method: str, path: str) -> Any:
    """The response model of the route that serves ``method path``; None when it has none."""
    match = _PATH_VERSION.match(path)
    if match:
        path = match.group(2) or "/"
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    for route in app.routes:
        if isinstance(route, APIRoute) and route.matches(scope)[0] is Match.FULL:
            return route.response_model
    return None


@cache
def _adapter(model: Any) -> TypeAdapter[Any]:
    return TypeAdapter(model)


def check_response(app: FastAPI, response: httpx.Response) -> None:
    """Raise AssertionError when ``response`` does not have its route's declared shape."""
    request = response.request
    if not response.headers.get("content-type", "").startswith("application/json"):
        return
    response.read()
    body = orjson.loads(response.content) if response.content else None
    where = f"{request.method} {request.url.path} answered {response.status_code}"
    if response.status_code >= 400:
        assert isinstance(body, dict) and isinstance(body.get("message"), str), (
            f"{where} without a {{'message': ...}} body: {body!r}")
        return
    model = declared_model(app, request.method, request.url.path)
    if model is None or response.status_code == 204:
        return
    try:
        _adapter(model).validate_python(body)
    except ValidationError as exc:
        raise AssertionError(f"{where} with a body that is not its declared "
                             f"{getattr(model, '__name__', model)}: {exc}") from None


def checking_hooks(app: FastAPI) -> dict[str, list[Any]]:
    """httpx event hooks that check every response of ``app``."""
    return {"response": [lambda response: check_response(app, response)]}
