"""The HTTP server: uvicorn, with the limits that keep slow or huge requests from taking it down.

uvicorn's httptools protocol bounds none of these: a header grows until memory runs out (and
httptools joins its pieces by copying, so a 100 MB header cost 11 s of CPU), a half-sent
request holds its connection forever, and ``limit_concurrency`` answers 503 only once the
headers are in, keeping the connection. ``LimitedHttpProtocol`` adds the limits to that
protocol; docs/deployment.md lists each one, its default and what a client sees.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import orjson
import uvicorn
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from reflow.settings import Settings

# A server at its connection bound says so in the log at most this often.
FULL_WARNING_SECONDS = 60.0

# How long a refused connection is drained after its answer, so that the client reads the
# answer: closing a socket with unread input sends a reset, which can discard it.
LINGER_SECONDS = 1.0

# What a connection is waiting for: nothing bounded (the app is answering, or the
# connection is idle between requests: uvicorn's keep-alive timeout covers that), the
# rest of a request's headers, or the rest of its body.
_UNTIMED, _HEADERS, _BODY = 0, 1, 2


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one connection may cost the server (the REFLOW_SERVER_* settings)."""

    max_header_bytes: int
    header_timeout: float
    body_timeout: float
    keep_alive_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLimits:
        """The limits the settings ask for."""
        return cls(
            max_header_bytes=settings.server_max_header_bytes,
            header_timeout=settings.server_header_timeout,
            body_timeout=settings.server_body_timeout,
            keep_alive_timeout=settings.server_keep_alive_timeout,
            max_connections=settings.server_max_connections,
        )


def build_server(app: Any, settings: Settings) -> uvicorn.Server:
    """The uvicorn server for ``app`` on the configured host and port, with the limits."""
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, loop="uvloop",
        http=protocol_class(ServerLimits.from_settings(settings)),
        # No route is a WebSocket: an upgrade must not hand the socket to a protocol
        # without these limits.
        ws="none", access_log=False, lifespan="on", log_config=None,
        # SIGTERM: requests in flight (a `?wait=` one may wait 300 s) get the same grace
        # as running executions, then the connections close.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace),
    )
    return uvicorn.Server(config)


def protocol_class(limits: ServerLimits) -> type[LimitedHttpProtocol]:
    """The protocol class uvicorn instantiates per connection, bound to ``limits``."""
    too_large = _answer(431, f"request headers are over the limit of "
                             f"{limits.max_header_bytes} bytes")
    return type("ReflowHttpProtocol", (LimitedHttpProtocol,),
                {"limits": limits, "headers_too_large": too_large})


def _answer(status: int, message: str) -> bytes:
    """A complete response that closes the connection, written by the protocol itself."""
    body = orjson.dumps({"message": message})
    return b"".join([
        STATUS_LINE[status], b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body,
    ])


_TIMED_OUT = _answer(408, "the request did not arrive in time")
_TOO_MANY = _answer(503, "too many connections; try again later")


