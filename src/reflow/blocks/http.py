"""The ``http`` block, and the HTTP clients it runs on, which only reach public addresses.

The SSRF guard sits in each client's network backend, at connect time: a host name is
resolved once, every resolved address is classified, and the socket is opened to a
validated IP, never to the name again (no DNS-rebinding window). TLS still verifies the
certificate against the host name, because httpcore passes the URL's host as SNI.

Tenants share nothing: every team gets its own client (its own connection pool) and a
bounded number of connections, in all and per host, and no client keeps cookies.
docs/http.md says what a workflow author sees.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import ipaddress
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from http.cookiejar import Cookie, CookieJar
from typing import Any, ClassVar

import anyio
import httpcore
import httpx
import orjson

from reflow.blocks.base import BlockContext, Outcome
from reflow.domain.definitions import BlockSpec
from reflow.errors import BlockFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
# Statuses a later attempt may turn into a success; other 4xx will answer the same again.
RETRYABLE_STATUSES = frozenset({408, 425, 429})
ERROR_BODY_CHARS = 200
# A team client keeps at most this many idle connections (for at most 5 s), so a hundred
# idle teams cannot hold thousands of sockets.
KEEPALIVE_PER_TEAM = 8
# A request waits for a connection slot for all of its time but this share (at most 1 s):
# a slot had with no time left is of no use, and ending the wait first lets the step say
# which limit held it instead of only that it timed out.
SLOT_RESERVE_SHARE = 0.1
SLOT_RESERVE_MAX = 1.0

_METADATA = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


# --- the SSRF guard --------------------------------------------------------------------


class AddressRefused(BlockFailed):
    """The guard refused to connect: the address is not public and not allowed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """What the http block's client may reach, and how long and how much it may read."""

    # Networks allowed even though they are not public (REFLOW_HTTP_ALLOW_NETWORKS).
    allow_networks: tuple[IPNetwork, ...] = ()
    timeout: float = 30.0
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    # Connections one team's requests may hold at once (REFLOW_HTTP_TEAM_CONNECTIONS)...
    team_connections: int = 32
    # ...and to any one host:port (REFLOW_HTTP_HOST_CONNECTIONS).
    host_connections: int = 16
    # Teams whose clients stay open; the least recently used idle one is closed beyond it
    # (REFLOW_HTTP_TEAM_CLIENTS).
    team_clients: int = 64


def _effective_address(address: IPAddress) -> IPAddress:
    # An IPv6 address that carries an IPv4 one reaches that IPv4 host, so judge that host.
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def _in_any(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    # ipaddress compares bare integers across versions, so the version check is not optional.
    return any(address.version == net.version and address in net for net in networks)


def address_refusal(address: IPAddress, allow_networks: Iterable[IPNetwork] = ()) -> str | None:
    """Why the guard refuses to connect to ``address`` (e.g. "private address"), or None."""
    allow = tuple(allow_networks)
    target = _effective_address(address)
    if _in_any(address, allow) or _in_any(target, allow):
        return None
    checks = (
        (target.is_unspecified, "unspecified address"),
        (target.is_loopback, "loopback address"),
        (target in _METADATA, "cloud metadata address"),
        (target.is_link_local, "link-local address"),
        (target.is_multicast, "multicast address"),
        (target.is_private, "private address"),
        (target.is_reserved, "reserved address"),
        # Catches what the stdlib neither calls private nor global, e.g. CGNAT 100.64/10.
        (not target.is_global, "non-public address"),
    )
    return next((reason for refused, reason in checks if refused), None)


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _refused(host: str, address: IPAddress, reason: str | None) -> AddressRefused:
    via = "" if _is_literal(host) else f", resolved from {host}"
    return AddressRefused(
        f"refused to connect to {address} ({reason}{via}); allow it with REFLOW_HTTP_ALLOW_NETWORKS"
    )


async def _resolve(host: str, port: int, timeout: float | None) -> list[IPAddress]:
    if _is_literal(host):
        return [ipaddress.ip_address(host)]
    try:
        with anyio.fail_after(timeout):
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError as exc:
        raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
    except OSError as exc:
        raise httpcore.ConnectError(f"could not resolve {host}: {exc}") from exc
    resolved = dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos)
    if not resolved:
        raise httpcore.ConnectError(f"could not resolve {host}: no addresses")
    return list(resolved)


