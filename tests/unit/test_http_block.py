"""The http block against a real local server, and the SSRF guard that refuses the rest.

Nothing here leaves 127.0.0.1: refused addresses must fail before any connection, and
public addresses are only ever given to the classifier, never connected to.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import socket
import struct
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpcore
import pytest

from reflow.blocks.base import BlockContext
from reflow.blocks.http import (
    AddressRefused,
    Http,
    HttpClients,
    HttpPolicy,
    address_refusal,
    create_http_clients,
)
from reflow.errors import BlockFailed

pytestmark = pytest.mark.anyio

LOOPBACK = (ipaddress.IPv4Network("127.0.0.0/8"),)
CREDENTIALS: Mapping[str, Mapping[str, Any]] = {
    "shop": {"type": "bearer", "token": "tok-123"},
    "legacy": {"type": "basic", "username": "ann", "password": "s3cret"},
    "keyed": {"type": "header", "name": "X-Api-Key", "value": "k-789"},
    "odd": {"type": "oauth1", "token": "x"},
}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output to the failures

    def _send(self, status: int, body: bytes, content_type: str, length: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", "session=abc")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _echo(self, parts: Any) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        echoed = {
            "method": self.command,
            "path": parts.path,
            "query": parse_qs(parts.query),
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": self.rfile.read(size).decode(),
        }
        self._send(200, json.dumps(echoed).encode(), "application/json")

    def _route(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path == "/json":
            self._send(200, b'{"hello": "world"}', "application/json")
        elif parts.path == "/problem":
            self._send(200, b'{"title": "fine"}', "application/problem+json; charset=utf-8")
        elif parts.path == "/text":
            self._send(200, "plain text é".encode(), "text/plain; charset=utf-8")
        elif parts.path.startswith("/status/"):
            status = int(parts.path.rsplit("/", 1)[1])
            self._send(status, b"x" * 300 if status == 503 else b"nope", "text/plain")
        elif parts.path == "/big":
            # No Content-Length: the limit has to hold while streaming, not only up front.
            self._send(200, b"x" * int(query["n"][0]), "text/plain", length=False)
        elif parts.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/json")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._echo(parts)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _route


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
async def client() -> AsyncIterator[HttpClients]:
    async with create_http_clients(HttpPolicy(allow_networks=LOOPBACK, timeout=5.0)) as c:
        yield c


@pytest.fixture
async def guarded() -> AsyncIterator[HttpClients]:
    async with create_http_clients(HttpPolicy(timeout=5.0)) as c:
        yield c


@pytest.fixture
def no_connect(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record (and forbid) every TCP connect the guard lets through."""
    attempts: list[str] = []

    async def forbidden(self: Any, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        attempts.append(host)
        raise AssertionError(f"connected to {host}:{port}")

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", forbidden)
    return attempts


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: Mapping[str, list[str]]) -> None:
    """Answer getaddrinfo from ``answers``, so no test needs a real resolver."""

    async def getaddrinfo(host: str, port: int, **kwargs: Any) -> list[Any]:
        return [(0, 1, 6, "", (address, port)) for address in answers[host]]

    monkeypatch.setattr(anyio, "getaddrinfo", getaddrinfo)


def ctx(client: HttpClients | None, key: str = "ex1:order") -> BlockContext:
    return BlockContext(
        execution_id="ex1",
        block_id="order",
        attempt=1,
        idempotency_key=key,
        http=client,
        credentials=CREDENTIALS,
    )


async def run(client: HttpClients | None, **params: Any) -> Any:
    outcome = await Http().run(params, ctx(client))
    return outcome.output


# --- requests and responses ----------------------------------------------------------


async def test_get_json_outputs_status_lowercased_headers_and_parsed_body(
    server: str, client: HttpClients
) -> None:
    output = await run(client, method="get", url=f"{server}/json")
    assert output["status"] == 200
    assert output["body"] == {"hello": "world"}
    assert output["headers"]["content-type"] == "application/json"
    assert output["headers"]["set-cookie"] == "session=abc"


