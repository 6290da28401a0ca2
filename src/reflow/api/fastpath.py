"""``POST /run/workflow`` without the framework's per-request machinery, when it is plain.

The run call is most of reflow's traffic, and the serving process's event loop is what
bounds throughput. Routing it through FastAPI (exception and body-limit middleware,
route matching over every route, dependency solving, the request handler) cost about
as much as everything reflow itself does for a run (docs/benchmarks.md). This
middleware answers a well-formed run itself: the version from the path or the header,
a JSON body of at most ``REFLOW_MAX_BODY_BYTES`` with its Content-Length, a key that
authenticates, a body the route's own model accepts, a valid ``wait``. Anything else
(a missing header, a bad key, an invalid body...) goes on to the route unchanged, its
body replayed, so every refusal is the route's own answer. The route stays the one the
OpenAPI document describes; this is a shortcut to the same service call and the same
answer.

A webhook call (``POST /webhooks/{token}``, no key) with its Content-Length is answered
here the same way, through the webhook route's own ``webhook_call`` and
``webhook_answer``: senders such as shops post one per order, and routing it past every
other route cost more than the call itself.
"""

from __future__ import annotations

import logging
import math
import re
from urllib.parse import parse_qsl

import orjson
from pydantic import ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reflow.api.errors import internal_error_response, reflow_error_response
from reflow.api.routes.runs import MAX_WAIT, started_response
from reflow.api.routes.webhooks import webhook_answer, webhook_call
from reflow.api.schemas import RunWorkflow
from reflow.domain.records import Team
from reflow.errors import ReflowError, Unauthorized
from reflow.services import Reflow
from reflow.settings import SUPPORTED_API_VERSIONS

log = logging.getLogger(__name__)

_RUN_PATH = re.compile(r"^(?:/(\d{4}-\d{2}))?/run/workflow$")
_WEBHOOK_PATH = re.compile(r"^(?:/(\d{4}-\d{2}))?/webhooks/([^/]+)$")
_VERSIONS = frozenset(v.encode() for v in SUPPORTED_API_VERSIONS)


class RunFastPath:
    """ASGI middleware: a plain ``POST /run/workflow`` answered directly (see module)."""

    def __init__(self, app: ASGIApp, reflow: Reflow, max_body_bytes: int) -> None:
        self.app = app
        self.reflow = reflow
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a plain run here; pass anything else on."""
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        webhook = _WEBHOOK_PATH.match(scope["path"])
        if webhook is not None:
            await self._webhook(webhook, scope, receive, send)
            return
        match = _RUN_PATH.match(scope["path"])
        headers = _headers(scope) if match else None
        if headers is None or not self._plain(match, headers):
            await self.app(scope, receive, send)
            return
        body = await _read(receive)
        if body is None:
            return  # the client left while sending
        run = await self._parse(scope, headers, body)
        if run is None:
            await self.app(scope, _replaying(body, receive), send)
            return
        response = await self._run(*run)
        await response(scope, receive, send)

    async def _webhook(
        self, match: re.Match[str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Answer a webhook call whose version (optional there) and length are plain."""
        headers = _headers(scope)
        version = None if headers is None else headers.get(b"x-api-version")
        if (headers is None or (version is not None and version.strip() not in _VERSIONS)
                or (match.group(1) is not None and match.group(1) not in SUPPORTED_API_VERSIONS)
                or not self._sized(headers)):
            await self.app(scope, receive, send)
            return
        body = await _read(receive)
        if body is None:
            return  # the client left while sending
        try:
            received = await self.reflow.webhooks.receive(
                webhook_call(match.group(2), body, scope))
        except ReflowError as exc:
            response = reflow_error_response(exc)
        except Exception as exc:  # what the app's own handler would answer
            response = internal_error_response(exc)
        else:
            response = webhook_answer(received)
        await response(scope, receive, send)

    def _sized(self, headers: dict[bytes, bytes]) -> bool:
        """Whether the body's Content-Length is given and within the limit."""
        length = headers.get(b"content-length", b"")
        return length.isdigit() and int(length) <= self.max_body_bytes

    def _plain(self, match: re.Match[str] | None, headers: dict[bytes, bytes]) -> bool:
        """Whether the route would accept the request's version and body framing."""
        assert match is not None
        if match.group(1) is None and headers.get(b"x-api-version", b"").strip() not in _VERSIONS:
            return False
        if match.group(1) is not None and match.group(1) not in SUPPORTED_API_VERSIONS:
            return False
        content_type = headers.get(b"content-type", b"")
        return (self._sized(headers)
                and content_type.split(b";")[0].strip().lower() == b"application/json")

    async def _parse(
        self, scope: Scope, headers: dict[bytes, bytes], body: bytes
    ) -> tuple[Team, RunWorkflow, float | None] | None:
        """The team, the body and ``wait``, or None when the route must answer instead."""
        wait = _wait(scope["query_string"])
        if wait is False:
            return None
        scheme, _, raw = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        raw = raw.strip()
        if scheme.lower() != "bearer" or not raw:
            return None
        try:
            document = orjson.loads(body)
            payload = RunWorkflow.model_validate(document)
            team = await self.reflow.keys.authenticate(raw)
        except (orjson.JSONDecodeError, ValidationError, Unauthorized):
            return None
        return team, payload, wait

    async def _run(self, team: Team, body: RunWorkflow, wait: float | None) -> Response:
        try:
            started = await self.reflow.runs.run(team, body.workflow, body.userId, body.data,
                                                 wait=wait)
        except ReflowError as exc:
            return reflow_error_response(exc)
        except Exception as exc:  # what the app's own handler would answer
            return internal_error_response(exc)
        return started_response(started, wait)


def _headers(scope: Scope) -> dict[bytes, bytes] | None:
    """The headers by (lower-case) name; None when one this path reads is repeated."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in found:
            return None
        found[name] = value
    return found


def _wait(query: bytes) -> float | bool | None:
    """``wait`` from the query: None when absent, False when the route must judge it."""
    if not query:
        return None
    values = [v for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
              if k == "wait"]
    if not values:
        return None
    if len(values) > 1:
        return False
    try:
        wait = float(values[0])
    except ValueError:
        return False
    return wait if math.isfinite(wait) and 0 < wait <= MAX_WAIT else False


async def _read(receive: Receive) -> bytes | None:
    """The whole body (the server delivers what Content-Length declared); None when the
    client left."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body read already, then what the client sends next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