# --- what broke, and who broke it ------------------------------------------------------

# Socket errors a target causes, as a step error says them; {peer} is "ip:port".
_SOCKET_ERRORS: Mapping[int, str] = {
    errno.ECONNRESET: "connection reset by {peer}",
    errno.ECONNREFUSED: "connection refused by {peer}",
    errno.ECONNABORTED: "connection aborted by {peer}",
    errno.EPIPE: "connection closed by {peer}",
    errno.EHOSTUNREACH: "no route to {peer}",
    errno.ENETUNREACH: "network of {peer} unreachable",
    errno.ETIMEDOUT: "connection to {peer} timed out",
}


def _peer(address: IPAddress, port: int) -> str:
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def _broken(exc: BaseException, peer: str, during: str) -> str:
    """Say a socket failure the way a step error should, e.g. "connection reset by
    203.0.113.5:443 while reading the response"."""
    # httpcore wraps anyio's error, which wraps the OSError that has the errno.
    cause: BaseException | None = exc
    for _ in range(8):
        if cause is None:
            break
        # An SSLError is an OSError too, but its errno is an SSL code, not a socket's.
        if isinstance(cause, OSError) and not isinstance(cause, ssl.SSLError):
            said = _SOCKET_ERRORS.get(cause.errno or 0)
            if said is not None:
                return f"{said.format(peer=peer)} {during}"
        cause = cause.__cause__ or cause.__context__
    detail = str(exc) or type(exc).__name__
    return f"connection to {peer} failed {during} ({detail})"


class _PeerStream(httpcore.AsyncNetworkStream):
    """A connection whose read and write errors name the address it is connected to."""

    def __init__(self, inner: httpcore.AsyncNetworkStream, peer: str) -> None:
        self._inner = inner
        self._peer = peer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Read from the target; a failure says who broke the connection."""
        try:
            return await self._inner.read(max_bytes, timeout)
        except httpcore.ReadError as exc:
            raise httpcore.ReadError(
                _broken(exc, self._peer, "while reading the response")
            ) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Write to the target; a failure says who broke the connection."""
        try:
            await self._inner.write(buffer, timeout)
        except httpcore.WriteError as exc:
            raise httpcore.WriteError(
                _broken(exc, self._peer, "while sending the request")
            ) from exc

    async def aclose(self) -> None:
        """Close the connection."""
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Upgrade to TLS; the TLS stream still names the peer."""
        try:
            inner = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        except httpcore.ConnectError as exc:
            raise httpcore.ConnectError(
                _broken(exc, self._peer, "during the TLS handshake")
            ) from exc
        return _PeerStream(inner, self._peer)

    def get_extra_info(self, info: str) -> Any:
        """What httpcore asks of the socket (ssl_object, peer address...)."""
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves once, checks every address, and connects only to a checked IP."""

    def __init__(self, allow_networks: tuple[IPNetwork, ...]) -> None:
        self._allow = allow_networks
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect to the first allowed address ``host`` resolves to, or refuse."""
        addresses = await _resolve(host, port, timeout)
        allowed = [
            address for address in addresses if address_refusal(address, self._allow) is None
        ]
        if not allowed:
            raise _refused(host, addresses[0], address_refusal(addresses[0], self._allow))
        failures: list[str] = []
        for address in allowed:
            peer = _peer(address, port)
            try:
                stream = await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failures.append(_broken(exc, peer, "while connecting"))
                continue
            return _PeerStream(stream, peer)
        raise httpcore.ConnectError("; ".join(failures))

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Refuse: a Unix socket is a local service by definition."""
        raise AddressRefused(f"refused to connect to the Unix socket {path}")

    async def sleep(self, seconds: float) -> None:
        """Sleep between connect retries, as httpcore asks."""
        await self._inner.sleep(seconds)


