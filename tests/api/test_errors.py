"""Errors are JSON ``{"message"}`` with the right status: body limit, unknown routes, no 500s."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from reflow.settings import Settings
from support import TEST_KEY

Message = MutableMapping[str, Any]
LIMIT = 4096
TEN_MB = 10 * 1024 * 1024
BODY_ROUTES = [
    ("POST", "/users"),
    ("POST", "/workflows"),
    ("PUT", "/workflows/0123456789abcdef01234567/definition"),
    ("PUT", "/workflows/activate"),
    ("POST", "/run/workflow"),
]
DOCUMENTED = {
    "/users": {"post"},
    "/users/{userId}": {"get"},
    "/workflows": {"post"},
    "/workflows/activate": {"put"},
    "/workflows/{workflowId}/definition": {"put"},
    "/workflows/{workflowId}/versions": {"get"},
    "/workflows/{workflowId}/logs": {"get"},
    "/workflows/{workflowId}/rerun/{executionId}": {"post"},
    "/run/workflow": {"post"},
    "/logs/{executionId}": {"get"},
}


@pytest.fixture
def settings(make_settings: Callable[..., Settings], request: pytest.FixtureRequest) -> Settings:
    """Test settings with a small body limit (fast), unless a test passes its own."""
    overrides: dict[str, Any] = getattr(request, "param", {"max_body_bytes": LIMIT})
    return make_settings(**overrides)


def assert_no_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    """The app logged no unexpected error (a trace) while the test ran."""
    traces = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert traces == [], f"the app logged errors: {traces}"


def assert_json_message(response: Any, status: int) -> None:
    """The response is ``{"message": <text>}`` with ``status``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["message"]
    assert isinstance(body["message"], str)
    assert body["message"]


def chunks(total: int, size: int = 1000) -> Iterator[bytes]:
    """``total`` bytes in pieces, sent without a Content-Length (chunked)."""
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b"x" * piece


async def call_app(app: Any, path: str, pieces: list[bytes]) -> list[Message]:
    """Drive the ASGI app directly, one body message per piece; the messages it sent."""
    sent: list[Message] = []
    remaining = iter(pieces)

    async def receive() -> Message:
        piece = next(remaining, None)
        if piece is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": piece, "more_body": True}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
        "headers": [
            (b"authorization", f"bearer {TEST_KEY}".encode()),
            (b"x-api-version", b"2025-09"),
            (b"content-type", b"application/json"),
            (b"transfer-encoding", b"chunked"),
        ],
    }
    await app(scope, receive, send)
    return sent


