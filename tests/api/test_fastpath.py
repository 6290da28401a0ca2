"""The run shortcut answers a plain ``POST /run/workflow`` itself, and hands anything else,
body included, to the route, so every refusal is still the route's own answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from reflow.api.fastpath import RunFastPath
from reflow.services import Reflow
from support import API_VERSION, ORDER_DATA, ORDER_OUTPUT, TEST_KEY

Call = Callable[..., tuple[int, Any, bytes | None]]


@pytest.fixture
def call(client: TestClient, reflow: Reflow) -> Call:
    """Send one request through RunFastPath in front of a recording stand-in for the app:
    (status, the body answered, the body the stand-in received or None if not called)."""

    def send_one(body: bytes, *, path: str = "/run/workflow", query: bytes = b"",
                 headers: dict[str, str] | None = None) -> tuple[int, Any, bytes | None]:
        passed: list[bytes] = []

        async def stand_in(scope: Any, receive: Any, send: Any) -> None:
            message = await receive()
            passed.append(message["body"])
            await send({"type": "http.response.start", "status": 299, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

        async def go() -> tuple[int, Any, bytes | None]:
            sent: list[dict[str, Any]] = []
            chunks = [body]

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": chunks.pop() if chunks else b"",
                        "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            given = {"authorization": f"bearer {TEST_KEY}", "x-api-version": API_VERSION,
                     "content-type": "application/json", "content-length": str(len(body)),
                     **(headers or {})}
            scope = {"type": "http", "method": "POST", "path": path, "query_string": query,
                     "headers": [(k.encode(), v.encode()) for k, v in given.items()
                                 if v is not None]}
            await RunFastPath(stand_in, reflow, 1 << 20)(scope, receive, send)
            answer = b"".join(m.get("body", b"") for m in sent[1:])
            return sent[0]["status"], orjson.loads(answer), passed[0] if passed else None

        result: tuple[int, Any, bytes | None] = client.portal.call(go)  # type: ignore[union-attr]
        return result

    return send_one


def _body(workflow_id: str, user_id: str, **extra: Any) -> bytes:
    return orjson.dumps({"workflowId": workflow_id, "userId": user_id, "data": ORDER_DATA,
                         **extra})


def test_a_plain_run_is_answered_without_the_route(
    call: Call, installed: Callable[..., tuple[str, str]],
) -> None:
    workflow_id, user_id = installed()
    status, answer, passed = call(_body(workflow_id, user_id), query=b"wait=10")
    assert (status, passed) == (200, None)
    assert answer["status"] == "succeeded" and answer["output"] == ORDER_OUTPUT
    status, answer, passed = call(_body(workflow_id, user_id),
                                  path=f"/{API_VERSION}/run/workflow",
                                  headers={"x-api-version": None})
    assert (status, passed) == (200, None)
    assert set(answer) == {"message", "executionId"}


@pytest.mark.parametrize(("headers", "query", "extra"), [
    ({"authorization": "bearer rf_not_a_key_0123456789"}, b"", {}),
    ({"authorization": None}, b"", {}),
    ({"x-api-version": None}, b"", {}),
    ({"x-api-version": "1999-01"}, b"", {}),
    ({"content-type": "text/plain"}, b"", {}),
    ({}, b"wait=0", {}),
    ({}, b"wait=nan", {}),
    ({}, b"wait=1&wait=2", {}),
    ({}, b"", {"unknown": 1}),
], ids=["unknown key", "no key", "no version", "unknown version", "not JSON",
        "wait out of range", "wait not a number", "wait twice", "unknown field"])
def test_anything_not_plain_goes_to_the_route_with_its_body(
    call: Call, installed: Callable[..., tuple[str, str]],
    headers: dict[str, str], query: bytes, extra: dict[str, Any],
) -> None:
    body = _body(*installed(), **extra)
    status, _, passed = call(body, query=query, headers=headers)
    assert (status, passed) == (299, body)


def test_a_service_refusal_is_answered_as_the_route_would(
    call: Call, client: TestClient, installed: Callable[..., tuple[str, str]],
) -> None:
    _, user_id = installed()
    body = _body("no-such-workflow", user_id)
    status, answer, passed = call(body)
    assert passed is None
    # A repeated header is not plain: this one takes the route.
    routed = client.post("/run/workflow", content=body, headers=[
        ("content-type", "application/json"), ("x-trace", "1"), ("x-trace", "2")])
    assert status == routed.status_code == 404
    assert answer == routed.json()