async def test_plus_json_media_type_is_parsed(server: str, client: HttpClients) -> None:
    output = await run(client, method="GET", url=f"{server}/problem")
    assert output["body"] == {"title": "fine"}


async def test_text_body_is_decoded_with_its_charset(
    server: str, client: HttpClients
) -> None:
    output = await run(client, method="GET", url=f"{server}/text")
    assert output["body"] == "plain text é"


async def test_post_json_sends_encoded_body_with_json_content_type(
    server: str, client: HttpClients
) -> None:
    output = await run(client, method="POST", url=f"{server}/echo", json={"total": 120, "ok": True})
    echoed = output["body"]
    assert echoed["method"] == "POST"
    assert json.loads(echoed["body"]) == {"total": 120, "ok": True}
    assert echoed["headers"]["content-type"] == "application/json"


async def test_user_content_type_wins_over_json_default(
    server: str, client: HttpClients
) -> None:
    output = await run(
        client,
        method="PATCH",
        url=f"{server}/echo",
        json=[1],
        headers={"Content-Type": "application/vnd.api+json"},
    )
    assert output["body"]["headers"]["content-type"] == "application/vnd.api+json"


async def test_string_body_is_sent_verbatim(server: str, client: HttpClients) -> None:
    output = await run(client, method="PUT", url=f"{server}/echo", body="a=1&b=2")
    assert output["body"]["body"] == "a=1&b=2"


async def test_query_params_are_merged_into_the_url(server: str, client: HttpClients) -> None:
    output = await run(
        client, method="GET", url=f"{server}/echo?x=1", query={"page": 2, "tag": ["a", "b"]}
    )
    assert output["body"]["query"] == {"x": ["1"], "page": ["2"], "tag": ["a", "b"]}


async def test_headers_are_sent_and_numbers_become_text(
    server: str, client: HttpClients
) -> None:
    output = await run(client, method="GET", url=f"{server}/echo", headers={"X-One": "1", "X-N": 2})
    assert output["body"]["headers"]["x-one"] == "1"
    assert output["body"]["headers"]["x-n"] == "2"


async def test_head_answers_without_a_body(server: str, client: HttpClients) -> None:
    output = await run(client, method="HEAD", url=f"{server}/json")
    assert output["status"] == 200
    assert output["body"] is None


async def test_head_is_not_refused_for_the_size_it_declares(
    server: str, client: HttpClients
) -> None:
    outcome = await Http(max_response_bytes=4).run(
        {"method": "HEAD", "url": f"{server}/json"}, ctx(client)
    )
    assert outcome.output["headers"]["content-length"] == "18"


# --- credentials and idempotency ---------------------------------------------------


@pytest.mark.parametrize(
    ("credential", "header", "value"),
    [
        ("shop", "authorization", "Bearer tok-123"),
        ("legacy", "authorization", "Basic " + base64.b64encode(b"ann:s3cret").decode()),
        ("keyed", "x-api-key", "k-789"),
    ],
)
async def test_credential_is_injected_as_its_header(
    server: str, client: HttpClients, credential: str, header: str, value: str
) -> None:
    output = await run(client, method="GET", url=f"{server}/echo", credential=credential)
    assert output["body"]["headers"][header] == value


async def test_credential_replaces_a_typed_authorization_header(
    server: str, client: HttpClients
) -> None:
    output = await run(
        client,
        method="GET",
        url=f"{server}/echo",
        headers={"authorization": "Bearer stale"},
        credential="shop",
    )
    assert output["body"]["headers"]["authorization"] == "Bearer tok-123"


@pytest.mark.parametrize("credential", ["missing", "odd", 7])
async def test_unknown_or_unsupported_credential_fails_without_retry(
    server: str, client: HttpClients, credential: Any
) -> None:
    with pytest.raises(BlockFailed, match="credential") as failure:
        await run(client, method="GET", url=f"{server}/echo", credential=credential)
    assert failure.value.retryable is False


