"""Runs that take longer than a lease or than the default http timeout."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from fastapi.testclient import TestClient

from reflow.settings import Settings
from support import execution_log, json_handler, serving


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Short leases and http timeouts, and the local server reachable."""
    return make_settings(http_allow_networks="127.0.0.0/8", lease_seconds=1, http_timeout=1)


@pytest.fixture
def sleepy() -> Iterator[tuple[str, list[str]]]:
    """A local server that answers after ``?s=`` seconds; yields its URL and the paths hit."""
    hits: list[str] = []

    def answer(request: BaseHTTPRequestHandler) -> None:
        hits.append(urlparse(request.path).path)
        time.sleep(min(float(parse_qs(urlparse(request.path).query).get("s", ["0"])[0]), 5))

    with serving(json_handler(answer)) as base:
        yield base, hits


def _two_calls(
    url: str, seconds: float, timeout: str | None = None, b_seconds: float | None = None
) -> dict[str, Any]:
    extra = {"timeout": timeout} if timeout else {}
    return {
        "name": "Two slow calls",
        "trigger": {"type": "api"},
        "blocks": [
            {"id": "a", "type": "http", "with": {"method": "GET", "url": f"{url}/a?s={seconds}"},
             **extra},
            {"id": "b", "type": "http",
             "with": {"method": "GET", "url": f"{url}/b?s={b_seconds or seconds}"}, **extra},
            {"id": "done", "type": "respond", "with": {"body": "{{ b.body }}"}},
        ],
    }


def test_a_waited_run_longer_than_its_lease_runs_once(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    sleepy: tuple[str, list[str]],
) -> None:
    url, hits = sleepy
    # First inserted when `a` commits, after the lease taken at the start has run out.
    workflow_id, user_id = installed(_two_calls(url, 1.5, timeout="5s", b_seconds=1.5))
    response = client.post("/run/workflow?wait=10",
                           json={"workflowId": workflow_id, "userId": user_id, "data": {}})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded"
    time.sleep(0.5)  # a second run, had the claim loop started one, would show by now
    assert hits == ["/a", "/b"]
    assert execution_log(client, response.json()["executionId"])["status"] == "succeeded"


def test_a_block_timeout_longer_than_the_default_http_timeout_is_honoured(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    sleepy: tuple[str, list[str]],
) -> None:
    url, _ = sleepy
    workflow_id, user_id = installed(_two_calls(url, 1.3, timeout="5s"))
    response = client.post("/run/workflow?wait=10",
                           json={"workflowId": workflow_id, "userId": user_id, "data": {}})
    assert response.json()["status"] == "succeeded", response.text


def test_without_a_block_timeout_the_default_http_timeout_applies(
    client: TestClient, installed: Callable[..., tuple[str, str]],
    sleepy: tuple[str, list[str]],
) -> None:
    url, _ = sleepy
    workflow_id, user_id = installed(_two_calls(url, 1.3))
    response = client.post("/run/workflow?wait=10",
                           json={"workflowId": workflow_id, "userId": user_id, "data": {}})
    body = response.json()
    assert body["status"] == "failed"
    assert body["error"]["blockId"] == "a"