class _HeadersTooLarge(Exception):
    """Raised in a parser callback to stop parsing a request whose headers are too large."""


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header size limit, header and body timeouts,
    and a bound on connections.

    The timeouts share one lazily re-armed timer per connection: a request moves a
    deadline (a float), and the timer, when it fires, either acts or re-arms for the
    deadline it finds. A request on a busy keep-alive connection then costs two clock
    reads instead of two timers armed and cancelled.
    """

    limits: ClassVar[ServerLimits]
    headers_too_large: ClassVar[bytes]
    _warned_full_at: ClassVar[float] = float("-inf")

    def __init__(
        self, config: Config, server_state: ServerState, app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.timeout_keep_alive = self.limits.keep_alive_timeout  # type: ignore[assignment]
        self._refused = False
        self._waiting_for = _UNTIMED
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        # Bytes received since the last request ended, while the next one's headers are
        # incomplete (a read that ends one request and starts the next counts for neither).
        self._reading_headers = True
        self._header_bytes = 0

    # -- connections ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Refuse the connection when the server holds its maximum, else start the clock."""
        if len(self.connections) >= self.limits.max_connections:
            # Refused before it costs anything; the connections being served go on.
            self._refused = True
            self._warn_full()
            transport.write(_TOO_MANY)
            transport.close()
            return
        super().connection_made(transport)
        self._expect(_HEADERS, self.limits.header_timeout)

    def _warn_full(self) -> None:
        now = self.loop.time()
        if now - LimitedHttpProtocol._warned_full_at >= FULL_WARNING_SECONDS:
            LimitedHttpProtocol._warned_full_at = now
            self.logger.warning("refusing connections: %d are open "
                                "(REFLOW_SERVER_MAX_CONNECTIONS)", len(self.connections))

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the timer; uvicorn's clean-up for a connection it served."""
        self._waiting_for = _UNTIMED
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._refused:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Count header bytes, then parse (uvicorn's, plus the header limit)."""
        # Counted before parsing, and refused once over the limit, because httptools joins
        # a header's pieces by copying: an unbounded header costs quadratic CPU.
        if self._reading_headers:
            self._header_bytes += len(data)
            if self._waiting_for != _HEADERS:  # the first bytes of a request on this connection
                self._expect(_HEADERS, self.limits.header_timeout)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadersTooLarge):
                self._answer_and_drain(self.headers_too_large)
            else:
                message = "Invalid HTTP request received."
                self.logger.warning(message)
                self.send_400_response(message)
            return
        if self._reading_headers and self._header_bytes > self.limits.max_header_bytes:
            self._answer_and_drain(self.headers_too_large)

    # -- parser callbacks ------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        """Check the headers' exact size, then time the body and start the app."""
        self._reading_headers = False
        # The byte count can include the start of the body when it came in the same read:
        # only then is the exact size worth computing.
        limit = self.limits.max_header_bytes
        if self._header_bytes > limit and self._header_size() > limit:
            raise _HeadersTooLarge
        self._expect(_BODY, self.limits.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The request is in: nothing is timed until uvicorn's keep-alive timeout."""
        self._waiting_for = _UNTIMED
        self._reading_headers = True
        self._header_bytes = 0
        super().on_message_complete()

    def _header_size(self) -> int:
        return len(self.url) + sum(len(name) + len(value) for name, value in self.headers)

    # -- timeouts ------------------------------------------------------------------------

    def _expect(self, what: int, seconds: float) -> None:
        self._waiting_for = what
        deadline = self._deadline = self.loop.time() + seconds
        if self._timer is None or self._timer_at > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._deadline_reached)

    def _deadline_reached(self) -> None:
        self._timer = None
        if self._waiting_for == _UNTIMED:
            return
        if self.loop.time() < self._deadline:
            # The deadline moved on since the timer was armed: wait for the current one.
            self._timer_at = self._deadline
            self._timer = self.loop.call_at(self._deadline, self._deadline_reached)
            return
        self._time_out()

    def _time_out(self) -> None:
        """Answer 408 when no response has started on this connection, and close it."""
        waiting_for, self._waiting_for = self._waiting_for, _UNTIMED
        cycle = self.cycle
        if waiting_for == _BODY:
            if not cycle.response_started and not self.pipeline:
                self.transport.write(_TIMED_OUT)
            # The app reading the body sees the client gone; what it answers is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        elif cycle is None or cycle.response_complete:
            self.transport.write(_TIMED_OUT)
        self.transport.close()

    def _answer_and_drain(self, answer: bytes) -> None:
        """Answer, then read and drop what the client still sends for a moment, so that
        it reads the answer; the connection no longer counts as served."""
        self._waiting_for = _UNTIMED
        self._reading_headers = False
        self.connections.discard(self)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # a pipelined request's app is still running
            self.cycle.message_event.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport.write(answer)
        self.transport.set_protocol(_Drain(self.transport, self.loop))


class _Drain(asyncio.Protocol):
    """Drops a refused connection's input until the client closes, or for LINGER_SECONDS."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        if transport.can_write_eof():
            transport.write_eof()
        self.timer = loop.call_later(LINGER_SECONDS, transport.close)

    def data_received(self, data: bytes) -> None:
        """Drop it."""

    def eof_received(self) -> None:
        """The client is done: close (returning None lets the transport close)."""

    def connection_lost(self, exc: Exception | None) -> None:
        """Nothing left to close."""
        self.timer.cancel()
