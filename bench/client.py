"""A minimal HTTP/1.1 keep-alive client over asyncio streams, light enough for load.

httpx spends more CPU per request than the server under test does; on a 2-core machine
that CPU is taken from the server. This client pre-encodes requests and parses only what
the benchmark checks: the status line, Content-Length and the body.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson

_HEADER_END = b"\r\n\r\n"


class ProtocolError(Exception):
    """The server answered something this client does not parse (e.g. chunked)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One response: status, body, and how long it took (seconds, monotonic)."""

    status: int
    body: bytes
    seconds: float

    def json(self) -> Any:
        """The body decoded as JSON."""
        return orjson.loads(self.body)


class Connection:
    """One keep-alive connection; requests on it run one at a time."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host = host
        self.port = port
        self._base_headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Connection:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the socket."""
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except (ConnectionError, OSError):
                pass  # the server may have closed first; nothing is left to flush
            self._writer = self._reader = None

    def encode(
        self, method: str, target: str, body: Any = None, content_type: str = "application/json"
    ) -> bytes:
        """The bytes of a request (build once, send many times for a fixed request).

        ``body`` is encoded as JSON unless it is already ``bytes``.
        """
        payload = body if isinstance(body, bytes) else b"" if body is None else orjson.dumps(body)
        head = (
            f"{method} {target} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
            f"{self._base_headers}content-length: {len(payload)}\r\n"
        )
        if body is not None:
            head += f"content-type: {content_type}\r\n"
        return head.encode() + b"\r\n" + payload

    async def send(self, raw: bytes) -> Reply:
        """Send pre-encoded request bytes and read the whole response."""
        reader, writer = self._reader, self._writer
        if reader is None or writer is None:
            raise RuntimeError("connection is not open")
        start = time.perf_counter()
        writer.write(raw)
        head = await reader.readuntil(_HEADER_END)
        status, length = _parse_head(head)
        body = await reader.readexactly(length)
        return Reply(status, body, time.perf_counter() - start)

    async def request(
        self, method: str, target: str, body: Any = None, content_type: str = "application/json"
    ) -> Reply:
        """Encode and send one request."""
        return await self.send(self.encode(method, target, body, content_type))


def _parse_head(head: bytes) -> tuple[int, int]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ProtocolError(f"bad status line: {lines[0]!r}")
    length: int | None = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding":
            raise ProtocolError("chunked responses are not supported")
    if length is None:
        raise ProtocolError("response has no Content-Length")
    return int(parts[1]), length