async def test_idempotency_key_is_sent_and_stable_across_attempts(
    server: str, client: HttpClients
) -> None:
    block = Http()
    params = {"method": "POST", "url": f"{server}/echo", "json": {}}
    first = await block.run(params, ctx(client, key="ex1:notify"))
    second = await block.run(params, ctx(client, key="ex1:notify"))
    sent = [o.output["body"]["headers"]["idempotency-key"] for o in (first, second)]
    assert sent == ["ex1:notify", "ex1:notify"]


async def test_user_idempotency_key_is_kept(server: str, client: HttpClients) -> None:
    output = await run(
        client, method="POST", url=f"{server}/echo", headers={"idempotency-key": "mine"}
    )
    assert output["body"]["headers"]["idempotency-key"] == "mine"


# --- statuses and failures -----------------------------------------------------------


async def test_expect_list_accepts_a_listed_error_status(
    server: str, client: HttpClients
) -> None:
    output = await run(client, method="GET", url=f"{server}/status/404", expect=[200, 404])
    assert output["status"] == 404
    assert output["body"] == "nope"


async def test_expect_list_refuses_an_unlisted_success(
    server: str, client: HttpClients
) -> None:
    with pytest.raises(BlockFailed, match="answered 200"):
        await run(client, method="GET", url=f"{server}/json", expect=[201])


async def test_503_fails_retryable_with_method_url_and_first_200_chars(
    server: str, client: HttpClients
) -> None:
    with pytest.raises(BlockFailed) as failure:
        await run(client, method="GET", url=f"{server}/status/503?key=hidden")
    assert failure.value.retryable is True
    assert failure.value.message == f"GET {server}/status/503 answered 503: " + "x" * 200


@pytest.mark.parametrize("status", [408, 425, 429, 500])
async def test_transient_statuses_are_retryable(
    server: str, client: HttpClients, status: int
) -> None:
    with pytest.raises(BlockFailed) as failure:
        await run(client, method="GET", url=f"{server}/status/{status}")
    assert failure.value.retryable is True


async def test_404_fails_without_retry(server: str, client: HttpClients) -> None:
    with pytest.raises(BlockFailed, match="answered 404: nope") as failure:
        await run(client, method="DELETE", url=f"{server}/status/404")
    assert failure.value.retryable is False


async def test_redirect_is_not_followed(server: str, client: HttpClients) -> None:
    with pytest.raises(BlockFailed, match="answered 302") as failure:
        await run(client, method="GET", url=f"{server}/redirect")
    assert failure.value.retryable is False


async def test_response_over_the_block_limit_fails(server: str, client: HttpClients) -> None:
    block = Http(max_response_bytes=1000)
    with pytest.raises(BlockFailed, match="larger than 1000 bytes") as failure:
        await block.run({"method": "GET", "url": f"{server}/big?n=5000"}, ctx(client))
    assert failure.value.retryable is False


async def test_response_over_the_policy_limit_fails(server: str) -> None:
    policy = HttpPolicy(allow_networks=LOOPBACK, max_response_bytes=1000)
    async with create_http_clients(policy) as small:
        with pytest.raises(BlockFailed, match="larger than 1000 bytes"):
            await run(small, method="GET", url=f"{server}/big?n=5000")
        output = await run(small, method="GET", url=f"{server}/big?n=1000")
    assert len(output["body"]) == 1000


async def test_connection_refused_names_the_address_and_is_retryable(
    client: HttpClients,
) -> None:
    # Port 1 on loopback has no listener here; the guard allows loopback for this client.
    with pytest.raises(BlockFailed) as failure:
        await run(client, method="GET", url="http://127.0.0.1:1/")
    assert failure.value.message == (
        "GET http://127.0.0.1:1/ failed: connection refused by 127.0.0.1:1 while connecting"
    )
    assert failure.value.retryable is True


