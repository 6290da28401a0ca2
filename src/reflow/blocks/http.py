"""The ``http`` block, and the HTTP client it runs on, which only reaches public addresses.

The SSRF guard sits in the client's network backend, at connect time: a host name is
resolved once, every resolved address is classified, and the socket is opened to a
validated IP, never to the name again (no DNS-rebinding window). TLS still verifies the
certificate against the host name, because httpcore passes the URL's host as SNI.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
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
        error: httpcore.ConnectError | None = None
        for address in allowed:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                error = exc
        assert error is not None
        raise error

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
    def __init__(self, policy: HttpPolicy) -> None:
        ssl_context = httpx.create_ssl_context()
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx 0.28 takes no network backend (encode/httpx#3749), so swap in a pool that has
        # one. Should httpx rename `_pool`, fail here rather than run without the guard.
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError("this httpx version hides its pool; the SSRF guard cannot attach")
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            # httpx's own defaults (httpx.Limits), which the swapped-out pool had.
            max_connections=100,
            max_keepalive_connections=20,
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


def create_http_client(policy: HttpPolicy) -> httpx.AsyncClient:
    """An AsyncClient that only connects to public addresses (or ``policy.allow_networks``)."""
    return httpx.AsyncClient(
        transport=_GuardedTransport(policy),
        timeout=policy.timeout,
        # Each redirect hop would pass the guard too, but a block answers what it was asked.
        follow_redirects=False,
        trust_env=False,
    )


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
        raise _invalid(f"credential {name!r} has no {field!r}")
    return value


def _bearer(name: str, credential: Mapping[str, Any]) -> tuple[str, str]:
    return "Authorization", f"Bearer {_field(name, credential, 'token')}"


def _basic(name: str, credential: Mapping[str, Any]) -> tuple[str, str]:
    pair = f"{_field(name, credential, 'username')}:{_field(name, credential, 'password')}"
    return "Authorization", f"Basic {base64.b64encode(pair.encode()).decode('ascii')}"


def _header(name: str, credential: Mapping[str, Any]) -> tuple[str, str]:
    return _field(name, credential, "name"), _field(name, credential, "value")


_CREDENTIAL_TYPES: Mapping[str, Callable[[str, Mapping[str, Any]], tuple[str, str]]] = {
    "bearer": _bearer,
    "basic": _basic,
    "header": _header,
}


def _credential_header(value: Any, credentials: Mapping[str, Mapping[str, Any]]) -> tuple[str, str]:
    credential = credentials.get(value) if isinstance(value, str) else None
    if credential is None:
        raise _invalid(f"unknown credential {value!r}")
    kind = str(credential.get("type", "")).lower()
    make = _CREDENTIAL_TYPES.get(kind)
    if make is None:
        raise _invalid(f"credential {value!r} has unsupported type {kind!r}")
    return make(value, credential)


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
    if params.get("credential") is not None:
        # The credential's header replaces one of the same name typed into the definition.
        name, value = _credential_header(params["credential"], ctx.credentials)
        headers[name] = value
    headers.setdefault("Idempotency-Key", ctx.idempotency_key)
    content = _content(params, headers)
    query = params.get("query")
    if query is not None and not isinstance(query, Mapping):
        raise _invalid("query must be a map of names to values")
    try:
        # Merged, not replaced: httpx's params= would drop a query typed into the url.
        if query:
            url = url.copy_merge_params(dict(query))
        # The attempt's own limit (the block's `timeout`), not only the client's default.
        timeout = httpx.USE_CLIENT_DEFAULT if ctx.timeout is None else ctx.timeout
        return client.build_request(method, url, headers=headers, content=content,
                                    timeout=timeout)
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
        request = _build_request(ctx.http, params, ctx)
        # Query and userinfo may carry keys, so the label that reaches logs leaves them out.
        label = f"{request.method} {request.url.copy_with(query=None, userinfo=b'', fragment=None)}"
        try:
            response = await ctx.http.send(request, stream=True)
            try:
                content = await _read_limited(response, self.max_response_bytes)
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            raise BlockFailed(f"{label} timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise BlockFailed(f"{label} failed: {exc or type(exc).__name__}") from exc
        _check_status(label, response, content, expect)
        output = {
            "status": response.status_code,
            "headers": dict(response.headers.items()),
            "body": _body(response, content),
        }
        return Outcome(output)