def _too_large(limit: int) -> BlockFailed:
    return BlockFailed(f"the response is larger than {limit} bytes", retryable=False)


class _BoundedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, limit: int) -> None:
        self._inner = inner
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        async for chunk in self._inner:
            received += len(chunk)
            if received > self._limit:
                raise _too_large(self._limit)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: HttpPolicy, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx 0.28 takes no network backend (encode/httpx#3749), so swap in a pool that has
        # one. Should httpx rename `_pool`, fail here rather than run without the guard.
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError("this httpx version hides its pool; the SSRF guard cannot attach")
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            # The team's slots keep requests within this; the pool is the backstop.
            max_connections=policy.team_connections,
            max_keepalive_connections=min(policy.team_connections, KEEPALIVE_PER_TEAM),
            keepalive_expiry=5.0,
            network_backend=_GuardedBackend(policy.allow_networks),
        )
        self._max_bytes = policy.max_response_bytes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send through the guarded pool; bound the bytes read off the wire."""
        response = await super().handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_BoundedStream(response.stream, self._max_bytes),
            extensions=response.extensions,
        )


class _NoCookies(CookieJar):
    """A jar that keeps nothing: a Set-Cookie one target sent (maybe for one team's user)
    must never go out on a later request. A Cookie header a workflow sets still goes out."""

    def set_cookie(self, cookie: Cookie) -> None:
        """Drop it."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        """Drop them unparsed."""


def _create_client(policy: HttpPolicy, ssl_context: ssl.SSLContext) -> httpx.AsyncClient:
    """An AsyncClient that only connects to public addresses (or ``policy.allow_networks``)."""
    return httpx.AsyncClient(
        transport=_GuardedTransport(policy, ssl_context),
        timeout=policy.timeout,
        cookies=_NoCookies(),
        # Each redirect hop would pass the guard too, but a block answers what it was asked.
        follow_redirects=False,
        trust_env=False,
    )


# --- one client and a bounded number of connections per team ----------------------------


class ConnectionLimitReached(BlockFailed):
    """No connection slot freed in time: the team's (or its host's) limit was reached."""


class _Gate:
    """A semaphore that knows how many hold or wait for it, so idle ones can be dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.slots = asyncio.Semaphore(limit)
        self.users = 0

    async def enter(self, deadline: float, reached: str, setting: str) -> None:
        """Take a slot by ``deadline`` (loop time) or raise ConnectionLimitReached."""
        try:
            async with asyncio.timeout_at(deadline):
                await self.slots.acquire()
        except TimeoutError:
            plural = "" if self.limit == 1 else "s"
            raise ConnectionLimitReached(
                f"this team's limit of {self.limit} connection{plural}{reached} was reached"
                f" and none freed in time; {setting} sets it"
            ) from None


def _origin(url: httpx.URL) -> str:
    port = url.port or (443 if url.scheme == "https" else 80)
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{host}:{port}"


class TeamHttp:
    """One team's client, and its connection slots: in all, and per host:port."""

    def __init__(self, client: httpx.AsyncClient, policy: HttpPolicy) -> None:
        self.client = client
        self._policy = policy
        self._team = _Gate(policy.team_connections)
        self._hosts: dict[str, _Gate] = {}

    @property
    def busy(self) -> bool:
        """Whether a request of this team holds or waits for a slot (so it must stay open)."""
        return self._team.users > 0

    @contextlib.asynccontextmanager
    async def slot(self, url: httpx.URL, wait: float) -> AsyncIterator[None]:
        """Hold a slot for one request to ``url``, waiting at most ``wait`` seconds for it.

        The host's slot is taken first, so requests queued behind one slow host do not
        also hold the team's slots that its other hosts could use.
        """
        origin = _origin(url)
        host = self._hosts.get(origin)
        if host is None:
            host = self._hosts[origin] = _Gate(self._policy.host_connections)
        host.users += 1
        self._team.users += 1
        deadline = asyncio.get_running_loop().time() + wait
        try:
            await host.enter(deadline, f" to {origin}", "REFLOW_HTTP_HOST_CONNECTIONS")
            try:
                await self._team.enter(deadline, "", "REFLOW_HTTP_TEAM_CONNECTIONS")
                try:
                    yield
                finally:
                    self._team.slots.release()
            finally:
                host.slots.release()
        finally:
            host.users -= 1
            self._team.users -= 1
            if host.users == 0:
                del self._hosts[origin]


