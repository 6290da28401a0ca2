"""ASGI middleware for what every request shares: the API version and the body limit.

Plain ASGI (no BaseHTTPMiddleware) so the hot path pays a function call, not a task.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from reflow.settings import CURRENT_API_VERSION, SUPPORTED_API_VERSIONS

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_PATH_VERSION = re.compile(r"^/(\d{4}-\d{2})(/.*)?$")
# Pages for people, the reference's /logs endpoints (documented without the header), the
# operations endpoints (probes and scrapers send no version), and webhook URLs (called by
# other services, which send what they send), and the OAuth callback and install URLs
# (a browser's).
_VERSION_OPTIONAL = ("/docs", "/redoc", "/openapi.json", "/health", "/logs", "/healthz",
                     "/readyz", "/metrics", "/.well-known/jwks.json", "/webhooks",
                     "/oauth/callback", "/install")
_SUPPORTED = ", ".join(SUPPORTED_API_VERSIONS)


async def _answer(send: Send, status: int, message: str, headers: list[Any] | None = None) -> None:
    body = orjson.dumps({"message": message})
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()), *(headers or [])],
    })
    await send({"type": "http.response.body", "body": body})


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _is_optional(path: str) -> bool:
    return path == "/" or any(path == p or path.startswith(p + "/") for p in _VERSION_OPTIONAL)


class ApiVersionMiddleware:
    """Takes the version from a leading path segment (``/2024-03/...``) or ``x-api-version``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the version, strip it from the path, and pass the request on."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        match = _PATH_VERSION.match(path)
        if match:
            version = match.group(1)
            if version not in SUPPORTED_API_VERSIONS:
                await _answer(send, 400, f"unsupported API version {version!r}; supported "
                                         f"versions: {_SUPPORTED}")
                return
            scope["path"] = match.group(2) or "/"
            scope["raw_path"] = scope["path"].encode()
        else:
            version = None
            for name, value in scope["headers"]:
                if name == b"x-api-version":
                    version = value.decode("latin-1").strip()
                    break
            if version is None and not _is_optional(path):
                await _answer(send, 400, "missing x-api-version header (current: "
                                         f"{CURRENT_API_VERSION}); supported versions: "
                                         f"{_SUPPORTED}")
                return
            if version is not None and version not in SUPPORTED_API_VERSIONS:
                await _answer(send, 400, f"unsupported API version {version!r}; supported "
                                         f"versions: {_SUPPORTED}")
                return
        scope.setdefault("state", {})["api_version"] = version or CURRENT_API_VERSION
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuses bodies over the limit with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then count what actually arrives."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = _declared_length(scope)
        if declared is not None:
            # The HTTP parser delivers exactly the declared length, so checking it is enough.
            if declared > limit:
                await _answer(send, 413, f"request body is over the limit of {limit} bytes")
                return
            await self.app(scope, receive, send)
            return
        received = 0
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Answer now; the app sees a disconnect and whatever it sends is dropped.
                    refused = True
                    await _answer(send, 413, f"request body is over the limit of {limit} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counting_receive, guarded_send)