@contextlib.contextmanager
def raw_target(after_request: Callable[[socket.socket], None]) -> Iterator[str]:
    """A TCP server on 127.0.0.1 that reads a request, then lets ``after_request`` end the
    connection instead of answering; yields its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = listener.accept()
                connection.recv(65536)
                after_request(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        # Shutting a listener down wakes the accept() blocked in the thread (Linux).
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)


def reset(connection: socket.socket) -> None:
    """Close with SO_LINGER 0, so the kernel sends a RST instead of a FIN."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


async def test_connection_reset_by_the_target_is_named_with_its_address(
    client: HttpClients,
) -> None:
    with raw_target(reset) as url, pytest.raises(BlockFailed) as failure:
        await run(client, method="POST", url=f"{url}/orders?key=hidden", json={"n": 1})
    peer = url.removeprefix("http://")
    assert failure.value.message == (
        f"POST {url}/orders failed: connection reset by {peer} while reading the response"
    )
    assert failure.value.retryable is True


async def test_target_closing_without_an_answer_is_a_named_protocol_error(
    client: HttpClients,
) -> None:
    with raw_target(socket.socket.close) as url, pytest.raises(BlockFailed) as failure:
        await run(client, method="GET", url=f"{url}/")
    peer = url.removeprefix("http://")
    assert failure.value.message == (
        f"GET {url}/ failed: remote protocol error from {peer}:"
        " Server disconnected without sending a response."
    )
    assert failure.value.retryable is True


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"method": "TRACE", "url": "http://127.0.0.1/"}, "method must be one of"),
        ({"method": "GET", "url": "ftp://127.0.0.1/"}, "http or https"),
        ({"method": "GET", "url": "/relative"}, "http or https"),
        ({"method": "POST", "url": "http://127.0.0.1/", "json": {}, "body": "x"}, "not both"),
        ({"method": "POST", "url": "http://127.0.0.1/", "body": {"a": 1}}, "body must be"),
        ({"method": "GET", "url": "http://127.0.0.1/", "headers": ["x"]}, "headers must"),
        ({"method": "GET", "url": "http://127.0.0.1/", "query": "a=1"}, "query must"),
        ({"method": "GET", "url": "http://127.0.0.1/", "expect": ["200"]}, "expect must"),
    ],
)
async def test_invalid_params_fail_without_retry_or_traffic(
    client: HttpClients, no_connect: list[str], params: dict[str, Any], reason: str
) -> None:
    with pytest.raises(BlockFailed, match=reason) as failure:
        await Http().run(params, ctx(client))
    assert failure.value.retryable is False
    assert no_connect == []


async def test_block_without_client_fails_without_retry() -> None:
    with pytest.raises(BlockFailed, match="no HTTP client") as failure:
        await run(None, method="GET", url="http://127.0.0.1/")
    assert failure.value.retryable is False


# --- the SSRF guard ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "refused", "reason"),
    [
        ("http://127.0.0.1/", "127.0.0.1", "loopback address"),
        ("http://localhost/", "127.0.0.1", "loopback address, resolved from localhost"),
        ("http://10.0.0.1/", "10.0.0.1", "private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "cloud metadata"),
        ("http://[::1]/", "::1", "loopback address"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:7f00:1", "loopback address"),
        ("http://0.0.0.0/", "0.0.0.0", "unspecified address"),
        # Legacy IPv4 spellings reach loopback through the resolver; the answer is judged.
        ("http://2130706433/", "127.0.0.1", "loopback address, resolved from 2130706433"),
        ("http://127.1/", "127.0.0.1", "loopback address, resolved from 127.1"),
        ("https://100.64.1.1/", "100.64.1.1", "non-public address"),
    ],
)
async def test_non_public_address_is_refused_before_connecting(
    guarded: HttpClients, no_connect: list[str], url: str, refused: str, reason: str
) -> None:
    with pytest.raises(AddressRefused) as failure:
        await run(guarded, method="GET", url=url)
    assert failure.value.message.startswith(f"refused to connect to {refused} ({reason}")
    assert failure.value.message.endswith("allow it with REFLOW_HTTP_ALLOW_NETWORKS")
    assert failure.value.retryable is False
    assert no_connect == []


async def test_guard_checks_the_resolved_address_not_the_name(
    guarded: HttpClients, no_connect: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"rebind.example": ["10.1.2.3"]})
    with pytest.raises(AddressRefused, match=r"10\.1\.2\.3 \(private address, resolved from"):
        await run(guarded, method="GET", url="https://rebind.example/")
    assert no_connect == []