# -- body limit ----------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_body_over_the_limit_by_content_length_answers_413(
    client: TestClient, caplog: pytest.LogCaptureFixture, method: str, path: str
) -> None:
    response = client.request(method, path, content=b"x" * (LIMIT + 1),
                              headers={"content-type": "application/json"})
    assert_json_message(response, 413)
    assert str(LIMIT) in response.json()["message"]
    assert_no_error_logged(caplog)


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_chunked_body_over_the_limit_answers_413(
    client: TestClient, caplog: pytest.LogCaptureFixture, method: str, path: str
) -> None:
    response = client.request(method, path, content=chunks(LIMIT + 1),
                              headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_json_message(response, 413)
    assert_no_error_logged(caplog)


@pytest.mark.parametrize("path", ["/users", "/workflows", "/run/workflow"])
def test_streamed_body_over_the_limit_answers_413_once_without_raising(
    client: TestClient, path: str
) -> None:
    # The body arrives in several messages and crosses the limit midway, as a real
    # chunked upload does; the app must answer 413 once and not raise afterwards.
    portal = client.portal
    assert portal is not None
    pieces = [b'{"username": "' + b"x" * 1500] + [b"y" * 1500] * 3 + [b'"}']
    sent = portal.call(call_app, client.app, path, pieces)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert [m["status"] for m in starts] == [413]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert list(orjson.loads(body)) == ["message"]


def test_body_exactly_at_the_limit_is_accepted(client: TestClient) -> None:
    body = b'{"username": "edge@example.com"}'
    padded = body + b" " * (LIMIT - len(body))
    response = client.post("/users", content=padded, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("settings", [{}], indirect=True)
def test_default_limit_refuses_a_body_over_10_mb_with_413(
    client: TestClient, settings: Settings
) -> None:
    assert settings.max_body_bytes == TEN_MB
    declared = client.post("/run/workflow", content=b"x" * (TEN_MB + 1),
                           headers={"content-type": "application/json"})
    assert_json_message(declared, 413)
    streamed = client.post("/run/workflow", content=chunks(TEN_MB + 1, 1024 * 1024),
                           headers={"content-type": "application/json"})
    assert_json_message(streamed, 413)


# -- unknown routes and methods ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nope", "/workflows/a/b/c/d", "/2025-09/nope", "/users/a/b"])
def test_unknown_route_answers_404_json(client: TestClient, path: str) -> None:
    assert_json_message(client.get(path), 404)


@pytest.mark.parametrize(("method", "path"), [
    ("DELETE", "/run/workflow"),
    ("GET", "/run/workflow"),
    ("PATCH", "/workflows/activate"),
])
def test_wrong_method_answers_405_json(client: TestClient, method: str, path: str) -> None:
    assert_json_message(client.request(method, path), 405)


# -- never a 500 ---------------------------------------------------------------------------


HOSTILE: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/workflows/0123456789abcdef01234567/logs", {"params": {"limit": "9" * 30}}),
    ("POST", "/run/workflow", {"content": b'{"workflowId": "w", "userId": "u", "data": '
                               + b"[" * 20_000 + b"]" * 20_000 + b"}"}),
    ("POST", "/users", {"content": b'{"username": "\\ud800"}'}),
    ("POST", "/users", {"content": b"\xff\xfe\xfd"}),
    ("POST", "/workflows", {"content": b"name: " + b"[" * 20_000 + b"]" * 20_000,
                            "headers": {"content-type": "application/yaml"}}),
    ("POST", "/workflows", {"content": b'{"name": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"}),
    ("POST", "/workflows", {"content": b"a: &a [*a]", "headers": {"content-type": "text/yaml"}}),
    ("GET", "/users/%00", {}),
    ("GET", "/users/" + "a" * 5000, {}),
    ("POST", "/workflows/%00/rerun/%00", {"params": {"userId": "\x00"}}),
    ("GET", "/workflows/%00/versions", {"params": {"userId": "%00"}}),
    ("POST", "/run/workflow", {"params": {"wait": "nan"},
                               "json": {"workflowId": "w", "userId": "u", "data": {}}}),
    ("GET", "/users/x", {"headers": {"x-api-version": "2025-09\xe9".encode("latin-1")}}),
    ("GET", "/users/x", {"headers": {"authorization": "bearer \xe9\xe9".encode("latin-1")}}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), HOSTILE)
def test_hostile_request_answers_a_json_4xx_never_a_500(
    client: TestClient, caplog: pytest.LogCaptureFixture,
    method: str, path: str, kwargs: dict[str, Any],
) -> None:
    kwargs = dict(kwargs)
    if "content" in kwargs:
        kwargs.setdefault("headers", {"content-type": "application/json"})
    response = client.request(method, path, **kwargs)
    assert 400 <= response.status_code < 500, response.text
    assert "Traceback" not in response.text
    assert isinstance(response.json()["message"], str)
    assert_no_error_logged(caplog)


def test_integer_past_64_bits_in_run_data_is_a_json_number_like_in_javascript(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    # JSON numbers are doubles for JSONata and the reference's JavaScript clients alike.
    workflow_id, user_id = installed()
    body = (b'{"workflowId": "%s", "userId": "%s", "data": {"label": "x", "values": [%d]}}'
            % (workflow_id.encode(), user_id.encode(), 10**30))
    response = client.post("/run/workflow?wait=5", content=body,
                           headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json()["output"]["total"] == 1e30


def test_page_past_any_possible_offset_answers_422_or_empty(
    client: TestClient, installed: Callable[..., tuple[str, str]]
) -> None:
    workflow_id, user_id = installed()
    response = client.get(f"/workflows/{workflow_id}/logs",
                          params={"userId": user_id, "page": str(2**63)})
    assert response.status_code in (200, 422), response.text
    if response.status_code == 200:
        assert response.json() == {"data": []}
    else:
        assert "page" in response.json()["message"]


# -- OpenAPI -------------------------------------------------------------------------------


def test_openapi_lists_every_endpoint_with_its_method(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path, methods in DOCUMENTED.items():
        assert path in paths, f"{path} is missing from /openapi.json"
        assert methods <= set(paths[path]), f"{path}: {sorted(paths[path])}"


def test_openapi_documents_the_bearer_key(client: TestClient) -> None:
    schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert any(s.get("scheme", "").lower() == "bearer" for s in schemes.values())


def test_docs_page_answers_200_html(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