class HttpClients:
    """The ``http`` blocks' clients: one per team, the most recently used kept open.

    Each team has its own connection pool and limits, so one team's slow targets never
    hold a connection another team's request waits for, and no client keeps cookies.
    """

    def __init__(self, policy: HttpPolicy) -> None:
        self.policy = policy
        # Loading the CA bundle costs tens of milliseconds; every team's client shares one.
        self._ssl_context = httpx.create_ssl_context()
        self._teams: OrderedDict[str, TeamHttp] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()

    def team(self, team_id: str) -> TeamHttp:
        """The team's client and slots, opened on first use."""
        team = self._teams.get(team_id)
        if team is not None:
            self._teams.move_to_end(team_id)
            return team
        team = TeamHttp(_create_client(self.policy, self._ssl_context), self.policy)
        self._teams[team_id] = team
        self._retire_idle()
        return team

    def _retire_idle(self) -> None:
        # A busy team stays (closing its client would break its requests, and a new one
        # would reset its limits), so the bound can be passed by at most the number of
        # teams with a request in flight, which the worker's concurrency bounds.
        excess = len(self._teams) - self.policy.team_clients
        if excess <= 0:
            return
        older = list(self._teams.items())[:-1]
        for team_id, team in [(t, team) for t, team in older if not team.busy][:excess]:
            del self._teams[team_id]
            task = asyncio.get_running_loop().create_task(team.client.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def __len__(self) -> int:
        return len(self._teams)

    def __contains__(self, team_id: object) -> bool:
        return team_id in self._teams

    async def aclose(self) -> None:
        """Close every team's client (and its idle connections)."""
        teams, self._teams = list(self._teams.values()), OrderedDict()
        for team in teams:
            await team.client.aclose()
        if self._closing:
            await asyncio.gather(*self._closing)

    async def __aenter__(self) -> HttpClients:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def create_http_clients(policy: HttpPolicy) -> HttpClients:
    """The clients every ``http`` block uses, bounded as ``policy`` says; ``aclose()`` them."""
    return HttpClients(policy)


# --- the block ---------------------------------------------------------------------------


def _invalid(message: str) -> BlockFailed:
    return BlockFailed(message, retryable=False)


def _method(value: Any) -> str:
    method = value.upper() if isinstance(value, str) else None
    if method not in METHODS:
        raise _invalid(f"method must be one of {', '.join(sorted(METHODS))}, got {value!r}")
    return method


def _url(value: Any) -> httpx.URL:
    try:
        url = httpx.URL(value) if isinstance(value, str) else None
    except httpx.InvalidURL as exc:
        raise _invalid(f"url is invalid: {exc}") from exc
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise _invalid(f"url must be an absolute http or https URL, got {value!r}")
    return url


def _headers(value: Any) -> httpx.Headers:
    if value is None:
        return httpx.Headers()
    if not isinstance(value, Mapping):
        raise _invalid("headers must be a map of names to values")
    headers = httpx.Headers()
    for name, item in value.items():
        if not isinstance(item, str | int | float) or isinstance(item, bool):
            raise _invalid(f"header {name!r} must be a string or a number")
        headers[str(name)] = str(item)
    return headers


def _field(name: str, credential: Mapping[str, Any], field: str) -> str:
    value = credential.get(field)
    if not isinstance(value, str) or not value:
        raise _invalid(f"credential for app {name!r} has no {field!r}")
    return value


Applied = tuple[Mapping[str, str], Mapping[str, str]]  # headers, query parameters


def _bearer(name: str, credential: Mapping[str, Any]) -> Applied:
    return {"Authorization": f"Bearer {_field(name, credential, 'token')}"}, {}


def _basic(name: str, credential: Mapping[str, Any]) -> Applied:
    pair = f"{_field(name, credential, 'username')}:{_field(name, credential, 'password')}"
    return {"Authorization": f"Basic {base64.b64encode(pair.encode()).decode('ascii')}"}, {}


def _header(name: str, credential: Mapping[str, Any]) -> Applied:
    return {_field(name, credential, "name"): _field(name, credential, "value")}, {}


def _query(name: str, credential: Mapping[str, Any]) -> Applied:
    return {}, {_field(name, credential, "name"): _field(name, credential, "value")}


def _unavailable(name: str, credential: Mapping[str, Any]) -> Applied:
    raise _invalid(str(credential.get("reason") or f"credential for app {name!r} cannot be "
                                                    "used"))


# The bindings the run service makes (reflow.domain.apps.binding), by type.
_CREDENTIAL_TYPES: Mapping[str, Callable[[str, Mapping[str, Any]], Applied]] = {
    "bearer": _bearer,
    "basic": _basic,
    "header": _header,
    "query": _query,
    "unavailable": _unavailable,
}


def _credential(value: Any, credentials: Mapping[str, Mapping[str, Any]]) -> Applied:
    """What the credential named by ``value`` (an app) adds to the request."""
    credential = credentials.get(value) if isinstance(value, str) else None
    if credential is None:
        raise _invalid(f"no credential for app {value!r} is bound to this run (no app of "
                       "that name is declared, or the user has no credential for it)")
    kind = str(credential.get("type", "")).lower()
    make = _CREDENTIAL_TYPES.get(kind)
    if make is None:
        raise _invalid(f"credential for app {value!r} has unsupported type {kind!r}")
    return make(value, credential)


def _renewable(params: Mapping[str, Any], ctx: BlockContext) -> bool:
    """Whether the request's credential is one the serving process can renew (OAuth)."""
    name = params.get("credential")
    bound = ctx.credentials.get(name) if isinstance(name, str) else None
    return ctx.renew_credential is not None and bound is not None and "credential" in bound


def _content(params: Mapping[str, Any], headers: httpx.Headers) -> bytes | str | None:
    if "json" in params and "body" in params:
        raise _invalid("give json or body, not both")
    if "json" in params:
        # A user-set Content-Type wins, so vendor types like application/vnd.api+json work.
        headers.setdefault("Content-Type", "application/json")
        try:
            return orjson.dumps(params["json"])
        except TypeError as exc:
            raise _invalid(f"json cannot be encoded: {exc}") from exc
    body = params.get("body")
    if body is not None and not isinstance(body, str):
        raise _invalid("body must be a string (use json for structured data)")
    return body


def _expect(value: Any) -> frozenset[int] | None:
    if value is None:
        return None
    codes = [value] if isinstance(value, int) else value
    if not isinstance(codes, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in codes
    ):
        raise _invalid(f"expect must be a list of HTTP status codes, got {value!r}")
    return frozenset(codes)


def _build_request(
    client: httpx.AsyncClient, params: Mapping[str, Any], ctx: BlockContext
) -> httpx.Request:
    method, url = _method(params["method"]), _url(params["url"])
    headers = _headers(params.get("headers"))
    query = params.get("query")
    if query is not None and not isinstance(query, Mapping):
        raise _invalid("query must be a map of names to values")
    if params.get("credential") is not None:
        # The credential's header or parameter replaces one of the same name typed into
        # the definition.
        added_headers, added_query = _credential(params["credential"], ctx.credentials)
        headers.update(added_headers)
        if added_query:
            query = {**(query or {}), **added_query}
    headers.setdefault("Idempotency-Key", ctx.idempotency_key)
    content = _content(params, headers)
    try:
        # Merged, not replaced: httpx's params= would drop a query typed into the url.
        if query:
            url = url.copy_merge_params(dict(query))
        # Its timeout is set once a connection slot is had (Http._exchange).
        return client.build_request(method, url, headers=headers, content=content)
    except (TypeError, ValueError) as exc:
        raise _invalid(f"invalid request: {exc}") from exc


async def _read_limited(response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("content-length", "")
    # A HEAD answer declares the size of a body it does not send.
    if response.request.method != "HEAD" and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    received = 0
    # Decoded bytes are counted, so a small compressed body cannot inflate past the limit.
    async for chunk in response.aiter_bytes():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _text(response: httpx.Response, content: bytes) -> str:
    return content.decode(response.encoding or "utf-8", errors="replace")


def _body(response: httpx.Response, content: bytes) -> Any:
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        if not content:
            return None
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            # A server that mislabels its body still answered; keep what it said as text.
            pass
    return _text(response, content)


def _check_status(
    label: str, response: httpx.Response, content: bytes, expect: frozenset[int] | None
) -> None:
    status = response.status_code
    expected = 200 <= status <= 299 if expect is None else status in expect
    if expected:
        return
    snippet = _text(response, content)[:ERROR_BODY_CHARS]
    message = f"{label} answered {status}" + (f": {snippet}" if snippet else "")
    raise BlockFailed(message, retryable=status in RETRYABLE_STATUSES or status >= 500)


class Http:
    """Sends one HTTP request; outputs ``{status, headers, body}``."""

    type: ClassVar[str] = "http"
    spec: ClassVar[BlockSpec] = BlockSpec(
        required=frozenset({"method", "url"}),
        optional=frozenset({"headers", "query", "json", "body", "credential", "expect"}),
    )
    side_effects: ClassVar[bool] = True

    def __init__(self, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        self.max_response_bytes = max_response_bytes

    async def run(self, params: Mapping[str, Any], ctx: BlockContext) -> Outcome:
        """Send the request; fail unless the status is expected (default 2xx)."""
        if ctx.http is None:
            raise _invalid("the http block has no HTTP client configured")
        expect = _expect(params.get("expect"))
        team = ctx.http.team(ctx.team_id)
        request = _build_request(team.client, params, ctx)
        # Query and userinfo may carry keys, so the label that reaches logs leaves them out.
        label = f"{request.method} {request.url.copy_with(query=None, userinfo=b'', fragment=None)}"
        budget = ctx.http.policy.timeout if ctx.timeout is None else ctx.timeout
        try:
            response, content = await self._exchange(team, request, budget)
            if response.status_code == 401 and _renewable(params, ctx):
                # The OAuth token was refused: sent once more with it renewed (refreshed,
                # or the one another run refreshed meanwhile); a second 401 stands.
                assert ctx.renew_credential is not None
                name = params["credential"]
                renewed = await ctx.renew_credential(name)
                ctx = replace(ctx, credentials={**ctx.credentials, name: renewed})
                request = _build_request(team.client, params, ctx)
                response, content = await self._exchange(team, request, budget)
        except ConnectionLimitReached as exc:
            raise BlockFailed(f"{label} not sent: {exc.message}") from exc
        except httpx.TimeoutException as exc:
            raise BlockFailed(f"{label} timed out ({type(exc).__name__})") from exc
        except httpx.RemoteProtocolError as exc:
            raise BlockFailed(
                f"{label} failed: remote protocol error from {_origin(request.url)}: {exc}"
            ) from exc
        except httpx.TransportError as exc:
            raise BlockFailed(f"{label} failed: {str(exc) or type(exc).__name__}") from exc
        _check_status(label, response, content, expect)
        output = {
            "status": response.status_code,
            "headers": dict(response.headers.items()),
            "body": _body(response, content),
        }
        return Outcome(output)

    async def _exchange(
        self, team: TeamHttp, request: httpx.Request, budget: float
    ) -> tuple[httpx.Response, bytes]:
        started = time.monotonic()
        wait = budget - min(SLOT_RESERVE_MAX, budget * SLOT_RESERVE_SHARE)
        async with team.slot(request.url, wait):
            # The attempt's own limit (the block's `timeout`) less the wait: no phase of
            # the request may take longer than what is left of it.
            left = max(0.0, budget - (time.monotonic() - started))
            request.extensions["timeout"] = httpx.Timeout(left).as_dict()
            response = await team.client.send(request, stream=True)
            try:
                content = await _read_limited(response, self.max_response_bytes)
            finally:
                await response.aclose()
        return response, content