async def test_guard_connects_to_the_checked_ip_and_keeps_the_host_header(
    server: str, client: HttpClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The name resolves to a refused address and an allowed one: only the latter is used,
    # and the request still names the host, as TLS SNI would.
    port = urlsplit(server).port
    fake_dns(monkeypatch, {"api.test": ["10.9.9.9", "127.0.0.1"]})
    output = await run(client, method="GET", url=f"http://api.test:{port}/echo")
    assert output["body"]["headers"]["host"] == f"api.test:{port}"


async def test_allowed_network_lets_the_guard_through(
    server: str, client: HttpClients
) -> None:
    output = await run(client, method="GET", url=f"{server}/json")
    assert output["status"] == 200


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "2606:4700::1", "8.8.8.8", "64:ff9b::5db8:d822", "2002:5db8:d822::1"],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.0.0.5", "private address"),
        ("172.16.0.1", "private address"),
        ("192.168.1.1", "private address"),
        ("100.64.0.1", "non-public address"),
        ("127.0.0.2", "loopback address"),
        ("169.254.169.254", "cloud metadata address"),
        ("169.254.1.1", "link-local address"),
        ("0.0.0.0", "unspecified address"),
        ("224.0.0.1", "multicast address"),
        ("255.255.255.255", "private address"),
        ("::1", "loopback address"),
        ("::", "unspecified address"),
        ("fc00::1", "private address"),
        ("fd00:ec2::254", "cloud metadata address"),
        ("fe80::1", "link-local address"),
        ("ff02::1", "multicast address"),
        ("::ffff:10.0.0.1", "private address"),
        ("::ffff:169.254.169.254", "cloud metadata address"),
        ("2002:7f00:1::", "loopback address"),
        ("64:ff9b::a00:1", "private address"),
        ("::127.0.0.1", "reserved address"),
    ],
)
def test_non_public_addresses_are_refused_with_their_reason(address: str, reason: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) == reason


def test_allow_networks_admit_their_addresses_including_mapped_forms() -> None:
    allow = (ipaddress.IPv4Network("10.0.0.0/8"),)
    assert address_refusal(ipaddress.ip_address("10.0.0.5"), allow) is None
    assert address_refusal(ipaddress.ip_address("::ffff:10.0.0.5"), allow) is None
    assert address_refusal(ipaddress.ip_address("192.168.0.1"), allow) == "private address"


def test_allow_networks_do_not_match_across_ip_versions() -> None:
    # ::/96 would "contain" 127.0.0.1 if only the integers were compared.
    allow = (ipaddress.IPv6Network("::/96"),)
    assert address_refusal(ipaddress.ip_address("127.0.0.1"), allow) == "loopback address"


async def test_a_query_credential_is_added_to_the_query_over_a_typed_one(
    server: str, client: HttpClients
) -> None:
    credentials = {"maps": {"type": "query", "name": "key", "value": "q-1"}}
    outcome = await Http().run(
        {"method": "GET", "url": f"{server}/echo?key=typed&page=2", "credential": "maps"},
        replace(ctx(client), credentials=credentials))
    assert outcome.output["body"]["query"] == {"key": ["q-1"], "page": ["2"]}


async def test_an_unavailable_credential_fails_with_its_reason_without_sending(
    server: str, client: HttpClients
) -> None:
    credentials = {"shop": {"type": "unavailable", "reason": "user 'jane' has no credential"}}
    with pytest.raises(BlockFailed, match="user 'jane' has no credential") as failure:
        await Http().run({"method": "GET", "url": f"{server}/echo", "credential": "shop"},
                         replace(ctx(client), credentials=credentials))
    assert failure.value.retryable is False
